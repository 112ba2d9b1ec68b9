//! Keys: open one, see what it holds, read and write a module value in
//! place, its expiry.

use std::ffi::{c_int, c_void};
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::ptr::NonNull;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, ERR, OK};
use super::strings::Name;
use super::types::{BoxedType, InlineType, TypeHandle, TypeId};

/// An open key, closed on drop; lives no longer than its command's context.
pub struct Key<'a> {
    ptr: NonNull<raw::RedisModuleKey>,
    _ctx: PhantomData<&'a ()>,
}

/// What a key holds, from this module's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Nothing,
    /// A module type (compare with [`TypeHandle::id`]).
    Module(TypeId),
    /// Any other type: the command answers WRONGTYPE.
    Other,
}

/// What [`Key::read`] found.
pub enum Read<'k> {
    Nothing,
    Module(Held<'k>),
    Other,
}

/// A module value held by a key, borrowed for as long as the key is.
pub struct Held<'k> {
    ty: TypeId,
    ptr: *mut c_void,
    _key: PhantomData<&'k ()>,
}

impl<'k> Held<'k> {
    /// The value, if it is of inline type `t`.
    pub fn inline(&self, t: &InlineType) -> Option<NonZeroU64> {
        if self.ty != t.id() {
            return None;
        }
        NonZeroU64::new(self.ptr as usize as u64)
    }

    /// The value, if it is of boxed type `t`.
    pub fn boxed<T>(&self, t: &BoxedType<T>) -> Option<&'k T> {
        if self.ty != t.id() {
            return None;
        }
        // SAFETY: the pointer and its type were read together from one
        // open key; values of a BoxedType<T> are always a Box<T> made by
        // `set_boxed` or the type's own load/copy callbacks; the borrow
        // lasts no longer than the key's, and the key cannot be written
        // while it lasts (writes need `&mut Key`).
        unsafe { self.ptr.cast::<T>().as_ref() }
    }
}

impl Key<'_> {
    fn raw(&self) -> *mut raw::RedisModuleKey {
        self.ptr.as_ptr()
    }

    pub fn holds(&self) -> Holds {
        // A module value's type first: the one call a limiter's own key
        // needs (null for an empty key or any other type).
        let ty = rm!(RedisModule_ModuleTypeGetType(self.raw()) else std::ptr::null_mut());
        if !ty.is_null() {
            return Holds::Module(TypeId(ty));
        }
        // (A module value without a type cannot be; it would read as foreign.)
        let t = rm!(RedisModule_KeyType(self.raw()) else -1);
        if t == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
            Holds::Nothing
        } else {
            Holds::Other
        }
    }

    fn holds_type(&self, t: &TypeHandle) -> bool {
        self.holds() == Holds::Module(t.id())
    }

    fn value_ptr(&self) -> *mut c_void {
        rm!(RedisModule_ModuleTypeGetValue(self.raw()) else std::ptr::null_mut())
    }

    /// What the key holds, with a module value's pointer read at once.
    pub fn read(&self) -> Read<'_> {
        match self.holds() {
            Holds::Nothing => Read::Nothing,
            Holds::Other => Read::Other,
            Holds::Module(ty) => Read::Module(Held {
                ty,
                ptr: self.value_ptr(),
                _key: PhantomData,
            }),
        }
    }

    /// Stores `v` as the key's value of inline type `t`, replacing what it
    /// held. True when the key held no value of `t` before.
    pub fn set_inline(&mut self, t: &InlineType, v: NonZeroU64) -> bool {
        let p = v.get() as usize as *mut c_void;
        // Replacing fails, cheaply, unless the key holds a value of `t`.
        let mut old: *mut c_void = std::ptr::null_mut();
        let replaced =
            rm!(RedisModule_ModuleTypeReplaceValue(self.raw(), t.0.ptr(), p, &mut old) else ERR);
        if replaced == OK {
            return false;
        }
        rm!(RedisModule_ModuleTypeSetValue(self.raw(), t.0.ptr(), p) else ERR);
        true
    }

    /// The boxed value, mutably.
    pub fn boxed_mut<T>(&mut self, t: &BoxedType<T>) -> Option<&mut T> {
        if !self.holds_type(&t.handle) {
            return None;
        }
        // SAFETY: as in `boxed`; `&mut self` makes the borrow exclusive.
        unsafe { self.value_ptr().cast::<T>().as_mut() }
    }

    /// Stores `value` in the key as type `t`, replacing what it held. True
    /// when the key held no value of `t` before.
    pub fn set_boxed<T>(&mut self, t: &BoxedType<T>, value: T) -> bool {
        let p = Box::into_raw(Box::new(value)).cast::<c_void>();
        // Replacing fails, cheaply, unless the key holds a value of `t`.
        let mut old: *mut c_void = std::ptr::null_mut();
        let rc = rm!(RedisModule_ModuleTypeReplaceValue(self.raw(), t.handle.ptr(), p, &mut old) else ERR);
        if rc == OK {
            if !old.is_null() {
                // SAFETY: the value Redis handed back is a Box<T> of this
                // type (see `Held::boxed`), owned here now.
                drop(unsafe { Box::from_raw(old.cast::<T>()) });
            }
            return false;
        }
        let rc = rm!(RedisModule_ModuleTypeSetValue(self.raw(), t.handle.ptr(), p) else ERR);
        if rc != OK {
            // SAFETY: Redis did not take the pointer.
            drop(unsafe { Box::from_raw(p.cast::<T>()) });
            return false;
        }
        true
    }

    /// Sets the key to expire at `ms` (Unix milliseconds).
    pub fn expire_at(&mut self, ms: u64) {
        let at = i64::try_from(ms).unwrap_or(i64::MAX);
        // RedisModule_SetAbsExpire exists from 7.0 on; the relative fallback
        // is for servers without it (never below 1 ms).
        // SAFETY: reading a pointer-sized static set by RedisModule_Init.
        match unsafe { raw::RedisModule_SetAbsExpire } {
            // SAFETY: an open, writable, non-empty key.
            Some(f) => unsafe {
                f(self.raw(), at);
            },
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

    /// The bytes of a string value, if the key holds a string.
    pub fn string_bytes(&self) -> Option<&[u8]> {
        let mut len: usize = 0;
        let p = rm!(RedisModule_StringDMA(self.raw(), &mut len, raw::REDISMODULE_READ as c_int) else std::ptr::null_mut());
        if p.is_null() {
            return None;
        }
        // SAFETY: Redis returned `len` readable bytes at `p`, valid while the
        // key stays open and unmodified: the borrow of `self` guarantees both.
        Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
    }

    /// Removes any expiry.
    pub fn persist(&mut self) {
        rm!(RedisModule_SetExpire(self.raw(), raw::REDISMODULE_NO_EXPIRE as i64) else 0);
    }

    pub fn delete(&mut self) {
        rm!(RedisModule_DeleteKey(self.raw()) else 0);
    }
}

impl Drop for Key<'_> {
    fn drop(&mut self) {
        rm!(RedisModule_CloseKey(self.raw()) else ());
    }
}

impl<'a> Ctx<'a> {
    /// Opens `name` for read and write. Nothing is signalled or written
    /// until a setter is called (the module sets NO_IMPLICIT_SIGNAL_MODIFIED).
    pub fn open_key(&self, name: Name<'_>) -> Option<Key<'a>> {
        let mode = (raw::REDISMODULE_READ | raw::REDISMODULE_WRITE) as c_int;
        let p = rm!(RedisModule_OpenKey(self.raw, name.ptr, mode) else std::ptr::null_mut());
        NonNull::new(p.cast::<raw::RedisModuleKey>()).map(|ptr| Key {
            ptr,
            _ctx: PhantomData,
        })
    }
}
