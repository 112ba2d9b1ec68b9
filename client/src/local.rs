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
//!
//! The map is bounded: at most `max_keys` keys (one per limit and caller
//! key), so callers that send random keys during an outage cannot grow the
//! application's memory. A key is forgotten only when its state is fresh
//! again (forgetting it then changes no decision); a key still counting is
//! never evicted, since that would reset its limit and admit more than it
//! allows. When the map is full, a call that would add a key is denied
//! (keys already known carry on), with a `retry_after` of when a key may
//! be fresh again; a full map looks for fresh keys at most once per
//! [`FULL_SWEEP_EVERY`], so a flood of new keys costs a pass over the map
//! ten times a second, not one per call.
//!
//! A key does not start empty when Redis fails: while Redis answers, the
//! limiter hands each decision to [`Local::remember`] (a [`Seed`]: what
//! Redis counted as taken, and when the limit is fresh again), and the
//! first fallback decision on the key starts from it ([`seeded`]), so the
//! units Redis admitted just before the outage still count: a quota is not
//! handed out a second time at the moment Redis fails. The seed is
//! conservative: every unit Redis counted is taken as taken at the instant
//! its reply arrived (later than it was), so the fallback never admits
//! more than Redis would have. Seeds are bounded like the keys (at most
//! `max_keys`; a key whose seed did not fit starts empty).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use redis_ratelimit_core::algo::bucket::Bucket;
use redis_ratelimit_core::algo::lease;
use redis_ratelimit_core::algo::lease::Concurrency;
use redis_ratelimit_core::algo::sliding::Window;
use redis_ratelimit_core::algo::{self, RetryAfter};
use redis_ratelimit_core::limit::{
    decide_all, evaluate_with, Action, Claim, Effect, Lock, Rules, Spec, State, Stored,
};
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

/// How often a full map may look for keys that are fresh again.
const FULL_SWEEP_EVERY: Nanos = Nanos::from_millis(100);

/// The most slots a seed holds for a CONCURRENCY limit: taking them one by
/// one costs a pass over the slots already held each.
const MAX_SEEDED_LEASES: u64 = 1000;

/// The last decision Redis gave for a key, as the fallback starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seed {
    /// Units Redis counted as taken: its limit minus its remaining.
    pub used: u64,
    /// When the call was sent (wall clock): a seed from a call sent
    /// earlier never replaces one from a call sent later.
    pub sent: Nanos,
    /// When its reply arrived (wall clock): the units count from then.
    pub at: Nanos,
    /// When Redis said the limit is fresh again (`at + reset_after`).
    pub fresh_at: Nanos,
    /// A denial's wait: under a LOCKOUT policy, the key was locked out
    /// until `at` plus this.
    pub denied_for: Option<Nanos>,
}

impl Seed {
    /// The seed of a decision Redis gave for a call sent at `sent`, whose
    /// reply arrived at `at`.
    pub fn of(d: &Decision, sent: Nanos, at: Nanos) -> Seed {
        let nanos = |t: Duration| Nanos::new(u64::try_from(t.as_nanos()).unwrap_or(u64::MAX));
        Seed {
            used: d.limit.saturating_sub(d.remaining),
            sent,
            at,
            fresh_at: at.saturating_add(nanos(d.reset_after)),
            denied_for: d
                .retry_after
                .filter(|_| !d.allowed)
                .map(nanos)
                .filter(|t| *t > Nanos::ZERO),
        }
    }
}

/// The state a key starts from in the fallback: `seed.used` units (at
/// most the limit, or this process's share of it) taken at `seed.at`,
/// and, for a LOCKOUT policy's denial, the lock. When it is fresh again
/// too; `None` if it holds nothing.
pub(crate) fn seeded(spec: &Spec, rules: Rules, seed: &Seed) -> Option<(State, Nanos)> {
    let used = seed.used.min(spec.limit());
    let mut state = State::Empty;
    let mut fresh = None;
    match spec {
        Spec::Concurrency(c) => {
            // The slots Redis counted, held until every lease there may
            // have ended (its reset).
            let held = Concurrency {
                limit: c.limit,
                lease: seed
                    .fresh_at
                    .saturating_sub(seed.at)
                    .max(Nanos::from_millis(1)),
            };
            for _ in 0..used.min(MAX_SEEDED_LEASES) {
                let leases = match &state {
                    State::Leases(l) => Some(l),
                    _ => None,
                };
                let (d, op) = lease::acquire(leases, &held, seed.at);
                match op {
                    Some(op) if d.allowed => fresh = state.apply(&Effect::Lease(op)),
                    _ => break,
                }
            }
        }
        _ if used > 0 => {
            let (d, effect, _) = evaluate_with(
                Stored::Empty,
                spec,
                Rules::default(),
                seed.at,
                used,
                Action::Take,
            )
            .ok()?;
            if d.allowed {
                fresh = state.apply(&effect);
            }
        }
        _ => {}
    }
    if let (Some(_), Some(wait)) = (rules.lockout, seed.denied_for) {
        let until = seed.at.saturating_add(wait);
        fresh = Some(fresh.map_or(until, |f| f.max(until)));
        state = State::Locked(Box::new(Lock {
            until,
            inner: state,
        }));
    }
    Some((state, fresh?))
}

/// The fallback's state: each key's limiter state.
#[derive(Debug, Default)]
pub(crate) struct Local {
    entries: HashMap<String, Entry>,
    calls: u64,
    /// When a full map last looked for fresh keys, and the earliest
    /// expiry it left: no key can be fresh before then.
    last_sweep: Nanos,
    earliest: Nanos,
    /// The last decision Redis gave for each key, not adopted yet.
    seeds: HashMap<String, Seed>,
    /// When a full map of seeds last looked for fresh ones.
    seeds_swept: Nanos,
    /// When the fallback last decided: a reply to a call sent before then
    /// is older than the fallback's state, and seeds nothing.
    last_local: Nanos,
}

impl Local {
    /// Decides every limit, all or nothing, as `RL.ALL` does (a named
    /// policy's SHADOW and LOCKOUT rules included), keeping at most
    /// `max_keys` keys (at least 1): a call that would add keys to a full
    /// map is denied and writes nothing. `keys` and `specs` pair up; `None`
    /// only for no limits.
    pub fn decide(
        &mut self,
        keys: &[String],
        specs: &[(Spec, Rules)],
        req: Request,
        now: Nanos,
        max_keys: usize,
    ) -> Option<AllDecision> {
        self.sweep(now);
        self.last_local = self.last_local.max(now);
        for (key, (spec, rules)) in keys.iter().zip(specs) {
            self.adopt(key, spec, *rules, now, max_keys);
        }
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
            // Keys the call would add: is there room for them? (A denial
            // writes nothing but a LOCKOUT it starts: decide_all says.)
            let new = keys
                .iter()
                .zip(decided.limits.iter())
                .filter(|(k, d)| {
                    !matches!(d.effect, Effect::None) && !self.entries.contains_key(k.as_str())
                })
                .count();
            if let Err(retry) = self.room_for(new, max_keys.max(1), now) {
                let limit = specs.first().map_or(0, |(s, _)| s.limit());
                let full = algo::Answer {
                    allowed: false,
                    limit,
                    remaining: 0,
                    retry_after: RetryAfter::After(retry),
                    reset_after: retry,
                };
                return Some(AllDecision::new(decision(&full, Source::Fallback), 0));
            }
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

    /// Records what Redis decided for a call on `keys` (sent at `seed.sent`):
    /// the fallback's state of those keys is out of date, and the binding
    /// limit's key (`keys[binding]`, the one the reply describes) starts
    /// from `seed` if Redis fails. Keeps at most `max_keys` seeds; a reply
    /// to a call sent before the fallback's last decision changes nothing
    /// (the fallback's state is newer).
    pub fn remember(&mut self, keys: &[String], binding: usize, seed: Seed, max_keys: usize) {
        if seed.sent < self.last_local {
            return;
        }
        for k in keys {
            self.entries.remove(k);
        }
        let Some(key) = keys.get(binding) else {
            return;
        };
        if seed.fresh_at <= seed.at && seed.denied_for.is_none() {
            self.seeds.remove(key);
            return;
        }
        if let Some(old) = self.seeds.get_mut(key) {
            if old.sent <= seed.sent {
                *old = seed;
            }
            return;
        }
        if self.seeds.len() >= max_keys.max(1) {
            // Full: forget the seeds that are fresh again, at most ten
            // times a second; if none is, this key goes without.
            if seed.at < self.seeds_swept.saturating_add(FULL_SWEEP_EVERY)
                && seed.at >= self.seeds_swept
            {
                return;
            }
            self.seeds_swept = seed.at;
            self.seeds.retain(|_, s| s.fresh_at > seed.at);
            if self.seeds.len() >= max_keys.max(1) {
                return;
            }
        }
        self.seeds.insert(key.clone(), seed);
    }

    /// A key the fallback has no state for starts from its seed, if Redis
    /// left one that is not fresh yet (and the map has room).
    fn adopt(&mut self, key: &str, spec: &Spec, rules: Rules, now: Nanos, max_keys: usize) {
        if self.entries.contains_key(key) {
            return;
        }
        let Some(seed) = self.seeds.remove(key) else {
            return;
        };
        if self.entries.len() >= max_keys.max(1) {
            return;
        }
        if let Some((state, expires)) = seeded(spec, rules, &seed) {
            if expires > now {
                self.entries
                    .insert(key.to_string(), Entry { state, expires });
            }
        }
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

    /// Is there room for `new` more keys (forgetting the keys fresh again
    /// if the map is full, at most once per [`FULL_SWEEP_EVERY`])? If not,
    /// how long until there may be.
    fn room_for(&mut self, new: usize, max_keys: usize, now: Nanos) -> Result<(), Nanos> {
        let fits = |l: &Local| l.entries.len().saturating_add(new) <= max_keys;
        if fits(self) {
            return Ok(());
        }
        let next_sweep = self.last_sweep.saturating_add(FULL_SWEEP_EVERY);
        // A clock stepped back allows a sweep too.
        if (now >= next_sweep && now >= self.earliest) || now < self.last_sweep {
            self.entries.retain(|_, e| e.expires > now);
            self.last_sweep = now;
            self.earliest = self
                .entries
                .values()
                .map(|e| e.expires)
                .min()
                .unwrap_or(now);
            if fits(self) {
                return Ok(());
            }
        }
        let next_sweep = self.last_sweep.saturating_add(FULL_SWEEP_EVERY);
        Err(next_sweep
            .max(self.earliest)
            .saturating_sub(now)
            .max(Nanos::from_millis(1)))
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
    use crate::limits::{
        CalendarUnit, Concurrency, FixedWindow, NamedPolicy, Policy, SlidingWindow, TokenBucket,
    };

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000 * MS;
    const T0: u64 = 1_800_000_000 * SEC;
    const MAX: usize = usize::MAX;

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
                .decide(
                    &keys,
                    std::slice::from_ref(s),
                    req,
                    Nanos::new(T0 + at),
                    MAX,
                )
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
                    MAX,
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
                MAX,
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
        let first = l.decide(&keys, &specs, r, now, MAX).unwrap();
        assert_eq!((first.binding, first.decision.remaining), (1, 1));
        l.decide(&keys, &specs, r, now, MAX).unwrap();
        let denied = l.decide(&keys, &specs, r, now, MAX).unwrap();
        assert!(!denied.decision.allowed);
        assert_eq!(denied.binding, 1);
        assert_eq!(denied.decision.retry_after, Some(Duration::from_secs(60)));
        // The denial took nothing from "a": 8 left of 10 after two calls.
        let peek = l
            .decide(&keys[..1], &specs[..1], Request::new(0), now, MAX)
            .unwrap();
        assert_eq!(peek.decision.remaining, 8);
    }

    /// Random keys during an outage: the map stops at its cap (it grew
    /// without bound), new keys are denied, known keys carry on under
    /// their own limits (never reset by an eviction), and once keys are
    /// fresh again there is room.
    #[test]
    fn a_full_map_denies_new_keys_and_never_resets_a_counting_one() {
        let mut l = Local::default();
        // One unit per minute: every key that took one is still counting.
        let s = [spec(
            SlidingWindow::new(1, Duration::from_secs(60)).unwrap(),
        )];
        let cap = 1000;
        let at = |ms: u64| Nanos::new(T0 + ms * MS);
        for i in 0..5000u64 {
            l.decide(&[format!("r{i}")], &s, Request::new(1), at(i), cap);
        }
        assert_eq!(l.len(), cap);
        // A new key is denied, with a wait, by the fallback.
        let new = l
            .decide(&["new".to_string()], &s, Request::new(1), at(5000), cap)
            .unwrap()
            .decision;
        assert!(!new.allowed);
        assert_eq!(new.source, Source::Fallback);
        let retry = new.retry_after.unwrap();
        assert!(
            retry > Duration::ZERO && retry <= Duration::from_secs(60),
            "{retry:?}"
        );
        // A known key is still denied by its own limit: not forgotten.
        let known = l
            .decide(&["r0".to_string()], &s, Request::new(1), at(5000), cap)
            .unwrap()
            .decision;
        assert!(!known.allowed);
        assert_eq!(known.remaining, 0);
        // A peek and a dry run add nothing: answered as usual.
        let peek = l
            .decide(&["new".to_string()], &s, Request::new(0), at(5000), cap)
            .unwrap()
            .decision;
        assert_eq!((peek.allowed, peek.remaining), (true, 1));
        let dry = l
            .decide(
                &["new".to_string()],
                &s,
                Request::new(1).dry_run(),
                at(5000),
                cap,
            )
            .unwrap()
            .decision;
        assert!(dry.allowed);
        assert_eq!(l.len(), cap);
        // A minute after the first ones, they are fresh again: room.
        let later = at(60_000 + 5);
        let d = l
            .decide(&["new".to_string()], &s, Request::new(1), later, cap)
            .unwrap()
            .decision;
        assert!(d.allowed, "{d:?}");
        assert!(l.len() <= cap);
    }

    /// A full map looks for fresh keys at most once per FULL_SWEEP_EVERY,
    /// and the denial says when to come back.
    #[test]
    fn a_full_map_sweeps_at_most_ten_times_a_second() {
        let mut l = Local::default();
        let s = [spec(SlidingWindow::new(1, Duration::from_secs(1)).unwrap())];
        for i in 0..10u64 {
            l.decide(&[format!("k{i}")], &s, Request::new(1), Nanos::new(T0), 10);
        }
        // Full, and nothing fresh before T0 + 1 s.
        let d = l
            .decide(
                &["x".to_string()],
                &s,
                Request::new(1),
                Nanos::new(T0 + MS),
                10,
            )
            .unwrap()
            .decision;
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_millis(999)));
        // At T0 + 1 s every key is fresh: the next call finds room.
        let d = l
            .decide(
                &["x".to_string()],
                &s,
                Request::new(1),
                Nanos::new(T0 + SEC),
                10,
            )
            .unwrap()
            .decision;
        assert!(d.allowed);
        assert_eq!(l.len(), 1);
    }

    /// More keys in one call than the map may ever hold: denied.
    #[test]
    fn a_call_with_more_keys_than_the_cap_is_denied() {
        let mut l = Local::default();
        let keys = ["a".to_string(), "b".to_string()];
        let specs = [
            spec(SlidingWindow::new(5, Duration::from_secs(1)).unwrap()),
            spec(SlidingWindow::new(5, Duration::from_secs(1)).unwrap()),
        ];
        let d = l
            .decide(&keys, &specs, Request::new(1), Nanos::new(T0), 1)
            .unwrap();
        assert!(!d.decision.allowed);
        assert_eq!(l.len(), 0);
    }

    /// The decision Redis gave just before it failed, as a seed.
    fn seed_of(d: Decision, sent: u64, at: u64) -> Seed {
        Seed::of(&d, Nanos::new(T0 + sent), Nanos::new(T0 + at))
    }

    fn redis(allowed: bool, limit: u64, remaining: u64, retry_ms: u64, reset_ms: u64) -> Decision {
        Decision::local(
            allowed,
            limit,
            remaining,
            Some(Duration::from_millis(retry_ms)),
            Duration::from_millis(reset_ms),
            Source::Redis,
        )
    }

    /// The field report: "5 per 3 s" under Fallback(Share::Whole) admitted
    /// 10 in 2.1 s, a fresh quota at the moment Redis failed. Seeded from
    /// Redis's last decision (5 taken), the fallback admits nothing until
    /// those 5 leave the window, then 5.
    #[test]
    fn the_fallback_starts_from_redis_last_decision() {
        let s = [spec(SlidingWindow::new(5, Duration::from_secs(3)).unwrap())];
        let keys = ["k".to_string()];
        let mut l = Local::default();
        // Redis admitted the fifth at T0 (its reply came 1 ms later).
        l.remember(&keys, 0, seed_of(redis(true, 5, 0, 0, 3000), 0, MS), MAX);
        let mut admitted = Vec::new();
        for step in 0..=600u64 {
            let now = T0 + 10 * MS + step * 10 * MS;
            let d = l
                .decide(&keys, &s, Request::new(1), Nanos::new(now), MAX)
                .unwrap()
                .decision;
            if step == 0 {
                assert!(!d.allowed);
                assert_eq!(d.retry_after, Some(Duration::from_millis(2991)));
            }
            if d.allowed {
                admitted.push(now - T0);
            }
        }
        // Nothing before T0 + 3 s (+ the 1 ms the reply took), then 5,
        // then one more 3 s later.
        assert_eq!(admitted.len(), 5 + 1, "{admitted:?}");
        assert!(admitted[0] >= 3 * SEC + MS, "{admitted:?}");
        let in_first_3s = admitted.iter().filter(|t| **t < 3 * SEC).count();
        assert_eq!(in_first_3s, 0);
    }

    /// Each kind of limit starts from what Redis counted, conservatively:
    /// never with more than Redis had left.
    #[test]
    #[rustfmt::skip]
    fn every_kind_of_limit_is_seeded() {
        let at = |ms: u64| Nanos::new(T0 + ms * MS);
        let first = |s: (Spec, Rules), seed: Seed, t: u64| {
            let mut l = Local::default();
            let keys = ["k".to_string()];
            l.remember(&keys, 0, seed, MAX);
            l.decide(&keys, &[s], Request::new(1), at(t), MAX).unwrap().decision
        };
        // A bucket of 10, one a second, 3 left: 3 more, not 10.
        let b = spec(TokenBucket::new(10, 1, Duration::from_secs(1)).unwrap());
        let d = first(b.clone(), seed_of(redis(true, 10, 3, 0, 7000), 0, 0), 0);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        // A fixed window of 4 (of a minute), 1 left.
        let f = spec(FixedWindow::new(4, Duration::from_secs(60)).unwrap());
        let d = first(f, seed_of(redis(true, 4, 1, 0, 30_000), 0, 0), 0);
        assert_eq!((d.allowed, d.remaining), (true, 0));
        // Two slots of three held: one left.
        let c = spec(Concurrency::new(3, Duration::from_secs(30)).unwrap());
        let d = first(c.clone(), seed_of(redis(true, 3, 1, 0, 30_000), 0, 0), 0);
        assert_eq!((d.allowed, d.remaining), (true, 0));
        // ... held until every lease there may have ended.
        let d = first(c, seed_of(redis(true, 3, 1, 0, 30_000), 0, 0), 30_000);
        assert_eq!((d.allowed, d.remaining), (true, 2));
        // A LOCKOUT policy's denial: still locked out locally.
        let p = NamedPolicy::new("seeded-lock", SlidingWindow::new(2, Duration::from_secs(60)).unwrap())
            .unwrap()
            .lockout(Duration::from_secs(900))
            .unwrap();
        let locked: Policy = p.into();
        let s = (locked.spec().unwrap(), locked.rules());
        let d = first(s, seed_of(redis(false, 2, 0, 900_000, 900_000), 0, 0), 100_000);
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_secs(800)));
        // A seed fresh again by the time Redis fails: the whole limit.
        let d = first(b, seed_of(redis(true, 10, 3, 0, 7000), 0, 0), 7000);
        assert_eq!((d.allowed, d.remaining), (true, 9));
    }

    /// A share of the quota (Share::divided_by) starts from what Redis
    /// counted too, up to the share.
    #[test]
    fn a_share_is_seeded_up_to_the_share() {
        let half = share(
            spec(SlidingWindow::new(10, Duration::from_secs(60)).unwrap()).0,
            Share::divided_by(2),
        );
        let keys = ["k".to_string()];
        let mut l = Local::default();
        l.remember(&keys, 0, seed_of(redis(true, 10, 7, 0, 60_000), 0, 0), MAX);
        let d = l
            .decide(
                &keys,
                &[(half, Rules::default())],
                Request::new(1),
                Nanos::new(T0),
                MAX,
            )
            .unwrap()
            .decision;
        // 3 of the share of 5 counted: 1 left after this one.
        assert_eq!((d.allowed, d.remaining), (true, 1));
    }

    /// Several limits: the reply describes the binding one, which is
    /// seeded; the fallback's older state of every key of the call is
    /// dropped (Redis has decided since). A reply to a call sent before
    /// the fallback's last decision changes nothing; nor does one older
    /// than the seed it would replace.
    #[test]
    fn seeds_follow_the_newest_redis_decision() {
        let specs = [
            spec(SlidingWindow::new(100, Duration::from_secs(60)).unwrap()),
            spec(SlidingWindow::new(3, Duration::from_secs(60)).unwrap()),
        ];
        let keys = ["a".to_string(), "b".to_string()];
        let mut l = Local::default();
        let r = Request::new(1);
        l.decide(&keys, &specs, r, Nanos::new(T0 + MS), MAX)
            .unwrap();
        assert_eq!(l.len(), 2);
        // A reply to a call sent before that decision: ignored.
        l.remember(&keys, 1, seed_of(redis(true, 3, 0, 0, 60_000), 0, 0), MAX);
        assert_eq!(l.len(), 2);
        // A later one drops both keys' state and seeds "b".
        l.remember(
            &keys,
            1,
            seed_of(redis(true, 3, 1, 0, 60_000), 2 * MS, 3 * MS),
            MAX,
        );
        assert_eq!(l.len(), 0);
        // An older reply, processed late, does not replace it.
        l.remember(
            &keys,
            1,
            seed_of(redis(true, 3, 2, 0, 60_000), MS, 4 * MS),
            MAX,
        );
        let d = l
            .decide(&keys, &specs, r, Nanos::new(T0 + 5 * MS), MAX)
            .unwrap();
        assert_eq!((d.binding, d.decision.remaining), (1, 0));
    }

    /// Seeds are bounded like keys: a full map of seeds that are all still
    /// counting takes no more (those keys start empty).
    #[test]
    fn seeds_are_bounded() {
        let mut l = Local::default();
        for i in 0..100u64 {
            let keys = [format!("k{i}")];
            l.remember(&keys, 0, seed_of(redis(true, 5, 0, 0, 60_000), i, i), 10);
        }
        assert_eq!(l.seeds.len(), 10);
        // Once they are fresh again, there is room.
        let keys = ["late".to_string()];
        l.remember(
            &keys,
            0,
            seed_of(redis(true, 5, 0, 0, 60_000), 0, 61 * SEC),
            10,
        );
        assert_eq!(l.seeds.len(), 1);
    }

    #[test]
    fn fresh_keys_are_forgotten() {
        let mut l = Local::default();
        let s = [spec(
            TokenBucket::new(1, 1000, Duration::from_secs(1)).unwrap(),
        )];
        for i in 0..3000u64 {
            l.decide(&[format!("k{i}")], &s, Request::new(1), Nanos::new(T0), MAX);
        }
        assert!(l.len() > 1024);
        for _ in 0..1024 {
            l.decide(
                &["x".to_string()],
                &s,
                Request::new(0),
                Nanos::new(T0 + SEC),
                MAX,
            );
        }
        assert!(l.len() < 10, "{}", l.len());
    }
}
