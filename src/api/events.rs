//! Server events the module listens to: database flushes, role changes.

use std::ffi::c_void;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, ERR, OK};
use super::guard::guard;

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
