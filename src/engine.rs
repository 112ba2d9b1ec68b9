//! Limits on keys, start to end: open the keys, load their state, decide
//! (with the pure `limit::evaluate`), then write, replicate and signal each
//! effect, in that one direction. A dry run stops after deciding; a denial
//! has no effect to write. Everything fallible happens before the first
//! write, so a request is applied whole or not at all.

use std::ffi::CStr;

use redis_ratelimit_core::algo::all::combine;
use redis_ratelimit_core::algo::Decision;
use redis_ratelimit_core::error::{CmdError, INTERNAL};
use redis_ratelimit_core::grammar::Request;
use redis_ratelimit_core::limit::{evaluate, Effect, Kind, Spec, Stored};

use crate::api::{Ctx, Key, Name};
use crate::commands::Cmd;
use crate::wire;
use crate::{clock, stats, store};

/// One limit on one key: decide, and apply unless it is a dry run. `load`
/// reads the key's state (CL.THROTTLE also reads redis-cell's).
pub fn one(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    name: Name<'_>,
    spec: &Spec,
    req: Request,
    load: impl for<'k> Fn(&'k Key<'_>, Kind) -> Result<Stored<'k>, CmdError>,
) -> Result<Decision, CmdError> {
    let now = clock::now();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    let cost = req.cost.unwrap_or(1);
    let (decision, effect) = evaluate(load(&key, spec.kind())?, spec, now, cost, req.mode())?;
    if !req.dry_run {
        commit(ctx, &mut key, name, &effect, cmd.row.event);
    }
    stats::decided(cmd.id, decision.allowed, req.dry_run, req.refund);
    Ok(decision)
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
) -> Result<(usize, Decision), CmdError> {
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
    let (index, decision, effects) = combine(evaluated).ok_or(INTERNAL)?;
    // Nothing below can fail: the request applies whole. `effects` is
    // empty unless every limit allowed.
    if !req.dry_run {
        for ((l, key), effect) in limits.iter().zip(keys.iter_mut()).zip(&effects) {
            commit(ctx, key, l.name, effect, cmd.row.event);
        }
    }
    stats::decided(cmd.id, decision.allowed, req.dry_run, req.refund);
    Ok((index, decision))
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
