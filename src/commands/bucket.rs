//! RL.TOKENBUCKET: the token bucket, on the GCRA state of `algo::bucket`.

use std::ffi::CStr;

use super::{is, Args};
use crate::algo::bucket::{Bucket, BucketError};
use crate::api::{Ctx, Key, RawString};
use crate::error::{
    CmdError, CmdResult, BUCKET_TOO_LONG, CAPACITY, COST, INTERNAL, PERIOD, RATE, RATE_TOO_HIGH,
    SYNTAX,
};
use crate::num::{Decimal, Scaled};
use crate::store;
use crate::time::{self, Nanos};

/// RL.TOKENBUCKET key capacity rate cost [PERIOD seconds]
pub fn tokenbucket(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 4)?;
    let key = args.next_raw()?;
    let capacity = args.next_int(1, CAPACITY)?;
    let rate = args.next_positive(RATE)?;
    let cost = args.next_int(0, COST)?;
    let mut period = None;
    while !args.done() {
        let opt = args.next_bytes()?;
        if is(opt, b"PERIOD") && period.is_none() {
            args.option_value()?;
            period = Some(args.next_positive(PERIOD)?);
        } else {
            return Err(SYNTAX);
        }
    }
    let period = period.unwrap_or(Decimal::from_int(1));
    // One token every period / rate, in whole nanoseconds rounded up: the
    // bucket may run a hair slower than asked, never faster.
    let interval = match period.ratio_ceil(9, &rate) {
        Scaled::Value(ns) => Nanos::new(ns),
        Scaled::TooSmall => return Err(RATE_TOO_HIGH),
        Scaled::TooLarge => return Err(BUCKET_TOO_LONG),
    };
    let bucket = Bucket::new(capacity, interval).map_err(bucket_error)?;
    run(ctx, key, &bucket, cost, c"rl.tokenbucket")
}

fn bucket_error(e: BucketError) -> CmdError {
    match e {
        BucketError::ZeroLimit => CAPACITY,
        BucketError::ZeroInterval => RATE_TOO_HIGH,
        BucketError::TooLong => BUCKET_TOO_LONG,
    }
}

/// Load, decide, store, replicate, reply: shared by every bucket command.
pub fn run(ctx: Ctx, key_name: RawString, bucket: &Bucket, cost: u64, event: &CStr) -> CmdResult {
    let now = time::now();
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    let state = store::bucket_state(&key)?;
    let (decision, new_tat) = bucket.decide(state, now, cost);
    if let Some(tat) = new_tat {
        store::set_bucket(&mut key, tat)?;
        let pxat = store::expiry_ms(tat);
        key.expire_at(pxat);
        store::replicate_bucket(ctx, key_name, tat, pxat);
        ctx.signal_modified(key_name);
        ctx.notify(event, key_name);
    }
    drop(key);
    ctx.reply_decision(&decision);
    Ok(())
}
