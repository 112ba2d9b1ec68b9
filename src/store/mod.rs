//! How limiter state lives in a key: five module types (their callbacks in
//! `types`), and the functions every path goes through: [`load`] reads a
//! key's state (checking its type), [`write`] writes an effect's value and
//! expiry together, and [`commit`] writes, replicates and signals it.
//!
//! - `rl-bucket` (token bucket, GCRA): the state is one absolute time in
//!   nanoseconds, kept in the module value's pointer field itself. No heap
//!   allocation: a key costs what any module-typed key costs, and a user's
//!   own string or counter key is never mistaken for state (WRONGTYPE).
//! - `rl-fixwin` (fixed window): the count, kept the same way; the window's
//!   end is the key's expiry, written in the same step.
//! - `rl-window` (exact sliding window): a boxed [`Log`].
//! - `rl-leases` (concurrency leases): a boxed [`Leases`]; the key expires
//!   when its last lease ends.
//! - `rl-locked` (a policy's LOCKOUT): a boxed [`Lock`], the instant it
//!   ends and the limit's own state kept as it was. The key denies every
//!   request until then; the first write after it puts the limit's own
//!   state back (the same on every replica: no clock is read). It expires
//!   when both the lock and that state are over.
//!
//! RDB and `DUMP` carry the value (the u64, or the encoded log, leases or
//! lock); AOF rewrite carries it inside `RL.SETSTATE key <state>` (see
//! `wire`), so a replica, a reloaded server and an AOF replay hold
//! byte-identical state. `rdb_load` validates everything and refuses bad
//! bytes instead of crashing.

mod types;

use std::ffi::CStr;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicI64, Ordering};

use redis_ratelimit_core::algo::fixed::Counter;
use redis_ratelimit_core::algo::lease::Leases;
use redis_ratelimit_core::algo::sliding::Log;
use redis_ratelimit_core::error::{CmdError, WRONGTYPE};
use redis_ratelimit_core::limit::{Effect, Lock, State, StateKind, Stored};
use redis_ratelimit_core::num::parse_u64;
use redis_ratelimit_core::time::Nanos;

use crate::api::{BoxedType, Ctx, Holds, Key, Name, Read};
use crate::stats::{KEYS_BUCKET, KEYS_FIXED, KEYS_LEASES, KEYS_LOCKOUT, KEYS_WINDOW};
use crate::wire::{self, Snapshot};

pub use types::register_types;
use types::{lock_of, BUCKET, FIXED, LEASES, LOCKED, WINDOW};

// ---------------------------------------------------------------- load and write

/// The state in `key` for a limit keeping `kind`: empty, or the stored
/// value. A key of any other type (another limiter's included) is
/// WRONGTYPE. A fixed-window counter without an expiry (someone ran
/// PERSIST) reads as fresh and is overwritten on the next write.
#[inline]
pub fn load<'k>(key: &'k Key<'_>, kind: StateKind) -> Result<Stored<'k>, CmdError> {
    match key.read() {
        Read::Nothing => Ok(Stored::Empty),
        // Locked out: whatever the limit, the lock answers (and its inner
        // state is checked against the limit's kind when the lock ends).
        Read::Module(held) if held.boxed(&LOCKED).is_some() => {
            held.boxed(&LOCKED).map(Stored::Locked).ok_or(WRONGTYPE)
        }
        Read::Module(held) => match kind {
            StateKind::Bucket => held
                .inline(&BUCKET)
                .map(|v| Stored::Bucket(Nanos::new(v.get())))
                .ok_or(WRONGTYPE),
            StateKind::Fixed => {
                let count = held.inline(&FIXED).ok_or(WRONGTYPE)?.get();
                Ok(key.expire_at_ms().map_or(Stored::Empty, |end_ms| {
                    Stored::Fixed(Counter::from_key(count, end_ms))
                }))
            }
            StateKind::Window => held.boxed(&WINDOW).map(Stored::Window).ok_or(WRONGTYPE),
            StateKind::Leases => held.boxed(&LEASES).map(Stored::Leases).ok_or(WRONGTYPE),
        },
        Read::Other => Err(WRONGTYPE),
    }
}

/// [`load`], and for a bucket also a string left by redis-cell: the
/// theoretical arrival time in Unix nanoseconds, as digits (CL.THROTTLE).
/// Any other string, a counter of the application's own included, is
/// WRONGTYPE: CL.THROTTLE never overwrites it.
pub fn load_or_cell<'k>(key: &'k Key<'_>, kind: StateKind) -> Result<Stored<'k>, CmdError> {
    if kind != StateKind::Bucket || key.holds() != Holds::Other {
        return load(key, kind);
    }
    let bytes = key.string_bytes().ok_or(WRONGTYPE)?;
    parse_u64(bytes)
        .filter(|v| *v >= CELL_TAT_FLOOR)
        .map(|v| Stored::Bucket(Nanos::new(v)))
        .ok_or(WRONGTYPE)
}

/// The smallest time redis-cell can have stored: 10^18 ns, September 2001
/// (it ran years later); a smaller number is not its state.
const CELL_TAT_FLOOR: u64 = 1_000_000_000_000_000_000;

/// True if the key is empty or holds one of this module's types.
pub fn holds_ours_or_nothing(key: &Key<'_>) -> bool {
    match key.holds() {
        Holds::Nothing => true,
        Holds::Module(t) => {
            t == BUCKET.id()
                || t == FIXED.id()
                || t == WINDOW.id()
                || t == LEASES.id()
                || t == LOCKED.id()
        }
        Holds::Other => false,
    }
}

/// Unix milliseconds at which a state whose fresh-again instant is `at`
/// expires: rounded up, so the key never vanishes while state is not fresh.
pub fn expiry_ms(at: Nanos) -> u64 {
    at.ceil_millis()
}

fn nonzero(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

fn counted(created: bool, count: &AtomicI64) {
    if created {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes an effect into `key`: the value and the key's expiry together.
/// Never fails: the key was opened and its type checked by [`load`].
#[inline]
pub fn write(key: &mut Key<'_>, effect: &Effect) {
    match effect {
        Effect::None => {}
        Effect::Bucket(tat) => {
            // Never zero: a bucket just used is full strictly after the epoch.
            counted(key.set_inline(&BUCKET, nonzero(tat.as_u64())), &KEYS_BUCKET);
            key.expire_at(expiry_ms(*tat));
        }
        Effect::Fixed { counter, new_end } => {
            // Within a window the expiry stays what it was, unless the key
            // held another value (a lock that ended): replacing it dropped
            // the expiry.
            let replaced = key.set_inline(&FIXED, nonzero(counter.count));
            counted(replaced, &KEYS_FIXED);
            if *new_end || replaced {
                key.expire_at(counter.expiry_ms());
            }
        }
        Effect::WindowAdd(u) => {
            unlock_unless(key, &WINDOW);
            let last = match key.boxed_mut(&WINDOW) {
                Some(log) => {
                    log.apply(u);
                    log.last()
                }
                None => {
                    let log = Log::from_update(u);
                    let last = log.last();
                    counted(key.set_boxed(&WINDOW, log), &KEYS_WINDOW);
                    last
                }
            };
            // A log is empty again once its newest entry leaves the window.
            key.expire_at(expiry_ms(last.saturating_add(u.span())));
        }
        Effect::WindowRefund(r) => {
            unlock_unless(key, &WINDOW);
            let Some(log) = key.boxed_mut(&WINDOW) else {
                return;
            };
            log.apply_refund(r);
            if log.is_empty() {
                key.delete();
            } else {
                let last = log.last();
                key.expire_at(expiry_ms(last.saturating_add(r.span())));
            }
        }
        Effect::Lease(op) => write_leases(key, |l| l.apply(op), || Leases::from_op(op)),
        Effect::Reserve(r) => write_leases(key, |l| l.reserve(r), || Leases::from_reservation(r)),
        Effect::Lockout { until, own } => {
            // The limit's state stays under the lock; the key lives until
            // both are over. A key not locked yet keeps at least its
            // expiry; a lock cut (or renewed) gets its own state's: the
            // key's expiry is then the end of the lock it replaces.
            let inner = current(key);
            let kept = match inner {
                State::Empty => 0,
                _ if lock_of(key).is_some() => 0,
                _ => key.expire_at_ms().unwrap_or(0),
            };
            let held_until = kept.max(own.map_or(0, expiry_ms));
            let lock = Lock {
                until: *until,
                inner,
            };
            counted(key.set_boxed(&LOCKED, lock), &KEYS_LOCKOUT);
            key.expire_at(held_until.max(expiry_ms(*until)));
        }
        Effect::Clear => key.delete(),
    }
}

/// The state a key holds, whatever its kind, owned; a lock's inner state
/// for a locked key.
fn current(key: &Key<'_>) -> State {
    match key.read() {
        Read::Module(held) => {
            if let Some(tat) = held.inline(&BUCKET) {
                State::Bucket(Nanos::new(tat.get()))
            } else if let Some(count) = held.inline(&FIXED) {
                key.expire_at_ms().map_or(State::Empty, |end_ms| {
                    State::Fixed(Counter::from_key(count.get(), end_ms))
                })
            } else if let Some(log) = held.boxed(&WINDOW) {
                State::Window(log.clone())
            } else if let Some(leases) = held.boxed(&LEASES) {
                State::Leases(leases.clone())
            } else if let Some(lock) = held.boxed(&LOCKED) {
                lock.inner.clone()
            } else {
                State::Empty
            }
        }
        Read::Nothing | Read::Other => State::Empty,
    }
}

/// A lease key's change: `change` on the leases it holds, or `fresh` ones
/// if it holds none (a lock over other state is lifted first). The key
/// lives until its last lease ends, and goes when none is left.
fn write_leases(
    key: &mut Key<'_>,
    change: impl FnOnce(&mut Leases),
    fresh: impl FnOnce() -> Leases,
) {
    unlock_unless(key, &LEASES);
    let last = match key.boxed_mut(&LEASES) {
        Some(leases) => {
            change(leases);
            leases.last_expiry()
        }
        None => {
            let leases = fresh();
            let last = leases.last_expiry();
            counted(key.set_boxed(&LEASES, leases), &KEYS_LEASES);
            last
        }
    };
    match last {
        // The last lease ended: the key goes.
        None => key.delete(),
        Some(t) => key.expire_at(expiry_ms(t)),
    }
}

/// Before an effect that changes the value in place (a log, leases): if
/// the key does not hold `t` (new, or locked), puts a lock's state back.
/// Bucket and fixed-window effects replace the value whole: no need.
#[inline]
fn unlock_unless<T>(key: &mut Key<'_>, t: &BoxedType<T>) {
    if key.boxed_mut(t).is_none() {
        unlock(key);
    }
}

/// Puts a locked key's own state back before a write to it (the lock has
/// ended: nothing is written while it lasts). Replacing the value drops
/// the expiry; the effect written next sets it (a fixed window's, which a
/// write within the window keeps, is set here).
fn unlock(key: &mut Key<'_>) {
    let Some(lock) = key.boxed_mut(&LOCKED) else {
        return;
    };
    match std::mem::take(&mut lock.inner) {
        State::Empty | State::Locked(_) => key.delete(),
        State::Bucket(tat) => {
            counted(key.set_inline(&BUCKET, nonzero(tat.as_u64())), &KEYS_BUCKET);
        }
        State::Fixed(c) => {
            counted(key.set_inline(&FIXED, nonzero(c.count)), &KEYS_FIXED);
            key.expire_at(c.expiry_ms());
        }
        State::Window(log) => counted(key.set_boxed(&WINDOW, log), &KEYS_WINDOW),
        State::Leases(leases) => counted(key.set_boxed(&LEASES, leases), &KEYS_LEASES),
    }
}

/// Writes a whole state (RL.SETSTATE): the value, and the expiry it names
/// (0: none; a PEXPIREAT follows in a rewritten AOF).
pub fn write_state(key: &mut Key<'_>, state: Snapshot) {
    let expire_ms = state.expire_ms();
    match state {
        Snapshot::Bucket { tat_ns } => {
            counted(key.set_inline(&BUCKET, nonzero(tat_ns)), &KEYS_BUCKET);
        }
        Snapshot::Fixed { count, .. } => {
            counted(key.set_inline(&FIXED, nonzero(count)), &KEYS_FIXED);
        }
        Snapshot::Window { log, .. } => {
            counted(key.set_boxed(&WINDOW, log), &KEYS_WINDOW);
        }
        Snapshot::Leases { leases, .. } => {
            counted(key.set_boxed(&LEASES, leases), &KEYS_LEASES);
        }
        Snapshot::Lockout { lock, .. } => {
            counted(key.set_boxed(&LOCKED, lock), &KEYS_LOCKOUT);
        }
    }
    if expire_ms == 0 {
        key.persist();
    } else {
        key.expire_at(expire_ms);
    }
}

/// Writes an effect into its key, propagates it to replicas and the AOF
/// with absolute times, and signals the change (`event` names the keyspace
/// notification). The one way a decision changes a key.
#[inline]
pub fn commit(ctx: &Ctx<'_>, key: &mut Key<'_>, name: Name<'_>, effect: &Effect, event: &CStr) {
    if matches!(effect, Effect::None) {
        return;
    }
    write(key, effect);
    // A lockout travels as the whole lock as written, the limit's state
    // inside it.
    let key: &Key<'_> = key;
    wire::replicate(ctx, name, effect, || {
        lock_of(key).map(|l| (l, key.expire_at_ms().unwrap_or(0)))
    });
    ctx.signal_modified(name);
    ctx.notify(event, name);
}
