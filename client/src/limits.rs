//! Policies as small validated values. Every constructor checks what the
//! module would refuse (a limit of 0, a rate above one unit per nanosecond,
//! a window finer than a millisecond, ...) and returns a [`PolicyError`]
//! naming the argument, so a policy that exists is one the server accepts.
//! Durations are [`std::time::Duration`]; rates are exact [`Decimal`]s.

use std::fmt;
use std::time::Duration;

use redis_ratelimit_core::algo::calendar::Unit;
use redis_ratelimit_core::error;
use redis_ratelimit_core::grammar::{read_throttle, Settings};
use redis_ratelimit_core::limit::{Rules, Spec};
use redis_ratelimit_core::num::Decimal;
use redis_ratelimit_core::policy as stored;
use redis_ratelimit_core::render::{self, Arg, LimitArgs};
use redis_ratelimit_core::time::Nanos;

use crate::error::PolicyError;

/// The largest integer the module accepts (`i64::MAX`).
pub use redis_ratelimit_core::bounds::MAX_INT;

/// Checks a limit exactly as the module reads it: from the very words
/// the client sends (core's rendering of `args`, the one every command
/// of the client writes), with the module's own grammar.
fn check(args: LimitArgs<'_>) -> Result<Spec, PolicyError> {
    Ok(args.read(Settings::default())?)
}

/// The name `CL.THROTTLE`, redis-cell's command.
pub(crate) const THROTTLE_COMMAND: &str = redis_ratelimit_core::names::THROTTLE.as_str();

/// A duration as the decimal seconds sent to the module (`1.5`, `0.25`).
fn secs(d: Duration) -> Decimal {
    Decimal::from_duration_secs(d).unwrap_or(Decimal::ZERO)
}

/// The nanoseconds a bucket spec refills one unit in.
fn interval_ns(spec: &Spec) -> u64 {
    match spec {
        Spec::Bucket(b) => b.interval().as_u64(),
        _ => 0,
    }
}

/// `RL.TOKENBUCKET`: `capacity` tokens, refilled continuously at `rate`
/// tokens per `period`. A new key starts full.
///
/// ```
/// # use redis_ratelimit_client::{TokenBucket, Decimal};
/// # use std::time::Duration;
/// // 10 a minute, bursts of 10.
/// let b = TokenBucket::new(10, 10, Duration::from_secs(60))?;
/// // One every 2 s.
/// let slow = TokenBucket::new(1, "0.5".parse::<Decimal>()?, Duration::from_secs(1))?;
/// assert_eq!(slow.refill_interval(), Duration::from_secs(2));
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TokenBucket {
    capacity: u64,
    rate: Decimal,
    period: Duration,
    period_secs: Decimal,
    interval_ns: u64,
}

impl TokenBucket {
    /// A bucket of `capacity` tokens refilled at `rate` tokens per `period`,
    /// checked as the module reads `RL.TOKENBUCKET`.
    pub fn new(
        capacity: u64,
        rate: impl Into<Decimal>,
        period: Duration,
    ) -> Result<TokenBucket, PolicyError> {
        let rate = rate.into();
        let period_secs = secs(period);
        let spec = check(LimitArgs::token_bucket(capacity, rate, period_secs))?;
        Ok(TokenBucket {
            capacity,
            rate,
            period,
            period_secs,
            interval_ns: interval_ns(&spec),
        })
    }

    /// The most tokens it holds (the reply's `limit`).
    pub fn capacity(&self) -> u64 {
        self.capacity
    }
    /// Tokens added per period.
    pub fn rate(&self) -> Decimal {
        self.rate
    }
    /// The period the rate is counted in.
    pub fn period(&self) -> Duration {
        self.period
    }
    /// The time one token takes to come back (rounded up to the
    /// nanosecond, as the module does).
    pub fn refill_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }
    /// Its words, as every command writes them.
    pub(crate) fn args(&self) -> LimitArgs<'static> {
        LimitArgs::token_bucket(self.capacity, self.rate, self.period_secs)
    }
}

/// `RL.SLIDING`: at most `limit` units in any interval of length `window`
/// (millisecond precision, at most 10 years).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct SlidingWindow {
    limit: u64,
    window: Duration,
    window_secs: Decimal,
}

impl SlidingWindow {
    /// At most `limit` units in any `window`, checked as the module reads
    /// `RL.SLIDING`.
    pub fn new(limit: u64, window: Duration) -> Result<SlidingWindow, PolicyError> {
        let window_secs = secs(window);
        check(LimitArgs::sliding(limit, window_secs))?;
        Ok(SlidingWindow {
            limit,
            window_secs,
            window,
        })
    }

    /// The most units in a window.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// The window's length.
    pub fn window(&self) -> Duration {
        self.window
    }
    /// Its words, as every command writes them.
    pub(crate) fn args(&self) -> LimitArgs<'static> {
        LimitArgs::sliding(self.limit, self.window_secs)
    }
}

/// `RL.GCRA`: the generic cell rate algorithm, `rate` units per `period`
/// with bursts of up to `burst` (the reply's `limit` is `burst`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Gcra {
    burst: u64,
    rate: Decimal,
    period: Duration,
    period_secs: Decimal,
    interval_ns: u64,
}

impl Gcra {
    /// Bursts of up to `burst`, then `rate` per `period`, checked as the module
    /// reads `RL.GCRA`.
    pub fn new(
        burst: u64,
        rate: impl Into<Decimal>,
        period: Duration,
    ) -> Result<Gcra, PolicyError> {
        let rate = rate.into();
        let period_secs = secs(period);
        let spec = check(LimitArgs::gcra(burst, rate, period_secs))?;
        Ok(Gcra {
            burst,
            rate,
            period,
            period_secs,
            interval_ns: interval_ns(&spec),
        })
    }

    /// The largest burst (the reply's `limit`).
    pub fn burst(&self) -> u64 {
        self.burst
    }
    /// Requests allowed per period, after a burst.
    pub fn rate(&self) -> Decimal {
        self.rate
    }
    /// The period the rate is counted in.
    pub fn period(&self) -> Duration {
        self.period
    }
    /// The emission interval: `period / rate`, rounded up to the nanosecond.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_ns)
    }
    /// Its words, as every command writes them.
    pub(crate) fn args(&self) -> LimitArgs<'static> {
        LimitArgs::gcra(self.burst, self.rate, self.period_secs)
    }
}

/// A calendar unit for [`FixedWindow::calendar`]: windows start on whole
/// minutes, hours, midnights, Mondays or the 1st of the month (UTC, or in
/// a time zone).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum CalendarUnit {
    /// Windows start on whole minutes.
    Minute,
    /// Windows start on whole hours.
    Hour,
    /// Windows start at midnight.
    Day,
    /// Windows start on Mondays at midnight.
    Week,
    /// Windows start on the 1st of the month at midnight.
    Month,
}

impl CalendarUnit {
    /// The module's unit.
    fn unit(self) -> Unit {
        match self {
            CalendarUnit::Minute => Unit::Minute,
            CalendarUnit::Hour => Unit::Hour,
            CalendarUnit::Day => Unit::Day,
            CalendarUnit::Week => Unit::Week,
            CalendarUnit::Month => Unit::Month,
        }
    }

    /// The keyword the module reads.
    pub fn keyword(&self) -> &'static str {
        self.unit().keyword()
    }

    /// The unit's nominal length, used where one number is needed (the
    /// `w` of the `RateLimit-Policy` header, the in-process fallback): a
    /// day is 24 h even on DST days, a month is 31 days (the longest, so
    /// estimates err on the strict side).
    pub fn nominal(&self) -> Duration {
        Duration::from_nanos(self.unit().nominal().as_u64())
    }
}

/// A fixed window's span: a length, or a calendar unit in an optional
/// IANA time zone.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum FixedSpan {
    /// Windows start at multiples of this length since the Unix epoch.
    Length(Duration),
    /// Windows start at calendar boundaries, in UTC or in `time_zone`.
    Calendar {
        /// The calendar unit.
        unit: CalendarUnit,
        /// The IANA time zone, `None` for UTC.
        time_zone: Option<String>,
    },
}

/// `RL.FIXED`: at most `limit` units per window; windows start at fixed
/// instants (multiples of the length since the epoch, or calendar
/// boundaries, DST-aware in a time zone).
///
/// ```
/// # use redis_ratelimit_client::{FixedWindow, CalendarUnit};
/// # use std::time::Duration;
/// let per_minute = FixedWindow::new(10, Duration::from_secs(60))?;
/// // 500 a day, the day starting at midnight in New York.
/// let daily = FixedWindow::calendar(500, CalendarUnit::Day)?.in_time_zone("America/New_York")?;
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct FixedWindow {
    limit: u64,
    span: FixedSpan,
    /// The length in seconds, for a window given as a length.
    length_secs: Decimal,
}

impl FixedWindow {
    /// Windows of `window` (whole milliseconds, at most 10 years) aligned
    /// to the Unix epoch.
    pub fn new(limit: u64, window: Duration) -> Result<FixedWindow, PolicyError> {
        let length = secs(window);
        check(LimitArgs::fixed(limit, Arg::Decimal(length), None))?;
        Ok(FixedWindow {
            limit,
            length_secs: length,
            span: FixedSpan::Length(window),
        })
    }

    /// Calendar windows in UTC; see [`in_time_zone`](Self::in_time_zone).
    pub fn calendar(limit: u64, unit: CalendarUnit) -> Result<FixedWindow, PolicyError> {
        check(LimitArgs::fixed(limit, Arg::Unit(unit.unit()), None))?;
        Ok(FixedWindow {
            limit,
            span: FixedSpan::Calendar {
                unit,
                time_zone: None,
            },
            length_secs: Decimal::ZERO,
        })
    }

    /// Calendar windows start at local boundaries of this IANA zone
    /// (`America/New_York`, `Europe/Paris`, `UTC`), checked against the
    /// same time zone database the module compiles in. Refused for windows
    /// given as a length.
    pub fn in_time_zone(mut self, zone: &str) -> Result<FixedWindow, PolicyError> {
        check(LimitArgs::fixed(self.limit, self.window_arg(), Some(zone)))?;
        if let FixedSpan::Calendar { time_zone, .. } = &mut self.span {
            *time_zone = Some(zone.to_string());
        }
        Ok(self)
    }

    /// The most units per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// How windows are laid out.
    pub fn span(&self) -> &FixedSpan {
        &self.span
    }
    /// The time zone of a calendar window, if any.
    pub fn time_zone(&self) -> Option<&str> {
        match &self.span {
            FixedSpan::Calendar { time_zone, .. } => time_zone.as_deref(),
            FixedSpan::Length(_) => None,
        }
    }

    /// The window as the module reads it: seconds or a calendar unit.
    fn window_arg(&self) -> Arg<'static> {
        match &self.span {
            FixedSpan::Calendar { unit, .. } => Arg::Unit(unit.unit()),
            FixedSpan::Length(_) => Arg::Decimal(self.length_secs),
        }
    }

    /// Its words, as every command writes them.
    pub(crate) fn args(&self) -> LimitArgs<'_> {
        LimitArgs::fixed(self.limit, self.window_arg(), self.time_zone())
    }

    /// The window's length (calendar units: their nominal length).
    pub fn nominal_length(&self) -> Duration {
        match &self.span {
            FixedSpan::Length(d) => *d,
            FixedSpan::Calendar { unit, .. } => unit.nominal(),
        }
    }
}

/// `CL.THROTTLE`, the redis-cell drop-in: `count` per `period` (whole
/// seconds) with bursts of `max_burst + 1` (redis-cell counts the burst
/// beyond the first request, so the reply's `limit` is `max_burst + 1`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Throttle {
    max_burst: u64,
    count: u64,
    period_secs: u64,
}

/// CL.THROTTLE's words after the key, as every command writes them.
fn throttle_words(max_burst: u64, count: u64, period: Decimal, quantity: u64) -> Vec<Vec<u8>> {
    let mut words = Vec::new();
    render::throttle(max_burst, count, period, quantity, &mut |w: &[u8]| {
        words.push(w.to_vec())
    });
    words
}

impl Throttle {
    /// `count` per `period` (whole seconds) with bursts of `max_burst + 1`,
    /// checked as the module reads `CL.THROTTLE`.
    pub fn new(max_burst: u64, count: u64, period: Duration) -> Result<Throttle, PolicyError> {
        // Checked as the module reads CL.THROTTLE (whole seconds only).
        let args = throttle_words(max_burst, count, secs(period), 1);
        let words = [THROTTLE_COMMAND.as_bytes(), b"k"]
            .into_iter()
            .chain(args.iter().map(Vec::as_slice));
        read_throttle(&words.collect::<Vec<&[u8]>>()[..])?;
        Ok(Throttle {
            max_burst,
            count,
            period_secs: period.as_secs(),
        })
    }

    /// The burst beyond the first request, as redis-cell counts it.
    pub fn max_burst(&self) -> u64 {
        self.max_burst
    }
    /// Requests per period.
    pub fn count_per_period(&self) -> u64 {
        self.count
    }
    /// The period, in whole seconds.
    pub fn period(&self) -> Duration {
        Duration::from_secs(self.period_secs)
    }
    /// What the reply calls the limit: `max_burst + 1`.
    pub fn limit(&self) -> u64 {
        self.max_burst + 1
    }

    /// CL.THROTTLE's words after the key, taking `quantity`.
    pub(crate) fn words(&self, quantity: u64) -> Vec<Vec<u8>> {
        throttle_words(
            self.max_burst,
            self.count,
            Decimal::from_u64(self.period_secs),
            quantity,
        )
    }

    /// The same limit as `RL.GCRA` sees it (bursts of `max_burst + 1`,
    /// `count` per `period`): how a throttle goes into a [`Limits`] set and
    /// `RL.ALL` (replies in milliseconds, not redis-cell's seconds).
    pub fn as_gcra(&self) -> Result<Gcra, PolicyError> {
        Gcra::new(
            self.max_burst.saturating_add(1),
            Decimal::from_u64(self.count),
            Duration::from_secs(self.period_secs),
        )
    }

    /// The words of [`as_gcra`](Self::as_gcra)'s limit.
    fn gcra_args(&self) -> LimitArgs<'static> {
        LimitArgs::gcra(
            self.max_burst.saturating_add(1),
            Decimal::from_u64(self.count),
            Decimal::from_u64(self.period_secs),
        )
    }
}

/// `RL.ACQUIRE`: at most `limit` requests in flight, each holding one slot
/// for at most `lease` (a holder that crashes never leaks its slot). The
/// reply carries the lease id to give back with `RL.RELEASE`.
///
/// ```
/// # use redis_ratelimit_client::Concurrency;
/// # use std::time::Duration;
/// let inflight = Concurrency::new(3, Duration::from_secs(30))?;
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Concurrency {
    limit: u64,
    lease: Duration,
    lease_secs: Decimal,
}

impl Concurrency {
    /// At most `limit` in flight, each slot leased for `lease`, checked as the
    /// module reads `RL.ACQUIRE`.
    pub fn new(limit: u64, lease: Duration) -> Result<Concurrency, PolicyError> {
        let lease_secs = Decimal::from_duration_secs(lease).ok_or(error::LEASE)?;
        check(LimitArgs::concurrency(limit, lease_secs))?;
        Ok(Concurrency {
            limit,
            lease,
            lease_secs,
        })
    }
    /// The most slots in flight.
    pub fn limit(&self) -> u64 {
        self.limit
    }
    /// How long a slot is held without RL.RELEASE or RL.RENEW.
    pub fn lease(&self) -> Duration {
        self.lease
    }
    /// Its words, as every command writes them.
    pub(crate) fn args(&self) -> LimitArgs<'static> {
        LimitArgs::concurrency(self.limit, self.lease_secs)
    }
}

/// A limit kept in the server under a name (`RL.POLICY SET name ...`),
/// with its rules: [`shadow`](Self::shadow) (decide and record as if
/// enforced, answer allowed) and [`lockout`](Self::lockout) (a denial
/// locks the key out for a while). Callers then name it: `RL.TAKE key
/// name`, or `LIMIT key POLICY name` in `RL.ALL`; a [`Limits`] set can
/// hold it like any policy (its definition serves the in-process fallback
/// and the `RateLimit-Policy` header), and
/// [`Limiter::store_policies`](crate::Limiter::store_policies) stores it.
///
/// ```
/// # use redis_ratelimit_client::{NamedPolicy, SlidingWindow};
/// # use std::time::Duration;
/// let api = NamedPolicy::new("api", SlidingWindow::new(100, Duration::from_secs(60))?)?
///     .lockout(Duration::from_secs(900))?;
/// assert_eq!(api.definition_args(), ["SLIDING", "100", "60", "LOCKOUT", "900"]);
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct NamedPolicy {
    name: String,
    policy: Box<Policy>,
    shadow: bool,
    lockout: Option<Duration>,
}

impl NamedPolicy {
    /// `policy` under `name` (1 to 64 of `A-Z a-z 0-9 _ - .`). A named
    /// policy cannot hold another.
    pub fn new(
        name: impl Into<String>,
        policy: impl Into<Policy>,
    ) -> Result<NamedPolicy, PolicyError> {
        let name = name.into();
        if !stored::valid_name(name.as_bytes()) {
            return Err(PolicyError::InvalidPolicyName { name });
        }
        let policy = match policy.into() {
            Policy::Named(n) => *n.policy,
            Policy::Throttle(t) => Policy::Gcra(t.as_gcra()?),
            other => other,
        };
        let named = NamedPolicy {
            name,
            policy: Box::new(policy),
            shadow: false,
            lockout: None,
        };
        named.checked()
    }

    /// Decide and record as if enforced, but answer allowed (and count the
    /// denials in INFO as `shadow_denied`): to roll out a limit safely.
    pub fn shadow(mut self) -> NamedPolicy {
        self.shadow = true;
        self
    }

    /// A denial locks the key out for `lockout` (not for a CONCURRENCY
    /// limit): every request in that time is denied without consuming.
    pub fn lockout(mut self, lockout: Duration) -> Result<NamedPolicy, PolicyError> {
        if Decimal::from_duration_secs(lockout).is_none() {
            return Err(error::LOCKOUT.into());
        }
        self.lockout = Some(lockout);
        self.checked()
    }

    /// Read as the module reads `RL.POLICY SET`: the same grammar.
    fn checked(self) -> Result<NamedPolicy, PolicyError> {
        let words = self.definition_words();
        let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        stored::read_definition(&w[..], 0, Settings::default())?;
        Ok(self)
    }

    /// What follows the name in `RL.POLICY SET`, as every command writes it.
    pub(crate) fn render(&self, out: &mut impl FnMut(&[u8])) {
        let lockout = self.lockout.and_then(Decimal::from_duration_secs);
        render::policy_definition(&self.policy.args(), self.shadow, lockout, out);
    }

    fn definition_words(&self) -> Vec<Vec<u8>> {
        let mut words = Vec::new();
        self.render(&mut |w: &[u8]| words.push(w.to_vec()));
        words
    }

    /// The policy's name in the server.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The limit it stands for.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
    /// Does it answer allowed while recording denials (`SHADOW`)?
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }
    /// How long a denial locks the key out (`LOCKOUT`), if it does.
    pub fn lockout_duration(&self) -> Option<Duration> {
        self.lockout
    }

    /// What follows the name in `RL.POLICY SET`, exactly as sent.
    pub fn definition_args(&self) -> Vec<String> {
        self.definition_words()
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect()
    }

    /// The definition as `RL.POLICY GET` answers it for this policy
    /// (words joined by spaces), for comparing what a server holds.
    pub fn definition_text(&self) -> String {
        self.definition_args().join(" ")
    }

    /// The rules the fallback applies, as the module does.
    pub(crate) fn rules(&self) -> Rules {
        Rules {
            policy: true,
            shadow: self.shadow,
            lockout: self
                .lockout_duration()
                .map(|d| Nanos::new(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))),
        }
    }
}

/// Any limiter the `RL.*` commands (and `RL.ALL`) know.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Policy {
    /// `RL.TOKENBUCKET`.
    TokenBucket(TokenBucket),
    /// `RL.SLIDING`.
    Sliding(SlidingWindow),
    /// `RL.GCRA`.
    Gcra(Gcra),
    /// `RL.FIXED`.
    Fixed(FixedWindow),
    /// redis-cell's limit, sent as the `RL.GCRA` it is (see
    /// [`Throttle::as_gcra`]).
    Throttle(Throttle),
    /// At most `limit` in flight (`RL.ACQUIRE`; a lease id in the reply).
    Concurrency(Concurrency),
    /// A limit stored in the server under a name (`RL.TAKE`).
    Named(NamedPolicy),
}

impl Policy {
    /// The reply's `limit`: capacity, limit or burst.
    pub fn limit(&self) -> u64 {
        match self {
            Policy::TokenBucket(p) => p.capacity,
            Policy::Sliding(p) => p.limit,
            Policy::Gcra(p) => p.burst,
            Policy::Fixed(p) => p.limit,
            Policy::Throttle(p) => p.limit(),
            Policy::Concurrency(p) => p.limit,
            Policy::Named(p) => p.policy.limit(),
        }
    }

    /// The policy's own kind of limit, a named policy's included.
    pub(crate) fn inner(&self) -> &Policy {
        match self {
            Policy::Named(p) => &p.policy,
            other => other,
        }
    }

    /// A named policy's rules (none for the others).
    pub(crate) fn rules(&self) -> Rules {
        match self {
            Policy::Named(p) => p.rules(),
            _ => Rules::default(),
        }
    }

    /// Does it hand out leases (a CONCURRENCY limit)?
    pub fn is_concurrency(&self) -> bool {
        matches!(self.inner(), Policy::Concurrency(_))
    }

    /// The time over which `limit` units are granted: a bucket's time to
    /// fill from empty, a window's length (calendar units: nominal).
    pub fn window(&self) -> Duration {
        match self {
            Policy::TokenBucket(p) => nanos_times(p.interval_ns, p.capacity),
            Policy::Gcra(p) => nanos_times(p.interval_ns, p.burst),
            Policy::Sliding(p) => p.window,
            Policy::Fixed(p) => p.nominal_length(),
            Policy::Throttle(p) => p
                .as_gcra()
                .map_or(Duration::ZERO, |g| Policy::Gcra(g).window()),
            Policy::Concurrency(p) => p.lease,
            Policy::Named(p) => p.policy.window(),
        }
    }

    /// The words after the key that define this policy, as its own
    /// command, `RL.ALL` and `RL.POLICY SET` write them (a throttle: as the
    /// `RL.GCRA` it is; a named policy: its limit's).
    pub(crate) fn args(&self) -> LimitArgs<'_> {
        match self {
            Policy::TokenBucket(p) => p.args(),
            Policy::Sliding(p) => p.args(),
            Policy::Gcra(p) => p.args(),
            Policy::Fixed(p) => p.args(),
            Policy::Throttle(p) => p.gcra_args(),
            Policy::Concurrency(p) => p.args(),
            Policy::Named(p) => p.policy.args(),
        }
    }

    /// The limit exactly as the module builds it from [`args`](Self::args).
    pub(crate) fn spec(&self) -> Option<Spec> {
        self.args().read(Settings::default()).ok()
    }

    /// The steady time per unit: a bucket's refill interval, a window's
    /// length divided by its limit (rounded up).
    pub fn unit_interval(&self) -> Duration {
        match self {
            Policy::TokenBucket(p) => Duration::from_nanos(p.interval_ns),
            Policy::Gcra(p) => Duration::from_nanos(p.interval_ns),
            Policy::Sliding(_) | Policy::Fixed(_) | Policy::Concurrency(_) => {
                let ns = self.window().as_nanos().div_ceil(u128::from(self.limit()));
                Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
            }
            Policy::Throttle(p) => p
                .as_gcra()
                .map_or(Duration::ZERO, |g| Duration::from_nanos(g.interval_ns)),
            Policy::Named(p) => p.policy.unit_interval(),
        }
    }
}

fn nanos_times(ns: u64, n: u64) -> Duration {
    let total = u128::from(ns).saturating_mul(u128::from(n));
    Duration::from_nanos(u64::try_from(total).unwrap_or(u64::MAX))
}

impl From<TokenBucket> for Policy {
    fn from(p: TokenBucket) -> Policy {
        Policy::TokenBucket(p)
    }
}
impl From<SlidingWindow> for Policy {
    fn from(p: SlidingWindow) -> Policy {
        Policy::Sliding(p)
    }
}
impl From<Gcra> for Policy {
    fn from(p: Gcra) -> Policy {
        Policy::Gcra(p)
    }
}
impl From<FixedWindow> for Policy {
    fn from(p: FixedWindow) -> Policy {
        Policy::Fixed(p)
    }
}
impl From<Throttle> for Policy {
    fn from(p: Throttle) -> Policy {
        Policy::Throttle(p)
    }
}
impl From<Concurrency> for Policy {
    fn from(p: Concurrency) -> Policy {
        Policy::Concurrency(p)
    }
}
impl From<NamedPolicy> for Policy {
    fn from(p: NamedPolicy) -> Policy {
        Policy::Named(p)
    }
}

/// One named limit of a [`Limits`] set. The name appears in Redis keys
/// (`rl:{user42}:minute`) and in HTTP headers (`"minute";q=10;w=60`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Limit {
    name: String,
    policy: Policy,
}

impl Limit {
    /// The limit's name, in its keys and headers.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The limit.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

/// A non-empty set of named limits checked together, all or nothing (one
/// limit: its own command; several: `RL.ALL`).
///
/// ```
/// # use redis_ratelimit_client::{Limits, FixedWindow, CalendarUnit};
/// # use std::time::Duration;
/// let limits = Limits::builder()
///     .limit("minute", FixedWindow::new(10, Duration::from_secs(60))?)
///     .limit("day", FixedWindow::calendar(500, CalendarUnit::Day)?.in_time_zone("America/New_York")?)
///     .build()?;
/// assert_eq!(limits.len(), 2);
/// # Ok::<(), redis_ratelimit_client::PolicyError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Limits {
    items: Vec<Limit>,
}

impl Limits {
    /// Starts a set; add limits with [`LimitsBuilder::limit`].
    pub fn builder() -> LimitsBuilder {
        LimitsBuilder { items: Vec::new() }
    }

    /// A set of one limit.
    pub fn single(
        name: impl Into<String>,
        policy: impl Into<Policy>,
    ) -> Result<Limits, PolicyError> {
        Limits::builder().limit(name, policy).build()
    }

    /// The limits, in the order they were given.
    pub fn iter(&self) -> std::slice::Iter<'_, Limit> {
        self.items.iter()
    }
    /// The number of limits (at least 1).
    pub fn len(&self) -> usize {
        self.items.len()
    }
    /// Never true: a set holds at least one limit.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    /// The limit at `index`, in the order they were given.
    pub fn get(&self, index: usize) -> Option<&Limit> {
        self.items.get(index)
    }
}

impl<'a> IntoIterator for &'a Limits {
    type Item = &'a Limit;
    type IntoIter = std::slice::Iter<'a, Limit>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Builds a [`Limits`]; names are checked by [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct LimitsBuilder {
    items: Vec<Limit>,
}

impl LimitsBuilder {
    /// Adds a limit under `name` (1 to 64 of `A-Z a-z 0-9 _ - . :`, unique in
    /// the set).
    pub fn limit(mut self, name: impl Into<String>, policy: impl Into<Policy>) -> LimitsBuilder {
        self.items.push(Limit {
            name: name.into(),
            policy: policy.into(),
        });
        self
    }

    /// The set: [`PolicyError`] if it is empty, or a name is invalid or used
    /// twice.
    pub fn build(self) -> Result<Limits, PolicyError> {
        if self.items.is_empty() {
            return Err(PolicyError::NoLimits);
        }
        for (i, l) in self.items.iter().enumerate() {
            if !valid_name(&l.name) {
                return Err(PolicyError::InvalidName {
                    name: l.name.clone(),
                });
            }
            if self.items.iter().take(i).any(|o| o.name == l.name) {
                return Err(PolicyError::DuplicateName {
                    name: l.name.clone(),
                });
            }
        }
        Ok(Limits { items: self.items })
    }
}

/// Safe in a Redis key (no hash-tag braces) and in a Structured Fields
/// string without escapes.
pub(crate) fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

impl fmt::Display for CalendarUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.keyword())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    const YEAR: u64 = 365 * 24 * 3600;

    fn invalid(message: &'static str) -> PolicyError {
        PolicyError::Invalid { message }
    }

    #[test]
    fn token_bucket_checks_what_the_module_checks() {
        assert!(TokenBucket::new(10, 1, S(1)).is_ok());
        assert_eq!(
            TokenBucket::new(0, 1, S(1)),
            Err(invalid(
                "capacity must be an integer between 1 and 9223372036854775807"
            ))
        );
        assert!(TokenBucket::new(MAX_INT + 1, 1, S(1)).is_err());
        assert_eq!(
            TokenBucket::new(10, 0, S(1)),
            Err(invalid(
                "rate must be a positive number (such as 0.5, 100 or 1e4)"
            ))
        );
        assert_eq!(
            TokenBucket::new(10, 1, Duration::ZERO),
            Err(invalid("PERIOD must be a positive number of seconds"))
        );
        let r = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(
            TokenBucket::new(10, r("2e9"), S(1)),
            Err(invalid(
                "rate must be at most one token per nanosecond of PERIOD"
            ))
        );
        assert!(TokenBucket::new(10, r("1e9"), S(1)).is_ok());
        assert_eq!(
            TokenBucket::new(10, r("1e-20"), S(1)),
            Err(invalid("capacity / rate must refill within 100 years"))
        );
        assert_eq!(
            TokenBucket::new(MAX_INT, 1, S(1)),
            Err(invalid("capacity / rate must refill within 100 years"))
        );
        // Numbers the module reads (and the client sends) as they are.
        assert!(TokenBucket::new(10, r("1e-5"), S(1)).is_ok());
        assert_eq!(
            TokenBucket::new(10, r("1e20"), S(1)),
            Err(invalid(
                "rate must be at most one token per nanosecond of PERIOD"
            ))
        );
        let b = TokenBucket::new(3, 3, S(1)).unwrap();
        assert_eq!(b.refill_interval(), Duration::from_nanos(333_333_334));
    }

    #[test]
    fn sliding_window_needs_whole_milliseconds() {
        assert!(SlidingWindow::new(10, MS(250)).is_ok());
        let window = invalid(
            "window must be a positive number of seconds with at most 3 decimals, at most 10 years",
        );
        assert_eq!(
            SlidingWindow::new(10, Duration::from_micros(500)),
            Err(window.clone())
        );
        assert_eq!(SlidingWindow::new(10, Duration::ZERO), Err(window.clone()));
        assert!(SlidingWindow::new(0, S(1)).is_err());
        assert!(SlidingWindow::new(1, S(10 * YEAR)).is_ok());
        assert_eq!(SlidingWindow::new(1, S(10 * YEAR) + MS(1)), Err(window));
    }

    #[test]
    fn fixed_window_time_zones() {
        let day = FixedWindow::calendar(500, CalendarUnit::Day).unwrap();
        let ny = day.clone().in_time_zone("America/New_York").unwrap();
        assert_eq!(
            ny.span(),
            &FixedSpan::Calendar {
                unit: CalendarUnit::Day,
                time_zone: Some("America/New_York".into())
            }
        );
        assert!(day.clone().in_time_zone("Etc/GMT+5").is_ok());
        for bad in [
            "",
            "New York",
            "../etc/passwd",
            "/UTC",
            "Zone\"x",
            "Mars/Olympus",
        ] {
            assert_eq!(
                day.clone().in_time_zone(bad),
                Err(invalid(
                    "TZ must be an IANA time zone name such as America/New_York"
                )),
                "{bad:?}"
            );
        }
        let secs = FixedWindow::new(10, S(60)).unwrap();
        assert_eq!(
            secs.in_time_zone("UTC"),
            Err(invalid(
                "TZ needs a calendar window: MINUTE, HOUR, DAY, WEEK or MONTH"
            ))
        );
        assert!(FixedWindow::new(10, Duration::from_micros(1500)).is_err());
        assert!(FixedWindow::new(1, S(10 * YEAR)).is_ok());
        assert!(FixedWindow::new(1, S(10 * YEAR) + MS(1)).is_err());
        assert_eq!(
            FixedWindow::calendar(1, CalendarUnit::Month)
                .unwrap()
                .nominal_length(),
            S(31 * 86_400)
        );
    }

    #[test]
    fn throttle_is_whole_seconds() {
        let t = Throttle::new(15, 30, S(60)).unwrap();
        assert_eq!(t.limit(), 16);
        assert!(Throttle::new(0, 1, S(1)).is_ok());
        assert!(Throttle::new(15, 0, S(60)).is_err());
        assert!(Throttle::new(15, 30, MS(1500)).is_err());
        assert!(Throttle::new(15, 30, Duration::ZERO).is_err());
        assert!(Throttle::new(MAX_INT, 30, S(1)).is_err());
        assert!(Throttle::new(100 * YEAR - 1, 1, S(1)).is_ok());
        assert!(Throttle::new(100 * YEAR, 1, S(1)).is_err());
        // Below one nanosecond per unit.
        assert!(Throttle::new(0, 2_000_000_000, S(1)).is_err());
    }

    #[test]
    fn policy_windows() {
        let b: Policy = TokenBucket::new(10, 10, S(60)).unwrap().into();
        assert_eq!(b.window(), S(60));
        assert_eq!(b.unit_interval(), S(6));
        let w: Policy = SlidingWindow::new(3, S(1)).unwrap().into();
        assert_eq!(w.unit_interval(), Duration::from_nanos(333_333_334));
        let g: Policy = Gcra::new(5, "0.5".parse::<Decimal>().unwrap(), S(1))
            .unwrap()
            .into();
        assert_eq!((g.limit(), g.window()), (5, S(10)));
    }

    #[test]
    fn limit_sets_check_names() {
        let p = SlidingWindow::new(1, S(1)).unwrap();
        assert!(Limits::single("burst", p).is_ok());
        assert_eq!(Limits::builder().build(), Err(PolicyError::NoLimits));
        for bad in ["", "a b", "{x}", "\"q\"", "é", &"x".repeat(65)] {
            assert!(Limits::single(bad, p).is_err(), "{bad:?}");
        }
        assert_eq!(
            Limits::builder().limit("a", p).limit("a", p).build(),
            Err(PolicyError::DuplicateName { name: "a".into() })
        );
    }
}
