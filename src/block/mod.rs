//! Waiting in line inside the server: the BLOCK option.
//!
//! A request that would be denied, with `BLOCK timeout_ms`, makes its
//! client wait instead of answering. Each key with waiters has a queue,
//! first come first served ([`line`]); a waiter is admitted by a module
//! timer armed for the instant its limits allow it, and only when it is
//! first in the queue of every key it needs. While a key has waiters, a
//! newcomer (waiting or not) never jumps ahead: a non-blocking call is
//! denied with a retry_after that counts the queue ahead of it.
//!
//! The engine calls in ([`ahead`], [`wait`], [`kick`]); nothing here calls
//! back up. An admission is decided and written in the timer callback, one
//! execution unit that replicates its effects like any command, through the
//! same `store` and core `decide_all` as a command. Only the head of a
//! queue has a timer; a deadline timer per waiter (or `CLIENT UNBLOCK id
//! [TIMEOUT]`) ends its wait with the denial as of then. Whatever may
//! bring units back sooner (a refund, a release, a flush, the key's value
//! deleted, expired, evicted, renamed away or overwritten) arms the first
//! waiter's timer again at once. Clients that leave (closed, killed,
//! `CLIENT UNBLOCK id ERROR`, a role change) leave the queue and consume
//! nothing.
//!
//! All of this runs on the server's main thread: the state is thread-local.

mod line;

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use redis_ratelimit_core::algo::Answer;
use redis_ratelimit_core::error::{CmdError, INTERNAL, NOT_MASTER, TRYAGAIN};
use redis_ratelimit_core::few::Few;
use redis_ratelimit_core::limit::{decide_all, Action, AllDecided, Claim, Rules, Spec, State};
use redis_ratelimit_core::time::Nanos;

use crate::api::{
    self, BlockCallbacks, BlockedClient, BlockedId, Ctx, Key, KeyEvents, Migration, OwnedString,
    ServerEvents, TimerCallback, TimerId,
};
use crate::policies::Counters;
use crate::reply::{Fields, Reply};
use crate::stats::{bump, Report};
use crate::{clock, config, store};

pub use line::{refusal, Need};
use line::{Admission, Line};

/// Waiters now, anywhere: the fast path of every command reads only this.
static WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Counters for INFO: waits started, admitted after waiting, timed out,
/// ended by the client (disconnect, kill, `CLIENT UNBLOCK .. ERROR`) or by
/// an error, refused (the call could not wait: MULTI, a script, a replica,
/// the cap). `CLIENT UNBLOCK .. TIMEOUT` counts as timed out.
pub static WAITS: AtomicU64 = AtomicU64::new(0);
pub static ADMITTED: AtomicU64 = AtomicU64::new(0);
pub static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
pub static CANCELLED: AtomicU64 = AtomicU64::new(0);
pub static REFUSED: AtomicU64 = AtomicU64::new(0);

/// Waiters now.
pub fn waiters() -> usize {
    WAITERS.load(Ordering::Relaxed)
}

/// How long an admission is put off while clients are paused (failover).
const PAUSED_RETRY_MS: u64 = 10;

/// What the module keeps with a waiter.
struct Entry {
    bc: BlockedClient,
    report: &'static Report,
    reply: Reply,
    /// Each limit's policy counters, for the limits that are named policies.
    counters: Vec<Option<Rc<Counters>>>,
    deadline: Option<TimerId>,
    admit: Option<TimerId>,
}

#[derive(Default)]
struct Waiting {
    line: Line<Entry>,
    by_client: HashMap<BlockedId, u64>,
}

thread_local! {
    static WAITING: RefCell<Waiting> = RefCell::new(Waiting::default());
}

fn with<T>(f: impl FnOnce(&mut Waiting) -> T) -> T {
    WAITING.with(|w| f(&mut w.borrow_mut()))
}

fn entry_mut(w: &mut Waiting, id: u64) -> Option<&mut Entry> {
    w.line.get_mut(id).map(|x| &mut x.data)
}

/// What a waiting client is answered.
pub enum Outcome {
    Answer(Fields),
    Error(CmdError),
}

/// Timers carry a waiter id and what they are for.
const DEADLINE: u64 = 0;
const ADMIT: u64 = 1;

fn timer_data(id: u64, what: u64) -> u64 {
    (id << 2) | what
}

/// Runs a timed admission or deadline.
struct Timers;

impl TimerCallback for Timers {
    fn fire(ctx: &Ctx<'_>, data: u64) {
        let (id, what) = (data >> 2, data & 3);
        with(|w| {
            if let Some(e) = entry_mut(w, id) {
                // This timer fired: its id may be reused, never stop it.
                match what {
                    ADMIT => e.admit = None,
                    _ => e.deadline = None,
                }
            }
        });
        match what {
            ADMIT => admit(ctx, id),
            _ => deadline(ctx, id),
        }
    }
}

/// The blocked clients' callbacks.
pub struct Clients;

impl BlockCallbacks for Clients {
    type Outcome = Outcome;

    fn reply(ctx: &Ctx<'_>, outcome: &Outcome) {
        match outcome {
            Outcome::Answer(f) => ctx.reply_ints(f.as_slice()),
            Outcome::Error(e) => ctx.reply_error(e),
        }
    }

    fn unblocked(ctx: &Ctx<'_>, client: BlockedId) {
        // CLIENT UNBLOCK .. TIMEOUT: answered now, as at its deadline.
        let Some(id) = with(|w| w.by_client.get(&client).copied()) else {
            return;
        };
        if let Some((entry, outcome)) = leave(ctx, id) {
            Clients::reply(ctx, &outcome);
            bump(&TIMED_OUT);
            api::unblock::<Clients>(entry.bc, None);
        }
    }

    fn disconnected(ctx: &Ctx<'_>, client: BlockedId) {
        let Some(id) = with(|w| w.by_client.get(&client).copied()) else {
            // Already unblocked: its reply was on its way.
            return;
        };
        let Some((entry, _)) = remove(ctx, id) else {
            return;
        };
        bump(&CANCELLED);
        api::unblock::<Clients>(entry.bc, None);
    }
}

/// Server events: a flush can free units at once; a role change ends
/// every wait (Redis has disconnected the waiters already).
pub struct Events;

impl ServerEvents for Events {
    fn flushed(ctx: &Ctx<'_>, db: Option<i32>) {
        for id in with(|w| w.line.heads(db)) {
            reschedule(ctx, id, 0);
        }
    }

    /// Valkey 9's atomic slot migration. While the slots are copied the
    /// source still serves them: its waiters stay, and what they are
    /// admitted streams to the target like any write (during the handoff
    /// pause, [`admit_one`] waits). Once the slots are the target's (their
    /// keys already trimmed here), the waiters on them leave with TRYAGAIN,
    /// nothing taken: the client asks again and is redirected to the new
    /// owner, where it starts over. A waiter is only ever admitted on the
    /// node its connection waits on, once.
    fn slot_migration(ctx: &Ctx<'_>, step: Migration, ranges: &[(u16, u16)]) {
        if step != Migration::ExportCompleted || waiters() == 0 {
            return;
        }
        let moved = |slot: Option<u16>| {
            slot.is_some_and(|s| ranges.iter().any(|&(a, b)| (a..=b).contains(&s)))
        };
        let leaving: Vec<u64> = with(|w| {
            let all = w.line.ids();
            all.into_iter()
                .filter(|&id| {
                    w.line
                        .get(id)
                        .is_some_and(|x| x.needs.iter().any(|n| moved(ctx.key_slot(&n.key))))
                })
                .collect()
        });
        let mut next = Vec::new();
        for id in leaving {
            next.extend(fail(ctx, id, Outcome::Error(TRYAGAIN)));
        }
        // Those who became first elsewhere (none in a cluster, where one
        // waiter's keys share a slot) get their timers.
        let now = clock::now();
        for h in next {
            consider(ctx, h, now);
        }
    }

    fn became_replica(ctx: &Ctx<'_>) {
        for id in with(|w| w.line.ids()) {
            if let Some((entry, _)) = remove(ctx, id) {
                bump(&CANCELLED);
                let e = Outcome::Error(NOT_MASTER);
                api::unblock::<Clients>(entry.bc, Some(Box::new(e)));
            }
        }
    }
}

/// A key's value gone (DEL, UNLINK, an expiry, an eviction, RENAME or
/// MOVE away, an overwrite: SET, RESTORE .. REPLACE): its line is checked
/// again at once, on what the key holds now (a fresh limit, another
/// state, or a WRONGTYPE that ends every wait on it), as [`kick`] does.
/// Every removal of one of the module's keys (an expiry of a fresh one
/// included) asks first whether anyone waits: with no one, it costs one
/// load.
impl KeyEvents for Events {
    fn removed(ctx: &Ctx<'_>, db: i32, key: &[u8]) {
        kick_in(ctx, db, key);
    }

    fn listening() -> bool {
        waiters() > 0
    }
}

/// A newcomer's answers behind the line (see [`Line::ahead`]): `None`
/// when no one waits ahead of it on any key it takes from.
pub fn ahead<'a>(
    ctx: &Ctx<'_>,
    limits: impl IntoIterator<Item = (&'a [u8], &'a Spec, u64, Answer)>,
    now: Nanos,
) -> Option<Few<Answer>> {
    if waiters() == 0 {
        return None;
    }
    let db = ctx.selected_db();
    with(|w| w.line.ahead(db, limits, now))
}

/// Does a request denied with `answer` have a wait that would let it in?
pub fn waits_for_limit(answer: &Answer) -> bool {
    matches!(Admission::of(answer), Admission::After(_))
}

/// Makes the caller wait for `needs` (denied now, or behind a queue):
/// `states` are the keys' states as the request loaded them, `counters`
/// each limit's policy counters. False when it cannot wait (MULTI, a
/// script, a replica, the cap, the server refusing): the caller then
/// answers at once.
#[allow(clippy::too_many_arguments)]
pub fn wait(
    ctx: &Ctx<'_>,
    report: &'static Report,
    needs: Vec<Need>,
    counters: Vec<Option<Rc<Counters>>>,
    states: Vec<State>,
    reply: Reply,
    timeout_ms: u64,
    now: Nanos,
) -> bool {
    if !ctx.flags().can_block() || waiters() >= config::max_waiters() {
        bump(&REFUSED);
        return false;
    }
    let Some(bc) = ctx.block_client::<Clients>() else {
        bump(&REFUSED);
        return false;
    };
    let db = ctx.selected_db();
    let client = bc.id();
    let entry = Entry {
        bc,
        report,
        reply,
        counters,
        deadline: None,
        admit: None,
    };
    let id = with(|w| {
        let id = w.line.join(db, needs, states, now, entry);
        w.by_client.insert(client, id);
        id
    });
    WAITERS.fetch_add(1, Ordering::Relaxed);
    bump(&WAITS);
    if timeout_ms > 0 {
        let t = ctx.create_timer::<Timers>(timeout_ms, timer_data(id, DEADLINE));
        with(|w| {
            if let Some(e) = entry_mut(w, id) {
                e.deadline = Some(t);
            }
        });
    }
    consider(ctx, id, now);
    true
}

/// Units came back on `key` (a refund, a release), or its value is gone:
/// its first waiter may fit sooner. Writes nothing (an unlink callback
/// may not): the admission runs from a timer, after the command that
/// changed the key.
pub fn kick(ctx: &Ctx<'_>, key: &[u8]) {
    if waiters() == 0 {
        return;
    }
    kick_in(ctx, ctx.selected_db(), key);
}

fn kick_in(ctx: &Ctx<'_>, db: i32, key: &[u8]) {
    if waiters() == 0 {
        return;
    }
    let head = with(|w| w.line.head_on(db, key));
    if let Some(h) = head {
        reschedule(ctx, h, 0);
    }
}

/// A waiter's admission timer, replacing any earlier one.
fn reschedule(ctx: &Ctx<'_>, id: u64, ms: u64) {
    if let Some(t) = with(|w| entry_mut(w, id).and_then(|e| e.admit.take())) {
        ctx.stop_timer(t);
    }
    let t = ctx.create_timer::<Timers>(ms, timer_data(id, ADMIT));
    with(|w| match entry_mut(w, id) {
        Some(e) => e.admit = Some(t),
        None => ctx.stop_timer(t),
    });
}

/// A waiter that may have become first everywhere: admit it now if its
/// limits allow, else arm its timer for when they will.
fn consider(ctx: &Ctx<'_>, id: u64, now: Nanos) {
    let Some((db, needs)) = with(|w| {
        let x = w.line.get(id).filter(|_| w.line.is_head(id))?;
        Some((x.db, x.needs.clone()))
    }) else {
        return;
    };
    // Decided on the keys' current states, read only; the timer callback
    // decides again and writes.
    let decided = in_db(ctx, db, || decide_now(ctx, &needs, now));
    let wait = decided.map_or(Nanos::ZERO, |d| Admission::of(&d.answer).timer());
    reschedule(ctx, id, wait.ceil_millis());
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

/// The key names a waiter needs, as module strings.
fn names(ctx: &Ctx<'_>, needs: &[Need]) -> Option<Vec<OwnedString>> {
    let names: Vec<OwnedString> = needs.iter().filter_map(|n| ctx.string(&n.key)).collect();
    (names.len() == needs.len()).then_some(names)
}

fn open<'c>(ctx: &Ctx<'c>, names: &[OwnedString]) -> Option<Few<Key<'c>>> {
    Few::try_map(names, |n| ctx.open_key(n.name()).ok_or(())).ok()
}

/// A waiter's limits decided on its keys' states now (on the context's
/// database), writing nothing; `None` if a key cannot be opened or a state
/// read.
fn decide_now(ctx: &Ctx<'_>, needs: &[Need], now: Nanos) -> Option<AllDecided> {
    let names = names(ctx, needs)?;
    let keys = open(ctx, &names)?;
    decide_on(&keys, needs, now).ok()
}

/// A waiter's limits decided on the states of its open `keys` now,
/// writing nothing.
fn decide_on(keys: &[Key<'_>], needs: &[Need], now: Nanos) -> Result<AllDecided, CmdError> {
    let mut each_key = keys.iter();
    let claims = Few::try_map(needs, |n| {
        Ok(Claim {
            stored: store::load(each_key.next().ok_or(INTERNAL)?, n.spec.kind())?,
            spec: &n.spec,
            rules: Rules::default(),
            cost: n.cost,
        })
    })?;
    decide_all(&claims, now, Action::Take)
}

/// Takes a waiter out of the line, stopping its timers. Returns it, and
/// the waiters that became first in one of its queues, oldest first.
fn take_out(ctx: &Ctx<'_>, id: u64) -> Option<(line::Waiter<Entry>, Vec<u64>)> {
    let (w, next) = with(|w| {
        let (x, next) = w.line.leave(id)?;
        w.by_client.remove(&x.data.bc.id());
        Some((x, next))
    })?;
    WAITERS.fetch_sub(1, Ordering::Relaxed);
    for t in [w.data.deadline, w.data.admit].into_iter().flatten() {
        ctx.stop_timer(t);
    }
    Some((w, next))
}

/// Takes a waiter out outside a timer (a client that leaves, a deadline):
/// the waiters now first get their timers. Returns it and its needs.
fn remove(ctx: &Ctx<'_>, id: u64) -> Option<(Entry, (i32, Vec<Need>))> {
    let (w, next) = take_out(ctx, id)?;
    let now = clock::now();
    for h in next {
        consider(ctx, h, now);
    }
    Some((w.data, (w.db, w.needs)))
}

/// A waiter leaves before admission: the reply it gets is the denial as
/// of now, behind whoever is still in line; TRYAGAIN if its slot moved
/// away meanwhile (a classic MIGRATE, Redis 8.4's slot migration: no event
/// told us), as at its turn: a denial read from a key that is not here
/// any more would be no answer.
fn leave(ctx: &Ctx<'_>, id: u64) -> Option<(Entry, Outcome)> {
    let (entry, (db, needs)) = remove(ctx, id)?;
    let now = clock::now();
    let denial = in_db(ctx, db, || {
        let names = names(ctx, &needs).ok_or(INTERNAL)?;
        if names.iter().any(|n| !ctx.key_is_local(n.name())) {
            return Err(TRYAGAIN);
        }
        let keys = open(ctx, &names).ok_or(INTERNAL)?;
        // A key that became another type (an overwrite the line did not
        // hear of) answers WRONGTYPE, as the call would now.
        let decided = decide_on(&keys, &needs, now)?;
        let answers: Vec<_> = decided.limits.iter().map(|d| d.answer).collect();
        with(|w| w.line.denial(db, &needs, &answers, now)).ok_or(INTERNAL)
    });
    let outcome = match denial {
        Ok((index, answer)) => Outcome::Answer(entry.reply.fields(&answer, index, None)),
        Err(e) => Outcome::Error(e),
    };
    Some((entry, outcome))
}

/// A waiter's deadline.
fn deadline(ctx: &Ctx<'_>, id: u64) {
    if let Some((entry, outcome)) = leave(ctx, id) {
        bump(&TIMED_OUT);
        for c in entry.counters.iter().flatten() {
            c.waited(false);
        }
        api::unblock::<Clients>(entry.bc, Some(Box::new(outcome)));
    }
}

/// The head's timer: decide and write now, as the command would have;
/// then the waiters behind it, while their limits allow, in this same
/// callback (a burst of freed units is handed out at once).
fn admit(ctx: &Ctx<'_>, id: u64) {
    // Oldest first: the waiters behind one admitted are considered in the
    // order they arrived, and each admitted one is answered at once (Redis
    // sends the replies of clients it unblocks in the order it was told).
    let mut work = VecDeque::from([id]);
    while let Some(id) = work.pop_front() {
        work.extend(admit_one(ctx, id));
    }
}

/// Admits `id` if it is first everywhere and its limits allow it now;
/// returns the waiters that became first behind it.
fn admit_one(ctx: &Ctx<'_>, id: u64) -> Vec<u64> {
    let Some((db, needs, report, reply)) = with(|w| {
        let x = w.line.get(id).filter(|_| w.line.is_head(id))?;
        Some((x.db, x.needs.clone(), x.data.report, x.data.reply))
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
    let Some(names) = names(ctx, &needs) else {
        return fail(ctx, id, Outcome::Error(INTERNAL));
    };
    if names.iter().any(|n| !ctx.key_is_local(n.name())) {
        // The slot moved (or the cluster is down): the client retries and
        // is redirected; nothing was taken.
        return fail(ctx, id, Outcome::Error(TRYAGAIN));
    }
    let now = clock::now();
    let Some(mut keys) = open(ctx, &names) else {
        return fail(ctx, id, Outcome::Error(INTERNAL));
    };
    let decided = match decide_on(&keys, &needs, now) {
        Ok(d) => d,
        Err(e) => {
            drop(keys);
            return fail(ctx, id, Outcome::Error(e));
        }
    };
    match Admission::of(&decided.answer) {
        Admission::Now => {}
        Admission::After(w) => {
            drop(keys);
            reschedule(ctx, id, w.ceil_millis());
            return Vec::new();
        }
        Admission::Never => {
            drop(keys);
            let fields = reply.fields(&decided.answer, decided.index, None);
            return fail(ctx, id, Outcome::Answer(fields));
        }
    }
    let effects = decided.limits.iter().map(|d| &d.effect);
    for ((n, key), effect) in names.iter().zip(keys.iter_mut()).zip(effects) {
        store::commit(ctx, key, n.name(), effect, report.event);
    }
    drop(keys);
    report.decided(true, false, false);
    bump(&ADMITTED);
    let Some((w, next)) = take_out(ctx, id) else {
        return Vec::new();
    };
    for c in w.data.counters.iter().flatten() {
        c.waited(true);
    }
    let fields = reply.fields(&decided.answer, decided.index, decided.lease_id());
    api::unblock::<Clients>(w.data.bc, Some(Box::new(Outcome::Answer(fields))));
    next
}

/// Ends a wait with `outcome` (an error, or a denial that can never pass);
/// returns the waiters that became first behind it.
fn fail(ctx: &Ctx<'_>, id: u64, outcome: Outcome) -> Vec<u64> {
    let Some((w, next)) = take_out(ctx, id) else {
        return Vec::new();
    };
    bump(&CANCELLED);
    api::unblock::<Clients>(w.data.bc, Some(Box::new(outcome)));
    next
}
