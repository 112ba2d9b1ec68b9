//! The unsafe edge: every call into the Redis module API, behind safe
//! wrappers whose lifetimes say how long Redis keeps what it lends, and
//! every `extern "C"` function Redis calls (module load, commands, type
//! callbacks, blocked clients, timers, server events, INFO, configuration),
//! each under a guard (`guard.rs`), which turns a panic into a harmless answer and a
//! line in the server's log: a panic that reached Redis would abort the
//! server for every user.
//!
//! One file per part of the module API. Every API pointer used is checked
//! at load time (`on_load`); a call through a missing pointer answers a
//! harmless default instead of panicking. Nothing here knows about rate
//! limiting: the rest of the module reaches Redis only through these
//! re-exports.

mod aux;
mod blocked;
mod commands;
mod config;
mod context;
mod docs;
mod events;
mod ffi;
mod guard;
mod info;
mod keys;
mod on_load;
mod rdb;
mod server;
mod strings;
mod time;
mod timers;
mod types;

pub use aux::{register_aux, AuxMethods};
pub use blocked::{unblock, BlockCallbacks, BlockedClient, BlockedId};
pub use commands::{
    add_acl_category, create_command, create_subcommand, has_add_acl_category,
    has_command_acl_categories, run_command, set_command_acl_categories, EntryFn,
};
pub use config::{register_numeric_config, NumericConfig};
pub use context::{avoid_replica_traffic, server_flags, Ctx};
pub use docs::{has_command_info, set_command_info, DocArg, DocInfo, DocType, KeySpec};
pub use events::{
    atomic_slot_migration, hear_removed_keys, opt_in_atomic_slot_migration,
    subscribe_server_events, KeyEvents, Migration, ServerEvents,
};
pub use ffi::{RawCtx, RawString};
pub use info::{register_info, Info, InfoSource};
pub use keys::{Holds, Key, Read};
pub use on_load::on_load;
pub use rdb::{Aof, RdbIn, RdbOut};
pub use server::fast_options;
pub use strings::{Argv, Name, OwnedString};
pub use time::wall_clock_ns;
pub use timers::{TimerCallback, TimerId};
pub use types::{
    register_boxed, register_inline, BoxedMethods, BoxedType, InlineMethods, InlineType, TypeHandle,
};
