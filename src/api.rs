//! The thin, unsafe edge: calls into the Redis module API through the raw
//! bindings, so that command code reads like its syntax line.
//!
//! Every API pointer used here is checked at load time ([`check_api`]); a
//! call through a missing pointer answers a harmless default instead of
//! panicking, because a panic at this boundary would abort the server.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;

use redis_module::raw;

use crate::algo::Decision;
use crate::error::CmdError;

/// Calls a Redis module API function pointer, or yields `$default` if the
/// server lacks it.
macro_rules! rm {
    ($f:ident($($a:expr),* $(,)?) else $d:expr) => {
        // SAFETY: the pointer was filled in by RedisModule_Init and the
        // arguments follow the documented C signature.
        match unsafe { redis_module::raw::$f } {
            Some(f) => unsafe { f($($a),*) },
            None => $d,
        }
    };
}
pub(crate) use rm;

pub type RawCtx = *mut raw::RedisModuleCtx;
pub type RawString = *mut raw::RedisModuleString;

/// The names of every API function this module calls, checked at load.
pub fn check_api() -> Result<(), &'static str> {
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
        RedisModule_StringPtrLen,
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
        RedisModule_GetExpire,
        RedisModule_StringDMA,
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
    );
    Ok(())
}

/// The bytes of a module string (an argument or a key name).
#[inline]
pub fn bytes<'a>(s: RawString) -> &'a [u8] {
    let mut len: usize = 0;
    let ptr = rm!(RedisModule_StringPtrLen(s, &mut len) else std::ptr::null());
    if ptr.is_null() {
        return &[];
    }
    // SAFETY: Redis returns the string's buffer and length; argument strings
    // live until the command returns, longer than any borrow made here.
    unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
}

/// A command's context.
#[derive(Clone, Copy)]
pub struct Ctx(RawCtx);

impl Ctx {
    /// # Safety
    /// `ctx` must be the context Redis passed to the current callback.
    pub unsafe fn from_raw(ctx: RawCtx) -> Ctx {
        Ctx(ctx)
    }

    pub fn raw(&self) -> RawCtx {
        self.0
    }

    pub fn reply_decision(&self, d: &Decision) {
        self.reply_ints(&d.reply_fields());
    }

    /// An array of integers.
    pub fn reply_ints(&self, values: &[i64]) {
        rm!(RedisModule_ReplyWithArray(self.0, values.len() as std::ffi::c_long) else 0);
        for &v in values {
            rm!(RedisModule_ReplyWithLongLong(self.0, v) else 0);
        }
    }

    pub fn reply_ok(&self) {
        rm!(RedisModule_ReplyWithSimpleString(self.0, c"OK".as_ptr()) else 0);
    }

    pub fn reply_error(&self, e: &CmdError) {
        match e {
            CmdError::WrongArity => {
                rm!(RedisModule_WrongArity(self.0) else 0);
            }
            CmdError::Msg(m) => {
                rm!(RedisModule_ReplyWithError(self.0, m.as_ptr()) else 0);
            }
        }
    }

    /// True when Redis only asks where the keys are (getkeys-api commands).
    pub fn is_keys_position_request(&self) -> bool {
        rm!(RedisModule_IsKeysPositionRequest(self.0) else 0) != 0
    }

    /// True while loading an AOF/RDB or when this server is a replica.
    pub fn is_loading_or_replica(&self) -> bool {
        let flags = rm!(RedisModule_GetContextFlags(self.0) else 0);
        flags
            & (raw::REDISMODULE_CTX_FLAGS_LOADING as c_int
                | raw::REDISMODULE_CTX_FLAGS_SLAVE as c_int)
            != 0
    }

    pub fn signal_modified(&self, key: RawString) {
        rm!(RedisModule_SignalModifiedKey(self.0, key) else 0);
    }

    /// A keyspace notification of class "d" (module) for `event`.
    pub fn notify(&self, event: &CStr, key: RawString) {
        rm!(RedisModule_NotifyKeyspaceEvent(self.0, raw::REDISMODULE_NOTIFY_MODULE as c_int, event.as_ptr(), key) else 0);
    }

    /// Propagates `name key payload` (an internal command with one binary
    /// argument) to replicas and the AOF.
    pub fn replicate_blob(&self, name: &CStr, key: RawString, payload: &[u8]) {
        rm!(RedisModule_Replicate(
            self.0,
            name.as_ptr(),
            c"sb".as_ptr(),
            key,
            payload.as_ptr().cast::<c_char>(),
            payload.len(),
        ) else 0);
    }

    pub fn replicate_del(&self, key: RawString) {
        rm!(RedisModule_Replicate(self.0, c"DEL".as_ptr(), c"s".as_ptr(), key) else 0);
    }

    pub fn replicate_verbatim(&self) {
        rm!(RedisModule_ReplicateVerbatim(self.0) else 0);
    }
}

/// What a key holds, from this module's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Nothing,
    /// One of this module's types (compare with `store::BUCKET` etc.).
    Module(*mut raw::RedisModuleType),
    /// Any other type: the command answers WRONGTYPE.
    Other,
}

/// A key opened for reading and writing; closed on drop.
pub struct Key {
    ptr: NonNull<raw::RedisModuleKey>,
}

impl Key {
    /// Opens `name` for read and write. Nothing is signalled or written
    /// until a setter is called (the module sets NO_IMPLICIT_SIGNAL_MODIFIED).
    pub fn open(ctx: Ctx, name: RawString) -> Option<Key> {
        let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
        let p = rm!(RedisModule_OpenKey(ctx.raw(), name, mode) else std::ptr::null_mut());
        NonNull::new(p.cast::<raw::RedisModuleKey>()).map(|ptr| Key { ptr })
    }

    fn raw(&self) -> *mut raw::RedisModuleKey {
        self.ptr.as_ptr()
    }

    pub fn holds(&self) -> Holds {
        let t = rm!(RedisModule_KeyType(self.raw()) else -1);
        if t == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
            Holds::Nothing
        } else if t == raw::REDISMODULE_KEYTYPE_MODULE as c_int {
            Holds::Module(rm!(RedisModule_ModuleTypeGetType(self.raw()) else std::ptr::null_mut()))
        } else {
            Holds::Other
        }
    }

    /// The module value pointer (valid only if `holds()` is a module type).
    pub fn value(&self) -> *mut c_void {
        rm!(RedisModule_ModuleTypeGetValue(self.raw()) else std::ptr::null_mut())
    }

    /// Stores `value` as the key's value of type `t`. Where the key already
    /// holds a value of that type it is replaced in place (keeping the
    /// key's dictionary entry) and the old value is returned for freeing.
    pub fn set_value(
        &mut self,
        t: *mut raw::RedisModuleType,
        value: *mut c_void,
    ) -> Result<Option<*mut c_void>, ()> {
        match self.holds() {
            Holds::Module(cur) if cur == t => {
                let mut old: *mut c_void = std::ptr::null_mut();
                let rc = rm!(RedisModule_ModuleTypeReplaceValue(self.raw(), t, value, &mut old) else raw::REDISMODULE_ERR as c_int);
                if rc == raw::REDISMODULE_OK as c_int {
                    Ok(Some(old))
                } else {
                    Err(())
                }
            }
            _ => {
                let rc = rm!(RedisModule_ModuleTypeSetValue(self.raw(), t, value) else raw::REDISMODULE_ERR as c_int);
                if rc == raw::REDISMODULE_OK as c_int {
                    Ok(None)
                } else {
                    Err(())
                }
            }
        }
    }

    /// Sets the key to expire at `ms` (Unix milliseconds).
    pub fn expire_at(&mut self, ms: u64) {
        let at = i64::try_from(ms).unwrap_or(i64::MAX);
        // RedisModule_SetAbsExpire exists from 7.0 on; the relative fallback
        // is for servers without it (never below 1 ms).
        // SAFETY: reading a pointer-sized static set by RedisModule_Init.
        match unsafe { raw::RedisModule_SetAbsExpire } {
            Some(f) => {
                // SAFETY: an open, writable, non-empty key.
                unsafe { f(self.raw(), at) };
            }
            None => {
                let now = rm!(RedisModule_Milliseconds() else 0);
                let ttl = at.saturating_sub(now).max(1);
                rm!(RedisModule_SetExpire(self.raw(), ttl) else 0);
            }
        }
    }

    /// The key's expiry in Unix milliseconds, or `None` if it has none.
    pub fn expire_at_ms(&self) -> Option<u64> {
        // SAFETY: reading a pointer-sized static set by RedisModule_Init.
        let abs = match unsafe { raw::RedisModule_GetAbsExpire } {
            // SAFETY: an open key.
            Some(f) => unsafe { f(self.raw()) },
            None => {
                let ttl = rm!(RedisModule_GetExpire(self.raw()) else -1);
                if ttl < 0 {
                    ttl
                } else {
                    rm!(RedisModule_Milliseconds() else 0).saturating_add(ttl)
                }
            }
        };
        u64::try_from(abs).ok()
    }

    /// The bytes of a string value (for reading redis-cell's state).
    pub fn string_bytes(&self) -> Option<Vec<u8>> {
        let mut len: usize = 0;
        let p = rm!(RedisModule_StringDMA(self.raw(), &mut len, raw::REDISMODULE_READ as c_int) else std::ptr::null_mut());
        if p.is_null() {
            return None;
        }
        // SAFETY: Redis returned `len` readable bytes at `p`; copied at once.
        Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) }.to_vec())
    }

    /// Removes any expiry.
    pub fn persist(&mut self) {
        rm!(RedisModule_SetExpire(self.raw(), raw::REDISMODULE_NO_EXPIRE as i64) else 0);
    }

    pub fn delete(&mut self) {
        rm!(RedisModule_DeleteKey(self.raw()) else 0);
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        rm!(RedisModule_CloseKey(self.raw()) else ());
    }
}
