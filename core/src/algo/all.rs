//! Several limits, one decision: all or nothing.
//!
//! Each limit decides on its own state; the request is allowed only if
//! every limit allows, and then every limit's change is kept. If any limit
//! denies, no change is kept at all, so no limit spends units on a request
//! another one refused.

use super::{Answer, RetryAfter};

/// Combines per-limit decisions (with the change each would make). Returns
/// the index of the binding limit, its decision, and the changes to apply:
/// all of them if every limit allowed, none otherwise.
///
/// The binding limit is, when denied, the denying limit that allows last (a
/// never-allowing one first of all): its `retry_after` is the wait after
/// which every limit allows. When allowed, it is the limit with the least
/// remaining. Ties go to the earlier limit. `None` for no limits.
pub fn combine<E>(evaluated: Vec<(Answer, E)>) -> Option<(usize, Answer, Vec<E>)> {
    let index = binding(evaluated.iter().map(|(d, _)| d))?;
    let decision = evaluated.get(index).map(|(d, _)| *d)?;
    let changes = if evaluated.iter().all(|(d, _)| d.allowed) {
        evaluated.into_iter().map(|(_, e)| e).collect()
    } else {
        Vec::new()
    };
    Some((index, decision, changes))
}

fn wait(d: &Answer) -> u128 {
    match d.retry_after {
        RetryAfter::Never => u128::MAX,
        RetryAfter::After(s) => u128::from(s.as_u64()),
        RetryAfter::Now => 0,
    }
}

/// The binding limit's index among per-limit decisions (see [`combine`]).
pub fn binding<'a>(decisions: impl Iterator<Item = &'a Answer>) -> Option<usize> {
    let mut best: Option<(usize, &Answer)> = None;
    for (i, d) in decisions.enumerate() {
        let better = match best {
            None => true,
            Some((_, b)) => match (b.allowed, d.allowed) {
                (true, false) => true,
                (false, true) => false,
                (false, false) => wait(d) > wait(b),
                (true, true) => d.remaining < b.remaining,
            },
        };
        if better {
            best = Some((i, d));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::bucket::Bucket;
    use crate::algo::calendar::{bounds, Calendar};
    use crate::algo::fixed::{self, Counter};
    use crate::algo::sliding::{self, Log, Window};
    use crate::time::Nanos;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000_000_000;

    /// In-memory state of one limit of each kind.
    #[derive(Clone, Debug, PartialEq)]
    struct States {
        tat: Option<Nanos>,
        log: Option<Log>,
        counter: Option<Counter>,
    }

    #[derive(Debug)]
    enum Change {
        Bucket(Option<Nanos>),
        Window(Option<sliding::Update>),
        Fixed(Option<Counter>),
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A bucket, a sliding window and a fixed window behind one RL.ALL:
        /// a denial by any of them changes none; an allowed request changes
        /// all; each limit's own bound holds over the whole history.
        #[test]
        fn never_consumes_when_one_denies(
            steps in prop::collection::vec((0u64..400_000_000, 0u64..4, 0u64..4, 0u64..4), 1..80),
        ) {
            let bucket = Bucket::new(4, Nanos::new(250_000_000)).unwrap();
            let window = Window { limit: 6, span_us: 2_000_000, max_entries: 1_000 };
            let cal = Calendar::Millis(3_000);
            let mut s = States { tat: None, log: None, counter: None };
            let mut now = T0;
            let mut admitted: Vec<(u64, u64, u64, u64)> = vec![];
            for (gap, cb, cw, cf) in steps {
                now += gap;
                let before = s.clone();
                let t = Nanos::new(now);
                let (db, nb) = bucket.decide(s.tat, t, cb);
                let (dw, uw) = sliding::decide(s.log.as_ref(), &window, t.as_micros(), cw);
                let end = bounds(&cal, (now / 1_000_000) as i64).unwrap().1 as u64;
                let (df, nf) = fixed::decide(5, s.counter, end, t, cf);
                let evaluated = vec![(db, Change::Bucket(nb)), (dw, Change::Window(uw)), (df, Change::Fixed(nf))];
                let all_ok = db.allowed && dw.allowed && df.allowed;
                let (index, d, changes) = combine(evaluated).unwrap();
                prop_assert_eq!(d.allowed, all_ok);
                prop_assert_eq!(changes.is_empty(), !all_ok);
                if !all_ok {
                    // The binding limit denies, and waits at least as long as every denier.
                    prop_assert!(!d.allowed);
                    for other in [db, dw, df] {
                        if !other.allowed {
                            prop_assert!(wait(&d) >= wait(&other));
                        }
                    }
                } else {
                    prop_assert_eq!(d.remaining, db.remaining.min(dw.remaining).min(df.remaining));
                }
                prop_assert!(index < 3);
                for c in changes {
                    match c {
                        Change::Bucket(Some(n)) => s.tat = Some(n),
                        Change::Window(Some(u)) => match s.log.as_mut() {
                            Some(l) => l.apply(&u),
                            None => s.log = Some(Log::from_update(&u)),
                        },
                        Change::Fixed(Some(c)) => s.counter = Some(c),
                        _ => {}
                    }
                }
                if all_ok {
                    admitted.push((now, cb, cw, cf));
                } else {
                    prop_assert_eq!(&s, &before);
                }
                // Each limit's own bound, over everything admitted so far:
                // the bucket's (sigma, rho), the sliding window's over any
                // 2 s interval, the fixed window's in each epoch-aligned 3 s
                // window (computed here, not by the calendar code).
                for (i, &(a, ..)) in admitted.iter().enumerate() {
                    let bucket_units: u64 = admitted[i..].iter().map(|x| x.1).sum();
                    prop_assert!(u128::from(bucket_units) * 250_000_000 <= 4 * 250_000_000 + u128::from(now - a));
                    let window_units: u64 = admitted.iter().filter(|x| x.0 >= a && x.0 < a + 2_000_000_000).map(|x| x.2).sum();
                    prop_assert!(window_units <= 6);
                    let fixed_window = |t: u64| t / 3_000_000_000;
                    let fixed_units: u64 = admitted.iter().filter(|x| fixed_window(x.0) == fixed_window(a)).map(|x| x.3).sum();
                    prop_assert!(fixed_units <= 5, "{} units in the 3 s window of {}", fixed_units, a);
                }
            }
        }
    }

    #[test]
    fn binding_prefers_the_longest_wait_then_the_least_remaining() {
        let d = |allowed, remaining, retry| Answer {
            allowed,
            limit: 10,
            remaining,
            retry_after: retry,
            reset_after: Nanos::ZERO,
        };
        let ms = |m| RetryAfter::After(Nanos::from_millis(m));
        let (i, _, ch) = combine(vec![
            (d(false, 0, ms(5)), 1),
            (d(true, 3, RetryAfter::Now), 2),
            (d(false, 0, ms(9)), 3),
        ])
        .unwrap();
        assert_eq!((i, ch), (2, vec![]));
        let (i, _, _) = combine(vec![
            (d(false, 0, ms(5)), ()),
            (d(false, 9, RetryAfter::Never), ()),
        ])
        .unwrap();
        assert_eq!(i, 1);
        let (i, _, ch) = combine(vec![
            (d(true, 4, RetryAfter::Now), 1),
            (d(true, 2, RetryAfter::Now), 2),
            (d(true, 2, RetryAfter::Now), 3),
        ])
        .unwrap();
        assert_eq!((i, ch), (1, vec![1, 2, 3]));
        assert!(combine::<()>(vec![]).is_none());
    }
}
