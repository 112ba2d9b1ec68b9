//! The command table: one row per command, and everything derived from it
//! (registration, arity, key positions, `COMMAND DOCS`, INFO counters,
//! keyspace events, the internal-command check).
//!
//! Adding a command is one row here and its handler; a new limiter
//! algorithm is a row whose body is its [`Syntax`](redis_ratelimit_core::grammar::Syntax).
//!
//! Every handler runs inside [`api::run_command`], which catches panics
//! and answers the error a handler returns, and is given its row: its
//! counters and keyspace event go with it to the engine. The entry point
//! checks the row's arity before any handler runs (Redis checks it too for
//! clients, but not for an AOF being loaded). Handlers do everything
//! fallible before their first write, so an error never leaves half a
//! change behind.

mod all;
mod docs;
mod lease;
mod limiter;
mod policy;
mod row;
mod settle;
mod state;
#[cfg(feature = "test-hooks")]
mod testing;
mod throttle;

use std::ffi::{c_int, CString};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::grammar::{self, Words};
use redis_ratelimit_core::names;

use crate::api::{self, Ctx, EntryFn};
use crate::stats::Report;
use crate::wire;

pub use row::Command;
use row::{reports, Args, Body, Cmd, Keys, Role, ACCESS, CATEGORIES, INCOMPLETE, OW, RW, UPDATE};

use api::DocType::{Double, Int, Key as KeyArg, Str};

/// Every command this module adds.
#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    Command {
        name: names::TOKENBUCKET.as_cstr(), body: Body::Limiter(&grammar::TOKENBUCKET),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: None,
        summary: c"Takes cost tokens from a token bucket of capacity tokens refilled at rate per PERIOD seconds, if it holds them.",
        complexity: c"O(1)", args: Args::Syntax,
        counted: Some("tokenbucket"), event: c"rl.tokenbucket", role: Role::Inline, yields: false,
    },
    Command {
        name: names::SLIDING.as_cstr(), body: Body::Limiter(&grammar::SLIDING),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: None,
        summary: c"Admits COST units if the units admitted in the last window seconds stay within limit (an exact sliding window).",
        complexity: c"O(1) amortized when allowed; O(k) when denied, k the log entries scanned", args: Args::Syntax,
        counted: Some("sliding"), event: c"rl.sliding", role: Role::Inline, yields: false,
    },
    Command {
        name: names::GCRA.as_cstr(), body: Body::Limiter(&grammar::GCRA),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: None,
        summary: c"Generic cell rate algorithm: rate units per period seconds with bursts of up to burst.",
        complexity: c"O(1)", args: Args::Syntax,
        counted: Some("gcra"), event: c"rl.gcra", role: Role::Inline, yields: false,
    },
    Command {
        name: names::FIXED.as_cstr(), body: Body::Limiter(&grammar::FIXED),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: None,
        summary: c"Counts COST units in the current fixed window (seconds, or MINUTE/HOUR/DAY/WEEK/MONTH, optionally in a TZ) up to limit.",
        complexity: c"O(1)", args: Args::Syntax,
        counted: Some("fixed"), event: c"rl.fixed", role: Role::Inline, yields: false,
    },
    Command {
        name: names::ACQUIRE.as_cstr(), body: Body::Limiter(&grammar::CONCURRENCY),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: None,
        summary: c"Takes one of limit slots for lease_seconds (a concurrency lease) if one is free; replies with its lease id.",
        complexity: c"O(n) in the key's leases", args: Args::Syntax,
        counted: Some("acquire"), event: c"rl.acquire", role: Role::Inline, yields: false,
    },
    Command {
        name: names::RELEASE.as_cstr(), body: Body::Handler(lease::release),
        flags: c"write fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: Some(3),
        summary: c"Frees a concurrency lease: 1 if it was live, 0 if unknown or already expired.",
        complexity: c"O(n) in the key's leases",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"lease_id", Int, false)]),
        counted: Some("release"), event: c"rl.release", role: Role::App, yields: false,
    },
    Command {
        name: names::RENEW.as_cstr(), body: Body::Handler(lease::renew),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: Some(4),
        summary: c"Extends a live concurrency lease to lease_seconds from now: 1 if it was live, 0 if not.",
        complexity: c"O(n) in the key's leases",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"lease_id", Int, false), (c"lease_seconds", Double, false)]),
        counted: Some("renew"), event: c"rl.renew", role: Role::App, yields: false,
    },
    Command {
        name: names::SETTLE.as_cstr(), body: Body::Handler(settle::settle),
        flags: c"write fast", keys: Keys::Range { last: -5 }, key_flags: RW | ACCESS | UPDATE, arity: Some(grammar::SETTLE_ARITY),
        summary: c"Settles a reservation (RL.ALL or RL.TAKEALL with ESTIMATE) at its actual cost on every key it reserved on, and frees its lease: 1 if it was live, 0 if unknown, settled or expired.",
        complexity: c"O(k + n) for k limits reserved on and n leases of the anchor",
        args: Args::Listed(&[(c"anchor", KeyArg, false), (c"key", KeyArg, false), (c"LEASE", Str, false), (c"lease_id", Int, false), (c"ACTUAL", Str, false), (c"actual", Int, false)]),
        counted: Some("settle"), event: c"rl.settle", role: Role::App, yields: false,
    },
    Command {
        name: names::ALL.as_cstr(), body: Body::Handler(all::all),
        flags: c"write deny-oom getkeys-api", keys: Keys::AfterEachLimit, key_flags: RW | ACCESS | UPDATE | INCOMPLETE, arity: Some(grammar::ALL_ARITY),
        summary: c"Checks several limits on several keys and consumes from all of them only if every one allows.",
        complexity: c"O(k) for k limits (at most ratelimit.max-limits), each as its algorithm's own command", args: Args::All,
        counted: Some("all"), event: c"rl.all", role: Role::Inline, yields: false,
    },
    Command {
        name: names::THROTTLE.as_cstr(), body: Body::Handler(throttle::throttle),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: Some(grammar::THROTTLE_ARITY),
        summary: c"redis-cell compatible GCRA: count_per_period per period seconds with bursts of max_burst + 1.",
        complexity: c"O(1)",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"max_burst", Int, false), (c"count_per_period", Int, false), (c"period", Int, false), (c"quantity", Int, true)]),
        counted: Some("throttle"), event: c"cl.throttle", role: Role::Inline, yields: false,
    },
    // Registered where the server has no GCRA of its own (`yields`).
    Command {
        name: names::GCRA_CMD.as_cstr(), body: Body::Handler(throttle::gcra),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: Some(grammar::THROTTLE_ARITY),
        summary: c"The GCRA command announced for Redis 8.8: CL.THROTTLE's bucket and reply, the period in seconds with decimals, the cost as TOKENS.",
        complexity: c"O(1)", args: Args::Gcra,
        counted: Some("gcra_cmd"), event: c"gcra", role: Role::Inline, yields: true,
    },
    Command {
        name: names::TAKE.as_cstr(), body: Body::Handler(limiter::take),
        flags: c"write deny-oom fast", keys: Keys::First, key_flags: RW | ACCESS | UPDATE, arity: Some(grammar::TAKE_ARITY),
        summary: c"Applies a named policy (RL.POLICY SET) to a key: its algorithm, its reply, its SHADOW and LOCKOUT rules.",
        complexity: c"O(1) for bucket, GCRA and fixed policies; as the algorithm's own command otherwise", args: Args::Take,
        counted: Some("take"), event: c"rl.take", role: Role::App, yields: false,
    },
    Command {
        name: names::TAKEALL.as_cstr(), body: Body::Handler(all::take_all),
        flags: c"write deny-oom getkeys-api", keys: Keys::AfterEachLimit, key_flags: RW | ACCESS | UPDATE | INCOMPLETE, arity: Some(grammar::ALL_ARITY),
        summary: c"Applies several named policies to several keys at once, all or nothing: RL.ALL with POLICY clauses only, for accounts that may not choose their own limits.",
        complexity: c"O(k) for k limits (at most ratelimit.max-limits), each as its policy's own command", args: Args::TakeAll,
        counted: Some("takeall"), event: c"rl.takeall", role: Role::App, yields: false,
    },
    Command {
        name: names::POLICY.as_cstr(), body: Body::Container,
        flags: c"", keys: Keys::None, key_flags: 0, arity: Some(-2),
        summary: c"Named policies kept in the server: SET, GET, DEL, LIST.",
        complexity: c"Depends on the subcommand", args: Args::Listed(&[]),
        counted: None, event: c"", role: Role::Admin, yields: false,
    },
    Command {
        name: names::POLICY_SET.as_cstr(), body: Body::Handler(policy::set),
        flags: c"write deny-oom", keys: Keys::None, key_flags: 0, arity: Some(-5),
        summary: c"Defines or redefines a named policy: an algorithm and its arguments as its own command takes them after the key, then [SHADOW] [LOCKOUT seconds].",
        complexity: c"O(1)", args: Args::PolicySet,
        counted: None, event: c"", role: Role::Admin, yields: false,
    },
    Command {
        name: names::POLICY_GET.as_cstr(), body: Body::Handler(policy::get),
        flags: c"readonly fast", keys: Keys::None, key_flags: 0, arity: Some(3),
        summary: c"A named policy's definition, or nil.",
        complexity: c"O(1)", args: Args::Listed(&[(c"name", Str, false)]),
        counted: None, event: c"", role: Role::Admin, yields: false,
    },
    Command {
        name: names::POLICY_DEL.as_cstr(), body: Body::Handler(policy::del),
        flags: c"write", keys: Keys::None, key_flags: 0, arity: Some(3),
        summary: c"Removes a named policy: 1 if it was defined, else 0. The keys it limited keep their state until they expire.",
        complexity: c"O(1)", args: Args::Listed(&[(c"name", Str, false)]),
        counted: None, event: c"", role: Role::Admin, yields: false,
    },
    Command {
        name: names::POLICY_LIST.as_cstr(), body: Body::Handler(policy::list),
        flags: c"readonly", keys: Keys::None, key_flags: 0, arity: Some(2),
        summary: c"Every named policy as [name, definition] pairs, by name.",
        complexity: c"O(n) for n policies", args: Args::Listed(&[]),
        counted: None, event: c"", role: Role::Admin, yields: false,
    },
    // Internal: how replicas and the AOF receive effects. Refused to clients.
    Command {
        name: wire::SETSTATE, body: Body::Handler(state::setstate),
        flags: c"write deny-oom", keys: Keys::First, key_flags: OW | UPDATE, arity: Some(3),
        summary: c"Internal: sets a limiter state with its absolute expiry (replication, AOF).",
        complexity: c"O(1) for bucket and fixed, O(n) in the state for window",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"state", Str, false)]),
        counted: None, event: c"rl.setstate", role: Role::Internal, yields: false,
    },
    Command {
        name: wire::WINDOWADD, body: Body::Handler(state::windowadd),
        flags: c"write deny-oom", keys: Keys::First, key_flags: RW | UPDATE, arity: Some(3),
        summary: c"Internal: applies one allowed sliding-window request (replication, AOF).",
        complexity: c"O(1) amortized",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"update", Str, false)]),
        counted: None, event: c"rl.windowadd", role: Role::Internal, yields: false,
    },
    Command {
        name: wire::LEASE, body: Body::Handler(state::lease),
        flags: c"write deny-oom", keys: Keys::First, key_flags: RW | UPDATE, arity: Some(3),
        summary: c"Internal: applies one lease taken, released or renewed (replication, AOF).",
        complexity: c"O(n) in the key's leases",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"op", Str, false)]),
        counted: None, event: c"rl.lease", role: Role::Internal, yields: false,
    },
    Command {
        name: wire::WINDOWREFUND, body: Body::Handler(state::windowrefund),
        flags: c"write deny-oom", keys: Keys::First, key_flags: RW | UPDATE, arity: Some(3),
        summary: c"Internal: applies a sliding-window refund (replication, AOF).",
        complexity: c"O(n) in the log's entries",
        args: Args::Listed(&[(c"key", KeyArg, false), (c"refund", Str, false)]),
        counted: None, event: c"rl.windowrefund", role: Role::Internal, yields: false,
    },
];

/// Each row's report (its counters and keyspace event), in table order. A
/// static apart from the table: counters change, and the table stays a
/// constant the compiler reads through (each limiter's entry point reads its
/// syntax at build time). Sized by the table: no row goes uncounted.
pub static REPORTS: [Report; COMMANDS.len()] = reports(COMMANDS);

/// Runs row `I` of its table: Redis has no per-command user data, so each
/// row gets its own instance of this entry point.
extern "C" fn entry<const TEST: bool, const I: usize>(
    ctx: *mut redis_module::raw::RedisModuleCtx,
    argv: *mut *mut redis_module::raw::RedisModuleString,
    argc: c_int,
) -> c_int {
    let (table, reports) = if TEST {
        testing_table()
    } else {
        (COMMANDS, &REPORTS[..])
    };
    let cmd = match (table.get(I), reports.get(I)) {
        (Some(row), Some(report)) => Some(Cmd { row, report }),
        _ => None,
    };
    let counted = cmd.filter(|c| c.row.counted.is_some());
    api::run_command(
        ctx,
        argv,
        argc,
        |c, args| {
            let cmd = cmd.ok_or(redis_ratelimit_core::error::INTERNAL)?;
            let row = cmd.row;
            // Where are the keys? (getkeys-api: RL.ALL) is asked before the
            // call in a cluster, and always on Valkey 9.1: not a call.
            let asks_keys =
                matches!(row.keys, Keys::AfterEachLimit) && c.is_keys_position_request();
            if let (Some(c), false) = (counted, asks_keys) {
                c.report.call();
            }
            if row.role == Role::Internal && !(c.flags().loading() || c.flags().replicated()) {
                return Err(CmdError::InternalCommand(row.name));
            }
            if !row.takes(args.count()) {
                return Err(CmdError::WrongArity);
            }
            match row.body {
                Body::Limiter(syntax) => limiter::limiter(c, args, cmd, syntax),
                Body::Handler(h) => h(c, args, cmd),
                Body::Container => Err(redis_ratelimit_core::error::INTERNAL),
            }
        },
        || {
            if let Some(c) = counted {
                c.report.error();
            }
        },
    )
}

/// One entry point per row of a table of up to `N` rows.
macro_rules! entries {
    ($test:literal; $($i:literal)*) => {
        [$(entry::<$test, $i>),*]
    };
}

/// One entry point per possible row (an entry point is a function, and
/// Rust cannot make one per row from the table's length): a table that
/// outgrows them fails the build, never drops a row. The reports are sized
/// by the table itself (`REPORTS`).
const ENTRIES: [EntryFn; 32] = entries!(false;
    0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31);
const _: () = assert!(
    COMMANDS.len() <= ENTRIES.len(),
    "the command table outgrew its entry points"
);

/// The test table's entry points, likewise.
const TEST_ENTRIES: [EntryFn; 4] = entries!(true; 0 1 2 3);
#[cfg(feature = "test-hooks")]
const _: () = assert!(
    testing::COMMANDS.len() <= TEST_ENTRIES.len(),
    "the test command table outgrew its entry points"
);

#[cfg(feature = "test-hooks")]
fn testing_table() -> (&'static [Command], &'static [Report]) {
    (testing::COMMANDS, &testing::REPORTS)
}

#[cfg(not(feature = "test-hooks"))]
fn testing_table() -> (&'static [Command], &'static [Report]) {
    (&[], &[])
}

/// ACL categories, where the server lets modules set them. Every command
/// gets the categories its flags give core commands (`@write` or `@read`,
/// and `@fast` or `@slow`: Redis 7.2+), and, where modules may add
/// categories (Redis 7.4+, Valkey 8.0+), the one of its [`Role`]. Redis
/// 7.0 has neither: an operator names the commands (docs/SECURITY.md).
fn acl_categories(row: &Command, with_own: bool) -> CString {
    let flags = row.flags.to_bytes();
    let has = |word: &[u8]| flags.split(|b| *b == b' ').any(|w| w == word);
    let speed = if has(b"fast") { "fast" } else { "slow" };
    let access = if has(b"readonly") { "read" } else { "write" };
    let own = match row.role.category().filter(|_| with_own) {
        Some(c) => format!(" {}", c.to_string_lossy()),
        None => String::new(),
    };
    CString::new(format!("{access} {speed}{own}")).unwrap_or_default()
}

/// Which rows of [`COMMANDS`] this module registered: all but a row that
/// `yields` to a command the server already has. Set once, at load.
static REGISTERED: [AtomicBool; COMMANDS.len()] =
    [const { AtomicBool::new(false) }; COMMANDS.len()];

/// Did this module register row `i` of [`COMMANDS`] (rather than leave the
/// name to the server's own command)?
pub fn registered(i: usize) -> bool {
    REGISTERED.get(i).is_some_and(|r| r.load(Ordering::Relaxed))
}

/// Registers every command, its docs and its ACL categories.
pub fn register(ctx: &Ctx<'_>) -> Result<(), String> {
    for ((row, entry), done) in COMMANDS.iter().zip(ENTRIES).zip(&REGISTERED) {
        match register_row(ctx, row, entry) {
            Ok(()) => done.store(true, Ordering::Relaxed),
            // Redis refuses a name that a command already holds (nothing
            // else fails here: the table's flags are checked on every test
            // run): a row that yields leaves the server's own command be.
            Err(_) if row.yields => ctx.log_notice(&format!(
                "ratelimit: the server has its own {} command: it stays, and this module's is not registered",
                row.name.to_string_lossy()
            )),
            Err(e) => return Err(e),
        }
    }
    for (row, entry) in testing_table().0.iter().zip(TEST_ENTRIES) {
        register_row(ctx, row, entry)?;
    }
    let ours = || {
        COMMANDS
            .iter()
            .enumerate()
            .filter(|(i, r)| registered(*i) && !matches!(r.body, Body::Container))
            .map(|(_, r)| r)
    };
    if api::has_command_acl_categories() {
        let own = api::has_add_acl_category();
        if own {
            // A category may exist already (the module was loaded before
            // and unloaded): setting it on a command below checks it.
            for name in CATEGORIES.iter().filter_map(|r| r.category()) {
                api::add_acl_category(ctx, name);
            }
        }
        for row in ours() {
            if !api::set_command_acl_categories(ctx, row.name, &acl_categories(row, own)) {
                return Err(format!(
                    "cannot set the ACL categories of {}",
                    row.name.to_string_lossy()
                ));
            }
        }
    }
    docs::register(
        ctx,
        COMMANDS
            .iter()
            .enumerate()
            .filter(|(i, _)| registered(*i))
            .map(|(_, r)| r),
    )
}

/// Registers one row's command (or subcommand) with its legacy key positions.
fn register_row(ctx: &Ctx<'_>, row: &Command, entry: EntryFn) -> Result<(), String> {
    let keys = match row.keys {
        Keys::First => (1, 1, 1),
        Keys::Range { last } => (1, last, 1),
        Keys::AfterEachLimit | Keys::None => (0, 0, 0),
    };
    let entry = match row.body {
        Body::Container => None,
        _ => Some(entry),
    };
    let created = match row.parent() {
        Some((parent, sub)) => api::create_subcommand(ctx, parent, sub, entry, row.flags, keys),
        None => api::create_command(ctx, row.name, entry, row.flags, keys),
    };
    if !created {
        return Err(format!("cannot register {}", row.name.to_string_lossy()));
    }
    Ok(())
}
