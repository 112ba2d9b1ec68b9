//! RL.SETSTATE, RL.WINDOWADD and RL.WINDOWREFUND: how replicas and the AOF
//! receive state.
//!
//! Limiter commands never replicate themselves (a replica would decide again
//! on its own clock). They replicate their effect, with absolute times:
//! a bucket's or fixed window's new state with its expiry, or a sliding
//! window's deterministic update. These are valid commands a user can also
//! send, to restore state, but applications have no reason to.

use super::limit::{apply_window_refund, window_expiry_ms};
use super::{is, Args};
use crate::algo::sliding::{Log, Refund, Update, MAX_INSTANT_US, MAX_SPAN_US};
use crate::api::{Ctx, Holds, Key, RawString};
use crate::error::{
    CmdResult, INTERNAL, PXAT, STATE_KIND, STATE_PAYLOAD, SYNTAX, UPDATE, WRONGTYPE,
};
use crate::num::parse_u64;
use crate::store;
use crate::time::{self, Nanos};

enum State {
    Bucket(Nanos),
    Fixed(u64),
    Window(Log),
}

/// RL.SETSTATE key kind payload [PXAT unix-ms]
pub fn setstate(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 3)?;
    let key_name = args.next_raw()?;
    let kind = args.next_bytes()?;
    let payload = args.next_bytes()?;
    let mut pxat = None;
    while !args.done() {
        let opt = args.next_bytes()?;
        if is(opt, b"PXAT") && pxat.is_none() {
            args.option_value()?;
            pxat = Some(args.next_int(0, PXAT)?);
        } else {
            return Err(SYNTAX);
        }
    }
    let nonzero = |p: &[u8]| parse_u64(p).filter(|v| *v > 0).ok_or(STATE_PAYLOAD);
    let state = if is(kind, store::KIND_BUCKET.to_bytes()) {
        State::Bucket(Nanos::new(nonzero(payload)?))
    } else if is(kind, store::KIND_FIXED.to_bytes()) {
        State::Fixed(nonzero(payload)?)
    } else if is(kind, store::KIND_WINDOW.to_bytes()) {
        State::Window(Log::decode(payload).map_err(|_| STATE_PAYLOAD)?)
    } else {
        return Err(STATE_KIND);
    };
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    if !store::holds_ours_or_nothing(&key) {
        return Err(WRONGTYPE);
    }
    if let Some(ms) = pxat {
        // As SET .. PXAT does: a master not loading drops an already expired
        // state instead of storing it; replicas and loads keep it and let
        // the expiry run its course.
        let now_ms = time::now().as_u64() / 1_000_000;
        if ms <= now_ms && !ctx.is_loading_or_replica() {
            if key.holds() != Holds::Nothing {
                key.delete();
                ctx.replicate_del(key_name);
                ctx.signal_modified(key_name);
            }
            drop(key);
            ctx.reply_ok();
            return Ok(());
        }
    }
    match state {
        State::Bucket(tat) => store::set_bucket(&mut key, tat)?,
        State::Fixed(count) => store::set_fixed(&mut key, count)?,
        State::Window(log) => store::set_window(&mut key, log)?,
    }
    match pxat {
        Some(ms) => key.expire_at(ms),
        None => key.persist(),
    }
    ctx.replicate_verbatim();
    ctx.signal_modified(key_name);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// Reads `now_us span_us`, the first two arguments of both window updates.
fn now_and_span(args: &mut Args) -> Result<(u64, u64), crate::error::CmdError> {
    let now_us = args.next_int(0, UPDATE)?;
    let span_us = args.next_int(1, UPDATE)?;
    if now_us > MAX_INSTANT_US || span_us > MAX_SPAN_US {
        return Err(UPDATE);
    }
    Ok((now_us, span_us))
}

/// RL.WINDOWADD key now_us span_us at_us units coalesce
pub fn windowadd(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 6)?;
    let key_name = args.next_raw()?;
    let (now_us, span_us) = now_and_span(&mut args)?;
    let at_us = args.next_int(0, UPDATE)?;
    let units = args.next_int(1, UPDATE)?;
    let coalesce = args.next_int(0, UPDATE)?;
    if !args.done() {
        return Err(SYNTAX);
    }
    if at_us > MAX_INSTANT_US || coalesce > 1 {
        return Err(UPDATE);
    }
    let u = Update {
        now_us,
        span_us,
        at_us,
        units,
        coalesce: coalesce == 1,
    };
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    let last = match store::window_state(&mut key)? {
        Some(l) => {
            l.apply(&u);
            l.last_us()
        }
        None => {
            let l = Log::from_update(&u);
            let last = l.last_us();
            store::set_window(&mut key, l)?;
            last
        }
    };
    key.expire_at(window_expiry_ms(last, span_us));
    ctx.replicate_verbatim();
    ctx.signal_modified(key_name);
    drop(key);
    ctx.reply_ok();
    Ok(())
}

/// RL.WINDOWREFUND key now_us span_us units
pub fn windowrefund(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 4)?;
    let key_name = args.next_raw()?;
    let (now_us, span_us) = now_and_span(&mut args)?;
    let units = args.next_int(1, UPDATE)?;
    if !args.done() {
        return Err(SYNTAX);
    }
    let r = Refund {
        now_us,
        span_us,
        units,
    };
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
