//! RL.ALL and RL.TAKEALL: several limits, one atomic decision.
//!
//! Every limit is evaluated against its own key; only if all of them allow
//! do all of them consume. Their effects are propagated one after the
//! other inside this one command, which Redis wraps in MULTI/EXEC for
//! replicas and the AOF: all keys change together or none does.

use std::rc::Rc;

use redis_ratelimit_core::bounds::MAX_RESERVED_KEY;
use redis_ratelimit_core::error::{CmdError, ESTIMATE_KEY, SYNTAX};
use redis_ratelimit_core::grammar::{
    all_key_positions, read_all, read_take_all, ClauseLimit, PolicyLookup,
};

use super::limiter::leases;
use super::row::Cmd;
use crate::api::{Argv, Ctx};
use crate::config;
use crate::engine::{self, Limit};
use crate::policies::{self, Policy};
use crate::reply::Reply;
use crate::store;

/// RL.ALL key <algorithm> ... [COST n] [LIMIT key <algorithm> ...] ... [DRYRUN] [REFUND] [BLOCK ms]
/// RL.ALL [COST n] [DRYRUN] [REFUND] [BLOCK ms] LIMIT key <algorithm> ... [COST n] [LIMIT ...] ...
/// (a clause's limit may also be `POLICY name`)
pub fn all(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    clauses(ctx, argv, cmd, false)
}

/// RL.TAKEALL key POLICY name [COST n] [LIMIT key POLICY name ...] ... [DRYRUN] [REFUND] [BLOCK ms]
/// RL.TAKEALL [COST n] [DRYRUN] [REFUND] [BLOCK ms] LIMIT key POLICY name [COST n] [LIMIT ...] ...
pub fn take_all(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    clauses(ctx, argv, cmd, true)
}

/// Both: every clause decided on its key, all or nothing.
fn clauses(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd, policies_only: bool) -> Result<(), CmdError> {
    if ctx.is_keys_position_request() {
        // Cluster routing and COMMAND GETKEYS: report every clause's key.
        for pos in all_key_positions(&argv) {
            ctx.key_at(pos);
        }
        return Ok(());
    }
    // Policies are looked up once every clause reads (an unknown one is an
    // error before anything is read), then all limits are checked together.
    let lookup = PolicyLookup {
        resolve: policies::find,
        spec: |p: &Rc<Policy>| &p.spec,
    };
    let parsed = if policies_only {
        read_take_all(&argv, config::settings(), lookup)?
    } else {
        read_all(&argv, config::settings(), lookup)?
    };
    let mut limits = Vec::with_capacity(parsed.clauses.len());
    for c in &parsed.clauses {
        let (spec, policy) = match &c.limit {
            ClauseLimit::Inline(spec) => (spec, None),
            ClauseLimit::Policy(p) => (&p.spec, Some(&**p)),
        };
        let name = argv.name(c.key).ok_or(SYNTAX)?;
        // An estimate is decided as a take of at least 1 ("admit if any
        // budget is left") and charges the estimate (crate::reserve).
        let cost = match c.estimate {
            Some(_) if name.bytes().len() > MAX_RESERVED_KEY => return Err(ESTIMATE_KEY),
            Some(n) => n.max(1),
            None => c.cost.or(parsed.request.cost).unwrap_or(1),
        };
        limits.push(Limit {
            name,
            spec,
            cost,
            policy,
        });
    }
    let reply = Reply::all(limits.iter().any(|l| leases(l.spec)));
    if parsed.clauses.iter().any(|c| c.estimate.is_some()) {
        let estimates: Vec<Option<u64>> = parsed.clauses.iter().map(|c| c.estimate).collect();
        return engine::reserve(ctx, cmd.report, &limits, &estimates, parsed.request, reply);
    }
    engine::decide(ctx, cmd.report, &limits, parsed.request, reply, store::load)
}
