//! Waiting in line instead of polling: try, and while denied sleep for the
//! reply's `retry_after` plus a random jitter (so many waiters woken by the
//! same refill do not all arrive in the same millisecond), until allowed
//! or until the deadline. A deadline means "wait up to": when the next
//! retry falls past it, the wait still lasts to the deadline and tries
//! once more there (units may come back sooner, by a refund or a
//! release), so a wait never gives up while time remains.
//!
//! This is polling: fair only by luck among many waiters. A
//! [`Limiter`](crate::Limiter) waits in line inside the server instead
//! (`BLOCK`) where it can; see [`Limiter::wait`](crate::Limiter::wait).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::reply::Decision;

/// How a wait ends when it does not end allowed.
#[derive(Debug)]
#[non_exhaustive]
pub enum WaitError<D, E> {
    /// Still denied at the deadline, or the next try would fall after it.
    TimedOut {
        /// The last answer.
        last: D,
    },
    /// The request can never be allowed (its cost is above a limit).
    Never {
        /// The answer that said so.
        last: D,
    },
    /// A try failed.
    Failed(E),
}

impl<D: std::fmt::Debug, E: std::fmt::Display> std::fmt::Display for WaitError<D, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::TimedOut { .. } => f.write_str("still rate limited at the deadline"),
            WaitError::Never { .. } => f.write_str("the request can never be allowed"),
            WaitError::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl<D: std::fmt::Debug, E: std::error::Error + 'static> std::error::Error for WaitError<D, E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WaitError::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// The default cap on the jitter added to each sleep.
pub const DEFAULT_MAX_JITTER: Duration = Duration::from_secs(1);

/// The longest wait (about 30 years): a longer `max_wait` waits this long,
/// so a deadline is always an instant (`Duration::MAX` means "as long as it
/// takes", never a panic).
pub const LONGEST_WAIT: Duration = Duration::from_secs(30 * 365 * 86_400);

/// `max_wait` from now (at most [`LONGEST_WAIT`]; never past what the
/// clock can hold).
pub(crate) fn deadline_after(max_wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(max_wait.min(LONGEST_WAIT)).unwrap_or(now)
}

/// [`deadline_after`] on the standard clock (the blocking limiter).
pub(crate) fn std_deadline_after(max_wait: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(max_wait.min(LONGEST_WAIT)).unwrap_or(now)
}

/// Wait options: the longest total wait, and the jitter.
///
/// Each sleep is `retry_after` plus a uniformly random jitter of up to an
/// eighth of `retry_after` (at least 1 ms, at most `max_jitter`), cut
/// short at the deadline.
///
/// ```no_run
/// use redis_ratelimit_client::{redis, wait::Wait, AsyncRateLimitCommands, TokenBucket};
/// use std::time::Duration;
/// # async fn f(mut con: redis::aio::MultiplexedConnection) -> Result<(), Box<dyn std::error::Error>> {
/// let bucket = TokenBucket::new(10, 10, Duration::from_secs(1))?;
/// let d = Wait::up_to(Duration::from_secs(5))
///     .until_allowed(|| {
///         let mut con = con.clone();
///         async move { con.token_bucket("partner-api", &bucket, 1).await }
///     })
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Wait {
    max_wait: Duration,
    max_jitter: Duration,
}

impl Wait {
    /// Wait at most `max_wait` in total (at most [`LONGEST_WAIT`]: a
    /// longer one, `Duration::MAX` included, waits that long).
    pub fn up_to(max_wait: Duration) -> Wait {
        Wait {
            max_wait: max_wait.min(LONGEST_WAIT),
            max_jitter: DEFAULT_MAX_JITTER,
        }
    }

    /// The longest total wait.
    pub fn max_wait(&self) -> Duration {
        self.max_wait
    }

    /// The cap on each sleep's jitter.
    pub fn jitter(&self) -> Duration {
        self.max_jitter
    }

    /// Cap the jitter (zero: sleep exactly `retry_after`).
    pub fn max_jitter(mut self, max_jitter: Duration) -> Wait {
        self.max_jitter = max_jitter;
        self
    }

    /// Calls `attempt` until its decision allows, sleeping between tries.
    /// `D` is a [`Decision`] or anything holding one
    /// ([`AllDecision`](crate::AllDecision)).
    pub async fn until_allowed<F, Fut, D, E>(&self, mut attempt: F) -> Result<D, WaitError<D, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<D, E>>,
        D: AsRef<Decision>,
    {
        let deadline = deadline_after(self.max_wait);
        loop {
            let d = attempt().await.map_err(WaitError::Failed)?;
            let decision = *d.as_ref();
            if decision.allowed {
                return Ok(d);
            }
            let Some(retry) = decision.retry_after else {
                return Err(WaitError::Never { last: d });
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match next_sleep(retry, left, self.max_jitter, random()) {
                Some(sleep) => tokio::time::sleep(sleep).await,
                None => return Err(WaitError::TimedOut { last: d }),
            }
        }
    }
}

/// [`Wait::up_to`]`(max_wait).until_allowed(attempt)`.
pub async fn wait_until_allowed<F, Fut, D, E>(
    max_wait: Duration,
    attempt: F,
) -> Result<D, WaitError<D, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<D, E>>,
    D: AsRef<Decision>,
{
    Wait::up_to(max_wait).until_allowed(attempt).await
}

/// How long to sleep before the next try: `retry` plus jitter, cut at the
/// deadline (`left` from now); `None` once the deadline has come. `rand`
/// is a uniform random 64-bit number.
pub(crate) fn next_sleep(
    retry: Duration,
    left: Duration,
    max_jitter: Duration,
    rand: u64,
) -> Option<Duration> {
    if left.is_zero() {
        return None;
    }
    // A denial with no wait (a failure policy's, say) still sleeps a little.
    let retry = retry.max(Duration::from_millis(1)).min(left);
    let span = (retry / 8).max(Duration::from_millis(1)).min(max_jitter);
    let span_ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
    let jitter = match span_ns.checked_add(1) {
        Some(n) => Duration::from_nanos(rand % n),
        None => Duration::from_nanos(rand),
    };
    Some(retry.saturating_add(jitter).min(left))
}

/// A fast, non-cryptographic random number (SplitMix64 over a counter
/// seeded from the clock): jitter needs spread, not secrecy.
pub(crate) fn random() -> u64 {
    const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
    static STATE: AtomicU64 = AtomicU64::new(0);
    if STATE.load(Ordering::Relaxed) == 0 {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let _ = STATE.compare_exchange(0, seed | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    let mut z = STATE
        .fetch_add(GAMMA, Ordering::Relaxed)
        .wrapping_add(GAMMA);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reply::Source;
    use std::cell::Cell;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn sleeps_retry_after_plus_bounded_jitter() {
        let max = Duration::from_secs(1);
        assert_eq!(next_sleep(MS(800), MS(10_000), max, 0), Some(MS(800)));
        // Jitter up to an eighth: 100 ms for 800 ms.
        assert_eq!(
            next_sleep(MS(800), MS(10_000), max, 100_000_000),
            Some(MS(900))
        );
        assert_eq!(
            next_sleep(MS(800), MS(10_000), max, 100_000_001),
            Some(MS(800))
        );
        // Capped by max_jitter, at least 1 ms.
        assert_eq!(
            next_sleep(MS(80_000), MS(100_000), MS(5), 5_000_000),
            Some(MS(80_005))
        );
        assert_eq!(next_sleep(MS(2), MS(10), max, 1_000_000), Some(MS(3)));
        assert_eq!(next_sleep(MS(2), MS(10), Duration::ZERO, 7), Some(MS(2)));
        // A zero wait still sleeps a millisecond.
        assert_eq!(
            next_sleep(Duration::ZERO, MS(10), Duration::ZERO, 0),
            Some(MS(1))
        );
    }

    #[test]
    fn never_sleeps_past_the_deadline() {
        // A retry past the deadline sleeps to the deadline (one more try).
        assert_eq!(next_sleep(MS(800), MS(799), MS(100), 0), Some(MS(799)));
        assert_eq!(next_sleep(MS(800), Duration::ZERO, MS(100), 0), None);
        assert_eq!(
            next_sleep(MS(800), MS(800), MS(100), 50_000_000),
            Some(MS(800))
        );
        assert_eq!(
            next_sleep(MS(800), MS(830), MS(100), 50_000_000),
            Some(MS(830))
        );
    }

    #[test]
    fn random_numbers_differ() {
        let a: Vec<u64> = (0..100).map(|_| random()).collect();
        let mut b = a.clone();
        b.sort_unstable();
        b.dedup();
        assert_eq!(b.len(), 100);
    }

    fn denied(ms: Option<u64>) -> Decision {
        Decision::local(false, 1, 0, ms.map(MS), MS(0), Source::Redis)
    }
    fn allowed() -> Decision {
        Decision::local(true, 1, 0, Some(MS(0)), MS(0), Source::Redis)
    }

    #[tokio::test(start_paused = true)]
    async fn retries_until_allowed() {
        let calls = Cell::new(0);
        let start = Instant::now();
        let r: Result<Decision, WaitError<Decision, ()>> = Wait::up_to(Duration::from_secs(5))
            .max_jitter(Duration::ZERO)
            .until_allowed(|| {
                calls.set(calls.get() + 1);
                let d = if calls.get() < 3 {
                    denied(Some(200))
                } else {
                    allowed()
                };
                async move { Ok(d) }
            })
            .await;
        assert!(r.unwrap().allowed);
        assert_eq!(calls.get(), 3);
        assert_eq!(start.elapsed(), MS(400));
    }

    #[tokio::test(start_paused = true)]
    async fn waits_up_to_the_deadline_never_less() {
        let start = Instant::now();
        let calls = Cell::new(0);
        let r: Result<Decision, WaitError<Decision, ()>> = wait_until_allowed(MS(500), || {
            calls.set(calls.get() + 1);
            async { Ok(denied(Some(600))) }
        })
        .await;
        assert!(matches!(r, Err(WaitError::TimedOut { .. })));
        // Tried at once and again at the deadline, not given up early.
        assert_eq!((start.elapsed(), calls.get()), (MS(500), 2));
        // Allowed at the deadline (a refund came): admitted.
        let start = Instant::now();
        let calls = Cell::new(0);
        let r: Result<Decision, WaitError<Decision, ()>> = wait_until_allowed(MS(500), || {
            calls.set(calls.get() + 1);
            let d = if calls.get() == 1 {
                denied(Some(600))
            } else {
                allowed()
            };
            async move { Ok(d) }
        })
        .await;
        assert!(r.unwrap().allowed);
        assert_eq!(start.elapsed(), MS(500));
        let start = Instant::now();
        let r: Result<Decision, WaitError<Decision, ()>> =
            wait_until_allowed(MS(500), || async { Ok(denied(None)) }).await;
        assert!(matches!(r, Err(WaitError::Never { .. })));
        let r: Result<Decision, WaitError<Decision, &str>> =
            wait_until_allowed(MS(500), || async { Err("down") }).await;
        assert!(matches!(r, Err(WaitError::Failed("down"))));
        // Denied until the deadline: tries at 0, 150, 300, 450 and 500 ms.
        let r: Result<Decision, WaitError<Decision, ()>> = Wait::up_to(MS(500))
            .max_jitter(Duration::ZERO)
            .until_allowed(|| async { Ok(denied(Some(150))) })
            .await;
        assert!(matches!(r, Err(WaitError::TimedOut { .. })));
        assert_eq!(start.elapsed(), MS(500));
    }
}
