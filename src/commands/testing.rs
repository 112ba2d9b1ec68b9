//! Commands that exist only in test builds (feature `test-hooks`): a handler
//! that panics, to prove the guard keeps the server alive, and a settable
//! clock, to test calendar and clock-step behaviour without waiting.

use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{int, is, Cursor};

use super::row::{reports, Args, Body, Cmd, Command, Keys, Role};
use crate::api::{Argv, Ctx};
use crate::clock::test_clock;
use crate::stats::Report;

/// RL.TEST.PANIC
fn panic_now(_ctx: &Ctx<'_>, _argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    #[allow(clippy::panic)]
    {
        panic!("RL.TEST.PANIC: a deliberate panic inside a handler");
    }
}

/// RL.TEST.CLOCK SET unix-ns | RL.TEST.CLOCK REAL
fn clock(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    let mut c = Cursor::at(&argv, 1);
    let what = c.next_word()?;
    if is(what, "SET") {
        let ns = int(c.next_word()?, 1).ok_or(SYNTAX)?;
        test_clock::set(ns);
    } else if is(what, "REAL") {
        test_clock::set(0);
    } else {
        return Err(SYNTAX);
    }
    if !c.done() {
        return Err(SYNTAX);
    }
    ctx.reply_ok();
    Ok(())
}

#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    Command {
        name: c"RL.TEST.PANIC", body: Body::Handler(panic_now), flags: c"", keys: Keys::None, key_flags: 0, arity: Some(-1),
        summary: c"Test builds only: panics inside a handler.", complexity: c"O(1)", args: Args::Listed(&[]),
        counted: None, event: c"rl.test", role: Role::Test, yields: false,
    },
    Command {
        name: c"RL.TEST.CLOCK", body: Body::Handler(clock), flags: c"", keys: Keys::None, key_flags: 0, arity: Some(-2),
        summary: c"Test builds only: fixes the module's clock (SET unix-ns) or restores it (REAL).", complexity: c"O(1)", args: Args::Listed(&[]),
        counted: None, event: c"rl.test", role: Role::Test, yields: false,
    },
];

/// The test rows' reports (see `REPORTS`).
pub static REPORTS: [Report; COMMANDS.len()] = reports(COMMANDS);
