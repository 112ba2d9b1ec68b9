//! Typed replies. The module answers `[allowed, limit, remaining,
//! retry_after_ms, reset_after_ms]` (RL.ALL adds the binding limit's
//! 1-based index; CL.THROTTLE has redis-cell's own layout, in seconds).
//! Parsing accepts RESP2 and RESP3 shapes (arrays, integers sent as
//! strings or integral doubles, attribute wrappers, and maps keyed by
//! field name) and turns anything else into an error, never a panic.

use std::time::Duration;

use redis::{FromRedisValue, ParsingError, Value};

/// Where a [`Decision`] came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
#[non_exhaustive]
pub enum Source {
    /// The server decided.
    #[default]
    Redis,
    /// Redis was unreachable or too slow; the limiter allowed the request
    /// ([`FailurePolicy::FailOpen`](crate::FailurePolicy::FailOpen)).
    FailOpen,
    /// Redis was unreachable or too slow; the limiter denied the request
    /// ([`FailurePolicy::FailClosed`](crate::FailurePolicy::FailClosed)).
    FailClosed,
    /// Redis was unreachable or too slow; the in-process fallback decided
    /// ([`FailurePolicy::Fallback`](crate::FailurePolicy::Fallback)).
    Fallback,
}

/// One limiter's answer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct Decision {
    /// The request was allowed (and its cost taken, unless dry run).
    pub allowed: bool,
    /// The capacity, limit or burst.
    pub limit: u64,
    /// Units that can still be taken right now, after this call.
    pub remaining: u64,
    /// `Some(ZERO)` when allowed. When denied, the smallest wait after
    /// which the same request is allowed if nothing else consumes (rounded
    /// up: waiting exactly this long gets in). `None` when it can never be
    /// allowed (its cost is above the limit).
    pub retry_after: Option<Duration>,
    /// Time until the limiter is fresh again (full bucket, empty window,
    /// window over); the key expires then.
    pub reset_after: Duration,
    /// The server, or the failure policy when the server could not answer.
    pub source: Source,
    /// The lease taken (a CONCURRENCY limit allowed, not a dry run): give
    /// it back with `RL.RELEASE`. `None` otherwise.
    pub lease: Option<u64>,
}

impl Decision {
    /// A decision made without the server (failure policies).
    pub(crate) fn local(
        allowed: bool,
        limit: u64,
        remaining: u64,
        retry_after: Option<Duration>,
        reset_after: Duration,
        source: Source,
    ) -> Decision {
        Decision {
            allowed,
            limit,
            remaining,
            retry_after,
            reset_after,
            source,
            lease: None,
        }
    }

    /// Denied, and no wait will ever allow it.
    pub fn is_never(&self) -> bool {
        !self.allowed && self.retry_after.is_none()
    }

    /// Read an `RL.*` reply: five integers in RESP2 or RESP3, and a lease
    /// id after them (`RL.ACQUIRE`, `RL.TAKE` of a CONCURRENCY policy).
    pub fn from_reply(v: &Value) -> Result<Decision, ParsingError> {
        let with_lease = matches!(unwrapped(v), Value::Array(a) if a.len() == 6);
        if with_lease {
            let f: [i64; 6] = fields(v, &LEASE_FIELDS)?;
            let [a, b, c, d, e, lease] = f;
            let mut out = decision(&[a, b, c, d, e])?;
            out.lease = lease_id(lease)?;
            return Ok(out);
        }
        let f = fields(v, &FIELDS[..5])?;
        decision(&f)
    }

    /// Read a `CL.THROTTLE` reply: `[limited, limit, remaining,
    /// retry_after_s (-1 when allowed), reset_after_s]`.
    pub fn from_throttle_reply(v: &Value) -> Result<Decision, ParsingError> {
        let f = fields(v, &FIELDS[..5])?;
        let [limited, limit, remaining, retry, reset] = f;
        let allowed = match limited {
            0 => true,
            1 => false,
            other => return Err(bad(format!("limited must be 0 or 1, got {other}"))),
        };
        let retry_after = match (allowed, retry) {
            (true, _) => Some(Duration::ZERO),
            (false, -1) => None,
            (false, s) => Some(Duration::from_secs(non_negative(s, "retry_after")?)),
        };
        Ok(Decision {
            allowed,
            limit: non_negative(limit, "limit")?,
            remaining: non_negative(remaining, "remaining")?,
            retry_after,
            reset_after: Duration::from_secs(non_negative(reset, "reset_after")?),
            source: Source::Redis,
            lease: None,
        })
    }
}

impl AsRef<Decision> for Decision {
    fn as_ref(&self) -> &Decision {
        self
    }
}

impl FromRedisValue for Decision {
    fn from_redis_value_ref(v: &Value) -> Result<Decision, ParsingError> {
        Decision::from_reply(v)
    }
    fn from_redis_value(v: Value) -> Result<Decision, ParsingError> {
        Decision::from_reply(&v)
    }
}

/// The answer of several limits checked together (`RL.ALL`, or a
/// [`Limiter`](crate::Limiter)): the binding limit's decision and its
/// position.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct AllDecision {
    /// The binding limit's fields. When denied: the denying limit with the
    /// longest wait (its `retry_after` is the wait after which every limit
    /// allows); when allowed: the limit with the least remaining.
    pub decision: Decision,
    /// The binding limit's 0-based position, in the order the limits were
    /// given (the server's reply is 1-based).
    pub binding: usize,
}

impl AllDecision {
    pub(crate) fn new(decision: Decision, binding: usize) -> AllDecision {
        AllDecision { decision, binding }
    }

    /// Was the request allowed? (`decision.allowed`)
    pub fn allowed(&self) -> bool {
        self.decision.allowed
    }
    /// The binding limit's capacity, limit or burst (`decision.limit`).
    pub fn limit(&self) -> u64 {
        self.decision.limit
    }
    /// Units the binding limit can still take right now
    /// (`decision.remaining`).
    pub fn remaining(&self) -> u64 {
        self.decision.remaining
    }
    /// `Some(ZERO)` when allowed; when denied, the wait after which the
    /// same request is allowed, `None` if never (`decision.retry_after`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.decision.retry_after
    }
    /// Time until the binding limit is fresh again
    /// (`decision.reset_after`).
    pub fn reset_after(&self) -> Duration {
        self.decision.reset_after
    }
    /// Who decided: Redis, or the failure policy (`decision.source`).
    pub fn source(&self) -> Source {
        self.decision.source
    }
    /// The lease taken, if a CONCURRENCY limit gave one
    /// (`decision.lease`).
    pub fn lease(&self) -> Option<u64> {
        self.decision.lease
    }
    /// Denied, and no wait will ever allow it (`decision.is_never()`).
    pub fn is_never(&self) -> bool {
        self.decision.is_never()
    }

    /// Read an `RL.ALL` reply: six integers, and a lease id after them
    /// when a CONCURRENCY limit is part of it.
    pub fn from_reply(v: &Value) -> Result<AllDecision, ParsingError> {
        let with_lease = matches!(unwrapped(v), Value::Array(a) if a.len() == 7);
        let (f, lease): ([i64; 6], Option<u64>) = if with_lease {
            let f: [i64; 7] = fields(v, &ALL_LEASE_FIELDS)?;
            let [a, b, c, d, e, index, lease] = f;
            ([a, b, c, d, e, index], lease_id(lease)?)
        } else {
            (fields(v, &FIELDS)?, None)
        };
        let [a, b, c, d, e, index] = f;
        let mut decision = decision(&[a, b, c, d, e])?;
        decision.lease = lease;
        let binding = usize::try_from(index)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .ok_or_else(|| bad(format!("index must be 1 or more, got {index}")))?;
        Ok(AllDecision { decision, binding })
    }
}

impl AsRef<Decision> for AllDecision {
    fn as_ref(&self) -> &Decision {
        &self.decision
    }
}

impl FromRedisValue for AllDecision {
    fn from_redis_value_ref(v: &Value) -> Result<AllDecision, ParsingError> {
        AllDecision::from_reply(v)
    }
    fn from_redis_value(v: Value) -> Result<AllDecision, ParsingError> {
        AllDecision::from_reply(&v)
    }
}

/// The answer of `RL.SETTLE` (or of [`Reservation::settle`](crate::Reservation::settle)).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct Settlement {
    /// The reservation was live and is now settled at the actual cost
    /// (its slot freed). False when the handle is unknown, already
    /// settled, released or ended (nothing changed: never a double charge
    /// or refund), or when Redis did not settle it (then
    /// [`source`](Self::source) is not [`Source::Redis`]).
    pub settled: bool,
    /// When settled: what a one-unit request would see on the limits just
    /// settled, combined as `RL.ALL` combines them (`allowed` false while
    /// a limit is in debt, `retry_after` when it is paid back by time).
    /// `binding` is the binding key's position among the keys reserved on
    /// (0: the first reserved key) in the reply of `RL.SETTLE`; from
    /// [`Reservation::settle`](crate::Reservation::settle), the binding
    /// limit's position in the limiter's limits. All zero when not settled.
    pub decision: AllDecision,
    /// Who answered: Redis, or the failure policy when Redis could not
    /// (the reservation then ends with its lease, at its estimate).
    pub source: Source,
}

impl Settlement {
    /// A settlement Redis did not make (`source` says why).
    pub(crate) fn not_settled(source: Source) -> Settlement {
        let mut decision =
            Decision::local(false, 0, 0, Some(Duration::ZERO), Duration::ZERO, source);
        decision.source = source;
        Settlement {
            settled: false,
            decision: AllDecision::new(decision, 0),
            source,
        }
    }

    /// Read an `RL.SETTLE` reply: `[settled, limit, remaining,
    /// retry_after_ms, reset_after_ms, index]` (all zero when not settled).
    pub fn from_reply(v: &Value) -> Result<Settlement, ParsingError> {
        let f: [i64; 6] = fields(v, &SETTLE_FIELDS)?;
        let [settled, limit, remaining, retry, reset, index] = f;
        let settled = match settled {
            1 => true,
            0 => false,
            other => return Err(bad(format!("settled must be 0 or 1, got {other}"))),
        };
        let mut d = decision(&[0, limit, remaining, retry, reset])?;
        // A one-unit request would be allowed when nothing has to wait.
        d.allowed = settled && d.retry_after == Some(Duration::ZERO);
        let binding = usize::try_from(index)
            .ok()
            .map_or(0, |i| i.saturating_sub(1));
        Ok(Settlement {
            settled,
            decision: AllDecision::new(d, binding),
            source: Source::Redis,
        })
    }
}

impl FromRedisValue for Settlement {
    fn from_redis_value_ref(v: &Value) -> Result<Settlement, ParsingError> {
        Settlement::from_reply(v)
    }
    fn from_redis_value(v: Value) -> Result<Settlement, ParsingError> {
        Settlement::from_reply(&v)
    }
}

const SETTLE_FIELDS: [&str; 6] = [
    "settled",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
    "index",
];

/// Field names, for replies that come as maps.
const FIELDS: [&str; 6] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
    "index",
];
const LEASE_FIELDS: [&str; 6] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
    "lease_id",
];
const ALL_LEASE_FIELDS: [&str; 7] = [
    "allowed",
    "limit",
    "remaining",
    "retry_after_ms",
    "reset_after_ms",
    "index",
    "lease_id",
];

/// A reply without its RESP3 attribute wrappers.
fn unwrapped(v: &Value) -> &Value {
    match v {
        Value::Attribute { data, .. } => unwrapped(data),
        other => other,
    }
}

/// A lease id: 0 is none (denied, or a dry run).
fn lease_id(v: i64) -> Result<Option<u64>, ParsingError> {
    Ok(Some(non_negative(v, "lease_id")?).filter(|id| *id > 0))
}

fn bad(msg: String) -> ParsingError {
    ParsingError::from(msg)
}

fn non_negative(v: i64, what: &str) -> Result<u64, ParsingError> {
    u64::try_from(v).map_err(|_| bad(format!("{what} must not be negative, got {v}")))
}

fn decision(f: &[i64; 5]) -> Result<Decision, ParsingError> {
    let [allowed, limit, remaining, retry, reset] = *f;
    let allowed = match allowed {
        1 => true,
        0 => false,
        other => return Err(bad(format!("allowed must be 0 or 1, got {other}"))),
    };
    let retry_after = match retry {
        -1 => None,
        ms => Some(Duration::from_millis(non_negative(ms, "retry_after_ms")?)),
    };
    Ok(Decision {
        allowed,
        limit: non_negative(limit, "limit")?,
        remaining: non_negative(remaining, "remaining")?,
        retry_after,
        reset_after: Duration::from_millis(non_negative(reset, "reset_after_ms")?),
        source: Source::Redis,
        lease: None,
    })
}

/// Exactly `N` integers, from an array or a map with the given names.
fn fields<const N: usize>(v: &Value, names: &[&str]) -> Result<[i64; N], ParsingError> {
    let shape = || {
        bad(format!(
            "expected a reply of {N} integers ({}), got {v:?}",
            names.join(", ")
        ))
    };
    let mut out = [0i64; N];
    match v {
        Value::Attribute { data, .. } => fields(data, names),
        Value::Array(items) => {
            if items.len() != N {
                return Err(shape());
            }
            for (slot, item) in out.iter_mut().zip(items) {
                *slot = int(item).ok_or_else(shape)?;
            }
            Ok(out)
        }
        Value::Map(pairs) => {
            if pairs.len() != N {
                return Err(shape());
            }
            for (slot, name) in out.iter_mut().zip(names) {
                let found = pairs
                    .iter()
                    .find(|(k, _)| text(k).is_some_and(|k| k.eq_ignore_ascii_case(name)))
                    .ok_or_else(shape)?;
                *slot = int(&found.1).ok_or_else(shape)?;
            }
            Ok(out)
        }
        _ => Err(shape()),
    }
}

fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    }
}

/// An integer, however a RESP2 or RESP3 server (or proxy) chose to send it.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Attribute { data, .. } => int(data),
        Value::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        other => {
            let t = text(other)?;
            let digits = t.strip_prefix('-').unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            t.parse().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_decisions_answer_without_the_nesting() {
        let d = Decision {
            allowed: false,
            limit: 10,
            remaining: 0,
            retry_after: Some(Duration::from_millis(1500)),
            reset_after: Duration::from_secs(6),
            source: Source::Fallback,
            lease: Some(7),
        };
        let v = AllDecision::new(d, 1);
        assert_eq!(
            (v.allowed(), v.limit(), v.remaining(), v.retry_after()),
            (false, 10, 0, Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            (v.reset_after(), v.source(), v.lease(), v.is_never()),
            (Duration::from_secs(6), Source::Fallback, Some(7), false)
        );
        // The fields are still there.
        assert_eq!((v.decision, v.binding), (d, 1));
    }

    fn ints(v: &[i64]) -> Value {
        Value::Array(v.iter().map(|i| Value::Int(*i)).collect())
    }

    #[test]
    fn resp2_array() {
        let d = Decision::from_reply(&ints(&[1, 10, 9, 0, 1000])).unwrap();
        assert_eq!(
            d,
            Decision::local(
                true,
                10,
                9,
                Some(Duration::ZERO),
                Duration::from_secs(1),
                Source::Redis
            )
        );
        let d = Decision::from_reply(&ints(&[0, 10, 0, 1, 9_001])).unwrap();
        assert!(!d.allowed);
        assert_eq!(d.retry_after, Some(Duration::from_millis(1)));
        assert_eq!(d.reset_after, Duration::from_millis(9_001));
    }

    #[test]
    fn never_is_representable() {
        let d = Decision::from_reply(&ints(&[0, 3, 3, -1, 0])).unwrap();
        assert_eq!(d.retry_after, None);
        assert!(d.is_never());
    }

    #[test]
    fn resp3_shapes() {
        // Integers as strings and doubles, inside an attribute.
        let v = Value::Attribute {
            data: Box::new(Value::Array(vec![
                Value::Int(1),
                Value::BulkString(b"10".to_vec()),
                Value::SimpleString("9".into()),
                Value::Double(0.0),
                Value::Int(1000),
            ])),
            attributes: vec![],
        };
        assert_eq!(Decision::from_reply(&v).unwrap().remaining, 9);
        // A map keyed by field name, in any order.
        let m = Value::Map(vec![
            (Value::SimpleString("limit".into()), Value::Int(10)),
            (Value::SimpleString("allowed".into()), Value::Boolean(true)),
            (Value::SimpleString("remaining".into()), Value::Int(9)),
            (Value::SimpleString("retry_after_ms".into()), Value::Int(0)),
            (
                Value::SimpleString("reset_after_ms".into()),
                Value::Int(1000),
            ),
        ]);
        // Booleans are not integers: a map must use 0/1 as the array does.
        assert!(Decision::from_reply(&m).is_err());
        let m = Value::Map(vec![
            (Value::BulkString(b"limit".to_vec()), Value::Int(10)),
            (Value::BulkString(b"allowed".to_vec()), Value::Int(1)),
            (Value::BulkString(b"remaining".to_vec()), Value::Int(9)),
            (Value::BulkString(b"retry_after_ms".to_vec()), Value::Int(0)),
            (
                Value::BulkString(b"reset_after_ms".to_vec()),
                Value::Int(1000),
            ),
        ]);
        let d = Decision::from_reply(&m).unwrap();
        assert_eq!((d.allowed, d.limit, d.remaining), (true, 10, 9));
    }

    #[test]
    fn malformed_replies_are_errors() {
        let cases = [
            Value::Nil,
            Value::Okay,
            Value::Int(1),
            ints(&[1, 10, 9, 0]),
            ints(&[1, 10, 9, 0, 1000, 1, 1]),
            ints(&[1, 10, 9, 0, 1000, -1]),
            ints(&[2, 10, 9, 0, 1000]),
            ints(&[1, -10, 9, 0, 1000]),
            ints(&[1, 10, -9, 0, 1000]),
            ints(&[0, 10, 0, -2, 1000]),
            ints(&[1, 10, 9, 0, -1]),
            Value::Array(vec![Value::Nil; 5]),
            Value::Array(vec![Value::BulkString(b"1x".to_vec()); 5]),
            Value::Array(vec![Value::BulkString(b"".to_vec()); 5]),
            Value::Array(vec![Value::BulkString(b"+1".to_vec()); 5]),
            Value::Array(vec![Value::Double(0.5); 5]),
            Value::Array(vec![Value::Double(f64::NAN); 5]),
            Value::Set(vec![Value::Int(1); 5]),
            Value::BulkString(b"1 10 9 0 1000".to_vec()),
        ];
        for v in cases {
            assert!(Decision::from_reply(&v).is_err(), "{v:?} accepted");
            assert!(redis::from_redis_value::<Decision>(v).is_err());
        }
    }

    #[test]
    fn lease_ids_follow_the_decision() {
        let d =
            Decision::from_reply(&ints(&[1, 3, 2, 0, 30_000, 1_796_000_000_000_000_001])).unwrap();
        assert_eq!(d.lease, Some(1_796_000_000_000_000_001));
        let d = Decision::from_reply(&ints(&[0, 3, 0, 10, 30_000, 0])).unwrap();
        assert_eq!(d.lease, None);
        let a = AllDecision::from_reply(&ints(&[1, 3, 2, 0, 30_000, 2, 77])).unwrap();
        assert_eq!((a.binding, a.decision.lease), (1, Some(77)));
        assert_eq!(
            Decision::from_reply(&ints(&[1, 10, 9, 0, 1000]))
                .unwrap()
                .lease,
            None
        );
    }

    #[test]
    fn all_reply_has_a_binding_index() {
        let a = AllDecision::from_reply(&ints(&[0, 500, 0, 3_600_000, 86_400_000, 2])).unwrap();
        assert_eq!(a.binding, 1);
        assert!(!a.decision.allowed);
        assert_eq!(a.decision.retry_after, Some(Duration::from_secs(3600)));
        assert!(AllDecision::from_reply(&ints(&[1, 10, 9, 0, 1000, 0])).is_err());
        assert!(AllDecision::from_reply(&ints(&[1, 10, 9, 0, 1000, -1])).is_err());
        assert!(AllDecision::from_reply(&ints(&[1, 10, 9, 0, 1000])).is_err());
        let v: AllDecision = redis::from_redis_value(ints(&[1, 10, 9, 0, 1000, 1])).unwrap();
        assert_eq!(v.binding, 0);
    }

    #[test]
    fn throttle_reply_in_seconds() {
        // The spec's example: CL.THROTTLE user123 15 30 60 1 -> 0, 16, 15, -1, 2
        let d = Decision::from_throttle_reply(&ints(&[0, 16, 15, -1, 2])).unwrap();
        assert_eq!(
            (
                d.allowed,
                d.limit,
                d.remaining,
                d.retry_after,
                d.reset_after
            ),
            (true, 16, 15, Some(Duration::ZERO), Duration::from_secs(2))
        );
        let d = Decision::from_throttle_reply(&ints(&[1, 16, 0, 2, 60])).unwrap();
        assert_eq!(d.retry_after, Some(Duration::from_secs(2)));
        let d = Decision::from_throttle_reply(&ints(&[1, 16, 0, -1, 60])).unwrap();
        assert!(d.is_never());
        assert!(Decision::from_throttle_reply(&ints(&[2, 16, 0, 2, 60])).is_err());
        assert!(Decision::from_throttle_reply(&ints(&[1, 16, 0, -5, 60])).is_err());
    }
}
