//! Module configuration: `CONFIG GET/SET ratelimit.<name>`, also settable at
//! load time as a `ratelimit.<name> <value>` line in redis.conf (after the
//! `loadmodule` line) or with `MODULE LOADEX <path> CONFIG ratelimit.<name> <value>`.
//!
//! - `sliding-max-entries` (default 100000, 1 to 100000000): the entries a
//!   sliding-window log keeps before it merges new admissions into its newest
//!   entry. It bounds memory per key (1 to 5 bytes an entry); below it the
//!   window is exact, above it the window can only admit less, never more.

use std::ffi::{c_char, c_int, c_longlong, c_void};
use std::sync::atomic::{AtomicU32, Ordering};

use redis_module::raw;

use crate::api::rm;

pub const SLIDING_MAX_ENTRIES_DEFAULT: u32 = 100_000;
const SLIDING_MAX_ENTRIES_MAX: u32 = 100_000_000;

static SLIDING_MAX_ENTRIES: AtomicU32 = AtomicU32::new(SLIDING_MAX_ENTRIES_DEFAULT);

/// The current cap on sliding-window entries per key.
#[inline]
pub fn sliding_max_entries() -> u32 {
    SLIDING_MAX_ENTRIES.load(Ordering::Relaxed)
}

extern "C" fn get_max_entries(_name: *const c_char, _privdata: *mut c_void) -> c_longlong {
    c_longlong::from(sliding_max_entries())
}

extern "C" fn set_max_entries(
    _name: *const c_char,
    value: c_longlong,
    _privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    // Redis has already checked the range.
    match u32::try_from(value) {
        Ok(v) if v >= 1 => {
            SLIDING_MAX_ENTRIES.store(v, Ordering::Relaxed);
            raw::REDISMODULE_OK as c_int
        }
        _ => raw::REDISMODULE_ERR as c_int,
    }
}

/// Registers the configuration and applies values given at load time.
pub fn register(ctx: *mut raw::RedisModuleCtx) -> Result<(), &'static str> {
    let rc = rm!(RedisModule_RegisterNumericConfig(
        ctx,
        c"sliding-max-entries".as_ptr(),
        c_longlong::from(SLIDING_MAX_ENTRIES_DEFAULT),
        raw::REDISMODULE_CONFIG_DEFAULT,
        1,
        c_longlong::from(SLIDING_MAX_ENTRIES_MAX),
        Some(get_max_entries),
        Some(set_max_entries),
        None,
        std::ptr::null_mut(),
    ) else raw::REDISMODULE_ERR as c_int);
    if rc != raw::REDISMODULE_OK as c_int {
        return Err("cannot register sliding-max-entries");
    }
    if rm!(RedisModule_LoadConfigs(ctx) else raw::REDISMODULE_ERR as c_int)
        != raw::REDISMODULE_OK as c_int
    {
        return Err("bad configuration value at load time");
    }
    Ok(())
}
