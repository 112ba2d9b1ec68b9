//! Waiting in line inside the server: the BLOCK option.
//!
//! A request that would be denied, with `BLOCK timeout_ms`, makes its
//! client wait instead of answering. Each key with waiters has a queue,
//! first come first served; a waiter is admitted by a module timer armed
//! for the instant its limits allow it, and only when it is first in the
//! queue of every key it needs. Waiters are ordered by arrival across all
//! keys, so the oldest waiter is first in each of its queues: RL.ALL
//! waiters never deadlock, and no later request on any of their keys is
//! served before them. While a key has waiters, a newcomer (waiting or
//! not) never jumps ahead: a non-blocking call is denied with a
//! retry_after that counts the queue ahead of it.
//!
//! The admission is decided and written in the timer callback, one
//! execution unit that replicates its effects like any command. Only the
//! head of a queue has a timer; a deadline timer per waiter ends its wait.
//! Clients that leave (closed, killed, `CLIENT UNBLOCK`, a role change)
//! leave the queue and consume nothing.
//!
//! All of this runs on the server's main thread: the state is thread-local.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use redis_ratelimit_core::algo::all::combine;
use redis_ratelimit_core::algo::{Answer, RetryAfter};
use redis_ratelimit_core::error::{CmdError, INTERNAL};
use redis_ratelimit_core::limit::{evaluate, Action, Spec, State};
use redis_ratelimit_core::time::Nanos;

use crate::api::{
    self, BlockCallbacks, BlockedClient, BlockedId, Ctx, Key, OwnedString, ServerEvents,
    TimerCallback, TimerId,
};
use crate::commands::Cmd;
use crate::policies::Counters;
use crate::{clock, config, engine, stats, store};

/// Waiters now, anywhere: the fast path of every command reads only this.
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Counters for INFO: waits started, admitted after waiting, timed out,
/// ended by the client (disconnect, kill, CLIENT UNBLOCK), refused (the
/// call could not wait: MULTI, a script, a replica, the cap).
pub static WAITS: AtomicU64 = AtomicU64::new(0);
pub static ADMITTED: AtomicU64 = AtomicU64::new(0);
pub static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
pub static CANCELLED: AtomicU64 = AtomicU64::new(0);
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Waiters now.
pub fn waiters() -> usize {
    WAITERS.load(Ordering::Relaxed)
}

/// A retry after the queue ahead clears, when a key waits on the earliest
/// timer: never below a millisecond, so a client does not spin.
const MIN_RETRY: Nanos = Nanos::from_millis(1);

/// How long an admission is put off while clients are paused (failover).
const PAUSED_RETRY_MS: u64 = 10;

/// One limit a waiter needs.
#[derive(Debug, Clone)]
pub struct Need {
    pub key: Vec<u8>,
    pub spec: Spec,
    pub cost: u64,
    /// The policy's counters, when the limit is a named policy's.
    pub counters: Option<Rc<Counters>>,
}

pub use crate::engine::Shape;

/// What a waiting client is answered.
pub enum Outcome {
    Fields(Vec<i64>),
    Error(CmdError),
}

struct Waiter {
    bc: BlockedClient,
    db: i32,
    needs: Vec<Need>,
    shape: Shape,
    cmd: Cmd,
    deadline: Option<TimerId>,
    admit: Option<TimerId>,
}

/// A key's line: waiter ids in arrival order, and where the line ends
/// up: the key's state once everyone in it is admitted, and when the last
/// one is (each at the first instant its limit allows it).
struct Queue {
    fifo: VecDeque<u64>,
    tail_state: State,
    tail_at: Nanos,
}

#[derive(Default)]
struct Line {
    next_id: u64,
    waiters: HashMap<u64, Waiter>,
    by_client: HashMap<BlockedId, u64>,
    /// By database, then key.
    queues: HashMap<i32, HashMap<Vec<u8>, Queue>>,
}

impl Line {
    fn queue(&self, db: i32, key: &[u8]) -> Option<&Queue> {
        self.queues.get(&db).and_then(|m| m.get(key))
    }

    fn first(&self, db: i32, key: &[u8]) -> Option<u64> {
        self.queue(db, key).and_then(|q| q.fifo.front().copied())
    }
}

thread_local! {
    static LINE: RefCell<Line> = RefCell::new(Line::default());
}

fn with_line<T>(f: impl FnOnce(&mut Line) -> T) -> T {
    LINE.with(|l| f(&mut l.borrow_mut()))
}

/// Timers carry a waiter id and what they are for.
const DEADLINE: u64 = 0;
const ADMIT: u64 = 1;

fn timer_data(id: u64, what: u64) -> u64 {
    (id << 2) | what
}

/// Rounded up: a timer never fires before the instant.
fn ceil_ms(span: Nanos) -> u64 {
    span.ceil_millis()
}

/// Runs a timed admission or deadline.
struct Timers;

impl TimerCallback for Timers {
    fn fire(ctx: &Ctx<'_>, data: u64) {
        let id = data >> 2;
        match data & 3 {
            ADMIT => admit(ctx, id),
            _ => deadline(ctx, id),
        }
    }
}

/// The blocked clients' callbacks.
pub struct Waiting;

impl BlockCallbacks for Waiting {
    type Outcome = Outcome;

    fn reply(ctx: &Ctx<'_>, outcome: &Outcome) {
        match outcome {
            Outcome::Fields(f) => ctx.reply_ints(f),
            Outcome::Error(e) => ctx.reply_error(e),
        }
    }

    fn unblocked(ctx: &Ctx<'_>, client: BlockedId) {
        // CLIENT UNBLOCK .. TIMEOUT: answered now, as at its deadline.
        let Some(id) = with_line(|l| l.by_client.get(&client).copied()) else {
            return;
        };
        if let Some((bc, outcome)) = leave(ctx, id) {
            Waiting::reply(ctx, &outcome);
            bump(&TIMED_OUT);
            api::unblock::<Waiting>(bc, None);
        }
    }

    fn disconnected(ctx: &Ctx<'_>, client: BlockedId) {
        let Some(id) = with_line(|l| l.by_client.get(&client).copied()) else {
            // Already unblocked: its reply was on its way.
            return;
        };
        let Some(w) = remove(ctx, id) else { return };
        bump(&CANCELLED);
        api::unblock::<Waiting>(w.bc, None);
    }
}

/// Server events: a flush can free units at once; a role change ends
/// every wait (Redis has disconnected the waiters already).
pub struct Events;

impl ServerEvents for Events {
    fn flushed(ctx: &Ctx<'_>, db: Option<i32>) {
        let heads: Vec<u64> = with_line(|l| {
            l.queues
                .iter()
                .filter(|(d, _)| db.map_or(true, |x| x == **d))
                .flat_map(|(_, m)| m.values())
                .filter_map(|q| q.fifo.front().copied())
                .collect()
        });
        for id in heads {
            reschedule(ctx, id, 0);
        }
    }

    fn became_replica(ctx: &Ctx<'_>) {
        let ids: Vec<u64> = with_line(|l| l.waiters.keys().copied().collect());
        for id in ids {
            if let Some(w) = remove(ctx, id) {
                bump(&CANCELLED);
                let e = Outcome::Error(redis_ratelimit_core::error::NOT_MASTER);
                api::unblock::<Waiting>(w.bc, Some(Box::new(e)));
            }
        }
    }
}

/// The wait a newcomer on `key` faces behind the queue, if anyone waits
/// on it: its own wait once everyone ahead is admitted.
pub fn behind(ctx: &Ctx<'_>, key: &[u8], spec: &Spec, cost: u64, now: Nanos) -> Option<RetryAfter> {
    if waiters() == 0 {
        return None;
    }
    let db = ctx.selected_db();
    with_line(|l| {
        let q = l.queue(db, key)?;
        if q.fifo.is_empty() {
            return None;
        }
        let at = q.tail_at.max(now);
        let ahead = at.saturating_sub(now).max(MIN_RETRY);
        Some(
            match evaluate(q.tail_state.stored(), spec, at, cost, Action::Take) {
                Ok((d, _)) if d.allowed => RetryAfter::After(ahead),
                Ok((d, _)) => match d.retry_after {
                    RetryAfter::After(w) => RetryAfter::After(ahead.saturating_add(w)),
                    RetryAfter::Never => RetryAfter::Never,
                    RetryAfter::Now => RetryAfter::After(ahead),
                },
                Err(_) => RetryAfter::After(ahead),
            },
        )
    })
}

/// A denial because others wait ahead: nothing can be taken now.
pub fn queued_denial(d: Answer, retry: RetryAfter) -> Answer {
    Answer {
        allowed: false,
        remaining: 0,
        retry_after: retry,
        ..d
    }
}

/// Makes the caller wait for `needs` (denied now, or behind a queue).
/// `head_wait` is its own wait when no one is ahead. False when it cannot
/// wait (MULTI, a script, a replica, the cap, the server refusing): the
/// caller then answers at once.
pub fn wait(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    needs: Vec<Need>,
    shape: Shape,
    timeout_ms: u64,
    states: Vec<State>,
    now: Nanos,
) -> bool {
    if !ctx.flags().can_block() || waiters() >= config::max_waiters() {
        bump(&REFUSED);
        return false;
    }
    let Some(bc) = ctx.block_client::<Waiting>() else {
        bump(&REFUSED);
        return false;
    };
    let db = ctx.selected_db();
    let client = bc.id();
    let id = with_line(|l| {
        l.next_id += 1;
        let id = l.next_id;
        for (need, state) in needs.iter().zip(states) {
            let q = l
                .queues
                .entry(db)
                .or_default()
                .entry(need.key.clone())
                .or_insert_with(|| Queue {
                    fifo: VecDeque::new(),
                    tail_state: state,
                    tail_at: now,
                });
            q.fifo.push_back(id);
            project(q, need, now);
        }
        l.by_client.insert(client, id);
        l.waiters.insert(
            id,
            Waiter {
                bc,
                db,
                needs,
                shape,
                cmd,
                deadline: None,
                admit: None,
            },
        );
        id
    });
    WAITERS.fetch_add(1, Ordering::Relaxed);
    bump(&WAITS);
    if timeout_ms > 0 {
        let t = ctx.create_timer::<Timers>(timeout_ms, timer_data(id, DEADLINE));
        with_line(|l| {
            if let Some(w) = l.waiters.get_mut(&id) {
                w.deadline = Some(t);
            }
        });
    }
    consider(ctx, id, now);
    true
}

/// Extends a queue's projection by one waiter's need.
fn project(q: &mut Queue, need: &Need, now: Nanos) {
    let mut at = q.tail_at.max(now);
    for _ in 0..2 {
        match evaluate(
            q.tail_state.stored(),
            &need.spec,
            at,
            need.cost,
            Action::Take,
        ) {
            Ok((d, effect)) if d.allowed => {
                q.tail_state.apply(&effect);
                q.tail_at = at;
                return;
            }
            Ok((d, _)) => match d.retry_after {
                RetryAfter::After(w) => at = at.saturating_add(w),
                _ => return,
            },
            Err(_) => return,
        }
    }
}

/// Is `id` first in the queue of every key it needs?
fn is_head(l: &Line, id: u64) -> bool {
    let Some(w) = l.waiters.get(&id) else {
        return false;
    };
    w.needs.iter().all(|n| l.first(w.db, &n.key) == Some(id))
}

/// A waiter's admission timer, replacing any earlier one.
fn reschedule(ctx: &Ctx<'_>, id: u64, ms: u64) {
    let old = with_line(|l| l.waiters.get_mut(&id).and_then(|w| w.admit.take()));
    if let Some(t) = old {
        ctx.stop_timer(t);
    }
    let t = ctx.create_timer::<Timers>(ms, timer_data(id, ADMIT));
    with_line(|l| match l.waiters.get_mut(&id) {
        Some(w) => w.admit = Some(t),
        None => ctx.stop_timer(t),
    });
}

/// A waiter that may have become first everywhere: admit it now if its
/// limits allow, else arm its timer for when they will.
fn consider(ctx: &Ctx<'_>, id: u64, now: Nanos) {
    let Some((db, needs)) = with_line(|l| {
        if !is_head(l, id) {
            return None;
        }
        l.waiters.get(&id).map(|w| (w.db, w.needs.clone()))
    }) else {
        return;
    };
    // Decided on the key's current state, read only; the timer callback
    // decides again and writes.
    let wait = peek(ctx, db, &needs, now).map_or(Nanos::ZERO, |d| match d.retry_after {
        RetryAfter::After(w) => w,
        _ => Nanos::ZERO,
    });
    reschedule(ctx, id, ceil_ms(wait));
}

/// Runs `f` with `ctx` on database `db`, then back on the one it was on
/// (a command's or callback's context belongs to a client).
fn in_db<T>(ctx: &Ctx<'_>, db: i32, f: impl FnOnce() -> T) -> T {
    let previous = ctx.selected_db();
    if previous == db {
        return f();
    }
    ctx.select_db(db);
    let out = f();
    ctx.select_db(previous);
    out
}

/// The combined decision of `needs` on the current state, writing nothing.
fn peek(ctx: &Ctx<'_>, db: i32, needs: &[Need], now: Nanos) -> Option<Answer> {
    in_db(ctx, db, || {
        let names: Vec<OwnedString> = needs.iter().filter_map(|n| ctx.string(&n.key)).collect();
        let mut evaluated = Vec::with_capacity(needs.len());
        for (n, name) in needs.iter().zip(&names) {
            let key = ctx.open_key(name.name())?;
            let stored = store::load(&key, n.spec.kind()).ok()?;
            evaluated.push((
                evaluate(stored, &n.spec, now, n.cost, Action::Take).ok()?.0,
                (),
            ));
        }
        combine(evaluated).map(|(_, d, _)| d)
    })
}

/// Takes a waiter out of every queue and the maps, stopping its timers.
/// Returns it, and the waiters that became first in one of its queues.
fn take_out(ctx: &Ctx<'_>, id: u64) -> Option<(Waiter, Vec<u64>)> {
    let (w, next) = with_line(|l| {
        let w = l.waiters.remove(&id)?;
        l.by_client.remove(&w.bc.id());
        let mut next = Vec::new();
        let Some(keys) = l.queues.get_mut(&w.db) else {
            return Some((w, next));
        };
        for n in &w.needs {
            let Some(q) = keys.get_mut(n.key.as_slice()) else {
                continue;
            };
            let was_first = q.fifo.front() == Some(&id);
            q.fifo.retain(|x| *x != id);
            match q.fifo.front() {
                None => {
                    keys.remove(n.key.as_slice());
                }
                Some(&h) if was_first => next.push(h),
                Some(_) => {}
            }
        }
        if keys.is_empty() {
            l.queues.remove(&w.db);
        }
        Some((w, next))
    })?;
    WAITERS.fetch_sub(1, Ordering::Relaxed);
    for t in [w.deadline, w.admit].into_iter().flatten() {
        ctx.stop_timer(t);
    }
    Some((w, next))
}

/// Takes a waiter out outside a timer (a client that leaves, a deadline):
/// the waiters now first get their timers.
fn remove(ctx: &Ctx<'_>, id: u64) -> Option<Waiter> {
    let (w, next) = take_out(ctx, id)?;
    let now = clock::now();
    for h in next {
        consider(ctx, h, now);
    }
    Some(w)
}

/// A waiter leaves before admission: the reply it gets is the denial as
/// of now, behind whoever is still in line.
fn leave(ctx: &Ctx<'_>, id: u64) -> Option<(BlockedClient, Outcome)> {
    let w = remove(ctx, id)?;
    let now = clock::now();
    let outcome = match denial(ctx, &w, now) {
        Some(fields) => Outcome::Fields(fields),
        None => Outcome::Error(INTERNAL),
    };
    Some((w.bc, outcome))
}

/// The reply fields of a denial for `w` as of `now`.
fn denial(ctx: &Ctx<'_>, w: &Waiter, now: Nanos) -> Option<Vec<i64>> {
    in_db(ctx, w.db, || {
        let names: Vec<OwnedString> = w.needs.iter().filter_map(|n| ctx.string(&n.key)).collect();
        let mut evaluated = Vec::with_capacity(w.needs.len());
        for (n, name) in w.needs.iter().zip(&names) {
            let key = ctx.open_key(name.name())?;
            let stored = store::load(&key, n.spec.kind()).ok()?;
            let (d, _) = evaluate(stored, &n.spec, now, n.cost, Action::Take).ok()?;
            let d = match behind(ctx, &n.key, &n.spec, n.cost, now) {
                Some(retry) => queued_denial(d, retry),
                None if d.allowed => queued_denial(d, RetryAfter::After(MIN_RETRY)),
                None => d,
            };
            evaluated.push((d, ()));
        }
        let (index, d, _) = combine(evaluated)?;
        Some(fields(w.shape, &d, index, None))
    })
}

fn fields(shape: Shape, d: &Answer, index: usize, lease: Option<u64>) -> Vec<i64> {
    let (f, n) = engine::fields(shape, d, index, lease);
    f.get(..n).unwrap_or(&[]).to_vec()
}

/// A waiter's deadline.
fn deadline(ctx: &Ctx<'_>, id: u64) {
    with_line(|l| {
        if let Some(w) = l.waiters.get_mut(&id) {
            // This timer fired: its id may be reused, never stop it.
            w.deadline = None;
        }
    });
    let needs = with_line(|l| l.waiters.get(&id).map(|w| w.needs.clone()));
    if let Some((bc, outcome)) = leave(ctx, id) {
        bump(&TIMED_OUT);
        for c in needs.iter().flatten().filter_map(|n| n.counters.as_ref()) {
            c.waited(false);
        }
        api::unblock::<Waiting>(bc, Some(Box::new(outcome)));
    }
}

/// The head's timer: decide and write now, as the command would have;
/// then the waiters behind it, while their limits allow, in this same
/// callback (a burst of freed units is handed out at once).
fn admit(ctx: &Ctx<'_>, id: u64) {
    with_line(|l| {
        if let Some(w) = l.waiters.get_mut(&id) {
            // This timer fired: its id may be reused, never stop it.
            w.admit = None;
        }
    });
    // Oldest first: the waiters behind one admitted are considered in the
    // order they arrived, and each admitted one is answered at once (Redis
    // sends the replies of clients it unblocks in the order it was told).
    let mut work = VecDeque::from([id]);
    while let Some(id) = work.pop_front() {
        let mut next = admit_one(ctx, id);
        next.sort_unstable();
        work.extend(next);
    }
}

/// Admits `id` if it is first everywhere and its limits allow it now;
/// returns the waiters that became first behind it.
fn admit_one(ctx: &Ctx<'_>, id: u64) -> Vec<u64> {
    let Some((db, needs, cmd, shape)) = with_line(|l| {
        let w = l.waiters.get(&id)?;
        let found = (w.db, w.needs.clone(), w.cmd, w.shape);
        is_head(l, id).then_some(found)
    }) else {
        return Vec::new();
    };
    if !ctx.flags().master() {
        return Vec::new();
    }
    if api::avoid_replica_traffic() {
        // A failover or shutdown is waiting for replicas to catch up.
        reschedule(ctx, id, PAUSED_RETRY_MS);
        return Vec::new();
    }
    // A timer's context is its own: it stays on the waiter's database.
    ctx.select_db(db);
    let names: Vec<OwnedString> = needs.iter().filter_map(|n| ctx.string(&n.key)).collect();
    if names.len() != needs.len() {
        return fail(ctx, id, Outcome::Error(INTERNAL));
    }
    if names.iter().any(|n| !ctx.key_is_local(n.name())) {
        // The slot moved (or the cluster is down): the client retries and
        // is redirected; nothing was taken.
        return fail(
            ctx,
            id,
            Outcome::Error(redis_ratelimit_core::error::TRYAGAIN),
        );
    }
    let now = clock::now();
    let mut keys: Vec<Key<'_>> = Vec::with_capacity(needs.len());
    for n in &names {
        match ctx.open_key(n.name()) {
            Some(k) => keys.push(k),
            None => return fail(ctx, id, Outcome::Error(INTERNAL)),
        }
    }
    let mut evaluated = Vec::with_capacity(needs.len());
    for (n, key) in needs.iter().zip(&keys) {
        let decided = store::load(key, n.spec.kind())
            .and_then(|stored| evaluate(stored, &n.spec, now, n.cost, Action::Take));
        match decided {
            Ok(e) => evaluated.push(e),
            Err(e) => {
                drop(keys);
                return fail(ctx, id, Outcome::Error(e));
            }
        }
    }
    let Some((index, d, effects)) = combine(evaluated) else {
        return Vec::new();
    };
    if !d.allowed {
        drop(keys);
        return match d.retry_after {
            RetryAfter::After(w) => {
                reschedule(ctx, id, ceil_ms(w));
                Vec::new()
            }
            // The key changed under the waiter (another limit on it).
            _ => fail(ctx, id, Outcome::Fields(fields(shape, &d, index, None))),
        };
    }
    for ((n, key), effect) in names.iter().zip(keys.iter_mut()).zip(&effects) {
        engine::commit(ctx, key, n.name(), effect, cmd.row.event);
    }
    drop(keys);
    stats::decided(cmd.id, true, false, false);
    bump(&ADMITTED);
    for c in needs.iter().filter_map(|n| n.counters.as_ref()) {
        c.waited(true);
    }
    let Some((w, next)) = take_out(ctx, id) else {
        return Vec::new();
    };
    let lease = effects.iter().find_map(|e| e.lease_id());
    let outcome = Outcome::Fields(fields(shape, &d, index, lease));
    api::unblock::<Waiting>(w.bc, Some(Box::new(outcome)));
    next
}

/// Ends a wait with `outcome` (an error, or a denial that can never pass);
/// returns the waiters that became first behind it.
fn fail(ctx: &Ctx<'_>, id: u64, outcome: Outcome) -> Vec<u64> {
    let Some((w, next)) = take_out(ctx, id) else {
        return Vec::new();
    };
    bump(&CANCELLED);
    api::unblock::<Waiting>(w.bc, Some(Box::new(outcome)));
    next
}

/// Units came back on `key` (a refund): its first waiter may fit sooner.
pub fn kick(ctx: &Ctx<'_>, key: &[u8]) {
    if waiters() == 0 {
        return;
    }
    let db = ctx.selected_db();
    let head = with_line(|l| l.first(db, key));
    if let Some(h) = head {
        if with_line(|l| is_head(l, h)) {
            reschedule(ctx, h, 0);
        }
    }
}
