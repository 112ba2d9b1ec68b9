//! The wall clock, read by the system call Redis itself uses (the
//! microsecond API is Redis 7.2+).

/// The wall clock in nanoseconds since the Unix epoch (`CLOCK_REALTIME`;
/// `RedisModule_Microseconds` is 7.2+). A clock before 1970 reads as 0.
#[inline]
pub fn wall_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}
