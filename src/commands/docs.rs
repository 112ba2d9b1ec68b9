//! What `COMMAND INFO` and `COMMAND DOCS` say about each command: summary,
//! complexity, arity, key specs with their flags, and the argument tree.
//!
//! Set with `RedisModule_SetCommandInfo` (Redis 7.0+), which copies
//! everything: the raw structures built here live only during the call.

use std::ffi::{c_int, CStr};

use redis_module::raw;

use crate::api::{rm, RawCtx};

use ArgType::*;

#[derive(Clone, Copy)]
enum ArgType {
    Str,
    Int,
    Double,
    Key,
    Token,
    OneOf,
    Block,
}

const OPTIONAL: c_int = raw::REDISMODULE_CMD_ARG_OPTIONAL as c_int;
const MULTIPLE: c_int = raw::REDISMODULE_CMD_ARG_MULTIPLE as c_int;
const NONE: c_int = 0;

struct Arg {
    name: &'static CStr,
    ty: ArgType,
    token: Option<&'static CStr>,
    flags: c_int,
    subargs: &'static [Arg],
}

const fn arg(name: &'static CStr, ty: ArgType) -> Arg {
    Arg {
        name,
        ty,
        token: None,
        flags: NONE,
        subargs: &[],
    }
}

const fn opt(name: &'static CStr, ty: ArgType, token: &'static CStr) -> Arg {
    Arg {
        name,
        ty,
        token: Some(token),
        flags: OPTIONAL,
        subargs: &[],
    }
}

const fn flag(name: &'static CStr, token: &'static CStr) -> Arg {
    Arg {
        name,
        ty: Token,
        token: Some(token),
        flags: OPTIONAL,
        subargs: &[],
    }
}

const KEY: Arg = arg(c"key", Key);
const DRYRUN: Arg = flag(c"dryrun", c"DRYRUN");
const REFUND: Arg = flag(c"refund", c"REFUND");
const COST: Arg = opt(c"cost", Int, c"COST");

/// How the keys are found.
enum Keys {
    /// The first argument.
    First,
    /// After each LIMIT (RL.ALL): the spec finds the first, the keys-position
    /// API the rest.
    AfterEachLimit,
}

struct Doc {
    name: &'static CStr,
    summary: &'static CStr,
    complexity: &'static CStr,
    arity: c_int,
    key_flags: u32,
    keys: Keys,
    args: &'static [Arg],
}

const RW: u32 = raw::REDISMODULE_CMD_KEY_RW;
const OW: u32 = raw::REDISMODULE_CMD_KEY_OW;
const ACCESS: u32 = raw::REDISMODULE_CMD_KEY_ACCESS;
const UPDATE: u32 = raw::REDISMODULE_CMD_KEY_UPDATE;
const INCOMPLETE: u32 = raw::REDISMODULE_CMD_KEY_INCOMPLETE;

const LIMIT_SPECS: &[Arg] = &[
    Arg {
        name: c"tokenbucket",
        ty: Block,
        token: Some(c"TOKENBUCKET"),
        flags: NONE,
        subargs: &[
            arg(c"capacity", Int),
            arg(c"rate", Double),
            opt(c"period", Double, c"PERIOD"),
        ],
    },
    Arg {
        name: c"sliding",
        ty: Block,
        token: Some(c"SLIDING"),
        flags: NONE,
        subargs: &[arg(c"limit", Int), arg(c"window", Double)],
    },
    Arg {
        name: c"gcra",
        ty: Block,
        token: Some(c"GCRA"),
        flags: NONE,
        subargs: &[
            arg(c"burst", Int),
            arg(c"rate", Double),
            arg(c"period", Double),
        ],
    },
    Arg {
        name: c"fixed",
        ty: Block,
        token: Some(c"FIXED"),
        flags: NONE,
        subargs: &[
            arg(c"limit", Int),
            arg(c"window", Str),
            opt(c"zone", Str, c"TZ"),
        ],
    },
];

const LIMIT_CLAUSE: &[Arg] = &[
    KEY,
    Arg {
        name: c"algorithm",
        ty: OneOf,
        token: None,
        flags: NONE,
        subargs: LIMIT_SPECS,
    },
    COST,
];

#[rustfmt::skip]
const DOCS: &[Doc] = &[
    Doc {
        name: c"RL.TOKENBUCKET",
        summary: c"Takes cost tokens from a token bucket of capacity tokens refilled at rate per PERIOD seconds, if it holds them.",
        complexity: c"O(1)",
        arity: -5, key_flags: RW | ACCESS | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"capacity", Int), arg(c"rate", Double), arg(c"cost", Int), opt(c"period", Double, c"PERIOD"), DRYRUN, REFUND],
    },
    Doc {
        name: c"RL.SLIDING",
        summary: c"Admits COST units if the units admitted in the last window seconds stay within limit (an exact sliding window).",
        complexity: c"O(1) amortized when allowed; O(k) when denied, k the log entries scanned",
        arity: -4, key_flags: RW | ACCESS | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"limit", Int), arg(c"window", Double), COST, DRYRUN, REFUND],
    },
    Doc {
        name: c"RL.GCRA",
        summary: c"Generic cell rate algorithm: rate units per period seconds with bursts of up to burst.",
        complexity: c"O(1)",
        arity: -5, key_flags: RW | ACCESS | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"burst", Int), arg(c"rate", Double), arg(c"period", Double), COST, DRYRUN, REFUND],
    },
    Doc {
        name: c"RL.FIXED",
        summary: c"Counts COST units in the current fixed window (seconds, or MINUTE/HOUR/DAY/WEEK/MONTH, optionally in a TZ) up to limit.",
        complexity: c"O(1)",
        arity: -4, key_flags: RW | ACCESS | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"limit", Int), arg(c"window", Str), COST, opt(c"zone", Str, c"TZ"), DRYRUN, REFUND],
    },
    Doc {
        name: c"CL.THROTTLE",
        summary: c"redis-cell compatible GCRA: count_per_period per period seconds with bursts of max_burst + 1.",
        complexity: c"O(1)",
        arity: -5, key_flags: RW | ACCESS | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"max_burst", Int), arg(c"count_per_period", Int), arg(c"period", Int), Arg { name: c"quantity", ty: Int, token: None, flags: OPTIONAL, subargs: &[] }],
    },
    Doc {
        name: c"RL.ALL",
        summary: c"Checks several limits on several keys and consumes from all of them only if every one allows.",
        complexity: c"O(k) for k limits",
        arity: -6, key_flags: RW | ACCESS | UPDATE | INCOMPLETE, keys: Keys::AfterEachLimit,
        args: &[COST, DRYRUN, REFUND, Arg { name: c"limit", ty: Block, token: Some(c"LIMIT"), flags: MULTIPLE, subargs: LIMIT_CLAUSE }],
    },
    Doc {
        name: c"RL.SETSTATE",
        summary: c"Internal: sets a limiter state with its absolute expiry (replication, AOF).",
        complexity: c"O(1) for bucket and fixed, O(n) in the state for window",
        arity: 3, key_flags: OW | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"state", Str)],
    },
    Doc {
        name: c"RL.WINDOWADD",
        summary: c"Internal: applies one allowed sliding-window request (replication, AOF).",
        complexity: c"O(1) amortized",
        arity: 3, key_flags: RW | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"update", Str)],
    },
    Doc {
        name: c"RL.WINDOWREFUND",
        summary: c"Internal: applies a sliding-window refund (replication, AOF).",
        complexity: c"O(n) in the log's entries",
        arity: 3, key_flags: RW | UPDATE, keys: Keys::First,
        args: &[KEY, arg(c"refund", Str)],
    },
];

fn raw_type(t: ArgType) -> raw::RedisModuleCommandArgType {
    match t {
        Str => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_STRING,
        Int => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_INTEGER,
        Double => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_DOUBLE,
        Key => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_KEY,
        Token => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_PURE_TOKEN,
        OneOf => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_ONEOF,
        Block => raw::RedisModuleCommandArgType_REDISMODULE_ARG_TYPE_BLOCK,
    }
}

/// Raw argument arrays, each terminated by a zeroed entry. The nested
/// vectors are kept alive in `keep` until SetCommandInfo has copied them.
fn raw_args(
    args: &[Arg],
    keep: &mut Vec<Vec<raw::RedisModuleCommandArg>>,
) -> *mut raw::RedisModuleCommandArg {
    let mut out: Vec<raw::RedisModuleCommandArg> = Vec::with_capacity(args.len() + 1);
    for a in args {
        let subargs = if a.subargs.is_empty() {
            std::ptr::null_mut()
        } else {
            raw_args(a.subargs, keep)
        };
        // SAFETY: an all-zero RedisModuleCommandArg is its documented "unset" value.
        let mut r: raw::RedisModuleCommandArg = unsafe { std::mem::zeroed() };
        r.name = a.name.as_ptr();
        r.type_ = raw_type(a.ty);
        r.key_spec_index = if matches!(a.ty, Key) { 0 } else { -1 };
        r.token = a.token.map_or(std::ptr::null(), CStr::as_ptr);
        r.flags = a.flags;
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

/// Sets every command's documentation. Servers without the API (before
/// 7.0) keep the legacy key positions given at registration.
pub fn register(ctx: RawCtx) -> Result<(), &'static CStr> {
    // SAFETY: copies of pointer-sized statics set by RedisModule_Init.
    let (set, get) = unsafe { (raw::RedisModule_SetCommandInfo, raw::RedisModule_GetCommand) };
    if set.is_none() || get.is_none() {
        return Ok(());
    }
    for d in DOCS {
        let cmd = rm!(RedisModule_GetCommand(ctx, d.name.as_ptr()) else std::ptr::null_mut());
        if cmd.is_null() {
            return Err(d.name);
        }
        // SAFETY: zeroed key specs are the documented terminator/unset value.
        let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
        spec.flags = u64::from(d.key_flags);
        match d.keys {
            Keys::First => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
                spec.bs.index.pos = 1;
            }
            Keys::AfterEachLimit => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_KEYWORD;
                spec.bs.keyword.keyword = c"LIMIT".as_ptr();
                spec.bs.keyword.startfrom = 1;
            }
        }
        spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
        spec.fk.range.lastkey = 0;
        spec.fk.range.keystep = 1;
        spec.fk.range.limit = 0;
        // SAFETY: the zeroed terminator.
        let mut specs = [spec, unsafe { std::mem::zeroed() }];
        let mut keep = Vec::new();
        let args = raw_args(d.args, &mut keep);
        // SAFETY: all fields of the info are set below or left null.
        let mut info: raw::RedisModuleCommandInfo = unsafe { std::mem::zeroed() };
        info.version = &INFO_VERSION;
        info.summary = d.summary.as_ptr();
        info.complexity = d.complexity.as_ptr();
        info.since = c"0.1.0".as_ptr();
        info.arity = d.arity;
        info.key_specs = specs.as_mut_ptr();
        info.args = args;
        let rc = rm!(RedisModule_SetCommandInfo(cmd, &info) else raw::REDISMODULE_ERR as c_int);
        if rc != raw::REDISMODULE_OK as c_int {
            return Err(d.name);
        }
    }
    Ok(())
}
