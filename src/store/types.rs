//! The module types and their callbacks: what RDB, `DUMP`/`RESTORE`, AOF
//! rewrite, `MEMORY USAGE`, `DEBUG DIGEST` and `COPY` do with each value.
//! Decoding validates everything and refuses bad bytes instead of
//! crashing; a client's RESTORE must also hold a state a command here
//! could have written.

use std::num::NonZeroU64;
use std::sync::atomic::Ordering;

use redis_ratelimit_core::algo::lease::Leases;
use redis_ratelimit_core::algo::sliding::Log;
use redis_ratelimit_core::bounds::{MAX_INT, RESTORE_SKEW};
use redis_ratelimit_core::limit::{plausible, Lock, Stored};
use redis_ratelimit_core::time::Nanos;

use crate::api::{
    self, Aof, BoxedMethods, BoxedType, Ctx, InlineMethods, InlineType, Key, Name, Read,
};
use crate::stats::{KEYS_BUCKET, KEYS_FIXED, KEYS_LEASES, KEYS_LOCKOUT, KEYS_WINDOW};
use crate::wire;

pub static BUCKET: InlineType = InlineType::new();
pub static FIXED: InlineType = InlineType::new();
pub static WINDOW: BoxedType<Log> = BoxedType::new();
pub static LEASES: BoxedType<Leases> = BoxedType::new();
pub static LOCKED: BoxedType<Lock> = BoxedType::new();

const ENCODING_VERSION: i32 = 1;
/// rl-leases and rl-locked (which may hold leases): 2 since leases may
/// hold reservations (crate::reserve: the encoding's own version byte says
/// which); version 1, written before, loads the same.
const LEASES_VERSION: i32 = 2;

fn leases_version(encver: i32) -> bool {
    encver == ENCODING_VERSION || encver == LEASES_VERSION
}

/// Creates the module types. Called once at load.
pub fn register_types(ctx: &Ctx<'_>) -> Result<(), &'static str> {
    if !api::register_inline::<BucketType>(ctx, c"rl-bucket", ENCODING_VERSION) {
        return Err("cannot create type rl-bucket");
    }
    if !api::register_inline::<FixedType>(ctx, c"rl-fixwin", ENCODING_VERSION) {
        return Err("cannot create type rl-fixwin");
    }
    if !api::register_boxed::<WindowType>(ctx, c"rl-window", ENCODING_VERSION) {
        return Err("cannot create type rl-window");
    }
    if !api::register_boxed::<LeaseType>(ctx, c"rl-leases", LEASES_VERSION) {
        return Err("cannot create type rl-leases");
    }
    if !api::register_boxed::<LockedType>(ctx, c"rl-locked", LEASES_VERSION) {
        return Err("cannot create type rl-locked");
    }
    Ok(())
}

/// Is a value being decoded for a client's RESTORE on a master (rather
/// than an RDB loaded at start, a full sync, DEBUG RELOAD, or what a
/// master sends)? Such a value must also be one a command on this server
/// could have written ([`plausible`]): a forged payload cannot deny for
/// centuries. What this server or its master saved always loads back.
fn restoring() -> bool {
    let f = api::server_flags();
    f.master() && !f.loading() && !f.async_loading()
}

/// A decoded state, as RESTORE takes it (see [`restoring`]).
fn restorable(stored: Stored<'_>) -> bool {
    !restoring() || plausible(stored, crate::clock::now(), RESTORE_SKEW)
}

struct BucketType;

impl InlineMethods for BucketType {
    fn handle() -> &'static InlineType {
        &BUCKET
    }
    fn load(encver: i32, v: u64) -> Option<NonZeroU64> {
        (encver == ENCODING_VERSION)
            .then_some(NonZeroU64::new(v))
            .flatten()
            .filter(|v| restorable(Stored::Bucket(Nanos::new(v.get()))))
    }
    fn rewrite(v: u64, key: Name<'_>, aof: &mut Aof<'_>) {
        aof.emit(wire::SETSTATE, key, &wire::bucket(v));
    }
    fn created() {
        KEYS_BUCKET.fetch_add(1, Ordering::Relaxed);
    }
    fn freed() {
        KEYS_BUCKET.fetch_sub(1, Ordering::Relaxed);
    }
}

struct FixedType;

impl InlineMethods for FixedType {
    fn handle() -> &'static InlineType {
        &FIXED
    }
    fn load(encver: i32, v: u64) -> Option<NonZeroU64> {
        // A count above i64::MAX is one no limit allows (a reply field).
        (encver == ENCODING_VERSION)
            .then_some(NonZeroU64::new(v))
            .flatten()
            .filter(|v| v.get() <= MAX_INT)
    }
    fn rewrite(v: u64, key: Name<'_>, aof: &mut Aof<'_>) {
        // The window's end is the key's expiry: the PEXPIREAT Redis writes next.
        aof.emit(wire::SETSTATE, key, &wire::fixed(v, 0));
    }
    fn created() {
        KEYS_FIXED.fetch_add(1, Ordering::Relaxed);
    }
    fn freed() {
        KEYS_FIXED.fetch_sub(1, Ordering::Relaxed);
    }
}

struct WindowType;

impl BoxedMethods for WindowType {
    type Value = Log;
    fn handle() -> &'static BoxedType<Log> {
        &WINDOW
    }
    fn decode(encver: i32, bytes: &[u8]) -> Option<Log> {
        if encver != ENCODING_VERSION {
            return None;
        }
        Log::decode(bytes)
            .ok()
            .filter(|log| restorable(Stored::Window(log)))
    }
    fn encode(log: &Log, out: &mut Vec<u8>) {
        out.reserve(log.encoded_len());
        log.encode(out);
    }
    fn rewrite(log: &Log, key: Name<'_>, aof: &mut Aof<'_>) {
        aof.emit(wire::SETSTATE, key, &wire::window(0, log));
    }
    fn mem_usage(log: &Log) -> usize {
        log.heap_size()
    }
    fn created() {
        KEYS_WINDOW.fetch_add(1, Ordering::Relaxed);
    }
    fn freed() {
        KEYS_WINDOW.fetch_sub(1, Ordering::Relaxed);
    }
}

struct LeaseType;

impl BoxedMethods for LeaseType {
    type Value = Leases;
    fn handle() -> &'static BoxedType<Leases> {
        &LEASES
    }
    fn decode(encver: i32, bytes: &[u8]) -> Option<Leases> {
        if !leases_version(encver) {
            return None;
        }
        Leases::decode(bytes).filter(|l| !l.is_empty() && restorable(Stored::Leases(l)))
    }
    fn encode(leases: &Leases, out: &mut Vec<u8>) {
        out.reserve(leases.encoded_len());
        leases.encode(out);
    }
    fn rewrite(leases: &Leases, key: Name<'_>, aof: &mut Aof<'_>) {
        aof.emit(wire::SETSTATE, key, &wire::leases(0, leases));
    }
    fn mem_usage(leases: &Leases) -> usize {
        leases.heap_size()
    }
    fn created() {
        KEYS_LEASES.fetch_add(1, Ordering::Relaxed);
    }
    fn freed() {
        KEYS_LEASES.fetch_sub(1, Ordering::Relaxed);
    }
}

struct LockedType;

impl BoxedMethods for LockedType {
    type Value = Lock;
    fn handle() -> &'static BoxedType<Lock> {
        &LOCKED
    }
    fn decode(encver: i32, bytes: &[u8]) -> Option<Lock> {
        if !leases_version(encver) {
            return None;
        }
        Lock::decode(bytes).filter(|l| restorable(Stored::Locked(l)))
    }
    fn encode(lock: &Lock, out: &mut Vec<u8>) {
        out.reserve(lock.encoded_len());
        lock.encode(out);
    }
    fn rewrite(lock: &Lock, key: Name<'_>, aof: &mut Aof<'_>) {
        aof.emit(wire::SETSTATE, key, &wire::lockout(0, lock));
    }
    fn mem_usage(lock: &Lock) -> usize {
        lock.heap_size()
    }
    fn created() {
        KEYS_LOCKOUT.fetch_add(1, Ordering::Relaxed);
    }
    fn freed() {
        KEYS_LOCKOUT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The lock a key holds, if it is locked out.
pub fn lock_of<'k>(key: &'k Key<'_>) -> Option<&'k Lock> {
    match key.read() {
        Read::Module(held) => held.boxed(&LOCKED),
        _ => None,
    }
}
