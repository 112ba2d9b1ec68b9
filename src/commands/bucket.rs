//! The bucket family, all on the GCRA state of `algo::bucket`:
//! RL.TOKENBUCKET, RL.GCRA, and CL.THROTTLE (a drop-in for redis-cell).

use super::limit::{self, cost_and_flags, Effect, Flags, Mode, Spec};
use super::Args;
use crate::algo::bucket::{Bucket, BucketError};
use crate::algo::RetryAfter;
use crate::api::{Ctx, Holds, Key, RawString};
use crate::error::{
    CmdError, CmdResult, BUCKET_TOO_LONG, BURST, CAPACITY, CELL_COUNT, CELL_MAX_BURST, CELL_PERIOD,
    CELL_QUANTITY, CELL_TOO_LONG, COST, GCRA_PERIOD, GCRA_RATE_TOO_HIGH, GCRA_TOO_LONG, INTERNAL,
    PERIOD, RATE, RATE_TOO_HIGH, SYNTAX, WRONGTYPE,
};
use crate::num::{parse_u64, Decimal, Scaled};
use crate::stats::{self, Cmd};
use crate::store;
use crate::time::{self, Nanos};

/// How a bucket's arguments turn into errors, per command.
pub struct BucketErrors {
    pub limit: CmdError,
    pub too_fast: CmdError,
    pub too_long: CmdError,
}

pub const TOKENBUCKET_ERRORS: BucketErrors = BucketErrors {
    limit: CAPACITY,
    too_fast: RATE_TOO_HIGH,
    too_long: BUCKET_TOO_LONG,
};
pub const GCRA_ERRORS: BucketErrors = BucketErrors {
    limit: BURST,
    too_fast: GCRA_RATE_TOO_HIGH,
    too_long: GCRA_TOO_LONG,
};

/// `limit` units, `rate` per `period` seconds: one unit every period / rate,
/// in whole nanoseconds rounded up (never faster than asked).
pub fn bucket(
    limit: u64,
    rate: &Decimal,
    period: &Decimal,
    e: &BucketErrors,
) -> Result<Bucket, CmdError> {
    let interval = match period.ratio_ceil(9, rate) {
        Scaled::Value(ns) => Nanos::new(ns),
        Scaled::TooSmall => return Err(e.too_fast),
        Scaled::TooLarge => return Err(e.too_long),
    };
    Bucket::new(limit, interval).map_err(|err| match err {
        BucketError::ZeroLimit => e.limit,
        BucketError::ZeroInterval => e.too_fast,
        BucketError::TooLong => e.too_long,
    })
}

/// RL.TOKENBUCKET key capacity rate cost [PERIOD seconds] [DRYRUN] [REFUND]
pub fn tokenbucket(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 4)?;
    let key = args.next_raw()?;
    let capacity = args.next_int(1, CAPACITY)?;
    let rate = args.next_positive(RATE)?;
    let cost = args.next_int(0, COST)?;
    let mut period = None;
    let mut flags = Flags::default();
    while !args.done() {
        let opt = args.next_bytes()?;
        let known = args.option(opt, b"PERIOD", &mut period, |a| a.next_positive(PERIOD))?
            || flags.read(opt);
        if !known {
            return Err(SYNTAX);
        }
    }
    let period = period.unwrap_or(Decimal::from_int(1));
    let spec = Spec::Bucket(bucket(capacity, &rate, &period, &TOKENBUCKET_ERRORS)?);
    let decision = limit::run(ctx, key, &spec, cost, flags, Cmd::TokenBucket)?;
    ctx.reply_decision(&decision);
    Ok(())
}

/// RL.GCRA key burst rate period [COST n] [DRYRUN] [REFUND]
pub fn gcra(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 4)?;
    let key = args.next_raw()?;
    let burst = args.next_int(1, BURST)?;
    let rate = args.next_positive(RATE)?;
    let period = args.next_positive(GCRA_PERIOD)?;
    let (cost, flags) = cost_and_flags(&mut args)?;
    let spec = Spec::Bucket(bucket(burst, &rate, &period, &GCRA_ERRORS)?);
    let decision = limit::run(ctx, key, &spec, cost, flags, Cmd::Gcra)?;
    ctx.reply_decision(&decision);
    Ok(())
}

/// CL.THROTTLE key max_burst count_per_period period [quantity]
///
/// redis-cell's command and reply: [limited, max_burst + 1, remaining,
/// retry_after_s (-1 when allowed), reset_after_s], seconds rounded up when
/// they have a millisecond part, as redis-cell rounds. Unlike redis-cell it
/// replicates its effect, and a peek writes nothing.
pub fn throttle(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    if argv.len() != 5 && argv.len() != 6 {
        return Err(CmdError::WrongArity);
    }
    let mut args = Args::new(argv, 4)?;
    let key_name = args.next_raw()?;
    let max_burst = args.next_int(0, CELL_MAX_BURST)?;
    let count = args.next_int(1, CELL_COUNT)?;
    let period_s = args.next_int(1, CELL_PERIOD)?;
    let quantity = if args.done() {
        1
    } else {
        args.next_int(0, CELL_QUANTITY)?
    };
    // redis-cell's emission interval: period / count, truncated to whole ns.
    let interval = period_s
        .checked_mul(1_000_000_000)
        .map(|ns| ns / count)
        .ok_or(CELL_TOO_LONG)?;
    // The reply's limit, max_burst + 1, must fit a signed 64-bit integer.
    let limit = Some(max_burst + 1)
        .filter(|l| *l <= i64::MAX as u64)
        .ok_or(CELL_MAX_BURST)?;
    let b = Bucket::new(limit, Nanos::new(interval)).map_err(|_| CELL_TOO_LONG)?;

    let now = time::now();
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    let tat = cell_state(&key)?;
    let (d, effect) = limit::decide_bucket(&b, tat, now, quantity, Mode::Take);
    if effect != Effect::None {
        limit::apply(
            ctx,
            &mut key,
            key_name,
            &effect,
            limit::event(Cmd::Throttle),
        )?;
    }
    drop(key);
    stats::decided(Cmd::Throttle, d.allowed, false, false);
    let retry = match d.retry_after {
        RetryAfter::After(span) => cell_seconds(span),
        RetryAfter::Now | RetryAfter::Never => -1,
    };
    let fields = [
        i64::from(!d.allowed),
        d.reply_fields()[1],
        d.reply_fields()[2],
        retry,
        cell_seconds(d.reset_after),
    ];
    ctx.reply_ints(&fields);
    Ok(())
}

/// A bucket key, or a key redis-cell left behind: a string holding the
/// theoretical arrival time in Unix nanoseconds. Such a key is read as it
/// is and becomes an `rl-bucket` on the next allowed request, so limits
/// carry over when this module replaces redis-cell.
fn cell_state(key: &Key) -> Result<Option<Nanos>, CmdError> {
    if key.holds() != Holds::Other {
        return store::bucket_state(key);
    }
    let bytes = key.string_bytes().ok_or(WRONGTYPE)?;
    parse_u64(&bytes)
        .filter(|v| *v > 0)
        .map(|v| Some(Nanos::new(v)))
        .ok_or(WRONGTYPE)
}

/// redis-cell's seconds: whole seconds, plus one if there are milliseconds left over.
fn cell_seconds(span: Nanos) -> i64 {
    let ns = span.as_u64();
    let secs = ns / 1_000_000_000;
    let extra = u64::from((ns % 1_000_000_000) / 1_000_000 > 0);
    i64::try_from(secs + extra).unwrap_or(i64::MAX)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
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
