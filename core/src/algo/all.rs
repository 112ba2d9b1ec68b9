//! Several limits, one answer: which limit binds.
//!
//! Each limit decides on its own state; the request is allowed only if
//! every limit allows (`limit::decide_all` keeps every change then, and
//! none otherwise, so no limit spends units on a request another one
//! refused). The request answers with its binding limit's answer.

use super::{Answer, RetryAfter};

fn wait(a: &Answer) -> u128 {
    match a.retry_after {
        RetryAfter::Never => u128::MAX,
        RetryAfter::After(s) => u128::from(s.as_u64()),
        RetryAfter::Now => 0,
    }
}

/// The binding limit's index among per-limit answers. When some deny, it
/// is the denying limit that allows last (a never-allowing one first of
/// all): its `retry_after` is the wait after which every limit allows.
/// When all allow, it is the limit with the least remaining. Ties go to
/// the earlier limit. `None` for no limits.
pub fn binding<'a>(answers: impl Iterator<Item = &'a Answer>) -> Option<usize> {
    let mut best: Option<(usize, &Answer)> = None;
    for (i, a) in answers.enumerate() {
        let better = match best {
            None => true,
            Some((_, b)) => match (b.allowed, a.allowed) {
                (true, false) => true,
                (false, true) => false,
                (false, false) => wait(a) > wait(b),
                (true, true) => a.remaining < b.remaining,
            },
        };
        if better {
            best = Some((i, a));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Nanos;

    #[test]
    fn binding_prefers_the_longest_wait_then_the_least_remaining() {
        let a = |allowed, remaining, retry| Answer {
            allowed,
            limit: 10,
            remaining,
            retry_after: retry,
            reset_after: Nanos::ZERO,
        };
        let ms = |m| RetryAfter::After(Nanos::from_millis(m));
        let of = |answers: &[Answer]| binding(answers.iter());
        assert_eq!(
            of(&[
                a(false, 0, ms(5)),
                a(true, 3, RetryAfter::Now),
                a(false, 0, ms(9))
            ]),
            Some(2)
        );
        assert_eq!(
            of(&[a(false, 0, ms(5)), a(false, 9, RetryAfter::Never)]),
            Some(1)
        );
        assert_eq!(
            of(&[
                a(true, 4, RetryAfter::Now),
                a(true, 2, RetryAfter::Now),
                a(true, 2, RetryAfter::Now)
            ]),
            Some(1)
        );
        assert_eq!(of(&[]), None);
    }
}
