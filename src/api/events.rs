//! Server events the module listens to: database flushes, role changes;
//! and the module's own keys leaving the keyspace (deleted, expired,
//! evicted, renamed away, overwritten).

use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, ERR, OK};
use super::guard::guard;
use super::strings::key_name;

/// What the module hears about the server.
pub trait ServerEvents: 'static {
    /// A database was emptied (`None`: all of them).
    fn flushed(ctx: &Ctx<'_>, db: Option<i32>);
    /// This server became a replica.
    fn became_replica(ctx: &Ctx<'_>);
}

const EVENT_ROLE_CHANGED: raw::RedisModuleEvent = raw::RedisModuleEvent { id: 0, dataver: 1 };
const EVENT_FLUSHDB: raw::RedisModuleEvent = raw::RedisModuleEvent { id: 2, dataver: 1 };
const SUBEVENT_NOW_REPLICA: u64 = 1;
const SUBEVENT_FLUSH_END: u64 = 1;

extern "C" fn server_event<E: ServerEvents>(
    ctx: RawCtx,
    eid: raw::RedisModuleEvent,
    subevent: u64,
    data: *mut c_void,
) {
    guard((), || {
        let c = Ctx::new(ctx);
        if eid.id == EVENT_FLUSHDB.id && subevent == SUBEVENT_FLUSH_END {
            // SAFETY: FlushDB events carry a RedisModuleFlushInfo.
            let info = unsafe { data.cast::<raw::RedisModuleFlushInfo>().as_ref() };
            let db = info.map_or(-1, |i| i.dbnum);
            E::flushed(&c, (db >= 0).then_some(db));
        } else if eid.id == EVENT_ROLE_CHANGED.id && subevent == SUBEVENT_NOW_REPLICA {
            E::became_replica(&c);
        }
    });
}

/// Subscribes to database flushes and role changes.
pub fn subscribe_server_events<E: ServerEvents>(ctx: &Ctx<'_>) -> bool {
    [EVENT_FLUSHDB, EVENT_ROLE_CHANGED].into_iter().all(|event| {
        rm!(RedisModule_SubscribeToServerEvent(ctx.raw, event, Some(server_event::<E>)) else ERR) == OK
    })
}

/// What the module hears of its own keys leaving the keyspace.
pub trait KeyEvents: 'static {
    /// The value of `key` in database `db` (one of this module's types)
    /// is gone: deleted, unlinked, expired, evicted, renamed or moved
    /// away, or overwritten (SET, RESTORE .. REPLACE, a *STORE command,
    /// RENAME or COPY onto it). Called in the middle of the command that
    /// did it, with a context of the module's own: nothing may be written
    /// or answered here.
    fn removed(ctx: &Ctx<'_>, db: i32, key: &[u8]);
    /// Does anything listen now? Asked first, before the key's name is
    /// looked up: false makes a removal cost nothing more.
    fn listening() -> bool;
}

struct Hooks {
    listening: fn() -> bool,
    removed: fn(&Ctx<'_>, i32, &[u8]),
}

static HOOKS: OnceLock<Hooks> = OnceLock::new();
/// A context of the module's own (detached, on the main thread only): an
/// unlink callback has none, and timers need one.
static MODULE_CTX: AtomicPtr<raw::RedisModuleCtx> = AtomicPtr::new(std::ptr::null_mut());

/// The `unlink2` callback of every type of this module (`types.rs`): Redis
/// calls it, from 7.0 on, whenever a value leaves its key, and for an
/// overwrite too. Unlike keyspace events, nothing else in the server pays
/// for it (a subscription to the generic class also makes Valkey 8.1 leave
/// a MOVE's client on the destination database).
pub(super) extern "C" fn value_unlinked(
    kctx: *mut raw::RedisModuleKeyOptCtx,
    _value: *const c_void,
) {
    guard((), || {
        let Some(hooks) = HOOKS.get() else {
            return;
        };
        let ctx = MODULE_CTX.load(Ordering::Relaxed);
        if !(hooks.listening)() || ctx.is_null() || kctx.is_null() {
            return;
        }
        let key = rm!(RedisModule_GetKeyNameFromOptCtx(kctx) else std::ptr::null());
        let db = rm!(RedisModule_GetDbIdFromOptCtx(kctx) else -1);
        if key.is_null() || db < 0 {
            return;
        }
        (hooks.removed)(&Ctx::new(ctx), db, key_name(key.cast_mut()).bytes());
    });
}

/// Calls `K::removed` whenever a value of this module's types leaves its
/// key. False if the server cannot (no detached context).
pub fn hear_removed_keys<K: KeyEvents>(ctx: &Ctx<'_>) -> bool {
    let detached = rm!(RedisModule_GetDetachedThreadSafeContext(ctx.raw) else std::ptr::null_mut());
    if detached.is_null() {
        return false;
    }
    MODULE_CTX.store(detached, Ordering::Relaxed);
    let hooks = Hooks {
        listening: K::listening,
        removed: K::removed,
    };
    HOOKS.set(hooks).is_ok()
}
