//! RL.SETTLE: settles a reservation made by RL.ALL or RL.TAKEALL with
//! ESTIMATE clauses (the work is done, its actual cost known).

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{read_settle, Words};

use super::row::Cmd;
use crate::api::{Argv, Ctx, Name};
use crate::settle;

/// RL.SETTLE anchor key [key ...] LEASE lease_id ACTUAL n
pub fn settle(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (id, actual) = read_settle(&argv)?;
    let anchor = argv.name(1).ok_or(SYNTAX)?;
    let keys = (2..argv.count().saturating_sub(4))
        .map(|i| argv.name(i).ok_or(SYNTAX))
        .collect::<Result<Vec<Name<'_>>, CmdError>>()?;
    settle::settle(ctx, cmd.report, anchor, &keys, id, actual)
}
