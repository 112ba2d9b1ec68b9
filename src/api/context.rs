//! The context of a callback, and what a command does through it: reply,
//! replicate, signal and notify, choose a database; the server's flags.

use std::ffi::{c_char, c_int, c_long, CStr, CString};
use std::marker::PhantomData;
use std::ptr::NonNull;

use redis_module::raw;
use redis_ratelimit_core::error::CmdError;

use super::ffi::{rm, RawCtx, RawString, ERR, OK};
use super::strings::{Name, OwnedString};

/// The context of one callback (a command, a load), valid for `'a`.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub(super) raw: RawCtx,
    _call: PhantomData<&'a ()>,
}

/// What the context says about where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(pub(super) c_int);

impl Flags {
    fn has(self, bit: u32) -> bool {
        self.0 & bit as c_int != 0
    }
    /// Loading an AOF or RDB.
    pub fn loading(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_LOADING)
    }
    /// This server is a replica.
    pub fn replica(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_SLAVE)
    }
    /// The command came over the replication link from a master.
    pub fn replicated(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_REPLICATED)
    }
    /// This server is a master.
    pub fn master(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_MASTER)
    }
    /// Cluster mode.
    pub fn cluster(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_CLUSTER)
    }
    /// Loading in the background (a replica's full sync, Redis 7.0+'s
    /// repl-diskless-load swapdb).
    pub fn async_loading(self) -> bool {
        self.has(raw::REDISMODULE_CTX_FLAGS_ASYNC_LOADING)
    }
    /// May this call make its client wait? Not inside MULTI/EXEC, a script
    /// or function, RM_Call, an AOF load or from a master; only on a master.
    pub fn can_block(self) -> bool {
        let never = raw::REDISMODULE_CTX_FLAGS_DENY_BLOCKING
            | raw::REDISMODULE_CTX_FLAGS_MULTI
            | raw::REDISMODULE_CTX_FLAGS_LUA
            | raw::REDISMODULE_CTX_FLAGS_REPLICATED
            | raw::REDISMODULE_CTX_FLAGS_LOADING;
        !self.has(never) && self.master()
    }
}

impl<'a> Ctx<'a> {
    pub(super) fn new(raw: RawCtx) -> Ctx<'a> {
        Ctx {
            raw,
            _call: PhantomData,
        }
    }

    pub fn flags(&self) -> Flags {
        Flags(rm!(RedisModule_GetContextFlags(self.raw) else 0))
    }

    pub fn log_warning(&self, msg: &str) {
        if let Ok(m) = CString::new(msg) {
            rm!(RedisModule_Log(self.raw, c"warning".as_ptr(), c"%s".as_ptr(), m.as_ptr()) else ());
        }
    }

    pub fn log_notice(&self, msg: &str) {
        if let Ok(m) = CString::new(msg) {
            rm!(RedisModule_Log(self.raw, c"notice".as_ptr(), c"%s".as_ptr(), m.as_ptr()) else ());
        }
    }

    /// An array of integers.
    #[inline]
    pub fn reply_ints(&self, values: &[i64]) {
        rm!(RedisModule_ReplyWithArray(self.raw, values.len() as c_long) else 0);
        // The function pointer read once for all the integers (every
        // decision answers five or more).
        // SAFETY: reading a pointer-sized static set by RedisModule_Init.
        let Some(reply) = (unsafe { raw::RedisModule_ReplyWithLongLong }) else {
            return;
        };
        for &v in values {
            // SAFETY: the context of this callback, as for every reply.
            unsafe { reply(self.raw, v) };
        }
    }

    pub fn reply_int(&self, v: i64) {
        rm!(RedisModule_ReplyWithLongLong(self.raw, v) else 0);
    }

    /// An array header of `n` elements; the elements follow.
    pub fn reply_array(&self, n: usize) {
        rm!(RedisModule_ReplyWithArray(self.raw, c_long::try_from(n).unwrap_or(0)) else 0);
    }

    pub fn reply_bulk(&self, b: &[u8]) {
        rm!(RedisModule_ReplyWithStringBuffer(self.raw, b.as_ptr().cast::<c_char>(), b.len()) else 0);
    }

    pub fn reply_null(&self) {
        rm!(RedisModule_ReplyWithNull(self.raw) else 0);
    }

    pub fn reply_ok(&self) {
        rm!(RedisModule_ReplyWithSimpleString(self.raw, c"OK".as_ptr()) else 0);
    }

    pub fn reply_error(&self, e: &CmdError) {
        match e {
            CmdError::WrongArity => {
                rm!(RedisModule_WrongArity(self.raw) else 0);
            }
            CmdError::Msg(m) => {
                rm!(RedisModule_ReplyWithError(self.raw, m.as_ptr()) else 0);
            }
            CmdError::InternalCommand(_) | CmdError::UnknownPolicy(_) => {
                if let Ok(m) = CString::new(e.text()) {
                    rm!(RedisModule_ReplyWithError(self.raw, m.as_ptr()) else 0);
                }
            }
        }
    }

    /// True when Redis only asks where the keys are (getkeys-api commands).
    pub fn is_keys_position_request(&self) -> bool {
        rm!(RedisModule_IsKeysPositionRequest(self.raw) else 0) != 0
    }

    /// Answers a keys-position request: argument `pos` is a key.
    pub fn key_at(&self, pos: usize) {
        if let Ok(p) = c_int::try_from(pos) {
            rm!(RedisModule_KeyAtPos(self.raw, p) else ());
        }
    }

    pub fn signal_modified(&self, key: Name<'_>) {
        rm!(RedisModule_SignalModifiedKey(self.raw, key.ptr) else 0);
    }

    /// A keyspace notification of class "d" (module) for `event`.
    pub fn notify(&self, event: &CStr, key: Name<'_>) {
        rm!(RedisModule_NotifyKeyspaceEvent(self.raw, raw::REDISMODULE_NOTIFY_MODULE as c_int, event.as_ptr(), key.ptr) else 0);
    }

    /// Propagates `cmd key payload` (an internal command with one binary
    /// argument) to replicas and the AOF.
    pub fn replicate_blob(&self, cmd: &CStr, key: Name<'_>, payload: &[u8]) {
        rm!(RedisModule_Replicate(
            self.raw,
            cmd.as_ptr(),
            c"sb".as_ptr(),
            key.ptr,
            payload.as_ptr().cast::<c_char>(),
            payload.len(),
        ) else 0);
    }

    /// Propagates `cmd` with these arguments (RL.POLICY SET with a
    /// definition's canonical words: never a client's text verbatim).
    pub fn replicate_words(&self, cmd: &CStr, words: &[&[u8]]) {
        let strings: Vec<OwnedString> = words.iter().filter_map(|w| self.string(w)).collect();
        if strings.len() != words.len() {
            return;
        }
        let mut ptrs: Vec<RawString> = strings.iter().map(|s| s.0.as_ptr()).collect();
        rm!(RedisModule_Replicate(
            self.raw,
            cmd.as_ptr(),
            c"v".as_ptr(),
            ptrs.as_mut_ptr(),
            ptrs.len(),
        ) else 0);
    }

    pub fn replicate_del(&self, key: Name<'_>) {
        rm!(RedisModule_Replicate(self.raw, c"DEL".as_ptr(), c"s".as_ptr(), key.ptr) else 0);
    }

    pub fn replicate_verbatim(&self) {
        rm!(RedisModule_ReplicateVerbatim(self.raw) else 0);
    }

    /// The database the context works on.
    pub fn selected_db(&self) -> i32 {
        rm!(RedisModule_GetSelectedDb(self.raw) else 0)
    }

    /// Works on database `db` from now on (timer contexts).
    pub fn select_db(&self, db: i32) -> bool {
        rm!(RedisModule_SelectDb(self.raw, db) else ERR) == OK
    }

    /// Is `key` served by this node? True outside a cluster. In a cluster,
    /// asks Redis as a client would (a key in a slot that moved away, or a
    /// cluster that is down, is not).
    pub fn key_is_local(&self, key: Name<'_>) -> bool {
        if !self.flags().cluster() {
            return true;
        }
        let reply = rm!(RedisModule_Call(self.raw, c"EXISTS".as_ptr(), c"s".as_ptr(), key.ptr) else std::ptr::null_mut());
        if reply.is_null() {
            return false;
        }
        rm!(RedisModule_FreeCallReply(reply) else ());
        true
    }

    /// The hash slot of `key` as the server computes it (Redis 7.4+,
    /// Valkey 8.0+); `None` where the server cannot say.
    pub fn key_slot(&self, key: &[u8]) -> Option<u16> {
        // SAFETY: reading a pointer-sized static set by RedisModule_Init.
        unsafe { raw::RedisModule_ClusterKeySlot }?;
        let s = self.string(key)?;
        let slot = rm!(RedisModule_ClusterKeySlot(s.name().ptr) else u32::MAX);
        u16::try_from(slot).ok().filter(|s| *s < 16384)
    }

    /// A module string holding `bytes`, freed on drop.
    pub fn string(&self, bytes: &[u8]) -> Option<OwnedString> {
        let p = rm!(RedisModule_CreateString(std::ptr::null_mut(), bytes.as_ptr().cast::<c_char>(), bytes.len()) else std::ptr::null_mut());
        NonNull::new(p).map(OwnedString)
    }
}

/// The server's own flags, outside any command (loading, role): what a
/// type callback such as `rdb_load` may ask.
pub fn server_flags() -> Flags {
    Flags(rm!(RedisModule_GetContextFlags(std::ptr::null_mut()) else 0))
}

/// True while clients are paused for a failover or a shutdown: nothing
/// should be written that replicas would then miss.
pub fn avoid_replica_traffic() -> bool {
    rm!(RedisModule_AvoidReplicaTraffic() else 0) != 0
}
