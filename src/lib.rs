//! redis-ratelimit: native rate-limiting commands for Redis.
//!
//! Loaded as a module (`loadmodule .../libredis_ratelimit.so`), it adds
//! `RL.TOKENBUCKET`, `RL.SLIDING`, `RL.GCRA`, `RL.FIXED`, `RL.ALL` and
//! `CL.THROTTLE`, which decide and update limiters in one atomic step inside
//! the server. Decisions use the server's clock;
//! state holds absolute times and is replicated as its effect, so replicas,
//! restarts and AOF replays hold exactly the master's state.
//!
//! Layout: [`algo`] holds the pure algorithms (no clock, no Redis);
//! `commands` parses, loads, decides, stores, replicates and replies;
//! `store` says how state lives in a key; `api` is the unsafe edge.

#[cfg(not(target_pointer_width = "64"))]
compile_error!("redis-ratelimit keeps 64-bit state in a pointer field: 64-bit targets only");

pub mod algo;
pub mod num;
pub mod time;

mod alloc;
mod api;
mod commands;
mod config;
mod error;
mod stats;
mod store;
mod wire;

use redis_module::{redis_module, Context, RedisString, Status};

/// `MODULE LIST` shows this name.
pub const MODULE_NAME: &str = "ratelimit";
/// `MODULE LIST` shows this version: major * 10000 + minor * 100 + patch.
pub const MODULE_VERSION: i32 = 100;

fn init(ctx: &Context, _args: &[RedisString]) -> Status {
    if let Err(missing) = api::check_api() {
        ctx.log_warning(&format!(
            "ratelimit: this server lacks {missing}; not loading"
        ));
        return Status::Err;
    }
    // Redis must not signal a key as modified just because we opened it for
    // writing: a denied request or a peek changes nothing, and must not
    // break WATCH or client-side caching. rdb_load reports IO errors to us
    // instead of killing the server.
    let options = redis_module::raw::REDISMODULE_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED
        | redis_module::raw::REDISMODULE_OPTIONS_HANDLE_IO_ERRORS;
    api::rm!(RedisModule_SetModuleOptions(ctx.ctx, options as std::ffi::c_int) else ());
    if let Err(e) = store::register_types(ctx.ctx) {
        ctx.log_warning(&format!("ratelimit: {e}"));
        return Status::Err;
    }
    if let Err(name) = commands::register(ctx.ctx) {
        ctx.log_warning(&format!(
            "ratelimit: cannot register {}",
            name.to_string_lossy()
        ));
        return Status::Err;
    }
    if let Err(e) = config::register(ctx.ctx) {
        ctx.log_warning(&format!("ratelimit: {e}"));
        return Status::Err;
    }
    // Replaces the crate's default INFO callback with ours.
    api::rm!(RedisModule_RegisterInfoFunc(ctx.ctx, Some(stats::info)) else 0);
    Status::Ok
}

redis_module! {
    name: MODULE_NAME,
    version: MODULE_VERSION,
    allocator: (crate::alloc::ModuleAlloc, crate::alloc::ModuleAlloc),
    data_types: [],
    init: init,
    commands: [],
}
