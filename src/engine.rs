//! A request, start to end, for every command that decides: open its keys,
//! load their states, decide every limit at once (core's `decide_all`),
//! then wait in line (the `block` peer) or write, replicate and signal each
//! effect (`store::commit`), count, and reply: in that one direction. A dry
//! run stops after deciding; a denial writes nothing but a LOCKOUT it
//! starts. Everything fallible happens before the first write, so a request
//! is applied whole or not at all.

use redis_ratelimit_core::algo::lease::{Leases, Op};
use redis_ratelimit_core::algo::{Answer, RetryAfter};
use redis_ratelimit_core::error::{CmdError, INTERNAL};
use redis_ratelimit_core::grammar::RequestArgs;
use redis_ratelimit_core::limit::{
    decide_all, decide_one, Action, AllDecided, Claim, Decided, Effect, Rules, Spec, State,
    StateKind, Stored, Verdict,
};
use redis_ratelimit_core::reserve::{admitted as admitted_effects, Admitted};
use redis_ratelimit_core::time::Nanos;

use crate::api::{Ctx, Key, Name};
use crate::block::{self, Need};
use crate::policies::Policy;
use crate::reply::Reply;
use crate::stats::Report;
use crate::{clock, store};

/// One limit of a request: its key, its limit, the units it takes, and the
/// named policy it comes from (rules and counters), if any.
pub struct Limit<'a> {
    pub name: Name<'a>,
    pub spec: &'a Spec,
    pub cost: u64,
    pub policy: Option<&'a Policy>,
}

impl Limit<'_> {
    fn rules(&self) -> Rules {
        self.policy.map_or(Rules::default(), |p| p.rules)
    }
}

/// How a request reads a key's state: `store::load`, or
/// `store::load_or_cell` (CL.THROTTLE also reads what redis-cell left).
pub trait Load: for<'k> Fn(&'k Key<'_>, StateKind) -> Result<Stored<'k>, CmdError> {}

impl<F> Load for F where F: for<'k> Fn(&'k Key<'_>, StateKind) -> Result<Stored<'k>, CmdError> {}

/// Decides `limits` on their keys, all or nothing, and answers with
/// `reply`: now, or when a wait in line ends.
#[inline]
pub fn decide(
    ctx: &Ctx<'_>,
    report: &'static Report,
    limits: &[Limit<'_>],
    args: RequestArgs,
    reply: Reply,
    load: impl Load,
) -> Result<(), CmdError> {
    if let [_] = limits {
        request::<One>(ctx, report, limits, args, reply, load, None)
    } else {
        request::<Many>(ctx, report, limits, args, reply, load, None)
    }
}

/// [`decide`] for a call that reserves (RL.ALL ... ESTIMATE n): `estimates`
/// has each limit's estimate (`None`: an ordinary clause; an ESTIMATE
/// clause's cost is `max(n, 1)`). Admitted, it writes the take of each
/// estimate and the CONCURRENCY lease as the reservation, with its record
/// (crate::reserve).
pub fn reserve(
    ctx: &Ctx<'_>,
    report: &'static Report,
    limits: &[Limit<'_>],
    estimates: &[Option<u64>],
    args: RequestArgs,
    reply: Reply,
) -> Result<(), CmdError> {
    request::<Many>(
        ctx,
        report,
        limits,
        args,
        reply,
        store::load,
        Some(estimates),
    )
}

/// How a request keeps one thing per limit (its keys, their states, what
/// each decided): in place for a single limit, as nearly every request
/// has (the compiler then sees one of each and writes no loop), on the heap
/// for several.
trait PerLimit {
    type List<T>: AsRef<[T]> + AsMut<[T]>;
    type Decision: Decision;
    /// Core's decision over the claims: `decide_one` or `decide_all`.
    fn decide(claims: &[Claim<'_>], now: Nanos, action: Action)
        -> Result<Self::Decision, CmdError>;
    /// `f` of each limit, in order, stopping at the first error.
    fn try_map<'s, S, T>(
        items: &'s [S],
        f: impl FnMut(&'s S) -> Result<T, CmdError>,
    ) -> Result<Self::List<T>, CmdError>;
}

/// What a request decided: the binding limit and its answer, and each
/// limit's own decision (core's `Decided` for one, `AllDecided` for
/// several).
trait Decision {
    fn index(&self) -> usize;
    fn answer(&self) -> &Answer;
    fn each(&self) -> &[Decided];
}

impl Decision for Decided {
    fn index(&self) -> usize {
        0
    }
    fn answer(&self) -> &Answer {
        &self.answer
    }
    fn each(&self) -> &[Decided] {
        std::slice::from_ref(self)
    }
}

impl Decision for AllDecided {
    fn index(&self) -> usize {
        self.index
    }
    fn answer(&self) -> &Answer {
        &self.answer
    }
    fn each(&self) -> &[Decided] {
        &self.limits
    }
}

/// A single limit.
struct One;

impl PerLimit for One {
    type List<T> = [T; 1];
    type Decision = Decided;
    #[inline(always)]
    fn decide(claims: &[Claim<'_>], now: Nanos, action: Action) -> Result<Decided, CmdError> {
        match claims {
            [one] => decide_one(one, now, action),
            _ => Err(INTERNAL),
        }
    }
    #[inline(always)]
    fn try_map<'s, S, T>(
        items: &'s [S],
        mut f: impl FnMut(&'s S) -> Result<T, CmdError>,
    ) -> Result<[T; 1], CmdError> {
        match items {
            [one] => Ok([f(one)?]),
            _ => Err(INTERNAL),
        }
    }
}

/// Any number of limits.
struct Many;

impl PerLimit for Many {
    type List<T> = Vec<T>;
    type Decision = AllDecided;
    fn decide(claims: &[Claim<'_>], now: Nanos, action: Action) -> Result<AllDecided, CmdError> {
        decide_all(claims, now, action)
    }
    fn try_map<'s, S, T>(
        items: &'s [S],
        f: impl FnMut(&'s S) -> Result<T, CmdError>,
    ) -> Result<Vec<T>, CmdError> {
        items.iter().map(f).collect()
    }
}

fn request<L: PerLimit>(
    ctx: &Ctx<'_>,
    report: &'static Report,
    limits: &[Limit<'_>],
    args: RequestArgs,
    reply: Reply,
    load: impl Load,
    estimates: Option<&[Option<u64>]>,
) -> Result<(), CmdError> {
    let now = clock::now();
    let mut keys = L::try_map(limits, |l| ctx.open_key(l.name).ok_or(INTERNAL))?;
    let action = args.action();
    let takes = action == Action::Take && limits.iter().any(|l| l.cost > 0);
    let mut each_key = keys.as_ref().iter();
    let claims = L::try_map(limits, |l| {
        Ok(Claim {
            stored: load(each_key.next().ok_or(INTERNAL)?, l.spec.kind())?,
            spec: l.spec,
            rules: l.rules(),
            cost: l.cost,
        })
    })?;
    let decided = L::decide(claims.as_ref(), now, action)?;
    let answer = decided.answer();
    let line = block::waiters() > 0 || (args.block.is_some() && !answer.allowed);
    if takes
        && line
        && in_line(
            ctx,
            report,
            limits,
            claims.as_ref(),
            &decided,
            args,
            reply,
            now,
        )
    {
        return Ok(());
    }
    // The states were read; what follows writes.
    drop(claims);
    // A reservation admitted: its writes (and its record) instead.
    let reserved = match estimates {
        Some(e) if answer.allowed && !args.dry_run => Some(reservation(limits, e, &decided, now)?),
        _ => None,
    };
    if !args.dry_run {
        let effects = decided.each().iter().enumerate().map(|(i, d)| {
            reserved
                .as_ref()
                .and_then(|r| r.get(i))
                .unwrap_or(&d.effect)
        });
        for ((l, key), effect) in limits.iter().zip(keys.as_mut()).zip(effects) {
            store::commit(ctx, key, l.name, effect, report.event);
            if args.refund && !matches!(effect, Effect::None) {
                // Units came back: the first waiter on the key may fit sooner.
                block::kick(ctx, l.name.bytes());
            }
        }
    }
    report.decided(answer.allowed, args.dry_run, args.refund);
    let verdicts = decided.each().iter().map(|d| d.verdict);
    count(limits, verdicts, takes && !args.dry_run);
    let lease = reply
        .takes_lease()
        .then(|| decided.each().iter().find_map(|d| d.effect.lease_id()))
        .flatten()
        .filter(|_| !args.dry_run);
    reply.send(ctx, answer, decided.index(), lease);
    Ok(())
}

/// The writes of an admitted reservation (core's `reserve::admitted`).
#[inline(never)]
fn reservation(
    limits: &[Limit<'_>],
    estimates: &[Option<u64>],
    decided: &impl Decision,
    now: Nanos,
) -> Result<Vec<Effect>, CmdError> {
    let admitted: Vec<Admitted<'_>> = limits
        .iter()
        .zip(decided.each())
        .enumerate()
        .map(|(i, (l, d))| Admitted {
            key: l.name.bytes(),
            spec: l.spec,
            estimate: estimates.get(i).copied().flatten(),
            effect: &d.effect,
        })
        .collect();
    admitted_effects(now, &admitted)
}

/// Counts the request under each named policy it applies (`took`: it
/// takes units, not a dry run).
fn count(limits: &[Limit<'_>], verdicts: impl Iterator<Item = Verdict>, took: bool) {
    for (l, v) in limits.iter().zip(verdicts) {
        if let Some(p) = l.policy {
            p.counters.called();
            p.counters.decided(v, took && l.cost > 0, p.rules.shadow);
        }
    }
}

/// A request that takes units while others wait in line somewhere, or that
/// asked to wait and is denied. It waits (true: its reply comes when it is
/// admitted or its wait ends), or is denied behind the line on one of its
/// keys (true: answered), or goes on as if it had not asked to wait
/// (false).
#[allow(clippy::too_many_arguments)]
fn in_line(
    ctx: &Ctx<'_>,
    report: &'static Report,
    limits: &[Limit<'_>],
    claims: &[Claim<'_>],
    decided: &impl Decision,
    args: RequestArgs,
    reply: Reply,
    now: Nanos,
) -> bool {
    // A shadow policy never makes anyone wait (its denials answer allowed).
    let block_ms = args
        .block
        .filter(|_| !limits.iter().any(|l| l.rules().shadow));
    // Each limit's answer, behind the queue on its key where others wait.
    let each = limits.iter().zip(decided.each());
    let behind = block::ahead(
        ctx,
        each.map(|(l, d)| (l.name.bytes(), l.spec, l.cost, d.answer)),
        now,
    );
    let must_wait = behind.is_some() || block::waits_for_limit(decided.answer());
    if let (true, Some(ms)) = (must_wait, block_ms) {
        let needs = limits
            .iter()
            .map(|l| Need {
                key: l.name.bytes().to_vec(),
                spec: l.spec.clone(),
                cost: l.cost,
            })
            .collect();
        // The states as loaded for the decision: the line projects from them.
        let states = claims.iter().map(|c| State::of(c.stored)).collect();
        let counters = limits
            .iter()
            .map(|l| l.policy.map(|p| p.counters.clone()))
            .collect();
        if block::wait(ctx, report, needs, counters, states, reply, ms, now) {
            for p in limits.iter().filter_map(|l| l.policy) {
                p.counters.called();
            }
            return true;
        }
    }
    // Others wait ahead: a newcomer never jumps the line.
    let Some((index, answer)) = behind.as_deref().and_then(block::refusal) else {
        return false;
    };
    report.decided(false, args.dry_run, false);
    let denied = Verdict {
        denied: true,
        locked: false,
    };
    count(limits, limits.iter().map(|_| denied), !args.dry_run);
    // A request of shadow policies only answers allowed, as their denials do.
    let answer = if limits.iter().all(|l| l.rules().shadow) {
        shadowed(answer)
    } else {
        answer
    };
    reply.send(ctx, &answer, index, None);
    true
}

/// What a shadow policy answers for a denial: allowed.
fn shadowed(a: Answer) -> Answer {
    Answer {
        allowed: true,
        retry_after: RetryAfter::Now,
        ..a
    }
}

/// RL.RELEASE and RL.RENEW: loads the key's leases, decides with `op`,
/// writes and replicates the change and answers 1, or answers 0 when there
/// is nothing to change. A release frees a slot (`recheck`): the first
/// waiter in line on the key is checked again at once.
pub fn change_lease(
    ctx: &Ctx<'_>,
    report: &'static Report,
    name: Name<'_>,
    op: impl FnOnce(Option<&Leases>, Nanos) -> Option<Op>,
    recheck: bool,
) -> Result<(), CmdError> {
    let now = clock::now();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    let decided = match store::load(&key, StateKind::Leases)? {
        Stored::Leases(l) => op(Some(l), now),
        _ => None,
    };
    let Some(decided) = decided else {
        report.decided(false, false, false);
        ctx.reply_int(0);
        return Ok(());
    };
    store::commit(ctx, &mut key, name, &Effect::Lease(decided), report.event);
    drop(key);
    if recheck {
        block::kick(ctx, name.bytes());
    }
    report.decided(true, false, false);
    ctx.reply_int(1);
    Ok(())
}
