//! One limit on one key: the load, decide and store steps every limiter
//! command shares, RL.ALL included.
//!
//! [`evaluate`] reads the key and decides, writing nothing; [`apply`] writes
//! the decided effect, sets the expiry, replicates it with absolute times
//! and signals the key. A command that denies, peeks or dry-runs simply
//! never calls `apply`.

use std::ffi::CStr;

use super::Args;
use crate::algo::bucket::Bucket;
use crate::algo::calendar::{self, Calendar};
use crate::algo::fixed::{self, Counter};
use crate::algo::sliding::{self, Log, Refund, Update, Window};
use crate::algo::{Change, Decision};
use crate::api::{Ctx, Key, RawString};
use crate::error::{CmdError, CmdResult, COST_OPTION, INTERNAL, SYNTAX};
use crate::stats::{self, Cmd};
use crate::store;
use crate::time::Nanos;
use crate::wire;

/// What to do with a limit.
#[derive(Debug, Clone)]
pub enum Spec {
    Bucket(Bucket),
    Window(Window),
    Fixed { limit: u64, calendar: Calendar },
}

/// Take units, or give them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Take,
    Refund,
}

/// The write a decision calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    Bucket(Nanos),
    /// A fixed window's new count; `new_end` when its window's end (the
    /// key's expiry) changes too.
    Fixed {
        counter: Counter,
        new_end: bool,
    },
    WindowAdd(Update),
    WindowRefund(Refund),
    /// The limiter is fresh again: delete the key.
    Clear,
}

/// Reads `key`'s state and decides. Writes nothing.
pub fn evaluate(
    key: &mut Key,
    spec: &Spec,
    now: Nanos,
    cost: u64,
    mode: Mode,
) -> Result<(Decision, Effect), CmdError> {
    match spec {
        Spec::Bucket(b) => {
            let tat = store::bucket_state(key)?;
            Ok(decide_bucket(b, tat, now, cost, mode))
        }
        Spec::Window(w) => {
            let log = store::window_state(key)?;
            let log = log.as_deref();
            let now_us = now.as_micros();
            Ok(match mode {
                Mode::Take => {
                    let (d, u) = sliding::decide(log, w, now_us, cost);
                    (d, u.map_or(Effect::None, Effect::WindowAdd))
                }
                Mode::Refund => {
                    let (d, r) = sliding::refund(log, w, now_us, cost);
                    (d, r.map_or(Effect::None, Effect::WindowRefund))
                }
            })
        }
        Spec::Fixed { limit, calendar } => {
            let stored = store::fixed_state(key)?;
            Ok(match mode {
                Mode::Take => {
                    let now_ms = i64::try_from(now.as_u64() / 1_000_000).map_err(|_| INTERNAL)?;
                    let (_, end) = calendar::bounds(calendar, now_ms).ok_or(INTERNAL)?;
                    let end = u64::try_from(end).map_err(|_| INTERNAL)?;
                    let (d, c) = fixed::decide(*limit, stored, end, now, cost);
                    let old_end = stored.map(|s| s.end_ms);
                    let effect = c.map_or(Effect::None, |counter| Effect::Fixed {
                        counter,
                        new_end: old_end != Some(counter.end_ms),
                    });
                    (d, effect)
                }
                Mode::Refund => {
                    let (d, ch) = fixed::refund(*limit, stored, now, cost);
                    let set = |counter| Effect::Fixed {
                        counter,
                        new_end: false,
                    };
                    (d, effect_of(ch, set))
                }
            })
        }
    }
}

/// The bucket decision, given its state however it was read.
pub fn decide_bucket(
    b: &Bucket,
    tat: Option<Nanos>,
    now: Nanos,
    cost: u64,
    mode: Mode,
) -> (Decision, Effect) {
    match mode {
        Mode::Take => {
            let (d, new) = b.decide(tat, now, cost);
            (d, new.map_or(Effect::None, Effect::Bucket))
        }
        Mode::Refund => {
            let (d, ch) = b.refund(tat, now, cost);
            (d, effect_of(ch, Effect::Bucket))
        }
    }
}

fn effect_of<S>(c: Change<S>, set: impl FnOnce(S) -> Effect) -> Effect {
    match c {
        Change::None => Effect::None,
        Change::Set(s) => set(s),
        Change::Clear => Effect::Clear,
    }
}

/// Writes an effect into `key`, sets its expiry, propagates it with
/// absolute times, and signals the change (`event` names the keyspace
/// notification). Does nothing for [`Effect::None`].
pub fn apply(
    ctx: Ctx,
    key: &mut Key,
    key_name: RawString,
    effect: &Effect,
    event: &CStr,
) -> CmdResult {
    match effect {
        Effect::None => return Ok(()),
        Effect::Bucket(tat) => {
            store::set_bucket(key, *tat)?;
            key.expire_at(store::expiry_ms(*tat));
            ctx.replicate_blob(store::SETSTATE, key_name, &wire::bucket(tat.as_u64()));
        }
        Effect::Fixed {
            counter: c,
            new_end,
        } => {
            store::set_fixed(key, c.count)?;
            // Within a window the expiry stays what it was: no need to write it.
            if *new_end {
                key.expire_at(c.end_ms);
            }
            ctx.replicate_blob(store::SETSTATE, key_name, &wire::fixed(c.count, c.end_ms));
        }
        Effect::WindowAdd(u) => {
            apply_window_add(key, u)?;
            ctx.replicate_blob(store::WINDOWADD, key_name, &wire::update(u));
        }
        Effect::WindowRefund(r) => {
            apply_window_refund(key, r)?;
            ctx.replicate_blob(store::WINDOWREFUND, key_name, &wire::refund(r));
        }
        Effect::Clear => {
            key.delete();
            ctx.replicate_del(key_name);
        }
    }
    ctx.signal_modified(key_name);
    ctx.notify(event, key_name);
    Ok(())
}

/// Applies an allowed window request to the key (creating its log if
/// needed) and sets the expiry to when the log empties.
pub fn apply_window_add(key: &mut Key, u: &Update) -> CmdResult {
    let last = match store::window_state(key)? {
        Some(log) => {
            log.apply(u);
            log.last_us()
        }
        None => {
            let log = Log::from_update(u);
            let last = log.last_us();
            store::set_window(key, log)?;
            last
        }
    };
    key.expire_at(window_expiry_ms(last, u.span_us));
    Ok(())
}

/// Applies a window refund to the key: a log left empty deletes the key.
pub fn apply_window_refund(key: &mut Key, r: &Refund) -> CmdResult {
    let Some(log) = store::window_state(key)? else {
        return Ok(());
    };
    log.apply_refund(r);
    if log.is_empty() {
        key.delete();
    } else {
        let last = log.last_us();
        key.expire_at(window_expiry_ms(last, r.span_us));
    }
    Ok(())
}

/// A log is empty again once its newest entry leaves the window.
pub fn window_expiry_ms(last_us: u64, span_us: u64) -> u64 {
    store::expiry_ms(Nanos::from_micros(last_us.saturating_add(span_us)))
}

/// DRYRUN and REFUND, the flags every limiter command takes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub dry_run: bool,
    pub refund: bool,
}

impl Flags {
    /// Reads a flag keyword; false if `arg` is not one (or is repeated).
    pub fn read(&mut self, arg: &[u8]) -> bool {
        if arg.eq_ignore_ascii_case(b"DRYRUN") && !self.dry_run {
            self.dry_run = true;
            true
        } else if arg.eq_ignore_ascii_case(b"REFUND") && !self.refund {
            self.refund = true;
            true
        } else {
            false
        }
    }

    pub fn mode(&self) -> Mode {
        if self.refund {
            Mode::Refund
        } else {
            Mode::Take
        }
    }
}

/// Reads `[COST n] [DRYRUN] [REFUND]` up to the end of the arguments:
/// the options of RL.SLIDING and RL.GCRA. The cost defaults to 1.
pub fn cost_and_flags(args: &mut Args) -> Result<(u64, Flags), CmdError> {
    let mut cost = None;
    let mut flags = Flags::default();
    while !args.done() {
        let opt = args.next_bytes()?;
        let known = args.option(opt, b"COST", &mut cost, |a| a.next_int(0, COST_OPTION))?
            || flags.read(opt);
        if !known {
            return Err(SYNTAX);
        }
    }
    Ok((cost.unwrap_or(1), flags))
}

/// One limit on one key, for a single-key command: open, evaluate, apply
/// unless it is a dry run, and return the decision for the reply.
pub fn run(
    ctx: Ctx,
    key_name: RawString,
    spec: &Spec,
    cost: u64,
    flags: Flags,
    cmd: Cmd,
) -> Result<Decision, CmdError> {
    let now = crate::time::now();
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    let (decision, effect) = evaluate(&mut key, spec, now, cost, flags.mode())?;
    if !flags.dry_run {
        apply(ctx, &mut key, key_name, &effect, event(cmd))?;
    }
    stats::decided(cmd, decision.allowed, flags.dry_run, flags.refund);
    Ok(decision)
}

/// The keyspace notification a command's writes raise (class `d`, module).
pub fn event(cmd: Cmd) -> &'static CStr {
    match cmd {
        Cmd::TokenBucket => c"rl.tokenbucket",
        Cmd::Sliding => c"rl.sliding",
        Cmd::Gcra => c"rl.gcra",
        Cmd::Fixed => c"rl.fixed",
        Cmd::All => c"rl.all",
        Cmd::Throttle => c"cl.throttle",
    }
}
