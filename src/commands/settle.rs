//! RL.SETTLE: settles a reservation made by RL.ALL or RL.TAKEALL with
//! ESTIMATE clauses (the work is done, its actual cost known).

use redis_ratelimit_core::error::{CmdError, ACTUAL, LEASE_ID, SYNTAX};
use redis_ratelimit_core::grammar::{int, is, Words};

use super::row::Cmd;
use crate::api::{Argv, Ctx, Name};
use crate::settle;

/// The keyword before the reservation's handle.
const LEASE: &str = "LEASE";
/// The keyword before the actual cost.
const ACTUAL_COST: &str = "ACTUAL";

/// RL.SETTLE anchor key [key ...] LEASE lease_id ACTUAL n
pub fn settle(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let n = argv.count();
    let word = |back: usize| n.checked_sub(back).and_then(|i| argv.word(i));
    if n < 7
        || !word(4).is_some_and(|w| is(w, LEASE))
        || !word(2).is_some_and(|w| is(w, ACTUAL_COST))
    {
        return Err(SYNTAX);
    }
    let id = word(3).and_then(|w| int(w, 1)).ok_or(LEASE_ID)?;
    let actual = word(1).and_then(|w| int(w, 0)).ok_or(ACTUAL)?;
    let anchor = argv.name(1).ok_or(SYNTAX)?;
    let keys = (2..n - 4)
        .map(|i| argv.name(i).ok_or(SYNTAX))
        .collect::<Result<Vec<Name<'_>>, CmdError>>()?;
    settle::settle(ctx, cmd.report, anchor, &keys, id, actual)
}
