//! RL.ALL: several limits, one atomic decision.
//!
//! Every limit is evaluated against its own key; only if all of them allow
//! do all of them consume. Their effects are propagated one after the
//! other inside this one command, which Redis wraps in MULTI/EXEC for
//! replicas and the AOF: all keys change together or none does.

use std::rc::Rc;

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{
    all_key_positions, check_all, read_all, read_take_all, ClauseLimit, Words,
};

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::config;
use crate::policies::{self, Policy};
use redis_ratelimit_core::limit::StateKind;

use crate::engine::{self, Limit, Outcome, Shape};

/// RL.ALL [COST n] [DRYRUN] [REFUND] [BLOCK ms] LIMIT key <algorithm> ... [COST n] [LIMIT ...] ...
/// (a clause's limit may also be `POLICY name`)
pub fn all(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    clauses(ctx, argv, cmd, false)
}

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
    let parsed = if policies_only {
        read_take_all(&argv, config::settings())?
    } else {
        read_all(&argv, config::settings())?
    };
    // Policies first: an unknown one is an error before anything is read.
    let mut named: Vec<Option<Rc<Policy>>> = Vec::with_capacity(parsed.clauses.len());
    for c in &parsed.clauses {
        named.push(match c.limit {
            ClauseLimit::Policy(i) => Some(policies::find(argv.word(i).ok_or(SYNTAX)?)?),
            ClauseLimit::Inline(_) => None,
        });
    }
    let mut limits = Vec::with_capacity(parsed.clauses.len());
    for (c, p) in parsed.clauses.iter().zip(&named) {
        let spec = match (&c.limit, p) {
            (ClauseLimit::Inline(spec), _) => spec,
            (ClauseLimit::Policy(_), Some(p)) => &p.spec,
            (ClauseLimit::Policy(_), None) => return Err(SYNTAX),
        };
        limits.push(Limit {
            name: argv.name(c.key).ok_or(SYNTAX)?,
            spec,
            cost: c.cost.or(parsed.request.cost).unwrap_or(1),
            policy: p.as_deref(),
        });
    }
    let together: Vec<_> = parsed
        .clauses
        .iter()
        .zip(&limits)
        .map(|(c, l)| (l.spec, c.cost))
        .collect();
    check_all(&together, &parsed.request)?;
    let Outcome::Decided(d, index, lease) = engine::all(ctx, cmd, &limits, parsed.request)? else {
        return Ok(());
    };
    let shape = Shape {
        all: true,
        lease: limits.iter().any(|l| l.spec.kind() == StateKind::Leases),
    };
    let (f, n) = engine::fields(shape, &d, index, lease);
    ctx.reply_ints(f.get(..n).unwrap_or(&[]));
    Ok(())
}
