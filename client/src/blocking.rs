//! A [`Limiter`] for code without an async runtime: the same limits, keys,
//! failure policies, fallback, waits and leases as the async
//! [`crate::Limiter`] (they share their decision code), on plain
//! connections to a standalone Redis (or a primary behind a proxy).
//!
//! It keeps a small pool of connections: a call takes one (opening one if
//! none is idle, which is also how it reconnects after an outage) and
//! gives it back after an answer; a connection that failed is dropped. A
//! wait in line (`BLOCK`) holds its connection for the wait. Calls from
//! many threads run side by side.
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit_client::blocking::Limiter;
//! use redis_ratelimit_client::{FailurePolicy, Limits, SlidingWindow};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let limits = Limits::single("second", SlidingWindow::new(5, Duration::from_secs(1))?)?;
//! let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed);
//! let verdict = limiter.wait("partner", Duration::from_secs(10))?; // in line, inside the server
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionLike, RedisError, Value};

use crate::commands::{cmd_release, cmd_renew, Mode, Request};
use crate::error::{Error, PolicyError};
use crate::limiter::{
    is_outage, is_unknown_option, without_block, Config, FailurePolicy, Health, Shared,
    CONNECT_TIMEOUT,
};
use crate::limits::Limits;
use crate::reply::{AllDecision, Source};
use crate::wait::{next_sleep, random, Wait};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 64;
/// How much longer than its BLOCK a waiting call may take before the
/// connection counts as lost.
const BLOCK_SLACK: Duration = Duration::from_secs(2);

struct Inner {
    client: redis::Client,
    idle: Mutex<Vec<redis::Connection>>,
    lines: Mutex<HashMap<String, Weak<Line>>>,
}

/// A blocking rate limiter; cheap to clone (clones share connections and
/// state), usable from many threads at once.
#[derive(Clone)]
pub struct Limiter {
    inner: Arc<Inner>,
    config: Config,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Limiter")
            .field("limits", &self.config.limits)
            .field("prefix", &self.config.prefix)
            .field("timeout", &self.config.timeout)
            .field("failure", &self.config.failure)
            .field("health", &self.config.health(&self.shared))
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter on the Redis `client` points at. Nothing is connected
    /// yet: it starts even if Redis is down (the failure policy answers
    /// until Redis is up), and reconnects by itself whenever Redis is back
    /// (within the cooldown and one connection attempt).
    pub fn connect(client: &redis::Client, limits: Limits, failure: FailurePolicy) -> Limiter {
        Limiter {
            inner: Arc::new(Inner {
                client: client.clone(),
                idle: Mutex::new(Vec::new()),
                lines: Mutex::new(HashMap::new()),
            }),
            config: Config::new(limits, failure),
            shared: Arc::new(Shared::new()),
        }
    }

    /// How long a call waits for Redis before the failure policy answers
    /// (it also bounds each connection attempt).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// After an outage, how long calls skip Redis. Zero: always try it.
    pub fn with_cooldown(mut self, cooldown: Duration) -> Self {
        self.config.cooldown = cooldown;
        self
    }

    /// The key prefix (default `rl:`); no `{` or `}` in it.
    pub fn with_prefix(mut self, prefix: &str) -> Result<Self, PolicyError> {
        self.config.set_prefix(prefix)?;
        Ok(self)
    }

    /// Called with the new [`Health`] each time it changes.
    pub fn on_health_change(mut self, hook: impl Fn(Health) + Send + Sync + 'static) -> Self {
        self.config.on_health = Some(Arc::new(hook));
        self
    }

    pub fn limits(&self) -> &Limits {
        &self.config.limits
    }
    pub fn failure_policy(&self) -> FailurePolicy {
        self.config.failure
    }
    pub fn is_degraded(&self) -> bool {
        self.health() == Health::Degraded
    }
    pub fn health(&self) -> Health {
        self.config.health(&self.shared)
    }
    /// The Redis keys a caller's key maps to, one per limit.
    pub fn keys(&self, key: &str) -> Vec<String> {
        self.config.keys(key).unwrap_or_default()
    }

    fn take(&self, read_timeout: Duration) -> Result<redis::Connection, RedisError> {
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let con = match idle {
            Some(c) => c,
            None => self.inner.client.get_connection_with_timeout(
                self.config
                    .timeout
                    .min(CONNECT_TIMEOUT)
                    .max(Duration::from_millis(1)),
            )?,
        };
        con.set_read_timeout(Some(read_timeout.max(Duration::from_millis(1))))?;
        con.set_write_timeout(Some(self.config.timeout.max(Duration::from_millis(1))))?;
        Ok(con)
    }

    fn put(&self, con: redis::Connection) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(con);
        }
    }

    /// Sends `cmd` with a read timeout: the reply, or an error (an outage
    /// drops the connection).
    fn send(&self, cmd: &Cmd, read_timeout: Duration) -> Result<Value, RedisError> {
        let mut con = self.take(read_timeout)?;
        let r = con
            .req_packed_command(&cmd.get_packed_command())
            .and_then(|v| v.extract_error());
        match &r {
            // The server went away: every idle connection to it is stale
            // too (each would fail once more, and start another cooldown).
            Err(e) if is_outage(e) => self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear(),
            _ => self.put(con),
        }
        r
    }

    /// Takes one unit for `key`.
    pub fn check(&self, key: &str) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(1))
    }

    /// Takes (or dry-runs, or refunds) `request` for `key`.
    pub fn check_with(&self, key: &str, request: Request) -> Result<AllDecision, Error> {
        let request = without_block(request);
        let keys = self.config.keys(key)?;
        if self.config.skipping_redis(&self.shared) {
            return Ok(self.config.unavailable(&self.shared, &keys, request));
        }
        let cmd = self.config.command(&keys, request);
        let reply = match self.send(&cmd, self.config.timeout) {
            Err(e) if e.is_timeout() => None,
            r => Some(r),
        };
        self.config.outcome(&self.shared, &keys, request, reply)
    }

    /// Gives `cost` units back to every limit of `key`.
    pub fn refund(&self, key: &str, cost: u64) -> Result<AllDecision, Error> {
        self.check_with(key, Request::new(cost).refund())
    }

    /// Waits until one unit for `key` is allowed, up to `max_wait` (never
    /// less): in line inside the server (`BLOCK`), first come, first
    /// served across processes; or, on a module without `BLOCK` or while
    /// Redis is away, polling in line per key in this process.
    pub fn wait(&self, key: &str, max_wait: Duration) -> Result<AllDecision, Error> {
        self.wait_with(key, Request::new(1), &Wait::up_to(max_wait))
    }

    /// [`wait`](Self::wait) with a cost and wait options.
    pub fn wait_with(
        &self,
        key: &str,
        request: Request,
        wait: &Wait,
    ) -> Result<AllDecision, Error> {
        let request = without_block(request);
        let keys = self.config.keys(key)?;
        let deadline = Instant::now() + wait.max_wait();
        if request.mode() == Mode::Consume
            && self.shared.block.load(Ordering::Relaxed) != 2
            && !self.config.skipping_redis(&self.shared)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let cmd = self.config.command(&keys, request.block(left));
            match self.send(&cmd, left + BLOCK_SLACK) {
                Ok(v) => {
                    self.shared.block.store(1, Ordering::Relaxed);
                    self.config.mark_up(&self.shared);
                    let d = self.config.decode(&v)?;
                    return if d.decision.allowed {
                        Ok(d)
                    } else if d.decision.is_never() {
                        Err(Error::NeverAllowed { last: d })
                    } else {
                        Err(Error::TimedOut { last: d })
                    };
                }
                Err(e) if is_unknown_option(&e) => self.shared.block.store(2, Ordering::Relaxed),
                Err(e) if is_outage(&e) || e.code() == Some("UNBLOCKED") => {
                    if is_outage(&e) {
                        self.config.mark_down(&self.shared);
                    }
                }
                Err(e) => return Err(Error::Redis(e)),
            }
        }
        // Polling, in line in this process.
        let line = self.line(&keys.join(" "));
        let Some(_turn) = line.wait_turn(deadline) else {
            let last = self.check_with(key, request)?;
            return if last.decision.allowed {
                Ok(last)
            } else {
                Err(Error::TimedOut { last })
            };
        };
        loop {
            let d = self.check_with(key, request)?;
            if d.decision.allowed {
                return Ok(d);
            }
            let Some(retry) = d.decision.retry_after else {
                return Err(Error::NeverAllowed { last: d });
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match next_sleep(retry, left, wait.jitter(), random()) {
                Some(sleep) => std::thread::sleep(sleep),
                None => return Err(Error::TimedOut { last: d }),
            }
        }
    }

    fn line(&self, key: &str) -> Arc<Line> {
        let mut lines = self.inner.lines.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = lines.get(key).and_then(Weak::upgrade) {
            return l;
        }
        lines.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(Line::default());
        lines.insert(key.to_string(), Arc::downgrade(&l));
        l
    }

    /// Takes a slot of the limits' CONCURRENCY limit (and a unit of every
    /// other limit, all or nothing): a [`Lease`] given back when dropped,
    /// or the denial.
    pub fn acquire(&self, key: &str) -> Result<Result<Lease, AllDecision>, Error> {
        let d = self.check_with(key, Request::new(1))?;
        Ok(self.lease(key, d))
    }

    /// [`acquire`](Self::acquire), waiting up to `max_wait` for a slot.
    pub fn acquire_wait(&self, key: &str, max_wait: Duration) -> Result<Lease, Error> {
        let d = self.wait(key, max_wait)?;
        self.lease(key, d).map_err(|last| Error::TimedOut { last })
    }

    fn lease(&self, key: &str, d: AllDecision) -> Result<Lease, AllDecision> {
        let keys = self.config.keys(key).unwrap_or_default();
        let found = self
            .config
            .lease_limit(&keys)
            .map(|(k, l)| (k.clone(), l.policy().window()));
        match (d.decision.allowed, d.decision.lease, found) {
            (true, Some(id), Some((key, lease))) => Ok(Lease {
                limiter: self.clone(),
                key,
                id,
                lease,
                decision: d,
                released: false,
                renewer: None,
            }),
            _ => Err(d),
        }
    }

    fn release_lease(&self, key: &str, id: u64, local: bool) -> Result<bool, Error> {
        if local {
            return Ok(self.config.release_local(&self.shared, key, id));
        }
        match self.send(&cmd_release(key, id), self.config.timeout) {
            Ok(v) => Ok(redis::from_redis_value::<bool>(v)?),
            Err(e) if is_outage(&e) => Ok(false),
            Err(e) => Err(Error::Redis(e)),
        }
    }

    fn renew_lease(&self, key: &str, id: u64, lease: Duration, local: bool) -> Result<bool, Error> {
        if local {
            return Ok(self.config.renew_local(&self.shared, key, id, lease));
        }
        match self.send(&cmd_renew(key, id, lease), self.config.timeout) {
            Ok(v) => Ok(redis::from_redis_value::<bool>(v)?),
            Err(e) if is_outage(&e) => Ok(true),
            Err(e) => Err(Error::Redis(e)),
        }
    }
}

/// Waiters of one key in this process, served in arrival order (a ticket
/// lock: each takes a number and waits until it is served).
#[derive(Default)]
struct Line {
    tickets: Mutex<Tickets>,
    turn: Condvar,
}

#[derive(Default)]
struct Tickets {
    next: u64,
    serving: u64,
    /// Tickets whose waiters left before their turn.
    gone: Vec<u64>,
}

impl Tickets {
    /// The turn passes to the next waiter still there.
    fn advance(&mut self) {
        self.serving += 1;
        while let Some(i) = self.gone.iter().position(|g| *g == self.serving) {
            self.gone.swap_remove(i);
            self.serving += 1;
        }
    }
}

struct Turn<'a>(&'a Line);

impl Line {
    /// Waits for this caller's turn until `deadline`; `None` if it did not
    /// come in time (the place is given up).
    fn wait_turn(&self, deadline: Instant) -> Option<Turn<'_>> {
        let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let mine = t.next;
        t.next += 1;
        while t.serving != mine {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                t.gone.push(mine);
                return None;
            }
            t = self
                .turn
                .wait_timeout(t, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        Some(Turn(self))
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut t = self.0.tickets.lock().unwrap_or_else(|p| p.into_inner());
        t.advance();
        self.0.turn.notify_all();
    }
}

/// A slot of a CONCURRENCY limit, given back when dropped.
#[must_use = "the slot is given back when the lease is dropped"]
pub struct Lease {
    limiter: Limiter,
    key: String,
    id: u64,
    lease: Duration,
    decision: AllDecision,
    released: bool,
    renewer: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Lease {
    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn key(&self) -> &str {
        &self.key
    }
    pub fn decision(&self) -> &AllDecision {
        &self.decision
    }
    fn local(&self) -> bool {
        self.decision.decision.source == Source::Fallback
    }

    /// Gives the slot back now: true if the lease was still live.
    pub fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        self.stop_renewing();
        self.limiter.release_lease(&self.key, self.id, self.local())
    }

    /// Extends the lease to a full lease time from now: true if live.
    pub fn renew(&self) -> Result<bool, Error> {
        self.limiter
            .renew_lease(&self.key, self.id, self.lease, self.local())
    }

    /// Renews the lease from a background thread every third of its lease
    /// time while it is held.
    pub fn keep_alive(mut self) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (limiter, key, id, lease, local) = (
            self.limiter.clone(),
            self.key.clone(),
            self.id,
            self.lease,
            self.local(),
        );
        let every = (lease / 3).max(Duration::from_millis(1));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || loop {
            std::thread::park_timeout(every);
            if flag.load(Ordering::Relaxed) {
                return;
            }
            if let Ok(false) = limiter.renew_lease(&key, id, lease, local) {
                return;
            }
        });
        self.renewer = Some((stop, handle));
        self
    }

    fn stop_renewing(&mut self) {
        if let Some((stop, handle)) = self.renewer.take() {
            stop.store(true, Ordering::Relaxed);
            handle.thread().unpark();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
        if !self.released {
            let _ = self.limiter.release_lease(&self.key, self.id, self.local());
        }
    }
}
