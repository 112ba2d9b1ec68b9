//! Settlement: a reservation charged its estimate at `at`; the actual cost
//! is known later, at `now`. [`settle`] is the write that brings the state
//! to "as if `actual` had been charged at `at`", as far as the state can
//! tell, and never further: it may keep more charged than that, never less.
//!
//! - More than the estimate (`actual > estimate`): the difference is charged
//!   now, beyond the limit if need be. The usage happened: the limit goes
//!   into debt, and [`crate::limit::evaluate`] denies (remaining 0, the
//!   retry when `cost` fits again) until time pays it back.
//! - Less: the difference is given back, but only units the reservation
//!   still holds in the state: never past full, never units that already
//!   left the window or were refilled.
//! - A named policy's rules play no part: a settlement is recorded under
//!   SHADOW as without it, never starts a LOCKOUT, and a key locked out
//!   stays locked (its own state is settled under the lock).
//!
//! Per algorithm (the numbers are worked through in docs/COMMANDS.md, "Reservations"):
//! - Token bucket and GCRA: more moves the full-again instant `tat` to
//!   `max(tat, now) + delta * interval`, at most [`MAX_REFILL`] from now
//!   (the debt's bound: a refill of 100 years; what passes it is
//!   forgiven). Less moves it back by `min(delta * interval, end - now)`,
//!   never before `now`, where `end` is where the reservation's tokens end
//!   in the bucket ([`Held::bucket_end`]): tokens already refilled are not
//!   given back twice.
//! - Sliding window: more is an entry of `delta` units at `now` (merged as
//!   any admission when the log is full), the log's total kept within
//!   i64::MAX. Less takes units back from the oldest entries at instants
//!   `>= at` (the reservation's own, or the later one a full log merged it
//!   into), and only while `at` is inside the window.
//! - Fixed and calendar windows: more is counted in the current window (a
//!   window that ended starts anew with it); the debt is forgiven when the
//!   window ends, as every count is. Less is taken from the count only in
//!   the window that holds `at`; a window that ended is history.
//! - Concurrency: no cost; its lease is the reservation.
//!
//! Settling is not idempotent here: settling twice charges or gives back
//! twice. The caller keeps the reservation's record and settles it once
//! (the module deletes the record in the same atomic step).
//!
//! A plain REFUND on the same key gives back the newest units, whoever
//! took them: it may give back units a reservation holds, which its
//! settlement then gives back again. Refund reservations by settling them.

use crate::algo::bucket::Bucket;
use crate::algo::calendar::{self, Calendar};
use crate::algo::fixed::Counter;
use crate::algo::sliding::{Log, Refund, Update, Window};
use crate::bounds::{MAX_INT, MAX_REFILL};
use crate::error::{CmdError, INTERNAL, WRONGTYPE};
use crate::limit::{Effect, Spec, State, Stored};
use crate::time::Nanos;

/// What a reservation holds on one limit, as recorded when it was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The reservation's decision instant.
    pub at: Nanos,
    /// The units charged then.
    pub estimate: u64,
    /// A bucket's full-again instant as the reservation's charge wrote it
    /// (its [`Effect::Bucket`]): where its tokens end in the bucket. `None`
    /// when not recorded: then `at + estimate * interval`, the earliest it
    /// can be, which gives back less when the bucket was in use before the
    /// reservation (its tokens then refill later than that).
    pub bucket_end: Option<Nanos>,
}

impl Held {
    /// The record of a reservation of `estimate` units decided at `at`
    /// whose charge wrote `effect`.
    pub fn new(at: Nanos, estimate: u64, effect: &Effect) -> Held {
        let bucket_end = match effect {
            Effect::Bucket(tat) => Some(*tat),
            _ => None,
        };
        Held {
            at,
            estimate,
            bucket_end,
        }
    }
}

/// What a settlement writes, and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// The write to the limit's own state.
    pub effect: Effect,
    /// For a key locked out by a policy: the lock to write after `effect`
    /// (an [`Effect::Lockout`] with the same end), which any other write
    /// would end. `None` otherwise.
    pub relock: Option<Effect>,
    /// Units charged now beyond the estimate (less than `actual -
    /// estimate` only where a bound capped the debt).
    pub charged: u64,
    /// Units given back (a bucket's: whole tokens, rounded down).
    pub returned: u64,
}

impl Settled {
    fn of(effect: Effect, charged: u64, returned: u64) -> Settled {
        Settled {
            effect,
            relock: None,
            charged,
            returned,
        }
    }

    /// The writes, in order.
    pub fn effects(&self) -> impl Iterator<Item = &Effect> {
        std::iter::once(&self.effect)
            .chain(self.relock.as_ref())
            .filter(|e| !matches!(e, Effect::None))
    }
}

/// Settles a reservation `held` on `stored` under `spec` at `actual` units,
/// at `now`. Pure: writes nothing. A state of another kind than the spec's
/// is WRONGTYPE.
pub fn settle(
    stored: Stored<'_>,
    spec: &Spec,
    held: &Held,
    actual: u64,
    now: Nanos,
) -> Result<Settled, CmdError> {
    if let Stored::Locked(lock) = stored {
        let own = settle(lock.inner.stored(), spec, held, actual, now)?;
        if now >= lock.until || own.effect == Effect::None {
            // A lock that ended: the write ends it, as any write does.
            return Ok(own);
        }
        let mut inner = lock.inner.clone();
        let fresh = inner.apply(&own.effect);
        return Ok(Settled {
            relock: Some(Effect::Lockout {
                until: lock.until,
                own: fresh,
            }),
            ..own
        });
    }
    match (spec, stored) {
        (Spec::Bucket(b), Stored::Empty | Stored::Bucket(_)) => {
            let tat = match stored {
                Stored::Bucket(t) => Some(t),
                _ => None,
            };
            Ok(bucket(b, tat, held, actual, now))
        }
        (Spec::Window(w), Stored::Empty | Stored::Window(_)) => {
            let log = match stored {
                Stored::Window(l) => Some(l),
                _ => None,
            };
            Ok(window(log, w, held, actual, now))
        }
        (Spec::Fixed { calendar, .. }, Stored::Empty | Stored::Fixed(_)) => {
            let counter = match stored {
                Stored::Fixed(c) => Some(c),
                _ => None,
            };
            fixed(counter, calendar, held, actual, now)
        }
        (Spec::Concurrency(_), Stored::Empty | Stored::Leases(_)) => {
            Ok(Settled::of(Effect::None, 0, 0))
        }
        _ => Err(WRONGTYPE),
    }
}

/// A token bucket's (or GCRA's) settlement, on its full-again instant.
pub fn bucket(b: &Bucket, tat: Option<Nanos>, held: &Held, actual: u64, now: Nanos) -> Settled {
    let interval = b.interval().as_u64();
    let tat = tat.unwrap_or(Nanos::ZERO);
    if actual > held.estimate {
        let more = actual - held.estimate;
        let base = tat.max(now);
        // The debt's bound: full again at most MAX_REFILL from now (a state
        // further ahead, restored or written by a longer bucket, stays).
        let cap = now.saturating_add(MAX_REFILL).max(base);
        let full = base.saturating_add(Nanos::new(more.saturating_mul(interval)));
        let new = full.min(cap);
        let charged = if new < full {
            new.saturating_sub(base).as_u64() / interval
        } else {
            more
        };
        return if new > tat {
            Settled::of(Effect::Bucket(new), charged, 0)
        } else {
            Settled::of(Effect::None, 0, 0)
        };
    }
    let less = held.estimate - actual;
    let end = held.bucket_end.unwrap_or_else(|| {
        held.at
            .saturating_add(Nanos::new(held.estimate.saturating_mul(interval)))
    });
    // What of the reservation's tokens is not refilled yet: at most that.
    let unrefilled = end.saturating_sub(now);
    let back = Nanos::new(less.saturating_mul(interval)).min(unrefilled);
    let used = tat.saturating_sub(now);
    let new_used = used.saturating_sub(back);
    let returned = (used.saturating_sub(new_used)).as_u64() / interval;
    let effect = if used == Nanos::ZERO || back == Nanos::ZERO {
        Effect::None
    } else if new_used == Nanos::ZERO {
        Effect::Clear
    } else {
        Effect::Bucket(now.saturating_add(new_used))
    };
    Settled::of(effect, 0, returned)
}

/// A sliding window's settlement, on its log.
pub fn window(log: Option<&Log>, w: &Window, held: &Held, actual: u64, now: Nanos) -> Settled {
    let now_us = now.as_micros();
    let span_us = w.span.as_micros();
    let at_us = held.at.as_micros();
    if actual > held.estimate {
        let more = actual - held.estimate;
        let (live, live_entries, last) = match log {
            Some(l) => {
                let e = l.expired_at(now_us, span_us);
                (
                    l.total.saturating_sub(e.units),
                    l.entries.saturating_sub(e.entries),
                    l.last,
                )
            }
            None => (0, 0, 0),
        };
        // A log never holds more than i64::MAX units (what loads back).
        let units = more.min(MAX_INT.saturating_sub(live));
        if units == 0 {
            return Settled::of(Effect::None, 0, 0);
        }
        // Recorded as an admission would be: at now, or at the newest live
        // entry if the clock stepped back; merged when the log is full.
        let at = if live > 0 { now_us.max(last) } else { now_us };
        let coalesce = live > 0 && live_entries >= w.max_entries.max(1) && at > last;
        let u = Update {
            now_us,
            span_us,
            at_us: at,
            units,
            coalesce,
        };
        return Settled::of(Effect::WindowAdd(u), units, 0);
    }
    let less = held.estimate - actual;
    // The reservation's units left the window: nothing of them to give back.
    if at_us.saturating_add(span_us) <= now_us {
        return Settled::of(Effect::None, 0, 0);
    }
    let held_units = log.map_or(0, |l| l.units_from(at_us, now_us, span_us));
    let back = less.min(held_units);
    if back == 0 {
        return Settled::of(Effect::None, 0, 0);
    }
    let r = Refund {
        now_us,
        span_us,
        units: back,
        from_us: Some(at_us),
    };
    Settled::of(Effect::WindowRefund(r), 0, back)
}

/// A fixed (or calendar) window's settlement, on its counter.
pub fn fixed(
    stored: Option<Counter>,
    cal: &Calendar,
    held: &Held,
    actual: u64,
    now: Nanos,
) -> Result<Settled, CmdError> {
    let live = stored.filter(|c| c.end() > now && c.count > 0);
    if actual > held.estimate {
        let more = actual - held.estimate;
        let end_ms = calendar::window_end(cal, now).ok_or(INTERNAL)?.as_millis();
        // As fixed::decide counts: in the live window (which may end later
        // than the current one, if the clock stepped back), or a new one.
        let (count, end, old_end) = match live {
            Some(c) => (c.count, c.end_ms.max(end_ms), Some(c.end_ms)),
            None => (0, end_ms, None),
        };
        // A count never passes i64::MAX (what loads back).
        let new = count.saturating_add(more).min(MAX_INT);
        if new == count {
            return Ok(Settled::of(Effect::None, 0, 0));
        }
        let counter = Counter {
            count: new,
            end_ms: end,
        };
        let effect = Effect::Fixed {
            counter,
            new_end: old_end != Some(end),
        };
        return Ok(Settled::of(effect, new - count, 0));
    }
    let less = held.estimate - actual;
    let Some(c) = live else {
        return Ok(Settled::of(Effect::None, 0, 0));
    };
    // Only the window the reservation was counted in: the live counter
    // ends where the window holding `at` ends (a counter of that window
    // lives until then; an earlier one ended before it began).
    let at_end = calendar::window_end(cal, held.at).ok_or(INTERNAL)?;
    if at_end != c.end() || less == 0 {
        return Ok(Settled::of(Effect::None, 0, 0));
    }
    let back = less.min(c.count);
    let effect = if back == c.count {
        Effect::Clear
    } else {
        Effect::Fixed {
            counter: Counter {
                count: c.count - back,
                end_ms: c.end_ms,
            },
            new_end: false,
        }
    };
    Ok(Settled::of(effect, 0, back))
}

/// The state after a settlement's writes, as the module's store leaves it.
pub fn apply(state: &mut State, settled: &Settled) {
    for e in settled.effects() {
        state.apply(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::algo::{Answer, RetryAfter};
    use crate::limit::{evaluate, Action, Lock};
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;
    const SEC: u64 = 1_000_000_000;
    /// A minute's start (and a second's, a millisecond's).
    const T0: u64 = 1_799_999_940 * SEC;

    fn at(ns: u64) -> Nanos {
        Nanos::new(T0 + ns)
    }

    fn bucket_spec(limit: u64, interval: u64) -> Spec {
        Spec::Bucket(Bucket::new(limit, Nanos::new(interval)).unwrap())
    }

    fn window_spec(limit: u64, span_us: u64, max_entries: u32) -> Spec {
        Spec::Window(Window {
            limit,
            span: Nanos::from_micros(span_us),
            max_entries,
        })
    }

    fn fixed_spec(limit: u64, len_ms: u64) -> Spec {
        Spec::Fixed {
            limit,
            calendar: Calendar::Millis(len_ms),
        }
    }

    /// Takes `cost` at `now` if allowed, writing its effect.
    fn take(state: &mut State, spec: &Spec, now: Nanos, cost: u64) -> Answer {
        let (d, e) = evaluate(state.stored(), spec, now, cost, Action::Take).unwrap();
        if d.allowed {
            state.apply(&e);
        }
        d
    }

    /// A reservation of `estimate` at `now` (decided as a take of at
    /// least one unit, charged `estimate`), as the module makes it.
    fn reserve(state: &mut State, spec: &Spec, now: Nanos, estimate: u64) -> Option<Held> {
        let (d, _) = evaluate(state.stored(), spec, now, estimate.max(1), Action::Take).unwrap();
        if !d.allowed {
            return None;
        }
        let (d, e) = evaluate(state.stored(), spec, now, estimate, Action::Take).unwrap();
        assert!(d.allowed);
        state.apply(&e);
        Some(Held::new(now, estimate, &e))
    }

    fn settle_now(state: &mut State, spec: &Spec, held: &Held, actual: u64, now: Nanos) -> Settled {
        let s = settle(state.stored(), spec, held, actual, now).unwrap();
        apply(state, &s);
        s
    }

    fn peek(state: &State, spec: &Spec, now: Nanos, cost: u64) -> Answer {
        evaluate(state.stored(), spec, now, cost, Action::Take)
            .unwrap()
            .0
    }

    fn fields(a: &Answer) -> [i64; 5] {
        a.reply_fields()
    }

    /// The worked example of docs/COMMANDS.md ("Reservations"): 100 units a minute, a
    /// reservation of 10 at 0 s settled at 150 one second later (debt),
    /// then what a one-unit request hears, per algorithm.
    #[test]
    fn debt_answers_of_the_worked_example() {
        let one_s = at(SEC);
        // [allowed, limit, remaining, retry_ms, reset_ms]
        let cases: [(Spec, [i64; 5], u64, [i64; 5]); 3] = [
            // 100 tokens, one every 0.6 s. Full again at 6 s + 140 x 0.6 s
            // = 90 s: 89 s from now, 29 s past a full refill (about 48
            // tokens of debt); one token fits 0.6 s after that.
            (
                bucket_spec(100, 600 * MS),
                [0, 100, 0, 29_600, 89_000],
                29_600,
                [1, 100, 0, 0, 60_000],
            ),
            // 10 units at 0 s and 140 at 1 s: one unit fits once the 1 s
            // entry leaves, at 61 s; the 10 left at 60 s.
            (
                window_spec(100, 60_000_000, 1_000),
                [0, 100, 0, 60_000, 60_000],
                60_000,
                [1, 100, 99, 0, 60_000],
            ),
            // 150 counted in the minute [0 s, 60 s): denied until it ends,
            // then the excess of 50 is forgiven.
            (
                fixed_spec(100, 60_000),
                [0, 100, 0, 59_000, 59_000],
                59_000,
                [1, 100, 99, 0, 60_000],
            ),
        ];
        for (spec, denied, wait_ms, then) in cases {
            let mut s = State::Empty;
            let held = reserve(&mut s, &spec, at(0), 10).unwrap();
            assert_eq!(fields(&peek(&s, &spec, at(0), 0))[2], 90, "{spec:?}");
            let settled = settle_now(&mut s, &spec, &held, 150, one_s);
            assert_eq!((settled.charged, settled.returned), (140, 0));
            assert_eq!(fields(&peek(&s, &spec, one_s, 1)), denied, "{spec:?}");
            // A peek in debt: denied too, nothing left.
            let p = peek(&s, &spec, one_s, 0);
            assert!(!p.allowed && p.remaining == 0, "{spec:?}");
            // Exactly then, one unit fits; a millisecond before, not.
            let later = one_s.saturating_add(Nanos::from_millis(wait_ms));
            let before = later.saturating_sub(Nanos::from_millis(1));
            assert!(!peek(&s, &spec, before, 1).allowed, "{spec:?}");
            assert_eq!(fields(&take(&mut s, &spec, later, 1)), then, "{spec:?}");
        }
    }

    #[test]
    fn less_than_the_estimate_gives_back_what_is_still_held() {
        // A bucket of 100, one token every 0.6 s: 50 reserved at 0, 5 used.
        let spec = bucket_spec(100, 600 * MS);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 50).unwrap();
        assert_eq!(held.bucket_end, Some(at(30 * SEC)));
        let settled = settle_now(&mut s, &spec, &held, 5, at(SEC));
        assert_eq!(settled.returned, 45);
        assert_eq!(s, State::Bucket(at(3 * SEC)), "as if 5 were taken at 0");
        // Settled after 20 s: the reservation's last 10 s of refill (16.67
        // tokens) are all that is left to give back; the bucket is full.
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 50).unwrap();
        let settled = settle_now(&mut s, &spec, &held, 5, at(20 * SEC));
        assert_eq!(
            (settled.effect.clone(), settled.returned),
            (Effect::Clear, 16)
        );
        // Behind earlier use: its tokens end later, and all 45 come back.
        let mut s = State::Empty;
        take(&mut s, &spec, at(0), 40);
        let held = reserve(&mut s, &spec, at(0), 50).unwrap();
        assert_eq!(held.bucket_end, Some(at(54 * SEC)));
        let settled = settle_now(&mut s, &spec, &held, 5, at(20 * SEC));
        assert_eq!(settled.returned, 45);
        assert_eq!(s, State::Bucket(at(27 * SEC)), "45 x 0.6 s = 27 s earlier");
        // Without the recorded end, at + 50 x 0.6 s = 30 s is assumed: only
        // 10 s (16 tokens) come back.
        let mut s = State::Empty;
        take(&mut s, &spec, at(0), 40);
        let held = Held {
            bucket_end: None,
            ..reserve(&mut s, &spec, at(0), 50).unwrap()
        };
        assert_eq!(
            settle_now(&mut s, &spec, &held, 5, at(20 * SEC)).returned,
            16
        );

        // A sliding window: back from the reservation's own entry, not the
        // newer ones; nothing once it left the window.
        let spec = window_spec(100, 60_000_000, 1_000);
        let mut s = State::Empty;
        take(&mut s, &spec, at(0), 3);
        let held = reserve(&mut s, &spec, at(SEC), 50).unwrap();
        take(&mut s, &spec, at(2 * SEC), 7);
        let settled = settle_now(&mut s, &spec, &held, 5, at(3 * SEC));
        assert_eq!(settled.returned, 45);
        let State::Window(log) = &s else {
            panic!("{s:?}")
        };
        let us = |ns: u64| (T0 + ns) / 1_000;
        assert_eq!(
            log.entry_list(),
            vec![(us(0), 3), (us(SEC), 5), (us(2 * SEC), 7)]
        );
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 50).unwrap();
        take(&mut s, &spec, at(30 * SEC), 10);
        let settled = settle_now(&mut s, &spec, &held, 5, at(60 * SEC));
        assert_eq!((settled.effect, settled.returned), (Effect::None, 0));

        // A fixed window: back in the reservation's window only.
        let spec = fixed_spec(100, 60_000);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 50).unwrap();
        take(&mut s, &spec, at(SEC), 10);
        let settled = settle_now(&mut s, &spec, &held, 5, at(59 * SEC));
        assert_eq!(settled.returned, 45);
        assert!(matches!(s, State::Fixed(c) if c.count == 15));
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(59 * SEC), 50).unwrap();
        take(&mut s, &spec, at(61 * SEC), 10);
        let settled = settle_now(&mut s, &spec, &held, 5, at(62 * SEC));
        assert_eq!((settled.effect, settled.returned), (Effect::None, 0));
        assert!(matches!(s, State::Fixed(c) if c.count == 10));
    }

    /// The rule first proposed, `tat' = max(tat - delta * interval, now)`,
    /// gave back tokens the bucket had refilled already: 10 of 10 reserved
    /// at 0 s, one taken at 20 s, settled at 0 at 20 s left the bucket
    /// full, where charging 0 at 0 s leaves 9.
    #[test]
    fn a_bucket_gives_back_no_token_that_refilled_already() {
        let spec = bucket_spec(10, SEC);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 10).unwrap();
        assert!(take(&mut s, &spec, at(20 * SEC), 1).allowed);
        let settled = settle_now(&mut s, &spec, &held, 0, at(20 * SEC));
        assert_eq!((settled.effect, settled.returned), (Effect::None, 0));
        assert_eq!(peek(&s, &spec, at(20 * SEC), 0).remaining, 9);
    }

    #[test]
    fn debt_is_bounded_by_what_the_state_can_hold() {
        // A bucket: full again at most MAX_REFILL (100 years) from now.
        let spec = bucket_spec(10, SEC);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 1).unwrap();
        let settled = settle_now(&mut s, &spec, &held, MAX_INT, at(0));
        assert_eq!(s, State::Bucket(at(0).saturating_add(MAX_REFILL)));
        assert_eq!(settled.charged, MAX_REFILL.as_u64() / SEC - 1);
        let p = peek(&s, &spec, at(0), 1);
        assert_eq!((p.allowed, p.remaining), (false, 0));
        // A window's log and a fixed count: at most i64::MAX units.
        for spec in [window_spec(10, 1_000_000, 4), fixed_spec(10, 1_000)] {
            let mut s = State::Empty;
            let held = reserve(&mut s, &spec, at(0), 3).unwrap();
            let settled = settle_now(&mut s, &spec, &held, MAX_INT, at(1));
            assert_eq!(settled.charged, MAX_INT - 3, "{spec:?}");
            let again = settle_now(&mut s, &spec, &held, MAX_INT, at(2));
            assert_eq!((again.effect, again.charged), (Effect::None, 0));
            let total = match &s {
                State::Window(l) => l.total(),
                State::Fixed(c) => c.count,
                other => panic!("{other:?}"),
            };
            assert_eq!(total, MAX_INT);
        }
    }

    /// A daily limit in New York: reserved a minute before local midnight,
    /// settled a minute after. The day it was counted in is history: less
    /// gives nothing back; more is counted in the new day.
    #[test]
    fn a_calendar_day_settles_in_the_day_it_is_in() {
        use crate::algo::calendar::Unit;
        let ny = jiff::tz::TimeZone::get("America/New_York").unwrap();
        let spec = Spec::Fixed {
            limit: 500,
            calendar: Calendar::Unit(Unit::Day, Some(ny)),
        };
        // 2027-01-15 00:00 in New York (UTC-5) is 05:00 UTC.
        let midnight = Nanos::from_secs(1_800_000_000 - 1_800_000_000 % 86_400 + 5 * 3_600);
        let before = midnight.saturating_sub(Nanos::from_secs(60));
        let after = midnight.saturating_add(Nanos::from_secs(60));
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, before, 400).unwrap();
        let p = peek(&s, &spec, before, 0);
        assert_eq!((p.remaining, p.reset_after), (100, Nanos::from_secs(60)));
        take(&mut s, &spec, after, 10);
        let less = settle(s.stored(), &spec, &held, 100, after).unwrap();
        assert_eq!((less.effect, less.returned), (Effect::None, 0));
        let more = settle_now(&mut s, &spec, &held, 1_000, after);
        assert_eq!(more.charged, 600);
        // 610 counted in the new day: in debt until the next midnight.
        let d = peek(&s, &spec, after, 1);
        let next = Nanos::from_secs(86_400 - 60);
        assert_eq!((d.allowed, d.remaining), (false, 0));
        assert_eq!(d.retry_after, RetryAfter::After(next));
    }

    #[test]
    fn settling_twice_charges_twice_the_record_is_the_callers() {
        let spec = fixed_spec(100, 60_000);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 10).unwrap();
        settle_now(&mut s, &spec, &held, 15, at(SEC));
        settle_now(&mut s, &spec, &held, 15, at(SEC));
        assert!(matches!(s, State::Fixed(c) if c.count == 20));
    }

    #[test]
    fn a_locked_key_stays_locked_and_its_own_state_is_settled() {
        let spec = window_spec(5, 60_000_000, 1_000);
        let mut s = State::Empty;
        let held = reserve(&mut s, &spec, at(0), 5).unwrap();
        let until = at(30 * SEC);
        let inner = std::mem::take(&mut s);
        s = State::Locked(Box::new(Lock { until, inner }));
        let settled = settle_now(&mut s, &spec, &held, 2, at(SEC));
        assert_eq!(settled.returned, 3);
        let fresh = Some(at(60 * SEC));
        assert_eq!(settled.relock, Some(Effect::Lockout { until, own: fresh }));
        let State::Locked(lock) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(lock.until, until);
        assert!(matches!(&lock.inner, State::Window(l) if l.total() == 2));
        // Debt under the lock: counted, the lock kept; once the lock
        // ends, the debt still denies.
        settle_now(&mut s, &spec, &held, 20, at(2 * SEC));
        assert!(matches!(&s, State::Locked(l) if l.until == until));
        let p = peek(&s, &spec, at(31 * SEC), 1);
        assert_eq!((p.allowed, p.remaining), (false, 0));
        // A lock that ended: the write ends it.
        let settled = settle_now(&mut s, &spec, &held, 6, at(31 * SEC));
        assert_eq!((settled.charged, settled.relock), (1, None));
        assert!(matches!(&s, State::Window(l) if l.total() == 18));
    }

    #[test]
    fn concurrency_has_no_cost_and_other_kinds_are_wrongtype() {
        let held = Held {
            at: at(0),
            estimate: 3,
            bucket_end: None,
        };
        let conc = Spec::Concurrency(crate::algo::lease::Concurrency {
            limit: 2,
            lease: Nanos::from_secs(10),
        });
        let s = settle(Stored::Empty, &conc, &held, 9, at(1)).unwrap();
        assert_eq!(s.effects().count(), 0);
        let bucket = bucket_spec(10, SEC);
        let err = settle(Stored::Bucket(at(5)), &fixed_spec(1, 1), &held, 9, at(1));
        assert_eq!(err, Err(WRONGTYPE));
        // Nothing held on an empty state: nothing to give back.
        let s = settle(Stored::Empty, &bucket, &held, 0, at(1)).unwrap();
        assert_eq!(s.effect, Effect::None);
    }

    /// A limit as the brute-force model sees it.
    #[derive(Debug, Clone)]
    enum Algo {
        Bucket {
            limit: u64,
            interval: u64,
        },
        Sliding {
            limit: u64,
            span_us: u64,
            max_entries: u32,
        },
        Fixed {
            limit: u64,
            len_ms: u64,
        },
    }

    impl Algo {
        fn spec(&self) -> Spec {
            match *self {
                Algo::Bucket { limit, interval } => bucket_spec(limit, interval),
                Algo::Sliding {
                    limit,
                    span_us,
                    max_entries,
                } => window_spec(limit, span_us, max_entries),
                Algo::Fixed { limit, len_ms } => fixed_spec(limit, len_ms),
            }
        }

        fn limit(&self) -> u64 {
            match *self {
                Algo::Bucket { limit, .. }
                | Algo::Sliding { limit, .. }
                | Algo::Fixed { limit, .. } => limit,
            }
        }

        /// The time over which the limit is spent and comes back, in ns.
        fn scale(&self) -> u64 {
            match *self {
                Algo::Bucket { limit, interval } => limit * interval,
                Algo::Sliding { span_us, .. } => span_us * 1_000,
                Algo::Fixed { len_ms, .. } => len_ms * MS,
            }
        }

        /// The finest instant the state tells apart.
        fn grain(&self) -> u64 {
            match self {
                Algo::Sliding { .. } => 1_000,
                _ => 1,
            }
        }

        /// Units a request could take at `t` if the history were `charges`
        /// (instant, units), each charged at its instant: negative in debt.
        /// A bucket's in units of `interval` nanoseconds.
        fn room(&self, charges: &[(u64, u64)], t: u64) -> i128 {
            let units_in = |from: &dyn Fn(u64) -> bool| -> i128 {
                charges
                    .iter()
                    .filter(|c| from(c.0))
                    .map(|c| i128::from(c.1))
                    .sum()
            };
            match *self {
                Algo::Bucket { limit, interval } => {
                    // The textbook virtual bucket, full at the start: at t
                    // it holds min over every s of L*I + (t - s) - I *
                    // (units charged in [s, t]).
                    let full = i128::from(limit) * i128::from(interval);
                    let mut best = full;
                    for &(s, _) in charges {
                        let v =
                            full + i128::from(t - s) - i128::from(interval) * units_in(&|x| x >= s);
                        best = best.min(v);
                    }
                    best
                }
                Algo::Sliding { limit, span_us, .. } => {
                    let now_us = t / 1_000;
                    i128::from(limit) - units_in(&|x| x / 1_000 + span_us > now_us)
                }
                Algo::Fixed { limit, len_ms } => {
                    let window = |x: u64| x / MS / len_ms;
                    i128::from(limit) - units_in(&|x| window(x) == window(t))
                }
            }
        }

        fn allows(&self, charges: &[(u64, u64)], t: u64, cost: u64) -> bool {
            let unit = match *self {
                Algo::Bucket { interval, .. } => i128::from(interval),
                _ => 1,
            };
            cost <= self.limit() && self.room(charges, t) >= i128::from(cost) * unit
        }

        fn remaining(&self, charges: &[(u64, u64)], t: u64) -> u64 {
            let unit = match *self {
                Algo::Bucket { interval, .. } => i128::from(interval),
                _ => 1,
            };
            u64::try_from(self.room(charges, t).max(0) / unit).unwrap()
        }
    }

    fn algo() -> impl Strategy<Value = Algo> {
        prop_oneof![
            (
                1u64..8,
                prop_oneof![Just(MS), Just(100 * MS), Just(SEC), 1u64..5_000]
            )
                .prop_map(|(limit, interval)| Algo::Bucket { limit, interval }),
            (1u64..8, 1u64..5_000, prop_oneof![Just(u32::MAX), 1u32..4]).prop_map(
                |(limit, span_ms, max_entries)| Algo::Sliding {
                    limit,
                    span_us: span_ms * 1_000,
                    max_entries
                }
            ),
            (1u64..8, 1u64..5_000).prop_map(|(limit, len_ms)| Algo::Fixed { limit, len_ms }),
        ]
    }

    /// One step of a history: a plain take, a reservation of an estimate,
    /// or the settlement of a pending reservation (picked by index).
    #[derive(Debug, Clone)]
    enum Op {
        Take(u64),
        Reserve(u64),
        Settle(usize, u64),
    }

    /// Steps with gaps in parts per thousand of the algorithm's scale (0
    /// to 2.5 of it): the state fills, spends, refills and ages.
    fn history() -> impl Strategy<Value = Vec<(u64, Op)>> {
        let op = prop_oneof![
            2 => (0u64..9).prop_map(Op::Take),
            3 => (0u64..9).prop_map(Op::Reserve),
            3 => (any::<usize>(), prop_oneof![0u64..9, 0u64..25]).prop_map(|(i, a)| Op::Settle(i, a)),
        ];
        let gap = prop_oneof![Just(0u64), 0u64..100, 0u64..2_500];
        prop::collection::vec((gap, op), 1..60)
    }

    /// The real state and the model, side by side, through one history.
    struct Run {
        algo: Algo,
        spec: Spec,
        state: State,
        /// What the model charged: (instant, units); a reservation's
        /// estimate until it settles, then its actual cost, at its instant.
        charges: Vec<(u64, u64)>,
        /// Pending reservations: the record, its charge's index.
        pending: Vec<(Held, usize)>,
    }

    impl Run {
        fn new(algo: Algo) -> Run {
            Run {
                spec: algo.spec(),
                algo,
                state: State::Empty,
                charges: vec![],
                pending: vec![],
            }
        }

        /// The state's own view of the units it holds at `t`: the model's
        /// room, computed on the state's answer (a bucket's in time).
        fn check_admission(&self, t: u64, cost: u64) -> Result<Answer, TestCaseError> {
            let d = peek(&self.state, &self.spec, Nanos::new(t), cost);
            // Never more admitted than charging `actual` at `at` allows.
            prop_assert!(
                !d.allowed || self.algo.allows(&self.charges, t, cost),
                "admitted {} at {} beyond the model: {:?} {:?}",
                cost,
                t,
                self.charges,
                self.state
            );
            prop_assert!(
                d.remaining <= self.algo.remaining(&self.charges, t),
                "remaining {} above the model's {} at {}",
                d.remaining,
                self.algo.remaining(&self.charges, t),
                t
            );
            Ok(d)
        }

        /// Debt is honest: a state over its limit denies everything, says
        /// 0 remaining, and its retry_after is the exact instant `cost`
        /// fits again (a grain earlier it does not); reset_after is when
        /// it is fresh.
        fn check_honest(&self, t: u64, cost: u64) -> Result<(), TestCaseError> {
            let now = Nanos::new(t);
            let p = peek(&self.state, &self.spec, now, 0);
            if !p.allowed {
                prop_assert_eq!(p.remaining, 0, "in debt at {}: {:?}", t, self.state);
                prop_assert!(!peek(&self.state, &self.spec, now, cost).allowed);
            }
            let d = peek(&self.state, &self.spec, now, cost);
            if let RetryAfter::After(wait) = d.retry_after {
                prop_assert!(!d.allowed);
                let then = now.saturating_add(wait);
                prop_assert!(
                    peek(&self.state, &self.spec, then, cost).allowed,
                    "cost {} still denied after retry_after {:?}: {:?}",
                    cost,
                    wait,
                    self.state
                );
                let grain = Nanos::new(self.algo.grain());
                if wait >= grain {
                    prop_assert!(
                        !peek(&self.state, &self.spec, then.saturating_sub(grain), cost).allowed,
                        "cost {} allowed before retry_after {:?}",
                        cost,
                        wait
                    );
                }
            }
            let fresh = peek(
                &self.state,
                &self.spec,
                now.saturating_add(d.reset_after),
                0,
            );
            prop_assert_eq!(
                fresh.remaining,
                self.algo.limit(),
                "not fresh after reset_after"
            );
            Ok(())
        }

        fn step(&mut self, t: u64, op: &Op) -> Result<(), TestCaseError> {
            let now = Nanos::new(t);
            match *op {
                Op::Take(cost) => {
                    let d = self.check_admission(t, cost)?;
                    self.check_honest(t, cost)?;
                    if d.allowed && cost > 0 {
                        take(&mut self.state, &self.spec, now, cost);
                        self.charges.push((t, cost));
                    }
                }
                Op::Reserve(estimate) => {
                    self.check_admission(t, estimate.max(1))?;
                    if let Some(held) = reserve(&mut self.state, &self.spec, now, estimate) {
                        self.pending.push((held, self.charges.len()));
                        self.charges.push((t, estimate));
                    }
                }
                Op::Settle(i, actual) => {
                    if self.pending.is_empty() {
                        return Ok(());
                    }
                    let (held, idx) = self.pending.remove(i % self.pending.len());
                    let s = settle_now(&mut self.state, &self.spec, &held, actual, now);
                    self.charges[idx].1 = actual;
                    // What a settlement leaves loads back (RDB, DUMP).
                    match &self.state {
                        State::Window(log) => {
                            let mut b = vec![];
                            log.encode(&mut b);
                            let back = Log::decode(&b).map(|l| (l.entry_list(), l.total()));
                            prop_assert_eq!(back, Ok((log.entry_list(), log.total())));
                        }
                        State::Fixed(c) => prop_assert!(c.count <= MAX_INT),
                        _ => {}
                    }
                    // Never more than the difference, either way.
                    prop_assert!(s.charged <= actual.saturating_sub(held.estimate));
                    prop_assert!(s.returned <= held.estimate.saturating_sub(actual));
                    // From here on, at once and later, never more
                    // admitted than the model allows.
                    for later in [
                        0,
                        self.algo.scale() / 3,
                        self.algo.scale(),
                        self.algo.scale() * 2,
                    ] {
                        for cost in [1, self.algo.limit() / 2, self.algo.limit()] {
                            self.check_admission(t + later, cost)?;
                        }
                    }
                    self.check_honest(t, 1)?;
                }
            }
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_500))]

        /// Reservations settled later, more or less than their estimates
        /// (debt up to three limits), among plain takes, for every
        /// algorithm, against a brute-force model that charged each
        /// reservation's actual cost at its instant: no decision admits
        /// what the model would not, now or later; remaining is never above
        /// the model's; during debt every request is denied with 0
        /// remaining and an exact retry_after and reset_after.
        #[test]
        fn settling_never_admits_more_than_charging_actual_at_at(
            algo in algo(),
            offset in 0u64..SEC,
            steps in history(),
        ) {
            let mut run = Run::new(algo);
            let mut t = T0 + offset;
            for (gap, op) in &steps {
                t += run.algo.scale() * gap / 1_000;
                run.step(t, op)?;
            }
        }

        /// With nothing refilled or left the window meanwhile (every step
        /// at one instant for a bucket; within one window for the others),
        /// settling is exact: the state holds what charging each actual
        /// cost at its reservation's instant would have, unit for unit,
        /// and each settlement charges or gives back the whole difference.
        #[test]
        fn settled_inside_the_window_is_exact(
            algo in algo(),
            steps in prop::collection::vec((0u64..3, prop_oneof![
                (0u64..9).prop_map(Op::Take),
                (0u64..9).prop_map(Op::Reserve),
                (any::<usize>(), 0u64..25).prop_map(|(i, a)| Op::Settle(i, a)),
            ]), 1..60),
        ) {
            let mut run = Run::new(algo.clone());
            // At a window's start, so that every step is inside it.
            let mut t = T0 - T0 % run.algo.scale();
            for (gap, op) in &steps {
                if !matches!(algo, Algo::Bucket { .. }) {
                    // At most 3/200 of the window a step, 60 steps.
                    t += run.algo.scale() * gap / 200;
                }
                if let Op::Settle(i, actual) = *op {
                    if run.pending.is_empty() {
                        continue;
                    }
                    let (held, _) = run.pending[i % run.pending.len()];
                    let s = settle(run.state.stored(), &run.spec, &held, actual, Nanos::new(t)).unwrap();
                    prop_assert_eq!(s.charged, actual.saturating_sub(held.estimate));
                    prop_assert_eq!(s.returned, held.estimate.saturating_sub(actual));
                }
                run.step(t, op)?;
                let total: u64 = run.charges.iter().map(|c| c.1).sum();
                let held = match (&run.state, &algo) {
                    (State::Empty, _) => 0,
                    (State::Bucket(tat), Algo::Bucket { interval, .. }) => (tat.as_u64() - t) / interval,
                    (State::Window(log), _) => log.total(),
                    (State::Fixed(c), _) => c.count,
                    (other, _) => return Err(TestCaseError::fail(format!("{other:?}"))),
                };
                prop_assert_eq!(held, total, "the state holds {} units, the model {}", held, total);
                if let State::Bucket(tat) = run.state {
                    prop_assert_eq!((tat.as_u64() - t) % algo_interval(&algo), 0);
                }
            }
        }
    }

    fn algo_interval(a: &Algo) -> u64 {
        match *a {
            Algo::Bucket { interval, .. } => interval,
            _ => 1,
        }
    }
}
