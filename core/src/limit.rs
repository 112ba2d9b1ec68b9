//! One limit on one state: the decision every limiter command, RL.ALL
//! clause and the client's fallback makes, and the write it calls for.
//!
//! [`evaluate`] is pure: the stored state, the limit, `now`, the cost and
//! the mode in; the decision and its [`Effect`] out. Whoever keeps the
//! state (a Redis key, a map in the client) writes the effect.

use crate::algo::bucket::Bucket;
use crate::algo::calendar::{self, Calendar};
use crate::algo::fixed::{self, Counter};
use crate::algo::lease::{self, Concurrency, Leases, Op};
use crate::algo::sliding::{self, Log, Refund, Update, Window};
use crate::algo::{Change, Decision};
use crate::error::{CmdError, INTERNAL, WRONGTYPE};
use crate::grammar::Mode;
use crate::time::Nanos;

/// A limit's parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Bucket(Bucket),
    Window(Window),
    Fixed {
        limit: u64,
        calendar: Calendar,
    },
    /// At most `limit` leases live (one slot a request).
    Concurrency(Concurrency),
}

/// The state kinds, one per module type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bucket,
    Window,
    Fixed,
    Leases,
}

impl Spec {
    /// The kind of state this limit keeps.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Bucket(_) => Kind::Bucket,
            Spec::Window(_) => Kind::Window,
            Spec::Fixed { .. } => Kind::Fixed,
            Spec::Concurrency(_) => Kind::Leases,
        }
    }

    /// The reply's `limit`.
    pub fn limit(&self) -> u64 {
        match self {
            Spec::Bucket(b) => b.limit(),
            Spec::Window(w) => w.limit,
            Spec::Fixed { limit, .. } => *limit,
            Spec::Concurrency(c) => c.limit,
        }
    }
}

/// A state as read from where it is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored<'a> {
    Empty,
    /// A bucket's full-again instant.
    Bucket(Nanos),
    /// A fixed window's count and end.
    Fixed(Counter),
    Window(&'a Log),
    Leases(&'a Leases),
}

/// A state owned outside Redis (the client's fallback, the module's
/// projection of a queue): what [`Stored`] borrows, and how an effect
/// changes it, as the module's store writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum State {
    #[default]
    Empty,
    Bucket(Nanos),
    Fixed(Counter),
    Window(Log),
    Leases(Leases),
}

impl State {
    /// An owned copy of a stored state.
    pub fn of(stored: Stored<'_>) -> State {
        match stored {
            Stored::Empty => State::Empty,
            Stored::Bucket(t) => State::Bucket(t),
            Stored::Fixed(c) => State::Fixed(c),
            Stored::Window(l) => State::Window(l.clone()),
            Stored::Leases(l) => State::Leases(l.clone()),
        }
    }

    pub fn stored(&self) -> Stored<'_> {
        match self {
            State::Empty => Stored::Empty,
            State::Bucket(t) => Stored::Bucket(*t),
            State::Fixed(c) => Stored::Fixed(*c),
            State::Window(l) => Stored::Window(l),
            State::Leases(l) => Stored::Leases(l),
        }
    }

    /// Applies an effect; returns when the state is fresh again (its key
    /// would expire), or `None` once it is empty.
    pub fn apply(&mut self, effect: &Effect) -> Option<Nanos> {
        match effect {
            Effect::None => {}
            Effect::Clear => *self = State::Empty,
            Effect::Bucket(tat) => *self = State::Bucket(*tat),
            Effect::Fixed { counter, .. } => *self = State::Fixed(*counter),
            Effect::WindowAdd(u) => match self {
                State::Window(log) => log.apply(u),
                _ => *self = State::Window(Log::from_update(u)),
            },
            Effect::WindowRefund(r) => {
                if let State::Window(log) = self {
                    log.apply_refund(r);
                    if log.is_empty() {
                        *self = State::Empty;
                    }
                }
            }
            Effect::Lease(op) => {
                match self {
                    State::Leases(l) => l.apply(op),
                    _ => *self = State::Leases(Leases::from_op(op)),
                }
                if matches!(self, State::Leases(l) if l.is_empty()) {
                    *self = State::Empty;
                }
            }
        }
        self.fresh_at(effect)
    }

    fn fresh_at(&self, effect: &Effect) -> Option<Nanos> {
        let span_us = match effect {
            Effect::WindowAdd(u) => u.span_us,
            Effect::WindowRefund(r) => r.span_us,
            _ => 0,
        };
        match self {
            State::Empty => None,
            State::Bucket(t) => Some(*t),
            State::Fixed(c) => Some(Nanos::from_millis(c.end_ms)),
            State::Window(l) => Some(Nanos::from_micros(l.last_us().saturating_add(span_us))),
            State::Leases(l) => l.last_expiry(),
        }
    }
}

/// The write a decision calls for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    None,
    /// A bucket's new full-again instant; the key expires then.
    Bucket(Nanos),
    /// A fixed window's new count; `new_end` when its window's end (the
    /// key's expiry) changes too.
    Fixed {
        counter: Counter,
        new_end: bool,
    },
    WindowAdd(Update),
    WindowRefund(Refund),
    /// A lease taken, released or renewed.
    Lease(Op),
    /// The limiter is fresh again: delete the key.
    Clear,
}

/// Decides `cost` units at `now` on `stored`, writing nothing. A state of
/// another kind than the spec's is WRONGTYPE.
#[inline]
pub fn evaluate(
    stored: Stored<'_>,
    spec: &Spec,
    now: Nanos,
    cost: u64,
    mode: Mode,
) -> Result<(Decision, Effect), CmdError> {
    match (spec, stored) {
        (Spec::Bucket(b), Stored::Empty | Stored::Bucket(_)) => {
            let tat = match stored {
                Stored::Bucket(t) => Some(t),
                _ => None,
            };
            Ok(bucket(b, tat, now, cost, mode))
        }
        (Spec::Window(w), Stored::Empty | Stored::Window(_)) => {
            let log = match stored {
                Stored::Window(l) => Some(l),
                _ => None,
            };
            let now_us = now.as_micros();
            Ok(match mode {
                Mode::Take => {
                    let (d, u) = sliding::decide(log, w, now_us, cost);
                    (d, u.map_or(Effect::None, Effect::WindowAdd))
                }
                Mode::Refund => {
                    let (d, r) = sliding::refund(log, w, now_us, cost);
                    (d, r.map_or(Effect::None, Effect::WindowRefund))
                }
            })
        }
        (Spec::Fixed { limit, calendar }, Stored::Empty | Stored::Fixed(_)) => {
            let stored = match stored {
                Stored::Fixed(c) => Some(c),
                _ => None,
            };
            Ok(match mode {
                Mode::Take => {
                    let now_ms = i64::try_from(now.as_u64() / 1_000_000).map_err(|_| INTERNAL)?;
                    let (_, end) = calendar::bounds(calendar, now_ms).ok_or(INTERNAL)?;
                    let end = u64::try_from(end).map_err(|_| INTERNAL)?;
                    let (d, c) = fixed::decide(*limit, stored, end, now, cost);
                    let old_end = stored.map(|s| s.end_ms);
                    let effect = c.map_or(Effect::None, |counter| Effect::Fixed {
                        counter,
                        new_end: old_end != Some(counter.end_ms),
                    });
                    (d, effect)
                }
                Mode::Refund => {
                    let (d, ch) = fixed::refund(*limit, stored, now, cost);
                    let set = |counter| Effect::Fixed {
                        counter,
                        new_end: false,
                    };
                    (d, effect_of(ch, set))
                }
            })
        }
        (Spec::Concurrency(c), Stored::Empty | Stored::Leases(_)) => {
            let leases = match stored {
                Stored::Leases(l) => Some(l),
                _ => None,
            };
            match mode {
                // Cost 0 is a peek: the decision, no lease.
                Mode::Take => {
                    let (d, op) = lease::acquire(leases, c, now);
                    let op = op.filter(|_| cost > 0);
                    Ok((d, op.map_or(Effect::None, Effect::Lease)))
                }
                // Slots come back by RL.RELEASE (the grammar refuses this).
                Mode::Refund => Err(INTERNAL),
            }
        }
        _ => Err(WRONGTYPE),
    }
}

impl Effect {
    /// The lease an effect takes, if it takes one.
    pub fn lease_id(&self) -> Option<u64> {
        match self {
            Effect::Lease(Op::Acquire { id, .. }) => Some(*id),
            _ => None,
        }
    }
}

/// The bucket decision, given its state however it was read.
#[inline]
pub fn bucket(
    b: &Bucket,
    tat: Option<Nanos>,
    now: Nanos,
    cost: u64,
    mode: Mode,
) -> (Decision, Effect) {
    match mode {
        Mode::Take => {
            let (d, new) = b.decide(tat, now, cost);
            (d, new.map_or(Effect::None, Effect::Bucket))
        }
        Mode::Refund => {
            let (d, ch) = b.refund(tat, now, cost);
            (d, effect_of(ch, Effect::Bucket))
        }
    }
}

fn effect_of<S>(c: Change<S>, set: impl FnOnce(S) -> Effect) -> Effect {
    match c {
        Change::None => Effect::None,
        Change::Set(s) => set(s),
        Change::Clear => Effect::Clear,
    }
}
