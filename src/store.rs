//! How limiter state lives in a key: three module types, their persistence
//! callbacks, and the encodings every path shares.
//!
//! - `rl-bucket` (token bucket, GCRA): the state is one absolute time in
//!   nanoseconds, kept in the module value's pointer field itself. No heap
//!   allocation: a key costs what any module-typed key costs, and a user's
//!   own string or counter key is never mistaken for state (WRONGTYPE).
//! - `rl-fixwin` (fixed window): the count, kept the same way; the window's
//!   end is the key's expiry, written in the same step.
//! - `rl-window` (exact sliding window): a boxed [`Log`].
//!
//! RDB and `DUMP` carry the value (the u64, or the encoded log); AOF
//! rewrite and replication carry it inside `RL.SETSTATE key <state>` (see
//! `wire`), so a replica, a reloaded server and an AOF replay hold
//! byte-identical state. `rdb_load` validates everything and refuses bad
//! bytes instead of crashing.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::panic::catch_unwind;
use std::sync::atomic::{AtomicI64, AtomicPtr, Ordering};

use redis_module::raw;

use crate::algo::fixed::Counter;
use crate::algo::sliding::Log;
use crate::api::{rm, Holds, Key, RawString};
use crate::error::{CmdError, INTERNAL, WRONGTYPE};
use crate::stats::{KEYS_BUCKET, KEYS_FIXED, KEYS_WINDOW};
use crate::time::Nanos;
use crate::wire;

static BUCKET: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(std::ptr::null_mut());
static WINDOW: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(std::ptr::null_mut());
static FIXED: AtomicPtr<raw::RedisModuleType> = AtomicPtr::new(std::ptr::null_mut());

const ENCODING_VERSION: c_int = 1;

/// The internal commands effects travel as (see `wire`).
pub const SETSTATE: &CStr = c"RL.SETSTATE";
pub const WINDOWADD: &CStr = c"RL.WINDOWADD";
pub const WINDOWREFUND: &CStr = c"RL.WINDOWREFUND";

fn bucket_type() -> *mut raw::RedisModuleType {
    BUCKET.load(Ordering::Relaxed)
}

fn window_type() -> *mut raw::RedisModuleType {
    WINDOW.load(Ordering::Relaxed)
}

fn fixed_type() -> *mut raw::RedisModuleType {
    FIXED.load(Ordering::Relaxed)
}

/// Creates both module types. Called once from `RedisModule_OnLoad`.
pub fn register_types(ctx: *mut raw::RedisModuleCtx) -> Result<(), &'static str> {
    let mut bucket = inline_methods::<INLINE_BUCKET>();
    let t = rm!(RedisModule_CreateDataType(ctx, c"rl-bucket".as_ptr(), ENCODING_VERSION, &mut bucket) else std::ptr::null_mut());
    if t.is_null() {
        return Err("cannot create type rl-bucket");
    }
    BUCKET.store(t, Ordering::Relaxed);

    let mut fixed = inline_methods::<INLINE_FIXED>();
    let t = rm!(RedisModule_CreateDataType(ctx, c"rl-fixwin".as_ptr(), ENCODING_VERSION, &mut fixed) else std::ptr::null_mut());
    if t.is_null() {
        return Err("cannot create type rl-fixwin");
    }
    FIXED.store(t, Ordering::Relaxed);

    let mut window = methods();
    window.rdb_load = Some(window_rdb_load);
    window.rdb_save = Some(window_rdb_save);
    window.aof_rewrite = Some(window_aof_rewrite);
    window.mem_usage = Some(window_mem_usage);
    window.digest = Some(window_digest);
    window.free = Some(window_free);
    window.copy = Some(window_copy);
    let t = rm!(RedisModule_CreateDataType(ctx, c"rl-window".as_ptr(), ENCODING_VERSION, &mut window) else std::ptr::null_mut());
    if t.is_null() {
        return Err("cannot create type rl-window");
    }
    WINDOW.store(t, Ordering::Relaxed);
    Ok(())
}

/// The two types whose state is one non-zero u64 kept in the value pointer
/// itself: their callbacks are the same code, told apart by this constant.
const INLINE_BUCKET: u8 = 0;
const INLINE_FIXED: u8 = 1;

fn inline_count(k: u8) -> &'static AtomicI64 {
    if k == INLINE_BUCKET {
        &KEYS_BUCKET
    } else {
        &KEYS_FIXED
    }
}

fn inline_methods<const K: u8>() -> raw::RedisModuleTypeMethods {
    let mut m = methods();
    m.rdb_load = Some(inline_rdb_load::<K>);
    m.rdb_save = Some(inline_rdb_save);
    m.aof_rewrite = Some(inline_aof_rewrite::<K>);
    m.mem_usage = Some(inline_mem_usage);
    m.digest = Some(inline_digest);
    m.free = Some(inline_free::<K>);
    m.copy = Some(inline_copy::<K>);
    m
}

fn methods() -> raw::RedisModuleTypeMethods {
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
        unlink2: None,
        copy2: None,
        aux_save2: None,
    }
}

// ---------------------------------------------------------------- key access

/// The stored bucket time: `None` for an empty key, WRONGTYPE for a key of
/// any other type (including a sliding window).
pub fn bucket_state(key: &Key) -> Result<Option<Nanos>, CmdError> {
    match key.holds() {
        Holds::Nothing => Ok(None),
        Holds::Module(t) if t == bucket_type() => Ok(Some(Nanos::new(key.value() as usize as u64))),
        _ => Err(WRONGTYPE),
    }
}

/// Stores a bucket time (never zero: a bucket that was just used is full
/// strictly after the epoch).
pub fn set_bucket(key: &mut Key, tat: Nanos) -> Result<(), CmdError> {
    let v = tat.as_u64().max(1) as usize as *mut c_void;
    set_inline(key, bucket_type(), v, &KEYS_BUCKET)
}

/// Stores an inline value; a newly created one is counted.
fn set_inline(
    key: &mut Key,
    t: *mut raw::RedisModuleType,
    v: *mut c_void,
    count: &AtomicI64,
) -> Result<(), CmdError> {
    match key.set_value(t, v) {
        Ok(None) => {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Ok(Some(_)) => Ok(()),
        Err(()) => Err(INTERNAL),
    }
}

/// The stored fixed-window counter: its count, and its window's end (the
/// key's expiry). A counter without an expiry (someone ran PERSIST) is
/// treated as fresh and overwritten on the next write.
pub fn fixed_state(key: &Key) -> Result<Option<Counter>, CmdError> {
    match key.holds() {
        Holds::Nothing => Ok(None),
        Holds::Module(t) if t == fixed_type() => {
            let count = key.value() as usize as u64;
            Ok(key.expire_at_ms().map(|end_ms| Counter { count, end_ms }))
        }
        _ => Err(WRONGTYPE),
    }
}

/// Stores a fixed-window count (never zero: a zero count is a deleted key).
pub fn set_fixed(key: &mut Key, count: u64) -> Result<(), CmdError> {
    let v = count.max(1) as usize as *mut c_void;
    set_inline(key, fixed_type(), v, &KEYS_FIXED)
}

/// The stored log, borrowed from the key's value, or `None` for an empty key.
pub fn window_state(key: &mut Key) -> Result<Option<&mut Log>, CmdError> {
    match key.holds() {
        Holds::Nothing => Ok(None),
        Holds::Module(t) if t == window_type() => {
            let p = key.value().cast::<Log>();
            // SAFETY: values of the rl-window type are always a Box<Log>
            // created by this module; the key is open and the command runs
            // alone on the main thread.
            Ok(unsafe { p.as_mut() })
        }
        _ => Err(WRONGTYPE),
    }
}

/// Stores a new log in an empty key (or one of our other type).
pub fn set_window(key: &mut Key, log: Log) -> Result<(), CmdError> {
    let p = Box::into_raw(Box::new(log));
    match key.set_value(window_type(), p.cast()) {
        Ok(Some(old)) => {
            // Replaced in place: free the previous log.
            // SAFETY: the old value was a Box<Log> of this type.
            drop(unsafe { Box::from_raw(old.cast::<Log>()) });
            Ok(())
        }
        Ok(None) => {
            KEYS_WINDOW.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(()) => {
            // SAFETY: Redis did not take the pointer.
            drop(unsafe { Box::from_raw(p) });
            Err(INTERNAL)
        }
    }
}

/// What `RL.SETSTATE` may replace: empty keys and this module's own types.
pub fn holds_ours_or_nothing(key: &Key) -> bool {
    match key.holds() {
        Holds::Nothing => true,
        Holds::Module(t) => t == bucket_type() || t == window_type() || t == fixed_type(),
        Holds::Other => false,
    }
}

/// Unix milliseconds at which a state whose fresh-again instant is `at`
/// expires: rounded up, so the key never vanishes while state is not fresh.
pub fn expiry_ms(at: Nanos) -> u64 {
    at.ceil_millis()
}

// ---------------------------------------------------------------- callbacks

fn io_error(io: *mut raw::RedisModuleIO) -> bool {
    rm!(RedisModule_IsIOError(io) else 1) != 0
}

extern "C" fn inline_rdb_load<const K: u8>(
    io: *mut raw::RedisModuleIO,
    encver: c_int,
) -> *mut c_void {
    if encver != ENCODING_VERSION {
        return std::ptr::null_mut();
    }
    let v = rm!(RedisModule_LoadUnsigned(io) else 0);
    if io_error(io) || v == 0 {
        return std::ptr::null_mut();
    }
    inline_count(K).fetch_add(1, Ordering::Relaxed);
    v as usize as *mut c_void
}

extern "C" fn inline_rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    rm!(RedisModule_SaveUnsigned(io, value as usize as u64) else ());
}

extern "C" fn inline_aof_rewrite<const K: u8>(
    aof: *mut raw::RedisModuleIO,
    key: RawString,
    value: *mut c_void,
) {
    let v = value as usize as u64;
    if K == INLINE_BUCKET {
        emit_setstate(aof, key, &wire::bucket(v));
    } else {
        // The window's end is the key's expiry: the PEXPIREAT Redis writes next.
        emit_setstate(aof, key, &wire::fixed(v, 0));
    }
}

extern "C" fn inline_mem_usage(_value: *const c_void) -> usize {
    // The state lives in the module value's own pointer field.
    0
}

extern "C" fn inline_digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    let bytes = (value as usize as u64).to_le_bytes();
    rm!(RedisModule_DigestAddStringBuffer(md, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
    rm!(RedisModule_DigestEndSequence(md) else ());
}

extern "C" fn inline_free<const K: u8>(_value: *mut c_void) {
    inline_count(K).fetch_sub(1, Ordering::Relaxed);
}

extern "C" fn inline_copy<const K: u8>(
    _from: RawString,
    _to: RawString,
    value: *const c_void,
) -> *mut c_void {
    inline_count(K).fetch_add(1, Ordering::Relaxed);
    value.cast_mut()
}

fn emit_setstate(aof: *mut raw::RedisModuleIO, key: RawString, payload: &[u8]) {
    rm!(RedisModule_EmitAOF(
        aof,
        SETSTATE.as_ptr(),
        c"sb".as_ptr(),
        key,
        payload.as_ptr().cast::<c_char>(),
        payload.len(),
    ) else ());
}

/// # Safety
/// `value` must be a `Box<Log>` pointer of the rl-window type.
unsafe fn log_ref<'a>(value: *const c_void) -> Option<&'a Log> {
    // SAFETY: per the contract above.
    unsafe { value.cast::<Log>().as_ref() }
}

fn encode_log(log: &Log) -> Vec<u8> {
    let mut out = Vec::with_capacity(log.encoded_len());
    log.encode(&mut out);
    out
}

extern "C" fn window_rdb_load(io: *mut raw::RedisModuleIO, encver: c_int) -> *mut c_void {
    if encver != ENCODING_VERSION {
        return std::ptr::null_mut();
    }
    let mut len: usize = 0;
    let buf = rm!(RedisModule_LoadStringBuffer(io, &mut len) else std::ptr::null_mut());
    if buf.is_null() {
        return std::ptr::null_mut();
    }
    let decoded = if io_error(io) {
        None
    } else {
        // SAFETY: Redis returned `len` bytes at `buf`.
        let bytes = unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) };
        catch_unwind(|| Log::decode(bytes).ok()).ok().flatten()
    };
    rm!(RedisModule_Free(buf.cast()) else ());
    match decoded {
        Some(log) => {
            KEYS_WINDOW.fetch_add(1, Ordering::Relaxed);
            Box::into_raw(Box::new(log)).cast()
        }
        None => std::ptr::null_mut(),
    }
}

extern "C" fn window_rdb_save(io: *mut raw::RedisModuleIO, value: *mut c_void) {
    // SAFETY: rl-window values are Box<Log>.
    if let Some(log) = unsafe { log_ref(value) } {
        let bytes = encode_log(log);
        rm!(RedisModule_SaveStringBuffer(io, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
    }
}

extern "C" fn window_aof_rewrite(aof: *mut raw::RedisModuleIO, key: RawString, value: *mut c_void) {
    // SAFETY: rl-window values are Box<Log>.
    if let Some(log) = unsafe { log_ref(value) } {
        emit_setstate(aof, key, &wire::window(0, log));
    }
}

extern "C" fn window_mem_usage(value: *const c_void) -> usize {
    // SAFETY: rl-window values are Box<Log>.
    match unsafe { log_ref(value) } {
        Some(log) => std::mem::size_of::<Log>() + log.heap_size(),
        None => 0,
    }
}

extern "C" fn window_digest(md: *mut raw::RedisModuleDigest, value: *mut c_void) {
    // SAFETY: rl-window values are Box<Log>.
    if let Some(log) = unsafe { log_ref(value) } {
        let bytes = encode_log(log);
        rm!(RedisModule_DigestAddStringBuffer(md, bytes.as_ptr().cast::<c_char>(), bytes.len()) else ());
        rm!(RedisModule_DigestEndSequence(md) else ());
    }
}

extern "C" fn window_free(value: *mut c_void) {
    if !value.is_null() {
        KEYS_WINDOW.fetch_sub(1, Ordering::Relaxed);
        // SAFETY: rl-window values are Box<Log>, freed exactly once here.
        drop(unsafe { Box::from_raw(value.cast::<Log>()) });
    }
}

extern "C" fn window_copy(_from: RawString, _to: RawString, value: *const c_void) -> *mut c_void {
    // SAFETY: rl-window values are Box<Log>.
    match unsafe { log_ref(value) } {
        Some(log) => {
            KEYS_WINDOW.fetch_add(1, Ordering::Relaxed);
            Box::into_raw(Box::new(log.clone())).cast()
        }
        None => std::ptr::null_mut(),
    }
}
