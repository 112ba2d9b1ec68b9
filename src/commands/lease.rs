//! RL.RELEASE and RL.RENEW: giving back and extending the leases RL.ACQUIRE
//! (or an RL.ALL CONCURRENCY limit) hands out. Both answer 1 if the lease
//! was live, 0 if it is unknown or already expired: never an error, since
//! releases are retried.

use redis_ratelimit_core::algo::lease::{self, Leases};
use redis_ratelimit_core::error::{CmdError, INTERNAL, LEASE, LEASE_ID, SYNTAX};
use redis_ratelimit_core::grammar::{int, ArgKind, Value, Words};
use redis_ratelimit_core::limit::{Effect, StateKind, Stored};
use redis_ratelimit_core::time::Nanos;

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::{block, clock, engine, stats, store};

/// RL.RELEASE key lease_id
pub fn release(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() != 3 {
        return Err(CmdError::WrongArity);
    }
    let id = argv.word(2).and_then(|w| int(w, 1)).ok_or(LEASE_ID)?;
    change(
        ctx,
        argv,
        cmd,
        |leases, now| lease::release(leases, id, now),
        true,
    )
}

/// RL.RENEW key lease_id lease_seconds
pub fn renew(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() != 4 {
        return Err(CmdError::WrongArity);
    }
    let id = argv.word(2).and_then(|w| int(w, 1)).ok_or(LEASE_ID)?;
    let lease = match argv.word(3).and_then(|w| ArgKind::Lease.read(w)) {
        Some(Value::Int(ns)) => Nanos::new(ns),
        _ => return Err(LEASE),
    };
    change(
        ctx,
        argv,
        cmd,
        |leases, now| lease::renew(leases, id, lease, now),
        false,
    )
}

/// Loads the key's leases, decides with `op`, writes and replicates the
/// change and answers 1, or answers 0 when there is nothing to change. A
/// release frees a slot, a renewal may end a lease sooner: the first
/// waiter in line is checked again at once.
fn change(
    ctx: &Ctx<'_>,
    argv: Argv<'_>,
    cmd: Cmd,
    op: impl FnOnce(Option<&Leases>, Nanos) -> Option<lease::Op>,
    recheck: bool,
) -> Result<(), CmdError> {
    let name = argv.name(1).ok_or(SYNTAX)?;
    let now = clock::now();
    let mut key = ctx.open_key(name).ok_or(INTERNAL)?;
    let decided = match store::load(&key, StateKind::Leases)? {
        Stored::Leases(l) => op(Some(l), now),
        _ => None,
    };
    let Some(decided) = decided else {
        stats::decided(cmd.id, false, false, false);
        ctx.reply_int(0);
        return Ok(());
    };
    engine::commit(ctx, &mut key, name, &Effect::Lease(decided), cmd.row.event);
    drop(key);
    if recheck {
        block::kick(ctx, name.bytes());
    }
    stats::decided(cmd.id, true, false, false);
    ctx.reply_int(1);
    Ok(())
}
