//! RL.SLIDING: the exact sliding window of `algo::sliding`.

use super::{is, Args};
use crate::algo::sliding::{self, Log, Window, MAX_SPAN_US};
use crate::api::{Ctx, Key, RawString};
use crate::error::{CmdResult, COST_OPTION, INTERNAL, LIMIT, SYNTAX, WINDOW};
use crate::num::Scaled;
use crate::store;
use crate::time::{self, Nanos};

/// Entries a log keeps before merging new admissions into the newest one.
pub const MAX_ENTRIES: u32 = 100_000;

/// RL.SLIDING key limit window [COST n]
pub fn sliding(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 3)?;
    let key = args.next_raw()?;
    let limit = args.next_int(1, LIMIT)?;
    let window = args.next_positive(WINDOW)?;
    let span_us = match window.scaled_exact(3) {
        Some(Scaled::Value(ms)) if (1..=MAX_SPAN_US / 1000).contains(&ms) => ms * 1000,
        _ => return Err(WINDOW),
    };
    let mut cost = None;
    while !args.done() {
        let opt = args.next_bytes()?;
        if is(opt, b"COST") && cost.is_none() {
            args.option_value()?;
            cost = Some(args.next_int(0, COST_OPTION)?);
        } else {
            return Err(SYNTAX);
        }
    }
    let w = Window {
        limit,
        span_us,
        max_entries: MAX_ENTRIES,
    };
    run(ctx, key, &w, cost.unwrap_or(1))
}

fn run(ctx: Ctx, key_name: RawString, w: &Window, cost: u64) -> CmdResult {
    let now_us = time::now().as_micros();
    let mut key = Key::open(ctx, key_name).ok_or(INTERNAL)?;
    let log = store::window_state(&mut key)?;
    let (decision, update) = sliding::decide(log.as_deref(), w, now_us, cost);
    if let Some(u) = update {
        let last = match log {
            Some(l) => {
                l.apply(&u);
                l.last_us()
            }
            None => {
                let l = Log::from_update(&u);
                let last = l.last_us();
                store::set_window(&mut key, l)?;
                last
            }
        };
        key.expire_at(window_expiry_ms(last, w.span_us));
        ctx.replicate_windowadd(key_name, &u);
        ctx.signal_modified(key_name);
        ctx.notify(c"rl.sliding", key_name);
    }
    drop(key);
    ctx.reply_decision(&decision);
    Ok(())
}

/// A log is empty again once its newest entry leaves the window.
pub fn window_expiry_ms(last_us: u64, span_us: u64) -> u64 {
    store::expiry_ms(Nanos::from_micros(last_us.saturating_add(span_us)))
}
