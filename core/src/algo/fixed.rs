//! The fixed window counter, done right.
//!
//! A counter for the current window: the count and the window's end are set
//! together (the key's expiry is the window's end, written in the same step
//! as the count), denied requests do not count, and the reply says exactly
//! when the window resets. Window boundaries come from `algo::calendar`.
//!
//! A stored counter whose window has ended is fresh. One that ends later
//! than the current window (the clock stepped back, or the key was used
//! with a shorter window) keeps its count until its own end: the counter
//! never resets early, so it never admits more than it should.

use super::{Change, Decision, RetryAfter};
use crate::time::Nanos;

/// A window's count and its end (Unix milliseconds, exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub count: u64,
    pub end_ms: u64,
}

fn live(stored: Option<Counter>, now: Nanos) -> Option<Counter> {
    stored.filter(|c| Nanos::from_millis(c.end_ms) > now && c.count > 0)
}

fn until(end_ms: u64, now: Nanos) -> Nanos {
    Nanos::from_millis(end_ms).saturating_sub(now)
}

/// Decide on `cost` units at `now` in the window ending at `window_end_ms`.
pub fn decide(
    limit: u64,
    stored: Option<Counter>,
    window_end_ms: u64,
    now: Nanos,
    cost: u64,
) -> (Decision, Option<Counter>) {
    let (count, end_ms) = match live(stored, now) {
        Some(c) => (c.count, c.end_ms.max(window_end_ms)),
        None => (0, window_end_ms),
    };
    let reset_if = |count: u64| {
        if count > 0 {
            until(end_ms, now)
        } else {
            Nanos::ZERO
        }
    };
    if cost > limit {
        let d = Decision {
            allowed: false,
            limit,
            remaining: limit.saturating_sub(count),
            retry_after: RetryAfter::Never,
            reset_after: reset_if(count),
        };
        return (d, None);
    }
    match count.checked_add(cost).filter(|c| *c <= limit) {
        Some(new_count) => {
            let d = Decision {
                allowed: true,
                limit,
                remaining: limit - new_count,
                retry_after: RetryAfter::Now,
                reset_after: reset_if(new_count),
            };
            let change = (cost > 0).then_some(Counter {
                count: new_count,
                end_ms,
            });
            (d, change)
        }
        None => {
            let d = Decision {
                allowed: false,
                limit,
                remaining: limit.saturating_sub(count),
                retry_after: RetryAfter::After(until(end_ms, now)),
                reset_after: reset_if(count),
            };
            (d, None)
        }
    }
}

/// Gives `units` back, never below zero: a counter at zero is fresh (cleared).
pub fn refund(
    limit: u64,
    stored: Option<Counter>,
    now: Nanos,
    units: u64,
) -> (Decision, Change<Counter>) {
    let Some(c) = live(stored, now) else {
        let d = Decision {
            allowed: true,
            limit,
            remaining: limit,
            retry_after: RetryAfter::Now,
            reset_after: Nanos::ZERO,
        };
        return (d, Change::None);
    };
    let count = c.count.saturating_sub(units);
    let d = Decision {
        allowed: true,
        limit,
        remaining: limit.saturating_sub(count),
        retry_after: RetryAfter::Now,
        reset_after: if count > 0 {
            until(c.end_ms, now)
        } else {
            Nanos::ZERO
        },
    };
    let change = if units == 0 {
        Change::None
    } else if count == 0 {
        Change::Clear
    } else {
        Change::Set(Counter {
            count,
            end_ms: c.end_ms,
        })
    };
    (d, change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::calendar::{bounds, Calendar};
    use proptest::prelude::*;

    const T0_MS: u64 = 1_700_000_000_000;

    fn at(ms: u64) -> Nanos {
        Nanos::from_millis(ms)
    }

    #[rustfmt::skip]
    #[test]
    fn counts_in_its_window_and_resets_at_the_end() {
        // limit 3 per 10 s window [T0, T0 + 10 s)
        let end = T0_MS + 10_000;
        let mut c = None;
        let rows: &[(u64, u64, i64, i64, i64, i64)] = &[
            // at ms  cost ok rem retry  reset
            (0,       1,   1, 2,  0,     10_000),
            (2_500,   2,   1, 0,  0,     7_500),
            (2_500,   1,   0, 0,  7_500, 7_500),   // denied: does not count
            (2_500,   0,   1, 0,  0,     7_500),   // peek
            (9_999,   4,   0, 0,  -1,    1),       // can never fit
        ];
        for &(t, cost, ok, rem, retry, reset) in rows {
            let (d, new) = decide(3, c, end, at(T0_MS + t), cost);
            assert_eq!(d.reply_fields(), [ok, 3, rem, retry, reset], "at {t}");
            if let Some(n) = new { c = Some(n); }
        }
        // At the window's end the old count is gone.
        let (d, new) = decide(3, c, end + 10_000, at(end), 1);
        assert_eq!(d.reply_fields(), [1, 3, 2, 0, 10_000]);
        assert_eq!(new, Some(Counter { count: 1, end_ms: end + 10_000 }));
    }

    #[test]
    fn a_later_stored_window_keeps_its_count() {
        let stored = Some(Counter {
            count: 3,
            end_ms: T0_MS + 60_000,
        });
        // The clock stepped back into an earlier window: still 3 counted.
        let (d, _) = decide(3, stored, T0_MS + 10_000, at(T0_MS), 1);
        assert!(!d.allowed);
        assert_eq!(d.reply_fields()[3], 60_000);
    }

    #[test]
    fn refunds_never_go_below_fresh() {
        let stored = Some(Counter {
            count: 2,
            end_ms: T0_MS + 1_000,
        });
        let (d, ch) = refund(5, stored, at(T0_MS), 1);
        assert_eq!(d.reply_fields(), [1, 5, 4, 0, 1_000]);
        assert_eq!(
            ch,
            Change::Set(Counter {
                count: 1,
                end_ms: T0_MS + 1_000
            })
        );
        let (d, ch) = refund(5, stored, at(T0_MS), 99);
        assert_eq!(d.reply_fields(), [1, 5, 5, 0, 0]);
        assert_eq!(ch, Change::Clear);
        let (_, ch) = refund(5, None, at(T0_MS), 3);
        assert_eq!(ch, Change::None);
    }

    proptest! {
        /// Brute force: per window (from `bounds`), the admitted units never
        /// exceed the limit, and each decision matches the window's count.
        #[test]
        fn never_more_than_limit_per_window(
            limit in 1u64..8,
            len in prop_oneof![Just(1u64), 1u64..100, 100u64..5_000],
            steps in prop::collection::vec((0u64..1_500, 0u64..4), 1..80),
        ) {
            let cal = Calendar::Millis(len);
            let mut c: Option<Counter> = None;
            let mut admitted: Vec<(i64, u64)> = vec![];
            let mut now_ms = T0_MS;
            for (gap, cost) in steps {
                now_ms += gap;
                let now = at(now_ms) .saturating_add(Nanos::new(gap % 1_000_000));
                let (start, end) = bounds(&cal, (now.as_u64() / 1_000_000) as i64).unwrap();
                let used: u64 = admitted.iter().filter(|(s, _)| *s == start).map(|(_, u)| u).sum();
                let (d, new) = decide(limit, c, end as u64, now, cost);
                prop_assert_eq!(d.allowed, cost <= limit && used + cost <= limit);
                prop_assert_eq!(d.remaining, limit - used - if d.allowed { cost } else { 0 });
                if !d.allowed && cost <= limit {
                    // Exact: retry lands on the window's end.
                    let ms = d.reply_fields()[3] as u64;
                    prop_assert!(Nanos::from_millis(end as u64) <= now.saturating_add(Nanos::from_millis(ms)));
                    prop_assert!(Nanos::from_millis(end as u64) > now.saturating_add(Nanos::from_millis(ms - 1)));
                }
                if let Some(n) = new {
                    admitted.push((start, cost));
                    c = Some(n);
                }
                let per: u64 = admitted.iter().filter(|(s, _)| *s == start).map(|(_, u)| u).sum();
                prop_assert!(per <= limit);
            }
        }
    }
}
