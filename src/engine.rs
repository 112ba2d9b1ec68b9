//! Limits on keys, start to end: open the keys, load their state, decide
//! (with the pure `limit::evaluate`), then write, replicate and signal each
//! effect, in that one direction. A dry run stops after deciding; a denial
//! has no effect to write. Everything fallible happens before the first
//! write, so a request is applied whole or not at all. A request that must
//! wait (BLOCK, or others waiting on its key) goes to `block`.

use std::ffi::CStr;

use redis_ratelimit_core::algo::all::combine;
use redis_ratelimit_core::algo::{Answer, RetryAfter};
use redis_ratelimit_core::error::{CmdError, INTERNAL};
use redis_ratelimit_core::grammar::RequestArgs;
use redis_ratelimit_core::limit::{
    evaluate_with, Action, Effect, Rules, Spec, State, StateKind, Stored, Verdict,
};

use crate::api::{Ctx, Key, Name};
use crate::block::{self, Need};
use crate::commands::Cmd;
use crate::policies::Policy;
use crate::wire;
use crate::{clock, stats, store};

/// What a request gets: a decision now, or a place in line (the reply
/// comes when it is admitted or its wait ends).
pub enum Outcome {
    /// The decision, the position of the binding limit, and the lease taken.
    Decided(Answer, usize, Option<u64>),
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
pub fn fields(shape: Shape, d: &Answer, index: usize, lease: Option<u64>) -> ([i64; 7], usize) {
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
/// A named policy brings its rules (SHADOW, LOCKOUT) and its counters.
#[inline]
#[allow(clippy::too_many_arguments)]
pub fn one(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    name: Name<'_>,
    spec: &Spec,
    req: RequestArgs,
    policy: Option<&Policy>,
    load: impl for<'k> Fn(&'k Key<'_>, StateKind) -> Result<Stored<'k>, CmdError>,
    reply: impl FnOnce(&Answer, Option<u64>),
) -> Result<(), CmdError> {
    let now = clock::now();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    let cost = req.cost.unwrap_or(1);
    let rules = policy.map_or(Rules::default(), |p| p.rules);
    let (decision, effect, verdict) = evaluate_with(
        load(&key, spec.kind())?,
        spec,
        rules,
        now,
        cost,
        req.action(),
    )?;
    let takes = req.action() == Action::Take && cost > 0;
    let counted = |verdict: Verdict| {
        if let Some(p) = policy {
            p.counters.called();
            p.counters
                .decided(verdict, takes && !req.dry_run, rules.shadow);
        }
    };
    // A shadow policy answers at once: it never makes anyone wait.
    let block = req.block.filter(|_| !rules.shadow);
    if takes && (block::waiters() > 0 || (block.is_some() && !decision.allowed)) {
        let queued = block::behind(ctx, name.bytes(), spec, cost, now);
        let must_wait = queued.is_some() || waits_for_limit(&decision);
        if let (true, Some(ms)) = (must_wait, block) {
            let state = State::of(load(&key, spec.kind())?);
            let need = Need {
                key: name.bytes().to_vec(),
                spec: spec.clone(),
                cost,
                counters: policy.map(|p| p.counters.clone()),
            };
            let shape = Shape {
                all: false,
                lease: spec.kind() == StateKind::Leases,
            };
            if block::wait(ctx, cmd, vec![need], shape, ms, vec![state], now) {
                if let Some(p) = policy {
                    p.counters.called();
                }
                return Ok(());
            }
        }
        if let Some(retry) = queued {
            // Others wait on this key: a newcomer never jumps ahead.
            stats::decided(cmd.id, false, req.dry_run, false);
            counted(Verdict {
                denied: true,
                locked: false,
            });
            let d = block::queued_denial(decision, retry);
            reply(&if rules.shadow { shadowed(d) } else { d }, None);
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
    counted(verdict);
    let lease = effect.lease_id().filter(|_| !req.dry_run);
    reply(&decision, lease);
    Ok(())
}

/// What a shadow policy answers for a denial: allowed.
fn shadowed(d: Answer) -> Answer {
    Answer {
        allowed: true,
        retry_after: redis_ratelimit_core::algo::RetryAfter::Now,
        ..d
    }
}

/// Denied, but some wait would allow it.
fn waits_for_limit(d: &Answer) -> bool {
    !d.allowed && matches!(d.retry_after, RetryAfter::After(_))
}

/// One clause of a multi-limit request.
pub struct Limit<'a, 's> {
    pub name: Name<'a>,
    pub spec: &'s Spec,
    pub cost: u64,
    /// The clause's policy (`LIMIT key POLICY name`): rules and counters.
    pub policy: Option<&'s Policy>,
}

impl Limit<'_, '_> {
    fn rules(&self) -> Rules {
        self.policy.map_or(Rules::default(), |p| p.rules)
    }
}

/// Several limits, all or nothing: every limit is decided on its own key;
/// only if all allow does every one apply its effect. Returns the binding
/// limit's index and decision.
pub fn all(
    ctx: &Ctx<'_>,
    cmd: Cmd,
    limits: &[Limit<'_, '_>],
    req: RequestArgs,
) -> Result<Outcome, CmdError> {
    let now = clock::now();
    let mut keys: Vec<Key<'_>> = Vec::with_capacity(limits.len());
    for l in limits {
        keys.push(ctx.open_key(l.name).ok_or(INTERNAL)?);
    }
    let mut evaluated = Vec::with_capacity(limits.len());
    let mut verdicts = Vec::with_capacity(limits.len());
    let mut lockouts = Vec::new();
    for (i, (l, key)) in limits.iter().zip(&keys).enumerate() {
        let stored = store::load(key, l.spec.kind())?;
        let (d, effect, v) = evaluate_with(stored, l.spec, l.rules(), now, l.cost, req.action())?;
        // A lockout this denial starts, or a lock cut to what its policy
        // says now: written even though the request is denied.
        if matches!(effect, Effect::Lockout(_)) {
            lockouts.push((i, effect.clone()));
        }
        verdicts.push(v);
        evaluated.push((d, effect));
    }
    let takes = req.action() == Action::Take && limits.iter().any(|l| l.cost > 0);
    let count = |verdicts: &[Verdict]| {
        for (l, v) in limits.iter().zip(verdicts) {
            if let Some(p) = l.policy {
                p.counters.called();
                let took = takes && !req.dry_run && l.cost > 0;
                p.counters.decided(*v, took, p.rules.shadow);
            }
        }
    };
    let denied_now: Vec<Answer> = evaluated.iter().map(|(d, _)| *d).collect();
    let (index, decision, effects) = combine(evaluated).ok_or(INTERNAL)?;
    // A shadow policy never makes anyone wait (its denials answer allowed).
    let block = req
        .block
        .filter(|_| !limits.iter().any(|l| l.rules().shadow));
    if takes && (block::waiters() > 0 || (block.is_some() && !decision.allowed)) {
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
        if let (true, Some(ms)) = (must_wait, block) {
            let mut needs = Vec::with_capacity(limits.len());
            let mut states = Vec::with_capacity(limits.len());
            for (l, key) in limits.iter().zip(&keys) {
                states.push(State::of(store::load(key, l.spec.kind())?));
                needs.push(Need {
                    key: l.name.bytes().to_vec(),
                    spec: l.spec.clone(),
                    cost: l.cost,
                    counters: l.policy.map(|p| p.counters.clone()),
                });
            }
            let shape = Shape {
                all: true,
                lease: limits.iter().any(|l| l.spec.kind() == StateKind::Leases),
            };
            if block::wait(ctx, cmd, needs, shape, ms, states, now) {
                for p in limits.iter().filter_map(|l| l.policy) {
                    p.counters.called();
                }
                return Ok(Outcome::Waiting);
            }
            count(&queued_verdicts(limits.len()));
            return denied(cmd, req, behind);
        }
        if queued {
            count(&queued_verdicts(limits.len()));
            return denied(cmd, req, behind);
        }
    }
    count(&verdicts);
    if !req.dry_run && !decision.allowed {
        // A denial writes nothing, but a policy's LOCKOUT it started.
        for (i, effect) in &lockouts {
            if let (Some(l), Some(key)) = (limits.get(*i), keys.get_mut(*i)) {
                commit(ctx, key, l.name, effect, cmd.row.event);
            }
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
    Ok(Outcome::Decided(decision, index, lease))
}

/// Every clause denied (the request cannot go ahead of a queue).
fn queued_verdicts(n: usize) -> Vec<Verdict> {
    vec![
        Verdict {
            denied: true,
            locked: false
        };
        n
    ]
}

/// The denial RL.ALL answers when it cannot go ahead of a queue.
fn denied(cmd: Cmd, req: RequestArgs, decisions: Vec<(Answer, ())>) -> Result<Outcome, CmdError> {
    let (index, d, _) = combine(decisions).ok_or(INTERNAL)?;
    let d = Answer {
        allowed: false,
        ..d
    };
    stats::decided(cmd.id, false, req.dry_run, false);
    Ok(Outcome::Decided(d, index, None))
}

/// Writes an effect into its key, propagates it with absolute times, and
/// signals the change (`event` names the keyspace notification).
pub fn commit(ctx: &Ctx<'_>, key: &mut Key<'_>, name: Name<'_>, effect: &Effect, event: &CStr) {
    if matches!(effect, Effect::None) {
        return;
    }
    store::write(key, effect);
    wire::replicate(ctx, name, key, effect);
    ctx.signal_modified(name);
    ctx.notify(event, name);
}
