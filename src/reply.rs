//! The one reply writer of every decision, answered at once or after a
//! wait: an algorithm's own command and RL.TAKE answer one limit's five
//! integers, RL.ALL and RL.TAKEALL six (the binding limit's position
//! last), CL.THROTTLE redis-cell's five; the lease id follows where a
//! CONCURRENCY limit takes part.

use redis_ratelimit_core::algo::{Answer, RetryAfter};
use redis_ratelimit_core::time::Nanos;

use crate::api::Ctx;

/// How a request's answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    shape: Shape,
    /// A CONCURRENCY limit takes part: the lease id comes last (0: none).
    lease: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// allowed, limit, remaining, retry_after_ms, reset_after_ms
    Limit,
    /// The same, then the binding limit's position (from 1).
    All,
    /// redis-cell's: limited, limit, remaining, retry_after_s (-1 when
    /// allowed), reset_after_s.
    Cell,
}

/// The integers of a reply (at most seven).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields {
    values: [i64; 7],
    len: usize,
}

impl Fields {
    pub fn as_slice(&self) -> &[i64] {
        self.values.get(..self.len).unwrap_or(&[])
    }
}

impl Reply {
    /// One limit's answer (`lease`: it is a CONCURRENCY limit).
    pub const fn limit(lease: bool) -> Reply {
        Reply {
            shape: Shape::Limit,
            lease,
        }
    }

    /// RL.ALL's answer (`lease`: one of its limits is a CONCURRENCY limit).
    pub const fn all(lease: bool) -> Reply {
        Reply {
            shape: Shape::All,
            lease,
        }
    }

    /// CL.THROTTLE's answer, redis-cell's.
    pub const fn cell() -> Reply {
        Reply {
            shape: Shape::Cell,
            lease: false,
        }
    }

    /// A CONCURRENCY limit takes part: the reply ends with the lease id.
    pub fn takes_lease(&self) -> bool {
        self.lease
    }

    /// The reply's integers: `index` is the binding limit's position,
    /// `lease` the lease taken.
    #[inline]
    pub fn fields(&self, answer: &Answer, index: usize, lease: Option<u64>) -> Fields {
        let [allowed, limit, remaining, retry, reset] = answer.reply_fields();
        let mut values = [allowed, limit, remaining, retry, reset, 0, 0];
        let mut len = 5;
        match self.shape {
            Shape::Limit => {}
            Shape::All => {
                values[5] = i64::try_from(index + 1).unwrap_or(i64::MAX);
                len = 6;
            }
            Shape::Cell => {
                values[0] = i64::from(!answer.allowed);
                values[3] = match answer.retry_after {
                    RetryAfter::After(span) => cell_seconds(span),
                    RetryAfter::Now | RetryAfter::Never => -1,
                };
                values[4] = cell_seconds(answer.reset_after);
            }
        }
        if self.lease {
            if let Some(slot) = values.get_mut(len) {
                *slot = lease.and_then(|id| i64::try_from(id).ok()).unwrap_or(0);
            }
            len += 1;
        }
        Fields { values, len }
    }

    /// Writes the reply.
    #[inline(always)]
    pub fn send(&self, ctx: &Ctx<'_>, answer: &Answer, index: usize, lease: Option<u64>) {
        ctx.reply_ints(self.fields(answer, index, lease).as_slice());
    }
}

/// redis-cell's seconds: whole seconds, plus one if there are milliseconds left over.
fn cell_seconds(span: Nanos) -> i64 {
    let ns = span.as_u64();
    let secs = ns / 1_000_000_000;
    let extra = u64::from((ns % 1_000_000_000) / 1_000_000 > 0);
    i64::try_from(secs + extra).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(allowed: bool, retry: RetryAfter, reset: Nanos) -> Answer {
        Answer {
            allowed,
            limit: 10,
            remaining: 3,
            retry_after: retry,
            reset_after: reset,
        }
    }

    #[test]
    fn each_shape_writes_its_fields() {
        let ms = |m| Nanos::from_millis(m);
        let denied = answer(false, RetryAfter::After(ms(1500)), ms(2001));
        #[rustfmt::skip]
        let rows: [(Reply, usize, Option<u64>, &[i64]); 5] = [
            (Reply::limit(false), 0, None,     &[0, 10, 3, 1500, 2001]),
            (Reply::limit(true),  0, Some(42), &[0, 10, 3, 1500, 2001, 42]),
            (Reply::all(false),   2, None,     &[0, 10, 3, 1500, 2001, 3]),
            (Reply::all(true),    0, None,     &[0, 10, 3, 1500, 2001, 1, 0]),
            (Reply::cell(),       0, None,     &[1, 10, 3, 2, 3]),
        ];
        for (reply, index, lease, want) in rows {
            assert_eq!(
                reply.fields(&denied, index, lease).as_slice(),
                want,
                "{reply:?}"
            );
        }
        let allowed = answer(true, RetryAfter::Now, ms(1000));
        assert_eq!(
            Reply::cell().fields(&allowed, 0, None).as_slice(),
            &[0, 10, 3, -1, 1]
        );
    }

    #[test]
    fn seconds_round_like_redis_cell() {
        assert_eq!(cell_seconds(Nanos::ZERO), 0);
        assert_eq!(cell_seconds(Nanos::from_millis(2000)), 2);
        assert_eq!(cell_seconds(Nanos::from_millis(2001)), 3);
        // A sub-millisecond remainder does not round up (redis-cell's rule).
        assert_eq!(cell_seconds(Nanos::new(2_000_500_000)), 2);
    }
}
