//! The crate's two error types: [`PolicyError`] for values refused at
//! construction (before anything reaches Redis) and [`Error`] for what a
//! [`Limiter`](crate::Limiter) call can end with. The command traits return
//! plain [`redis::RedisResult`], as redis-rs commands do.

use std::fmt;

use crate::reply::AllDecision;

/// A policy, limit set or option that cannot be expressed: refused when it
/// is built, with the argument it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// An integer outside `min..=9223372036854775807` (the module's range).
    OutOfRange { what: &'static str, min: u64 },
    /// A rate, period or window of zero.
    NotPositive { what: &'static str },
    /// Text that is not a plain non-negative decimal, or one with more than
    /// 64 bits of digits or 30 decimals.
    InvalidDecimal { input: String },
    /// More than one unit per nanosecond.
    RateTooHigh,
    /// A bucket that would take more than 100 years to fill.
    RefillTooLong,
    /// A duration finer than the command can express.
    Precision {
        what: &'static str,
        unit: &'static str,
    },
    /// A duration longer than the command accepts.
    TooLong {
        what: &'static str,
        max: &'static str,
    },
    /// A time zone name that cannot be an IANA name.
    InvalidTimeZone { zone: String },
    /// A limit name that cannot be used in a key and an HTTP header.
    InvalidName { name: String },
    /// Two limits with the same name in one set.
    DuplicateName { name: String },
    /// A limit set with no limit.
    NoLimits,
    /// A key prefix with a `{` or `}` (it would break the hash tag).
    InvalidPrefix { prefix: String },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::OutOfRange { what, min } => write!(
                f,
                "{what} must be an integer between {min} and 9223372036854775807"
            ),
            PolicyError::NotPositive { what } => write!(f, "{what} must be positive"),
            PolicyError::InvalidDecimal { input } => write!(
                f,
                "{input:?} is not a plain non-negative decimal (such as 0.5, 100 or 1e4) \
                 with at most 30 decimals"
            ),
            PolicyError::RateTooHigh => {
                f.write_str("rate must be at most one unit per nanosecond of its period")
            }
            PolicyError::RefillTooLong => {
                f.write_str("capacity / rate must refill within 100 years")
            }
            PolicyError::Precision { what, unit } => {
                write!(f, "{what} must be a whole number of {unit}s")
            }
            PolicyError::TooLong { what, max } => write!(f, "{what} must be at most {max}"),
            PolicyError::InvalidTimeZone { zone } => write!(
                f,
                "{zone:?} is not an IANA time zone name (such as America/New_York)"
            ),
            PolicyError::InvalidName { name } => write!(
                f,
                "limit name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 _ - . :"
            ),
            PolicyError::DuplicateName { name } => {
                write!(f, "limit name {name:?} is used twice")
            }
            PolicyError::NoLimits => f.write_str("a limit set needs at least one limit"),
            PolicyError::InvalidPrefix { prefix } => {
                write!(f, "key prefix {prefix:?} must not contain '{{' or '}}'")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// What a [`Limiter`](crate::Limiter) call can fail with. Redis being down
/// or slow is not an error: the limiter's
/// [`FailurePolicy`](crate::FailurePolicy) answers instead.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Redis answered with an error that is not an outage (a wrong key
    /// type, a command the server does not know, bad arguments), or the
    /// reply could not be read.
    Redis(redis::RedisError),
    /// The key cannot be used (it is empty).
    InvalidKey { reason: &'static str },
    /// [`Limiter::wait`](crate::Limiter::wait): still denied at the deadline,
    /// or the wait needed would end past it.
    TimedOut { last: AllDecision },
    /// [`Limiter::wait`](crate::Limiter::wait): the request can never be
    /// allowed (its cost is above a limit).
    NeverAllowed { last: AllDecision },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Redis(e) => write!(f, "redis: {e}"),
            Error::InvalidKey { reason } => write!(f, "invalid key: {reason}"),
            Error::TimedOut { last } => write!(
                f,
                "still rate limited at the deadline (retry after {:?})",
                last.decision.retry_after
            ),
            Error::NeverAllowed { .. } => {
                f.write_str("the request can never be allowed: its cost exceeds the limit")
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Redis(e) => Some(e),
            _ => None,
        }
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Redis(e)
    }
}
