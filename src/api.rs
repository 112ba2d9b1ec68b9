//! The unsafe edge, in one file: every call into the Redis module API,
//! behind safe wrappers whose lifetimes say how long Redis keeps what it
//! lends, and every `extern "C"` function Redis calls (module load,
//! commands, type callbacks, INFO, configuration), each under a guard that
//! turns a panic into a harmless answer, because a panic that reached Redis
//! would abort the server for every user.
//!
//! Every API pointer used here is checked at load time ([`check_api`]); a
//! call through a missing pointer answers a harmless default instead of
//! panicking.

use std::ffi::{c_char, c_int, c_long, c_longlong, c_uint, c_void, CStr, CString};
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicPtr, Ordering};

use redis_module::raw;
use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::grammar::Words;

/// Calls a Redis module API function pointer, or yields `$default` if the
/// server lacks it.
macro_rules! rm {
    ($f:ident($($a:expr),* $(,)?) else $d:expr) => {
        // SAFETY: the pointer was filled in by RedisModule_Init and the
        // arguments follow the documented C signature; each wrapper below
        // states why its pointers are valid.
        match unsafe { raw::$f } {
            Some(f) => unsafe { f($($a),*) },
            None => $d,
        }
    };
}

type RawCtx = *mut raw::RedisModuleCtx;
type RawString = *mut raw::RedisModuleString;

const OK: c_int = raw::REDISMODULE_OK as c_int;
const ERR: c_int = raw::REDISMODULE_ERR as c_int;

/// Runs `f`; a panic becomes `default`, and a warning in the server's log
/// (where, and what). Nothing unwinds into Redis.
pub fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    guard_named(|| "a callback".to_string(), default, f)
}

/// [`guard`], naming what ran (a command's name) in the log line.
pub fn guard_named<T>(what: impl FnOnce() -> String, default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let (location, message) = panic_hook::last();
            let what = what();
            log_warning(&format!(
                "ratelimit: a panic in {what} at {location}: {message}; \
                 it was answered with an error and nothing was written. \
                 Please report it (docs/SECURITY.md)."
            ));
            default
        }
    }
}

/// Writes a warning to the server's log, outside any command.
pub fn log_warning(msg: &str) {
    if let Ok(m) = CString::new(msg.replace('\0', " ")) {
        rm!(RedisModule_Log(std::ptr::null_mut(), c"warning".as_ptr(), c"%s".as_ptr(), m.as_ptr()) else ());
    }
}

/// Where the last panic on this thread happened, for the log line the
/// guard writes (a panic hook records it; the payload alone has no place).
mod panic_hook {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static LAST: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    }

    static INSTALL: Once = Once::new();

    /// Installs the hook once per process; whatever hook was there before
    /// (another module's, or Rust's default) still runs after ours.
    pub fn install() {
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let location = info
                    .location()
                    .map_or_else(|| "an unknown place".to_string(), |l| l.to_string());
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_string());
                LAST.with(|l| *l.borrow_mut() = Some((location, message)));
                previous(info);
            }));
        });
    }

    /// The last panic's location and message on this thread.
    pub fn last() -> (String, String) {
        LAST.with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| ("an unknown place".to_string(), "no message".to_string()))
    }
}

// ---------------------------------------------------------------- loading

/// The entry point Redis calls on `loadmodule` / `MODULE LOAD`.
#[no_mangle]
pub extern "C" fn RedisModule_OnLoad(ctx: RawCtx, argv: *mut RawString, argc: c_int) -> c_int {
    guard(ERR, || {
        // SAFETY: the context of this load; the name is a static C string.
        // Init fills in every API pointer before anything here allocates
        // (the global allocator asks Redis once the pointers exist).
        let rc = unsafe {
            raw::Export_RedisModule_Init(
                ctx,
                crate::MODULE_NAME.as_ptr(),
                crate::MODULE_VERSION,
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
        match crate::init(&c, &args) {
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
    );
    Ok(())
}

// ---------------------------------------------------------------- clock

/// The wall clock in nanoseconds since the Unix epoch (`CLOCK_REALTIME`;
/// `RedisModule_Microseconds` is 7.2+). A clock before 1970 reads as 0.
#[inline]
pub fn wall_clock_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

// ---------------------------------------------------------------- strings

/// A module string Redis lends for `'a` (a command argument, a key name
/// in a callback).
#[derive(Clone, Copy)]
pub struct Name<'a> {
    ptr: RawString,
    _lent: PhantomData<&'a ()>,
}

impl<'a> Name<'a> {
    /// The string's bytes, valid as long as Redis lends the string.
    pub fn bytes(&self) -> &'a [u8] {
        let mut len: usize = 0;
        let ptr = rm!(RedisModule_StringPtrLen(self.ptr, &mut len) else std::ptr::null());
        if ptr.is_null() {
            return &[];
        }
        // SAFETY: Redis returns the string's buffer and length; the string
        // lives for 'a (an argument lives until its command returns, a key
        // name until its callback returns) and nothing here modifies it.
        unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
    }
}

/// A command's arguments, lent for the duration of the call.
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    args: &'a [RawString],
}

impl<'a> Argv<'a> {
    /// Argument `i` (0 is the command name).
    pub fn name(&self, i: usize) -> Option<Name<'a>> {
        self.args.get(i).map(|&ptr| Name {
            ptr,
            _lent: PhantomData,
        })
    }
}

impl<'a> Words<'a> for Argv<'a> {
    fn word(&self, i: usize) -> Option<&'a [u8]> {
        self.name(i).map(|n| n.bytes())
    }
    fn count(&self) -> usize {
        self.args.len()
    }
}

// ---------------------------------------------------------------- context

/// The context of one callback (a command, a load), valid for `'a`.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    raw: RawCtx,
    _call: PhantomData<&'a ()>,
}

/// What the context says about where a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flags(c_int);

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
    fn new(raw: RawCtx) -> Ctx<'a> {
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

    /// An array of integers.
    #[inline]
    pub fn reply_ints(&self, values: &[i64]) {
        rm!(RedisModule_ReplyWithArray(self.raw, values.len() as c_long) else 0);
        for &v in values {
            rm!(RedisModule_ReplyWithLongLong(self.raw, v) else 0);
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

    /// A module string holding `bytes`, freed on drop.
    pub fn string(&self, bytes: &[u8]) -> Option<OwnedString> {
        let p = rm!(RedisModule_CreateString(std::ptr::null_mut(), bytes.as_ptr().cast::<c_char>(), bytes.len()) else std::ptr::null_mut());
        NonNull::new(p).map(OwnedString)
    }

    /// Makes this command's client wait until [`unblock`]: no reply now.
    /// `None` where the server refuses (its own reply, if any, was sent).
    pub fn block_client<B: BlockCallbacks>(&self) -> Option<BlockedClient> {
        let bc = rm!(RedisModule_BlockClient(
            self.raw,
            Some(blocked_reply::<B>),
            Some(blocked_timeout::<B>),
            Some(blocked_free::<B>),
            0,
        ) else std::ptr::null_mut());
        let bc = NonNull::new(bc)?;
        rm!(RedisModule_SetDisconnectCallback(bc.as_ptr(), Some(blocked_disconnect::<B>)) else ());
        Some(BlockedClient(bc))
    }

    /// Calls `T::fire(data)` in `ms` milliseconds, from the event loop.
    pub fn create_timer<T: TimerCallback>(&self, ms: u64, data: u64) -> TimerId {
        let period = raw::mstime_t::try_from(ms).unwrap_or(raw::mstime_t::MAX);
        TimerId(
            rm!(RedisModule_CreateTimer(self.raw, period, Some(timer_fire::<T>), data as usize as *mut c_void) else 0),
        )
    }

    /// Stops a timer that has not fired. Never stop one that fired: its id
    /// may belong to a newer timer.
    pub fn stop_timer(&self, id: TimerId) {
        rm!(RedisModule_StopTimer(self.raw, id.0, std::ptr::null_mut()) else ERR);
    }

    /// Sets module-wide options (`REDISMODULE_OPTION_*`).
    pub fn set_module_options(&self, options: u32) {
        rm!(RedisModule_SetModuleOptions(self.raw, options as c_int) else ());
    }

    /// Loads configuration values given at load time (after registering).
    pub fn load_configs(&self) -> bool {
        rm!(RedisModule_LoadConfigs(self.raw) else ERR) == OK
    }
}

// ---------------------------------------------------------------- commands

/// The signature Redis calls a command with.
pub type EntryFn = extern "C" fn(RawCtx, *mut RawString, c_int) -> c_int;

/// Runs a command body for an `extern "C"` entry point: wraps the raw
/// context and arguments, catches any panic, and answers an error result.
/// `on_error` sees every error answered (for counters).
pub fn run_command(
    ctx: RawCtx,
    argv: *mut RawString,
    argc: c_int,
    body: impl FnOnce(&Ctx<'_>, Argv<'_>) -> Result<(), CmdError>,
    on_error: impl FnOnce(),
) -> c_int {
    let c = Ctx::new(ctx);
    let args: &[RawString] = match usize::try_from(argc) {
        // SAFETY: Redis passes `argc` valid argument pointers that live until
        // the command returns; the slice does not escape this call.
        Ok(n) if !argv.is_null() => unsafe { std::slice::from_raw_parts(argv, n) },
        _ => &[],
    };
    let argv = Argv { args };
    let name = || {
        argv.word(0).map_or_else(
            || "a command".to_string(),
            |w| String::from_utf8_lossy(w).into_owned(),
        )
    };
    let result = guard_named(name, Err(redis_ratelimit_core::error::INTERNAL), || {
        body(&c, argv)
    });
    if let Err(e) = result {
        guard((), || {
            c.reply_error(&e);
            on_error();
        });
    }
    OK
}

/// Registers a command with its legacy key positions.
/// A container of subcommands has no entry point.
pub fn create_command(
    ctx: &Ctx<'_>,
    name: &CStr,
    entry: Option<EntryFn>,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    let func: raw::RedisModuleCmdFunc = match entry {
        Some(f) => Some(f),
        None => None,
    };
    rm!(RedisModule_CreateCommand(
        ctx.raw,
        name.as_ptr(),
        func,
        flags.as_ptr(),
        keys.0,
        keys.1,
        keys.2,
    ) else ERR)
        == OK
}

/// Registers subcommand `sub` of the container command `parent`.
pub fn create_subcommand(
    ctx: &Ctx<'_>,
    parent: &[u8],
    sub: &[u8],
    entry: Option<EntryFn>,
    flags: &CStr,
    keys: (c_int, c_int, c_int),
) -> bool {
    let (Ok(parent), Ok(sub)) = (CString::new(parent), CString::new(sub)) else {
        return false;
    };
    let cmd = rm!(RedisModule_GetCommand(ctx.raw, parent.as_ptr()) else std::ptr::null_mut());
    if cmd.is_null() {
        return false;
    }
    let func: raw::RedisModuleCmdFunc = match entry {
        Some(f) => Some(f),
        None => None,
    };
    rm!(RedisModule_CreateSubcommand(
        cmd,
        sub.as_ptr(),
        func,
        flags.as_ptr(),
        keys.0,
        keys.1,
        keys.2,
    ) else ERR)
        == OK
}

/// Adds an ACL category (Redis 7.4+, Valkey 8.0+, and only while loading);
/// false where the server lacks the API or refuses.
pub fn add_acl_category(ctx: &Ctx<'_>, name: &CStr) -> bool {
    rm!(RedisModule_AddACLCategory(ctx.raw, name.as_ptr()) else ERR) == OK
}

/// Whether the server lets modules add ACL categories (Redis 7.4+, Valkey 8.0+).
pub fn has_add_acl_category() -> bool {
    // SAFETY: a copy of a pointer-sized static set by RedisModule_Init.
    let f = unsafe { raw::RedisModule_AddACLCategory };
    f.is_some()
}

/// Whether the server lets modules set command ACL categories (7.2+).
pub fn has_command_acl_categories() -> bool {
    // SAFETY: a copy of a pointer-sized static set by RedisModule_Init.
    let f = unsafe { raw::RedisModule_SetCommandACLCategories };
    f.is_some()
}

/// Puts a command in ACL categories (Redis 7.2+, only while loading);
/// false where the server lacks the API or refuses.
pub fn set_command_acl_categories(ctx: &Ctx<'_>, name: &CStr, categories: &CStr) -> bool {
    let cmd = rm!(RedisModule_GetCommand(ctx.raw, name.as_ptr()) else std::ptr::null_mut());
    if cmd.is_null() {
        return false;
    }
    rm!(RedisModule_SetCommandACLCategories(cmd, categories.as_ptr()) else ERR) == OK
}

/// An argument in `COMMAND DOCS`.
#[derive(Debug, Clone)]
pub struct DocArg {
    pub name: CString,
    pub ty: DocType,
    pub token: Option<CString>,
    pub optional: bool,
    pub multiple: bool,
    pub subargs: Vec<DocArg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType {
    Str,
    Int,
    Double,
    Key,
    Token,
    OneOf,
    Block,
}

/// How a command's keys are found, for its key spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    /// The argument at this index.
    Index(i32),
    /// The argument after each of these keywords (found by the getkeys API
    /// beyond the first).
    AfterKeyword(&'static CStr),
}

/// What `COMMAND INFO` and `COMMAND DOCS` say about a command.
pub struct DocInfo<'d> {
    pub summary: &'d CStr,
    pub complexity: &'d CStr,
    pub since: &'d CStr,
    pub arity: i32,
    /// `REDISMODULE_CMD_KEY_*` flags and where the keys are; `None` for
    /// commands without keys.
    pub keys: Option<(u64, KeySpec)>,
    pub args: &'d [DocArg],
}

fn raw_type(t: DocType) -> raw::RedisModuleCommandArgType {
    match t {
        DocType::Str => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        DocType::Int => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        DocType::Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
        DocType::Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        DocType::Token => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
        DocType::OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
        DocType::Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
    }
}

/// Raw argument arrays, each terminated by a zeroed entry; the nested
/// vectors stay alive in `keep` until SetCommandInfo has copied them.
fn raw_args(
    args: &[DocArg],
    keep: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> *mut raw::RedisModuleCommandArg {
    let mut out: Vec<raw::RedisModuleCommandArg> = Vec::with_capacity(args.len() + 1);
    for a in args {
        let subargs = if a.subargs.is_empty() {
            std::ptr::null_mut()
        } else {
            raw_args(&a.subargs, keep)
        };
        // SAFETY: an all-zero RedisModuleCommandArg is its documented "unset" value.
        let mut r: raw::RedisModuleCommandArg = unsafe { std::mem::zeroed() };
        r.name = a.name.as_ptr();
        r.type_ = raw_type(a.ty);
        r.key_spec_index = if a.ty == DocType::Key { 0 } else { -1 };
        r.token = a.token.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
        let mut flags = 0;
        if a.optional {
            flags |= raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
        }
        if a.multiple {
            flags |= raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
        }
        r.flags = flags;
        r.subargs = subargs;
        out.push(r);
    }
    // SAFETY: the zeroed terminator.
    out.push(unsafe { std::mem::zeroed() });
    let p = out.as_mut_ptr();
    keep.push(out);
    p
}

static INFO_VERSION: raw::RedisModuleCommandInfoVersion = raw::RedisModuleCommandInfoVersion {
    version: 1,
    sizeof_historyentry: std::mem::size_of::<raw::RedisModuleCommandHistoryEntry>(),
    sizeof_keyspec: std::mem::size_of::<raw::RedisModuleCommandKeySpec>(),
    sizeof_arg: std::mem::size_of::<raw::RedisModuleCommandArg>(),
};

/// Whether the server can take command docs (Redis 7.0+).
pub fn has_command_info() -> bool {
    // SAFETY: copies of pointer-sized statics set by RedisModule_Init.
    let (set, get) = unsafe { (raw::RedisModule_SetCommandInfo, raw::RedisModule_GetCommand) };
    set.is_some() && get.is_some()
}

/// Sets a command's documentation; Redis copies everything.
pub fn set_command_info(ctx: &Ctx<'_>, name: &CStr, d: &DocInfo<'_>) -> bool {
    let cmd = rm!(RedisModule_GetCommand(ctx.raw, name.as_ptr()) else std::ptr::null_mut());
    if cmd.is_null() {
        return false;
    }
    // SAFETY: zeroed key specs are the documented terminator/unset value.
    let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
    let mut specs: Vec<raw::RedisModuleCommandKeySpec> = Vec::with_capacity(2);
    if let Some((flags, keys)) = d.keys {
        spec.flags = flags;
        match keys {
            KeySpec::Index(i) => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
                spec.bs.index.pos = i;
            }
            KeySpec::AfterKeyword(word) => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_KEYWORD;
                spec.bs.keyword.keyword = word.as_ptr();
                spec.bs.keyword.startfrom = 1;
            }
        }
        spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
        spec.fk.range.lastkey = 0;
        spec.fk.range.keystep = 1;
        spec.fk.range.limit = 0;
        specs.push(spec);
    }
    // SAFETY: the zeroed terminator.
    specs.push(unsafe { std::mem::zeroed() });
    let mut keep = Vec::new();
    let args = raw_args(d.args, &mut keep);
    // SAFETY: every field of the info is set below or left null.
    let mut info: raw::RedisModuleCommandInfo = unsafe { std::mem::zeroed() };
    info.version = &INFO_VERSION;
    info.summary = d.summary.as_ptr();
    info.complexity = d.complexity.as_ptr();
    info.since = d.since.as_ptr();
    info.arity = d.arity;
    info.key_specs = specs.as_mut_ptr();
    info.args = args;
    rm!(RedisModule_SetCommandInfo(cmd, &info) else ERR) == OK
}

// ---------------------------------------------------------------- keys

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

/// A module type's identity (its handle's address in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeId(*mut raw::RedisModuleType);

impl Key<'_> {
    fn raw(&self) -> *mut raw::RedisModuleKey {
        self.ptr.as_ptr()
    }

    pub fn holds(&self) -> Holds {
        let t = rm!(RedisModule_KeyType(self.raw()) else -1);
        if t == raw::REDISMODULE_KEYTYPE_EMPTY as c_int {
            Holds::Nothing
        } else if t == raw::REDISMODULE_KEYTYPE_MODULE as c_int {
            Holds::Module(TypeId(
                rm!(RedisModule_ModuleTypeGetType(self.raw()) else std::ptr::null_mut()),
            ))
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

// ---------------------------------------------------------------- strings we own

/// A module string created here, freed on drop.
pub struct OwnedString(NonNull<raw::RedisModuleString>);

impl OwnedString {
    pub fn name(&self) -> Name<'_> {
        Name {
            ptr: self.0.as_ptr(),
            _lent: PhantomData,
        }
    }
}

impl Drop for OwnedString {
    fn drop(&mut self) {
        rm!(RedisModule_FreeString(std::ptr::null_mut(), self.0.as_ptr()) else ());
    }
}

// ---------------------------------------------------------------- waiting

/// A client made to wait by [`Ctx::block_client`]: it holds its reply
/// until [`unblock`] is called, exactly once, with this handle.
pub struct BlockedClient(NonNull<raw::RedisModuleBlockedClient>);

/// Which blocked client a callback is about (the handle's address, valid
/// until the client is unblocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockedId(usize);

impl BlockedClient {
    pub fn id(&self) -> BlockedId {
        BlockedId(self.0.as_ptr() as usize)
    }
}

/// What happens to the clients a command made wait.
pub trait BlockCallbacks: 'static {
    /// What [`unblock`] hands over for the reply.
    type Outcome: 'static;
    /// The client was unblocked with `outcome`: reply to it (the context
    /// reaches the client; nothing else may be done here).
    fn reply(ctx: &Ctx<'_>, outcome: &Self::Outcome);
    /// `CLIENT UNBLOCK id [TIMEOUT]`: reply to the client through `ctx`,
    /// and let go of its handle with `unblock(bc, None)`.
    fn unblocked(ctx: &Ctx<'_>, id: BlockedId);
    /// The client is gone (closed, killed, `CLIENT UNBLOCK .. ERROR`, the
    /// server became a replica): forget it and `unblock(bc, None)` unless
    /// that was already done.
    fn disconnected(ctx: &Ctx<'_>, id: BlockedId);
}

/// Releases a waiting client: with an outcome, its reply callback answers
/// from it; without, it gets no reply (it timed out or went away).
pub fn unblock<B: BlockCallbacks>(bc: BlockedClient, outcome: Option<Box<B::Outcome>>) {
    let p = outcome.map_or(std::ptr::null_mut(), |o| Box::into_raw(o).cast::<c_void>());
    if rm!(RedisModule_UnblockClient(bc.0.as_ptr(), p) else ERR) != OK && !p.is_null() {
        // SAFETY: Redis did not take the outcome; it is ours again.
        drop(unsafe { Box::from_raw(p.cast::<B::Outcome>()) });
    }
}

extern "C" fn blocked_reply<B: BlockCallbacks>(
    ctx: RawCtx,
    _argv: *mut RawString,
    _argc: c_int,
) -> c_int {
    guard(OK, || {
        let p = rm!(RedisModule_GetBlockedClientPrivateData(ctx) else std::ptr::null_mut());
        // SAFETY: the only privdata ever handed to UnblockClient is a
        // Box<B::Outcome> (see `unblock`); it is freed by `blocked_free`.
        if let Some(outcome) = unsafe { p.cast::<B::Outcome>().as_ref() } {
            B::reply(&Ctx::new(ctx), outcome);
        }
        OK
    })
}

extern "C" fn blocked_timeout<B: BlockCallbacks>(
    ctx: RawCtx,
    _argv: *mut RawString,
    _argc: c_int,
) -> c_int {
    guard(OK, || {
        let bc = rm!(RedisModule_GetBlockedClientHandle(ctx) else std::ptr::null_mut());
        B::unblocked(&Ctx::new(ctx), BlockedId(bc as usize));
        OK
    })
}

extern "C" fn blocked_disconnect<B: BlockCallbacks>(
    ctx: RawCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    guard((), || {
        B::disconnected(&Ctx::new(ctx), BlockedId(bc as usize))
    });
}

extern "C" fn blocked_free<B: BlockCallbacks>(_ctx: RawCtx, privdata: *mut c_void) {
    guard((), || {
        if !privdata.is_null() {
            // SAFETY: a Box<B::Outcome> from `unblock`, freed once, here.
            drop(unsafe { Box::from_raw(privdata.cast::<B::Outcome>()) });
        }
    });
}

// ---------------------------------------------------------------- timers

/// A module timer (its id is its expiry: reused once it fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(u64);

/// What a timer does when it fires; `data` is what it was created with.
pub trait TimerCallback: 'static {
    fn fire(ctx: &Ctx<'_>, data: u64);
}

extern "C" fn timer_fire<T: TimerCallback>(ctx: RawCtx, data: *mut c_void) {
    guard((), || T::fire(&Ctx::new(ctx), data as usize as u64));
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

// ---------------------------------------------------------------- server events

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

// ---------------------------------------------------------------- module types

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
    fn ptr(&self) -> *mut raw::RedisModuleType {
        self.ptr.load(Ordering::Relaxed)
    }
    pub fn id(&self) -> TypeId {
        TypeId(self.ptr())
    }
    fn create(
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
pub struct InlineType(TypeHandle);

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
    handle: TypeHandle,
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

fn empty_methods() -> raw::RedisModuleTypeMethods {
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

/// Module data saved in the RDB beside the keys (policies), by a type no
/// key ever holds.
pub trait AuxMethods: 'static {
    fn handle() -> &'static TypeHandle;
    fn save(out: &mut RdbOut<'_>);
    /// Reads what `save` wrote; false refuses the RDB.
    fn load(input: &mut RdbIn<'_>, encver: i32) -> bool;
}

/// Writing to an RDB.
pub struct RdbOut<'a> {
    io: *mut raw::RedisModuleIO,
    _io: PhantomData<&'a ()>,
}

impl RdbOut<'_> {
    pub fn unsigned(&mut self, v: u64) {
        rm!(RedisModule_SaveUnsigned(self.io, v) else ());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        rm!(RedisModule_SaveStringBuffer(self.io, b.as_ptr().cast::<c_char>(), b.len()) else ());
    }
}

/// Reading from an RDB; every read checks for an IO error.
pub struct RdbIn<'a> {
    io: *mut raw::RedisModuleIO,
    _io: PhantomData<&'a ()>,
}

impl RdbIn<'_> {
    pub fn unsigned(&mut self) -> Option<u64> {
        let v = rm!(RedisModule_LoadUnsigned(self.io) else 0);
        (!io_error(self.io)).then_some(v)
    }
    pub fn bytes(&mut self) -> Option<Vec<u8>> {
        let mut len: usize = 0;
        let buf = rm!(RedisModule_LoadStringBuffer(self.io, &mut len) else std::ptr::null_mut());
        if buf.is_null() {
            return None;
        }
        let out = (!io_error(self.io)).then(|| {
            // SAFETY: Redis returned `len` bytes at `buf`, ours until freed below.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec()
        });
        rm!(RedisModule_Free(buf.cast()) else ());
        out
    }
}

extern "C" fn aux_save<A: AuxMethods>(io: *mut raw::RedisModuleIO, _when: c_int) {
    guard((), || {
        A::save(&mut RdbOut {
            io,
            _io: PhantomData,
        });
    });
}

extern "C" fn aux_load<A: AuxMethods>(
    io: *mut raw::RedisModuleIO,
    encver: c_int,
    _when: c_int,
) -> c_int {
    guard(ERR, || {
        let ok = A::load(
            &mut RdbIn {
                io,
                _io: PhantomData,
            },
            encver,
        );
        if ok {
            OK
        } else {
            ERR
        }
    })
}

/// Registers a type that only carries module data in the RDB.
pub fn register_aux<A: AuxMethods>(ctx: &Ctx<'_>, name: &CStr, encver: i32) -> bool {
    let mut m = empty_methods();
    m.aux_load = Some(aux_load::<A>);
    m.aux_save = Some(aux_save::<A>);
    m.aux_save_triggers = raw::REDISMODULE_AUX_BEFORE_RDB as c_int;
    A::handle().create(ctx, name, encver, m)
}

/// An AOF rewrite in progress.
pub struct Aof<'a> {
    io: *mut raw::RedisModuleIO,
    _io: PhantomData<&'a ()>,
}

impl Aof<'_> {
    /// Writes `cmd key payload` (one binary argument).
    pub fn emit(&mut self, cmd: &CStr, key: Name<'_>, payload: &[u8]) {
        rm!(RedisModule_EmitAOF(
            self.io,
            cmd.as_ptr(),
            c"sb".as_ptr(),
            key.ptr,
            payload.as_ptr().cast::<c_char>(),
            payload.len(),
        ) else ());
    }
}

fn io_error(io: *mut raw::RedisModuleIO) -> bool {
    rm!(RedisModule_IsIOError(io) else 1) != 0
}

fn key_name<'a>(key: RawString) -> Name<'a> {
    Name {
        ptr: key,
        _lent: PhantomData,
    }
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

// ---------------------------------------------------------------- INFO

/// An INFO section being filled.
pub struct Info<'a> {
    ctx: *mut raw::RedisModuleInfoCtx,
    _call: PhantomData<&'a ()>,
}

impl Info<'_> {
    /// Starts the module's section (named after the module).
    pub fn section(&mut self) {
        rm!(RedisModule_InfoAddSection(self.ctx, c"".as_ptr()) else 0);
    }

    /// A text field (INFO's `key:value` line).
    pub fn text(&mut self, name: &str, value: &str) {
        if let (Ok(n), Ok(v)) = (CString::new(name), CString::new(value)) {
            rm!(RedisModule_InfoAddFieldCString(self.ctx, n.as_ptr(), v.as_ptr()) else 0);
        }
    }

    /// A numeric field; the name is made of ASCII letters, digits and `_`.
    pub fn field(&mut self, name: &str, value: u64) {
        if let Ok(n) = CString::new(name) {
            rm!(RedisModule_InfoAddFieldULongLong(self.ctx, n.as_ptr(), value) else 0);
        }
    }
}

/// What fills the module's INFO section.
pub trait InfoSource: 'static {
    fn fill(info: &mut Info<'_>);
}

extern "C" fn info_entry<S: InfoSource>(
    ctx: *mut raw::RedisModuleInfoCtx,
    _for_crash_report: c_int,
) {
    guard((), || {
        let mut info = Info {
            ctx,
            _call: PhantomData,
        };
        S::fill(&mut info);
    })
}

pub fn register_info<S: InfoSource>(ctx: &Ctx<'_>) -> bool {
    rm!(RedisModule_RegisterInfoFunc(ctx.raw, Some(info_entry::<S>)) else ERR) == OK
}

// ---------------------------------------------------------------- configuration

/// A numeric module configuration (`CONFIG GET/SET ratelimit.<name>`).
pub trait NumericConfig: 'static {
    const NAME: &'static CStr;
    const DEFAULT: i64;
    const MIN: i64;
    const MAX: i64;
    fn get() -> i64;
    /// False refuses the value (Redis has already checked the range).
    fn set(v: i64) -> bool;
}

extern "C" fn config_get<C: NumericConfig>(
    _name: *const c_char,
    _privdata: *mut c_void,
) -> c_longlong {
    guard(C::DEFAULT, C::get)
}

extern "C" fn config_set<C: NumericConfig>(
    _name: *const c_char,
    value: c_longlong,
    _privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    guard(ERR, || if C::set(value) { OK } else { ERR })
}

pub fn register_numeric_config<C: NumericConfig>(ctx: &Ctx<'_>) -> bool {
    rm!(RedisModule_RegisterNumericConfig(
        ctx.raw,
        C::NAME.as_ptr(),
        C::DEFAULT,
        raw::REDISMODULE_CONFIG_DEFAULT as c_uint,
        C::MIN,
        C::MAX,
        Some(config_get::<C>),
        Some(config_set::<C>),
        None,
        std::ptr::null_mut(),
    ) else ERR)
        == OK
}
