//! The in-process fallback, used only while Redis cannot answer: the
//! module's own algorithms (from the core crate) on state kept in a map, so
//! each limit keeps its guarantee locally. A sliding window stays an exact
//! sliding window, a calendar day still resets at local midnight, a bucket
//! refills at its rate, and several limits are still all or nothing with
//! the same binding-limit rule as `RL.ALL`.
//!
//! The decision takes `now` (wall-clock nanoseconds since the Unix epoch,
//! which calendar windows need); only [`Local::decide`]'s caller reads the
//! clock.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use redis_ratelimit_core::algo::bucket::Bucket;
use redis_ratelimit_core::algo::lease;
use redis_ratelimit_core::algo::lease::Concurrency;
use redis_ratelimit_core::algo::sliding::Window;
use redis_ratelimit_core::algo::{self, RetryAfter};
use redis_ratelimit_core::limit::{decide_all, Action, Claim, Effect, Rules, Spec, State, Stored};
use redis_ratelimit_core::time::Nanos;

use crate::commands::{Mode, Request};
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
    /// Each process allows `limit / n` (rounded down, at least 1) of every
    /// limit (a bucket also refills at `1/n` of its rate): with `n`
    /// processes the total stays within the limit. Set `n` to the number of
    /// processes that share the keys.
    DividedBy(NonZeroU32),
}

impl Share {
    /// Each of `n` processes allows `1/n` of every limit (`n` of 0 counts
    /// as 1: the whole limit).
    ///
    /// ```
    /// # use redis_ratelimit_client::Share;
    /// let each_of_four = Share::divided_by(4);
    /// ```
    pub fn divided_by(n: u32) -> Share {
        Share::DividedBy(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
    }
}

/// A limit with its share applied: what one process may allow alone.
pub(crate) fn share(spec: Spec, share: Share) -> Spec {
    let Share::DividedBy(n) = share else {
        return spec;
    };
    let n = u64::from(n.get());
    match spec {
        Spec::Bucket(b) => {
            let limit = (b.limit() / n).max(1);
            let interval = Nanos::new(b.interval().as_u64().saturating_mul(n));
            // A share can only be slower: if it would refill past the
            // module's bound, keep the whole bucket's pace for one unit.
            Spec::Bucket(Bucket::new(limit, interval).unwrap_or(b))
        }
        Spec::Window(w) => Spec::Window(Window {
            limit: (w.limit / n).max(1),
            ..w
        }),
        Spec::Fixed { limit, calendar } => Spec::Fixed {
            limit: (limit / n).max(1),
            calendar,
        },
        Spec::Concurrency(c) => Spec::Concurrency(Concurrency {
            limit: (c.limit / n).max(1),
            ..c
        }),
    }
}

/// One key's state (the core's, as the module keeps it), with when it is
/// fresh again.
#[derive(Debug)]
struct Entry {
    state: State,
    /// When the state is fresh again (the module's key expiry).
    expires: Nanos,
}

/// Rounded up to the millisecond, as the module's replies are.
fn ceil_ms(span: Nanos) -> Duration {
    Duration::from_millis(span.ceil_millis())
}

/// A core decision as the client reports it.
pub(crate) fn decision(d: &algo::Answer, source: Source) -> Decision {
    let retry = match d.retry_after {
        RetryAfter::Now => Some(Duration::ZERO),
        RetryAfter::After(span) => Some(ceil_ms(span)),
        RetryAfter::Never => None,
    };
    Decision::local(
        d.allowed,
        d.limit,
        d.remaining,
        retry,
        ceil_ms(d.reset_after),
        source,
    )
}

/// The fallback's state: each key's limiter state.
#[derive(Debug, Default)]
pub(crate) struct Local {
    entries: HashMap<String, Entry>,
    calls: u64,
}

impl Local {
    /// Decides every limit, all or nothing, as `RL.ALL` does (a named
    /// policy's SHADOW and LOCKOUT rules included). `keys` and `specs` pair
    /// up; `None` only for no limits.
    pub fn decide(
        &mut self,
        keys: &[String],
        specs: &[(Spec, Rules)],
        req: Request,
        now: Nanos,
    ) -> Option<AllDecision> {
        self.sweep(now);
        let action = match req.mode() {
            Mode::Refund => Action::Refund,
            Mode::Consume | Mode::DryRun => Action::Take,
        };
        // A key whose kind changed (a redefined limit) starts afresh.
        let claims: Vec<Claim<'_>> = keys
            .iter()
            .zip(specs)
            .map(|(key, (spec, rules))| {
                let stored = self
                    .entries
                    .get(key)
                    .map_or(Stored::Empty, |e| e.state.stored());
                Claim {
                    stored: match stored.kind() {
                        Some(kind) if kind != spec.kind() => Stored::Empty,
                        _ => stored,
                    },
                    spec,
                    rules: *rules,
                    // A lease limit takes one slot whatever the cost (0: a peek).
                    cost: match spec {
                        Spec::Concurrency(_) => u64::from(req.cost() > 0),
                        _ => req.cost(),
                    },
                }
            })
            .collect();
        let decided = decide_all(&claims, now, action).ok()?;
        drop(claims);
        let mut lease_id = None;
        if req.mode() != Mode::DryRun {
            // A denial writes nothing but a LOCKOUT it starts (decide_all says).
            for (key, d) in keys.iter().zip(decided.limits.iter()) {
                lease_id = lease_id.or(d.effect.lease_id());
                self.apply(key, d.effect.clone());
            }
        }
        let mut out = decision(&decided.answer, Source::Fallback);
        out.lease = lease_id;
        Some(AllDecision::new(out, decided.index))
    }

    /// Gives lease `id` of `key` back; true if it was live.
    pub fn release(&mut self, key: &str, id: u64, now: Nanos) -> bool {
        let op = match self.entries.get(key).map(|e| e.state.stored()) {
            Some(Stored::Leases(l)) => lease::release(Some(l), id, now),
            _ => None,
        };
        match op {
            Some(op) => {
                self.apply(key, Effect::Lease(op));
                true
            }
            None => false,
        }
    }

    /// Extends lease `id` of `key` to `now + lease`; true if it was live.
    pub fn renew(&mut self, key: &str, id: u64, lease: Nanos, now: Nanos) -> bool {
        let op = match self.entries.get(key).map(|e| e.state.stored()) {
            Some(Stored::Leases(l)) => lease::renew(Some(l), id, lease, now),
            _ => None,
        };
        match op {
            Some(op) => {
                self.apply(key, Effect::Lease(op));
                true
            }
            None => false,
        }
    }

    /// Writes an effect, as the module's store does (the core's
    /// [`State::apply`]); a state fresh again is forgotten.
    fn apply(&mut self, key: &str, effect: Effect) {
        if matches!(effect, Effect::None) {
            return;
        }
        let mut state = self.entries.remove(key).map_or(State::Empty, |e| e.state);
        if let Some(expires) = state.apply(&effect) {
            if !matches!(state, State::Empty) {
                self.entries
                    .insert(key.to_string(), Entry { state, expires });
            }
        }
    }

    /// Forgets keys that are fresh again, now and then, so the map holds
    /// only the keys in use.
    fn sweep(&mut self, now: Nanos) {
        self.calls += 1;
        if self.calls % 1024 == 0 && self.entries.len() > 1024 {
            self.entries.retain(|_, e| e.expires > now);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{CalendarUnit, FixedWindow, Policy, SlidingWindow, TokenBucket};

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const T0: u64 = 1_800_000_000 * SEC;

    fn spec(p: impl Into<Policy>) -> (Spec, Rules) {
        (p.into().spec().unwrap(), Rules::default())
    }

    fn row(d: &Decision) -> (bool, u64, Option<u64>, u64) {
        (
            d.allowed,
            d.remaining,
            d.retry_after.map(|r| r.as_millis() as u64),
            d.reset_after.as_millis() as u64,
        )
    }

    /// (now since T0, cost, mode, allowed, remaining, retry_ms, reset_ms)
    type Row = (u64, u64, Mode, bool, u64, Option<u64>, u64);

    fn replay(s: &(Spec, Rules), rows: &[Row]) {
        let mut l = Local::default();
        let keys = ["k".to_string()];
        for (i, &(at, cost, mode, allowed, remaining, retry, reset)) in rows.iter().enumerate() {
            let req = match mode {
                Mode::Consume => Request::new(cost),
                Mode::DryRun => Request::new(cost).dry_run(),
                Mode::Refund => Request::new(cost).refund(),
            };
            let d = l
                .decide(&keys, std::slice::from_ref(s), req, Nanos::new(T0 + at))
                .unwrap();
            assert_eq!(
                row(&d.decision),
                (allowed, remaining, retry, reset),
                "row {i}"
            );
            assert_eq!(d.decision.source, Source::Fallback);
        }
    }

    #[test]
    #[rustfmt::skip]
    fn a_bucket_refills_at_its_rate() {
        // 3 tokens, one a second.
        let s = spec(TokenBucket::new(3, 1, Duration::from_secs(1)).unwrap());
        replay(&s, &[
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
        ]);
    }

    /// The outage in the field: "5 per 3 s" must stay a sliding window, not
    /// become a bucket that lets 9 through in 3 s.
    #[test]
    fn a_sliding_window_stays_a_sliding_window() {
        let s = spec(SlidingWindow::new(5, Duration::from_secs(3)).unwrap());
        let mut l = Local::default();
        let keys = ["k".to_string()];
        let mut admitted = vec![];
        for step in 0..300u64 {
            let now = T0 + step * 10 * MS;
            let d = l
                .decide(
                    &keys,
                    std::slice::from_ref(&s),
                    Request::new(1),
                    Nanos::new(now),
                )
                .unwrap();
            if d.decision.allowed {
                admitted.push(now);
            }
        }
        for (i, a) in admitted.iter().enumerate() {
            let within = admitted[i..].iter().filter(|t| **t < a + 3 * SEC).count();
            assert!(within <= 5, "{within} admitted in 3 s from {a}");
        }
        assert_eq!(admitted.len(), 5);
    }

    #[test]
    fn a_calendar_day_resets_at_local_midnight() {
        let day = FixedWindow::calendar(2, CalendarUnit::Day)
            .unwrap()
            .in_time_zone("America/New_York")
            .unwrap();
        let s = spec(day);
        let mut l = Local::default();
        let keys = ["k".to_string()];
        // 2027-01-15T04:59:59Z is 23:59:59 in New York.
        let before = 1_800_075_599 * SEC;
        let d = |l: &mut Local, t: u64| {
            l.decide(
                &keys,
                std::slice::from_ref(&s),
                Request::new(1),
                Nanos::new(t),
            )
            .unwrap()
            .decision
        };
        assert!(d(&mut l, before).allowed);
        assert!(d(&mut l, before).allowed);
        let denied = d(&mut l, before);
        assert!(!denied.allowed);
        assert_eq!(denied.retry_after, Some(Duration::from_secs(1)));
        assert!(d(&mut l, before + SEC).allowed);
    }

    #[test]
    fn shares_divide_every_limit() {
        let four = Share::DividedBy(NonZeroU32::MIN.saturating_add(3));
        let w = share(
            spec(SlidingWindow::new(100, Duration::from_secs(60)).unwrap()).0,
            four,
        );
        assert!(matches!(w, Spec::Window(Window { limit: 25, .. })));
        let b = share(
            spec(TokenBucket::new(2, 1, Duration::from_secs(1)).unwrap()).0,
            four,
        );
        let Spec::Bucket(b) = b else { panic!() };
        assert_eq!((b.limit(), b.interval()), (1, Nanos::from_secs(4)));
        let whole = share(
            spec(SlidingWindow::new(100, Duration::from_secs(60)).unwrap()).0,
            Share::Whole,
        );
        assert!(matches!(whole, Spec::Window(Window { limit: 100, .. })));
    }

    #[test]
    fn all_or_nothing_with_the_modules_binding_limit() {
        let mut l = Local::default();
        let keys = ["a".to_string(), "b".to_string()];
        let specs = [
            spec(TokenBucket::new(10, 1, Duration::from_secs(1)).unwrap()),
            spec(SlidingWindow::new(2, Duration::from_secs(60)).unwrap()),
        ];
        let now = Nanos::new(T0);
        let r = Request::new(1);
        let first = l.decide(&keys, &specs, r, now).unwrap();
        assert_eq!((first.binding, first.decision.remaining), (1, 1));
        l.decide(&keys, &specs, r, now).unwrap();
        let denied = l.decide(&keys, &specs, r, now).unwrap();
        assert!(!denied.decision.allowed);
        assert_eq!(denied.binding, 1);
        assert_eq!(denied.decision.retry_after, Some(Duration::from_secs(60)));
        // The denial took nothing from "a": 8 left of 10 after two calls.
        let peek = l
            .decide(&keys[..1], &specs[..1], Request::new(0), now)
            .unwrap();
        assert_eq!(peek.decision.remaining, 8);
    }

    #[test]
    fn fresh_keys_are_forgotten() {
        let mut l = Local::default();
        let s = [spec(
            TokenBucket::new(1, 1000, Duration::from_secs(1)).unwrap(),
        )];
        for i in 0..3000u64 {
            l.decide(&[format!("k{i}")], &s, Request::new(1), Nanos::new(T0));
        }
        assert!(l.len() > 1024);
        for _ in 0..1024 {
            l.decide(
                &["x".to_string()],
                &s,
                Request::new(0),
                Nanos::new(T0 + SEC),
            );
        }
        assert!(l.len() < 10, "{}", l.len());
    }
}
