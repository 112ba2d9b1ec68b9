//! What `COMMAND INFO` and `COMMAND DOCS` show: a command's summary,
//! arity, key specs and arguments (Redis 7.0+ copies them at load).

use std::ffi::{c_int, CStr, CString};

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, ERR, OK};

/// An argument in `COMMAND DOCS`.
#[derive(Debug, Clone)]
pub struct DocArg {
    pub name: CString,
    pub ty: DocType,
    pub token: Option<CString>,
    pub optional: bool,
    pub multiple: bool,
    pub subargs: Vec<DocArg>,
    /// For a key: the index of the key spec that finds it.
    pub key_spec: i32,
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
pub enum KeySpec<'d> {
    /// The argument at this index.
    Index(i32),
    /// The argument after each of these keywords (found by the getkeys API
    /// beyond the first).
    AfterKeyword(&'d CStr),
    /// From the argument at this index to `last` (negative: counted from
    /// the end, -1 the last argument).
    Range(i32, i32),
}

/// What `COMMAND INFO` and `COMMAND DOCS` say about a command.
pub struct DocInfo<'d> {
    pub summary: &'d CStr,
    pub complexity: &'d CStr,
    pub since: &'d CStr,
    pub arity: i32,
    /// Its key specs: `REDISMODULE_CMD_KEY_*` flags and where the keys
    /// are; empty for commands without keys.
    pub keys: &'d [(u64, KeySpec<'d>)],
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
        r.key_spec_index = if a.ty == DocType::Key { a.key_spec } else { -1 };
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
    let mut specs: Vec<raw::RedisModuleCommandKeySpec> = Vec::with_capacity(d.keys.len() + 1);
    for (flags, keys) in d.keys {
        // SAFETY: zeroed key specs are the documented terminator/unset value.
        let mut spec: raw::RedisModuleCommandKeySpec = unsafe { std::mem::zeroed() };
        spec.flags = *flags;
        match keys {
            KeySpec::Index(i) => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
                spec.bs.index.pos = *i;
            }
            KeySpec::AfterKeyword(word) => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_KEYWORD;
                spec.bs.keyword.keyword = word.as_ptr();
                spec.bs.keyword.startfrom = 1;
            }
            KeySpec::Range(first, _) => {
                spec.begin_search_type =
                    raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
                spec.bs.index.pos = *first;
            }
        }
        spec.find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
        spec.fk.range.lastkey = match keys {
            KeySpec::Range(_, last) => *last,
            _ => 0,
        };
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
