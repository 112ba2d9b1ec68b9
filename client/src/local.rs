//! The in-process fallback: a GCRA per key, used only while Redis cannot
//! answer. Every policy becomes a bucket of the same limit that refills
//! `limit` units per window (a window's units come back one
//! `window / limit` at a time, not all at the window's end), so it admits
//! at most the limit in a burst and the limit's rate after that. The pure
//! decision takes `now` (nanoseconds on a monotonic clock); only
//! [`Local::decide`]'s caller reads the clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use crate::commands::{Mode, Request};
use crate::policy::Policy;
use crate::reply::{AllDecision, Decision, Source};

/// How the fallback shares a quota between the processes that fall back
/// at the same time (they cannot see each other).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Share {
    /// Each process allows the whole quota: with N processes up to N times
    /// the limit gets through while Redis is away. Right when one process
    /// serves the key, or when a brief overshoot is cheaper than refusals.
    Whole,
    /// Each process allows `limit / n` (rounded down, at least 1) at
    /// `1/n` of the rate: with `n` processes the total stays near the
    /// limit. Set `n` to the number of processes that share the keys.
    DividedBy(NonZeroU32),
}

/// A limit as the fallback runs it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Params {
    /// Units in a full bucket.
    pub limit: u64,
    /// Nanoseconds per unit.
    pub interval: u64,
}

impl Params {
    pub fn of(policy: &Policy, share: Share) -> Params {
        let interval = u64::try_from(policy.unit_interval().as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let limit = policy.limit();
        match share {
            Share::Whole => Params { limit, interval },
            Share::DividedBy(n) => {
                let n = u64::from(n.get());
                Params {
                    limit: (limit / n).max(1),
                    interval: interval.saturating_mul(n),
                }
            }
        }
    }
}

/// Rounded up to the millisecond, as the module's replies are.
fn ceil_ms(ns: u64) -> Duration {
    Duration::from_millis(ns.div_ceil(1_000_000))
}

/// One GCRA decision. `tat` is when the bucket is full again (0: never
/// used). Returns the decision and the new `tat`, if it changes.
pub(crate) fn gcra(tat: u64, p: Params, req: Request, now: u64) -> (Decision, Option<u64>) {
    let cost = req.cost();
    let base = tat.max(now);
    let tau = u128::from(p.limit) * u128::from(p.interval);
    let fill = |t: u64| u128::from(t - now);
    // Whole units that fit when the bucket is full again at `t`.
    let remaining = |t: u64| -> u64 {
        let free = tau.saturating_sub(fill(t));
        u64::try_from(free / u128::from(p.interval)).unwrap_or(u64::MAX)
    };
    let decision = |allowed, t: u64, retry| {
        Decision::local(
            allowed,
            p.limit,
            remaining(t),
            retry,
            ceil_ms(t - now),
            Source::Fallback,
        )
    };
    if req.mode() == Mode::Refund {
        let back = u64::try_from(u128::from(cost) * u128::from(p.interval)).unwrap_or(u64::MAX);
        let new = base.saturating_sub(back).max(now);
        let write = (tat > now).then_some(new);
        return (decision(true, new, Some(Duration::ZERO)), write);
    }
    if cost > p.limit {
        return (decision(false, base, None), None);
    }
    let needed = u128::from(cost) * u128::from(p.interval);
    let new = u128::from(base) + needed;
    let horizon = u128::from(now) + tau;
    if new <= horizon {
        let new = u64::try_from(new).unwrap_or(u64::MAX);
        let write = (cost > 0 && req.mode() == Mode::Consume).then_some(new);
        (decision(true, new, Some(Duration::ZERO)), write)
    } else {
        let wait = u64::try_from(new - horizon).unwrap_or(u64::MAX);
        (decision(false, base, Some(ceil_ms(wait))), None)
    }
}

/// Combines per-limit decisions as RL.ALL does: denied if any denies
/// (binding: the longest wait, "never" longest of all), else allowed
/// (binding: the least remaining).
pub(crate) fn binding(decisions: &[Decision]) -> Option<usize> {
    let denied = decisions.iter().enumerate().filter(|(_, d)| !d.allowed);
    let longest = denied.max_by_key(|(_, d)| d.retry_after.map_or(u128::MAX, |r| r.as_nanos()));
    if let Some((i, _)) = longest {
        return Some(i);
    }
    decisions
        .iter()
        .enumerate()
        .min_by_key(|(_, d)| d.remaining)
        .map(|(i, _)| i)
}

/// The fallback's state: each key's full-again instant.
#[derive(Debug, Default)]
pub(crate) struct Local {
    tats: HashMap<String, u64>,
    calls: u64,
}

impl Local {
    /// Decides every limit, all or nothing. `keys` and `params` pair up.
    pub fn decide(
        &mut self,
        keys: &[String],
        params: &[Params],
        req: Request,
        now: u64,
    ) -> Option<AllDecision> {
        self.sweep(now);
        let mut decisions = Vec::with_capacity(keys.len());
        let mut writes = Vec::with_capacity(keys.len());
        for (key, p) in keys.iter().zip(params) {
            let tat = self.tats.get(key).copied().unwrap_or(0);
            let (d, w) = gcra(tat, *p, req, now);
            decisions.push(d);
            writes.push(w);
        }
        let b = binding(&decisions)?;
        let all_allowed = decisions.iter().all(|d| d.allowed);
        if all_allowed {
            for (key, w) in keys.iter().zip(writes) {
                if let Some(t) = w {
                    self.tats.insert(key.clone(), t);
                }
            }
        }
        decisions.get(b).map(|d| AllDecision::new(*d, b))
    }

    /// Forgets keys whose bucket is full again (they are fresh), now and
    /// then, so the map holds only the keys in use.
    fn sweep(&mut self, now: u64) {
        self.calls += 1;
        if self.calls % 1024 == 0 && self.tats.len() > 1024 {
            self.tats.retain(|_, tat| *tat > now);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.tats.len()
    }
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
    use crate::policy::{SlidingWindow, TokenBucket};

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const P: Params = Params {
        limit: 3,
        interval: SEC,
    };

    fn row(d: &Decision) -> (bool, u64, Option<u64>, u64) {
        (
            d.allowed,
            d.remaining,
            d.retry_after.map(|r| r.as_millis() as u64),
            d.reset_after.as_millis() as u64,
        )
    }

    /// (now, cost, mode, allowed, remaining, retry_ms, reset_ms)
    type Row = (u64, u64, Mode, bool, u64, Option<u64>, u64);

    #[test]
    #[rustfmt::skip]
    fn gcra_table() {
        let rows: &[Row] = &[
            (0,          1, Mode::Consume, true,  2, Some(0),    1000),
            (0,          2, Mode::Consume, true,  0, Some(0),    3000),
            (0,          1, Mode::Consume, false, 0, Some(1000), 3000),
            (500 * MS,   1, Mode::Consume, false, 0, Some(500),  2500),
            (500 * MS,   1, Mode::DryRun,  false, 0, Some(500),  2500),
            (500 * MS,   0, Mode::Consume, true,  0, Some(0),    2500),
            (500 * MS,   4, Mode::Consume, false, 0, None,       2500),
            (SEC,        1, Mode::Consume, true,  0, Some(0),    3000),
            (SEC,        2, Mode::Refund,  true,  2, Some(0),    1000),
            (SEC,        9, Mode::Refund,  true,  3, Some(0),    0),
            (10 * SEC,   3, Mode::DryRun,  true,  0, Some(0),    3000),
            (10 * SEC,   3, Mode::Consume, true,  0, Some(0),    3000),
        ];
        let mut tat = 0;
        for (i, &(now, cost, mode, allowed, remaining, retry, reset)) in rows.iter().enumerate() {
            let req = match mode {
                Mode::Consume => Request::new(cost),
                Mode::DryRun => Request::new(cost).dry_run(),
                Mode::Refund => Request::new(cost).refund(),
            };
            let (d, w) = gcra(tat, P, req, now);
            assert_eq!(row(&d), (allowed, remaining, retry, reset), "row {i}");
            assert_eq!(d.source, Source::Fallback);
            if let Some(t) = w {
                tat = t;
            }
        }
    }

    #[test]
    fn shares_divide_limit_and_rate() {
        let w: Policy = SlidingWindow::new(100, Duration::from_secs(60))
            .unwrap()
            .into();
        assert_eq!(
            Params::of(&w, Share::Whole),
            Params {
                limit: 100,
                interval: 600 * MS
            }
        );
        let four = Share::DividedBy(NonZeroU32::new(4).unwrap());
        assert_eq!(
            Params::of(&w, four),
            Params {
                limit: 25,
                interval: 2400 * MS
            }
        );
        let b: Policy = TokenBucket::new(2, 1, Duration::from_secs(1))
            .unwrap()
            .into();
        assert_eq!(Params::of(&b, four).limit, 1);
    }

    #[test]
    fn all_or_nothing_with_a_binding_limit() {
        let mut l = Local::default();
        let keys = ["a".to_string(), "b".to_string()];
        let ps = [
            Params {
                limit: 10,
                interval: SEC,
            },
            Params {
                limit: 2,
                interval: 60 * SEC,
            },
        ];
        let r = Request::new(1);
        let first = l.decide(&keys, &ps, r, 0).unwrap();
        assert_eq!((first.binding, first.decision.remaining), (1, 1));
        l.decide(&keys, &ps, r, 0).unwrap();
        let denied = l.decide(&keys, &ps, r, 0).unwrap();
        assert!(!denied.decision.allowed);
        assert_eq!(denied.binding, 1);
        assert_eq!(denied.decision.retry_after, Some(Duration::from_secs(60)));
        // The denial took nothing from "a": 8 left of 10 after two calls.
        let peek = l.decide(&keys[..1], &ps[..1], Request::new(0), 0).unwrap();
        assert_eq!(peek.decision.remaining, 8);
    }

    #[test]
    fn fresh_keys_are_forgotten() {
        let mut l = Local::default();
        let p = [Params {
            limit: 1,
            interval: MS,
        }];
        for i in 0..3000u64 {
            l.decide(&[format!("k{i}")], &p, Request::new(1), 0);
        }
        assert!(l.len() > 1024);
        for _ in 0..1024 {
            l.decide(&["x".to_string()], &p, Request::new(0), SEC);
        }
        assert!(l.len() < 10, "{}", l.len());
    }
}
