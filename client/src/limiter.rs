//! [`Limiter`]: a connection, a set of limits, a per-call timeout and what
//! to do when Redis cannot answer. Each call builds the keys from the
//! caller's key (`rl:{user42}:minute`: the hash tag keeps one caller's
//! limits in one cluster slot), sends one command (`RL.ALL` for several
//! limits), and, if Redis is unreachable or slower than the timeout,
//! answers by the [`FailurePolicy`] instead of failing the caller.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Cmd, RedisError};
use redis_ratelimit_core::limit::Spec;
use redis_ratelimit_core::time::Nanos;

use crate::commands::{all_parts, cmd_limit, Request};
use crate::error::{Error, PolicyError};
use crate::local::{self, Local, Share};
use crate::policy::Limits;
use crate::reply::{AllDecision, Decision, Source};
use crate::wait::{Wait, WaitError};

/// What a [`Limiter`] answers when Redis cannot be reached, fails with an
/// outage error (`LOADING`, `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`,
/// `READONLY`, `BUSY`, `OOM`, connection errors) or does not answer within
/// the timeout. Other errors (a wrong key type, an unknown command) are
/// bugs to see, not outages: they come back as [`Error::Redis`].
///
/// There is no default: [`Limiter::new`] asks for one, because the right
/// answer depends on what the limit protects.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Allow every request (`Source::FailOpen`; `limit` is the first
    /// limit's, `remaining` and `reset_after` are 0: unknown). For limits
    /// that protect against abuse, where an outage of Redis must not
    /// become an outage of the service.
    FailOpen,
    /// Deny every request (`Source::FailClosed`, `retry_after` 1 s or the
    /// cooldown if longer). For limits that must never be exceeded, such
    /// as a partner API's quota.
    FailClosed,
    /// Decide in this process (`Source::Fallback`) with the module's own
    /// algorithms, so each limit keeps its kind and guarantee: a sliding
    /// window stays an exact sliding window, a calendar day still resets at
    /// local midnight, several limits are still all or nothing. The quota
    /// is shared as `Share` says. Its state starts empty and is forgotten
    /// when Redis is back: units taken during the outage are not known to
    /// Redis, so across an outage's start or end (and with `Share::Whole`,
    /// across processes) up to one more quota can get through.
    Fallback(Share),
}

/// The time a call waits for Redis before the failure policy answers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// After an outage, calls skip Redis this long (answering by the failure
/// policy at once) before trying it again.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// The key prefix.
pub const DEFAULT_PREFIX: &str = "rl:";

/// A shared rate limiter: cheap to clone (clones share the fallback state
/// and the outage cooldown), usable from many tasks at once.
///
/// ```no_run
/// use redis_ratelimit_client::{Limiter, Limits, FailurePolicy, SlidingWindow};
/// use std::time::Duration;
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let con = redis::Client::open("redis://127.0.0.1/")?.get_connection_manager().await?;
/// let limits = Limits::single("minute", SlidingWindow::new(100, Duration::from_secs(60))?)?;
/// let limiter = Limiter::new(con, limits, FailurePolicy::FailOpen)
///     .with_timeout(Duration::from_millis(50));
/// let verdict = limiter.check("user42").await?; // key rl:{user42}:minute
/// if !verdict.decision.allowed { /* 429 */ }
/// # Ok(()) }
/// ```
pub struct Limiter<C> {
    conn: C,
    limits: Arc<Limits>,
    prefix: Arc<str>,
    timeout: Duration,
    cooldown: Duration,
    failure: FailurePolicy,
    state: Arc<State>,
}

struct State {
    /// The monotonic origin of `now_ns`.
    origin: Instant,
    /// Until when (ns since `origin`) Redis is skipped; 0: not skipped.
    down_until: AtomicU64,
    local: Mutex<Local>,
}

impl<C: Clone> Clone for Limiter<C> {
    fn clone(&self) -> Self {
        Limiter {
            conn: self.conn.clone(),
            limits: self.limits.clone(),
            prefix: self.prefix.clone(),
            timeout: self.timeout,
            cooldown: self.cooldown,
            failure: self.failure,
            state: self.state.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("cooldown", &self.cooldown)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// Errors that mean "Redis cannot answer now", as opposed to "Redis
/// answered no".
pub(crate) fn is_outage(e: &RedisError) -> bool {
    if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.kind() == redis::ErrorKind::ClusterConnectionNotFound
    {
        return true;
    }
    matches!(
        e.code(),
        Some("LOADING" | "CLUSTERDOWN" | "TRYAGAIN" | "MASTERDOWN" | "READONLY" | "BUSY" | "OOM")
    )
}

impl<C> Limiter<C>
where
    C: redis::aio::ConnectionLike + Clone + Send + Sync + 'static,
{
    /// A limiter with the default timeout (100 ms), cooldown (1 s) and key
    /// prefix (`rl:`). The failure policy is required.
    pub fn new(conn: C, limits: Limits, failure: FailurePolicy) -> Limiter<C> {
        Limiter {
            conn,
            limits: Arc::new(limits),
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            cooldown: DEFAULT_COOLDOWN,
            failure,
            state: Arc::new(State {
                origin: Instant::now(),
                down_until: AtomicU64::new(0),
                local: Mutex::new(Local::default()),
            }),
        }
    }

    /// How long a call waits for Redis before the failure policy answers.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// After an outage, how long calls skip Redis (so a dead server does
    /// not cost every call the full timeout). Zero: always try Redis.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// The key prefix (default `rl:`); no `{` or `}` in it.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, PolicyError> {
        if prefix.contains(['{', '}']) {
            return Err(PolicyError::InvalidPrefix {
                prefix: prefix.to_string(),
            });
        }
        self.prefix = Arc::from(prefix);
        Ok(self)
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    pub fn failure_policy(&self) -> FailurePolicy {
        self.failure
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The Redis keys a caller's key maps to, one per limit:
    /// `{prefix}{{key}}:{name}`.
    pub fn keys(&self, key: &str) -> Vec<String> {
        self.limits
            .iter()
            .map(|l| format!("{}{{{}}}:{}", self.prefix, key, l.name()))
            .collect()
    }

    /// Takes one unit for `key`.
    pub async fn check(&self, key: &str) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(1)).await
    }

    /// Takes (or dry-runs, or refunds) `request` for `key`, on every limit.
    pub async fn check_with(&self, key: &str, request: Request) -> Result<AllDecision, Error> {
        if key.is_empty() {
            return Err(Error::InvalidKey {
                reason: "the key is empty (it would not be a hash tag)",
            });
        }
        let keys = self.keys(key);
        if self.skipping_redis() {
            return Ok(self.unavailable(&keys, request));
        }
        let cmd = self.command(&keys, request);
        let mut conn = self.conn.clone();
        let single = self.limits.len() == 1;
        let call = async {
            if single {
                cmd.query_async::<Decision>(&mut conn)
                    .await
                    .map(|d| AllDecision::new(d, 0))
            } else {
                cmd.query_async::<AllDecision>(&mut conn).await
            }
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(d)) => {
                self.state.down_until.store(0, Ordering::Relaxed);
                Ok(d)
            }
            Ok(Err(e)) if is_outage(&e) => {
                self.mark_down();
                Ok(self.unavailable(&keys, request))
            }
            Ok(Err(e)) => Err(Error::Redis(e)),
            Err(_elapsed) => {
                self.mark_down();
                Ok(self.unavailable(&keys, request))
            }
        }
    }

    /// Gives `cost` units back to every limit of `key` (the work did not
    /// happen).
    pub async fn refund(&self, key: &str, cost: u64) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(cost).refund()).await
    }

    /// Waits until one unit for `key` is allowed, sleeping `retry_after`
    /// plus jitter between tries, for at most `max_wait`. See [`Wait`] to
    /// tune the jitter or wait for a larger cost.
    pub async fn wait(&self, key: &str, max_wait: Duration) -> Result<AllDecision, Error> {
        self.wait_with(key, Request::new(1), &Wait::up_to(max_wait))
            .await
    }

    /// [`wait`](Self::wait) with a cost and wait options.
    pub async fn wait_with(
        &self,
        key: &str,
        request: Request,
        wait: &Wait,
    ) -> Result<AllDecision, Error> {
        match wait.until_allowed(|| self.check_with(key, request)).await {
            Ok(d) => Ok(d),
            Err(WaitError::TimedOut { last }) => Err(Error::TimedOut { last }),
            Err(WaitError::Never { last }) => Err(Error::NeverAllowed { last }),
            Err(WaitError::Failed(e)) => Err(e),
        }
    }

    fn command(&self, keys: &[String], request: Request) -> Cmd {
        let pairs = self.limits.iter().zip(keys);
        if let (1, Some((l, k))) = (self.limits.len(), pairs.clone().next()) {
            return cmd_limit(k.as_str(), l.policy(), request);
        }
        all_parts(
            request,
            pairs.map(|(l, k)| (k.as_bytes(), l.policy(), None)),
        )
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.state.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn skipping_redis(&self) -> bool {
        let until = self.state.down_until.load(Ordering::Relaxed);
        until != 0 && self.now_ns() < until
    }

    fn mark_down(&self) {
        if self.cooldown.is_zero() {
            return;
        }
        let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
        let until = self.now_ns().saturating_add(cooldown).max(1);
        self.state.down_until.store(until, Ordering::Relaxed);
    }

    /// The failure policy's answer.
    fn unavailable(&self, keys: &[String], request: Request) -> AllDecision {
        let limit = self.limits.get(0).map_or(0, |l| l.policy().limit());
        match self.failure {
            FailurePolicy::FailOpen => AllDecision::new(
                Decision::local(
                    true,
                    limit,
                    0,
                    Some(Duration::ZERO),
                    Duration::ZERO,
                    Source::FailOpen,
                ),
                0,
            ),
            FailurePolicy::FailClosed => {
                let retry = self.cooldown.max(Duration::from_secs(1));
                AllDecision::new(
                    Decision::local(false, limit, 0, Some(retry), retry, Source::FailClosed),
                    0,
                )
            }
            FailurePolicy::Fallback(share) => {
                let specs: Option<Vec<Spec>> = self
                    .limits
                    .iter()
                    .map(|l| l.policy().spec().map(|s| local::share(s, share)))
                    .collect();
                // A poisoned lock only means another call panicked while
                // holding it; the map is still a valid map.
                let mut local = self
                    .state
                    .local
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                specs
                    .and_then(|specs| local.decide(keys, &specs, request, wall_clock()))
                    .unwrap_or_else(|| {
                        AllDecision::new(
                            Decision::local(
                                false,
                                limit,
                                0,
                                None,
                                Duration::ZERO,
                                Source::Fallback,
                            ),
                            0,
                        )
                    })
            }
        }
    }
}

/// Wall-clock nanoseconds since the Unix epoch: calendar windows need it.
fn wall_clock() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Nanos::ZERO, |d| {
            Nanos::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outages_are_told_from_answers() {
        let io = RedisError::from(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ));
        assert!(is_outage(&io));
        let parse = |text: &str| {
            let v = redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).unwrap();
            v.extract_error().unwrap_err()
        };
        assert!(is_outage(&parse(
            "LOADING Redis is loading the dataset in memory"
        )));
        assert!(is_outage(&parse("CLUSTERDOWN The cluster is down")));
        assert!(is_outage(&parse(
            "TRYAGAIN Multiple keys request during rehashing of slot"
        )));
        assert!(is_outage(&parse(
            "READONLY You can't write against a read only replica."
        )));
        assert!(is_outage(&parse(
            "OOM command not allowed when used memory > 'maxmemory'."
        )));
        assert!(!is_outage(&parse("ERR syntax error")));
        assert!(!is_outage(&parse("ERR unknown command 'RL.GCRA'")));
        assert!(!is_outage(&parse(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )));
    }
}
