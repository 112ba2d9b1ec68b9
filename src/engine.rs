//! Limits on keys, start to end: open the keys, load their state, decide
//! (with the pure `limit::evaluate`), then write, replicate and signal each
//! effect, in that one direction. A dry run stops after deciding; a denial
//! has no effect to write. Everything fallible happens before the first
//! write, so a request is applied whole or not at all. A request that must
//! wait (BLOCK, or others waiting on its key) goes to `block`.

use std::ffi::CStr;

use redis_ratelimit_core::algo::all::combine;
use redis_ratelimit_core::algo::{Decision, RetryAfter};
use redis_ratelimit_core::error::{CmdError, INTERNAL};
use redis_ratelimit_core::grammar::{Mode, Request};
use redis_ratelimit_core::limit::{evaluate, Effect, Kind, Spec, State, Stored};

use crate::api::{Ctx, Key, Name};
use crate::block::{self, Need};
use crate::commands::Cmd;
use crate::wire;
use crate::{clock, stats, store};

/// What a request gets: a decision now, or a place in line (the reply
/// comes when it is admitted or its wait ends).
pub enum Answer {
    /// The decision, the position of the binding limit, and the lease taken.
    Decided(Decision, usize, Option<u64>),
    Waiting,
}

/// How a reply looks: one limit's five integers or RL.ALL's six, and the
/// lease id after them where a CONCURRENCY limit is part of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub all: bool,
    pub lease: bool,
}

/// The reply's integers (the first `n` of them).
#[inline]
pub fn fields(shape: Shape, d: &Decision, index: usize, lease: Option<u64>) -> ([i64; 7], usize) {
    let [a, b, c, e, f] = d.reply_fields();
    let mut out = [a, b, c, e, f, 0, 0];
    let mut n = 5;
    if shape.all {
        out[5] = i64::try_from(index + 1).unwrap_or(i64::MAX);
        n += 1;
    }
    if shape.lease {
        if let Some(slot) = out.get_mut(n) {
            *slot = lease.and_then(|id| i64::try_from(id).ok()).unwrap_or(0);
        }
        n += 1;
    }
    (out, n)
}

/// One limit on one key: decide, apply unless it is a dry run, and answer
/// with `reply` (unless the request waits in line: its reply comes later).
/// `load` reads the key's state (CL.THROTTLE also reads redis-cell's).
#[inline]
pub fn one(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    name: Name<'_>,
    spec: &Spec,
    req: Request,
    load: impl for<'k> Fn(&'k Key<'_>, Kind) -> Result<Stored<'k>, CmdError>,
    reply: impl FnOnce(&Decision, Option<u64>),
) -> Result<(), CmdError> {
    let now = clock::now();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    let cost = req.cost.unwrap_or(1);
    let (decision, effect) = evaluate(load(&key, spec.kind())?, spec, now, cost, req.mode())?;
    let takes = req.mode() == Mode::Take && cost > 0;
    if takes && (block::waiters() > 0 || (req.block.is_some() && !decision.allowed)) {
        let queued = block::behind(ctx, name.bytes(), spec, cost, now);
        let must_wait = queued.is_some() || waits_for_limit(&decision);
        if let (true, Some(ms)) = (must_wait, req.block) {
            let state = State::of(load(&key, spec.kind())?);
            let need = Need {
                key: name.bytes().to_vec(),
                spec: spec.clone(),
                cost,
            };
            let shape = Shape {
                all: false,
                lease: spec.kind() == Kind::Leases,
            };
            if block::wait(ctx, cmd, vec![need], shape, ms, vec![state], now) {
                return Ok(());
            }
        }
        if let Some(retry) = queued {
            // Others wait on this key: a newcomer never jumps ahead.
            stats::decided(cmd.id, false, req.dry_run, false);
            reply(&block::queued_denial(decision, retry), None);
            return Ok(());
        }
    }
    if !req.dry_run {
        let refunded = req.refund && !matches!(effect, Effect::None);
        commit(ctx, &mut key, name, &effect, cmd.row.event);
        if refunded {
            block::kick(ctx, name.bytes());
        }
    }
    stats::decided(cmd.id, decision.allowed, req.dry_run, req.refund);
    let lease = effect.lease_id().filter(|_| !req.dry_run);
    reply(&decision, lease);
    Ok(())
}

/// Denied, but some wait would allow it.
fn waits_for_limit(d: &Decision) -> bool {
    !d.allowed && matches!(d.retry_after, RetryAfter::After(_))
}

/// One clause of a multi-limit request.
pub struct Limit<'a, 's> {
    pub name: Name<'a>,
    pub spec: &'s Spec,
    pub cost: u64,
}

/// Several limits, all or nothing: every limit is decided on its own key;
/// only if all allow does every one apply its effect. Returns the binding
/// limit's index and decision.
pub fn all(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    limits: &[Limit<'_, '_>],
    req: Request,
) -> Result<Answer, CmdError> {
    let now = clock::now();
    let mut keys: Vec<Key<'_>> = Vec::with_capacity(limits.len());
    for l in limits {
        keys.push(ctx.open_key(l.name).ok_or(INTERNAL)?);
    }
    let mut evaluated = Vec::with_capacity(limits.len());
    for (l, key) in limits.iter().zip(&keys) {
        let stored = store::load(key, l.spec.kind())?;
        evaluated.push(evaluate(stored, l.spec, now, l.cost, req.mode())?);
    }
    let takes = req.mode() == Mode::Take && limits.iter().any(|l| l.cost > 0);
    let denied_now: Vec<Decision> = evaluated.iter().map(|(d, _)| *d).collect();
    let (index, decision, effects) = combine(evaluated).ok_or(INTERNAL)?;
    if takes && (block::waiters() > 0 || (req.block.is_some() && !decision.allowed)) {
        // Each key's decision, behind its queue where others wait.
        let mut queued = false;
        let mut behind = Vec::with_capacity(limits.len());
        for (l, d) in limits.iter().zip(&denied_now) {
            match block::behind(ctx, l.name.bytes(), l.spec, l.cost, now) {
                Some(retry) if l.cost > 0 => {
                    queued = true;
                    behind.push((block::queued_denial(*d, retry), ()));
                }
                _ => behind.push((*d, ())),
            }
        }
        let must_wait = queued || waits_for_limit(&decision);
        if let (true, Some(ms)) = (must_wait, req.block) {
            let mut needs = Vec::with_capacity(limits.len());
            let mut states = Vec::with_capacity(limits.len());
            for (l, key) in limits.iter().zip(&keys) {
                states.push(State::of(store::load(key, l.spec.kind())?));
                needs.push(Need {
                    key: l.name.bytes().to_vec(),
                    spec: l.spec.clone(),
                    cost: l.cost,
                });
            }
            let shape = Shape {
                all: true,
                lease: limits.iter().any(|l| l.spec.kind() == Kind::Leases),
            };
            if block::wait(ctx, cmd, needs, shape, ms, states, now) {
                return Ok(Answer::Waiting);
            }
            return denied(cmd, req, behind);
        }
        if queued {
            return denied(cmd, req, behind);
        }
    }
    // Nothing below can fail: the request applies whole. `effects` is
    // empty unless every limit allowed.
    if !req.dry_run {
        for ((l, key), effect) in limits.iter().zip(keys.iter_mut()).zip(&effects) {
            commit(ctx, key, l.name, effect, cmd.row.event);
            if req.refund && !matches!(effect, Effect::None) {
                block::kick(ctx, l.name.bytes());
            }
        }
    }
    stats::decided(cmd.id, decision.allowed, req.dry_run, req.refund);
    let lease = effects
        .iter()
        .find_map(Effect::lease_id)
        .filter(|_| !req.dry_run);
    Ok(Answer::Decided(decision, index, lease))
}

/// The denial RL.ALL answers when it cannot go ahead of a queue.
fn denied(cmd: Cmd, req: Request, decisions: Vec<(Decision, ())>) -> Result<Answer, CmdError> {
    let (index, d, _) = combine(decisions).ok_or(INTERNAL)?;
    let d = Decision {
        allowed: false,
        ..d
    };
    stats::decided(cmd.id, false, req.dry_run, false);
    Ok(Answer::Decided(d, index, None))
}

/// Writes an effect into its key, propagates it with absolute times, and
/// signals the change (`event` names the keyspace notification).
pub fn commit(ctx: &Ctx<'_>, key: &mut Key<'_>, name: Name<'_>, effect: &Effect, event: &CStr) {
    if matches!(effect, Effect::None) {
        return;
    }
    store::write(key, effect);
    wire::replicate(ctx, name, effect);
    ctx.signal_modified(name);
    ctx.notify(event, name);
}
