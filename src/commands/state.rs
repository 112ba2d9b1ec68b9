//! RL.SETSTATE, RL.WINDOWADD, RL.WINDOWREFUND and RL.LEASE: how replicas
//! and the AOF receive effects.
//!
//! Limiter commands never replicate themselves (a replica would decide again
//! on its own clock). They replicate their effect, with absolute times, as
//! one of these commands with a single binary argument (see `wire`). The
//! table marks them internal: they apply only what comes over the
//! replication link or from an AOF being loaded, and refuse ordinary
//! clients, which could otherwise forge a limiter's state.

use redis_ratelimit_core::algo::lease::Op;
use redis_ratelimit_core::algo::sliding::{Refund, Update};
use redis_ratelimit_core::bounds::MAX_INT;
use redis_ratelimit_core::error::{CmdError, INTERNAL, STATE_PAYLOAD, SYNTAX, UPDATE};
use redis_ratelimit_core::grammar::Words;
use redis_ratelimit_core::limit::{Effect, Lock, State, StateKind, Stored};

use super::row::Cmd;
use crate::api::{Argv, Ctx, Holds, Key, Name};
use crate::wire::{self, LeaseChange};
use crate::{clock, store};

/// The key and the one payload argument (the row's arity: exactly these).
fn key_and_payload<'a>(argv: &Argv<'a>) -> Result<(Name<'a>, &'a [u8]), CmdError> {
    let key = argv.name(1).ok_or(SYNTAX)?;
    let payload = argv.word(2).ok_or(SYNTAX)?;
    Ok((key, payload))
}

/// RL.SETSTATE key state
pub fn setstate(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (name, payload) = key_and_payload(&argv)?;
    let state = wire::decode_state(payload).ok_or(STATE_PAYLOAD)?;
    let expire_ms = state.expire_ms();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    if !store::holds_ours_or_nothing(&key) {
        // The master replaced a value of another type (CL.THROTTLE taking
        // over a key redis-cell left): so does every copy.
        key.delete();
    }
    // As SET .. PXAT does: a master not loading drops an already expired
    // state instead of storing it; replicas and loads keep it and let the
    // expiry run its course.
    let now_ms = clock::now().as_millis();
    let flags = ctx.flags();
    if expire_ms != 0 && expire_ms <= now_ms && !(flags.loading() || flags.replica()) {
        if key.holds() != Holds::Nothing {
            key.delete();
            ctx.replicate_del(name);
            ctx.signal_modified(name);
        }
        drop(key);
        ctx.reply_ok();
        return Ok(());
    }
    store::write_state(&mut key, state);
    passed_on(ctx, name, cmd);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// A change written as the master sent it: this server passes it on as it
/// is (its own replicas, its AOF) and signals it.
fn passed_on(ctx: &Ctx<'_>, name: Name<'_>, cmd: Cmd) {
    ctx.replicate_verbatim();
    ctx.signal_modified(name);
    ctx.notify(cmd.row.event, name);
}

/// Writes a replicated effect into `key` and passes it on.
fn apply(ctx: &Ctx<'_>, key: &mut Key<'_>, name: Name<'_>, effect: &Effect, cmd: Cmd) {
    store::write(key, effect);
    passed_on(ctx, name, cmd);
}

/// RL.WINDOWADD key update
pub fn windowadd(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (name, payload) = key_and_payload(&argv)?;
    let u = Update::decode(payload).ok_or(UPDATE)?;
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    // A log never holds more units than the largest limit, i64::MAX: what
    // would pass it is refused here (RL.SLIDING never sends such an update),
    // so every log stays one that RDB, DUMP and RL.SETSTATE load back. The
    // units counted are those left once the update's instant has trimmed
    // the log, as the master counted them.
    let held = match store::load(&key, StateKind::Window)? {
        Stored::Window(log)
        | Stored::Locked(Lock {
            inner: State::Window(log),
            ..
        }) => log.total_before(&u),
        _ => 0,
    };
    if held.saturating_add(u.units()) > MAX_INT {
        return Err(UPDATE);
    }
    apply(ctx, &mut key, name, &Effect::WindowAdd(u), cmd);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// RL.WINDOWREFUND key refund
pub fn windowrefund(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (name, payload) = key_and_payload(&argv)?;
    let r = Refund::decode(payload).ok_or(UPDATE)?;
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    // A log, or one under a lock: a refund of a log that is gone changes
    // nothing.
    if store::load(&key, StateKind::Window)?.kind() == Some(StateKind::Window) {
        apply(ctx, &mut key, name, &Effect::WindowRefund(r), cmd);
    }
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// RL.LEASE key op
pub fn lease(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (name, payload) = key_and_payload(&argv)?;
    let change = wire::decode_lease_change(payload).ok_or(UPDATE)?;
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    // Checks the key's type; a release or renewal of a key that is gone
    // changes nothing.
    let held = store::load(&key, StateKind::Leases)?.kind() == Some(StateKind::Leases);
    let effect = match change {
        LeaseChange::Op(op) if held || matches!(op, Op::Acquire { .. }) => Effect::Lease(op),
        LeaseChange::Op(_) => Effect::None,
        LeaseChange::Reserve(r) => Effect::Reserve(r),
    };
    if !matches!(effect, Effect::None) {
        apply(ctx, &mut key, name, &effect, cmd);
    }
    drop(key);
    ctx.reply_ok();
    Ok(())
}
