//! RL.TOKENBUCKET, RL.SLIDING, RL.GCRA, RL.FIXED and RL.ACQUIRE: an
//! algorithm's own command, read by its syntax and decided on one key
//! (RL.ACQUIRE adds the lease id to the reply).

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{read_command, Algorithm, Syntax};

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine::{self, Shape};
use crate::{config, store};

/// `<command> key <params> [options] [COST n] [DRYRUN] [REFUND] [BLOCK ms]`
#[inline(always)]
pub fn limiter(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd, syntax: &Syntax) -> Result<(), CmdError> {
    let (spec, req) = read_command(syntax, &argv, config::settings())?;
    let key = argv.name(1).ok_or(SYNTAX)?;
    let shape = Shape {
        all: false,
        lease: syntax.algorithm == Algorithm::Concurrency,
    };
    engine::one(ctx, cmd, key, &spec, req, None, store::load, |d, lease| {
        let (f, n) = engine::fields(shape, d, 0, lease);
        ctx.reply_ints(f.get(..n).unwrap_or(&[]));
    })
}
