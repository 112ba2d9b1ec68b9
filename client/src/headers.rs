//! HTTP response header values from decisions, per
//! draft-ietf-httpapi-ratelimit-headers-10 (Structured Fields lists of
//! quoted-string items with parameters):
//!
//! - `RateLimit-Policy: "minute";q=10;w=60, "day";q=500;w=86400`: every
//!   limit, `q` its quota and `w` its window in whole seconds (a bucket's
//!   window is its time to fill from empty; a calendar unit's is nominal:
//!   a day is 86400, a month 31 days), rounded up, at least 1.
//! - `RateLimit: "day";r=50;t=30`: the binding limit only (the one that
//!   decided), `r` the units remaining and `t` the seconds until more
//!   quota: on a denial the wait after which the request fits, otherwise
//!   the time until the limit is fresh again, rounded up.
//! - `Retry-After: 30` on a denial: whole seconds, rounded up (a client
//!   that waits exactly that long gets in); absent when no wait helps.
//!
//! Decisions made without Redis say so:
//!
//! - fail open or fail closed: no real numbers, so no `RateLimit` field,
//!   only the policy and, if denied, a `Retry-After`;
//! - the in-process fallback ([`FailurePolicy::Fallback`](crate::FailurePolicy::Fallback)):
//!   its own numbers, for this process's share of the quota, marked with
//!   the boolean parameter `fallback`: `RateLimit: "minute";r=2;t=40;fallback`.
//!   A Structured Fields parser keeps a parameter it does not know, and a
//!   client that ignores it reads the usual item; `RateLimit-Policy` stays
//!   as it is (the draft wants it consistent across responses).

use std::fmt::Write as _;
use std::time::Duration;

use crate::limits::{Limits, Policy, Throttle};
use crate::reply::{AllDecision, Decision, Source};

/// `RateLimit-Policy`, as written by the draft.
pub const RATELIMIT_POLICY: &str = "RateLimit-Policy";
/// `RateLimit`, as written by the draft.
pub const RATELIMIT: &str = "RateLimit";
/// `Retry-After` (RFC 9110).
pub const RETRY_AFTER: &str = "Retry-After";
/// The boolean parameter that marks a `RateLimit` item decided by the
/// in-process fallback while Redis was away: `"minute";r=2;t=40;fallback`.
pub const FALLBACK_PARAMETER: &str = "fallback";

/// Seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// A Structured Fields string: `"` + the text with `\` and `"` escaped +
/// `"`. Characters a header cannot carry (controls, non-ASCII) become `?`.
pub fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

fn item(name: &str, params: &[(&str, u64)]) -> String {
    let mut out = sf_string(name);
    for (k, v) in params {
        // Writing to a String cannot fail.
        let _ = write!(out, ";{k}={v}");
    }
    out
}

/// `"name";q=limit;w=window` for one policy.
pub fn policy_item(name: &str, policy: &Policy) -> String {
    item(
        name,
        &[
            ("q", policy.limit()),
            ("w", ceil_secs(policy.window()).max(1)),
        ],
    )
}

/// `"name";q=max_burst+1;w=...` for a `CL.THROTTLE` policy (its window:
/// the time `max_burst + 1` units take at its rate).
pub fn throttle_item(name: &str, t: &Throttle) -> String {
    let window = u128::from(t.limit()) * u128::from(t.period().as_secs());
    let w = window.div_ceil(u128::from(t.count_per_period()));
    item(
        name,
        &[
            ("q", t.limit()),
            ("w", u64::try_from(w).unwrap_or(u64::MAX).max(1)),
        ],
    )
}

/// The `RateLimit-Policy` value for a whole set.
pub fn ratelimit_policy(limits: &Limits) -> String {
    limits
        .iter()
        .map(|l| policy_item(l.name(), l.policy()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"name";r=remaining;t=seconds` for the limit that decided, with
/// `;fallback` when the in-process fallback decided ([`FALLBACK_PARAMETER`]).
pub fn ratelimit(name: &str, d: &Decision) -> String {
    let t = match (d.allowed, d.retry_after) {
        (false, Some(retry)) => retry,
        _ => d.reset_after,
    };
    let mut out = item(name, &[("r", d.remaining), ("t", ceil_secs(t))]);
    if d.source == Source::Fallback {
        out.push(';');
        out.push_str(FALLBACK_PARAMETER);
    }
    out
}

/// `Retry-After` for a denial that a wait can fix.
pub fn retry_after(d: &Decision) -> Option<String> {
    match (d.allowed, d.retry_after) {
        (false, Some(retry)) => Some(ceil_secs(retry).to_string()),
        _ => None,
    }
}

/// The three values for one response.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub struct RateLimitHeaders {
    /// `RateLimit-Policy`.
    pub policy: String,
    /// `RateLimit` (absent when the failure policy answered with no
    /// numbers: fail open, fail closed; marked `;fallback` when the
    /// in-process fallback decided).
    pub ratelimit: Option<String>,
    /// `Retry-After` (denials a wait can fix).
    pub retry_after: Option<String>,
}

impl RateLimitHeaders {
    /// For a [`Limiter`](crate::Limiter) or `RL.ALL` decision over `limits`.
    pub fn new(limits: &Limits, verdict: &AllDecision) -> RateLimitHeaders {
        let d = &verdict.decision;
        let ratelimit = match (d.source, limits.get(verdict.binding)) {
            (Source::FailOpen | Source::FailClosed, _) | (_, None) => None,
            (_, Some(l)) => Some(ratelimit(l.name(), d)),
        };
        RateLimitHeaders {
            policy: ratelimit_policy(limits),
            ratelimit,
            retry_after: retry_after(d),
        }
    }

    /// For one policy's decision.
    pub fn for_policy(name: &str, policy: &Policy, d: &Decision) -> RateLimitHeaders {
        RateLimitHeaders {
            policy: policy_item(name, policy),
            ratelimit: match d.source {
                Source::FailOpen | Source::FailClosed => None,
                _ => Some(ratelimit(name, d)),
            },
            retry_after: retry_after(d),
        }
    }

    /// `(name, value)` pairs, names as the draft writes them.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut v = vec![(RATELIMIT_POLICY, self.policy.as_str())];
        if let Some(r) = &self.ratelimit {
            v.push((RATELIMIT, r.as_str()));
        }
        if let Some(r) = &self.retry_after {
            v.push((RETRY_AFTER, r.as_str()));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{CalendarUnit, FixedWindow, SlidingWindow, TokenBucket};

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    fn decision(
        allowed: bool,
        limit: u64,
        remaining: u64,
        retry: Option<u64>,
        reset: u64,
    ) -> Decision {
        Decision::local(
            allowed,
            limit,
            remaining,
            retry.map(MS),
            MS(reset),
            Source::Redis,
        )
    }

    #[test]
    fn structured_field_strings() {
        assert_eq!(sf_string("burst"), "\"burst\"");
        assert_eq!(sf_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(sf_string("tab\there é"), "\"tab?here ?\"");
        assert_eq!(sf_string(""), "\"\"");
    }

    #[test]
    fn policy_items() {
        let burst: Policy = SlidingWindow::new(100, S(60)).unwrap().into();
        assert_eq!(policy_item("burst", &burst), "\"burst\";q=100;w=60");
        let sub: Policy = SlidingWindow::new(100, MS(250)).unwrap().into();
        assert_eq!(policy_item("sub", &sub), "\"sub\";q=100;w=1");
        let bucket: Policy = TokenBucket::new(10, 1, S(1)).unwrap().into();
        assert_eq!(policy_item("b", &bucket), "\"b\";q=10;w=10");
        let day: Policy = FixedWindow::calendar(1000, CalendarUnit::Day)
            .unwrap()
            .in_time_zone("America/New_York")
            .unwrap()
            .into();
        assert_eq!(policy_item("daily", &day), "\"daily\";q=1000;w=86400");
        let t = Throttle::new(15, 30, S(60)).unwrap();
        assert_eq!(throttle_item("cell", &t), "\"cell\";q=16;w=32");
    }

    #[test]
    fn the_fields_example() {
        let limits = Limits::builder()
            .limit("burst", SlidingWindow::new(100, S(60)).unwrap())
            .limit("daily", FixedWindow::new(1000, S(86_400)).unwrap())
            .build()
            .unwrap();
        assert_eq!(
            ratelimit_policy(&limits),
            "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"
        );
        let v = AllDecision::new(decision(true, 1000, 50, Some(0), 29_001), 1);
        let h = RateLimitHeaders::new(&limits, &v);
        assert_eq!(h.ratelimit.as_deref(), Some("\"daily\";r=50;t=30"));
        assert_eq!(h.retry_after, None);
        assert_eq!(
            h.pairs(),
            [
                (
                    "RateLimit-Policy",
                    "\"burst\";q=100;w=60, \"daily\";q=1000;w=86400"
                ),
                ("RateLimit", "\"daily\";r=50;t=30")
            ]
        );
    }

    #[test]
    fn denials_round_up() {
        let p: Policy = SlidingWindow::new(10, S(60)).unwrap().into();
        let d = decision(false, 10, 0, Some(1), 59_999);
        let h = RateLimitHeaders::for_policy("minute", &p, &d);
        assert_eq!(h.ratelimit.as_deref(), Some("\"minute\";r=0;t=1"));
        assert_eq!(h.retry_after.as_deref(), Some("1"));
        let d = decision(false, 10, 0, Some(2000), 60_000);
        assert_eq!(retry_after(&d).as_deref(), Some("2"));
        let d = decision(false, 10, 0, Some(2001), 60_000);
        assert_eq!(retry_after(&d).as_deref(), Some("3"));
        // Never: no Retry-After; t says when the limit is fresh.
        let never = decision(false, 10, 3, None, 12_500);
        assert_eq!(retry_after(&never), None);
        assert_eq!(ratelimit("m", &never), "\"m\";r=3;t=13");
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_nanos(1)), 1);
    }

    #[test]
    fn decisions_without_redis_have_no_numbers() {
        let limits = Limits::single("m", SlidingWindow::new(10, S(60)).unwrap()).unwrap();
        let open = Decision::local(true, 10, 0, Some(MS(0)), MS(0), Source::FailOpen);
        let h = RateLimitHeaders::new(&limits, &AllDecision::new(open, 0));
        assert_eq!((h.ratelimit, h.retry_after), (None, None));
        let closed = Decision::local(false, 10, 0, Some(S(1)), S(1), Source::FailClosed);
        let h = RateLimitHeaders::new(&limits, &AllDecision::new(closed, 0));
        assert_eq!(h.ratelimit, None);
        assert_eq!(h.retry_after.as_deref(), Some("1"));
        // The fallback's own numbers, marked as its.
        let fb = Decision::local(false, 10, 0, Some(MS(1500)), S(6), Source::Fallback);
        let h = RateLimitHeaders::new(&limits, &AllDecision::new(fb, 0));
        assert_eq!(h.ratelimit.as_deref(), Some("\"m\";r=0;t=2;fallback"));
        assert_eq!(h.retry_after.as_deref(), Some("2"));
        let p: Policy = SlidingWindow::new(10, S(60)).unwrap().into();
        let fb = Decision::local(true, 10, 7, Some(MS(0)), S(59), Source::Fallback);
        let h = RateLimitHeaders::for_policy("m", &p, &fb);
        assert_eq!(h.ratelimit.as_deref(), Some("\"m\";r=7;t=59;fallback"));
    }
}
