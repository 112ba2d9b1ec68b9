//! One limit on one state: the decision every limiter command, RL.ALL
//! clause and the client's fallback makes, and the write it calls for.
//!
//! [`evaluate`] is pure: the stored state, the limit, `now`, the cost and
//! the action in; the decision and its [`Effect`] out. Whoever keeps the
//! state (a Redis key, a map in the client) writes the effect.

use crate::algo::all::binding;
use crate::algo::bucket::Bucket;
use crate::algo::calendar::{self, Calendar};
use crate::algo::fixed::{self, Counter};
use crate::algo::lease::{self, Concurrency, Leases, Op};
use crate::algo::sliding::{self, Log, Refund, Update, Window};
use crate::algo::{Answer, Change, RetryAfter};
use crate::error::{CmdError, INTERNAL, WRONGTYPE};
use crate::few::Few;
use crate::reserve::Reservation;
use crate::time::Nanos;

/// Take units, or give them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Take,
    Refund,
}

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
pub enum StateKind {
    Bucket,
    Window,
    Fixed,
    Leases,
}

impl Spec {
    /// The kind of state this limit keeps.
    pub fn kind(&self) -> StateKind {
        match self {
            Spec::Bucket(_) => StateKind::Bucket,
            Spec::Window(_) => StateKind::Window,
            Spec::Fixed { .. } => StateKind::Fixed,
            Spec::Concurrency(_) => StateKind::Leases,
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
    /// Locked out by a policy's LOCKOUT: every request is denied until the
    /// lock ends, and the limit's own state carries on after it.
    Locked(&'a Lock),
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
    Locked(Box<Lock>),
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
            Stored::Locked(l) => State::Locked(Box::new(l.clone())),
        }
    }

    pub fn stored(&self) -> Stored<'_> {
        match self {
            State::Empty => Stored::Empty,
            State::Bucket(t) => Stored::Bucket(*t),
            State::Fixed(c) => Stored::Fixed(*c),
            State::Window(l) => Stored::Window(l),
            State::Leases(l) => Stored::Leases(l),
            State::Locked(l) => Stored::Locked(l),
        }
    }

    /// Applies an effect; returns when the state is fresh again (its key
    /// would expire), or `None` once it is empty.
    pub fn apply(&mut self, effect: &Effect) -> Option<Nanos> {
        if let Effect::Lockout { until, .. } = effect {
            let inner = std::mem::take(self).unlocked();
            *self = State::Locked(Box::new(Lock {
                until: *until,
                inner,
            }));
            return self.fresh_at(effect);
        }
        if !matches!(effect, Effect::None) {
            // Any other write goes to the limit's own state: the lock ended.
            let inner = std::mem::take(self).unlocked();
            *self = inner;
        }
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
            Effect::Lockout { .. } => {}
            Effect::Lease(op) => {
                match self {
                    State::Leases(l) => l.apply(op),
                    _ => *self = State::Leases(Leases::from_op(op)),
                }
                if matches!(self, State::Leases(l) if l.is_empty()) {
                    *self = State::Empty;
                }
            }
            Effect::Reserve(r) => match self {
                State::Leases(l) => l.reserve(r),
                _ => *self = State::Leases(Leases::from_reservation(r)),
            },
        }
        self.fresh_at(effect)
    }

    fn fresh_at(&self, effect: &Effect) -> Option<Nanos> {
        let span = match effect {
            Effect::WindowAdd(u) => u.span(),
            Effect::WindowRefund(r) => r.span(),
            _ => Nanos::ZERO,
        };
        match self {
            State::Empty => None,
            State::Bucket(t) => Some(*t),
            State::Fixed(c) => Some(c.end()),
            State::Window(l) => Some(l.last().saturating_add(span)),
            State::Leases(l) => l.last_expiry(),
            State::Locked(l) => {
                let own = match effect {
                    Effect::Lockout { own, .. } => *own,
                    _ => l.inner.fresh_at(effect),
                };
                Some(own.map_or(l.until, |t| t.max(l.until)))
            }
        }
    }

    /// The limit's own state under a lock (itself if not locked).
    fn unlocked(self) -> State {
        match self {
            State::Locked(l) => l.inner,
            other => other,
        }
    }
}

/// A key locked out by a policy's LOCKOUT, and the limit's own state, kept
/// as it was when the lock began: nothing is taken while it lasts, and the
/// limit carries on from there when it ends (a daily limit stays spent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub until: Nanos,
    pub inner: State,
}

const INNER_EMPTY: u8 = b'E';
const INNER_BUCKET: u8 = b'B';
const INNER_FIXED: u8 = b'F';
const INNER_WINDOW: u8 = b'W';
const INNER_LEASES: u8 = b'L';

impl Lock {
    /// `until` (u64 LE, ns), then the inner state: a tag and its bytes
    /// (`E`; `B` tat; `F` count, end ms; `W` a log; `L` leases).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.until.as_u64().to_le_bytes());
        match &self.inner {
            State::Empty | State::Locked(_) => out.push(INNER_EMPTY),
            State::Bucket(t) => {
                out.push(INNER_BUCKET);
                out.extend_from_slice(&t.as_u64().to_le_bytes());
            }
            State::Fixed(c) => {
                out.push(INNER_FIXED);
                out.extend_from_slice(&c.count.to_le_bytes());
                out.extend_from_slice(&c.end_ms.to_le_bytes());
            }
            State::Window(l) => {
                out.push(INNER_WINDOW);
                l.encode(out);
            }
            State::Leases(l) => {
                out.push(INNER_LEASES);
                l.encode(out);
            }
        }
    }

    pub fn encoded_len(&self) -> usize {
        9 + match &self.inner {
            State::Empty | State::Locked(_) => 0,
            State::Bucket(_) => 8,
            State::Fixed(_) => 16,
            State::Window(l) => l.encoded_len(),
            State::Leases(l) => l.encoded_len(),
        }
    }

    /// Reads what [`Lock::encode`] wrote; `None` for anything else (a zero
    /// time, a zero count, an unknown tag, trailing bytes).
    pub fn decode(b: &[u8]) -> Option<Lock> {
        let u64_at = |i: usize| -> Option<u64> {
            let bytes: [u8; 8] = b.get(i..i.checked_add(8)?)?.try_into().ok()?;
            Some(u64::from_le_bytes(bytes))
        };
        let until = Nanos::new(u64_at(0).filter(|t| *t > 0)?);
        let rest = b.get(9..)?;
        let inner = match (*b.get(8)?, rest.len()) {
            (INNER_EMPTY, 0) => State::Empty,
            (INNER_BUCKET, 8) => State::Bucket(Nanos::new(u64_at(9).filter(|t| *t > 0)?)),
            // A count as an rl-fixwin's: one no limit allows (above
            // i64::MAX) would be written back as one that fails to load.
            (INNER_FIXED, 16) => State::Fixed(Counter {
                count: u64_at(9).filter(|c| (1..=crate::bounds::MAX_INT).contains(c))?,
                end_ms: u64_at(17)?,
            }),
            (INNER_WINDOW, _) => State::Window(Log::decode(rest).ok().filter(|l| !l.is_empty())?),
            (INNER_LEASES, _) => State::Leases(Leases::decode(rest).filter(|l| !l.is_empty())?),
            _ => return None,
        };
        Some(Lock { until, inner })
    }

    /// Heap bytes beyond the lock itself.
    pub fn heap_size(&self) -> usize {
        match &self.inner {
            State::Window(l) => l.heap_size(),
            State::Leases(l) => l.heap_size(),
            _ => 0,
        }
    }
}

/// Could a command on a server whose clock reads `now` have written this
/// state? Each instant within the longest span its kind allows (a bucket
/// refills within 100 years, leases and lockouts last at most 10 years, a
/// window's entries are admissions, never ahead of the clock), plus `skew`
/// for the clock of the server that wrote it. What [`Lock::decode`] and
/// the kinds' own decoders accept is what saves and loads again; this is
/// the stricter test a RESTORE from a client also passes, so a forged
/// payload cannot deny for centuries.
pub fn plausible(stored: Stored<'_>, now: Nanos, skew: Nanos) -> bool {
    let within = |t: Nanos, span: Nanos| t <= now.saturating_add(span).saturating_add(skew);
    match stored {
        Stored::Empty => true,
        // A window ends at most its length from now. (An rl-fixwin's end
        // is its key's expiry, which RESTORE's caller sets: only a lock's
        // inner window arrives here.)
        Stored::Fixed(c) => within(
            Nanos::from_millis(c.end_ms),
            Nanos::from_micros(crate::bounds::MAX_SPAN_US),
        ),
        Stored::Bucket(tat) => within(tat, crate::bounds::MAX_REFILL),
        Stored::Window(log) => within(log.last(), Nanos::ZERO),
        Stored::Leases(leases) => leases.plausible(now, skew),
        Stored::Locked(lock) => {
            within(lock.until, Nanos::new(crate::bounds::MAX_LOCKOUT_NS))
                && plausible(lock.inner.stored(), now, skew)
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
    /// A lease taken as a reservation, with its record (crate::reserve).
    Reserve(Box<Reservation>),
    /// A policy's LOCKOUT: the key denies everything until `until`. `own`:
    /// when the limit's own state kept under the lock is fresh again (none
    /// if it is empty); the key lives until the later of the two.
    Lockout {
        until: Nanos,
        own: Option<Nanos>,
    },
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
    action: Action,
) -> Result<(Answer, Effect), CmdError> {
    let stored = match stored {
        Stored::Locked(l) if now < l.until => {
            let (own, _) = evaluate(l.inner.stored(), spec, now, cost, action)?;
            return Ok((locked(spec, l.until, now, &own), Effect::None));
        }
        // The lock ended: the limit carries on from its state.
        Stored::Locked(l) => l.inner.stored(),
        other => other,
    };
    match (spec, stored) {
        (Spec::Bucket(b), Stored::Empty | Stored::Bucket(_)) => {
            let tat = match stored {
                Stored::Bucket(t) => Some(t),
                _ => None,
            };
            Ok(bucket(b, tat, now, cost, action))
        }
        (Spec::Window(w), Stored::Empty | Stored::Window(_)) => {
            let log = match stored {
                Stored::Window(l) => Some(l),
                _ => None,
            };
            Ok(match action {
                Action::Take => {
                    let (d, u) = sliding::decide(log, w, now, cost);
                    (d, u.map_or(Effect::None, Effect::WindowAdd))
                }
                Action::Refund => {
                    let (d, r) = sliding::refund(log, w, now, cost);
                    (d, r.map_or(Effect::None, Effect::WindowRefund))
                }
            })
        }
        (Spec::Fixed { limit, calendar }, Stored::Empty | Stored::Fixed(_)) => {
            let stored = match stored {
                Stored::Fixed(c) => Some(c),
                _ => None,
            };
            Ok(match action {
                Action::Take => {
                    let end = calendar::window_end(calendar, now).ok_or(INTERNAL)?;
                    let (d, c) = fixed::decide(*limit, stored, end, now, cost);
                    let old_end = stored.map(|s| s.end_ms);
                    let effect = c.map_or(Effect::None, |counter| Effect::Fixed {
                        counter,
                        new_end: old_end != Some(counter.end_ms),
                    });
                    (d, effect)
                }
                Action::Refund => {
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
            match action {
                // Cost 0 is a peek: the decision, no lease.
                Action::Take => {
                    let (d, op) = lease::acquire(leases, c, now);
                    let op = op.filter(|_| cost > 0);
                    Ok((d, op.map_or(Effect::None, Effect::Lease)))
                }
                // Slots come back by RL.RELEASE (the grammar refuses this).
                Action::Refund => Err(INTERNAL),
            }
        }
        _ => Err(WRONGTYPE),
    }
}

/// The answer of a locked-out key: denied, nothing taken, nothing given
/// back. The retry is when the lock ends, or later if the limit itself
/// (`own`, its decision without the lock) would deny until then.
fn locked(spec: &Spec, until: Nanos, now: Nanos, own: &Answer) -> Answer {
    let left = until.saturating_sub(now);
    let retry_after = match own.retry_after {
        RetryAfter::After(t) => RetryAfter::After(t.max(left)),
        RetryAfter::Never => RetryAfter::Never,
        RetryAfter::Now => RetryAfter::After(left),
    };
    Answer {
        allowed: false,
        limit: spec.limit(),
        remaining: 0,
        retry_after,
        reset_after: own.reset_after.max(left),
    }
}

/// What a named policy adds to its limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// Decide and record as if enforced, but answer allowed.
    pub shadow: bool,
    /// A denial locks the key out for this long.
    pub lockout: Option<Nanos>,
    /// The rules are a named policy's, as it is defined now: a lock the key
    /// holds from an earlier definition lasts no longer than this one's
    /// LOCKOUT from now (none at all if it has no LOCKOUT). Limits written
    /// inline leave a key's lock as it is.
    pub policy: bool,
}

/// What a decision under rules did, for counting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdict {
    /// The limit denied (the reply may still say allowed: SHADOW).
    pub denied: bool,
    /// The denial started a lockout.
    pub locked: bool,
}

/// When a limit's own state is fresh again (its key would expire), if it
/// holds anything: a window's log needs the limit's window length.
fn own_fresh(stored: Stored<'_>, spec: &Spec) -> Option<Nanos> {
    match (stored, spec) {
        (Stored::Bucket(tat), _) => Some(tat),
        (Stored::Fixed(c), _) => Some(c.end()),
        (Stored::Window(log), Spec::Window(w)) => Some(log.last().saturating_add(w.span)),
        (Stored::Leases(l), _) => l.last_expiry(),
        _ => None,
    }
}

/// [`evaluate`] under a policy's rules. A denial (one that some wait would
/// allow) of a key that is not locked out already starts a LOCKOUT; under
/// SHADOW the decision and its record are those of the limit, and the
/// reply says allowed.
#[inline(always)]
pub fn evaluate_with(
    stored: Stored<'_>,
    spec: &Spec,
    rules: Rules,
    now: Nanos,
    cost: u64,
    action: Action,
) -> Result<(Answer, Effect, Verdict), CmdError> {
    // A policy mended since the key was locked: the lock is cut to what
    // the policy says now (the cut is written, so it is done once).
    let mut cut = None;
    let mended;
    let stored = match stored {
        Stored::Locked(l) if rules.policy && now < l.until => match rules.lockout {
            None => l.inner.stored(),
            Some(len) if l.until > now.saturating_add(len) => {
                let until = now.saturating_add(len);
                cut = Some(until);
                mended = Lock {
                    until,
                    inner: l.inner.clone(),
                };
                Stored::Locked(&mended)
            }
            Some(_) => stored,
        },
        other => other,
    };
    let locked_already = matches!(stored, Stored::Locked(l) if now < l.until);
    let (d, effect) = evaluate(stored, spec, now, cost, action)?;
    // When the state kept under a lock is fresh again: a cut lock's key
    // expires then (or at the cut), not at the end of the lock it replaces.
    let own = match stored {
        Stored::Locked(l) => own_fresh(l.inner.stored(), spec),
        other => own_fresh(other, spec),
    };
    // Only a request that takes writes the cut, as only one starts a lock:
    // a peek, a refund or a dry run sees the cut lock and writes nothing.
    let effect = match cut {
        Some(until) if action == Action::Take && cost > 0 => Effect::Lockout { until, own },
        _ => effect,
    };
    let mut verdict = Verdict {
        denied: !d.allowed,
        locked: false,
    };
    let mut effect = effect;
    if let Some(lockout) = rules.lockout {
        let waits = matches!(d.retry_after, RetryAfter::After(_));
        // A peek (cost 0) takes nothing: it never locks, even when the
        // limit is over (lowered under a key's state, a clock stepped back).
        if !d.allowed && waits && !locked_already && action == Action::Take && cost > 0 {
            effect = Effect::Lockout {
                until: now.saturating_add(lockout),
                own,
            };
            verdict.locked = true;
        }
    }
    let d = if verdict.locked {
        // The retry is when the lock ends (or the limit allows, if later).
        let limit_wait = match d.retry_after {
            RetryAfter::After(t) => t,
            _ => Nanos::ZERO,
        };
        let lockout = rules.lockout.unwrap_or(Nanos::ZERO);
        Answer {
            retry_after: RetryAfter::After(lockout.max(limit_wait)),
            reset_after: d.reset_after.max(lockout),
            ..d
        }
    } else {
        d
    };
    let replied = if rules.shadow && !d.allowed {
        Answer {
            allowed: true,
            retry_after: RetryAfter::Now,
            ..d
        }
    } else {
        d
    };
    Ok((replied, effect, verdict))
}

/// One limit of a request, on its key's state, as [`decide_all`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'s> {
    pub stored: Stored<'s>,
    pub spec: &'s Spec,
    pub rules: Rules,
    pub cost: u64,
}

/// What one limit of a request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// Its own answer, as it replies (a SHADOW limit's denial answers allowed).
    pub answer: Answer,
    /// What to write into its key: its effect when the request is allowed;
    /// when it is denied, only a LOCKOUT it starts or a lock it cuts.
    pub effect: Effect,
    pub verdict: Verdict,
}

/// What several limits decided together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllDecided {
    /// The binding limit (see [`binding`]): its position and its answer,
    /// which is the request's.
    pub index: usize,
    pub answer: Answer,
    /// Each limit's own, in the request's order.
    pub limits: Few<Decided>,
}

impl AllDecided {
    /// The lease the request takes, if one of its limits takes one.
    pub fn lease_id(&self) -> Option<u64> {
        self.limits.iter().find_map(|d| d.effect.lease_id())
    }
}

/// Several limits, all or nothing: each decides on its own state (under its
/// rules); the request is allowed only if every limit allows, and then
/// every limit writes its effect. If any denies, none writes, but for a
/// policy's LOCKOUT that the denial starts (or a lock cut to what its
/// policy says now). One limit alone decides as [`evaluate_with`] does.
///
/// The one decision of RL.ALL, of every limiter command, of a waiter's
/// admission, and of the client's fallback. Pure: whoever keeps the states
/// writes the effects (nothing, for a dry run). No limits at all is INTERNAL.
#[inline(always)]
pub fn decide_all(
    claims: &[Claim<'_>],
    now: Nanos,
    action: Action,
) -> Result<AllDecided, CmdError> {
    if let [one] = claims {
        let one = decide_one(one, now, action)?;
        return Ok(AllDecided {
            index: 0,
            answer: one.answer,
            limits: Few::One([one]),
        });
    }
    let decide = |c: &Claim<'_>| {
        let (answer, effect, verdict) =
            evaluate_with(c.stored, c.spec, c.rules, now, c.cost, action)?;
        Ok(Decided {
            answer,
            effect,
            verdict,
        })
    };
    let mut limits = Few::Many(claims.iter().map(decide).collect::<Result<_, CmdError>>()?);
    let index = binding(limits.iter().map(|d| &d.answer)).ok_or(INTERNAL)?;
    let answer = limits.get(index).ok_or(INTERNAL)?.answer;
    // The binding limit denies if any does.
    if !answer.allowed {
        for d in limits.iter_mut() {
            d.effect = written_on_denial(std::mem::replace(&mut d.effect, Effect::None));
        }
    }
    Ok(AllDecided {
        index,
        answer,
        limits,
    })
}

/// A request of one limit: [`decide_all`] of that one claim, its binding
/// limit being itself (nearly every request is one limit).
#[inline(always)]
pub fn decide_one(claim: &Claim<'_>, now: Nanos, action: Action) -> Result<Decided, CmdError> {
    let c = claim;
    let (answer, effect, verdict) = evaluate_with(c.stored, c.spec, c.rules, now, c.cost, action)?;
    let effect = if answer.allowed {
        effect
    } else {
        written_on_denial(effect)
    };
    Ok(Decided {
        answer,
        effect,
        verdict,
    })
}

/// What a limit writes when the request is denied: a LOCKOUT it starts,
/// or a lock cut to what its policy says now; nothing else.
#[inline]
fn written_on_denial(effect: Effect) -> Effect {
    match effect {
        Effect::Lockout { .. } => effect,
        _ => Effect::None,
    }
}

impl Stored<'_> {
    /// The kind of state held (a lock's: the limit's own under it); `None`
    /// when empty.
    pub fn kind(&self) -> Option<StateKind> {
        match self {
            Stored::Empty => None,
            Stored::Bucket(_) => Some(StateKind::Bucket),
            Stored::Fixed(_) => Some(StateKind::Fixed),
            Stored::Window(_) => Some(StateKind::Window),
            Stored::Leases(_) => Some(StateKind::Leases),
            Stored::Locked(l) => l.inner.stored().kind(),
        }
    }
}

impl Effect {
    /// The lease an effect takes, if it takes one.
    pub fn lease_id(&self) -> Option<u64> {
        match self {
            Effect::Lease(Op::Acquire { id, .. }) => Some(*id),
            Effect::Reserve(r) => Some(r.id()),
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
    action: Action,
) -> (Answer, Effect) {
    match action {
        Action::Take => {
            let (d, new) = b.decide(tat, now, cost);
            (d, new.map_or(Effect::None, Effect::Bucket))
        }
        Action::Refund => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::read_definition;
    use proptest::prelude::*;

    fn policy(s: &str) -> (Spec, Rules) {
        let w: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
        let d = read_definition(&w[..], 0, crate::grammar::Settings::default()).unwrap();
        (d.spec, d.rules)
    }

    fn take(state: &mut State, spec: &Spec, rules: Rules, at: Nanos) -> (Answer, Verdict) {
        let (d, e, v) = evaluate_with(state.stored(), spec, rules, at, 1, Action::Take).unwrap();
        state.apply(&e);
        (d, v)
    }

    #[test]
    fn a_lockout_denies_then_the_limit_carries_on_from_its_state() {
        // 2 a minute, a denial locks for 5 s: after the lock the minute is
        // still spent (no fresh start), and a second denial locks again.
        let (spec, rules) = policy("FIXED 2 60 LOCKOUT 5");
        let mut s = State::Empty;
        let t0 = Nanos::from_secs(1_799_999_940); // a minute's start
        assert!(take(&mut s, &spec, rules, t0).0.allowed);
        assert!(take(&mut s, &spec, rules, t0).0.allowed);
        let (d, v) = take(&mut s, &spec, rules, t0);
        assert!(!d.allowed && v.denied && v.locked);
        // The window ends in 60 s, later than the lock: retry then.
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(60)));
        assert!(
            matches!(&s, State::Locked(l) if l.until == t0.saturating_add(Nanos::from_secs(5)))
        );
        // In the lock: denied, and the retry is the window's end, later
        // than the lock's (retrying at the lock's end would only lock again).
        let (d, v) = take(&mut s, &spec, rules, t0.saturating_add(Nanos::from_secs(4)));
        assert!(!d.allowed && v.denied && !v.locked);
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(56)));
        // Lock over, window still spent: denied again, locked again.
        let (d, v) = take(&mut s, &spec, rules, t0.saturating_add(Nanos::from_secs(6)));
        assert!(!d.allowed && v.locked);
        // Next window, past the lock: allowed, and the key is the counter again.
        let (d, _) = take(
            &mut s,
            &spec,
            rules,
            t0.saturating_add(Nanos::from_secs(61)),
        );
        assert!(d.allowed);
        assert!(matches!(s, State::Fixed(c) if c.count == 1));
    }

    #[test]
    fn a_lockout_longer_than_the_limit_wait_points_at_its_end() {
        let (spec, rules) = policy("TOKENBUCKET 2 1 LOCKOUT 30");
        let mut s = State::Empty;
        let t0 = Nanos::from_secs(1_000);
        take(&mut s, &spec, rules, t0);
        take(&mut s, &spec, rules, t0);
        let (d, v) = take(&mut s, &spec, rules, t0);
        assert!(v.locked);
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(30)));
        assert_eq!(d.reset_after, Nanos::from_secs(30));
        // In the lock: denied, nothing taken, retry at its end.
        let (d, _) = take(
            &mut s,
            &spec,
            rules,
            t0.saturating_add(Nanos::from_secs(10)),
        );
        assert_eq!((d.allowed, d.remaining), (false, 0));
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(20)));
        // After: the bucket refilled meanwhile.
        let (d, _) = take(
            &mut s,
            &spec,
            rules,
            t0.saturating_add(Nanos::from_secs(30)),
        );
        assert!(d.allowed && d.remaining == 1);
    }

    #[test]
    fn a_mended_policy_cuts_the_locks_its_earlier_definition_set() {
        // A ten-year lockout, then the policy is mended to 15 minutes: the
        // lock is cut to 15 minutes from the first call that sees it, and
        // the cut is written, so it ends then whatever comes after.
        let (spec, long) = policy("FIXED 1 60 LOCKOUT 315360000");
        let (_, short) = policy("FIXED 1 60 LOCKOUT 900");
        let (_, none) = policy("FIXED 1 60");
        let t0 = Nanos::from_secs(1_799_999_940);
        let mut s = State::Empty;
        take(&mut s, &spec, long, t0);
        let (_, v) = take(&mut s, &spec, long, t0);
        assert!(v.locked);
        let t1 = t0.saturating_add(Nanos::from_secs(3600));
        let (d, v) = take(&mut s, &spec, short, t1);
        assert!(!d.allowed && !v.locked);
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(900)));
        let cut = t1.saturating_add(Nanos::from_secs(900));
        assert!(matches!(&s, State::Locked(l) if l.until == cut), "{s:?}");
        // Under the long definition again, or inline, the cut lock stands.
        let (d, _) = take(&mut s, &spec, Rules::default(), t1);
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(900)));
        // A policy that no longer locks out ignores the lock altogether.
        let mut s2 = State::Empty;
        take(&mut s2, &spec, long, t0);
        take(&mut s2, &spec, long, t0);
        let later = t0.saturating_add(Nanos::from_secs(61));
        assert!(take(&mut s2, &spec, none, later).0.allowed);
        assert!(matches!(s2, State::Fixed(c) if c.count == 1), "{s2:?}");
        // Inline limits still see an uncut lock.
        let mut s3 = State::Empty;
        take(&mut s3, &spec, long, t0);
        take(&mut s3, &spec, long, t0);
        assert!(!take(&mut s3, &spec, Rules::default(), later).0.allowed);
        // A peek or a refund sees the cut lock and writes nothing (the
        // storm found a refund writing it): only a take writes the cut.
        for (cost, mode) in [(0, Action::Take), (1, Action::Refund)] {
            let (d, e, _) = evaluate_with(s3.stored(), &spec, short, later, cost, mode).unwrap();
            assert_eq!(e, Effect::None, "{cost} {mode:?}");
            assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(900)));
        }
    }

    #[test]
    fn a_cut_lock_is_fresh_when_its_own_state_is_not_when_the_old_lock_ended() {
        // Found by the abuse suite: the key of a cut lock kept the ten-year
        // expiry of the lock it replaced. A window's own state is fresh
        // once its last admission leaves the window (the limit's length).
        let (spec, long) = policy("SLIDING 1 60 LOCKOUT 315360000");
        let (_, short) = policy("SLIDING 100 60 LOCKOUT 5");
        let t0 = Nanos::from_secs(1_800_000_000);
        let mut s = State::Empty;
        take(&mut s, &spec, long, t0);
        let (_, e, _) = evaluate_with(s.stored(), &spec, long, t0, 1, Action::Take).unwrap();
        let own = Some(t0.saturating_add(Nanos::from_secs(60)));
        let ten_years = t0.saturating_add(Nanos::from_secs(315_360_000));
        assert_eq!(
            e,
            Effect::Lockout {
                until: ten_years,
                own
            }
        );
        assert_eq!(s.apply(&e), Some(ten_years));
        let t1 = t0.saturating_add(Nanos::from_secs(1));
        let (_, e, _) = evaluate_with(s.stored(), &spec, short, t1, 1, Action::Take).unwrap();
        let cut = t1.saturating_add(Nanos::from_secs(5));
        assert_eq!(e, Effect::Lockout { until: cut, own });
        assert_eq!(s.apply(&e), own);
    }

    #[test]
    fn shadow_answers_allowed_and_records_as_if_enforced() {
        let (spec, rules) = policy("SLIDING 1 10 SHADOW LOCKOUT 20");
        let mut s = State::Empty;
        let t0 = Nanos::from_secs(1_000);
        assert!(take(&mut s, &spec, rules, t0).0.allowed);
        let (d, v) = take(&mut s, &spec, rules, t0);
        assert!(d.allowed && v.denied && v.locked);
        assert_eq!(d.retry_after, RetryAfter::Now);
        assert!(matches!(s, State::Locked(_)));
        // A dry run or refund never starts a lockout.
        let mut fresh = State::Empty;
        take(&mut fresh, &spec, Rules::default(), t0);
        let (_, e, v) = evaluate_with(fresh.stored(), &spec, rules, t0, 1, Action::Refund).unwrap();
        assert!(!v.locked && !matches!(e, Effect::Lockout { .. }));
    }

    #[test]
    fn a_peek_over_the_limit_is_denied_and_never_locks() {
        // Five taken under a limit of 5, then the limit lowered to 2 with
        // a LOCKOUT: a peek sees 5 > 2 and is denied, but takes nothing.
        let (five, _) = policy("SLIDING 5 60");
        let (two, rules) = policy("SLIDING 2 60 LOCKOUT 30");
        let t0 = Nanos::from_secs(1_000);
        let (_, e) = evaluate(Stored::Empty, &five, t0, 5, Action::Take).unwrap();
        let mut s = State::Empty;
        s.apply(&e);
        let (d, e, v) = evaluate_with(s.stored(), &two, rules, t0, 0, Action::Take).unwrap();
        assert!(!d.allowed && !v.locked, "{d:?} {v:?}");
        assert_eq!(e, Effect::None);
        // A call that takes is locked out.
        let (_, e, v) = evaluate_with(s.stored(), &two, rules, t0, 1, Action::Take).unwrap();
        assert!(v.locked && matches!(e, Effect::Lockout { .. }));
    }

    #[test]
    fn locks_round_trip_and_bad_bytes_are_refused() {
        let (spec, rules) = policy("SLIDING 2 10 LOCKOUT 1");
        let t0 = Nanos::from_secs(1_000);
        let mut states = vec![];
        for spec in [
            spec,
            policy("FIXED 1 10 LOCKOUT 1").0,
            policy("GCRA 1 1 1 LOCKOUT 1").0,
        ] {
            let mut s = State::Empty;
            for _ in 0..3 {
                take(&mut s, &spec, rules, t0);
            }
            states.push(s);
        }
        states.push(State::Locked(Box::new(Lock {
            until: t0,
            inner: State::Empty,
        })));
        for s in states {
            let State::Locked(lock) = s else {
                panic!("not locked: {s:?}")
            };
            let mut out = vec![];
            lock.encode(&mut out);
            assert_eq!(out.len(), lock.encoded_len());
            assert_eq!(Lock::decode(&out).as_ref(), Some(&*lock));
            for cut in 0..out.len() {
                assert_eq!(Lock::decode(&out[..cut]), None, "cut at {cut}");
            }
            let mut longer = out.clone();
            longer.push(0);
            assert_eq!(Lock::decode(&longer), None);
            let mut bad_tag = out.clone();
            bad_tag[8] = b'Z';
            assert_eq!(Lock::decode(&bad_tag), None);
        }
        assert_eq!(Lock::decode(&[0; 9]), None);
    }

    #[test]
    fn a_locked_fixed_window_is_bounded_as_its_own_key_is() {
        // Found by the abuse suite: a lock's inner count above i64::MAX
        // loaded, and a REFUND after the lock wrote it back as an
        // rl-fixwin that the next load refused.
        let lock = |count: u64, end_ms: u64| {
            let mut out = vec![];
            Lock {
                until: Nanos::from_secs(1),
                inner: State::Fixed(Counter { count, end_ms }),
            }
            .encode(&mut out);
            Lock::decode(&out)
        };
        assert!(lock(i64::MAX as u64, 1).is_some());
        assert_eq!(lock(i64::MAX as u64 + 1, 1), None);
        assert_eq!(lock(u64::MAX, 1), None);
        assert_eq!(lock(0, 1), None);
        // RESTORE: a window ending at most 10 years (and the skew) ahead.
        let now = Nanos::from_secs(1_800_000_000);
        let skew = Nanos::from_secs(60);
        let ten_years_ms = crate::bounds::MAX_SPAN_US / 1000;
        let fixed = |end_ms: u64| {
            let lock = Lock {
                until: now,
                inner: State::Fixed(Counter { count: 5, end_ms }),
            };
            plausible(Stored::Locked(&lock), now, skew)
        };
        let now_ms = now.as_u64() / 1_000_000;
        assert!(fixed(now_ms + ten_years_ms + 60_000));
        assert!(!fixed(now_ms + ten_years_ms + 60_001));
        assert!(!fixed(u64::MAX));
    }

    /// Takes `cost` from each state under one [`decide_all`], writing what
    /// it says (as the module's engine does).
    fn take_all(
        states: &mut [State],
        specs: &[(Spec, Rules)],
        cost: &[u64],
        at: Nanos,
    ) -> AllDecided {
        let claims: Vec<Claim<'_>> = states
            .iter()
            .zip(specs)
            .zip(cost)
            .map(|((s, (spec, rules)), cost)| Claim {
                stored: s.stored(),
                spec,
                rules: *rules,
                cost: *cost,
            })
            .collect();
        let all = decide_all(&claims, at, Action::Take).unwrap();
        drop(claims);
        for (s, d) in states.iter_mut().zip(all.limits.iter()) {
            s.apply(&d.effect);
        }
        all
    }

    #[test]
    fn a_denial_writes_nothing_but_the_lockout_it_starts() {
        let specs = [policy("FIXED 1 60 LOCKOUT 5"), policy("TOKENBUCKET 10 1")];
        let mut s = [State::Empty, State::Empty];
        let t0 = Nanos::from_secs(1_799_999_940);
        let first = take_all(&mut s, &specs, &[1, 1], t0);
        assert!(first.answer.allowed);
        // Binding when allowed: the least remaining (the window's 0).
        assert_eq!((first.index, first.answer.remaining), (0, 0));
        assert!(matches!(s[1], State::Bucket(_)));
        let bucket = s[1].clone();
        let denied = take_all(&mut s, &specs, &[1, 1], t0);
        assert!(!denied.answer.allowed && denied.limits[0].verdict.locked);
        assert_eq!(denied.index, 0);
        assert!(matches!(s[0], State::Locked(_)), "{:?}", s[0]);
        assert_eq!(s[1], bucket, "the bucket took nothing");
        assert_eq!(denied.limits[1].effect, Effect::None);
        assert_eq!(denied.lease_id(), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// A bucket, a sliding window and a fixed window behind one
        /// decide_all: a denial by any of them changes none; an allowed
        /// request changes all; the binding limit waits longest when denied
        /// and has the least left when allowed; each limit's own bound
        /// holds over the whole history (computed here by brute force).
        #[test]
        fn never_consumes_when_one_denies(
            steps in prop::collection::vec((0u64..400_000_000, 0u64..4, 0u64..4, 0u64..4), 1..80),
        ) {
            let specs = [
                (Spec::Bucket(Bucket::new(4, Nanos::new(250_000_000)).unwrap()), Rules::default()),
                (Spec::Window(Window { limit: 6, span: Nanos::from_micros(2_000_000), max_entries: 1_000 }), Rules::default()),
                (Spec::Fixed { limit: 5, calendar: Calendar::Millis(3_000) }, Rules::default()),
            ];
            let mut states = [State::Empty, State::Empty, State::Empty];
            let mut now = 1_700_000_000_000_000_000u64;
            let mut admitted: Vec<(u64, u64, u64, u64)> = vec![];
            for (gap, cb, cw, cf) in steps {
                now += gap;
                let before = states.clone();
                let own: Vec<Answer> = states
                    .iter()
                    .zip(&specs)
                    .zip([cb, cw, cf])
                    .map(|((s, (spec, _)), c)| evaluate(s.stored(), spec, Nanos::new(now), c, Action::Take).unwrap().0)
                    .collect();
                let all = take_all(&mut states, &specs, &[cb, cw, cf], Nanos::new(now));
                let all_ok = own.iter().all(|a| a.allowed);
                prop_assert_eq!(all.answer.allowed, all_ok);
                prop_assert!(all.index < 3);
                let wait = |a: &Answer| match a.retry_after {
                    RetryAfter::Never => u128::MAX,
                    RetryAfter::After(s) => u128::from(s.as_u64()),
                    RetryAfter::Now => 0,
                };
                if all_ok {
                    prop_assert_eq!(all.answer.remaining, own.iter().map(|a| a.remaining).min().unwrap());
                    admitted.push((now, cb, cw, cf));
                } else {
                    for other in own.iter().filter(|a| !a.allowed) {
                        prop_assert!(wait(&all.answer) >= wait(other));
                    }
                    prop_assert_eq!(&states, &before);
                }
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
}
