//! Server events the module listens to: database flushes, role changes,
//! on Valkey 9 atomic slot migrations (`CLUSTER MIGRATESLOTS`); and the
//! module's own keys leaving the keyspace (deleted, expired, evicted,
//! renamed away, overwritten).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, ERR, OK};
use super::guard::guard;
use super::strings::key_name;

/// One step of an atomic slot migration, as this node sees it (Valkey 9's
/// `AtomicSlotMigration` subevents). Exports run on the node that gives
/// slots away, imports on the node that takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    ImportStarted,
    ExportStarted,
    ImportAborted,
    ExportAborted,
    /// The slots are this node's now.
    ImportCompleted,
    /// The slots are another node's now, and their keys are already
    /// deleted here (the server trims them before it says so).
    ExportCompleted,
}

/// What the module hears about the server.
pub trait ServerEvents: 'static {
    /// A database was emptied (`None`: all of them).
    fn flushed(ctx: &Ctx<'_>, db: Option<i32>);
    /// This server became a replica.
    fn became_replica(ctx: &Ctx<'_>);
    /// A step of an atomic slot migration of these slot ranges (inclusive).
    fn slot_migration(ctx: &Ctx<'_>, step: Migration, ranges: &[(u16, u16)]);
}

const EVENT_ROLE_CHANGED: raw::RedisModuleEvent = raw::RedisModuleEvent { id: 0, dataver: 1 };
const EVENT_FLUSHDB: raw::RedisModuleEvent = raw::RedisModuleEvent { id: 2, dataver: 1 };
const SUBEVENT_NOW_REPLICA: u64 = 1;
const SUBEVENT_FLUSH_END: u64 = 1;

/// Valkey 9.0+: `ValkeyModuleEvent_AtomicSlotMigration` (valkeymodule.h).
/// The id means something else on Redis: only subscribed where
/// [`atomic_slot_migration`] says the server is Valkey 9.
const EVENT_VALKEY_SLOT_MIGRATION: raw::RedisModuleEvent =
    raw::RedisModuleEvent { id: 19, dataver: 1 };
/// `VALKEYMODULE_OPTIONS_HANDLE_ATOMIC_SLOT_MIGRATION`: without it, Valkey
/// 9 refuses `CLUSTER MIGRATESLOTS` on a node with this module loaded.
const OPTION_VALKEY_SLOT_MIGRATION: c_int = 1 << 5;

/// Valkey's `ValkeyModuleSlotRange`.
#[repr(C)]
struct SlotRange {
    start: c_int,
    end: c_int,
}

/// Valkey's `ValkeyModuleAtomicSlotMigrationInfoV1`.
#[repr(C)]
struct SlotMigrationInfo {
    version: u64,
    job_name: [c_char; 41],
    slot_ranges: *const SlotRange,
    num_slot_ranges: u32,
}

/// The most ranges read from one event: a job names at most 16384 slots.
const MAX_RANGES: usize = 16384;

/// The slot ranges an AtomicSlotMigration event carries, checked.
fn ranges_of(data: *mut c_void) -> Vec<(u16, u16)> {
    // SAFETY: Valkey passes a ValkeyModuleAtomicSlotMigrationInfoV1 with
    // this event, valid for the callback.
    let Some(info) = (unsafe { data.cast::<SlotMigrationInfo>().as_ref() }) else {
        return Vec::new();
    };
    let n = (info.num_slot_ranges as usize).min(MAX_RANGES);
    if info.slot_ranges.is_null() || info.version < 1 {
        return Vec::new();
    }
    // SAFETY: `slot_ranges` holds `num_slot_ranges` ranges (the server
    // allocates exactly that many and frees them after the callback).
    let ranges = unsafe { std::slice::from_raw_parts(info.slot_ranges, n) };
    ranges
        .iter()
        .filter_map(|r| Some((u16::try_from(r.start).ok()?, u16::try_from(r.end).ok()?)))
        .filter(|(a, b)| a <= b && *b < 16384)
        .collect()
}

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
        } else if eid.id == EVENT_VALKEY_SLOT_MIGRATION.id {
            let step = match subevent {
                0 => Migration::ImportStarted,
                1 => Migration::ExportStarted,
                2 => Migration::ImportAborted,
                3 => Migration::ExportAborted,
                4 => Migration::ImportCompleted,
                5 => Migration::ExportCompleted,
                _ => return,
            };
            E::slot_migration(&c, step, &ranges_of(data));
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

/// Does this server migrate slots atomically the Valkey 9 way, with the
/// module option and the server event this module knows? Only a server
/// that says it is Valkey 9 or later and lists the option among those it
/// knows (`GetModuleOptionsAll`): on any other server (Redis, whose event
/// ids and option bits mean other things; Valkey 8) nothing of it is used.
/// (`IsSubEventSupported` is no help: Valkey 9.1.2 answers 0 for every
/// subevent of this event, although it fires them.)
pub fn atomic_slot_migration(ctx: &Ctx<'_>) -> bool {
    let known = rm!(RedisModule_GetModuleOptionsAll() else 0);
    known & OPTION_VALKEY_SLOT_MIGRATION != 0 && valkey_major(ctx) >= Some(9)
}

/// The major version in `INFO server`'s `valkey_version`, if the server
/// has one (Redis does not).
fn valkey_major(ctx: &Ctx<'_>) -> Option<u32> {
    let info =
        rm!(RedisModule_GetServerInfo(ctx.raw, c"server".as_ptr()) else std::ptr::null_mut());
    if info.is_null() {
        return None;
    }
    let field = rm!(RedisModule_ServerInfoGetFieldC(info, c"valkey_version".as_ptr()) else std::ptr::null());
    let major = (!field.is_null())
        .then(|| {
            // SAFETY: a C string owned by `info`, read before it is freed.
            let v = unsafe { CStr::from_ptr(field) }.to_bytes();
            let digits = v.split(|b| *b == b'.').next()?;
            std::str::from_utf8(digits).ok()?.parse().ok()
        })
        .flatten();
    rm!(RedisModule_FreeServerInfo(ctx.raw, info) else ());
    major
}

/// Subscribes to Valkey 9's slot-migration event, then opts in to atomic
/// slot migration on top of `options` (the module's other options: the
/// server keeps one word). Call only where [`atomic_slot_migration`] said
/// yes. False (and no opt-in) if the subscription fails.
pub fn opt_in_atomic_slot_migration<E: ServerEvents>(ctx: &Ctx<'_>, options: u32) -> bool {
    let subscribed = rm!(RedisModule_SubscribeToServerEvent(
        ctx.raw,
        EVENT_VALKEY_SLOT_MIGRATION,
        Some(server_event::<E>)
    ) else ERR)
        == OK;
    if subscribed {
        ctx.set_module_options(options | OPTION_VALKEY_SLOT_MIGRATION as u32);
    }
    subscribed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(ranges: &[SlotRange], version: u64) -> SlotMigrationInfo {
        SlotMigrationInfo {
            version,
            job_name: [0; 41],
            slot_ranges: ranges.as_ptr(),
            num_slot_ranges: ranges.len() as u32,
        }
    }

    #[test]
    fn slot_ranges_are_read_as_valkey_lays_them_out_and_checked() {
        let ranges = [
            SlotRange { start: 0, end: 5 },
            SlotRange {
                start: 16383,
                end: 16383,
            },
            // Never sent by a sane server: dropped, not trusted.
            SlotRange { start: 9, end: 3 },
            SlotRange { start: -1, end: 3 },
            SlotRange {
                start: 100,
                end: 16384,
            },
        ];
        let mut i = info(&ranges, 1);
        let data = (&mut i as *mut SlotMigrationInfo).cast::<c_void>();
        assert_eq!(ranges_of(data), [(0, 5), (16383, 16383)]);
        let mut old = info(&ranges, 0);
        assert!(ranges_of((&mut old as *mut SlotMigrationInfo).cast()).is_empty());
        let mut none = info(&[], 1);
        none.slot_ranges = std::ptr::null();
        none.num_slot_ranges = 3;
        assert!(ranges_of((&mut none as *mut SlotMigrationInfo).cast()).is_empty());
        assert!(ranges_of(std::ptr::null_mut()).is_empty());
    }
}
