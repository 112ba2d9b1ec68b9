//! redis-ratelimit: native rate-limiting commands for Redis.
//!
//! Loaded as a module (`loadmodule .../libredis_ratelimit.so`), it adds
//! `RL.TOKENBUCKET`, `RL.SLIDING`, `RL.GCRA`, `RL.FIXED`, `RL.ACQUIRE`,
//! `RL.ALL`, `RL.TAKE` (named policies, `RL.POLICY`) and `CL.THROTTLE`,
//! which decide and update limiters in one atomic step inside
//! the server. Decisions use the server's clock; state holds absolute times
//! and is replicated as its effect, so replicas, restarts and AOF replays
//! hold exactly the master's state.
//!
//! Layout: the `redis-ratelimit-core` crate holds the pure algorithms and
//! the grammar (no clock, no Redis); `commands` is the command table and
//! its handlers; `engine` loads, decides, writes and replicates; `store`
//! says how state lives in a key and `wire` how effects travel; `api/`
//! is the only code that calls into Redis (with the allocator, the only
//! code that needs Rust's unsafe), one file per part of the module API.

#[cfg(not(target_pointer_width = "64"))]
compile_error!("redis-ratelimit keeps 64-bit state in a pointer field: 64-bit targets only");

mod alloc;
mod api;
mod block;
mod clock;
mod commands;
mod config;
mod engine;
mod policies;
mod stats;
mod store;
mod wire;

use std::ffi::{c_int, CStr};

use redis_module::raw;

/// `MODULE LIST` shows this name.
pub const MODULE_NAME: &CStr = c"ratelimit";
/// `MODULE LIST` shows this version: major * 10000 + minor * 100 + patch.
pub const MODULE_VERSION: i32 = 100;

/// The entry point Redis calls on `loadmodule` / `MODULE LOAD`: the API is
/// set up, checked and guarded in [`api::load`], which then runs [`init`].
#[no_mangle]
pub extern "C" fn RedisModule_OnLoad(
    ctx: api::RawCtx,
    argv: *mut api::RawString,
    argc: c_int,
) -> c_int {
    api::load(ctx, argv, argc, MODULE_NAME, MODULE_VERSION, init)
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
    // instead of killing the server.
    ctx.set_module_options(
        raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
            | raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS,
    );
    store::register_types(ctx)?;
    policies::register(ctx)?;
    commands::register(ctx)?;
    config::register(ctx)?;
    // After the configuration: definitions read its sliding-max-entries.
    policies::from_args(args)?;
    if !api::subscribe_server_events::<block::Events>(ctx) {
        return Err("cannot subscribe to server events".into());
    }
    if !api::register_info::<stats::Stats>(ctx) {
        return Err("cannot register the INFO section".into());
    }
    Ok(())
}
