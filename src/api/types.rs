//! Module types: their handles, and every callback Redis makes on their
//! values (RDB load and save, AOF rewrite, memory, digest, free, copy),
//! for values kept in the pointer field itself (inline) or boxed.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawString};
use super::guard::guard;
use super::rdb::{io_error, Aof};
use super::strings::{key_name, Name};

/// A module type's identity (its handle's address in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeId(pub(super) *mut raw::RedisModuleType);

/// A registered module type, set once at load.
pub struct TypeHandle {
    ptr: AtomicPtr<raw::RedisModuleType>,
}

impl TypeHandle {
    pub const fn new() -> TypeHandle {
        TypeHandle {
            ptr: AtomicPtr::new(std::ptr::null_mut()),
        }
    }
    pub(super) fn ptr(&self) -> *mut raw::RedisModuleType {
        self.ptr.load(Ordering::Relaxed)
    }
    pub fn id(&self) -> TypeId {
        TypeId(self.ptr())
    }
    pub(super) fn create(
        &self,
        ctx: &Ctx<'_>,
        name: &CStr,
        encver: i32,
        mut methods: raw::RedisModuleTypeMethods,
    ) -> bool {
        let t = rm!(RedisModule_CreateDataType(ctx.raw, name.as_ptr(), encver, &mut methods) else std::ptr::null_mut());
        self.ptr.store(t, Ordering::Relaxed);
        !t.is_null()
    }
}

impl Default for TypeHandle {
    fn default() -> Self {
        TypeHandle::new()
    }
}

/// A type whose value is one non-zero u64 kept in the value pointer itself:
/// no heap allocation per key.
pub struct InlineType(pub(super) TypeHandle);

impl InlineType {
    pub const fn new() -> InlineType {
        InlineType(TypeHandle::new())
    }
    pub fn id(&self) -> TypeId {
        self.0.id()
    }
}

impl Default for InlineType {
    fn default() -> Self {
        InlineType::new()
    }
}

/// A type whose value is a `Box<T>`.
pub struct BoxedType<T> {
    pub(super) handle: TypeHandle,
    _t: PhantomData<fn() -> T>,
}

impl<T> BoxedType<T> {
    pub const fn new() -> BoxedType<T> {
        BoxedType {
            handle: TypeHandle::new(),
            _t: PhantomData,
        }
    }
    pub fn id(&self) -> TypeId {
        self.handle.id()
    }
}

impl<T> Default for BoxedType<T> {
    fn default() -> Self {
        BoxedType::new()
    }
}

/// What an inline type does in each callback (safe code, in `store`).
pub trait InlineMethods: 'static {
    fn handle() -> &'static InlineType;
    /// A value read from an RDB or DUMP of `encver`; `None` refuses it.
    fn load(encver: i32, v: u64) -> Option<NonZeroU64>;
    /// The commands that recreate the value (AOF rewrite).
    fn rewrite(v: u64, key: Name<'_>, aof: &mut Aof<'_>);
    /// A value was created (loaded, copied) or freed: for key counts.
    fn created();
    fn freed();
}

/// What a boxed type does in each callback (safe code, in `store`).
pub trait BoxedMethods: 'static {
    type Value: Clone + 'static;
    fn handle() -> &'static BoxedType<Self::Value>;
    /// A value read from an RDB or DUMP of `encver`; `None` refuses it.
    fn decode(encver: i32, bytes: &[u8]) -> Option<Self::Value>;
    fn encode(v: &Self::Value, out: &mut Vec<u8>);
    fn rewrite(v: &Self::Value, key: Name<'_>, aof: &mut Aof<'_>);
    fn mem_usage(v: &Self::Value) -> usize;
    fn created();
    fn freed();
}

pub(super) fn empty_methods() -> raw::RedisModuleTypeMethods {
    raw::RedisModuleTypeMethods {
        version: raw::REDISMODULE_TYPE_METHOD_VERSION as u64,
        rdb_load: None,
        rdb_save: None,
        aof_rewrite: None,
        mem_usage: None,
        digest: None,
        free: None,
        aux_load: None,
        aux_save: None,
        aux_save_triggers: 0,
        free_effort: None,
        unlink: None,
        copy: None,
        defrag: None,
        mem_usage2: None,
        free_effort2: None,
        // Every type: the waiting line hears of keys that change under it.
        unlink2: Some(super::events::value_unlinked),
        copy2: None,
        aux_save2: None,
    }
}

/// Registers an inline type. Called once from the module's load.
pub fn register_inline<M: InlineMethods>(ctx: &Ctx<'_>, name: &CStr, encver: i32) -> bool {
    let mut m = empty_methods();
    m.rdb_load = Some(inline_rdb_load::<M>);
    m.rdb_save = Some(inline_rdb_save);
    m.aof_rewrite = Some(inline_aof_rewrite::<M>);
    m.mem_usage = Some(inline_mem_usage);
    m.digest = Some(inline_digest);
    m.free = Some(inline_free::<M>);
    m.copy = Some(inline_copy::<M>);
    M::handle().0.create(ctx, name, encver, m)
}

/// Registers a boxed type. Called once from the module's load.
pub fn register_boxed<M: BoxedMethods>(ctx: &Ctx<'_>, name: &CStr, encver: i32) -> bool {
    let mut m = empty_methods();
    m.rdb_load = Some(boxed_rdb_load::<M>);
    m.rdb_save = Some(boxed_rdb_save::<M>);
    m.aof_rewrite = Some(boxed_aof_rewrite::<M>);
    m.mem_usage = Some(boxed_mem_usage::<M>);
    m.digest = Some(boxed_digest::<M>);
    m.free = Some(boxed_free::<M>);
    m.copy = Some(boxed_copy::<M>);
    M::handle().handle.create(ctx, name, encver, m)
}

extern "C" fn inline_rdb_load<M: InlineMethods>(
    io: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let v = rm!(RedisModule_LoadUnsigned(io) else 0);
        if io_error(io) {
            return std::ptr::null_mut();
        }
        match M::load(encver, v) {
            Some(v) => {
                M::created();
                v.get() as usize as *mut c_void
            }
            None => std::ptr::null_mut(),
        }
    })
}

extern "C" fn inline_rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard((), || {
        rm!(RedisModule_SaveUnsigned(io, value as usize as u64) else ());
    })
}

extern "C" fn inline_aof_rewrite<M: InlineMethods>(
    aof: *mut raw::RedisModuleIO,
    key: RawString,
    value: *mut c_void,
) {
    guard((), || {
        let mut out = Aof {
            io: aof,
            _io: PhantomData,
        };
        M::rewrite(value as usize as u64, key_name(key), &mut out);
    })
}

extern "C" fn inline_mem_usage(_value: *const c_void) -> usize {
    // The state lives in the module value's own pointer field.
    0
}

extern "C" fn inline_digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard((), || {
        let bytes = (value as usize as u64).to_le_bytes();
        rm!(RedisModule_DigestAddStringBuffer(md, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
        rm!(RedisModule_DigestEndSequence(md) else ());
    })
}

extern "C" fn inline_free<M: InlineMethods>(_value: *mut c_void) {
    guard((), M::freed)
}

extern "C" fn inline_copy<M: InlineMethods>(
    _from: RawString,
    _to: RawString,
    value: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        M::created();
        value.cast_mut()
    })
}

/// # Safety
/// `value` must be null or a `Box<T>` pointer of a `BoxedType<T>`.
unsafe fn boxed_ref<'a, T>(value: *const c_void) -> Option<&'a T> {
    // SAFETY: per the contract above.
    unsafe { value.cast::<T>().as_ref() }
}

extern "C" fn boxed_rdb_load<M: BoxedMethods>(
    io: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        let mut len: usize = 0;
        let buf = rm!(RedisModule_LoadStringBuffer(io, &mut len) else std::ptr::null_mut());
        if buf.is_null() {
            return std::ptr::null_mut();
        }
        let decoded = if io_error(io) {
            None
        } else {
            // SAFETY: Redis returned `len` bytes at `buf`, ours until freed below.
            let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
            guard(None, || M::decode(encver, bytes))
        };
        rm!(RedisModule_Free(buf.cast()) else ());
        match decoded {
            Some(v) => {
                M::created();
                Box::into_raw(Box::new(v)).cast()
            }
            None => std::ptr::null_mut(),
        }
    })
}

extern "C" fn boxed_rdb_save<M: BoxedMethods>(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    guard((), || {
        // SAFETY: values of this type are Box<M::Value>.
        if let Some(v) = unsafe { boxed_ref::<M::Value>(value) } {
            let mut bytes = Vec::new();
            M::encode(v, &mut bytes);
            rm!(RedisModule_SaveStringBuffer(io, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
        }
    })
}

extern "C" fn boxed_aof_rewrite<M: BoxedMethods>(
    aof: *mut raw::RedisModuleIO,
    key: RawString,
    value: *mut c_void,
) {
    guard((), || {
        // SAFETY: values of this type are Box<M::Value>.
        if let Some(v) = unsafe { boxed_ref::<M::Value>(value) } {
            let mut out = Aof {
                io: aof,
                _io: PhantomData,
            };
            M::rewrite(v, key_name(key), &mut out);
        }
    })
}

extern "C" fn boxed_mem_usage<M: BoxedMethods>(value: *const c_void) -> usize {
    guard(0, || {
        // SAFETY: values of this type are Box<M::Value>.
        unsafe { boxed_ref::<M::Value>(value) }
            .map_or(0, |v| std::mem::size_of::<M::Value>() + M::mem_usage(v))
    })
}

extern "C" fn boxed_digest<M: BoxedMethods>(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    guard((), || {
        // SAFETY: values of this type are Box<M::Value>.
        if let Some(v) = unsafe { boxed_ref::<M::Value>(value) } {
            let mut bytes = Vec::new();
            M::encode(v, &mut bytes);
            rm!(RedisModule_DigestAddStringBuffer(md, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
            rm!(RedisModule_DigestEndSequence(md) else ());
        }
    })
}

extern "C" fn boxed_free<M: BoxedMethods>(value: *mut c_void) {
    guard((), || {
        if !value.is_null() {
            M::freed();
            // SAFETY: values of this type are Box<M::Value>, freed exactly once here.
            drop(unsafe { Box::from_raw(value.cast::<M::Value>()) });
        }
    })
}

extern "C" fn boxed_copy<M: BoxedMethods>(
    _from: RawString,
    _to: RawString,
    value: *const c_void,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: values of this type are Box<M::Value>.
        match unsafe { boxed_ref::<M::Value>(value) } {
            Some(v) => {
                M::created();
                Box::into_raw(Box::new(v.clone())).cast()
            }
            None => std::ptr::null_mut(),
        }
    })
}
