//! RL.RELEASE and RL.RENEW: giving back and extending the leases RL.ACQUIRE
//! (or an RL.ALL CONCURRENCY limit) hands out. Both answer 1 if the lease
//! was live, 0 if it is unknown or already expired: never an error, since
//! releases are retried.

use redis_ratelimit_core::algo::lease;
use redis_ratelimit_core::error::{CmdError, LEASE, LEASE_ID, SYNTAX};
use redis_ratelimit_core::grammar::{int, ArgKind, Value, Words};
use redis_ratelimit_core::time::Nanos;

use super::row::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine;

/// RL.RELEASE key lease_id
pub fn release(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let name = argv.name(1).ok_or(SYNTAX)?;
    let id = argv.word(2).and_then(|w| int(w, 1)).ok_or(LEASE_ID)?;
    let op = |leases: Option<&_>, now| lease::release(leases, id, now);
    engine::change_lease(ctx, cmd.report, name, op, true)
}

/// RL.RENEW key lease_id lease_seconds
pub fn renew(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let name = argv.name(1).ok_or(SYNTAX)?;
    let id = argv.word(2).and_then(|w| int(w, 1)).ok_or(LEASE_ID)?;
    let lease = match argv.word(3).and_then(|w| ArgKind::Lease.read(w)) {
        Some(Value::Int(ns)) => Nanos::new(ns),
        _ => return Err(LEASE),
    };
    let op = |leases: Option<&_>, now| lease::renew(leases, id, lease, now);
    engine::change_lease(ctx, cmd.report, name, op, false)
}
