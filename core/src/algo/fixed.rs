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

use super::{Answer, Change, RetryAfter};
use crate::time::Nanos;

/// A window's count and its end (exclusive). The end is the key's expiry,
/// which Redis keeps in whole milliseconds: the counter keeps it so too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    pub count: u64,
    pub(crate) end_ms: u64,
}

impl Counter {
    /// The count of a key that expires at `expiry_ms` (Unix milliseconds,
    /// as Redis keeps it), which is its window's end.
    pub fn from_key(count: u64, expiry_ms: u64) -> Counter {
        Counter {
            count,
            end_ms: expiry_ms,
        }
    }

    /// The window's end.
    pub fn end(&self) -> Nanos {
        Nanos::from_millis(self.end_ms)
    }

    /// The key's expiry it calls for: its window's end, in Unix
    /// milliseconds (what RL.SETSTATE and a lock's encoding carry).
    pub fn expiry_ms(&self) -> u64 {
        self.end_ms
    }
}

fn live(stored: Option<Counter>, now: Nanos) -> Option<Counter> {
    stored.filter(|c| Nanos::from_millis(c.end_ms) > now && c.count > 0)
}

fn until(end_ms: u64, now: Nanos) -> Nanos {
    Nanos::from_millis(end_ms).saturating_sub(now)
}

/// Decide on `cost` units at `now` in the window ending at `window_end`
/// (whole milliseconds, from `calendar::window_end`).
#[inline]
pub fn decide(
    limit: u64,
    stored: Option<Counter>,
    window_end: Nanos,
    now: Nanos,
    cost: u64,
) -> (Answer, Option<Counter>) {
    decide_ms(limit, stored, window_end.as_millis(), now, cost)
}

fn decide_ms(
    limit: u64,
    stored: Option<Counter>,
    window_end_ms: u64,
    now: Nanos,
    cost: u64,
) -> (Answer, Option<Counter>) {
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
        let d = Answer {
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
            let d = Answer {
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
            let d = Answer {
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
) -> (Answer, Change<Counter>) {
    let Some(c) = live(stored, now) else {
        let d = Answer {
            allowed: true,
            limit,
            remaining: limit,
            retry_after: RetryAfter::Now,
            reset_after: Nanos::ZERO,
        };
        return (d, Change::None);
    };
    let count = c.count.saturating_sub(units);
    let d = Answer {
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
    use crate::algo::calendar::{bounds, Calendar, Unit};
    use jiff::tz::TimeZone;
    use jiff::Timestamp;
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
            let (d, new) = decide_ms(3, c, end, at(T0_MS + t), cost);
            assert_eq!(d.reply_fields(), [ok, 3, rem, retry, reset], "at {t}");
            if let Some(n) = new { c = Some(n); }
        }
        // At the window's end the old count is gone.
        let (d, new) = decide_ms(3, c, end + 10_000, at(end), 1);
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
        let (d, _) = decide_ms(3, stored, T0_MS + 10_000, at(T0_MS), 1);
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

    // ---------------------------------------------- independent window bounds

    const MINUTE_MS: i64 = 60_000;
    const HOUR_MS: i64 = 3_600_000;
    const DAY_MS: i64 = 86_400_000;

    /// Zones with every kind of rule: none, DST forward and back by an hour
    /// (New York, London; Havana and Beirut change at midnight, so a day
    /// starts at 01:00 in spring), by half an hour (Lord Howe), half-hour
    /// and 45-minute offsets (Kolkata, Chatham).
    const ZONES: &[&str] = &[
        "UTC",
        "America/New_York",
        "Europe/London",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "America/Havana",
        "Asia/Beirut",
    ];

    /// The zone's UTC offset at `ms`, in ms (the tz database's answer).
    fn offset_ms(tz: &TimeZone, ms: i64) -> i64 {
        let ts = Timestamp::from_millisecond(ms).unwrap();
        i64::from(tz.to_offset(ts).seconds()) * 1000
    }

    /// (year, month) of a day count since 1970-01-01, by counting whole
    /// years and months (slow and plain: a second opinion on the module's
    /// arithmetic).
    fn year_month(mut days: i64) -> (i64, i64) {
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut y = 1970;
        while days < 0 {
            y -= 1;
            days += if leap(y) { 366 } else { 365 };
        }
        while days >= if leap(y) { 366 } else { 365 } {
            days -= if leap(y) { 366 } else { 365 };
            y += 1;
        }
        let mut m = 1;
        loop {
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            if days < len {
                return (y, m);
            }
            days -= len;
            m += 1;
        }
    }

    /// The window holding `now_ms` as the spec defines it, computed without
    /// the module's calendar code: lengths and UTC units are multiples since
    /// the epoch (weeks from Mondays); minutes and hours in a zone start at
    /// local boundaries with the offset in force at `now_ms`; days, weeks and
    /// months in a zone are the instants whose local date falls in the same
    /// day, Monday-based week or month, found by walking the clock back and
    /// forth an hour, then a minute, at a time (every offset and transition
    /// here is a whole number of minutes).
    fn spec_bounds(cal: &Calendar, now_ms: i64) -> (i64, i64) {
        let floor = |len: i64, shift: i64| {
            let local = now_ms + shift;
            let start = local - local.rem_euclid(len) - shift;
            (start, start + len)
        };
        let (unit, tz) = match cal {
            Calendar::Millis(len) => return floor(*len as i64, 0),
            Calendar::Unit(unit, tz) => (*unit, tz.clone().unwrap_or(TimeZone::UTC)),
        };
        match unit {
            Unit::Minute => return floor(MINUTE_MS, offset_ms(&tz, now_ms)),
            Unit::Hour => return floor(HOUR_MS, offset_ms(&tz, now_ms)),
            _ => {}
        }
        let key = |t: i64| {
            let day = (t + offset_ms(&tz, t)).div_euclid(DAY_MS);
            match unit {
                Unit::Day => day,
                // 1970-01-01 was a Thursday: Mondays are where day + 3 is a multiple of 7.
                Unit::Week => (day + 3).div_euclid(7),
                _ => {
                    let (y, m) = year_month(day);
                    y * 12 + m
                }
            }
        };
        let k = key(now_ms);
        let mut start = now_ms - now_ms.rem_euclid(MINUTE_MS);
        while key(start - HOUR_MS) == k {
            start -= HOUR_MS;
        }
        while key(start - MINUTE_MS) == k {
            start -= MINUTE_MS;
        }
        let mut end = start + MINUTE_MS;
        while key(end + HOUR_MS) == k {
            end += HOUR_MS;
        }
        while key(end) == k {
            end += MINUTE_MS;
        }
        (start, end)
    }

    /// A window shape: a length, or a unit in UTC or a zone.
    fn calendar() -> impl Strategy<Value = (Calendar, i64)> {
        let unit = prop_oneof![
            Just((Unit::Minute, MINUTE_MS)),
            Just((Unit::Hour, HOUR_MS)),
            Just((Unit::Day, DAY_MS)),
            Just((Unit::Week, 7 * DAY_MS)),
            Just((Unit::Month, 31 * DAY_MS)),
        ];
        prop_oneof![
            prop_oneof![
                Just(1i64),
                1i64..100,
                100i64..5_000,
                Just(MINUTE_MS),
                Just(DAY_MS)
            ]
            .prop_map(|len| (Calendar::Millis(len as u64), len)),
            (unit.clone(), any::<bool>()).prop_map(|((u, len), _)| (Calendar::Unit(u, None), len)),
            (unit, prop::sample::select(ZONES)).prop_map(|((u, len), zone)| {
                (Calendar::Unit(u, Some(TimeZone::get(zone).unwrap())), len)
            }),
        ]
    }

    /// A start: any instant of 1990..2100, or one shortly before one of
    /// the zone's clock changes (or its window's end).
    fn start(cal: &Calendar, year_offset_ms: i64, near_change: bool, before_ms: i64) -> i64 {
        let any = 631_152_000_000 + year_offset_ms; // 1990-01-01 + up to 110 years
        if !near_change {
            return any;
        }
        let change = match cal {
            Calendar::Unit(_, Some(tz)) => tz
                .following(Timestamp::from_millisecond(any).unwrap())
                .next()
                .map(|t| t.timestamp().as_millisecond()),
            _ => None,
        };
        change.unwrap_or_else(|| spec_bounds(cal, any).1) - before_ms
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// The module's window bounds (`calendar::bounds`) are the spec's,
        /// computed independently, in UTC and in zones across their clock
        /// changes.
        #[test]
        fn bounds_match_the_spec(
            (cal, len) in calendar(),
            year_offset in 0i64..3_471_000_000_000,
            near_change in prop::bool::weighted(0.8),
            before in 0i64..1_000_000,
        ) {
            // Up to a window's length before the change: the window holds it.
            let now = start(&cal, year_offset, near_change, len / 1_000_000 * before + len % 1_000_000 * before / 1_000_000);
            prop_assert_eq!(bounds(&cal, now), Some(spec_bounds(&cal, now)), "{:?} at {}", cal, now);
        }

    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Takes, peeks and refunds through `limit::evaluate` (bounds
        /// included) against a per-window ledger, with the window bounds
        /// computed independently of the module, in any time zone and
        /// across its clock changes; the key expires (as Redis would) at
        /// the window's end. Per window the admitted units never exceed the
        /// limit; every decision matches the ledger's count; retry_after
        /// lands exactly on the window's end; the state written is the new
        /// count with that end.
        #[test]
        fn never_more_than_limit_per_window(
            limit in 1u64..8,
            (cal, len) in calendar(),
            year_offset in 0i64..3_471_000_000_000,
            near_change in prop::bool::weighted(0.6),
            before in 0i64..3 * DAY_MS,
            steps in prop::collection::vec((0u32..3, 0u64..1_000_000, 0u64..4, prop::bool::weighted(0.15)), 1..60),
        ) {
            use crate::limit::Action;
            use crate::limit::{evaluate, Effect, Spec, Stored};
            let spec = Spec::Fixed { limit, calendar: cal.clone() };
            let mut now_ns = start(&cal, year_offset, near_change, before) as u64 * 1_000_000;
            let mut stored: Option<Counter> = None;
            let mut ledger: std::collections::HashMap<i64, u64> = Default::default();
            for (scale, frac, cost, is_refund) in steps {
                // Gaps of nothing, up to an eighth of a window, up to a window.
                let gap_ms = match scale {
                    0 => 0,
                    1 => (len as u64 / 8).max(1) * frac / 1_000_000,
                    _ => len as u64 * frac / 1_000_000,
                };
                now_ns += gap_ms * 1_000_000 + frac % 1_000_000;
                let now_ms = (now_ns / 1_000_000) as i64;
                // Redis deletes the key once its expiry has passed.
                if stored.is_some_and(|c| now_ms > c.end_ms as i64) {
                    stored = None;
                }
                let (start, end) = spec_bounds(&cal, now_ms);
                prop_assert!(start <= now_ms && now_ms < end);
                let used = ledger.get(&start).copied().unwrap_or(0);
                let until_end = Nanos::new(end as u64 * 1_000_000 - now_ns);
                let held = stored.map_or(Stored::Empty, Stored::Fixed);
                let action = if is_refund { Action::Refund } else { Action::Take };
                let (d, effect) = evaluate(held, &spec, Nanos::new(now_ns), cost, action).unwrap();
                let count = if is_refund {
                    let count = used.saturating_sub(cost);
                    prop_assert!(d.allowed);
                    let want = if used == 0 || cost == 0 {
                        Effect::None
                    } else if count == 0 {
                        Effect::Clear
                    } else {
                        Effect::Fixed { counter: Counter { count, end_ms: end as u64 }, new_end: false }
                    };
                    prop_assert_eq!(&effect, &want);
                    count
                } else {
                    let allowed = cost <= limit && used + cost <= limit;
                    prop_assert_eq!(d.allowed, allowed);
                    let count = if allowed { used + cost } else { used };
                    if !allowed {
                        let want = if cost > limit { RetryAfter::Never } else { RetryAfter::After(until_end) };
                        prop_assert_eq!(d.retry_after, want);
                        if cost <= limit {
                            // Exact: the window's end is `retry` ms away, not `retry - 1`.
                            let ms = d.reply_fields()[3] as u64;
                            prop_assert!(end as u64 * 1_000_000 <= now_ns + ms * 1_000_000);
                            prop_assert!(end as u64 * 1_000_000 > now_ns + (ms - 1) * 1_000_000);
                        }
                    }
                    let want = if allowed && cost > 0 {
                        let counter = Counter { count, end_ms: end as u64 };
                        Effect::Fixed { counter, new_end: stored.map(|c| c.end_ms) != Some(end as u64) }
                    } else {
                        Effect::None
                    };
                    prop_assert_eq!(&effect, &want);
                    count
                };
                prop_assert_eq!(d.remaining, limit - count);
                prop_assert_eq!(d.reset_after, if count > 0 { until_end } else { Nanos::ZERO });
                match effect {
                    Effect::Fixed { counter, .. } => stored = Some(counter),
                    Effect::Clear => stored = None,
                    _ => {}
                }
                ledger.insert(start, count);
                prop_assert!(count <= limit);
            }
        }
    }
}
