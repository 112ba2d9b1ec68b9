//! Absolute wall-clock time in nanoseconds since the Unix epoch, and the one
//! place that reads the server's clock.
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

/// The server's wall clock. Only command handlers call this, once each.
#[inline]
pub fn now() -> Nanos {
    #[cfg(feature = "test-hooks")]
    {
        let fake = test_clock::get();
        if fake != 0 {
            return Nanos(fake);
        }
    }
    real_now()
}

#[inline]
fn real_now() -> Nanos {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 || ts.tv_sec < 0 {
        // CLOCK_REALTIME does not fail on Linux; a clock before 1970 reads as
        // the epoch, which mints nothing (state times are all later).
        return Nanos::ZERO;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Nanos(secs.saturating_mul(NANOS_PER_SEC).saturating_add(nanos))
}

/// A settable clock for integration tests (DST changes, clock steps). Compiled
/// only with the `test-hooks` feature, never into the release module.
#[cfg(feature = "test-hooks")]
pub mod test_clock {
    use std::sync::atomic::{AtomicU64, Ordering};

    static FAKE_NOW: AtomicU64 = AtomicU64::new(0);

    /// The fixed time in nanoseconds, or 0 for the real clock.
    pub fn get() -> u64 {
        FAKE_NOW.load(Ordering::Relaxed)
    }

    pub fn set(ns: u64) {
        FAKE_NOW.store(ns, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
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

    #[test]
    fn real_clock_is_after_2020() {
        assert!(real_now() > Nanos::from_secs(1_577_836_800));
    }
}
