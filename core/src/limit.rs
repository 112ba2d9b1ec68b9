//! One limit on one state: the decision every limiter command, RL.ALL
//! clause and the client's fallback makes, and the write it calls for.
//!
//! [`evaluate`] is pure: the stored state, the limit, `now`, the cost and
//! the mode in; the decision and its [`Effect`] out. Whoever keeps the
//! state (a Redis key, a map in the client) writes the effect.

use crate::algo::bucket::Bucket;
use crate::algo::calendar::{self, Calendar};
use crate::algo::fixed::{self, Counter};
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
    Fixed { limit: u64, calendar: Calendar },
}

/// The state kinds, one per module type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bucket,
    Window,
    Fixed,
}

impl Spec {
    /// The kind of state this limit keeps.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Bucket(_) => Kind::Bucket,
            Spec::Window(_) => Kind::Window,
            Spec::Fixed { .. } => Kind::Fixed,
        }
    }

    /// The reply's `limit`.
    pub fn limit(&self) -> u64 {
        match self {
            Spec::Bucket(b) => b.limit(),
            Spec::Window(w) => w.limit,
            Spec::Fixed { limit, .. } => *limit,
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
}

impl State {
    /// An owned copy of a stored state.
    pub fn of(stored: Stored<'_>) -> State {
        match stored {
            Stored::Empty => State::Empty,
            Stored::Bucket(t) => State::Bucket(t),
            Stored::Fixed(c) => State::Fixed(c),
            Stored::Window(l) => State::Window(l.clone()),
        }
    }

    pub fn stored(&self) -> Stored<'_> {
        match self {
            State::Empty => Stored::Empty,
            State::Bucket(t) => Stored::Bucket(*t),
            State::Fixed(c) => Stored::Fixed(*c),
            State::Window(l) => Stored::Window(l),
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
        _ => Err(WRONGTYPE),
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
