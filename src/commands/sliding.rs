//! RL.SLIDING: the exact sliding window of `algo::sliding`.

use super::limit::{self, cost_and_flags, Spec};
use super::Args;
use crate::algo::sliding::{Window, MAX_SPAN_US};
use crate::api::{Ctx, RawString};
use crate::error::{CmdError, CmdResult, LIMIT, WINDOW};
use crate::num::{Decimal, Scaled};
use crate::stats::Cmd;

/// A window length: positive seconds with at most millisecond precision,
/// at most 10 years. Returns microseconds.
pub fn window_span_us(d: &Decimal) -> Result<u64, CmdError> {
    match d.scaled_exact(3) {
        Some(Scaled::Value(ms)) if (1..=MAX_SPAN_US / 1000).contains(&ms) => Ok(ms * 1000),
        _ => Err(WINDOW),
    }
}

pub fn window(limit: u64, span_us: u64) -> Spec {
    Spec::Window(Window {
        limit,
        span_us,
        max_entries: crate::config::sliding_max_entries(),
    })
}

/// RL.SLIDING key limit window [COST n] [DRYRUN] [REFUND]
pub fn sliding(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 3)?;
    let key = args.next_raw()?;
    let limit = args.next_int(1, LIMIT)?;
    let span_us = window_span_us(&args.next_positive(WINDOW)?)?;
    let (cost, flags) = cost_and_flags(&mut args)?;
    let spec = window(limit, span_us);
    let decision = limit::run(ctx, key, &spec, cost, flags, Cmd::Sliding)?;
    ctx.reply_decision(&decision);
    Ok(())
}
