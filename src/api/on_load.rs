//! The module load: the body of `RedisModule_OnLoad` (the module's one exported
//! symbol, declared in `lib.rs`), which checks that the server has every
//! API function this module calls, and the module-wide options.

use std::ffi::{c_int, CStr};

use redis_module::raw;
use redis_ratelimit_core::grammar::Words;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, RawString, ERR, OK};
use super::guard::{guard, panic_hook};
use super::strings::Argv;

/// Runs the module's load: initializes the API, installs the panic hook,
/// checks the API, and calls `init` with the module arguments, under a
/// guard. `name` and `version` are what `MODULE LIST` shows.
pub fn on_load(
    ctx: RawCtx,
    argv: *mut RawString,
    argc: c_int,
    name: &CStr,
    version: i32,
    init: impl FnOnce(&Ctx<'_>, &[Vec<u8>]) -> Result<(), String>,
) -> c_int {
    guard(ERR, || {
        // SAFETY: the context of this load; the name is a C string that outlives it.
        // Init fills in every API pointer before anything here allocates
        // (the global allocator asks Redis once the pointers exist).
        let rc = unsafe {
            raw::Export_RedisModule_Init(
                ctx,
                name.as_ptr(),
                version,
                raw::REDISMODULE_APIVER_1 as c_int,
            )
        };
        if rc != OK {
            return ERR;
        }
        let c = Ctx::new(ctx);
        panic_hook::install();
        if let Err(missing) = check_api() {
            c.log_warning(&format!(
                "ratelimit: this server lacks {missing}; not loading"
            ));
            return ERR;
        }
        let raw_args: &[RawString] = match usize::try_from(argc) {
            // SAFETY: Redis passes `argc` valid module arguments that live
            // until this call returns; they are copied out below.
            Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
            _ => &[],
        };
        let args = Argv { args: raw_args };
        let args: Vec<Vec<u8>> = (0..args.count())
            .filter_map(|i| args.word(i).map(<[u8]>::to_vec))
            .collect();
        match init(&c, &args) {
            Ok(()) => OK,
            Err(e) => {
                c.log_warning(&format!("ratelimit: {e}"));
                ERR
            }
        }
    })
}

/// The names of every API function this module needs, checked at load.
fn check_api() -> Result<(), &'static str> {
    macro_rules! need {
        ($($f:ident),* $(,)?) => {
            $(
                // SAFETY: reading a pointer-sized static set by RedisModule_Init.
                if unsafe { raw::$f }.is_none() {
                    return Err(stringify!($f));
                }
            )*
        };
    }
    need!(
        RedisModule_OpenKey,
        RedisModule_CloseKey,
        RedisModule_KeyType,
        RedisModule_DeleteKey,
        RedisModule_ModuleTypeGetType,
        RedisModule_ModuleTypeGetValue,
        RedisModule_ModuleTypeSetValue,
        RedisModule_ModuleTypeReplaceValue,
        RedisModule_SetExpire,
        RedisModule_GetExpire,
        RedisModule_StringPtrLen,
        RedisModule_StringDMA,
        RedisModule_ReplyWithArray,
        RedisModule_ReplyWithLongLong,
        RedisModule_ReplyWithError,
        RedisModule_ReplyWithSimpleString,
        RedisModule_WrongArity,
        RedisModule_Replicate,
        RedisModule_ReplicateVerbatim,
        RedisModule_SignalModifiedKey,
        RedisModule_NotifyKeyspaceEvent,
        RedisModule_GetContextFlags,
        RedisModule_RegisterNumericConfig,
        RedisModule_LoadConfigs,
        RedisModule_RegisterInfoFunc,
        RedisModule_InfoAddSection,
        RedisModule_InfoAddFieldULongLong,
        RedisModule_IsKeysPositionRequest,
        RedisModule_KeyAtPos,
        RedisModule_Milliseconds,
        RedisModule_CreateDataType,
        RedisModule_CreateCommand,
        RedisModule_SaveStringBuffer,
        RedisModule_LoadStringBuffer,
        RedisModule_SaveUnsigned,
        RedisModule_LoadUnsigned,
        RedisModule_IsIOError,
        RedisModule_EmitAOF,
        RedisModule_DigestAddStringBuffer,
        RedisModule_DigestEndSequence,
        RedisModule_Free,
        RedisModule_SetModuleOptions,
        RedisModule_Log,
        RedisModule_BlockClient,
        RedisModule_UnblockClient,
        RedisModule_SetDisconnectCallback,
        RedisModule_GetBlockedClientPrivateData,
        RedisModule_GetBlockedClientHandle,
        RedisModule_CreateTimer,
        RedisModule_StopTimer,
        RedisModule_GetSelectedDb,
        RedisModule_SelectDb,
        RedisModule_AvoidReplicaTraffic,
        RedisModule_Call,
        RedisModule_FreeCallReply,
        RedisModule_CreateString,
        RedisModule_FreeString,
        RedisModule_SubscribeToServerEvent,
        RedisModule_GetDetachedThreadSafeContext,
        RedisModule_GetKeyNameFromOptCtx,
        RedisModule_GetDbIdFromOptCtx,
    );
    Ok(())
}

impl Ctx<'_> {
    /// Sets module-wide options (`REDISMODULE_OPTION_*`).
    pub fn set_module_options(&self, options: u32) {
        rm!(RedisModule_SetModuleOptions(self.raw, options as c_int) else ());
    }
}
