//! The crate's two error types: [`PolicyError`] for values refused at
//! construction (before anything reaches Redis) and [`Error`] for what a
//! [`Limiter`](crate::Limiter) call can end with. The command traits return
//! plain [`redis::RedisResult`], as redis-rs commands do.

use std::fmt;

use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::num::DecimalError;

use crate::reply::AllDecision;

/// A policy, limit set or option that cannot be expressed: refused when it
/// is built, before anything reaches Redis.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// The module would refuse this value: its own message, word for word
    /// (without the `ERR ` code), from the same grammar the module reads
    /// its arguments with, e.g. `capacity must be an integer between 1 and
    /// 9223372036854775807`.
    Invalid {
        /// The module's message.
        message: &'static str,
    },
    /// Text that is not a plain non-negative decimal.
    InvalidDecimal {
        /// The text.
        input: String,
    },
    /// A limit name that cannot be used in a key and an HTTP header.
    InvalidName {
        /// The name.
        name: String,
    },
    /// Two limits with the same name in one set.
    DuplicateName {
        /// The name.
        name: String,
    },
    /// A limit set with no limit.
    NoLimits,
    /// A key prefix with a `{` or `}` (it would break the hash tag).
    InvalidPrefix {
        /// The prefix.
        prefix: String,
    },
    /// A policy name the module refuses (1 to 64 of `A-Z a-z 0-9 _ - .`).
    InvalidPolicyName {
        /// The name.
        name: String,
    },
}

impl PolicyError {
    /// The module's error for `e`, as a policy error.
    pub(crate) fn invalid(e: CmdError) -> PolicyError {
        let message = match e {
            CmdError::Msg(m) => m.to_str().unwrap_or("invalid value"),
            CmdError::WrongArity => "wrong number of arguments",
            CmdError::InternalCommand(_) => "internal command",
            CmdError::UnknownPolicy(_) => "no such policy",
        };
        PolicyError::Invalid {
            message: message.strip_prefix("ERR ").unwrap_or(message),
        }
    }
}

impl From<CmdError> for PolicyError {
    fn from(e: CmdError) -> PolicyError {
        PolicyError::invalid(e)
    }
}

impl From<DecimalError> for PolicyError {
    fn from(e: DecimalError) -> PolicyError {
        PolicyError::InvalidDecimal { input: e.input }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::Invalid { message } => f.write_str(message),
            PolicyError::InvalidDecimal { input } => write!(
                f,
                "{input:?} is not a plain non-negative decimal (such as 0.5, 100 or 1e4)"
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
            PolicyError::InvalidPolicyName { name } => write!(
                f,
                "policy name {name:?} must be 1 to 64 characters of A-Z a-z 0-9 _ - ."
            ),
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
    InvalidKey {
        /// Why.
        reason: &'static str,
    },
    /// [`Limiter::wait`](crate::Limiter::wait): still denied at the deadline,
    /// or the wait needed would end past it.
    TimedOut {
        /// The last decision.
        last: AllDecision,
    },
    /// [`Limiter::wait`](crate::Limiter::wait): the request can never be
    /// allowed (its cost is above a limit).
    NeverAllowed {
        /// The decision that said so.
        last: AllDecision,
    },
    /// A named policy is not the same on every primary (`held`: what
    /// `node` holds under `name`, `None` if nothing; `want`: what was
    /// stored, if anything).
    PoliciesDisagree {
        /// The policy's name.
        name: String,
        /// The node that differs (`host:port`).
        node: String,
        /// What the node holds under the name, `None` if nothing.
        held: Option<String>,
        /// What was stored, if anything.
        want: Option<String>,
    },
    /// [`Limiter::connect`](crate::Limiter::connect) was called outside a
    /// tokio runtime: its connection runs on one. Call it from async code
    /// (under `#[tokio::main]`, or inside `Runtime::enter`), or use
    /// [`blocking::Limiter`](crate::blocking::Limiter) in code without one.
    NoRuntime,
    /// [`Limiter::reserve`](crate::Limiter::reserve): the limiter's limits
    /// or the estimate cannot make a reservation.
    NotReservable {
        /// Why.
        reason: &'static str,
    },
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
            Error::PoliciesDisagree {
                name,
                node,
                held,
                want,
            } => write!(
                f,
                "policy {name:?} differs on {node}: it holds {held:?}, expected {want:?}"
            ),
            Error::NotReservable { reason } => write!(f, "cannot reserve: {reason}"),
            Error::NoRuntime => f.write_str(
                "Limiter::connect must be called inside a tokio runtime (from async code, or \
                 within Runtime::enter); without one, use blocking::Limiter",
            ),
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

impl From<redis::ParsingError> for Error {
    fn from(e: redis::ParsingError) -> Error {
        Error::Redis(e.into())
    }
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Redis(e)
    }
}
