//! A [`Limiter`] for code without an async runtime: the same limits, keys,
//! failure policies, fallback, waits and leases as the async
//! [`crate::Limiter`] (they share their decision code), on plain
//! connections to a standalone Redis (or a primary behind a proxy).
//!
//! It keeps a small pool of connections: a call takes one (opening one if
//! none is idle, which is also how it reconnects after an outage) and
//! gives it back after an answer; a connection that failed is dropped. A
//! wait in line (`BLOCK`) holds its connection for the wait. Calls from
//! many threads run side by side. A connection's socket timeouts are set
//! when it opens and again only when a call needs another read timeout (a
//! wait), not on every call (two syscalls a call, 20% of a call's cost at
//! 8 threads).
//!
//! ```no_run
//! use std::time::Duration;
//! use redis_ratelimit_client::blocking::Limiter;
//! use redis_ratelimit_client::{redis, FailurePolicy, Limits, SlidingWindow};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = redis::Client::open("redis://127.0.0.1/")?;
//! let limits = Limits::single("second", SlidingWindow::new(5, Duration::from_secs(1))?)?;
//! let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed);
//! let verdict = limiter.wait("partner", Duration::from_secs(10))?; // in line, inside the server
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use redis::{Cmd, ConnectionLike, RedisError, Value};

use crate::commands::{cmd_release, cmd_renew, cmd_settle, Mode, Request};
use crate::error::{Error, PolicyError};
use crate::limiter::{
    is_outage, is_unknown_option, settlement, wall_clock, without_block, Config, Estimate,
    FailurePolicy, Health, Shared, CONNECT_TIMEOUT,
};
use crate::limits::Limits;
use crate::reply::{AllDecision, Settlement, Source};
use crate::wait::{next_sleep, random, Wait};

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 64;
/// How much longer than its BLOCK a waiting call may take before the
/// connection counts as lost.
const BLOCK_SLACK: Duration = Duration::from_secs(2);

struct Inner {
    client: redis::Client,
    idle: Mutex<Vec<Pooled>>,
    lines: Mutex<HashMap<String, Weak<Line>>>,
    renewals: Arc<Renewals>,
    /// Socket timeouts set, for the tests.
    #[cfg(test)]
    timeouts_set: std::sync::atomic::AtomicUsize,
}

/// A pooled connection and the read timeout its socket has: set again
/// only when a call needs another (its write timeout is set once).
struct Pooled {
    con: redis::Connection,
    read_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last limiter (and lease) is gone: the renewer thread ends.
        self.renewals.lock().closed = true;
        self.renewals.wake.notify_all();
    }
}

/// The leases a limiter keeps alive, renewed by one thread of its own
/// (started with the first), not a thread per lease.
#[derive(Default)]
struct Renewals {
    state: Mutex<RenewState>,
    wake: Condvar,
}

#[derive(Default)]
struct RenewState {
    /// By ticket: when it is due next, and what to renew.
    leases: HashMap<u64, (Instant, Renewal)>,
    next_ticket: u64,
    running: bool,
    closed: bool,
}

#[derive(Clone)]
struct Renewal {
    key: String,
    id: u64,
    lease: Duration,
    local: bool,
}

impl Renewals {
    fn lock(&self) -> std::sync::MutexGuard<'_, RenewState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops renewing `ticket`.
    fn remove(&self, ticket: u64) {
        self.lock().leases.remove(&ticket);
    }
}

/// Every third of the lease time.
fn renew_every(lease: Duration) -> Duration {
    (lease / 3).max(Duration::from_millis(1))
}

/// The renewer thread: sleeps until the next lease is due, renews what is
/// due (outside the lock), forgets leases that ended; ends with the
/// limiter (`closed`).
fn renew_loop(renewals: Arc<Renewals>, inner: Weak<Inner>, config: Config, shared: Arc<Shared>) {
    loop {
        let due: Vec<(u64, Renewal)> = {
            let mut st = renewals.lock();
            loop {
                if st.closed {
                    return;
                }
                let now = Instant::now();
                match st.leases.values().map(|(at, _)| *at).min() {
                    Some(at) if at <= now => break,
                    Some(at) => {
                        st = renewals
                            .wake
                            .wait_timeout(st, at - now)
                            .map(|(g, _)| g)
                            .unwrap_or_else(|p| p.into_inner().0);
                    }
                    None => {
                        st = renewals.wake.wait(st).unwrap_or_else(|p| p.into_inner());
                    }
                }
            }
            let now = Instant::now();
            st.leases
                .iter_mut()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(ticket, (at, r))| {
                    *at = now + renew_every(r.lease);
                    (*ticket, r.clone())
                })
                .collect()
        };
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let limiter = Limiter {
            inner,
            config: config.clone(),
            shared: shared.clone(),
        };
        for (ticket, r) in due {
            if let Ok(false) = limiter.renew_lease(&r.key, r.id, r.lease, r.local) {
                // It ended (an outage longer than the lease, a pause): the
                // slot may be someone else's now.
                renewals.remove(ticket);
            }
        }
    }
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
                renewals: Arc::default(),
                #[cfg(test)]
                timeouts_set: std::sync::atomic::AtomicUsize::new(0),
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

    /// The most keys the fallback keeps in this process (see
    /// [`crate::Limiter::with_fallback_keys`]).
    pub fn with_fallback_keys(mut self, max_keys: usize) -> Self {
        self.config.fallback_keys = max_keys.max(1);
        self
    }

    /// Whether the leases [`acquire`](Self::acquire) hands out renew
    /// themselves while held (default `true`; see
    /// [`crate::Limiter::with_lease_keep_alive`]). One thread per limiter
    /// renews them all.
    pub fn with_lease_keep_alive(mut self, keep_alive: bool) -> Self {
        self.config.lease_keep_alive = keep_alive;
        self
    }

    /// Called with the new [`Health`] each time it changes.
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
    /// Is the failure policy deciding (Redis did not answer the last call)?
    pub fn is_degraded(&self) -> bool {
        self.health() == Health::Degraded
    }
    /// Whether Redis decided the last call.
    pub fn health(&self) -> Health {
        self.config.health(&self.shared)
    }
    /// The Redis keys a caller's key maps to, one per limit.
    pub fn keys(&self, key: &str) -> Vec<String> {
        self.config.keys(key).unwrap_or_default()
    }

    fn take(&self, read_timeout: Duration) -> Result<Pooled, RedisError> {
        let read_timeout = read_timeout.max(Duration::from_millis(1));
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop();
        let mut pooled = match idle {
            Some(c) => c,
            None => {
                let con = self.inner.client.get_connection_with_timeout(
                    self.config
                        .timeout
                        .min(CONNECT_TIMEOUT)
                        .max(Duration::from_millis(1)),
                )?;
                con.set_write_timeout(Some(self.config.timeout.max(Duration::from_millis(1))))?;
                self.count_timeout_set();
                // Not yet set: the first use sets it.
                Pooled {
                    con,
                    read_timeout: Duration::ZERO,
                }
            }
        };
        if pooled.read_timeout != read_timeout {
            pooled.con.set_read_timeout(Some(read_timeout))?;
            self.count_timeout_set();
            pooled.read_timeout = read_timeout;
        }
        Ok(pooled)
    }

    #[cfg(test)]
    fn count_timeout_set(&self) {
        self.inner.timeouts_set.fetch_add(1, Ordering::Relaxed);
    }
    #[cfg(not(test))]
    fn count_timeout_set(&self) {}

    fn put(&self, con: Pooled) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(con);
        }
    }

    /// Sends `cmd` with a read timeout: the reply, or an error (an outage
    /// drops the connection).
    fn send(&self, cmd: &Cmd, read_timeout: Duration) -> Result<Value, RedisError> {
        let mut pooled = self.take(read_timeout)?;
        let r = pooled
            .con
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
            _ => self.put(pooled),
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
        let sent = wall_clock();
        let reply = match self.send(&cmd, self.config.timeout) {
            Err(e) if e.is_timeout() => None,
            r => Some(r),
        };
        self.config
            .outcome(&self.shared, &keys, request, sent, reply)
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
        let deadline = crate::wait::std_deadline_after(wait.max_wait());
        if request.mode() == Mode::Consume
            && self.shared.block.load(Ordering::Relaxed) != 2
            && !self.config.skipping_redis(&self.shared)
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let cmd = self.config.command(&keys, request.block(left));
            let sent = wall_clock();
            match self.send(&cmd, left.saturating_add(BLOCK_SLACK)) {
                Ok(v) => {
                    self.shared.block.store(1, Ordering::Relaxed);
                    self.config.mark_up(&self.shared);
                    let d = self.config.decode(&v)?;
                    self.config.remember(&self.shared, &keys, request, sent, &d);
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
    /// other limit, all or nothing): a [`Lease`] that holds the slot while
    /// it lives (renewed in the background unless
    /// [`with_lease_keep_alive(false)`](Self::with_lease_keep_alive)) and
    /// gives it back when dropped, or the denial. Every admission is a
    /// lease: one that holds no slot (FailOpen, a SHADOW policy over a full
    /// limit) has id 0.
    pub fn acquire(&self, key: &str) -> Result<Result<Lease, AllDecision>, Error> {
        let d = self.check_with(key, Request::new(1))?;
        Ok(self.lease(key, d))
    }

    /// Reserves `estimate` for `key` (see [`crate::Limiter::reserve`]):
    /// a [`Reservation`] to [`settle`](Reservation::settle) with the actual
    /// cost, or the denial. Outages as the async limiter's.
    pub fn reserve(
        &self,
        key: &str,
        estimate: impl Into<Estimate>,
    ) -> Result<Result<Reservation, AllDecision>, Error> {
        let estimate = estimate.into();
        let keys = self.config.keys(key)?;
        let (anchor, reserved, cmd) = self.config.reservation(&keys, &estimate)?;
        let one = Request::new(1);
        let d = if self.config.skipping_redis(&self.shared) {
            self.config.unavailable(&self.shared, &keys, one)
        } else {
            let sent = wall_clock();
            let reply = match self.send(&cmd, self.config.timeout) {
                Err(e) if e.is_timeout() => None,
                r => Some(r),
            };
            self.config.outcome(&self.shared, &keys, one, sent, reply)?
        };
        if !d.decision.allowed {
            return Ok(Err(d));
        }
        let (_, lease) = self.config.lease_of(key);
        let mut held = Lease {
            limiter: self.clone(),
            key: anchor,
            id: d.decision.lease.unwrap_or(0),
            lease,
            decision: d,
            released: false,
            renewal: None,
        };
        if self.config.lease_keep_alive {
            held = held.keep_alive();
        }
        let (positions, keys) = reserved.into_iter().unzip();
        Ok(Ok(Reservation {
            lease: held,
            keys,
            positions,
            estimate: estimate.units(),
        }))
    }

    /// [`acquire`](Self::acquire), waiting up to `max_wait` for a slot.
    pub fn acquire_wait(&self, key: &str, max_wait: Duration) -> Result<Lease, Error> {
        let d = self.wait(key, max_wait)?;
        self.lease(key, d).map_err(|last| Error::TimedOut { last })
    }

    /// An allowed decision is a lease, with or without a slot (see
    /// [`Lease::id`]): "allowed, lease id 0" is an admission, never a
    /// denial.
    fn lease(&self, key: &str, d: AllDecision) -> Result<Lease, AllDecision> {
        if !d.decision.allowed {
            return Err(d);
        }
        let (key, lease) = self.config.lease_of(key);
        let lease = Lease {
            limiter: self.clone(),
            key,
            id: d.decision.lease.unwrap_or(0),
            lease,
            decision: d,
            released: false,
            renewal: None,
        };
        Ok(if self.config.lease_keep_alive {
            lease.keep_alive()
        } else {
            lease
        })
    }

    /// Renews a lease from the limiter's renewer thread until
    /// [`Renewals::remove`]: its ticket.
    fn keep_renewing(&self, r: Renewal) -> u64 {
        let renewals = &self.inner.renewals;
        let mut st = renewals.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        let due = Instant::now() + renew_every(r.lease);
        st.leases.insert(ticket, (due, r));
        if !st.running {
            st.running = true;
            let (renewals, inner, config, shared) = (
                renewals.clone(),
                Arc::downgrade(&self.inner),
                self.config.clone(),
                self.shared.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name("rl-lease-renewer".into())
                .spawn(move || renew_loop(renewals, inner, config, shared));
            if spawned.is_err() {
                // No thread: the leases end at their lease time, as
                // without keep-alive.
                st.running = false;
                st.leases.remove(&ticket);
            }
        }
        renewals.wake.notify_all();
        ticket
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

/// A slot of a CONCURRENCY limit, held (and renewed in the background)
/// while the guard lives, given back when dropped: see [`crate::Lease`].
#[must_use = "the slot is given back when the lease is dropped"]
pub struct Lease {
    limiter: Limiter,
    key: String,
    id: u64,
    lease: Duration,
    decision: AllDecision,
    released: bool,
    /// Its ticket with the limiter's renewer thread, while kept alive.
    renewal: Option<u64>,
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
    /// The lease id; 0 for an admission that holds no slot (see
    /// [`crate::Lease::id`]), which sends nothing when released, renewed
    /// or dropped.
    pub fn id(&self) -> u64 {
        self.id
    }
    /// The Redis key of the CONCURRENCY limit (empty if the limits have
    /// none).
    pub fn key(&self) -> &str {
        &self.key
    }
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
    pub fn release(mut self) -> Result<bool, Error> {
        self.released = true;
        self.stop_renewing();
        if !self.holds_slot() {
            return Ok(true);
        }
        self.limiter.release_lease(&self.key, self.id, self.local())
    }

    /// Extends the lease to a full lease time from now: true if live.
    pub fn renew(&self) -> Result<bool, Error> {
        if !self.holds_slot() {
            return Ok(true);
        }
        self.limiter
            .renew_lease(&self.key, self.id, self.lease, self.local())
    }

    /// Renews the lease in the background every third of its lease time
    /// while it is held (until released or dropped, or until a renewal
    /// finds it ended), from the limiter's renewer thread. What
    /// [`Limiter::acquire`] does by default; a no-op on a lease already
    /// renewing itself.
    pub fn keep_alive(mut self) -> Self {
        if !self.holds_slot() || self.renewal.is_some() {
            return self;
        }
        let r = Renewal {
            key: self.key.clone(),
            id: self.id,
            lease: self.lease,
            local: self.local(),
        };
        self.renewal = Some(self.limiter.keep_renewing(r));
        self
    }

    fn stop_renewing(&mut self) {
        if let Some(ticket) = self.renewal.take() {
            self.limiter.inner.renewals.remove(ticket);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop_renewing();
        if !self.released && self.holds_slot() {
            let _ = self.limiter.release_lease(&self.key, self.id, self.local());
        }
    }
}

/// Units reserved at admission, settled with the actual cost: see
/// [`crate::Reservation`]. Dropped unsettled, its lease is released at
/// once (settled at its estimate).
#[must_use = "a reservation is settled at its estimate when dropped"]
pub struct Reservation {
    lease: Lease,
    keys: Vec<String>,
    positions: Vec<usize>,
    estimate: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("anchor", &self.lease.key)
            .field("keys", &self.keys)
            .field("id", &self.lease.id)
            .field("estimate", &self.estimate)
            .finish_non_exhaustive()
    }
}

impl Reservation {
    /// The handle (the anchor's lease id; 0 for one that holds nothing).
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
    /// The positions, in the limiter's [`Limits`], of the limits reserved on.
    pub fn positions(&self) -> &[usize] {
        &self.positions
    }
    /// The units reserved on each key.
    pub fn estimate(&self) -> u64 {
        self.estimate
    }
    /// The decision that admitted it.
    pub fn decision(&self) -> &AllDecision {
        &self.lease.decision
    }

    /// Settles it at `actual` units: see [`crate::Reservation::settle`].
    pub fn settle(mut self, actual: u64) -> Result<Settlement, Error> {
        self.lease.released = true;
        self.lease.stop_renewing();
        let limiter = &self.lease.limiter;
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
        match limiter.send(&cmd, limiter.config.timeout) {
            Ok(v) => {
                limiter.config.mark_up(&limiter.shared);
                settlement(&v, &self.positions)
            }
            Err(e) if is_outage(&e) => {
                limiter.config.mark_down(&limiter.shared);
                Ok(Settlement::not_settled(limiter.config.failure_source()))
            }
            Err(e) => Err(Error::Redis(e)),
        }
    }

    /// Settles it at its estimate now (`RL.RELEASE`): true if still live.
    pub fn release(self) -> Result<bool, Error> {
        self.lease.release()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{Concurrency, SlidingWindow};
    use crate::Share;
    use redis_ratelimit_testkit::Server;

    /// A connection's socket timeouts are set when it is opened and when
    /// a call needs another read timeout (a wait in line), not on every
    /// call: they were, two syscalls a call (20% slower than a raw
    /// connection at 8 threads).
    #[test]
    fn socket_timeouts_are_set_once_per_connection() {
        let s = Server::start();
        let client = redis::Client::open(s.url()).unwrap();
        let limits = Limits::single(
            "calls",
            SlidingWindow::new(1_000_000, Duration::from_secs(60)).unwrap(),
        )
        .unwrap();
        let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed);
        for _ in 0..100 {
            let d = limiter.check("k").unwrap();
            assert_eq!(d.decision.source, Source::Redis);
        }
        let set = |l: &Limiter| l.inner.timeouts_set.load(Ordering::Relaxed);
        assert_eq!(set(&limiter), 2, "one connection: read and write, once");
        // A wait in line reads longer; the next call sets it back.
        limiter.wait("k", Duration::from_secs(5)).unwrap();
        limiter.check("k").unwrap();
        limiter.check("k").unwrap();
        assert_eq!(set(&limiter), 4);
    }

    /// The renewer thread renews fallback leases too, and ends with the
    /// last limiter and lease (it holds the renewals' other reference).
    #[test]
    fn the_renewer_thread_ends_with_the_limiter() {
        // Nothing listens on port 1: the fallback hands out leases.
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let limits = Limits::single(
            "inflight",
            Concurrency::new(1, Duration::from_millis(300)).unwrap(),
        )
        .unwrap();
        let limiter = Limiter::connect(&client, limits, FailurePolicy::Fallback(Share::Whole));
        let lease = limiter.acquire("k").unwrap().unwrap();
        assert_ne!(lease.id(), 0);
        let renewals = limiter.inner.renewals.clone();
        assert!(renewals.lock().running);
        std::thread::sleep(Duration::from_millis(700));
        assert!(limiter.acquire("k").unwrap().is_err(), "still held");
        drop((lease, limiter));
        let start = Instant::now();
        while Arc::strong_count(&renewals) > 1 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the renewer thread outlived its limiter"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
