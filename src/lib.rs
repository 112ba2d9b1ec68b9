//! redis-ratelimit: native rate-limiting commands for Redis.
//!
//! Loaded as a module (`loadmodule .../libredis_ratelimit.so`), it adds
//! `RL.TOKENBUCKET`, `RL.SLIDING`, `RL.GCRA`, `RL.FIXED`, `RL.ACQUIRE` (with
//! `RL.RELEASE` and `RL.RENEW`), `RL.ALL`, named policies (`RL.POLICY`,
//! `RL.TAKE`, `RL.TAKEALL`) and `CL.THROTTLE`, which decide and update
//! limiters in one atomic step inside the server. Decisions use the
//! server's clock; state holds absolute times and is replicated as its
//! effect, so replicas, restarts and AOF replays hold exactly the master's
//! state.
//!
//! Layout (docs/ARCHITECTURE.md): the `redis-ratelimit-core` crate holds
//! the pure algorithms and the grammar (no clock, no Redis); `commands` is
//! the command table and its handlers; `engine` loads, decides, writes and
//! replicates, with `block` (the waiting line) as a peer it calls; `store`
//! says how state lives in a key and `wire` how effects travel; `api/` is
//! the only code that calls into Redis (with the allocator, the only code
//! that needs Rust's unsafe), one file per part of the module API. Each
//! layer uses only those below it (`scripts/check_layers.py`).

#[cfg(not(target_pointer_width = "64"))]
compile_error!("redis-ratelimit keeps 64-bit state in a pointer field: 64-bit targets only");

mod alloc;
mod api;
mod block;
mod clock;
mod commands;
mod config;
mod engine;
mod info;
mod policies;
mod reply;
mod settle;
mod stats;
mod store;
mod wire;

use std::ffi::{c_int, CStr};

use redis_module::raw;

/// `MODULE LIST` shows this name.
pub const MODULE_NAME: &CStr = c"ratelimit";
/// `MODULE LIST` shows this version: major * 10000 + minor * 100 + patch,
/// from the crate's version.
pub const MODULE_VERSION: i32 = match module_version(env!("CARGO_PKG_VERSION").as_bytes()) {
    Some(v) => v,
    None => 0,
};

// Evaluated while building: a crate version of another form fails the build.
const _: () = assert!(
    MODULE_VERSION > 0,
    "the crate version is not major.minor.patch, minor and patch below 100"
);

/// `major.minor.patch` (anything after a `-` or `+` ignored) as
/// major * 10000 + minor * 100 + patch; `None` for any other form, or a
/// minor or patch of 100 or more.
const fn module_version(mut v: &[u8]) -> Option<i32> {
    let mut parts = (0i32, 0i32, 0i32);
    let mut part = 0;
    while let [c, rest @ ..] = v {
        if *c == b'-' || *c == b'+' {
            break;
        }
        let n = match part {
            0 => &mut parts.0,
            1 => &mut parts.1,
            _ => &mut parts.2,
        };
        match *c {
            b'.' if part < 2 => part += 1,
            d @ b'0'..=b'9' if *n < 100 => *n = *n * 10 + (d - b'0') as i32,
            _ => return None,
        }
        v = rest;
    }
    if part != 2 || parts.1 >= 100 || parts.2 >= 100 {
        return None;
    }
    Some(parts.0 * 10_000 + parts.1 * 100 + parts.2)
}

/// The entry point Redis calls on `loadmodule` / `MODULE LOAD`: the API is
/// set up, checked and guarded in [`api::on_load`], which then runs [`init`].
#[no_mangle]
pub extern "C" fn RedisModule_OnLoad(
    ctx: api::RawCtx,
    argv: *mut api::RawString,
    argc: c_int,
) -> c_int {
    api::on_load(ctx, argv, argc, MODULE_NAME, MODULE_VERSION, init)
}

/// Every allocation goes through Redis's allocator inside a server.
#[global_allocator]
static ALLOCATOR: alloc::ModuleAlloc = alloc::ModuleAlloc;

/// Called once from `RedisModule_OnLoad`, after the API is ready, with
/// the module's load arguments (`POLICY name <definition>` groups).
fn init(ctx: &api::Ctx<'_>, args: &[Vec<u8>]) -> Result<(), String> {
    // Redis must not signal a key as modified just because we opened it for
    // writing: a denied request or a peek changes nothing, and must not
    // break WATCH or client-side caching. rdb_load reports IO errors to us
    // instead of killing the server. And whatever makes this server's API
    // cheaper without changing what a command does (Valkey: no command
    // lookup on every propagated effect). The server keeps one word of
    // options: the slot-migration opt-in below adds its bit to these.
    let options = raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
        | raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS
        | api::fast_options();
    ctx.set_module_options(options);
    store::register_types(ctx)?;
    policies::register(ctx)?;
    commands::register(ctx)?;
    config::register(ctx)?;
    // After the configuration: definitions read its sliding-max-entries.
    policies::from_args(args)?;
    if !api::subscribe_server_events::<block::Events>(ctx) {
        return Err("cannot subscribe to server events".into());
    }
    if !api::hear_removed_keys::<block::Events>(ctx) {
        return Err("cannot create the module's own context".into());
    }
    // Valkey 9 moves slots atomically only if every module says it can
    // (docs/COMMANDS.md, "Slot migration"): our keys travel as their AOF
    // rewrite (RL.SETSTATE, then PEXPIREAT), our effects stream as they
    // replicate, and the waiters of a slot that left end with TRYAGAIN.
    if api::atomic_slot_migration(ctx)
        && !api::opt_in_atomic_slot_migration::<block::Events>(ctx, options)
    {
        ctx.log_warning(
            "ratelimit: cannot subscribe to slot migrations; CLUSTER MIGRATESLOTS stays refused",
        );
    }
    if !api::register_info::<info::Section>(ctx) {
        return Err("cannot register the INFO section".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_module_version_is_the_crates() {
        assert_eq!(super::module_version(b"0.1.0"), Some(100));
        assert_eq!(super::module_version(b"1.23.4-rc.1"), Some(12_304));
        assert_eq!(super::MODULE_VERSION, 100);
        for bad in [&b"1.2"[..], b"1.2.3.4", b"1.100.0", b"1.x.0", b""] {
            assert_eq!(super::module_version(bad), None, "{bad:?}");
        }
    }
}
