//! Absolute wall-clock time in nanoseconds since the Unix epoch. Nothing
//! here reads a clock: callers pass `now` in.
//!
//! State always holds absolute times, because it outlives processes and is
//! copied to replicas and AOF files. Arithmetic saturates: a clock that steps
//! back, or a far-future time restored from a dump, must never wrap around.

use std::fmt;

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Nanoseconds, either since the Unix epoch (an instant) or a span.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(u64);

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);
    pub const MAX: Nanos = Nanos(u64::MAX);

    #[inline]
    pub const fn new(ns: u64) -> Self {
        Nanos(ns)
    }

    #[inline]
    pub const fn from_micros(us: u64) -> Self {
        Nanos(us.saturating_mul(NANOS_PER_MICRO))
    }

    #[inline]
    pub const fn from_millis(ms: u64) -> Self {
        Nanos(ms.saturating_mul(NANOS_PER_MILLI))
    }

    #[inline]
    pub const fn from_secs(s: u64) -> Self {
        Nanos(s.saturating_mul(NANOS_PER_SEC))
    }

    #[inline]
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// Whole microseconds, rounded down.
    #[inline]
    pub const fn as_micros(self) -> u64 {
        self.0 / NANOS_PER_MICRO
    }

    /// Whole milliseconds, rounded down.
    #[inline]
    pub const fn as_millis(self) -> u64 {
        self.0 / NANOS_PER_MILLI
    }

    /// Milliseconds rounded up: a wait of this many milliseconds covers the span.
    #[inline]
    pub const fn ceil_millis(self) -> u64 {
        self.0.div_ceil(NANOS_PER_MILLI)
    }

    #[inline]
    pub const fn saturating_add(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(rhs.0))
    }

    #[inline]
    pub const fn saturating_sub(self, rhs: Nanos) -> Nanos {
        Nanos(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Debug for Nanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, ns) = (self.0 / NANOS_PER_SEC, self.0 % NANOS_PER_SEC);
        if ns == 0 {
            write!(f, "Nanos({s}s)")
        } else {
            let frac = format!("{ns:09}");
            write!(f, "Nanos({s}.{}s)", frac.trim_end_matches('0'))
        }
    }
}

/// Milliseconds rounded up, as the signed integer a reply carries (saturating).
#[inline]
pub fn reply_millis(span: Nanos) -> i64 {
    i64::try_from(span.ceil_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_seconds() {
        assert_eq!(format!("{:?}", Nanos::from_secs(1)), "Nanos(1s)");
        assert_eq!(format!("{:?}", Nanos::new(1_500_000_000)), "Nanos(1.5s)");
        assert_eq!(format!("{:?}", Nanos::new(1)), "Nanos(0.000000001s)");
    }

    #[test]
    fn ceil_millis_rounds_up() {
        assert_eq!(Nanos::ZERO.ceil_millis(), 0);
        assert_eq!(Nanos::new(1).ceil_millis(), 1);
        assert_eq!(Nanos::from_millis(3).ceil_millis(), 3);
        assert_eq!(Nanos::new(3_000_001).ceil_millis(), 4);
        assert_eq!(Nanos::MAX.ceil_millis(), u64::MAX.div_ceil(1_000_000));
    }
}
