//! RL.TOKENBUCKET, RL.SLIDING, RL.GCRA and RL.FIXED: an algorithm's own
//! command, read by its syntax and decided on one key.

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{read_command, Syntax};

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine;
use crate::{config, store};

/// `<command> key <params> [options] [COST n] [DRYRUN] [REFUND] [BLOCK ms]`
#[inline(always)]
pub fn limiter(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd, syntax: &Syntax) -> Result<(), CmdError> {
    let (spec, req) = read_command(syntax, &argv, config::settings())?;
    let key = argv.name(1).ok_or(SYNTAX)?;
    engine::one(ctx, cmd, key, &spec, req, store::load, |d| {
        ctx.reply_ints(&d.reply_fields());
    })
}
