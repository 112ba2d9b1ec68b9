//! The one place that reads the server's clock. Only command handlers (and
//! timers) call [`now`], once per decision; everything they call takes it.

use redis_ratelimit_core::time::Nanos;

/// The server's wall clock, in nanoseconds since the Unix epoch.
#[inline]
pub fn now() -> Nanos {
    #[cfg(feature = "test-hooks")]
    {
        let fake = test_clock::get();
        if fake != 0 {
            return Nanos::new(fake);
        }
    }
    real_now()
}

/// A clock before 1970 reads as the epoch, which mints nothing (state
/// times are all later).
#[inline]
fn real_now() -> Nanos {
    Nanos::new(crate::api::wall_clock_ns())
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
mod tests {
    use super::*;

    #[test]
    fn real_clock_is_after_2020() {
        assert!(real_now() > Nanos::from_secs(1_577_836_800));
    }
}
