//! RL.ALL: several limits, one atomic decision.
//!
//! Every limit is evaluated against its own key; only if all of them allow
//! do all of them consume. Their effects are propagated one after the
//! other inside this one command, which Redis wraps in MULTI/EXEC for
//! replicas and the AOF: all keys change together or none does.

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{all_key_positions, read_all};

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::config;
use redis_ratelimit_core::limit::Kind;

use crate::engine::{self, Answer, Limit, Shape};

/// RL.ALL [COST n] [DRYRUN] [REFUND] [BLOCK ms] LIMIT key <algorithm> ... [COST n] [LIMIT ...] ...
pub fn all(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    if ctx.is_keys_position_request() {
        // Cluster routing and COMMAND GETKEYS: report every clause's key.
        for pos in all_key_positions(&argv) {
            ctx.key_at(pos);
        }
        return Ok(());
    }
    let parsed = read_all(&argv, config::settings())?;
    let mut limits = Vec::with_capacity(parsed.clauses.len());
    for c in &parsed.clauses {
        limits.push(Limit {
            name: argv.name(c.key).ok_or(SYNTAX)?,
            spec: &c.spec,
            cost: c.cost.or(parsed.request.cost).unwrap_or(1),
        });
    }
    let Answer::Decided(d, index, lease) = engine::all(ctx, cmd, &limits, parsed.request)? else {
        return Ok(());
    };
    let shape = Shape {
        all: true,
        lease: limits.iter().any(|l| l.spec.kind() == Kind::Leases),
    };
    let (f, n) = engine::fields(shape, &d, index, lease);
    ctx.reply_ints(f.get(..n).unwrap_or(&[]));
    Ok(())
}
