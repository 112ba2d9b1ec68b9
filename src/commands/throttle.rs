//! CL.THROTTLE key max_burst count_per_period period [quantity]: a drop-in
//! for redis-cell, on the same bucket engine as RL.GCRA.
//!
//! redis-cell's reply: [limited, max_burst + 1, remaining, retry_after_s
//! (-1 when allowed), reset_after_s], seconds rounded up when they have a
//! millisecond part, as redis-cell rounds. Unlike redis-cell it replicates
//! its effect, and a peek writes nothing. Keys redis-cell left behind (a
//! string holding the theoretical arrival time in Unix nanoseconds) are
//! read as they are and become `rl-bucket` keys on the next allowed call.

use redis_ratelimit_core::algo::RetryAfter;
use redis_ratelimit_core::error::{CmdError, SYNTAX};
use redis_ratelimit_core::grammar::{read_throttle, RequestArgs};
use redis_ratelimit_core::limit::Spec;
use redis_ratelimit_core::time::Nanos;

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine;
use crate::store;

pub fn throttle(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let (bucket, quantity) = read_throttle(&argv)?;
    let key = argv.name(1).ok_or(SYNTAX)?;
    let req = RequestArgs {
        cost: Some(quantity),
        ..RequestArgs::default()
    };
    let spec = Spec::Bucket(bucket);
    engine::one(
        ctx,
        cmd,
        key,
        &spec,
        req,
        None,
        store::load_or_cell,
        |d, _| {
            let retry = match d.retry_after {
                RetryAfter::After(span) => cell_seconds(span),
                RetryAfter::Now | RetryAfter::Never => -1,
            };
            let [_, limit, remaining, _, _] = d.reply_fields();
            ctx.reply_ints(&[
                i64::from(!d.allowed),
                limit,
                remaining,
                retry,
                cell_seconds(d.reset_after),
            ]);
        },
    )
}

/// redis-cell's seconds: whole seconds, plus one if there are milliseconds left over.
fn cell_seconds(span: Nanos) -> i64 {
    let ns = span.as_u64();
    let secs = ns / 1_000_000_000;
    let extra = u64::from((ns % 1_000_000_000) / 1_000_000 > 0);
    i64::try_from(secs + extra).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_like_redis_cell() {
        assert_eq!(cell_seconds(Nanos::ZERO), 0);
        assert_eq!(cell_seconds(Nanos::from_millis(2000)), 2);
        assert_eq!(cell_seconds(Nanos::from_millis(2001)), 3);
        // A sub-millisecond remainder does not round up (redis-cell's rule).
        assert_eq!(cell_seconds(Nanos::new(2_000_500_000)), 2);
    }
}
