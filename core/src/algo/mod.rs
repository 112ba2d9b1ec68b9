//! Pure rate-limiting algorithms: `(state, params, now, cost) -> (decision,
//! new state)`. Nothing here reads a clock or knows about Redis; command
//! handlers pass `now` in and store what comes out.

pub mod all;
pub mod bucket;
pub mod calendar;
pub mod fixed;
pub mod lease;
pub mod log;
pub mod sliding;

use crate::time::{reply_millis, Nanos};

/// What a decision does to the stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<S> {
    /// Nothing to write.
    None,
    /// Store this new state.
    Set(S),
    /// The limiter is fresh again: delete the key.
    Clear,
}

/// When a denied request could be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Allowed now (or the request was allowed).
    Now,
    /// After this span, if nothing else consumes.
    After(Nanos),
    /// Never: the cost is larger than the limit.
    Never,
}

/// What every limiter answers: the five integers of the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub allowed: bool,
    /// Capacity or limit.
    pub limit: u64,
    /// Units that could still be taken right now, after this call.
    pub remaining: u64,
    pub retry_after: RetryAfter,
    /// Time until the limiter is back to its fresh state (and its key expires).
    pub reset_after: Nanos,
}

impl Answer {
    /// The reply array: allowed, limit, remaining, retry_after_ms, reset_after_ms.
    #[inline]
    pub fn reply_fields(&self) -> [i64; 5] {
        let retry = match self.retry_after {
            RetryAfter::Now => 0,
            RetryAfter::After(span) => reply_millis(span),
            RetryAfter::Never => -1,
        };
        [
            i64::from(self.allowed),
            i64::try_from(self.limit).unwrap_or(i64::MAX),
            i64::try_from(self.remaining).unwrap_or(i64::MAX),
            retry,
            reply_millis(self.reset_after),
        ]
    }
}
