//! The command table and the guard every handler runs inside.
//!
//! Each handler is `fn(Ctx, &[RawString]) -> CmdResult`: it parses, loads,
//! decides, stores, replicates and replies to a success itself; an error it
//! returns is answered here. A panic is caught here too and answered with
//! `ERR internal error`, because one that crossed into Redis would abort
//! the server for every user. Handlers do everything fallible before their
//! first write, so an error or a panic never leaves half a change behind.

mod all;
mod bucket;
mod docs;
mod fixed;
mod limit;
mod sliding;
mod state;
#[cfg(feature = "test-hooks")]
mod testing;

use std::ffi::{c_int, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis_module::raw;

use crate::api::{bytes, rm, Ctx, RawCtx, RawString};
use crate::error::{CmdError, CmdResult, INTERNAL, SYNTAX};
use crate::num::{parse_u64, Decimal};
use crate::stats::{self, Cmd};

type Handler = fn(Ctx, &[RawString]) -> CmdResult;

/// Runs a handler under `catch_unwind` and answers its error, if any,
/// counting the call for `INFO ratelimit` when `counted` names a limiter.
#[inline]
fn dispatch(
    ctx: RawCtx,
    argv: *mut RawString,
    argc: c_int,
    handler: Handler,
    counted: Option<Cmd>,
) -> c_int {
    // SAFETY: Redis hands us the context of this very call.
    let ctx = unsafe { Ctx::from_raw(ctx) };
    let args: &[RawString] = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid argument pointers.
        Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    if let Some(cmd) = counted {
        stats::call(cmd);
    }
    let result = match catch_unwind(AssertUnwindSafe(|| handler(ctx, args))) {
        Ok(r) => r,
        Err(_) => Err(INTERNAL),
    };
    if let Err(e) = result {
        ctx.reply_error(&e);
        if let Some(cmd) = counted {
            stats::error(cmd);
        }
    }
    raw::REDISMODULE_OK as c_int
}

/// Defines the `extern "C"` entry point Redis calls for a handler.
macro_rules! entry {
    ($($entry:ident => $handler:path, $counted:expr;)*) => {
        $(
            extern "C" fn $entry(ctx: RawCtx, argv: *mut RawString, argc: c_int) -> c_int {
                dispatch(ctx, argv, argc, $handler, $counted)
            }
        )*
    };
}

entry! {
    tokenbucket_entry => bucket::tokenbucket, Some(Cmd::TokenBucket);
    sliding_entry => sliding::sliding, Some(Cmd::Sliding);
    gcra_entry => bucket::gcra, Some(Cmd::Gcra);
    fixed_entry => fixed::fixed, Some(Cmd::Fixed);
    all_entry => all::all, Some(Cmd::All);
    throttle_entry => bucket::throttle, Some(Cmd::Throttle);
    setstate_entry => state::setstate, None;
    windowadd_entry => state::windowadd, None;
    windowrefund_entry => state::windowrefund, None;
}

struct Command {
    name: &'static CStr,
    entry: extern "C" fn(RawCtx, *mut RawString, c_int) -> c_int,
    flags: &'static CStr,
    first_key: c_int,
    last_key: c_int,
    key_step: c_int,
}

/// Every command this module adds.
#[rustfmt::skip]
const COMMANDS: &[Command] = &[
    Command { name: c"RL.TOKENBUCKET", entry: tokenbucket_entry, flags: c"write deny-oom fast", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.SLIDING", entry: sliding_entry, flags: c"write deny-oom fast", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.GCRA", entry: gcra_entry, flags: c"write deny-oom fast", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.FIXED", entry: fixed_entry, flags: c"write deny-oom fast", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.ALL", entry: all_entry, flags: c"write deny-oom getkeys-api", first_key: 0, last_key: 0, key_step: 0 },
    Command { name: c"CL.THROTTLE", entry: throttle_entry, flags: c"write deny-oom fast", first_key: 1, last_key: 1, key_step: 1 },
    // Internal: how replicas and the AOF receive state. Not for applications.
    Command { name: c"RL.SETSTATE", entry: setstate_entry, flags: c"write deny-oom", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.WINDOWADD", entry: windowadd_entry, flags: c"write deny-oom", first_key: 1, last_key: 1, key_step: 1 },
    Command { name: c"RL.WINDOWREFUND", entry: windowrefund_entry, flags: c"write deny-oom", first_key: 1, last_key: 1, key_step: 1 },
];

pub fn register(ctx: RawCtx) -> Result<(), &'static CStr> {
    for c in COMMANDS {
        create(ctx, c)?;
    }
    #[cfg(feature = "test-hooks")]
    for c in testing::COMMANDS {
        create(ctx, c)?;
    }
    docs::register(ctx)
}

fn create(ctx: RawCtx, c: &Command) -> Result<(), &'static CStr> {
    let rc = rm!(RedisModule_CreateCommand(
        ctx,
        c.name.as_ptr(),
        Some(c.entry),
        c.flags.as_ptr(),
        c.first_key,
        c.last_key,
        c.key_step,
    ) else raw::REDISMODULE_ERR as c_int);
    if rc == raw::REDISMODULE_OK as c_int {
        Ok(())
    } else {
        Err(c.name)
    }
}

// ---------------------------------------------------------------- parsing

/// Arguments read in order, as a handler reads its syntax line.
pub struct Args<'a> {
    args: &'a [RawString],
    pos: usize,
}

impl<'a> Args<'a> {
    /// Skips the command name; fails with the arity error unless there are
    /// at least `min` arguments after it.
    pub fn new(args: &'a [RawString], min: usize) -> Result<Args<'a>, CmdError> {
        if args.len() < min + 1 {
            return Err(CmdError::WrongArity);
        }
        Ok(Args { args, pos: 1 })
    }

    /// The next argument without consuming it (empty at the end).
    pub fn peek_bytes(&self) -> &'a [u8] {
        self.args.get(self.pos).map(|a| bytes(*a)).unwrap_or(&[])
    }

    pub fn done(&self) -> bool {
        self.pos >= self.args.len()
    }

    /// The next argument as a module string (for keys).
    pub fn next_raw(&mut self) -> Result<RawString, CmdError> {
        let s = self.args.get(self.pos).copied().ok_or(SYNTAX)?;
        self.pos += 1;
        Ok(s)
    }

    pub fn next_bytes(&mut self) -> Result<&'a [u8], CmdError> {
        self.next_raw().map(bytes)
    }

    /// An integer in `min..=i64::MAX`, else `err`.
    pub fn next_int(&mut self, min: u64, err: CmdError) -> Result<u64, CmdError> {
        let b = self.next_raw().map_err(|_| err)?;
        parse_u64(bytes(b))
            .filter(|v| *v >= min && *v <= i64::MAX as u64)
            .ok_or(err)
    }

    /// A positive decimal, else `err`.
    pub fn next_positive(&mut self, err: CmdError) -> Result<Decimal, CmdError> {
        let b = self.next_raw().map_err(|_| err)?;
        Decimal::parse(bytes(b)).filter(|d| !d.is_zero()).ok_or(err)
    }

    /// The value of an option that was just read (missing value: syntax error).
    pub fn option_value(&mut self) -> Result<(), CmdError> {
        if self.done() {
            Err(SYNTAX)
        } else {
            Ok(())
        }
    }

    /// If `opt` is `keyword` and `slot` is still empty, reads the option's
    /// value with `parse` into `slot` and answers true. A repeated option is
    /// not read (the caller then answers `ERR syntax error`).
    pub fn option<T>(
        &mut self,
        opt: &[u8],
        keyword: &[u8],
        slot: &mut Option<T>,
        parse: impl FnOnce(&mut Self) -> Result<T, CmdError>,
    ) -> Result<bool, CmdError> {
        if !is(opt, keyword) || slot.is_some() {
            return Ok(false);
        }
        self.option_value()?;
        *slot = Some(parse(self)?);
        Ok(true)
    }
}

/// Case-insensitive keyword comparison.
pub fn is(arg: &[u8], keyword: &[u8]) -> bool {
    arg.eq_ignore_ascii_case(keyword)
}
