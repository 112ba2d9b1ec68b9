//! One limit on one key: an algorithm's own command (RL.TOKENBUCKET,
//! RL.SLIDING, RL.GCRA, RL.FIXED, RL.ACQUIRE), read by its syntax, or
//! RL.TAKE with a named policy. RL.ACQUIRE and a CONCURRENCY policy add
//! the lease id to the reply.

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{
    check_request, read_command, read_take, Algorithm, Syntax, Words,
};
use redis_ratelimit_core::limit::Spec;

use super::row::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine::{self, Limit};
use crate::reply::Reply;
use crate::store;
use crate::{config, policies};

/// `<command> key <params> [options] [COST n] [DRYRUN] [REFUND] [BLOCK ms]`
#[inline(always)]
pub fn limiter(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd, syntax: &Syntax) -> Result<(), CmdError> {
    let (spec, args) = read_command(syntax, &argv, config::settings())?;
    let limit = Limit {
        name: argv.name(1).ok_or(SYNTAX)?,
        spec: &spec,
        cost: args.cost.unwrap_or(1),
        policy: None,
    };
    // RL.ACQUIRE answers the lease id too (known from the row's syntax).
    let reply = Reply::limit(syntax.algorithm == Algorithm::Concurrency);
    engine::decide(ctx, cmd.report, &[limit], args, reply, store::load)
}

/// RL.TAKE key policy [COST n] [DRYRUN] [REFUND] [BLOCK timeout_ms]
#[inline]
pub fn take(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let args = read_take(&argv)?;
    let policy = policies::find(argv.word(2).ok_or(SYNTAX)?)?;
    check_request(&policy.spec, &args)?;
    let limit = Limit {
        name: argv.name(1).ok_or(SYNTAX)?,
        spec: &policy.spec,
        cost: args.cost.unwrap_or(1),
        policy: Some(&policy),
    };
    let reply = Reply::limit(leases(&policy.spec));
    // A reader of its own: RL.TAKE gets its own copy of the engine, inlined.
    engine::decide(ctx, cmd.report, &[limit], args, reply, |key: &_, kind| {
        store::load(key, kind)
    })
}

/// A CONCURRENCY limit: the reply carries the lease id.
pub fn leases(spec: &Spec) -> bool {
    matches!(spec, Spec::Concurrency(_))
}
