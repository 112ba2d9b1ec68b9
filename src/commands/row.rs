//! One row of the command table: what a command is called, what runs it,
//! its flags, keys, arity, docs, INFO name, keyspace event and role. The
//! handlers, the docs and the table all read this type; only the table
//! (`mod.rs`) lists the rows.

use std::ffi::CStr;

use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::grammar::{fits_arity, Syntax};

use crate::api::{self, Argv, Ctx};
use crate::stats::Report;

/// A handler: the context, the arguments, and the command that runs.
pub type Handler = fn(&Ctx<'_>, Argv<'_>, Cmd) -> Result<(), CmdError>;

/// A running command: its row, and its report (its counters and keyspace
/// event), which the handler hands to the engine and the waiting line.
#[derive(Clone, Copy)]
pub struct Cmd {
    pub row: &'static Command,
    pub report: &'static Report,
}

/// What a command does.
pub enum Body {
    /// An algorithm's own command, read by its syntax and decided by the engine.
    Limiter(&'static Syntax),
    Handler(Handler),
    /// A container of subcommands (rows named `PARENT|SUB` follow it).
    Container,
}

// Key spec flags (`REDISMODULE_CMD_KEY_*`) the table gives its rows.
pub const RW: u32 = redis_module::raw::REDISMODULE_CMD_KEY_RW;
pub const OW: u32 = redis_module::raw::REDISMODULE_CMD_KEY_OW;
pub const ACCESS: u32 = redis_module::raw::REDISMODULE_CMD_KEY_ACCESS;
pub const UPDATE: u32 = redis_module::raw::REDISMODULE_CMD_KEY_UPDATE;
pub const INCOMPLETE: u32 = redis_module::raw::REDISMODULE_CMD_KEY_INCOMPLETE;

/// Where a command's keys are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The first argument.
    First,
    /// Word 1 in the first-key form, and after each LIMIT (RL.ALL,
    /// RL.TAKEALL): the keys-position API finds them.
    AfterEachLimit,
    /// From the first argument to `last` (negative: from the end; RL.SETTLE's
    /// keys end 5 before the end: -5).
    Range { last: i32 },
    /// None (test hooks).
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    None,
}

/// What `COMMAND DOCS` shows as the arguments.
pub enum Args {
    /// A limiter's: derived from its syntax.
    Syntax,
    /// RL.ALL's: derived from every algorithm's syntax.
    All,
    /// Written out: (name, type, optional).
    Listed(&'static [(&'static CStr, api::DocType, bool)]),
    /// RL.POLICY SET's: a name, then any algorithm's definition.
    PolicySet,
    /// RL.TAKE's: a key, a policy name, the request options.
    Take,
    /// RL.TAKEALL's: request options, then `LIMIT key POLICY name` clauses.
    TakeAll,
    /// GCRA's: redis-cell's positions, then `[TOKENS count]`.
    Gcra,
}

/// One row of the table.
pub struct Command {
    pub name: &'static CStr,
    pub body: Body,
    /// Redis command flags.
    pub flags: &'static CStr,
    pub keys: Keys,
    /// `REDISMODULE_CMD_KEY_*` flags of the key spec.
    pub key_flags: u32,
    /// Arity as `COMMAND INFO` shows it (negative: at least); `None` for
    /// limiters, whose syntax says it.
    pub arity: Option<i32>,
    pub summary: &'static CStr,
    pub complexity: &'static CStr,
    pub args: Args,
    /// The name INFO counts its calls under; `None`: not counted.
    pub counted: Option<&'static str>,
    /// The keyspace notification its writes raise (class `d`, module).
    pub event: &'static CStr,
    /// Who may call it: its ACL category.
    pub role: Role,
    /// Registered only where the server has no command of this name (GCRA,
    /// which Redis 8.8 announced): a server's own command is left alone,
    /// and INFO says which one runs.
    pub yields: bool,
}

/// Who a command is for, as an operator grants it: each role is an ACL
/// category where the server lets a module add one (Redis 7.4+, Valkey
/// 8.0+), and a list of commands elsewhere (docs/SECURITY.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `@ratelimit`: applies the operator's named policies (RL.TAKE,
    /// RL.TAKEALL) and gives back or extends the leases it holds. Cannot
    /// choose a limit, nor read or change policies.
    App,
    /// `@ratelimit-inline`: passes its own limits inline (the algorithms'
    /// commands, RL.ALL, CL.THROTTLE). For trusted services: whoever may
    /// call a limiter on a key chooses that key's limit.
    Inline,
    /// `@ratelimit-admin`: reads and changes the named policies.
    Admin,
    /// Applies effects only (replication, AOF): refused to every client,
    /// in no category of ours.
    Internal,
    /// Test builds only: in no category.
    #[cfg_attr(not(feature = "test-hooks"), allow(dead_code))]
    Test,
}

impl Role {
    /// The ACL category of this module that holds the role's commands.
    pub fn category(self) -> Option<&'static CStr> {
        match self {
            Role::App => Some(c"ratelimit"),
            Role::Inline => Some(c"ratelimit-inline"),
            Role::Admin => Some(c"ratelimit-admin"),
            Role::Internal | Role::Test => None,
        }
    }
}

/// The categories this module adds, in the order they are created.
pub const CATEGORIES: [Role; 3] = [Role::App, Role::Inline, Role::Admin];

impl Command {
    /// The arity `COMMAND INFO` shows (negative: at least).
    pub fn arity(&self) -> i32 {
        match (&self.body, self.arity) {
            (_, Some(a)) => a,
            (Body::Limiter(s), None) => -i32::try_from(s.command_arity() + 1).unwrap_or(i32::MAX),
            (Body::Handler(_) | Body::Container, None) => -1,
        }
    }

    /// Does a call of `argc` words (the name included) fit the arity?
    pub fn takes(&self, argc: usize) -> bool {
        fits_arity(self.arity(), argc)
    }

    /// `PARENT|SUB` for a subcommand: the parent and the subcommand's name.
    pub fn parent(&self) -> Option<(&'static [u8], &'static [u8])> {
        let name = self.name.to_bytes();
        let bar = name.iter().position(|b| *b == b'|')?;
        Some((name.get(..bar)?, name.get(bar + 1..)?))
    }
}

/// One report per row, with the row's event. Evaluated while building.
#[allow(clippy::indexing_slicing)]
pub const fn reports<const N: usize>(mut rows: &[Command]) -> [Report; N] {
    let mut out = [const { Report::new(c"") }; N];
    let mut i = 0;
    while let [row, rest @ ..] = rows {
        out[i] = Report::new(row.event);
        rows = rest;
        i += 1;
    }
    out
}
