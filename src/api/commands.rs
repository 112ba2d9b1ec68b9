//! Commands: the entry point's guard, registration with legacy key
//! positions, subcommands, and ACL categories.

use std::ffi::{c_int, CStr, CString};

use redis_module::raw;
use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::grammar::Words;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, RawString, ERR, OK};
use super::guard::{guard, guard_named};
use super::strings::Argv;

/// The signature Redis calls a command with.
pub type EntryFn = extern "C" fn(RawCtx, *mut RawString, c_int) -> c_int;

/// Runs a command body for an `extern "C"` entry point: wraps the raw
/// context and arguments, catches any panic, and answers an error result.
/// `on_error` sees every error answered (for counters).
pub fn run_command(
    ctx: RawCtx,
    argv: *mut RawString,
    argc: c_int,
    body: impl FnOnce(&Ctx<'_>, Argv<'_>) -> Result<(), CmdError>,
    on_error: impl FnOnce(),
) -> c_int {
    let c = Ctx::new(ctx);
    let args: &[RawString] = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid argument pointers that live until
        // the command returns; the slice does not escape this call.
        Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let argv = Argv { args };
    let name = || {
        argv.word(0).map_or_else(
            || "a command".to_string(),
            |w| String::from_utf8_lossy(w).into_owned(),
        )
    };
    let result = guard_named(name, Err(redis_ratelimit_core::error::INTERNAL), || {
        body(&c, argv)
    });
    if let Err(e) = result {
        guard((), || {
            c.reply_error(&e);
            on_error();
        });
    }
    OK
}

/// Registers a command with its legacy key positions.
/// A container of subcommands has no entry point.
pub fn create_command(
    ctx: &Ctx<'_>,
    name: &CStr,
    entry: Option<EntryFn>,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    let (first, last, step) = keys;
    let func = cmd_func(entry);
    rm!(RedisModule_CreateCommand(ctx.raw, name.as_ptr(), func, flags.as_ptr(), first, last, step) else ERR)
        == OK
}

/// An entry point as the registration functions take it (none: a container).
fn cmd_func(entry: Option<EntryFn>) -> raw::RedisModuleCmdFunc {
    match entry {
        Some(f) => Some(f),
        None => None,
    }
}

/// Registers subcommand `sub` of the container command `parent`.
pub fn create_subcommand(
    ctx: &Ctx<'_>,
    parent: &[u8],
    sub: &[u8],
    entry: Option<EntryFn>,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    let (Ok(parent), Ok(sub)) = (CString::new(parent), CString::new(sub)) else {
        return false;
    };
    let cmd = rm!(RedisModule_GetCommand(ctx.raw, parent.as_ptr()) else std::ptr::null_mut());
    if cmd.is_null() {
        return false;
    }
    let (first, last, step) = keys;
    let func = cmd_func(entry);
    rm!(RedisModule_CreateSubcommand(cmd, sub.as_ptr(), func, flags.as_ptr(), first, last, step) else ERR)
        == OK
}

/// Adds an ACL category (Redis 7.4+, Valkey 8.0+, and only while loading);
/// false where the server lacks the API or refuses.
pub fn add_acl_category(ctx: &Ctx<'_>, name: &CStr) -> bool {
    rm!(RedisModule_AddACLCategory(ctx.raw, name.as_ptr()) else ERR) == OK
}

/// Whether the server lets modules add ACL categories (Redis 7.4+, Valkey 8.0+).
pub fn has_add_acl_category() -> bool {
    // SAFETY: a copy of a pointer-sized static set by RedisModule_Init.
    let f = unsafe { raw::RedisModule_AddACLCategory };
    f.is_some()
}

/// Whether the server lets modules set command ACL categories (7.2+).
pub fn has_command_acl_categories() -> bool {
    // SAFETY: a copy of a pointer-sized static set by RedisModule_Init.
    let f = unsafe { raw::RedisModule_SetCommandACLCategories };
    f.is_some()
}

/// Puts a command in ACL categories (Redis 7.2+, only while loading);
/// false where the server lacks the API or refuses.
pub fn set_command_acl_categories(ctx: &Ctx<'_>, name: &CStr, categories: &CStr) -> bool {
    let cmd = rm!(RedisModule_GetCommand(ctx.raw, name.as_ptr()) else std::ptr::null_mut());
    if cmd.is_null() {
        return false;
    }
    rm!(RedisModule_SetCommandACLCategories(cmd, categories.as_ptr()) else ERR) == OK
}
