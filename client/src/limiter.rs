//! [`Limiter`]: a reconnecting connection, a set of limits, a per-call
//! timeout and what to do when Redis cannot answer. Each call builds the
//! keys from the caller's key (`rl:{user42}:minute`: the hash tag keeps one
//! caller's limits in one cluster slot), sends one command (`RL.ALL` for
//! several limits), and, if Redis is unreachable or slower than the
//! timeout, answers by the [`FailurePolicy`] instead of failing the caller.
//!
//! What is shared with the blocking [`crate::blocking::Limiter`] lives
//! here: [`Config`] (what the limiter is) and [`Shared`] (what its clones
//! share: the outage state, the fallback's state, the lines of waiters).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, RedisError, RedisFuture, Value};
use redis_ratelimit_core::limit::{Rules, Spec};
use redis_ratelimit_core::render::Charge;
use redis_ratelimit_core::time::Nanos;

use crate::cluster::ClusterRouted;
use crate::commands::{
    all_parts, cmd_limit, cmd_policy_list, cmd_policy_set, cmd_release, cmd_renew, cmd_settle,
    Mode, Request,
};
use crate::error::{Error, PolicyError};
use crate::limits::{Limit, Limits, NamedPolicy, Policy};
use crate::local::{self, Local, Share};
use crate::reply::{AllDecision, Decision, Settlement, Source};
use crate::wait::{Wait, WaitError};

/// What a [`Limiter`] answers when Redis cannot be reached, fails with an
/// outage error (`LOADING`, `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`,
/// `READONLY`, `BUSY`, `OOM`, connection errors) or does not answer within
/// the timeout. Other errors (a wrong key type, an unknown command) are
/// bugs to see, not outages: they come back as [`Error::Redis`].
///
/// There is no default: [`Limiter::new`] asks for one, because the right
/// answer depends on what the limit protects. The worst case of each, for
/// one process while Redis is away (and until [`BACK_TO_REDIS`] after it
/// answers again):
///
/// | policy | admits during the outage |
/// |---|---|
/// | `FailOpen` | everything |
/// | `FailClosed` | nothing |
/// | `Fallback(Share::Whole)` | each limit's own quota per process, by its own algorithm, starting from what Redis had counted at this process's last decision on the key: one process admits no more than Redis would have; N processes, up to N times what was left |
/// | `Fallback(Share::divided_by(n))` | `limit / n` per process (a bucket also refills at `1/n` of its rate), less what Redis had counted: with n processes, at most the limit |
///
/// What the fallback cannot know, and can let through on top (about one
/// quota at most): units other processes took through Redis after this
/// process's last decision on the key; with several limits, those of a
/// limit that was not the binding one in that decision (Redis's reply
/// describes the binding limit only; the others start from the last
/// decision they bound, or empty); a call whose reply was lost in the
/// outage; keys whose seed did not fit in [`DEFAULT_FALLBACK_KEYS`]; and,
/// when the outage ends, what the fallback admitted (Redis never hears of
/// it: up to one share more in the window after its return).
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
    /// local midnight, a named policy keeps its SHADOW and LOCKOUT rules,
    /// several limits are still all or nothing. The quota is shared as
    /// `Share` says. Each key starts from the last decision Redis gave
    /// this process for it (units taken, and until when), so the quota
    /// Redis handed out just before the outage is not handed out again;
    /// the seed is conservative (units count from when the reply arrived,
    /// never earlier). Each key's state is kept until it is fresh again, at
    /// most [`DEFAULT_FALLBACK_KEYS`] keys (see
    /// [`Limiter::with_fallback_keys`]: new keys are denied when full).
    /// Units taken during the outage are not known to Redis, so across the
    /// outage's end (and with `Share::Whole`, across processes) up to one
    /// more quota can get through; the table above lists the rest.
    Fallback(Share),
}

/// The time a call waits for Redis before the failure policy answers.
/// The async [`Limiter`] counts it so that its own runtime's overload is
/// not taken for an outage: time the runtime spent too busy to read the
/// reply does not count (see [`Limiter::with_timeout`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// After an outage, calls skip Redis this long (answering by the failure
/// policy at once) before trying it again.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(1);
/// The key prefix.
pub const DEFAULT_PREFIX: &str = "rl:";
/// The most keys (one per limit and caller key) the in-process fallback
/// keeps while Redis is away, unless [`Limiter::with_fallback_keys`] says
/// otherwise. A key costs about 150 bytes plus its name, and a sliding
/// window's a few bytes more per unit in its window: some 10 MB for
/// 50,000 keys of small limits. While Redis answers, as many seeds (the
/// last decision Redis gave for a key, some 100 bytes plus its name) are
/// kept for the keys in use.
pub const DEFAULT_FALLBACK_KEYS: usize = 50_000;
/// A connection attempt of [`Limiter::connect`] gives up after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The longest pause between reconnection attempts of [`Limiter::connect`].
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);
/// The worst case, with the defaults, between Redis answering again and a
/// [`Limiter::connect`] limiter's calls being decided by it: the cooldown
/// in progress, then one reconnection pause and one connection attempt
/// (a call that finds the connection broken starts the reconnection at
/// once). With other settings: cooldown + [`RECONNECT_MAX_DELAY`] +
/// [`CONNECT_TIMEOUT`].
pub const BACK_TO_REDIS: Duration = Duration::from_millis(2000);

/// Whether the limiter's last call was decided by Redis.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Health {
    /// Redis decided the last call.
    Healthy,
    /// Redis could not answer the last call: the [`FailurePolicy`]
    /// decides, and calls skip Redis until the cooldown ends.
    Degraded,
}

mod sealed {
    pub trait Sealed {}
}

/// A connection that comes back by itself after Redis restarts or the
/// network breaks: what a [`Limiter`] needs, so an outage of Redis ends
/// for the limiter when it ends for Redis. `ConnectionManager` (standalone
/// Redis), the async cluster connection and [`ClusterRouted`] are; a
/// `MultiplexedConnection` is not (it stays broken after a disconnect),
/// and does not compile here. [`Limiter::connect`] builds the right one.
pub trait Reconnecting: ConnectionLike + Clone + Send + Sync + 'static + sealed::Sealed {
    /// Sends `cmd` to every primary (one, unless a cluster); each reply
    /// with the node it came from (`host:port`).
    fn every_primary<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Vec<(String, Value)>>;
}

impl sealed::Sealed for ConnectionManager {}
impl Reconnecting for ConnectionManager {
    /// The one server, named by the address it serves this connection on
    /// (`host:port`, from `CLIENT INFO`'s `laddr`; "standalone server" if
    /// it does not say).
    fn every_primary<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Vec<(String, Value)>> {
        Box::pin(async move {
            let v = self.req_packed_command(cmd).await?;
            let node = server_address(self)
                .await
                .unwrap_or_else(|| "standalone server".to_string());
            Ok(vec![(node, v)])
        })
    }
}

/// The address the server serves `conn` on, as `CLIENT INFO` says
/// (`laddr=127.0.0.1:6379`).
async fn server_address(conn: &mut ConnectionManager) -> Option<String> {
    let info: String = redis::cmd("CLIENT")
        .arg("INFO")
        .query_async(conn)
        .await
        .ok()?;
    info.split_whitespace()
        .find_map(|field| field.strip_prefix("laddr="))
        .map(str::to_string)
}

fn all_primaries(v: Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| {
                let node = match k {
                    Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                };
                (node, v)
            })
            .collect(),
        other => vec![("cluster".to_string(), other)],
    }
}

impl sealed::Sealed for redis::cluster_async::ClusterConnection {}
impl Reconnecting for redis::cluster_async::ClusterConnection {
    fn every_primary<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Vec<(String, Value)>> {
        let routing = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        Box::pin(async move {
            let v = self.route_command(cmd.clone(), routing).await?;
            Ok(all_primaries(v))
        })
    }
}

impl sealed::Sealed for ClusterRouted {}
impl Reconnecting for ClusterRouted {
    fn every_primary<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Vec<(String, Value)>> {
        self.inner_mut().every_primary(cmd)
    }
}

/// What a limiter is: its limits, keys, timeouts and failure policy.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) limits: Arc<Limits>,
    pub(crate) prefix: Arc<str>,
    pub(crate) timeout: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) failure: FailurePolicy,
    pub(crate) on_health: Option<Arc<dyn Fn(Health) + Send + Sync>>,
    /// The most keys the fallback keeps.
    pub(crate) fallback_keys: usize,
    /// Leases renew themselves while held ([`Limiter::with_lease_keep_alive`]).
    pub(crate) lease_keep_alive: bool,
}

/// A reservation's `RL.ALL`: the anchor's key, the (position, key) of each
/// limit reserved on, and the command.
pub(crate) type ReservationPlan = (String, Vec<(usize, String)>, Cmd);

/// Whether the server takes `BLOCK` (older modules answer `ERR syntax
/// error`): not known yet, yes, no.
const BLOCK_UNKNOWN: u8 = 0;
const BLOCK_YES: u8 = 1;
const BLOCK_NO: u8 = 2;

/// What a limiter's clones share.
pub(crate) struct Shared {
    /// The monotonic origin of `now_ns`.
    origin: Instant,
    /// Until when (ns since `origin`) Redis is skipped; 0: not skipped.
    down_until: AtomicU64,
    degraded: AtomicBool,
    local: Mutex<Local>,
    pub(crate) block: AtomicU8,
    /// One line per key for waiters that poll (FIFO in this process).
    lines: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl Shared {
    pub(crate) fn new() -> Shared {
        Shared {
            origin: Instant::now(),
            down_until: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            local: Mutex::new(Local::default()),
            block: AtomicU8::new(BLOCK_UNKNOWN),
            lines: Mutex::new(HashMap::new()),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn local(&self) -> std::sync::MutexGuard<'_, Local> {
        // A poisoned lock only means another call panicked while holding
        // it; the map is still a valid map.
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The line of waiters on `key` in this process (tokio's mutex serves
    /// its waiters first come, first served).
    pub(crate) fn line(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lines.get(key).and_then(Weak::upgrade) {
            return l;
        }
        lines.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(tokio::sync::Mutex::new(()));
        lines.insert(key.to_string(), Arc::downgrade(&l));
        l
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

/// An old module's answer to an option it does not know (`BLOCK`).
pub(crate) fn is_unknown_option(e: &RedisError) -> bool {
    e.code() == Some("ERR") && e.detail().is_some_and(|d| d.starts_with("syntax error"))
}

impl Config {
    pub(crate) fn new(limits: Limits, failure: FailurePolicy) -> Config {
        Config {
            limits: Arc::new(limits),
            prefix: Arc::from(DEFAULT_PREFIX),
            timeout: DEFAULT_TIMEOUT,
            cooldown: DEFAULT_COOLDOWN,
            failure,
            on_health: None,
            fallback_keys: DEFAULT_FALLBACK_KEYS,
            lease_keep_alive: true,
        }
    }

    pub(crate) fn set_prefix(&mut self, prefix: &str) -> Result<(), PolicyError> {
        if prefix.contains(['{', '}']) {
            return Err(PolicyError::InvalidPrefix {
                prefix: prefix.to_string(),
            });
        }
        self.prefix = Arc::from(prefix);
        Ok(())
    }

    /// `{prefix}{{key}}:{name}` for every limit.
    pub(crate) fn keys(&self, key: &str) -> Result<Vec<String>, Error> {
        if key.is_empty() {
            return Err(Error::InvalidKey {
                reason: "the key is empty (it would not be a hash tag)",
            });
        }
        Ok(self
            .limits
            .iter()
            .map(|l| format!("{}{{{}}}:{}", self.prefix, key, l.name()))
            .collect())
    }

    /// The one command a call sends: the limit's own, or `RL.ALL`.
    pub(crate) fn command(&self, keys: &[String], request: Request) -> Cmd {
        let pairs = self.limits.iter().zip(keys);
        if let (1, Some((l, k))) = (self.limits.len(), pairs.clone().next()) {
            return cmd_limit(k.as_str(), l.policy(), request);
        }
        all_parts(
            request,
            pairs.map(|(l, k)| (k.as_bytes(), l.policy(), Charge::Call)),
        )
    }

    /// The `RL.ALL` of a reservation for `keys`: the CONCURRENCY limit's
    /// key (the anchor), the keys the estimate is reserved on, and the
    /// command.
    pub(crate) fn reservation(
        &self,
        keys: &[String],
        estimate: &Estimate,
    ) -> Result<ReservationPlan, Error> {
        let Some((anchor, _)) = self.lease_limit(keys) else {
            return Err(Error::NotReservable {
                reason: "a reservation needs a CONCURRENCY limit: its lease is the reservation",
            });
        };
        if let Some(name) = estimate
            .on
            .iter()
            .find(|n| !self.limits.iter().any(|l| l.name() == n.as_str()))
        {
            return Err(Error::NotReservable {
                reason: if name.is_empty() {
                    "an estimate names an empty limit name"
                } else {
                    "an estimate names a limit the limiter does not have"
                },
            });
        }
        let estimated = |l: &Limit| {
            !l.policy().is_concurrency()
                && (estimate.on.is_empty() || estimate.on.iter().any(|n| n == l.name()))
        };
        let reserved: Vec<(usize, String)> = self
            .limits
            .iter()
            .zip(keys)
            .enumerate()
            .filter(|(_, (l, _))| estimated(l))
            .map(|(i, (_, k))| (i, k.clone()))
            .collect();
        if reserved.is_empty() {
            return Err(Error::NotReservable {
                reason: "a reservation needs a limit other than its CONCURRENCY one to estimate",
            });
        }
        let clauses = self.limits.iter().zip(keys).map(|(l, k)| {
            let charge = if estimated(l) {
                Charge::Estimate(estimate.units)
            } else {
                Charge::Call
            };
            (k.as_bytes(), l.policy(), charge)
        });
        let cmd = all_parts(Request::new(1), clauses);
        Ok((anchor.clone(), reserved, cmd))
    }

    /// Reads the reply to [`command`](Self::command).
    pub(crate) fn decode(&self, v: &Value) -> Result<AllDecision, RedisError> {
        if self.limits.len() == 1 {
            Ok(AllDecision::new(Decision::from_reply(v)?, 0))
        } else {
            Ok(AllDecision::from_reply(v)?)
        }
    }

    /// The Redis key and lease time of the CONCURRENCY limit for caller
    /// `key` (empty and zero if the set has none).
    pub(crate) fn lease_of(&self, key: &str) -> (String, Duration) {
        let keys = self.keys(key).unwrap_or_default();
        self.lease_limit(&keys)
            .map(|(k, l)| (k.clone(), l.policy().window()))
            .unwrap_or_default()
    }

    /// The key and limit of the CONCURRENCY limit, if the set has one.
    pub(crate) fn lease_limit<'a>(&'a self, keys: &'a [String]) -> Option<(&'a String, &'a Limit)> {
        keys.iter()
            .zip(self.limits.iter())
            .find(|(_, l)| l.policy().is_concurrency())
    }

    pub(crate) fn skipping_redis(&self, shared: &Shared) -> bool {
        let until = shared.down_until.load(Ordering::Relaxed);
        until != 0 && shared.now_ns() < until
    }

    pub(crate) fn mark_down(&self, shared: &Shared) {
        if !self.cooldown.is_zero() {
            let cooldown = u64::try_from(self.cooldown.as_nanos()).unwrap_or(u64::MAX);
            let until = shared.now_ns().saturating_add(cooldown).max(1);
            shared.down_until.store(until, Ordering::Relaxed);
        }
        if !shared.degraded.swap(true, Ordering::Relaxed) {
            if let Some(hook) = &self.on_health {
                hook(Health::Degraded);
            }
        }
    }

    pub(crate) fn mark_up(&self, shared: &Shared) {
        shared.down_until.store(0, Ordering::Relaxed);
        if shared.degraded.swap(false, Ordering::Relaxed) {
            if let Some(hook) = &self.on_health {
                hook(Health::Healthy);
            }
        }
    }

    pub(crate) fn health(&self, shared: &Shared) -> Health {
        if shared.degraded.load(Ordering::Relaxed) {
            Health::Degraded
        } else {
            Health::Healthy
        }
    }

    /// What a call sent at `sent` (wall clock) answers, given what Redis
    /// did: its decision, or the failure policy's for an outage (`None`: no
    /// answer in time).
    pub(crate) fn outcome(
        &self,
        shared: &Shared,
        keys: &[String],
        request: Request,
        sent: Nanos,
        reply: Option<Result<Value, RedisError>>,
    ) -> Result<AllDecision, Error> {
        match reply {
            Some(Ok(v)) => {
                self.mark_up(shared);
                let d = self.decode(&v)?;
                self.remember(shared, keys, request, sent, &d);
                Ok(d)
            }
            Some(Err(e)) if is_outage(&e) => {
                self.mark_down(shared);
                Ok(self.unavailable(shared, keys, request))
            }
            Some(Err(e)) => {
                // Redis answered: it is up, whatever it said.
                self.mark_up(shared);
                Err(Error::Redis(e))
            }
            None => {
                self.mark_down(shared);
                Ok(self.unavailable(shared, keys, request))
            }
        }
    }

    /// Hands a decision of Redis to the fallback, which starts the key
    /// from it if Redis fails (only under [`FailurePolicy::Fallback`]; a
    /// dry run's numbers are those of a request not made, and are left
    /// out).
    pub(crate) fn remember(
        &self,
        shared: &Shared,
        keys: &[String],
        request: Request,
        sent: Nanos,
        d: &AllDecision,
    ) {
        if !matches!(self.failure, FailurePolicy::Fallback(_)) || request.mode() == Mode::DryRun {
            return;
        }
        let seed = local::Seed::of(&d.decision, sent, wall_clock());
        shared
            .local()
            .remember(keys, d.binding, seed, self.fallback_keys);
    }

    /// The failure policy's answer.
    pub(crate) fn unavailable(
        &self,
        shared: &Shared,
        keys: &[String],
        request: Request,
    ) -> AllDecision {
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
                let specs: Option<Vec<(Spec, Rules)>> = self
                    .limits
                    .iter()
                    .map(|l| {
                        l.policy()
                            .spec()
                            .map(|s| (local::share(s, share), l.policy().rules()))
                    })
                    .collect();
                specs
                    .and_then(|specs| {
                        shared.local().decide(
                            keys,
                            &specs,
                            request,
                            wall_clock(),
                            self.fallback_keys,
                        )
                    })
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

    /// Who answers while Redis cannot: the failure policy, as a source.
    pub(crate) fn failure_source(&self) -> Source {
        match self.failure {
            FailurePolicy::FailOpen => Source::FailOpen,
            FailurePolicy::FailClosed => Source::FailClosed,
            FailurePolicy::Fallback(_) => Source::Fallback,
        }
    }

    /// Gives a fallback lease back (Redis never saw it).
    pub(crate) fn release_local(&self, shared: &Shared, key: &str, id: u64) -> bool {
        shared.local().release(key, id, wall_clock())
    }

    pub(crate) fn renew_local(&self, shared: &Shared, key: &str, id: u64, lease: Duration) -> bool {
        let lease = Nanos::new(u64::try_from(lease.as_nanos()).unwrap_or(u64::MAX));
        shared.local().renew(key, id, lease, wall_clock())
    }

    /// The named policies among the limits.
    pub(crate) fn named(&self) -> Vec<&NamedPolicy> {
        self.limits
            .iter()
            .filter_map(|l| match l.policy() {
                Policy::Named(p) => Some(p),
                _ => None,
            })
            .collect()
    }
}

/// How a wait ends for a limiter.
pub(crate) fn wait_result(
    r: Result<AllDecision, WaitError<AllDecision, Error>>,
) -> Result<AllDecision, Error> {
    match r {
        Ok(d) => Ok(d),
        Err(WaitError::TimedOut { last }) => Err(Error::TimedOut { last }),
        Err(WaitError::Never { last }) => Err(Error::NeverAllowed { last }),
        Err(WaitError::Failed(e)) => Err(e),
    }
}

/// Connections that wait in line (`BLOCK`): each waiter needs one of its
/// own, since a connection waits with the request it carries.
pub(crate) struct WaitConnections {
    client: redis::Client,
    idle: Mutex<Vec<MultiplexedConnection>>,
}

/// Idle waiting connections kept for reuse.
const MAX_IDLE_WAIT_CONNECTIONS: usize = 64;
/// How much longer than its BLOCK a waiting call may take before the
/// connection counts as lost.
const BLOCK_SLACK: Duration = Duration::from_secs(2);

impl WaitConnections {
    async fn take(&self) -> Result<MultiplexedConnection, RedisError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        if let Some(c) = idle {
            return Ok(c);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(None);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn put(&self, c: MultiplexedConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE_WAIT_CONNECTIONS {
            idle.push(c);
        }
    }
}

/// A shared rate limiter: cheap to clone (clones share the connection,
/// the fallback state and the outage state), usable from many tasks at
/// once.
///
/// ```no_run
/// use redis_ratelimit_client::{redis, Limiter, Limits, FailurePolicy, SlidingWindow};
/// use std::time::Duration;
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::Client::open("redis://127.0.0.1/")?;
/// let limits = Limits::single("minute", SlidingWindow::new(100, Duration::from_secs(60))?)?;
/// let limiter = Limiter::connect(&client, limits, FailurePolicy::FailOpen)?
///     .with_timeout(Duration::from_millis(50));
/// let verdict = limiter.check("user42").await?; // key rl:{user42}:minute
/// if !verdict.allowed() { /* 429 */ }
/// # Ok(()) }
/// ```
pub struct Limiter<C> {
    conn: C,
    pub(crate) config: Config,
    pub(crate) shared: Arc<Shared>,
    waits: Option<Arc<WaitConnections>>,
}

impl<C: Clone> Clone for Limiter<C> {
    fn clone(&self) -> Self {
        Limiter {
            conn: self.conn.clone(),
            config: self.config.clone(),
            shared: self.shared.clone(),
            waits: self.waits.clone(),
        }
    }
}

impl<C> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("limits", &self.config.limits)
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
            .field("cooldown", &self.config.cooldown)
            .field("failure", &self.config.failure)
            .field("health", &self.config.health(&self.shared))
            .finish_non_exhaustive()
    }
}

/// The reconnection [`Limiter::connect`] sets up.
fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(20))
        .set_max_delay(RECONNECT_MAX_DELAY)
        .set_number_of_retries(usize::MAX)
}

impl Limiter<ConnectionManager> {
    /// A limiter on a standalone Redis (or a primary behind a proxy) that
    /// reconnects by itself, whenever Redis is back: it never stays on its
    /// failure policy after an outage for longer than [`BACK_TO_REDIS`].
    /// It starts even if Redis is down (the failure policy answers until
    /// it is up). Waits ([`wait`](Self::wait)) wait in line inside the
    /// server, each on a connection of its own.
    ///
    /// It must be called inside a tokio runtime (its connection runs
    /// there): from async code, or within `Runtime::enter`. Outside one it
    /// is [`Error::NoRuntime`], not a panic; code without a runtime has
    /// [`blocking::Limiter`](crate::blocking::Limiter).
    pub fn connect(
        client: &redis::Client,
        limits: Limits,
        failure: FailurePolicy,
    ) -> Result<Limiter<ConnectionManager>, Error> {
        // redis-rs would panic ("no reactor running") spawning its task.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoRuntime);
        }
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), manager_config())?;
        let mut limiter = Limiter::new(conn, limits, failure);
        limiter.waits = Some(Arc::new(WaitConnections {
            client: client.clone(),
            idle: Mutex::new(Vec::new()),
        }));
        Ok(limiter)
    }
}

impl Limiter<ClusterRouted> {
    /// A limiter on a Redis Cluster (the async cluster connection
    /// reconnects and follows failovers and slot moves by itself; `RL.ALL`
    /// goes straight to its keys' node). Waits poll, in line per key in
    /// this process.
    pub async fn connect_cluster(
        client: &redis::cluster::ClusterClient,
        limits: Limits,
        failure: FailurePolicy,
    ) -> Result<Limiter<ClusterRouted>, Error> {
        let conn = client.get_async_connection().await?;
        Ok(Limiter::new(ClusterRouted::new(conn), limits, failure))
    }
}

impl<C: Reconnecting> Limiter<C> {
    /// A limiter on a connection that reconnects by itself (see
    /// [`Reconnecting`]), with the default timeout (100 ms), cooldown
    /// (1 s) and key prefix (`rl:`). The failure policy is required.
    /// Waits poll (in line per key in this process); [`connect`](Limiter::connect)
    /// waits in line inside the server.
    pub fn new(conn: C, limits: Limits, failure: FailurePolicy) -> Limiter<C> {
        Limiter {
            conn,
            config: Config::new(limits, failure),
            shared: Arc::new(Shared::new()),
            waits: None,
        }
    }

    /// Stores every named policy of the limits in the server (every
    /// primary of a cluster), then checks that every primary holds the
    /// same definitions of them: [`Error::PoliciesDisagree`] if not.
    pub async fn store_policies(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        for p in self.config.named() {
            store_policy(&mut conn, p).await?;
        }
        Ok(())
    }

    /// Checks, without changing anything, that every primary holds the
    /// limits' named policies as defined here.
    pub async fn check_policies(&self) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        for p in self.config.named() {
            check_policy(&mut conn, p).await?;
        }
        Ok(())
    }
}

/// The connections a limiter works on (every [`Reconnecting`] one).
pub trait LimiterConnection: ConnectionLike + Clone + Send + Sync + 'static {}
impl<T: ConnectionLike + Clone + Send + Sync + 'static> LimiterConnection for T {}

impl<C: LimiterConnection> Limiter<C> {
    /// How long a call waits for Redis before the failure policy answers
    /// (default [`DEFAULT_TIMEOUT`]).
    ///
    /// It is Redis's time, not the application's: the wait is counted in
    /// four steps, each of which counts only once its timer has fired and
    /// every task queued on the runtime has had a turn (the one reading
    /// Redis's replies among them). On a responsive runtime a call gives
    /// up after the timeout; on one too busy to poll its tasks on time
    /// (many tasks, CPU-bound work between awaits), it waits as long as
    /// the stall, and reads the reply Redis sent, instead of taking the
    /// application's overload for a Redis outage (which put the limiter on
    /// its failure policy again and again while Redis was idle).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// After an outage, how long calls skip Redis (so a dead server does
    /// not cost every call the full timeout). Zero: always try Redis.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }

    /// The key prefix (default `rl:`); no `{` or `}` in it.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, PolicyError> {
        self.config.set_prefix(prefix)?;
        Ok(self)
    }

    /// The most keys (one per limit and caller key) the
    /// [`FailurePolicy::Fallback`] keeps in this process while Redis is away
    /// (default [`DEFAULT_FALLBACK_KEYS`]; at least 1), so random keys sent
    /// during an outage cannot grow the application's memory; as many
    /// seeds (Redis's last decision per key) while Redis answers. A key is
    /// forgotten only when its state is fresh again; a key still counting
    /// is never evicted (that would reset its limit). When the map is full,
    /// a call that would add a key is denied (`Source::Fallback`, with a
    /// `retry_after` of when a key may be fresh again); callers already
    /// known carry on.
    pub fn with_fallback_keys(mut self, max_keys: usize) -> Self {
        self.config.fallback_keys = max_keys.max(1);
        self
    }

    /// Whether the leases [`acquire`](Self::acquire) and
    /// [`acquire_wait`](Self::acquire_wait) hand out renew themselves in
    /// the background while held (default `true`, see [`Lease`]). With
    /// `false`, a lease ends at the limit's lease time even while its
    /// guard lives, unless renewed ([`Lease::renew`], [`Lease::keep_alive`]).
    pub fn with_lease_keep_alive(mut self, keep_alive: bool) -> Self {
        self.config.lease_keep_alive = keep_alive;
        self
    }

    /// Called with the new [`Health`] each time it changes: Redis stopped
    /// answering (`Degraded`), or decides again (`Healthy`). Runs inside the
    /// call that saw the change: keep it short (log, count, flip a flag).
    pub fn on_health_change(mut self, hook: impl Fn(Health) + Send + Sync + 'static) -> Self {
        self.config.on_health = Some(Arc::new(hook));
        self
    }

    /// The limits every call checks.
    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }
    /// What answers while Redis cannot.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.config.failure
    }
    /// How long a call waits for Redis (see [`with_timeout`](Self::with_timeout)).
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }
    /// The key prefix (default `rl:`).
    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// Is the failure policy deciding (Redis did not answer the last call)?
    pub fn is_degraded(&self) -> bool {
        self.health() == Health::Degraded
    }

    /// Whether Redis decided the last call.
    pub fn health(&self) -> Health {
        self.config.health(&self.shared)
    }

    /// The Redis keys a caller's key maps to, one per limit:
    /// `{prefix}{{key}}:{name}`.
    pub fn keys(&self, key: &str) -> Vec<String> {
        self.config.keys(key).unwrap_or_default()
    }

    /// Takes one unit for `key`.
    pub async fn check(&self, key: &str) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(1)).await
    }

    /// Takes (or dry-runs, or refunds) `request` for `key`, on every
    /// limit. A `BLOCK` in the request is ignored here: see
    /// [`wait`](Self::wait).
    pub async fn check_with(&self, key: &str, request: Request) -> Result<AllDecision, Error> {
        let request = without_block(request);
        let keys = self.config.keys(key)?;
        if self.config.skipping_redis(&self.shared) {
            return Ok(self.config.unavailable(&self.shared, &keys, request));
        }
        let cmd = self.config.command(&keys, request);
        let mut conn = self.conn.clone();
        let sent = wall_clock();
        let reply = within(self.config.timeout, send(&mut conn, &cmd)).await;
        self.config
            .outcome(&self.shared, &keys, request, sent, reply)
    }

    /// Gives `cost` units back to every limit of `key` (the work did not
    /// happen).
    pub async fn refund(&self, key: &str, cost: u64) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(cost).refund()).await
    }

    /// Waits until one unit for `key` is allowed, for at most `max_wait`
    /// (never less: a wait that cannot be admitted in time still lasts to
    /// its deadline). See [`wait_with`](Self::wait_with).
    pub async fn wait(&self, key: &str, max_wait: Duration) -> Result<AllDecision, Error> {
        self.wait_with(key, Request::new(1), &Wait::up_to(max_wait))
            .await
    }

    /// Waits until `request` is allowed for `key`, first come, first
    /// served:
    /// - a [`connect`](Limiter::connect) limiter waits in line inside the
    ///   server (`BLOCK`), on a connection of its own: admitted at the
    ///   instant the limits allow, before anyone who came later from any
    ///   process;
    /// - otherwise (a cluster, a connection given to [`new`](Limiter::new),
    ///   a module without `BLOCK`, Redis away) it polls as [`Wait`] says,
    ///   and the waiters of this process on one key take turns in arrival
    ///   order (only the first polls).
    pub async fn wait_with(
        &self,
        key: &str,
        request: Request,
        wait: &Wait,
    ) -> Result<AllDecision, Error> {
        let request = without_block(request);
        let keys = self.config.keys(key)?;
        let deadline = crate::wait::deadline_after(wait.max_wait());
        if request.mode() == Mode::Consume {
            if let Some(d) = self.wait_in_server(&keys, request, deadline).await? {
                return d;
            }
        }
        // Polling, in line in this process.
        let line = self.shared.line(&keys.join(" "));
        let turn = tokio::time::timeout_at(deadline, line.lock()).await;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _turn = match turn {
            Ok(guard) => guard,
            Err(_) => {
                // The deadline came while others were first: one last try.
                let last = self.check_with(key, request).await?;
                return if last.decision.allowed {
                    Ok(last)
                } else {
                    Err(Error::TimedOut { last })
                };
            }
        };
        let wait = Wait::up_to(left).max_jitter(wait.jitter());
        wait_result(wait.until_allowed(|| self.check_with(key, request)).await)
    }

    /// A wait in line inside the server: `Ok(None)` when it cannot (no
    /// waiting connections, a module without BLOCK, Redis away): poll.
    async fn wait_in_server(
        &self,
        keys: &[String],
        request: Request,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Result<AllDecision, Error>>, Error> {
        let Some(waits) = &self.waits else {
            return Ok(None);
        };
        if self.shared.block.load(Ordering::Relaxed) == BLOCK_NO
            || self.config.skipping_redis(&self.shared)
        {
            return Ok(None);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(Ok(mut conn)) =
            within(self.config.timeout.max(CONNECT_TIMEOUT), waits.take()).await
        else {
            self.config.mark_down(&self.shared);
            return Ok(None);
        };
        let cmd = self.config.command(keys, request.block(left));
        let sent = wall_clock();
        let reply = within(left.saturating_add(BLOCK_SLACK), send(&mut conn, &cmd)).await;
        let d = match reply {
            Some(Ok(v)) => {
                waits.put(conn);
                self.shared.block.store(BLOCK_YES, Ordering::Relaxed);
                self.config.mark_up(&self.shared);
                let d = self.config.decode(&v)?;
                self.config.remember(&self.shared, keys, request, sent, &d);
                d
            }
            Some(Err(e)) if is_unknown_option(&e) => {
                waits.put(conn);
                self.shared.block.store(BLOCK_NO, Ordering::Relaxed);
                return Ok(None);
            }
            // A failover (UNBLOCKED, TRYAGAIN) or an outage: poll, which
            // the failure policy answers while Redis is away.
            Some(Err(e)) if is_outage(&e) || e.code() == Some("UNBLOCKED") => return Ok(None),
            Some(Err(e)) => {
                waits.put(conn);
                return Err(Error::Redis(e));
            }
            // No answer long after the BLOCK ended: the connection is lost.
            None => {
                self.config.mark_down(&self.shared);
                return Ok(None);
            }
        };
        Ok(Some(if d.decision.allowed {
            Ok(d)
        } else if d.decision.is_never() {
            Err(Error::NeverAllowed { last: d })
        } else {
            Err(Error::TimedOut { last: d })
        }))
    }

    /// Takes a slot of the limits' CONCURRENCY limit (and a unit of every
    /// other limit, all or nothing) for `key`: a [`Lease`] that holds the
    /// slot while it lives (renewing it in the background, see
    /// [`with_lease_keep_alive`](Self::with_lease_keep_alive)) and gives it
    /// back when dropped, or the denial. Every admission is a lease: one
    /// that holds no slot (FailOpen, a SHADOW policy over a full limit) has
    /// id 0 (see [`Lease::id`]).
    pub async fn acquire(&self, key: &str) -> Result<Acquired<C>, Error> {
        let d = self.check_with(key, Request::new(1)).await?;
        Ok(self.acquired(key, d))
    }

    /// [`acquire`](Self::acquire), waiting up to `max_wait` for a slot
    /// (first come, first served, as [`wait_with`](Self::wait_with)).
    pub async fn acquire_wait(&self, key: &str, max_wait: Duration) -> Result<Lease<C>, Error> {
        let d = self.wait(key, max_wait).await?;
        match self.acquired(key, d) {
            Acquired::Granted(lease) => Ok(lease),
            Acquired::Denied(last) => Err(Error::TimedOut { last }),
        }
    }

    /// Reserves `estimate` units for `key` on the limits it names (every
    /// limit but the CONCURRENCY one, unless [`Estimate::on`] says which),
    /// one unit on the others and a slot of the CONCURRENCY limit (the
    /// anchor), all or nothing, in one `RL.ALL`: a [`Reservation`] to
    /// [`settle`](Reservation::settle) with the actual cost when the work
    /// is done, or the denial (a limit in debt denies, with the wait until
    /// the debt is paid back as `retry_after`).
    ///
    /// The limits need a [`Concurrency`](crate::Concurrency) limit
    /// ([`Error::NotReservable`] otherwise): its lease is the reservation.
    /// The reservation renews its lease while held, as a [`Lease`] does
    /// (see [`with_lease_keep_alive`](Self::with_lease_keep_alive)); one
    /// dropped without settling is settled at its estimate (its lease
    /// released); one whose process died ends with its lease, at its
    /// estimate.
    ///
    /// While Redis cannot answer, the [`FailurePolicy`] decides:
    /// `FailOpen` admits with a reservation that holds nothing (id 0: its
    /// settlement sends nothing and answers `settled: false`); `FailClosed`
    /// denies; `Fallback` decides in this process as [`acquire`](Self::acquire)
    /// does (one unit on every limit, a slot of the in-flight cap: the
    /// estimate and the settlement are not counted, Redis never hears of
    /// them, and the settlement answers `settled: false`).
    pub async fn reserve(
        &self,
        key: &str,
        estimate: impl Into<Estimate>,
    ) -> Result<Reserved<C>, Error> {
        let estimate = estimate.into();
        let keys = self.config.keys(key)?;
        let (anchor, reserved, cmd) = self.config.reservation(&keys, &estimate)?;
        let one = Request::new(1);
        let d = if self.config.skipping_redis(&self.shared) {
            self.config.unavailable(&self.shared, &keys, one)
        } else {
            let mut conn = self.conn.clone();
            let sent = wall_clock();
            let reply = within(self.config.timeout, send(&mut conn, &cmd)).await;
            self.config.outcome(&self.shared, &keys, one, sent, reply)?
        };
        if !d.decision.allowed {
            return Ok(Reserved::Denied(d));
        }
        let (_, lease) = self.config.lease_of(key);
        let mut held = Lease {
            limiter: self.clone(),
            key: anchor,
            id: d.decision.lease.unwrap_or(0),
            lease,
            decision: d,
            released: false,
            renewer: None,
        };
        if self.config.lease_keep_alive {
            held = held.keep_alive();
        }
        let (positions, keys) = reserved.into_iter().unzip();
        Ok(Reserved::Granted(Reservation {
            lease: held,
            keys,
            positions,
            estimate: estimate.units,
        }))
    }

    /// An allowed decision is a lease, with or without a slot (see
    /// [`Lease::id`]): "allowed, lease id 0" is an admission, never a
    /// denial.
    fn acquired(&self, key: &str, d: AllDecision) -> Acquired<C> {
        if !d.decision.allowed {
            return Acquired::Denied(d);
        }
        let (key, lease) = self.config.lease_of(key);
        let lease = Lease {
            limiter: self.clone(),
            key,
            id: d.decision.lease.unwrap_or(0),
            lease,
            decision: d,
            released: false,
            renewer: None,
        };
        Acquired::Granted(if self.config.lease_keep_alive {
            lease.keep_alive()
        } else {
            lease
        })
    }
}

/// `RL.POLICY SET` on every primary, then `RL.POLICY LIST` on every
/// primary: each must hold this definition under this name.
pub async fn store_policy<C: Reconnecting>(
    conn: &mut C,
    policy: &NamedPolicy,
) -> Result<(), Error> {
    let set = cmd_policy_set(policy);
    for (node, v) in conn.every_primary(&set).await? {
        if let Value::ServerError(e) = v {
            return Err(Error::Redis(RedisError::from(e).with_node(node)));
        }
    }
    check_policy(conn, policy).await
}

/// Checks that every primary holds `policy` as defined:
/// [`Error::PoliciesDisagree`] names the first node that does not.
pub async fn check_policy<C: Reconnecting>(
    conn: &mut C,
    policy: &NamedPolicy,
) -> Result<(), Error> {
    let listed = policies_everywhere(conn).await?;
    let want = policy.definition_text();
    for (node, list) in &listed {
        let held = list
            .iter()
            .find(|(n, _)| n == policy.name())
            .map(|(_, d)| d.as_str());
        if held != Some(want.as_str()) {
            return Err(Error::PoliciesDisagree {
                name: policy.name().to_string(),
                node: node.clone(),
                held: held.map(str::to_string),
                want: Some(want),
            });
        }
    }
    Ok(())
}

/// `RL.POLICY LIST` of every primary, by node.
pub async fn policies_everywhere<C: Reconnecting>(
    conn: &mut C,
) -> Result<Vec<(String, Vec<(String, String)>)>, Error> {
    let list = cmd_policy_list();
    let mut out = Vec::new();
    for (node, v) in conn.every_primary(&list).await? {
        if let Value::ServerError(e) = v {
            return Err(Error::Redis(RedisError::from(e).with_node(node)));
        }
        let policies: Vec<(String, String)> = redis::from_redis_value(v)?;
        out.push((node, policies));
    }
    Ok(out)
}

trait WithNode {
    fn with_node(self, node: String) -> RedisError;
}

impl WithNode for RedisError {
    fn with_node(self, node: String) -> RedisError {
        let detail = self.detail().unwrap_or_default().to_string();
        let code = self.code().unwrap_or("ERR").to_string();
        RedisError::from((
            redis::ErrorKind::Extension,
            "node error",
            format!("{node}: {code} {detail}"),
        ))
    }
}

/// What [`Limiter::acquire`] gives: a lease, or the denial.
#[derive(Debug)]
#[must_use = "a granted lease is given back when dropped"]
pub enum Acquired<C: LimiterConnection> {
    /// Admitted: the lease (id 0 if it holds no slot, see [`Lease::id`]).
    Granted(Lease<C>),
    /// Denied: the binding limit's decision.
    Denied(AllDecision),
}

/// A slot of a CONCURRENCY limit, held while the guard lives and given
/// back when dropped (or by [`release`](Self::release), which says
/// whether it was still live).
///
/// While held it renews itself in the background, every third of the
/// limit's lease time, so a job that runs longer than the lease time
/// keeps its slot (unless the limiter was built
/// [`with_lease_keep_alive(false)`](Limiter::with_lease_keep_alive)).
/// A process that crashes never leaks it: its renewals stop with it, and
/// the lease ends by itself after the lease time. A task that hangs with
/// the guard alive keeps the slot: that is what holding a guard means; a
/// limiter without keep-alive lets each lease end at its lease time
/// instead, guard or not (then [`renew`](Self::renew) it, or
/// [`keep_alive`](Self::keep_alive) it, yourself).
#[must_use = "the slot is given back when the lease is dropped"]
pub struct Lease<C: LimiterConnection> {
    limiter: Limiter<C>,
    key: String,
    id: u64,
    lease: Duration,
    decision: AllDecision,
    released: bool,
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl<C: LimiterConnection> std::fmt::Debug for Lease<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("id", &self.id)
            .field("decision", &self.decision)
            .finish_non_exhaustive()
    }
}

impl<C: LimiterConnection> Lease<C> {
    /// The lease id the server (or the fallback) handed out; 0 for an
    /// admission that holds no slot: by [`FailurePolicy::FailOpen`] while
    /// Redis is away, by a SHADOW concurrency policy over a full limit (the
    /// server answers allowed and takes none), or by limits without a
    /// CONCURRENCY limit. Such a lease sends nothing when released,
    /// renewed or dropped ([`release`](Self::release) and
    /// [`renew`](Self::renew) answer true).
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The Redis key of the CONCURRENCY limit (empty if the limits have
    /// none).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Does the lease hold a slot (an id other than 0)?
    fn holds_slot(&self) -> bool {
        self.id != 0
    }
    /// The decision that granted it.
    pub fn decision(&self) -> &AllDecision {
        &self.decision
    }

    fn local(&self) -> bool {
        self.decision.decision.source == Source::Fallback
    }

    /// Gives the slot back now: true if the lease was still live.
    pub async fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if !self.holds_slot() {
            return Ok(true);
        }
        release_lease(&self.limiter, &self.key, self.id, self.local()).await
    }

    /// Extends the lease to a full lease time from now: true if it was
    /// still live (false: it ended; the slot may be someone else's).
    pub async fn renew(&self) -> Result<bool, Error> {
        if !self.holds_slot() {
            return Ok(true);
        }
        renew_lease(&self.limiter, &self.key, self.id, self.lease, self.local()).await
    }

    /// Renews the lease in the background every third of its lease time
    /// while it is held (until released or dropped, or until a renewal
    /// finds it ended). What [`Limiter::acquire`] does by default; a
    /// no-op on a lease already renewing itself, or outside a tokio
    /// runtime.
    pub fn keep_alive(mut self) -> Self {
        if !self.holds_slot() || self.renewer.is_some() {
            return self;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return self;
        };
        let (limiter, key, id, lease, local) = (
            self.limiter.clone(),
            self.key.clone(),
            self.id,
            self.lease,
            self.local(),
        );
        let every = (lease / 3).max(Duration::from_millis(1));
        self.renewer = Some(rt.spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Ok(false) = renew_lease(&limiter, &key, id, lease, local).await {
                    return;
                }
            }
        }));
        self
    }
}

impl<C: LimiterConnection> Drop for Lease<C> {
    fn drop(&mut self) {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        if self.released || !self.holds_slot() {
            return;
        }
        let (limiter, key, id, local) = (
            self.limiter.clone(),
            self.key.clone(),
            self.id,
            self.local(),
        );
        if local {
            limiter.config.release_local(&limiter.shared, &key, id);
            return;
        }
        // Drop cannot wait: the release goes out on the runtime. Outside
        // one, the lease ends by itself at its lease time.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = release_lease(&limiter, &key, id, false).await;
            });
        }
    }
}

/// How many units a reservation holds ([`Limiter::reserve`]), and on
/// which of the limiter's limits. A bare integer converts: every limit but
/// the CONCURRENCY one.
///
/// ```
/// # use redis_ratelimit_client::Estimate;
/// // 2000 tokens on the token budgets; the requests-per-minute limit
/// // takes one request as usual.
/// let e = Estimate::new(2000).on("tpm").on("tpd");
/// assert_eq!(e.units(), 2000);
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Estimate {
    units: u64,
    on: Vec<String>,
}

impl Estimate {
    /// `units` on every limit but the CONCURRENCY one (0: "admit if any
    /// budget is left", refused by a limit in debt).
    pub fn new(units: u64) -> Estimate {
        Estimate {
            units,
            on: Vec::new(),
        }
    }
    /// Reserves on the limit named `limit` (by its name in the
    /// [`Limits`]); once any is named, only the named ones are reserved
    /// on, and the others take one unit as a plain call does.
    pub fn on(mut self, limit: impl Into<String>) -> Estimate {
        self.on.push(limit.into());
        self
    }
    /// The units reserved.
    pub fn units(&self) -> u64 {
        self.units
    }
}

impl From<u64> for Estimate {
    fn from(units: u64) -> Estimate {
        Estimate::new(units)
    }
}

/// What [`Limiter::reserve`] gives: a reservation, or the denial.
#[derive(Debug)]
#[must_use = "a reservation is settled at its estimate when dropped"]
// Matched at once by the caller, as `Acquired`: boxing would only add an
// allocation per request.
#[allow(clippy::large_enum_variant)]
pub enum Reserved<C: LimiterConnection> {
    /// Admitted: the reservation to settle.
    Granted(Reservation<C>),
    /// Denied: the binding limit's decision.
    Denied(AllDecision),
}

/// Units reserved at admission ([`Limiter::reserve`]; the blocking
/// limiter's is [`blocking::Reservation`](crate::blocking::Reservation)), to settle with the
/// actual cost when the work is done ([`settle`](Self::settle)): the
/// difference is charged (beyond the limit if need be: debt) or given back
/// on every limit it reserved on, and its slot freed, in one atomic step.
///
/// It holds a lease of the CONCURRENCY limit (the handle), renewed in the
/// background while held as a [`Lease`] is. Dropped without settling, it
/// is settled at its estimate: its lease is released in the background
/// (`RL.RELEASE`), and the estimate stays charged. A process that dies
/// holding one leaves it to end with its lease, at its estimate too.
#[must_use = "a reservation is settled at its estimate when dropped"]
pub struct Reservation<C: LimiterConnection> {
    lease: Lease<C>,
    keys: Vec<String>,
    /// Each key's limit's position in the limiter's limits.
    positions: Vec<usize>,
    estimate: u64,
}

impl<C: LimiterConnection> std::fmt::Debug for Reservation<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("anchor", &self.lease.key)
            .field("keys", &self.keys)
            .field("id", &self.lease.id)
            .field("estimate", &self.estimate)
            .field("decision", &self.lease.decision)
            .finish_non_exhaustive()
    }
}

impl<C: LimiterConnection> Reservation<C> {
    /// The handle: the lease id of the CONCURRENCY limit (0 for an
    /// admission that holds nothing in Redis, see [`Limiter::reserve`]).
    pub fn id(&self) -> u64 {
        self.lease.id
    }
    /// The Redis key of the CONCURRENCY limit (the anchor).
    pub fn anchor(&self) -> &str {
        &self.lease.key
    }
    /// The Redis keys the estimate was reserved on.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }
    /// The positions, in the limiter's [`Limits`], of the limits reserved
    /// on (one per key of [`keys`](Self::keys)).
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }
    /// The units reserved on each of [`keys`](Self::keys).
    pub fn estimate(&self) -> u64 {
        self.estimate
    }
    /// The decision that admitted it.
    pub fn decision(&self) -> &AllDecision {
        &self.lease.decision
    }

    /// Settles the reservation at `actual` units (`RL.SETTLE`); the
    /// settlement's `binding` is the position of its binding limit in the
    /// limiter's [`Limits`] (as an admission's is). `settled`
    /// is false when it had already ended (its lease expired: settled at
    /// its estimate), or was not made in Redis; while Redis cannot answer,
    /// false too, with the failure policy's [`Source`]: the reservation
    /// then ends with its lease, at its estimate.
    pub async fn settle(mut self, actual: u64) -> Result<Settlement, Error> {
        self.lease.released = true;
        if let Some(r) = self.lease.renewer.take() {
            r.abort();
        }
        let limiter = &self.lease.limiter;
        let failed = limiter.config.failure_source();
        if !self.lease.holds_slot() {
            return Ok(Settlement::not_settled(self.lease.decision.source()));
        }
        if self.lease.local() {
            limiter
                .config
                .release_local(&limiter.shared, &self.lease.key, self.lease.id);
            return Ok(Settlement::not_settled(Source::Fallback));
        }
        let cmd = cmd_settle(
            self.lease.key.as_str(),
            self.keys.iter().map(String::as_str),
            self.lease.id,
            actual,
        );
        let mut conn = limiter.conn.clone();
        match within(limiter.config.timeout, send(&mut conn, &cmd)).await {
            Some(Ok(v)) => {
                limiter.config.mark_up(&limiter.shared);
                Ok(settlement(&v, &self.positions)?)
            }
            Some(Err(e)) if is_outage(&e) => {
                limiter.config.mark_down(&limiter.shared);
                Ok(Settlement::not_settled(failed))
            }
            Some(Err(e)) => Err(Error::Redis(e)),
            None => {
                limiter.config.mark_down(&limiter.shared);
                Ok(Settlement::not_settled(failed))
            }
        }
    }

    /// Settles it at its estimate now (`RL.RELEASE`): true if it was
    /// still live.
    pub async fn release(self) -> Result<bool, Error> {
        self.lease.release().await
    }
}

/// An `RL.SETTLE` reply, its binding key's position made the limit's
/// position in the limiter's limits (`positions`: each reserved key's).
pub(crate) fn settlement(v: &Value, positions: &[usize]) -> Result<Settlement, Error> {
    let mut s = Settlement::from_reply(v)?;
    s.decision.binding = positions
        .get(s.decision.binding)
        .copied()
        .unwrap_or_default();
    Ok(s)
}

async fn release_lease<C: LimiterConnection>(
    limiter: &Limiter<C>,
    key: &str,
    id: u64,
    local: bool,
) -> Result<bool, Error> {
    if local {
        return Ok(limiter.config.release_local(&limiter.shared, key, id));
    }
    let mut conn = limiter.conn.clone();
    let cmd = cmd_release(key, id);
    match within(limiter.config.timeout, send(&mut conn, &cmd)).await {
        Some(Ok(v)) => Ok(redis::from_redis_value::<bool>(v)?),
        // Not given back now: the lease ends by itself.
        Some(Err(e)) if is_outage(&e) => Ok(false),
        Some(Err(e)) => Err(Error::Redis(e)),
        None => Ok(false),
    }
}

async fn renew_lease<C: LimiterConnection>(
    limiter: &Limiter<C>,
    key: &str,
    id: u64,
    lease: Duration,
    local: bool,
) -> Result<bool, Error> {
    if local {
        return Ok(limiter.config.renew_local(&limiter.shared, key, id, lease));
    }
    let mut conn = limiter.conn.clone();
    let cmd = cmd_renew(key, id, lease);
    match within(limiter.config.timeout, send(&mut conn, &cmd)).await {
        Some(Ok(v)) => Ok(redis::from_redis_value::<bool>(v)?),
        Some(Err(e)) if is_outage(&e) => Ok(true),
        Some(Err(e)) => Err(Error::Redis(e)),
        None => Ok(true),
    }
}

/// A timeout counts this many steps of `timeout / TIMEOUT_STEPS`.
const TIMEOUT_STEPS: u32 = 4;

/// `fut`'s output, or `None` if Redis did not answer within `timeout`, as
/// told apart from the caller's own runtime being too busy to hear it.
///
/// A plain `tokio::time::timeout` cannot tell: on a runtime whose threads
/// are all busy (many tasks, CPU-bound work between their awaits), the
/// task that reads the reply off the socket and the task waiting for it
/// are both starved, and the timer fires at the waiting task's next poll
/// whether the reply came in a millisecond or not at all: the limiter took
/// its own overload for an outage, again and again. Here the timeout is
/// counted in [`TIMEOUT_STEPS`] steps, each a fresh timer of a quarter of
/// it: a step counts only once it has fired and this task has run again,
/// so the call times out after the whole timeout has passed *and* the
/// runtime has had that many turns to deliver the reply. On a responsive
/// runtime that is the timeout (plus a few timer ticks); on a stalled one
/// it stretches with the stall, and the reply, if Redis sent one, is read
/// before it ends. The time spent stalled never counts against Redis.
pub(crate) async fn within<F: std::future::Future>(timeout: Duration, fut: F) -> Option<F::Output> {
    let step = (timeout / TIMEOUT_STEPS).max(Duration::from_millis(1));
    let mut waited = Duration::ZERO;
    let mut fut = std::pin::pin!(fut);
    loop {
        if let Ok(out) = tokio::time::timeout(step, fut.as_mut()).await {
            return Some(out);
        }
        // The step's timer fired. Before it counts, every task queued
        // before this one runs (the one reading the socket among them):
        // a yield puts this task at the back of the queue.
        tokio::task::yield_now().await;
        waited = waited.saturating_add(step);
        if waited >= timeout {
            // One last look: the reply may have been read in that turn.
            return tokio::time::timeout(Duration::ZERO, fut.as_mut())
                .await
                .ok();
        }
    }
}

/// Sends one command; a server error comes back as an error.
pub(crate) async fn send<C: ConnectionLike>(conn: &mut C, cmd: &Cmd) -> Result<Value, RedisError> {
    conn.req_packed_command(cmd)
        .await
        .and_then(|v| v.extract_error())
}

/// A request as a plain call sends it: `BLOCK` only where a wait asks.
pub(crate) fn without_block(request: Request) -> Request {
    let mut r = Request::new(request.cost());
    r = match request.mode() {
        Mode::DryRun => r.dry_run(),
        Mode::Refund => r.refund(),
        _ => r,
    };
    r
}

/// Wall-clock nanoseconds since the Unix epoch: calendar windows need it.
pub(crate) fn wall_clock() -> Nanos {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(Nanos::ZERO, |d| {
            Nanos::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a responsive runtime the timeout is the timeout: a call with no
    /// answer gives up after it, one answered just before it is read.
    #[tokio::test(start_paused = true)]
    async fn within_keeps_the_timeout_on_a_responsive_runtime() {
        let start = tokio::time::Instant::now();
        let never = within(Duration::from_millis(100), std::future::pending::<()>()).await;
        assert_eq!(never, None);
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_millis(110),
            "{took:?}"
        );
        let late = async {
            tokio::time::sleep(Duration::from_millis(99)).await;
            7
        };
        assert_eq!(within(Duration::from_millis(100), late).await, Some(7));
    }

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
        assert!(is_unknown_option(&parse("ERR syntax error")));
        assert!(!is_unknown_option(&parse("ERR unknown command 'RL.GCRA'")));
        assert!(!is_outage(&parse("ERR unknown command 'RL.GCRA'")));
        assert!(!is_outage(&parse(
            "WRONGTYPE Operation against a key holding the wrong kind of value"
        )));
    }
}
