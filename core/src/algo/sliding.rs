//! The exact sliding window: the decision on a [`Log`].
//!
//! A request of `cost` units at `now` is allowed when the units admitted in
//! the last `span` (the half-open interval `(now - span, now]`) plus `cost`
//! stay within `limit`. So no interval of length `span` ever holds more than
//! `limit` admitted units: the fixed-window flaw (19 through in 21 s at
//! 10/min) cannot happen. Past `max_entries` a new admission is merged into
//! the newest entry, whose instant moves forward to now: its units then
//! expire later than they would, so a full log can only under-admit, never
//! over-admit.
//!
//! Deciding never mutates: [`decide`] reads the log and returns an
//! [`Update`]; [`Log::apply`] performs it. The same `Update`, replicated,
//! gives a replica the same bytes.

use super::{Answer, RetryAfter};
use crate::time::Nanos;

pub use super::log::{DecodeError, Log, Refund, Update};

/// The parameters of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    /// The window's length: whole microseconds (the log's unit), at most
    /// `MAX_SPAN_US` of them.
    pub span: Nanos,
    /// Entries kept before new admissions are merged into the newest one.
    pub max_entries: u32,
}

/// Decide on a request of `cost` units at `now` against `log` (`None` for
/// a fresh key). Returns the decision and, if allowed with a cost, the
/// update to apply and replicate. The log counts whole microseconds.
#[inline]
pub fn decide(log: Option<&Log>, w: &Window, now: Nanos, cost: u64) -> (Answer, Option<Update>) {
    decide_us(log, w, now.as_micros(), cost)
}

fn decide_us(log: Option<&Log>, w: &Window, now_us: u64, cost: u64) -> (Answer, Option<Update>) {
    let span = w.span.as_micros();
    let (live, live_entries, last) = match log {
        Some(l) => {
            let e = l.expired_at(now_us, span);
            (
                l.total.saturating_sub(e.units),
                l.entries - e.entries.min(l.entries),
                l.last,
            )
        }
        None => (0, 0, 0),
    };
    // Time until the newest live entry leaves the window.
    let reset_us = if live > 0 {
        last.saturating_add(span).saturating_sub(now_us)
    } else {
        0
    };
    let remaining_now = w.limit.saturating_sub(live);
    if cost > w.limit {
        let d = Answer {
            allowed: false,
            limit: w.limit,
            remaining: remaining_now,
            retry_after: RetryAfter::Never,
            reset_after: Nanos::from_micros(reset_us),
        };
        return (d, None);
    }
    if live.saturating_add(cost) <= w.limit {
        if cost == 0 {
            let d = Answer {
                allowed: true,
                limit: w.limit,
                remaining: remaining_now,
                retry_after: RetryAfter::Now,
                reset_after: Nanos::from_micros(reset_us),
            };
            return (d, None);
        }
        // A clock that stepped back records at the newest instant: entries
        // stay in order and old units only expire later.
        let at = if live > 0 { now_us.max(last) } else { now_us };
        let coalesce = live_entries >= w.max_entries.max(1) && at > last;
        let d = Answer {
            allowed: true,
            limit: w.limit,
            remaining: remaining_now - cost,
            retry_after: RetryAfter::Now,
            reset_after: Nanos::from_micros(at.saturating_add(span).saturating_sub(now_us)),
        };
        let u = Update {
            now_us,
            span_us: span,
            at_us: at,
            units: cost,
            coalesce,
        };
        return (d, Some(u));
    }
    // Denied: wait until the oldest live units that cover the excess expire.
    let excess = live.saturating_add(cost) - w.limit;
    let mut wait_us = 0;
    if let Some(l) = log {
        let mut covered = 0u64;
        l.walk(|t, count| {
            if t.saturating_add(span) <= now_us {
                return true;
            }
            covered = covered.saturating_add(count);
            if covered >= excess {
                wait_us = t.saturating_add(span) - now_us;
                return false;
            }
            true
        });
    }
    let d = Answer {
        allowed: false,
        limit: w.limit,
        remaining: remaining_now,
        retry_after: RetryAfter::After(Nanos::from_micros(wait_us)),
        reset_after: Nanos::from_micros(reset_us),
    };
    (d, None)
}

/// Gives `units` back to the window (the work did not happen), taking them
/// from the newest admissions; never beyond an empty window.
pub fn refund(log: Option<&Log>, w: &Window, now: Nanos, units: u64) -> (Answer, Option<Refund>) {
    refund_us(log, w, now.as_micros(), units)
}

fn refund_us(log: Option<&Log>, w: &Window, now_us: u64, units: u64) -> (Answer, Option<Refund>) {
    let span = w.span.as_micros();
    let mut list = log.map(|l| l.entry_list()).unwrap_or_default();
    list.retain(|&(t, _)| t.saturating_add(span) > now_us);
    let live: u64 = list.iter().map(|&(_, c)| c).sum();
    let mut left = units.min(live);
    let back = left;
    while left > 0 {
        let Some(last) = list.last_mut() else { break };
        let take = last.1.min(left);
        last.1 -= take;
        left -= take;
        if last.1 == 0 {
            list.pop();
        }
    }
    let reset_us = list
        .last()
        .map_or(0, |&(t, _)| t.saturating_add(span).saturating_sub(now_us));
    let d = Answer {
        allowed: true,
        limit: w.limit,
        remaining: w.limit.saturating_sub(live - back),
        retry_after: RetryAfter::Now,
        reset_after: Nanos::from_micros(reset_us),
    };
    let r = (back > 0).then_some(Refund {
        now_us,
        span_us: span,
        units,
        from_us: None,
    });
    (d, r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::log::FORMAT_V1;
    use crate::bounds::MAX_SPAN_US;
    use proptest::prelude::*;

    const MS: u64 = 1_000;
    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn window(limit: u64, span_us: u64) -> Window {
        Window {
            limit,
            span: Nanos::from_micros(span_us),
            max_entries: u32::MAX,
        }
    }

    /// Rows of `(at_ms, cost, allowed, remaining, retry_ms, reset_ms)`.
    fn replay(w: Window, rows: &[(u64, u64, i64, i64, i64, i64)]) -> Option<Log> {
        let mut log: Option<Log> = None;
        for (i, &(at_ms, cost, allowed, remaining, retry, reset)) in rows.iter().enumerate() {
            let now = T0 + at_ms * MS;
            let (d, u) = decide_us(log.as_ref(), &w, now, cost);
            let f = d.reply_fields();
            assert_eq!(
                (f[0], f[1], f[2], f[3], f[4]),
                (allowed, w.limit as i64, remaining, retry, reset),
                "row {i}"
            );
            if let Some(u) = u {
                match log.as_mut() {
                    Some(l) => l.apply(&u),
                    None => log = Some(Log::from_update(&u)),
                }
            }
            if let Some(l) = &log {
                let mut enc = vec![];
                l.encode(&mut enc);
                assert_eq!(
                    Log::decode(&enc).map(|d| (d.first, d.last, d.total, d.entries)),
                    Ok((l.first, l.last, l.total, l.entries))
                );
            }
        }
        log
    }

    #[rustfmt::skip]
    #[test]
    fn ten_per_minute_never_lets_nineteen_through() {
        // The fixed-window flaw: 10 at 0:59 and 10 more at 1:00. Here the
        // second burst waits until the first leaves the window.
        replay(window(10, 60 * SEC), &[
            // at ms   cost ok rem retry   reset
            (59_000,   10,  1, 0,  0,      60_000),
            (60_000,   1,   0, 0,  59_000, 59_000),
            (80_000,   1,   0, 0,  39_000, 39_000),
            (118_999,  1,   0, 0,  1,      1),
            (119_000,  1,   1, 9,  0,      60_000),
            (119_000,  0,   1, 9,  0,      60_000),  // a peek
            (119_000,  11,  0, 9,  -1,     60_000),
        ]);
    }

    #[rustfmt::skip]
    #[test]
    fn retry_waits_for_enough_units_to_expire() {
        replay(window(5, SEC), &[
            (0,    2, 1, 3, 0,    1000),
            (100,  2, 1, 1, 0,    1000),
            (200,  1, 1, 0, 0,    1000),
            (300,  3, 0, 0, 800,  900),   // needs the 100 ms entry gone too
            (1000, 3, 0, 2, 100,  200),   // first entry left at 1000
            (1100, 3, 1, 1, 0,    1000),
        ]);
    }

    #[test]
    fn sub_millisecond_times_round_retry_up() {
        let w = window(1, 250 * MS);
        let (_, u) = decide_us(None, &w, T0 + 300, 1);
        let log = Log::from_update(&u.unwrap());
        let (d, _) = decide_us(Some(&log), &w, T0 + 1_000, 1);
        // 249.3 ms to wait -> 250 ms
        assert_eq!(d.reply_fields()[3], 250);
        assert!(decide_us(Some(&log), &w, T0 + 1_000 + 249_300, 1).0.allowed);
        assert!(!decide_us(Some(&log), &w, T0 + 1_000 + 249_299, 1).0.allowed);
    }

    #[test]
    fn full_log_merges_into_the_newest_entry() {
        let w = Window {
            limit: 100,
            span: Nanos::from_micros(10 * SEC),
            max_entries: 3,
        };
        let mut log: Option<Log> = None;
        for i in 0..6u64 {
            let (d, u) = decide_us(log.as_ref(), &w, T0 + i * SEC, 1);
            assert!(d.allowed);
            let u = u.unwrap();
            assert_eq!(u.coalesce, i >= 3);
            match log.as_mut() {
                Some(l) => l.apply(&u),
                None => log = Some(Log::from_update(&u)),
            }
        }
        let log = log.unwrap();
        assert_eq!((log.entries, log.total, log.last), (3, 6, T0 + 5 * SEC));
        // The merged units expire with the newest instant: later, never earlier.
        let (d, _) = decide_us(Some(&log), &w, T0 + 12 * SEC, 0);
        assert_eq!(d.remaining, 100 - 4);
    }

    #[test]
    fn refunds_take_back_the_newest_units() {
        let w = window(10, 10 * SEC);
        let mut log = Log::from_update(&decide_us(None, &w, T0, 2).1.unwrap());
        log.apply(&decide_us(Some(&log), &w, T0 + SEC, 3).1.unwrap());
        let (d, r) = refund_us(Some(&log), &w, T0 + 2 * SEC, 4);
        // 1 unit left, from the oldest admission: the window empties at T0 + 10 s.
        assert_eq!(d.reply_fields(), [1, 10, 9, 0, 8_000]);
        log.apply_refund(&r.unwrap());
        assert_eq!((log.total, log.entries, log.last), (1, 1, T0));
        // Over-refunding empties the log, never below.
        let (d, r) = refund_us(Some(&log), &w, T0 + 2 * SEC, 50);
        assert_eq!(d.reply_fields(), [1, 10, 10, 0, 0]);
        log.apply_refund(&r.unwrap());
        assert!(log.is_empty());
        assert_eq!(refund_us(None, &w, T0, 1).1, None);
    }

    /// Found by the RESTORE fuzz: a restored log with u64::MAX units made
    /// the next request overflow (an internal error, not a decision).
    #[test]
    fn absurd_unit_counts_are_refused_and_never_overflow() {
        let mut bytes = vec![FORMAT_V1];
        bytes.extend_from_slice(&(1u64 << 55).to_le_bytes());
        bytes.extend_from_slice(&[
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert_eq!(Log::decode(&bytes), Err(DecodeError::Malformed));
        // Even a log built past that bound decides without overflow.
        let mut log = Log::from_update(&Update {
            now_us: 1 << 55,
            span_us: 1,
            at_us: 1 << 55,
            units: u64::MAX,
            coalesce: false,
        });
        log.apply(&Update {
            now_us: 1 << 55,
            span_us: MAX_SPAN_US,
            at_us: 1 << 55,
            units: 5,
            coalesce: false,
        });
        let w = Window {
            limit: i64::MAX as u64,
            span: Nanos::from_micros(MAX_SPAN_US),
            max_entries: 10,
        };
        let (d, _) = decide_us(Some(&log), &w, 1 << 55, 3);
        assert!(!d.allowed);
        assert!(
            !decide_us(Some(&log), &Window { limit: 5, ..w }, 1 << 55, 1)
                .0
                .allowed
        );
    }

    /// One admission in the brute-force model: its index in the whole
    /// history (which keeps the instant it was decided at), the instant its
    /// units are recorded at (later when the clock stepped back or a full
    /// log merged it), and its units (fewer after a refund).
    #[derive(Debug, Clone)]
    struct Admission {
        id: usize,
        recorded: u64,
        units: u64,
    }

    /// The window as the spec describes it, kept as a plain list:
    /// admissions leave when an update or refund at `now` finds them
    /// expired (`recorded + span <= now`); a new admission is recorded at
    /// `now`, or at the newest live entry if the clock stepped back before
    /// it; a log holding `max_entries` live instants merges a later
    /// admission into its newest one, which moves forward to `now`;
    /// refunds take units back from the newest admissions.
    struct Model {
        limit: u64,
        span: u64,
        kept: Vec<Admission>,
    }

    impl Model {
        fn live(&self, now: u64) -> impl Iterator<Item = &Admission> {
            self.kept
                .iter()
                .filter(move |a| a.recorded + self.span > now)
        }
        fn live_units(&self, now: u64) -> u64 {
            self.live(now).map(|a| a.units).sum()
        }
        fn newest_live(&self, now: u64) -> Option<u64> {
            self.live(now).map(|a| a.recorded).max()
        }
        /// Distinct recorded instants among the live admissions.
        fn live_entries(&self, now: u64) -> usize {
            let mut t: Vec<u64> = self.live(now).map(|a| a.recorded).collect();
            t.dedup();
            t.len()
        }
        /// Microseconds until `cost` more fits, if nothing else is admitted.
        fn wait(&self, now: u64, cost: u64) -> u64 {
            let mut candidates: Vec<u64> = self
                .live(now)
                .map(|a| a.recorded + self.span - now)
                .collect();
            candidates.sort();
            candidates
                .into_iter()
                .find(|&w| self.live_units(now + w) + cost <= self.limit)
                .unwrap_or(0)
        }
        fn trim(&mut self, now: u64) {
            let span = self.span;
            self.kept.retain(|a| a.recorded + span > now);
        }
        /// The log's entries: (instant, units), oldest first.
        fn entries(&self) -> Vec<(u64, u64)> {
            let mut out: Vec<(u64, u64)> = vec![];
            for a in self.kept.iter().filter(|a| a.units > 0) {
                match out.last_mut() {
                    Some(last) if last.0 == a.recorded => last.1 += a.units,
                    _ => out.push((a.recorded, a.units)),
                }
            }
            out
        }
    }

    /// One step of the generated history: move the clock (forward, or
    /// back), then take `cost` units (0: a peek) or refund them.
    #[derive(Debug, Clone)]
    struct Step {
        gap_us: i64,
        cost: u64,
        refund: bool,
    }

    fn steps(span_us: u64) -> impl Strategy<Value = Vec<Step>> {
        let back = span_us as i64 * 2;
        let gap = prop_oneof![
            6 => prop_oneof![Just(0i64), 0i64..300, 0i64..3_000_000],
            1 => -back..=0i64,
        ];
        prop::collection::vec(
            (gap, 0u64..5, prop::bool::weighted(0.15)).prop_map(|(gap_us, cost, refund)| Step {
                gap_us,
                cost,
                refund,
            }),
            1..80,
        )
    }

    fn case() -> impl Strategy<Value = (u64, u64, u32, Vec<Step>)> {
        (
            1u64..12,
            prop_oneof![Just(1u64), 1u64..50, 50u64..5_000],
            prop_oneof![Just(u32::MAX), 1u32..5],
        )
            .prop_flat_map(|(limit, span_ms, max_entries)| {
                (
                    Just(limit),
                    Just(span_ms),
                    Just(max_entries),
                    steps(span_ms * MS),
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        /// Every decision, admission instant and refund against the
        /// brute-force model, with capped logs (`max_entries` 1 to 4), a
        /// clock that steps back and refunds:
        /// - allowed, remaining, retry_after (exact: waiting that long gets
        ///   in, 1 ms less does not) and reset_after are the model's;
        /// - an admission is recorded at `now`; only when the clock stepped
        ///   back before the newest live entry is it recorded later, at that
        ///   entry (never earlier); a full log merges it (and moves its
        ///   newest entry forward, never back);
        /// - the log holds exactly the model's entries, at most `limit` and
        ///   at most `max_entries` of them; its encoding round-trips; the
        ///   update or refund replayed on a copy gives the same bytes;
        /// - while the clock only moves forward, no interval of length
        ///   `span` holds more than `limit` units admitted in it (by the
        ///   instants they were decided at, refunds deducted).
        #[test]
        fn matches_brute_force_oracle((limit, span_ms, max_entries, steps) in case()) {
            let w = Window { limit, span: Nanos::from_micros(span_ms * MS), max_entries };
            let span = w.span.as_micros();
            let mut model = Model { limit, span, kept: vec![] };
            // Every admission ever made: (decided at, units after refunds).
            let mut history: Vec<(u64, u64)> = vec![];
            let mut log: Option<Log> = None;
            let mut replica: Option<Log> = None;
            let mut now = T0;
            let mut monotonic = true;
            for Step { gap_us, cost, refund: is_refund } in steps {
                monotonic &= gap_us >= 0;
                now = now.saturating_add_signed(gap_us);
                let live = model.live_units(now);
                let newest = model.newest_live(now);
                if is_refund {
                    let (d, r) = refund_us(log.as_ref(), &w, now, cost);
                    let back = cost.min(live);
                    prop_assert!(d.allowed);
                    prop_assert_eq!(d.remaining, limit.saturating_sub(live - back));
                    prop_assert_eq!(r.is_some(), back > 0);
                    let Some(r) = r else {
                        prop_assert_eq!(d.reset_after, Nanos::from_micros(newest.map_or(0, |t| t + span - now)));
                        continue;
                    };
                    prop_assert_eq!(r, Refund { now_us: now, span_us: span, units: cost, from_us: None });
                    model.trim(now);
                    let mut left = cost;
                    for a in model.kept.iter_mut().rev() {
                        let take = a.units.min(left);
                        a.units -= take;
                        left -= take;
                        history[a.id].1 = a.units;
                    }
                    model.kept.retain(|a| a.units > 0);
                    let reset = model.newest_live(now).map_or(0, |t| t + span - now);
                    prop_assert_eq!(d.reset_after, Nanos::from_micros(reset));
                    for l in [&mut log, &mut replica] {
                        if let Some(l) = l.as_mut() {
                            l.apply_refund(&r);
                        }
                    }
                } else {
                    let (d, u) = decide_us(log.as_ref(), &w, now, cost);
                    let allowed = cost <= limit && live + cost <= limit;
                    prop_assert_eq!(d.allowed, allowed);
                    prop_assert_eq!(d.remaining, limit.saturating_sub(live) - if allowed { cost } else { 0 });
                    if !allowed && cost <= limit {
                        let wait = model.wait(now, cost);
                        prop_assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_micros(wait)));
                        let ms = d.reply_fields()[3] as u64;
                        // Exact: allowed after ms, not after ms - 1 (no other traffic).
                        prop_assert!(model.live_units(now + ms * MS) + cost <= limit);
                        prop_assert!(model.live_units(now + (ms - 1) * MS) + cost > limit);
                    }
                    if !allowed || cost == 0 {
                        prop_assert_eq!(u, None);
                        prop_assert_eq!(d.reset_after, Nanos::from_micros(newest.map_or(0, |t| t + span - now)));
                        continue;
                    }
                    let Some(u) = u else { return Err(TestCaseError::fail("allowed with a cost, but no update")) };
                    // The admission's instant: now, unless the clock stepped
                    // back before the newest live entry; never earlier.
                    let at = match newest {
                        Some(t) if t > now => t,
                        _ => now,
                    };
                    prop_assert_eq!(u.at_us, at);
                    prop_assert!(u.at_us >= now);
                    let merge = model.live_entries(now) >= max_entries.max(1) as usize && newest.is_some_and(|t| at > t);
                    prop_assert_eq!(u.coalesce, merge);
                    prop_assert_eq!((u.now_us, u.span_us, u.units), (now, span, cost));
                    prop_assert_eq!(d.reset_after, Nanos::from_micros(at + span - now));
                    model.trim(now);
                    if merge {
                        // The newest entry's units move forward to `at`: later, never earlier.
                        let newest = newest.unwrap_or(at);
                        for a in model.kept.iter_mut().filter(|a| a.recorded == newest) {
                            prop_assert!(at > a.recorded);
                            a.recorded = at;
                        }
                    }
                    model.kept.push(Admission { id: history.len(), recorded: at, units: cost });
                    history.push((now, cost));
                    for l in [&mut log, &mut replica] {
                        match l.as_mut() {
                            Some(l) => l.apply(&u),
                            None => *l = Some(Log::from_update(&u)),
                        }
                    }
                }
                // The log is the model's, byte for byte on the replica.
                let want = model.entries();
                match (&log, &replica) {
                    (Some(l), Some(r)) => {
                        prop_assert_eq!(l.entry_list(), want.clone());
                        prop_assert_eq!(l.total, want.iter().map(|e| e.1).sum::<u64>());
                        let (mut a, mut b) = (vec![], vec![]);
                        l.encode(&mut a);
                        r.encode(&mut b);
                        prop_assert_eq!(&a, &b);
                        if !l.is_empty() {
                            let back = Log::decode(&a).unwrap();
                            prop_assert_eq!((back.first, back.last, back.total, back.entries), (l.first, l.last, l.total, l.entries));
                        }
                        prop_assert!(l.entries as u64 <= limit);
                        prop_assert!(l.entries <= max_entries.max(1));
                    }
                    (None, None) => prop_assert!(want.is_empty()),
                    _ => return Err(TestCaseError::fail("master and replica disagree on the key's existence")),
                }
                if log.as_ref().is_some_and(Log::is_empty) {
                    // An empty log is deleted, never stored.
                    log = None;
                    replica = None;
                }
                // Any interval [a, a + span) of decision instants holds at
                // most `limit` units (a clock that only moved forward).
                if monotonic {
                    for &(a, _) in &history {
                        let inside: u64 = history.iter().filter(|x| x.0 >= a && x.0 < a + span).map(|x| x.1).sum();
                        prop_assert!(inside <= limit, "{} units decided in [{}, {} + span)", inside, a, a);
                    }
                }
            }
        }
    }
}
