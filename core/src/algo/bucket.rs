//! The token bucket, kept as one absolute time: GCRA.
//!
//! A bucket of `limit` tokens refills one token every `interval`. Instead of
//! storing (tokens, last refill) it stores the instant `tat` at which the
//! bucket will be full again (the "theoretical arrival time" of GCRA): at
//! `now` it holds `(tolerance - (tat - now)) / interval` tokens, where
//! `tolerance = limit * interval` is the time a full refill takes. Taking
//! `cost` tokens moves `tat` forward by `cost * interval`. All of it is
//! integer nanoseconds, so waiting exactly the reported `retry_after` gets in
//! and a clock that steps back can only lower the tokens, never mint them.

use super::{Answer, Change, RetryAfter};
use crate::bounds::MAX_REFILL;
use crate::time::Nanos;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketError {
    /// `limit` is zero.
    ZeroLimit,
    /// `interval` is zero: more than one token per nanosecond.
    ZeroInterval,
    /// `limit * interval` is longer than [`MAX_REFILL`].
    TooLong,
}

/// The parameters of one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    limit: u64,
    interval: Nanos,
    tolerance: Nanos,
}

impl Bucket {
    /// `limit` tokens, one more every `interval`.
    pub fn new(limit: u64, interval: Nanos) -> Result<Bucket, BucketError> {
        if limit == 0 {
            return Err(BucketError::ZeroLimit);
        }
        if interval == Nanos::ZERO {
            return Err(BucketError::ZeroInterval);
        }
        let tolerance = limit
            .checked_mul(interval.as_u64())
            .map(Nanos::new)
            .filter(|t| *t <= MAX_REFILL)
            .ok_or(BucketError::TooLong)?;
        Ok(Bucket {
            limit,
            interval,
            tolerance,
        })
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn interval(&self) -> Nanos {
        self.interval
    }

    /// Whole tokens in the bucket when it is `used` short of full.
    fn tokens(&self, used: Nanos) -> u64 {
        self.tolerance.saturating_sub(used).as_u64() / self.interval.as_u64()
    }

    /// Decide on a request of `cost` tokens at `now`, given the stored `tat`
    /// (`None` for a fresh key). Returns the decision and, when the state
    /// changes, the new `tat` (the key then expires at that instant).
    pub fn decide(&self, tat: Option<Nanos>, now: Nanos, cost: u64) -> (Answer, Option<Nanos>) {
        // How far the bucket is from full, as time.
        let used = tat.unwrap_or(Nanos::ZERO).saturating_sub(now);
        if cost > self.limit {
            let decision = Answer {
                allowed: false,
                limit: self.limit,
                remaining: self.tokens(used),
                retry_after: RetryAfter::Never,
                reset_after: used,
            };
            return (decision, None);
        }
        // cost <= limit, so this is at most `tolerance`.
        let increment = Nanos::new(cost.saturating_mul(self.interval.as_u64()));
        let new_used = used.saturating_add(increment);
        if new_used <= self.tolerance {
            let decision = Answer {
                allowed: true,
                limit: self.limit,
                remaining: self.tokens(new_used),
                retry_after: RetryAfter::Now,
                reset_after: new_used,
            };
            let new_tat = (cost > 0).then(|| now.saturating_add(new_used));
            (decision, new_tat)
        } else {
            let decision = Answer {
                allowed: false,
                limit: self.limit,
                remaining: self.tokens(used),
                retry_after: RetryAfter::After(new_used.saturating_sub(self.tolerance)),
                reset_after: used,
            };
            (decision, None)
        }
    }
}

impl Bucket {
    /// Gives `units` tokens back (the work they paid for did not happen),
    /// never beyond a full bucket: a refund that fills it clears the state.
    pub fn refund(&self, tat: Option<Nanos>, now: Nanos, units: u64) -> (Answer, Change<Nanos>) {
        let used = tat.unwrap_or(Nanos::ZERO).saturating_sub(now);
        let back = Nanos::new(units.saturating_mul(self.interval.as_u64()));
        let new_used = used.saturating_sub(back);
        let decision = Answer {
            allowed: true,
            limit: self.limit,
            remaining: self.tokens(new_used),
            retry_after: RetryAfter::Now,
            reset_after: new_used,
        };
        let change = if used == Nanos::ZERO || units == 0 {
            Change::None
        } else if new_used == Nanos::ZERO {
            Change::Clear
        } else {
            Change::Set(now.saturating_add(new_used))
        };
        (decision, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;
    const MS: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    /// Replays rows of `(at_ms, cost, allowed, remaining, retry_ms, reset_ms)`
    /// against one bucket, carrying the state from row to row.
    fn replay(bucket: Bucket, rows: &[(u64, u64, i64, i64, i64, i64)]) {
        let mut tat = None;
        for (i, &(at_ms, cost, allowed, remaining, retry, reset)) in rows.iter().enumerate() {
            let now = Nanos::new(T0 + at_ms * MS);
            let (d, new) = bucket.decide(tat, now, cost);
            let f = d.reply_fields();
            assert_eq!(
                (f[0], f[2], f[3], f[4]),
                (allowed, remaining, retry, reset),
                "row {i}: at {at_ms} ms cost {cost}"
            );
            assert_eq!(f[1], bucket.limit as i64);
            if let Some(t) = new {
                tat = Some(t);
            }
        }
    }

    #[rustfmt::skip]
    #[test]
    fn ten_per_second_burst_of_ten() {
        // capacity 10, rate 10/s: one token every 100 ms.
        let b = Bucket::new(10, Nanos::new(100 * MS)).unwrap();
        replay(b, &[
            // at   cost ok rem retry reset
            (0,     1,   1, 9,  0,    100),
            (0,     9,   1, 0,  0,    1000),
            (0,     1,   0, 0,  100,  1000),
            (99,    1,   0, 0,  1,    901),
            (100,   1,   1, 0,  0,    1000),
            (100,   0,   1, 0,  0,    1000),   // a peek
            (150,   2,   0, 0,  150,  950),
            (1100,  0,   1, 10, 0,    0),      // full again
            (1100,  11,  0, 10, -1,   0),      // can never fit
            (1100,  10,  1, 0,  0,    1000),
        ]);
    }

    #[rustfmt::skip]
    #[test]
    fn slow_rates_and_sub_millisecond_intervals() {
        // capacity 1, one token every 2 s (rate 0.5/s).
        replay(Bucket::new(1, Nanos::new(2 * SEC)).unwrap(), &[
            (0,    1, 1, 0, 0,    2000),
            (1,    1, 0, 0, 1999, 1999),
            (2000, 1, 1, 0, 0,    2000),
        ]);
        // capacity 3, 3000/s: 333,334 ns per token.
        replay(Bucket::new(3, Nanos::new(333_334)).unwrap(), &[
            (0, 3, 1, 0, 0, 2),   // reset 1,000,002 ns -> 2 ms
            (0, 1, 0, 0, 1, 2),   // 333,334 ns -> 1 ms
            (1, 2, 1, 0, 0, 1),   // 666,670 ns still to refill
        ]);
    }

    #[test]
    fn clock_stepping_back_mints_nothing() {
        let b = Bucket::new(5, Nanos::new(SEC)).unwrap();
        let now = Nanos::new(T0);
        let (_, tat) = b.decide(None, now, 5);
        // The clock jumps back an hour: the bucket reads as emptier, not fuller.
        let back = Nanos::new(T0 - 3600 * SEC);
        let (d, new) = b.decide(tat, back, 1);
        assert!(!d.allowed);
        assert_eq!(new, None);
        assert_eq!(d.remaining, 0);
        let (peek, _) = b.decide(tat, back, 0);
        assert_eq!(peek.remaining, 0);
    }

    #[test]
    fn refunds_give_tokens_back_up_to_full() {
        let b = Bucket::new(10, Nanos::new(SEC)).unwrap();
        let now = Nanos::new(T0);
        let (_, tat) = b.decide(None, now, 4);
        let (d, ch) = b.refund(tat, now, 1);
        assert_eq!(d.reply_fields(), [1, 10, 7, 0, 3000]);
        assert_eq!(ch, Change::Set(Nanos::new(T0 + 3 * SEC)));
        // Too much back: full, and the key goes.
        let (d, ch) = b.refund(tat, now, 1_000);
        assert_eq!(d.reply_fields(), [1, 10, 10, 0, 0]);
        assert_eq!(ch, Change::Clear);
        // Nothing to give back to a full bucket.
        assert_eq!(b.refund(None, now, 3).1, Change::None);
    }

    #[test]
    fn rejects_impossible_buckets() {
        assert_eq!(Bucket::new(0, Nanos::new(1)), Err(BucketError::ZeroLimit));
        assert_eq!(Bucket::new(1, Nanos::ZERO), Err(BucketError::ZeroInterval));
        assert_eq!(
            Bucket::new(u64::MAX, Nanos::new(2)),
            Err(BucketError::TooLong)
        );
        assert!(Bucket::new(1, MAX_REFILL).is_ok());
    }

    #[test]
    fn far_future_state_does_not_overflow() {
        let b = Bucket::new(10, Nanos::new(SEC)).unwrap();
        let (d, new) = b.decide(Some(Nanos::MAX), Nanos::new(T0), 1);
        assert!(!d.allowed);
        assert_eq!(new, None);
        assert!(d.reply_fields()[3] > 0);
    }

    /// The brute-force oracle: the whole admission history, and the token
    /// count it implies, in units of `interval`-nanoseconds. A bucket that
    /// starts full has, at `t`, `min(L*T, min over admissions s <= t of
    /// (L*T + (t - s) - T * admitted in [s, t]))` tokens-times-T.
    struct Oracle {
        limit: u64,
        interval: u64,
        admitted: Vec<(u64, u64)>,
    }

    impl Oracle {
        fn tokens_times_interval(&self, t: u64) -> i128 {
            let full = i128::from(self.limit) * i128::from(self.interval);
            let mut best = full;
            for (i, &(s, _)) in self.admitted.iter().enumerate() {
                let units: u64 = self.admitted[i..].iter().map(|&(_, c)| c).sum();
                let v = full + i128::from(t - s) - i128::from(units) * i128::from(self.interval);
                best = best.min(v);
            }
            best
        }

        fn allows(&self, t: u64, cost: u64) -> bool {
            self.tokens_times_interval(t) >= i128::from(cost) * i128::from(self.interval)
        }
    }

    fn steps() -> impl Strategy<Value = Vec<(u64, u64)>> {
        // (gap in ns, cost): gaps from "same instant" to several intervals.
        prop::collection::vec(
            (prop_oneof![Just(0u64), 0u64..3_000_000_000], 0u64..6),
            1..60,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Every decision equals the oracle's, and the admitted total over
        /// every interval stays within limit + elapsed / interval.
        #[test]
        fn matches_brute_force_oracle(
            limit in 1u64..8,
            interval in prop_oneof![Just(1u64), 1u64..2_000, 1_000_000u64..1_000_000_000],
            steps in steps(),
        ) {
            let bucket = Bucket::new(limit, Nanos::new(interval)).unwrap();
            let mut oracle = Oracle { limit, interval, admitted: vec![] };
            let mut tat = None;
            let mut t = T0;
            for (gap, cost) in steps {
                t += gap;
                let (d, new) = bucket.decide(tat, Nanos::new(t), cost);
                let expect = cost <= limit && oracle.allows(t, cost);
                prop_assert_eq!(d.allowed, expect, "at {} cost {}", t, cost);
                // remaining: whole tokens left after this call
                let left = oracle.tokens_times_interval(t) - if d.allowed { i128::from(cost * interval) } else { 0 };
                prop_assert_eq!(d.remaining as i128, left.max(0) / i128::from(interval));
                if d.allowed && cost > 0 {
                    oracle.admitted.push((t, cost));
                    tat = new;
                } else {
                    prop_assert_eq!(new, None);
                }
                // The (sigma, rho) bound over every interval [a, b] of admissions.
                for (i, &(a, _)) in oracle.admitted.iter().enumerate() {
                    let total: u64 = oracle.admitted[i..].iter().map(|&(_, c)| c).sum();
                    let elapsed = t - a;
                    prop_assert!(u128::from(total) * u128::from(interval) <= u128::from(limit) * u128::from(interval) + u128::from(elapsed));
                }
            }
        }

        /// Takes, peeks and refunds against the textbook token bucket:
        /// whole tokens and the time spent refilling the next one, a token
        /// added each `interval` (one at a time, brute force) until full,
        /// refunds adding tokens back up to full. Every decision, the state
        /// written (or cleared, or left alone) and the replied waits match it.
        #[test]
        fn refunds_match_the_textbook_bucket(
            limit in 1u64..8,
            interval in prop_oneof![Just(1u64), 1u64..2_000, 1_000_000u64..1_000_000_000],
            steps in prop::collection::vec(
                (prop_oneof![Just(0u64), 0u64..3_000_000_000], 0u64..9, prop::bool::weighted(0.3)),
                1..60,
            ),
        ) {
            let bucket = Bucket::new(limit, Nanos::new(interval)).unwrap();
            // The textbook bucket: whole tokens, and ns spent on the next one.
            let (mut tokens, mut progress) = (limit, 0u64);
            let mut tat: Option<Nanos> = None;
            let mut t = T0;
            for (gap, units, is_refund) in steps {
                t += gap;
                // Refill, one token at a time.
                if tokens < limit {
                    progress += gap;
                    while progress >= interval && tokens < limit {
                        progress -= interval;
                        tokens += 1;
                    }
                    if tokens == limit {
                        progress = 0;
                    }
                }
                // Until full again: the rest of this token, then the others.
                let to_full = |tokens: u64, progress: u64| if tokens == limit { 0 } else { (limit - tokens) * interval - progress };
                let now = Nanos::new(t);
                if is_refund {
                    let (d, change) = bucket.refund(tat, now, units);
                    let was_full = tokens == limit;
                    tokens = (tokens + units).min(limit);
                    if tokens == limit {
                        progress = 0;
                    }
                    prop_assert!(d.allowed);
                    prop_assert_eq!(d.remaining, tokens);
                    prop_assert_eq!(d.reset_after, Nanos::new(to_full(tokens, progress)));
                    let want = if was_full || units == 0 {
                        Change::None
                    } else if tokens == limit {
                        Change::Clear
                    } else {
                        Change::Set(Nanos::new(t + to_full(tokens, progress)))
                    };
                    prop_assert_eq!(&change, &want);
                    match change {
                        Change::Set(n) => tat = Some(n),
                        Change::Clear => tat = None,
                        Change::None => {}
                    }
                } else {
                    let (d, new) = bucket.decide(tat, now, units);
                    let allowed = units <= tokens;
                    prop_assert_eq!(d.allowed, allowed);
                    if allowed {
                        tokens -= units;
                        prop_assert_eq!(d.retry_after, RetryAfter::Now);
                    } else if units > limit {
                        prop_assert_eq!(d.retry_after, RetryAfter::Never);
                    } else {
                        // The rest of this token, then the missing others.
                        let wait = (units - tokens) * interval - progress;
                        prop_assert_eq!(d.retry_after, RetryAfter::After(Nanos::new(wait)));
                    }
                    prop_assert_eq!(d.remaining, tokens);
                    prop_assert_eq!(d.reset_after, Nanos::new(to_full(tokens, progress)));
                    if allowed && units > 0 {
                        prop_assert_eq!(new, Some(Nanos::new(t + to_full(tokens, progress))));
                        tat = new;
                    } else {
                        prop_assert_eq!(new, None);
                    }
                }
            }
        }

        /// A clock that steps back mints nothing: at an earlier instant the
        /// bucket holds no more than at the later one, and what is allowed
        /// then would be allowed later too.
        #[test]
        fn a_clock_stepping_back_mints_nothing(
            limit in 1u64..8,
            interval in prop_oneof![1u64..2_000, 1_000_000u64..1_000_000_000],
            pre in prop::collection::vec((0u64..2_000_000_000, 1u64..9), 0..20),
            back in 0u64..10_000_000_000,
            cost in 0u64..9,
        ) {
            let bucket = Bucket::new(limit, Nanos::new(interval)).unwrap();
            let mut tat = None;
            let mut t = T0;
            for (gap, c) in pre {
                t += gap;
                if let (_, Some(n)) = bucket.decide(tat, Nanos::new(t), c) { tat = Some(n); }
            }
            let peek = |at: u64| bucket.decide(tat, Nanos::new(at), 0).0.remaining;
            prop_assert!(peek(t - back) <= peek(t));
            let (later, _) = bucket.decide(tat, Nanos::new(t), cost);
            let (earlier, new) = bucket.decide(tat, Nanos::new(t - back), cost);
            prop_assert!(!earlier.allowed || later.allowed);
            if let Some(n) = new {
                // An admission then is recorded no earlier than one now would be.
                prop_assert!(tat.map_or(true, |old| n > old));
            }
        }

        /// retry_after is exact: waiting that long gets in, 1 ms less does not.
        #[test]
        fn retry_after_is_exact(
            limit in 1u64..10,
            interval in prop_oneof![1u64..5_000_000, 5_000_000u64..5_000_000_000],
            pre in prop::collection::vec((0u64..2_000_000_000, 1u64..10), 0..20),
            cost in 1u64..10,
        ) {
            let bucket = Bucket::new(limit, Nanos::new(interval)).unwrap();
            let mut tat = None;
            let mut t = T0;
            for (gap, c) in pre {
                t += gap;
                if let (_, Some(n)) = bucket.decide(tat, Nanos::new(t), c) { tat = Some(n); }
            }
            let now = Nanos::new(t);
            let (d, _) = bucket.decide(tat, now, cost);
            match d.retry_after {
                RetryAfter::Now => prop_assert!(d.allowed),
                RetryAfter::Never => prop_assert!(cost > limit),
                RetryAfter::After(_) => {
                    let ms = d.reply_fields()[3] as u64;
                    prop_assert!(ms >= 1);
                    let (later, _) = bucket.decide(tat, Nanos::new(t + ms * MS), cost);
                    prop_assert!(later.allowed);
                    let (earlier, _) = bucket.decide(tat, Nanos::new(t + (ms - 1) * MS), cost);
                    prop_assert!(!earlier.allowed);
                }
            }
            // reset_after: after that long the bucket is full.
            let reset = d.reply_fields()[4] as u64;
            let (full, _) = bucket.decide(tat, Nanos::new(t + reset * MS), 0);
            prop_assert_eq!(full.remaining, limit);
        }
    }
}
