//! RL.SETSTATE, RL.WINDOWADD and RL.WINDOWREFUND: how replicas and the AOF
//! receive state.
//!
//! Limiter commands never replicate themselves (a replica would decide again
//! on its own clock). They replicate their effect, with absolute times, as
//! one of these commands with a single binary argument (see `wire`): a
//! bucket's or fixed window's new state, a sliding window's deterministic
//! update or refund. Applications have no reason to call them.

use super::limit::{apply_window_add, apply_window_refund};
use super::Args;
use crate::api::{Ctx, Holds, Key, RawString};
use crate::error::{CmdResult, INTERNAL, STATE_PAYLOAD, SYNTAX, UPDATE, WRONGTYPE};
use crate::store;
use crate::time::{self, Nanos};
use crate::wire::{self, State};

/// RL.SETSTATE key state
pub fn setstate(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 2)?;
    let key_name = args.next_raw()?;
    let state = wire::decode_state(args.next_bytes()?).ok_or(STATE_PAYLOAD)?;
    if !args.done() {
        return Err(SYNTAX);
    }
    // The expiry each state implies; 0: none here (a PEXPIREAT follows).
    let expire_ms = match &state {
        State::Bucket { tat_ns } => store::expiry_ms(Nanos::new(*tat_ns)),
        State::Fixed { end_ms, .. } => *end_ms,
        State::Window { expire_ms, .. } => *expire_ms,
    };
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    if !store::holds_ours_or_nothing(&key) {
        return Err(WRONGTYPE);
    }
    // As SET .. PXAT does: a master not loading drops an already expired
    // state instead of storing it; replicas and loads keep it and let the
    // expiry run its course.
    let now_ms = time::now().as_u64() / 1_000_000;
    if expire_ms != 0 && expire_ms <= now_ms && !ctx.is_loading_or_replica() {
        if key.holds() != Holds::Nothing {
            key.delete();
            ctx.replicate_del(key_name);
            ctx.signal_modified(key_name);
        }
        drop(key);
        ctx.reply_ok();
        return Ok(());
    }
    match state {
        State::Bucket { tat_ns } => store::set_bucket(&mut key, Nanos::new(tat_ns))?,
        State::Fixed { count, .. } => store::set_fixed(&mut key, count)?,
        State::Window { log, .. } => store::set_window(&mut key, log)?,
    }
    if expire_ms == 0 {
        key.persist();
    } else {
        key.expire_at(expire_ms);
    }
    ctx.replicate_verbatim();
    ctx.signal_modified(key_name);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// RL.WINDOWADD key update
pub fn windowadd(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 2)?;
    let key_name = args.next_raw()?;
    let u = wire::decode_update(args.next_bytes()?).ok_or(UPDATE)?;
    if !args.done() {
        return Err(SYNTAX);
    }
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    // A log never holds more units than the largest limit, i64::MAX: what
    // would pass it is refused here (RL.SLIDING never sends such an update),
    // so every log stays one that RDB, DUMP and RL.SETSTATE load back.
    let held = store::window_state(&mut key)?.map_or(0, |l| l.total());
    if held.saturating_add(u.units) > i64::MAX as u64 {
        return Err(UPDATE);
    }
    apply_window_add(&mut key, &u)?;
    ctx.replicate_verbatim();
    ctx.signal_modified(key_name);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// RL.WINDOWREFUND key refund
pub fn windowrefund(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 2)?;
    let key_name = args.next_raw()?;
    let r = wire::decode_refund(args.next_bytes()?).ok_or(UPDATE)?;
    if !args.done() {
        return Err(SYNTAX);
    }
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    if store::window_state(&mut key)?.is_some() {
        apply_window_refund(&mut key, &r)?;
        ctx.replicate_verbatim();
        ctx.signal_modified(key_name);
    }
    drop(key);
    ctx.reply_ok();
    Ok(())
}
