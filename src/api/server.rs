//! What the running server offers beyond Redis 7.0's module API, found
//! once at load by asking for function pointers (a server that lacks an
//! API has no pointer for it).

use std::ffi::{c_void, CStr};

use redis_module::raw;

use super::ffi::{rm, OK};

/// `VALKEYMODULE_OPTIONS_SKIP_COMMAND_VALIDATION` (Valkey 8.1+):
/// `RM_Replicate` and `RM_EmitAOF` no longer look the command name up on
/// every call (an sds copy, a split, a case-insensitive hash lookup and
/// their allocations: about 1,600 instructions per RL.TAKE on Valkey 9.1.2,
/// measured with callgrind). Redis leaves this bit
/// undefined (8.2 answers 0xf from `GetModuleOptionsAll`) and may give it
/// another meaning one day: it is set on Valkey only.
const VALKEY_SKIP_COMMAND_VALIDATION: u32 = 1 << 4;

/// True if the server exports the API function `name` (any
/// `RedisModule_` name, whether or not the crate knows it).
fn has_api(name: &CStr) -> bool {
    let mut f: *mut c_void = std::ptr::null_mut();
    let got =
        rm!(RedisModule_GetApi(name.as_ptr(), std::ptr::addr_of_mut!(f).cast::<c_void>()) else -1);
    got == OK && !f.is_null()
}

/// Valkey exports its API under its own prefix as well as Redis's
/// (checked on 9.1.2); Redis never does.
fn is_valkey() -> bool {
    has_api(c"ValkeyModule_Replicate")
}

/// The module options this server knows (`GetModuleOptionsAll`, Redis
/// 7.2+ and Valkey); 0 where it cannot say (Redis 7.0).
fn options_known() -> u32 {
    // SAFETY: reading a pointer-sized static set by RedisModule_Init.
    match unsafe { raw::RedisModule_GetModuleOptionsAll } {
        // SAFETY: a function of no arguments that returns a constant.
        Some(f) => u32::try_from(unsafe { f() }).unwrap_or(0),
        None => 0,
    }
}

/// The options that make this server's module API cheaper without
/// changing what a command does: Valkey's skip of the command lookup in
/// `Replicate` (our propagated commands are our own registered ones, and
/// `DEL`, so the lookup could only ever succeed).
pub fn fast_options() -> u32 {
    if is_valkey() && options_known() & VALKEY_SKIP_COMMAND_VALIDATION != 0 {
        VALKEY_SKIP_COMMAND_VALIDATION
    } else {
        0
    }
}
