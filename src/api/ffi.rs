//! What every other file of the API stands on: the raw types, the result
//! codes, and [`rm!`], the one way to call a Redis module API function.

use std::ffi::c_int;

use redis_module::raw;

/// Calls a Redis module API function pointer, or yields `$default` if the
/// server lacks it.
macro_rules! rm {
    ($f:ident($($a:expr),* $(,)?) else $d:expr) => {
        // SAFETY: the pointer was filled in by RedisModule_Init and the
        // arguments follow the documented C signature; each wrapper states
        // why its pointers are valid.
        match unsafe { ::redis_module::raw::$f } {
            Some(f) => unsafe { f($($a),*) },
            None => $d,
        }
    };
}

pub(crate) use rm;

pub type RawCtx = *mut raw::RedisModuleCtx;
pub type RawString = *mut raw::RedisModuleString;

pub const OK: c_int = raw::REDISMODULE_OK as c_int;
pub const ERR: c_int = raw::REDISMODULE_ERR as c_int;
