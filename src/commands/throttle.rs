//! CL.THROTTLE key max_burst count_per_period period [quantity]: a drop-in
//! for redis-cell, on the same bucket engine as RL.GCRA; and GCRA, the same
//! command in the grammar announced for Redis 8.8.
//!
//! redis-cell's reply: [limited, max_burst + 1, remaining, retry_after_s
//! (-1 when allowed), reset_after_s], seconds rounded up when they have a
//! millisecond part, as redis-cell rounds (`Reply::cell`). Unlike
//! redis-cell it replicates its effect, and a peek writes nothing. Keys
//! redis-cell left behind (a string holding the theoretical arrival time in
//! Unix nanoseconds) are read as they are and become `rl-bucket` keys on
//! the next allowed call.

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{read_cell, Cell, RequestArgs};
use redis_ratelimit_core::limit::Spec;

use super::row::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine::{self, Limit};
use crate::reply::Reply;
use crate::store;

/// CL.THROTTLE key max_burst count_per_period period [quantity]
pub fn throttle(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    cell(ctx, argv, cmd, Cell::Throttle)
}

/// GCRA key max_burst tokens_per_period period [TOKENS count]: the command
/// announced for Redis 8.8 (registered where the server has none), on the
/// same bucket and reply. Its keys are `rl-bucket` keys; only CL.THROTTLE
/// reads the strings redis-cell left.
pub fn gcra(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    cell(ctx, argv, cmd, Cell::Gcra)
}

fn cell(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd, form: Cell) -> Result<(), CmdError> {
    let (bucket, quantity) = read_cell(form, &argv)?;
    let args = RequestArgs {
        cost: Some(quantity),
        ..RequestArgs::default()
    };
    let limit = Limit {
        name: argv.name(1).ok_or(SYNTAX)?,
        spec: &Spec::Bucket(bucket),
        cost: quantity,
        policy: None,
    };
    let load = match form {
        Cell::Throttle => store::load_or_cell,
        Cell::Gcra => store::load,
    };
    engine::decide(ctx, cmd.report, &[limit], args, Reply::cell(), load)
}
