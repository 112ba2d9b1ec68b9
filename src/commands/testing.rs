//! Commands that exist only in test builds (feature `test-hooks`): a handler
//! that panics, to prove the guard keeps the server alive, and a settable
//! clock, to test calendar and clock-step behaviour without waiting.

use std::ffi::c_int;

use super::{dispatch, is, Args, Command};
use crate::api::{Ctx, RawCtx, RawString};
use crate::error::{CmdResult, SYNTAX};
use crate::time::test_clock;

/// RL.TEST.PANIC
fn panic_now(_ctx: Ctx, _argv: &[RawString]) -> CmdResult {
    #[allow(clippy::panic)]
    {
        panic!("RL.TEST.PANIC: a deliberate panic inside a handler");
    }
}

/// RL.TEST.CLOCK SET unix-ns | RL.TEST.CLOCK REAL
fn clock(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 1)?;
    let what = args.next_bytes()?;
    if is(what, b"SET") {
        let ns = args.next_int(1, SYNTAX)?;
        test_clock::set(ns);
    } else if is(what, b"REAL") {
        test_clock::set(0);
    } else {
        return Err(SYNTAX);
    }
    if !args.done() {
        return Err(SYNTAX);
    }
    ctx.reply_ok();
    Ok(())
}

extern "C" fn panic_entry(ctx: RawCtx, argv: *mut RawString, argc: c_int) -> c_int {
    dispatch(ctx, argv, argc, panic_now, None)
}

extern "C" fn clock_entry(ctx: RawCtx, argv: *mut RawString, argc: c_int) -> c_int {
    dispatch(ctx, argv, argc, clock, None)
}

#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    Command {
        name: c"RL.TEST.PANIC",
        entry: panic_entry,
        flags: c"",
        first_key: 0,
        last_key: 0,
        key_step: 0,
    },
    Command {
        name: c"RL.TEST.CLOCK",
        entry: clock_entry,
        flags: c"",
        first_key: 0,
        last_key: 0,
        key_step: 0,
    },
];
