//! The grammar of every limit, written once.
//!
//! Each algorithm's [`Syntax`] lists its positional arguments and its
//! keyword options, with the error each one answers. From that one table
//! come: the module's command handlers ([`read_command`]), RL.ALL's
//! clauses and key positions ([`read_all`], [`all_key_positions`]), the
//! client's validation (it renders its policies as words and reads them
//! back here), `COMMAND DOCS`, and the argument generator of the storm test.
//!
//! The request options every limiter command takes (COST, DRYRUN, REFUND,
//! BLOCK) are [`REQUEST_OPTIONS`], read by [`RequestArgs::read`].
//!
//! Reading works on [`Words`], so the module reads its arguments in place
//! (no copy) and the client and tests read plain byte strings.

use jiff::tz::TimeZone;

use crate::algo::bucket::{Bucket, BucketError};
use crate::algo::calendar::{Calendar, Unit};
use crate::algo::lease::Concurrency;
use crate::algo::sliding::Window;
use crate::bounds::{
    MAX_BLOCK_MS, MAX_INT, MAX_LEASES_DEFAULT, MAX_LEASES_MAX, MAX_LEASE_NS, MAX_LIMITS_DEFAULT,
    MAX_LIMITS_MAX, MAX_SPAN_US, WINDOW_DECIMALS,
};
use crate::error::{self, CmdError};
use crate::limit::{Action, Spec};
use crate::names;
use crate::num::{parse_u64, Decimal, Scaled};
use crate::time::Nanos;

/// Arguments as byte strings, by position (0 is the command name).
pub trait Words<'a> {
    fn word(&self, i: usize) -> Option<&'a [u8]>;
    fn count(&self) -> usize;
}

impl<'a> Words<'a> for [&'a [u8]] {
    fn word(&self, i: usize) -> Option<&'a [u8]> {
        self.get(i).copied()
    }
    fn count(&self) -> usize {
        self.len()
    }
}

/// Reads words in order, as a handler reads its syntax line.
pub struct Cursor<'w, W: ?Sized> {
    words: &'w W,
    pos: usize,
}

impl<'a, 'w, W: Words<'a> + ?Sized> Cursor<'w, W> {
    /// A cursor at word `pos`.
    pub fn at(words: &'w W, pos: usize) -> Self {
        Cursor { words, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline(always)]
    pub fn done(&self) -> bool {
        self.pos >= self.words.count()
    }

    /// Steps back over the word just read.
    #[inline(always)]
    pub fn back(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    /// The next word without consuming it.
    pub fn peek(&self) -> Option<&'a [u8]> {
        self.words.word(self.pos)
    }

    /// The next word, or `err` at the end.
    #[inline(always)]
    pub fn next_or(&mut self, err: CmdError) -> Result<&'a [u8], CmdError> {
        let w = self.words.word(self.pos).ok_or(err)?;
        self.pos += 1;
        Ok(w)
    }

    /// The next word; the end is a syntax error.
    #[inline(always)]
    pub fn next_word(&mut self) -> Result<&'a [u8], CmdError> {
        self.next_or(error::SYNTAX)
    }
}

/// Case-insensitive keyword comparison.
#[inline]
pub fn is(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

// ---------------------------------------------------------------- values

/// What one argument holds, and so how it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// An integer in `min..=i64::MAX`.
    Int { min: u64 },
    /// A positive decimal (`0.5`, `100`, `1e4`).
    Positive,
    /// A window length: positive seconds, whole milliseconds, at most 10 years.
    Window,
    /// A window length, or a calendar unit (MINUTE .. MONTH).
    FixedWindow,
    /// An IANA time zone name.
    Zone,
    /// A wait in milliseconds, `0..=MAX_BLOCK_MS` (0: without limit).
    Timeout,
    /// A lease: positive seconds, whole nanoseconds, at most 10 years.
    Lease,
}

/// One argument: positional (no token) or a keyword option with one value.
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// As `COMMAND DOCS` names it.
    pub name: &'static str,
    /// The option's keyword; `None` for a positional argument.
    pub token: Option<&'static str>,
    pub kind: ArgKind,
    /// The error a bad value answers.
    pub error: CmdError,
}

const fn positional(name: &'static str, kind: ArgKind, error: CmdError) -> Param {
    Param {
        name,
        token: None,
        kind,
        error,
    }
}

const fn option(name: &'static str, token: &'static str, kind: ArgKind, error: CmdError) -> Param {
    Param {
        name,
        token: Some(token),
        kind,
        error,
    }
}

/// A window as typed for RL.FIXED: a length, or a calendar unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowArg {
    Millis(u64),
    Unit(Unit),
}

/// A value read by [`ArgKind`].
#[derive(Debug, Clone, Copy, Default)]
pub enum Value<'a> {
    /// Not given (an option left out).
    #[default]
    Absent,
    Int(u64),
    Decimal(Decimal),
    /// A window's length (whole milliseconds).
    Span(Nanos),
    Fixed(WindowArg),
    /// A zone's name, looked up when the limit is built.
    Zone(&'a [u8]),
}

/// A window length in microseconds, or `None`.
#[inline]
fn window_span_us(d: &Decimal) -> Option<u64> {
    match d.scaled_exact(WINDOW_DECIMALS) {
        Some(Scaled::Value(ms)) if (1..=MAX_SPAN_US / 1000).contains(&ms) => Some(ms * 1000),
        _ => None,
    }
}

/// An integer in `min..=i64::MAX`.
#[inline]
pub fn int(word: &[u8], min: u64) -> Option<u64> {
    parse_u64(word).filter(|v| *v >= min && *v <= MAX_INT)
}

impl ArgKind {
    /// The value `word` holds, if it is one of this kind.
    #[inline(always)]
    pub fn read(self, word: &[u8]) -> Option<Value<'_>> {
        let positive = || Decimal::parse(word).filter(|d| !d.is_zero());
        match self {
            ArgKind::Int { min } => int(word, min).map(Value::Int),
            ArgKind::Positive => positive().map(Value::Decimal),
            ArgKind::Window => positive()
                .and_then(|d| window_span_us(&d))
                .map(|us| Value::Span(Nanos::from_micros(us))),
            ArgKind::FixedWindow => match Unit::parse(word) {
                Some(u) => Some(Value::Fixed(WindowArg::Unit(u))),
                None => positive()
                    .and_then(|d| window_span_us(&d))
                    .map(|us| Value::Fixed(WindowArg::Millis(us / 1000))),
            },
            ArgKind::Zone => Some(Value::Zone(word)),
            // Out of line: kept small, the match folds away in each
            // command's specialized reading (its loop over params unrolls).
            ArgKind::Timeout => timeout(word),
            ArgKind::Lease => lease(word),
        }
    }
}

#[inline(never)]
fn timeout(word: &[u8]) -> Option<Value<'_>> {
    parse_u64(word)
        .filter(|ms| *ms <= MAX_BLOCK_MS)
        .map(Value::Int)
}

#[inline(never)]
fn lease(word: &[u8]) -> Option<Value<'_>> {
    let d = Decimal::parse(word).filter(|d| !d.is_zero())?;
    match d.scaled_exact(9) {
        Some(Scaled::Value(ns)) if (1..=MAX_LEASE_NS).contains(&ns) => Some(Value::Int(ns)),
        _ => None,
    }
}

/// The time zone named `word`.
fn zone(word: &[u8]) -> Option<TimeZone> {
    std::str::from_utf8(word)
        .ok()
        .and_then(|name| TimeZone::get(name).ok())
}

impl Param {
    #[inline(always)]
    fn read<'a>(&self, word: &'a [u8]) -> Result<Value<'a>, CmdError> {
        self.kind.read(word).ok_or(self.error)
    }
}

// ---------------------------------------------------------------- algorithms

/// The limiters a command, an RL.ALL clause or a policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    TokenBucket,
    Sliding,
    Gcra,
    Fixed,
    Concurrency,
}

/// One algorithm's grammar: what follows the key, the cost left out.
#[derive(Debug)]
pub struct Syntax {
    pub algorithm: Algorithm,
    /// Its name in RL.ALL clauses (and policies).
    pub keyword: &'static str,
    /// Its own command.
    pub command: &'static str,
    pub params: &'static [Param],
    /// Keyword options taking one value.
    pub options: &'static [Param],
    /// In its own command the cost is a positional argument after the
    /// params (RL.TOKENBUCKET); elsewhere it is the COST option.
    pub cost_positional: bool,
    /// Takes COST and REFUND (false for leases: one slot a request, given
    /// back by RL.RELEASE).
    pub costs: bool,
}

pub const TOKENBUCKET: Syntax = Syntax {
    algorithm: Algorithm::TokenBucket,
    keyword: "TOKENBUCKET",
    command: names::TOKENBUCKET.as_str(),
    params: &[
        positional("capacity", ArgKind::Int { min: 1 }, error::CAPACITY),
        positional("rate", ArgKind::Positive, error::RATE),
    ],
    options: &[option("period", "PERIOD", ArgKind::Positive, error::PERIOD)],
    cost_positional: true,
    costs: true,
};

/// A token bucket's PERIOD when it names none: one second.
pub const TOKENBUCKET_PERIOD: Decimal = Decimal::from_int(1);

pub const SLIDING: Syntax = Syntax {
    algorithm: Algorithm::Sliding,
    keyword: "SLIDING",
    command: names::SLIDING.as_str(),
    params: &[
        positional("limit", ArgKind::Int { min: 1 }, error::LIMIT),
        positional("window", ArgKind::Window, error::WINDOW),
    ],
    options: &[],
    cost_positional: false,
    costs: true,
};

pub const GCRA: Syntax = Syntax {
    algorithm: Algorithm::Gcra,
    keyword: "GCRA",
    command: names::GCRA.as_str(),
    params: &[
        positional("burst", ArgKind::Int { min: 1 }, error::BURST),
        positional("rate", ArgKind::Positive, error::RATE),
        positional("period", ArgKind::Positive, error::GCRA_PERIOD),
    ],
    options: &[],
    cost_positional: false,
    costs: true,
};

pub const FIXED: Syntax = Syntax {
    algorithm: Algorithm::Fixed,
    keyword: "FIXED",
    command: names::FIXED.as_str(),
    params: &[
        positional("limit", ArgKind::Int { min: 1 }, error::LIMIT),
        positional("window", ArgKind::FixedWindow, error::FIXED_WINDOW),
    ],
    options: &[option("zone", "TZ", ArgKind::Zone, error::TZ_UNKNOWN)],
    cost_positional: false,
    costs: true,
};

pub const CONCURRENCY: Syntax = Syntax {
    algorithm: Algorithm::Concurrency,
    keyword: "CONCURRENCY",
    command: names::ACQUIRE.as_str(),
    params: &[
        positional("limit", ArgKind::Int { min: 1 }, error::LIMIT),
        positional("lease_seconds", ArgKind::Lease, error::LEASE),
    ],
    options: &[],
    cost_positional: false,
    costs: false,
};

/// Every algorithm, in the order error messages list them.
pub const ALGORITHMS: &[&Syntax] = &[&TOKENBUCKET, &SLIDING, &GCRA, &FIXED, &CONCURRENCY];

/// The syntax whose keyword `word` is.
pub fn algorithm(word: &[u8]) -> Option<&'static Syntax> {
    ALGORITHMS.iter().copied().find(|s| is(word, s.keyword))
}

/// The most params or options any algorithm has.
pub(crate) const MAX_PARAMS: usize = 3;
pub(crate) const MAX_OPTIONS: usize = 1;

/// The values read for one limit, by position in its syntax.
#[derive(Debug, Default)]
pub struct Values<'a> {
    params: [Value<'a>; MAX_PARAMS],
    options: [Value<'a>; MAX_OPTIONS],
}

impl<'a> Values<'a> {
    #[inline]
    fn param(&self, i: usize) -> Option<&Value<'a>> {
        self.params.get(i)
    }
    #[inline]
    fn int(&self, i: usize) -> Result<u64, CmdError> {
        match self.param(i) {
            Some(Value::Int(v)) => Ok(*v),
            _ => Err(error::INTERNAL),
        }
    }
    #[inline]
    fn decimal(&self, i: usize) -> Result<Decimal, CmdError> {
        match self.param(i) {
            Some(Value::Decimal(v)) => Ok(*v),
            _ => Err(error::INTERNAL),
        }
    }
    #[inline]
    fn span(&self, i: usize) -> Result<Nanos, CmdError> {
        match self.param(i) {
            Some(Value::Span(v)) => Ok(*v),
            _ => Err(error::INTERNAL),
        }
    }
    #[inline]
    fn fixed(&self, i: usize) -> Result<WindowArg, CmdError> {
        match self.param(i) {
            Some(Value::Fixed(v)) => Ok(*v),
            _ => Err(error::INTERNAL),
        }
    }
    #[inline]
    fn option(&self, i: usize) -> Option<&Value<'a>> {
        self.options.get(i)
    }
}

/// Settings a spec takes from the server rather than from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Entries a sliding-window log keeps before it merges admissions.
    pub sliding_max_entries: u32,
    /// Limits one RL.ALL or RL.TAKEALL call may name.
    pub max_limits: u32,
    /// The largest CONCURRENCY limit (live leases a key may hold).
    pub max_leases: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sliding_max_entries: SLIDING_MAX_ENTRIES_DEFAULT,
            max_limits: MAX_LIMITS_DEFAULT,
            max_leases: MAX_LEASES_DEFAULT,
        }
    }
}

impl Settings {
    /// For what a server already holds or is sent (an RDB, an AOF, a
    /// master's stream, the module's arguments): the caps at their widest,
    /// so a definition accepted under an earlier configuration still
    /// loads; what was decided under it stays within the hard bounds.
    pub fn loading(self) -> Settings {
        Settings {
            max_limits: MAX_LIMITS_MAX,
            max_leases: MAX_LEASES_MAX,
            ..self
        }
    }
}

/// The module's default for `ratelimit.sliding-max-entries`.
pub const SLIDING_MAX_ENTRIES_DEFAULT: u32 = 100_000;

/// How a bucket's arguments turn into errors, per command.
struct BucketErrors {
    limit: CmdError,
    too_fast: CmdError,
    too_long: CmdError,
}

/// `limit` units, `rate` per `period` seconds: one unit every period / rate,
/// in whole nanoseconds rounded up (never faster than asked).
#[inline(always)]
fn bucket(
    limit: u64,
    rate: &Decimal,
    period: &Decimal,
    e: &BucketErrors,
) -> Result<Bucket, CmdError> {
    let interval = match period.ratio_ceil(9, rate) {
        Scaled::Value(ns) => Nanos::new(ns),
        Scaled::TooSmall => return Err(e.too_fast),
        Scaled::TooLarge => return Err(e.too_long),
    };
    Bucket::new(limit, interval).map_err(|err| match err {
        BucketError::ZeroLimit => e.limit,
        BucketError::ZeroInterval => e.too_fast,
        BucketError::TooLong => e.too_long,
    })
}

impl Syntax {
    /// Builds the spec from values read by this syntax.
    #[inline(always)]
    fn build(&self, v: &Values<'_>, settings: Settings) -> Result<Spec, CmdError> {
        match self.algorithm {
            Algorithm::TokenBucket => {
                let period = match v.option(0) {
                    Some(Value::Decimal(p)) => *p,
                    _ => TOKENBUCKET_PERIOD,
                };
                let errors = BucketErrors {
                    limit: error::CAPACITY,
                    too_fast: error::RATE_TOO_HIGH,
                    too_long: error::BUCKET_TOO_LONG,
                };
                bucket(v.int(0)?, &v.decimal(1)?, &period, &errors).map(Spec::Bucket)
            }
            Algorithm::Sliding => Ok(Spec::Window(Window {
                limit: v.int(0)?,
                span: v.span(1)?,
                max_entries: settings.sliding_max_entries,
            })),
            Algorithm::Gcra => {
                let errors = BucketErrors {
                    limit: error::BURST,
                    too_fast: error::GCRA_RATE_TOO_HIGH,
                    too_long: error::GCRA_TOO_LONG,
                };
                bucket(v.int(0)?, &v.decimal(1)?, &v.decimal(2)?, &errors).map(Spec::Bucket)
            }
            Algorithm::Concurrency => {
                let limit = v.int(0)?;
                if limit > u64::from(settings.max_leases.min(MAX_LEASES_MAX)) {
                    return Err(error::LEASE_LIMIT);
                }
                Ok(Spec::Concurrency(Concurrency {
                    limit,
                    lease: Nanos::new(v.int(1)?),
                }))
            }
            Algorithm::Fixed => {
                let zone = match v.option(0) {
                    Some(Value::Zone(name)) => Some(zone(name).ok_or(error::TZ_UNKNOWN)?),
                    _ => None,
                };
                let calendar = match (v.fixed(1)?, zone) {
                    (WindowArg::Millis(ms), None) => Calendar::Millis(ms),
                    (WindowArg::Millis(_), Some(_)) => return Err(error::TZ_NEEDS_UNIT),
                    (WindowArg::Unit(u), tz) => Calendar::Unit(u, tz),
                };
                Ok(Spec::Fixed {
                    limit: v.int(0)?,
                    calendar,
                })
            }
        }
    }

    /// Reads this algorithm's params at the cursor, then its options until
    /// the end or a word for which `stop` is true. A word that is none of
    /// its options goes to `other`, which reads it (and its value) and
    /// answers whether it knew it; unknown words are a syntax error. With
    /// `cost`, the cost is read as a positional argument after the params.
    #[inline(always)]
    pub fn read<'a, W: Words<'a> + ?Sized>(
        &self,
        c: &mut Cursor<'_, W>,
        settings: Settings,
        cost: Option<&mut Option<u64>>,
        stop: impl Fn(&[u8]) -> bool,
        mut other: impl FnMut(&[u8], &mut Cursor<'_, W>) -> Result<bool, CmdError>,
    ) -> Result<Spec, CmdError> {
        let mut v = Values::default();
        for (p, slot) in self.params.iter().zip(v.params.iter_mut()) {
            *slot = p.read(c.next_or(p.error)?)?;
        }
        if let Some(cost) = cost {
            *cost = Some(int(c.next_or(error::COST)?, 0).ok_or(error::COST)?);
        }
        while !c.done() {
            let word = c.next_word()?;
            if stop(word) {
                c.back();
                break;
            }
            let opt = self
                .options
                .iter()
                .zip(v.options.iter_mut())
                .find(|(p, slot)| {
                    p.token.is_some_and(|t| is(word, t)) && matches!(slot, Value::Absent)
                });
            if let Some((p, slot)) = opt {
                *slot = p.read(c.next_word()?)?;
            } else if !other(word, c)? {
                return Err(error::SYNTAX);
            }
        }
        self.build(&v, settings)
    }

    /// The fewest arguments its own command takes after its name.
    pub fn command_arity(&self) -> usize {
        1 + self.params.len() + usize::from(self.cost_positional)
    }
}

/// Reads one limit's definition, `<params> [options]` with no cost and no
/// request option (what a client renders, what a policy stores).
pub fn read_definition<'a, W: Words<'a> + ?Sized>(
    syntax: &Syntax,
    words: &W,
    settings: Settings,
) -> Result<Spec, CmdError> {
    let mut c = Cursor::at(words, 0);
    syntax.read(&mut c, settings, None, |_| false, |_, _| Ok(false))
}

// ---------------------------------------------------------------- arity

/// Does a call of `count` words (the command's name included) fit
/// `arity`, as `COMMAND INFO` shows it (negative: at least)?
pub const fn fits_arity(arity: i32, count: usize) -> bool {
    let n = arity.unsigned_abs() as usize;
    if arity < 0 {
        count >= n
    } else {
        count == n
    }
}

/// RL.TAKE's arity: the name, the key and the policy, then options. The
/// module's command table registers it and [`read_take`] checks it.
pub const TAKE_ARITY: i32 = -3;

/// RL.ALL's and RL.TAKEALL's arity: the shortest call is the first-key
/// form's `RL.TAKEALL key POLICY name`; the keyword form needs one word
/// more (`LIMIT`), which [`read_all`] checks.
pub const ALL_ARITY: i32 = -4;

/// CL.THROTTLE's arity: the name, the key and three numbers, then the
/// quantity, which may be left out (so at most one word more).
pub const THROTTLE_ARITY: i32 = -5;

// ---------------------------------------------------------------- CL.THROTTLE and GCRA

/// The two commands of redis-cell's grammar, `<command> key max_burst
/// count period ...`: the bucket holds max_burst + 1 and refills one every
/// period / count seconds. They differ in how the period, the rounding of
/// that interval and the cost are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// `CL.THROTTLE key max_burst count_per_period period [quantity]`
    /// (redis-cell): whole seconds, the interval truncated to nanoseconds,
    /// the cost positional.
    Throttle,
    /// `GCRA key max_burst tokens_per_period period [TOKENS count]` (the
    /// command announced for Redis 8.8): seconds of at least 1 with up to
    /// 6 decimals, the interval rounded to the nearest microsecond (at
    /// least 1), the cost the TOKENS option.
    Gcra,
}

/// The keyword of GCRA's cost.
pub const TOKENS: &str = "TOKENS";

/// `CL.THROTTLE key max_burst count_per_period period [quantity]`: the
/// bucket and the quantity.
pub fn read_throttle<'a, W: Words<'a> + ?Sized>(words: &W) -> Result<(Bucket, u64), CmdError> {
    read_cell(Cell::Throttle, words)
}

/// `GCRA key max_burst tokens_per_period period [TOKENS count]`: the bucket
/// and the count.
pub fn read_gcra<'a, W: Words<'a> + ?Sized>(words: &W) -> Result<(Bucket, u64), CmdError> {
    read_cell(Cell::Gcra, words)
}

/// Either command of redis-cell's grammar: the bucket and the cost.
pub fn read_cell<'a, W: Words<'a> + ?Sized>(
    cell: Cell,
    words: &W,
) -> Result<(Bucket, u64), CmdError> {
    let n = words.count();
    // The name, the key and three numbers, then the cost: CL.THROTTLE's
    // quantity (one word) or GCRA's `TOKENS count` (two).
    let most = THROTTLE_ARITY.unsigned_abs() as usize
        + match cell {
            Cell::Throttle => 1,
            Cell::Gcra => 2,
        };
    if !fits_arity(THROTTLE_ARITY, n) || n > most {
        return Err(CmdError::WrongArity);
    }
    let word = |i: usize| words.word(i).unwrap_or_default();
    let arg = |i: usize, min: u64, err: CmdError| int(word(i), min).ok_or(err);
    let max_burst = arg(2, 0, error::CELL_MAX_BURST)?;
    let (count, too_long) = match cell {
        Cell::Throttle => (arg(3, 1, error::CELL_COUNT)?, error::CELL_TOO_LONG),
        Cell::Gcra => (
            arg(3, 1, error::GCRA_TOKENS_PER_PERIOD)?,
            error::GCRA_CMD_TOO_LONG,
        ),
    };
    let interval = match cell {
        // redis-cell's emission interval: period / count, truncated to whole ns.
        Cell::Throttle => arg(4, 1, error::CELL_PERIOD)?
            .checked_mul(1_000_000_000)
            .map(|ns| ns / count)
            .ok_or(too_long)?,
        Cell::Gcra => {
            let period_us = match Decimal::parse(word(4)).and_then(|d| d.scaled_exact(6)) {
                Some(Scaled::Value(us)) if us >= 1_000_000 => us,
                Some(Scaled::TooLarge) => return Err(too_long),
                _ => return Err(error::GCRA_CMD_PERIOD),
            };
            // period / count to the nearest microsecond (halves up), at least 1.
            let (p, c) = (u128::from(period_us), u128::from(count));
            let us = ((2 * p + c) / (2 * c)).max(1);
            u64::try_from(us * 1000).map_err(|_| too_long)?
        }
    };
    let cost = match (cell, n) {
        (_, 5) => 1,
        (Cell::Throttle, _) => arg(5, 0, error::CELL_QUANTITY)?,
        (Cell::Gcra, 7) if is(word(5), TOKENS) => arg(6, 0, error::GCRA_TOKENS)?,
        (Cell::Gcra, _) => return Err(error::SYNTAX),
    };
    // The reply's limit, max_burst + 1, must fit a signed 64-bit integer.
    let limit = Some(max_burst + 1)
        .filter(|l| *l <= MAX_INT)
        .ok_or(error::CELL_MAX_BURST)?;
    let bucket = Bucket::new(limit, Nanos::new(interval)).map_err(|_| too_long)?;
    Ok((bucket, cost))
}

// ---------------------------------------------------------------- requests

/// A request option: a keyword, with a value or without.
#[derive(Debug, Clone, Copy)]
pub struct RequestOption {
    pub keyword: &'static str,
    /// The value, for options that take one.
    pub value: Option<Param>,
}

/// The keyword of the COST option (a request's, or an RL.ALL clause's).
pub const COST: &str = "COST";
/// The cost of a request that names none.
pub const DEFAULT_COST: u64 = 1;
/// The keyword of a request that answers as if and changes nothing.
pub const DRYRUN: &str = "DRYRUN";
/// The keyword of a request that gives its cost back.
pub const REFUND: &str = "REFUND";
/// The keyword of a request that waits in line (its value: milliseconds).
pub const BLOCK: &str = "BLOCK";

const COST_OPTION: RequestOption = RequestOption {
    keyword: COST,
    value: Some(option(
        "cost",
        COST,
        ArgKind::Int { min: 0 },
        error::COST_OPTION,
    )),
};
const DRYRUN_OPTION: RequestOption = RequestOption {
    keyword: DRYRUN,
    value: None,
};
const REFUND_OPTION: RequestOption = RequestOption {
    keyword: REFUND,
    value: None,
};
const BLOCK_OPTION: RequestOption = RequestOption {
    keyword: BLOCK,
    value: Some(option("timeout", BLOCK, ArgKind::Timeout, error::BLOCK)),
};

/// Every option a limiter request takes, in every command: COST, DRYRUN,
/// REFUND, and BLOCK (wait in line until allowed, at most this many ms).
pub const REQUEST_OPTIONS: &[RequestOption] =
    &[COST_OPTION, DRYRUN_OPTION, REFUND_OPTION, BLOCK_OPTION];

/// Does `word` name a request option that takes no value?
fn is_request_flag(word: &[u8]) -> bool {
    REQUEST_OPTIONS
        .iter()
        .any(|o| o.value.is_none() && is(word, o.keyword))
}

/// The options of one request: cost, DRYRUN, REFUND, BLOCK.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestArgs {
    pub cost: Option<u64>,
    pub dry_run: bool,
    pub refund: bool,
    /// Wait in line up to this many milliseconds (`Some(0)`: without limit).
    pub block: Option<u64>,
}

impl RequestArgs {
    /// Reads `word` (and its value) if it is a request option not yet
    /// given; `false` if it is not one. With `flags_only`, COST is not one
    /// (RL.ALL's clauses keep their own cost).
    pub fn read<'a, W: Words<'a> + ?Sized>(
        &mut self,
        word: &[u8],
        c: &mut Cursor<'_, W>,
        flags_only: bool,
    ) -> Result<bool, CmdError> {
        let value = |o: &RequestOption, c: &mut Cursor<'_, W>| match o.value {
            Some(p) => match p.read(c.next_word()?)? {
                Value::Int(v) => Ok(v),
                _ => Err(error::INTERNAL),
            },
            None => Err(error::INTERNAL),
        };
        if is(word, DRYRUN_OPTION.keyword) && !self.dry_run {
            self.dry_run = true;
        } else if is(word, REFUND_OPTION.keyword) && !self.refund {
            self.refund = true;
        } else if !flags_only && is(word, COST_OPTION.keyword) && self.cost.is_none() {
            self.cost = Some(value(&COST_OPTION, c)?);
        } else if is(word, BLOCK_OPTION.keyword) && self.block.is_none() {
            self.block = Some(value(&BLOCK_OPTION, c)?);
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Checks the options together: BLOCK takes units, so it cannot stand
    /// with DRYRUN or REFUND.
    pub fn check(&self) -> Result<(), CmdError> {
        if self.block.is_some() && (self.dry_run || self.refund) {
            return Err(error::BLOCK_MODE);
        }
        Ok(())
    }

    pub fn action(&self) -> Action {
        if self.refund {
            Action::Refund
        } else {
            Action::Take
        }
    }
}

/// The value of a COST option.
fn read_cost<'a, W: Words<'a> + ?Sized>(c: &mut Cursor<'_, W>) -> Result<u64, CmdError> {
    let word = c.next_word()?;
    int(word, 0).ok_or(error::COST_OPTION)
}

// ---------------------------------------------------------------- commands

/// `<command> key <params> [options] [request options]`: an algorithm's own
/// command. The key is word 1. The cost defaults to 1.
#[inline(always)]
pub fn read_command<'a, W: Words<'a> + ?Sized>(
    syntax: &Syntax,
    words: &W,
    settings: Settings,
) -> Result<(Spec, RequestArgs), CmdError> {
    if words.count() < syntax.command_arity() + 1 {
        return Err(CmdError::WrongArity);
    }
    let mut c = Cursor::at(words, 2);
    let mut req = RequestArgs::default();
    let mut positional_cost = None;
    let cost = syntax.cost_positional.then_some(&mut positional_cost);
    let spec = syntax.read(
        &mut c,
        settings,
        cost,
        |_| false,
        |w, c| {
            if !syntax.costs && (is(w, COST_OPTION.keyword) || is(w, REFUND_OPTION.keyword)) {
                return Err(error::CONCURRENCY_REFUND);
            }
            req.read(w, c, syntax.cost_positional)
        },
    )?;
    if positional_cost.is_some() {
        req.cost = positional_cost;
    }
    req.check()?;
    Ok((spec, req))
}

/// `RL.TAKE key policy [COST n] [DRYRUN] [REFUND] [BLOCK ms]`: the key is
/// word 1, the policy's name word 2 (the module resolves it, then checks
/// the request against its limit with [`check_request`]).
#[inline]
pub fn read_take<'a, W: Words<'a> + ?Sized>(words: &W) -> Result<RequestArgs, CmdError> {
    if !fits_arity(TAKE_ARITY, words.count()) {
        return Err(CmdError::WrongArity);
    }
    let mut c = Cursor::at(words, 3);
    let mut req = RequestArgs::default();
    while !c.done() {
        let w = c.next_word()?;
        if !req.read(w, &mut c, false)? {
            return Err(error::SYNTAX);
        }
    }
    req.check()?;
    Ok(req)
}

/// The request options a limit accepts: a CONCURRENCY limit takes no COST
/// and no REFUND (RL.ACQUIRE's own syntax says so as it reads them).
pub fn check_request(spec: &Spec, req: &RequestArgs) -> Result<(), CmdError> {
    if matches!(spec, Spec::Concurrency(_)) && (req.cost.is_some() || req.refund) {
        return Err(error::CONCURRENCY_REFUND);
    }
    Ok(())
}

/// What an RL.ALL clause limits by.
#[derive(Debug, Clone)]
pub enum ClauseLimit<P> {
    /// `<algorithm> args...`
    Inline(Spec),
    /// `POLICY name`: the policy the name resolved to.
    Policy(P),
}

impl<P> ClauseLimit<P> {
    /// The clause's limit: its own, or its policy's (`spec` reads it).
    pub fn spec(&self, spec: fn(&P) -> &Spec) -> &Spec {
        match self {
            ClauseLimit::Inline(s) => s,
            ClauseLimit::Policy(p) => spec(p),
        }
    }
}

/// One `LIMIT key <algorithm> ...` (or `LIMIT key POLICY name`) clause.
#[derive(Debug, Clone)]
pub struct Clause<P> {
    /// The key's word index.
    pub key: usize,
    pub limit: ClauseLimit<P>,
    pub cost: Option<u64>,
    /// `ESTIMATE n`: the clause reserves `n` units, settled later
    /// (RL.SETTLE) with the actual cost; the call's CONCURRENCY lease is the
    /// reservation. Instead of COST.
    pub estimate: Option<u64>,
}

/// The keyword of a clause's estimate (a reservation's cost, settled later).
pub const ESTIMATE: &str = "ESTIMATE";

/// RL.SETTLE's keyword before the reservation's handle (its lease id).
pub const SETTLE_LEASE: &str = "LEASE";

/// RL.SETTLE's keyword before the actual cost.
pub const SETTLE_ACTUAL: &str = "ACTUAL";

/// RL.SETTLE's arity: the name, the anchor, at least one key, then
/// `LEASE id ACTUAL n`.
pub const SETTLE_ARITY: i32 = -7;

/// `RL.SETTLE anchor key [key ...] LEASE lease_id ACTUAL n`: the handle and
/// the actual cost (the keys are words 1 to count - 5).
pub fn read_settle<'a, W: Words<'a> + ?Sized>(words: &W) -> Result<(u64, u64), CmdError> {
    let n = words.count();
    if !fits_arity(SETTLE_ARITY, n) {
        return Err(CmdError::WrongArity);
    }
    let word = |back: usize| n.checked_sub(back).and_then(|i| words.word(i));
    if !word(4).is_some_and(|w| is(w, SETTLE_LEASE))
        || !word(2).is_some_and(|w| is(w, SETTLE_ACTUAL))
    {
        return Err(error::SYNTAX);
    }
    let id = word(3).and_then(|w| int(w, 1)).ok_or(error::LEASE_ID)?;
    let actual = word(1).and_then(|w| int(w, 0)).ok_or(error::ACTUAL)?;
    Ok((id, actual))
}

/// The keyword of an RL.ALL clause that names a policy.
pub const POLICY_CLAUSE: &str = "POLICY";

/// RL.ALL's arguments: the clauses and the command's request options.
#[derive(Debug, Clone)]
pub struct AllArgs<P> {
    pub clauses: Vec<Clause<P>>,
    pub request: RequestArgs,
}

/// How RL.ALL and RL.TAKEALL find a named policy: `resolve` looks a name
/// up (its error is the command's), `spec` reads the policy's limit.
pub struct PolicyLookup<R, P> {
    pub resolve: R,
    pub spec: fn(&P) -> &Spec,
}

/// `RL.ALL key <algorithm> ... [LIMIT key <algorithm> ...]` (the first-key
/// form) or `RL.ALL [options] LIMIT key <algorithm> ... [LIMIT ...]` (the
/// keyword form; [`first_key_form`] tells them apart by the first word).
/// DRYRUN, REFUND and BLOCK are the command's wherever they stand; a COST
/// inside a clause is that clause's, one before the first LIMIT the
/// default of every clause. A clause may name a policy (`LIMIT key POLICY
/// name`), which `policies` resolves once every clause has been read; then
/// the limits are checked together ([`check_all`]).
pub fn read_all<'a, W, P, R>(
    words: &W,
    settings: Settings,
    policies: PolicyLookup<R, P>,
) -> Result<AllArgs<P>, CmdError>
where
    W: Words<'a> + ?Sized,
    R: FnMut(&'a [u8]) -> Result<P, CmdError>,
{
    read_clauses(words, settings, false, policies)
}

/// `RL.TAKEALL key POLICY name ... [LIMIT key POLICY name ...]` or
/// `RL.TAKEALL [options] LIMIT key POLICY name ... [LIMIT key POLICY name ...]`:
/// RL.ALL's grammar with named policies only (what an application account,
/// which may not choose its own limits, can send).
pub fn read_take_all<'a, W, P, R>(
    words: &W,
    settings: Settings,
    policies: PolicyLookup<R, P>,
) -> Result<AllArgs<P>, CmdError>
where
    W: Words<'a> + ?Sized,
    R: FnMut(&'a [u8]) -> Result<P, CmdError>,
{
    read_clauses(words, settings, true, policies)
}

fn read_clauses<'a, W, P, R>(
    words: &W,
    settings: Settings,
    policies_only: bool,
    mut policies: PolicyLookup<R, P>,
) -> Result<AllArgs<P>, CmdError>
where
    W: Words<'a> + ?Sized,
    R: FnMut(&'a [u8]) -> Result<P, CmdError>,
{
    let first_key = first_key_form(words);
    let shortest = ALL_ARITY.unsigned_abs() as usize + usize::from(!first_key);
    if words.count() < shortest {
        return Err(CmdError::WrongArity);
    }
    let max = usize::try_from(settings.max_limits.min(MAX_LIMITS_MAX)).unwrap_or(0);
    let mut c = Cursor::at(words, 1);
    let mut request = RequestArgs::default();
    while let Some(word) = c.peek().filter(|_| !first_key) {
        if is(word, LIMIT_CLAUSE) {
            break;
        }
        c.next_word()?;
        if !request.read(word, &mut c, false)? {
            return Err(error::SYNTAX);
        }
    }
    let mut clauses: Vec<Clause<usize>> = Vec::new();
    while !c.done() {
        // The first-key form's first clause has no LIMIT before its key.
        let opens = first_key && clauses.is_empty();
        if !opens && !is(c.next_word()?, LIMIT_CLAUSE) {
            return Err(error::SYNTAX);
        }
        if clauses.len() >= max {
            return Err(error::TOO_MANY_LIMITS);
        }
        let key = c.pos();
        c.next_word()?;
        let word = c.next_or(error::ALGORITHM)?;
        let mut cost = None;
        let mut estimate = None;
        let mut other = |w: &[u8], c: &mut Cursor<'_, W>| {
            if is(w, COST_OPTION.keyword) && cost.is_none() {
                cost = Some(read_cost(c)?);
                return Ok(true);
            }
            if is(w, ESTIMATE) && estimate.is_none() {
                let word = c.next_or(error::ESTIMATE)?;
                estimate = Some(int(word, 0).ok_or(error::ESTIMATE)?);
                return Ok(true);
            }
            request.read(w, c, true)
        };
        let limit = if is(word, POLICY_CLAUSE) {
            let name = c.pos();
            c.next_or(error::POLICY_NAME)?;
            while let Some(w) = c.peek() {
                if is(w, LIMIT_CLAUSE) {
                    break;
                }
                c.next_word()?;
                if !other(w, &mut c)? {
                    return Err(error::SYNTAX);
                }
            }
            ClauseLimit::Policy(name)
        } else if policies_only {
            return Err(error::POLICIES_ONLY);
        } else {
            let syntax = algorithm(word).ok_or(error::ALGORITHM)?;
            let spec = syntax.read(&mut c, settings, None, |w| is(w, LIMIT_CLAUSE), &mut other)?;
            ClauseLimit::Inline(spec)
        };
        clauses.push(Clause {
            key,
            limit,
            cost,
            estimate,
        });
    }
    if clauses.is_empty() {
        return Err(error::SYNTAX);
    }
    request.check()?;
    let keys: Vec<&[u8]> = clauses
        .iter()
        .map(|c| words.word(c.key).unwrap_or(&[]))
        .collect();
    if !all_distinct(&keys) {
        return Err(error::ALL_DISTINCT);
    }
    // PolicyLookup once every clause reads: an unknown one is an error before
    // any limit is checked or any key read.
    let mut resolved = Vec::with_capacity(clauses.len());
    for c in clauses {
        let limit = match c.limit {
            ClauseLimit::Inline(spec) => ClauseLimit::Inline(spec),
            ClauseLimit::Policy(name) => {
                let name = words.word(name).ok_or(error::POLICY_NAME)?;
                ClauseLimit::Policy((policies.resolve)(name)?)
            }
        };
        resolved.push(Clause {
            key: c.key,
            limit,
            cost: c.cost,
            estimate: c.estimate,
        });
    }
    let together: Vec<(&Spec, Option<u64>)> = resolved
        .iter()
        .map(|c| (c.limit.spec(policies.spec), c.cost))
        .collect();
    check_all(&together, &request)?;
    let estimates: Vec<(&Spec, Option<u64>, Option<u64>)> = resolved
        .iter()
        .map(|c| (c.limit.spec(policies.spec), c.cost, c.estimate))
        .collect();
    check_estimates(&estimates, &request)?;
    Ok(AllArgs {
        clauses: resolved,
        request,
    })
}

/// No two keys equal, in time linear in their count (a hash set; pairs
/// compared directly when there are few).
fn all_distinct(keys: &[&[u8]]) -> bool {
    if keys.len() <= 8 {
        return keys
            .iter()
            .enumerate()
            .all(|(i, k)| !keys.iter().take(i).any(|b| b == k));
    }
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.iter().all(|k| seen.insert(*k))
}

/// The keyword that starts each clause of RL.ALL and RL.TAKEALL.
pub const LIMIT_CLAUSE: &str = "LIMIT";

/// Does this RL.ALL (or RL.TAKEALL) call take the first-key form, `RL.ALL
/// key <algorithm> ... [LIMIT key ...]`, whose first argument is its first
/// clause's key (so a client that routes by the first argument, or by the
/// key spec at index 1, finds the right node)? It does unless its first
/// argument is `LIMIT` or a request option (COST, DRYRUN, REFUND, BLOCK):
/// those start the keyword form, `RL.ALL [options] LIMIT key ...`, as they
/// always did. The first word alone decides, so no call reads two ways; a
/// first key spelled like one of those five keywords (in any case) takes
/// the keyword form.
pub fn first_key_form<'a, W: Words<'a> + ?Sized>(words: &W) -> bool {
    match words.word(1) {
        Some(w) => !is(w, LIMIT_CLAUSE) && !REQUEST_OPTIONS.iter().any(|o| is(w, o.keyword)),
        None => false,
    }
}

/// The rules RL.ALL's limits obey together, once every clause's limit is
/// known: at most one CONCURRENCY limit, which takes no COST and no REFUND.
fn check_all(limits: &[(&Spec, Option<u64>)], request: &RequestArgs) -> Result<(), CmdError> {
    let leases: Vec<&Option<u64>> = limits
        .iter()
        .filter(|(s, _)| matches!(s, Spec::Concurrency(_)))
        .map(|(_, cost)| cost)
        .collect();
    if leases.len() > 1 {
        return Err(error::ALL_ONE_CONCURRENCY);
    }
    if leases.iter().any(|c| c.is_some()) || (!leases.is_empty() && request.refund) {
        return Err(error::CONCURRENCY_REFUND);
    }
    Ok(())
}

/// The rules of a reservation (clauses with `ESTIMATE n`): exactly one
/// CONCURRENCY limit in the call (its lease is the reservation, its id the
/// handle), which takes no ESTIMATE itself; no clause with both COST and
/// ESTIMATE; no REFUND; no BLOCK (a reservation is made at once or not).
/// DRYRUN decides and reserves nothing.
fn check_estimates(
    limits: &[(&Spec, Option<u64>, Option<u64>)],
    request: &RequestArgs,
) -> Result<(), CmdError> {
    if !limits.iter().any(|(_, _, e)| e.is_some()) {
        return Ok(());
    }
    let is_lease = |s: &Spec| matches!(s, Spec::Concurrency(_));
    if limits.iter().any(|(s, _, e)| is_lease(s) && e.is_some()) {
        return Err(error::ESTIMATE_CONCURRENCY);
    }
    if !limits.iter().any(|(s, _, _)| is_lease(s)) {
        return Err(error::ESTIMATE_NEEDS_LEASE);
    }
    if limits.iter().any(|(_, c, e)| c.is_some() && e.is_some()) {
        return Err(error::ESTIMATE_COST);
    }
    if request.refund {
        return Err(error::ESTIMATE_REFUND);
    }
    if request.block.is_some() {
        return Err(error::ESTIMATE_BLOCK);
    }
    Ok(())
}

/// Where RL.ALL's keys are (word 1 in the first-key form, and the word
/// after each LIMIT that starts a clause), for Cluster routing and `COMMAND GETKEYS`. Clauses are skipped
/// by their shape (an algorithm's positional arguments, then options with
/// one value or request flags without), so a key or value that happens to
/// read "LIMIT" is not mistaken for one.
pub fn all_key_positions<'a, W: Words<'a> + ?Sized>(words: &W) -> Vec<usize> {
    let word = |i: usize| words.word(i).unwrap_or(&[]);
    let n = words.count();
    let mut out = Vec::new();
    // In the first-key form, the first clause reads as if a LIMIT stood
    // at word 0; in the keyword form, top-level options come first (flags
    // alone, the others with a value).
    let first_key = first_key_form(words);
    let mut i = if first_key { 0 } else { 1 };
    while !first_key && i < n && !is(word(i), LIMIT_CLAUSE) {
        i += if is_request_flag(word(i)) { 1 } else { 2 };
    }
    // One past the widest cap: the command refuses such a call before it
    // reads a key, so the keys after it need no routing or ACL check.
    let most = usize::try_from(MAX_LIMITS_MAX)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    while i + 1 < n && out.len() < most {
        if !(is(word(i), LIMIT_CLAUSE) || (first_key && i == 0)) {
            break;
        }
        out.push(i + 1);
        let params = if is(word(i + 2), POLICY_CLAUSE) {
            1
        } else if let Some(syntax) = algorithm(word(i + 2)) {
            syntax.params.len()
        } else {
            break;
        };
        i += 3 + params;
        while i < n && !is(word(i), LIMIT_CLAUSE) {
            i += if is_request_flag(word(i)) { 1 } else { 2 };
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<&[u8]> {
        s.split(' ').map(str::as_bytes).collect()
    }

    /// Test policies: `p` and `q` are sliding windows, `c` a concurrency
    /// limit; any other name is unknown.
    fn policies<'a>() -> PolicyLookup<impl FnMut(&'a [u8]) -> Result<Spec, CmdError>, Spec> {
        PolicyLookup {
            resolve: |name: &'a [u8]| match name {
                b"p" | b"q" => Ok(Spec::Window(Window {
                    limit: 1,
                    span: Nanos::from_micros(1_000_000),
                    max_entries: 10,
                })),
                b"c" => Ok(Spec::Concurrency(Concurrency {
                    limit: 3,
                    lease: Nanos::from_secs(30),
                })),
                _ => Err(error::POLICY_NAME),
            },
            spec: |s| s,
        }
    }

    fn command(s: &str) -> Result<(Spec, RequestArgs), CmdError> {
        let w = words(s);
        let syntax = ALGORITHMS
            .iter()
            .find(|x| is(w[0], x.command))
            .expect("a command");
        read_command(syntax, &w[..], Settings::default())
    }

    #[test]
    fn commands_read_params_options_and_request_options() {
        let (spec, req) = command("RL.TOKENBUCKET k 10 1 3 PERIOD 60 DRYRUN").unwrap();
        assert!(
            matches!(spec, Spec::Bucket(b) if b.limit() == 10 && b.interval() == Nanos::from_secs(60))
        );
        assert_eq!(
            req,
            RequestArgs {
                cost: Some(3),
                dry_run: true,
                refund: false,
                block: None
            }
        );
        let (spec, req) = command("RL.SLIDING k 5 0.25 COST 2 REFUND").unwrap();
        assert!(
            matches!(spec, Spec::Window(w) if w.limit == 5 && w.span == Nanos::from_millis(250))
        );
        assert_eq!(
            req,
            RequestArgs {
                cost: Some(2),
                dry_run: false,
                refund: true,
                block: None
            }
        );
        let (spec, _) = command("RL.FIXED k 500 day tz America/New_York").unwrap();
        assert!(matches!(
            spec,
            Spec::Fixed {
                limit: 500,
                calendar: Calendar::Unit(Unit::Day, Some(_))
            }
        ));
        assert_eq!(
            command("RL.TOKENBUCKET k 10 1 3 COST 2").unwrap_err(),
            error::SYNTAX
        );
        assert_eq!(
            command("RL.SLIDING k 5 1 COST 1 COST 1").unwrap_err(),
            error::SYNTAX
        );
        assert_eq!(command("RL.SLIDING k 5").unwrap_err(), CmdError::WrongArity);
        assert_eq!(command("RL.SLIDING k 5 0.0005").unwrap_err(), error::WINDOW);
        assert_eq!(
            command("RL.FIXED k 5 60 TZ UTC").unwrap_err(),
            error::TZ_NEEDS_UNIT
        );
        assert_eq!(
            command("RL.GCRA k 1 2e9 1").unwrap_err(),
            error::GCRA_RATE_TOO_HIGH
        );
        assert_eq!(command("RL.TOKENBUCKET k 10 1 x").unwrap_err(), error::COST);
        assert_eq!(command("RL.SLIDING k 5 1 COST").unwrap_err(), error::SYNTAX);
    }

    #[test]
    fn block_takes_a_bounded_timeout_and_only_when_taking() {
        let (_, req) = command("RL.SLIDING k 5 1 BLOCK 0").unwrap();
        assert_eq!(req.block, Some(0));
        let (_, req) = command("RL.TOKENBUCKET k 1 1 2 block 2678400000").unwrap();
        assert_eq!((req.block, req.cost), (Some(2_678_400_000), Some(2)));
        for bad in ["-1", "1.5", "x", "2678400001"] {
            assert_eq!(
                command(&format!("RL.SLIDING k 5 1 BLOCK {bad}")).unwrap_err(),
                error::BLOCK
            );
        }
        assert_eq!(
            command("RL.SLIDING k 5 1 BLOCK 1 DRYRUN").unwrap_err(),
            error::BLOCK_MODE
        );
        assert_eq!(
            command("RL.SLIDING k 5 1 REFUND BLOCK 1").unwrap_err(),
            error::BLOCK_MODE
        );
        let w = words("RL.ALL LIMIT a SLIDING 1 1 BLOCK 50 LIMIT b GCRA 1 1 1");
        assert_eq!(
            read_all(&w[..], Settings::default(), policies())
                .unwrap()
                .request
                .block,
            Some(50)
        );
        assert_eq!(all_key_positions(&w[..]), [2, 9]);
    }

    #[test]
    fn all_reads_clauses_and_finds_keys() {
        let w = words("RL.ALL COST 2 LIMIT a SLIDING 10 60 DRYRUN LIMIT b FIXED 5 DAY TZ UTC COST 1 LIMIT c TOKENBUCKET 3 1 PERIOD 2");
        let all = read_all(&w[..], Settings::default(), policies()).unwrap();
        assert_eq!(
            all.clauses.iter().map(|c| c.key).collect::<Vec<_>>(),
            [4, 10, 19]
        );
        assert_eq!(
            all.clauses.iter().map(|c| c.cost).collect::<Vec<_>>(),
            [None, Some(1), None]
        );
        assert_eq!(
            all.request,
            RequestArgs {
                cost: Some(2),
                dry_run: true,
                refund: false,
                block: None
            }
        );
        assert_eq!(all_key_positions(&w[..]), [4, 10, 19]);
        // A key that reads LIMIT is still a key.
        let w = words("RL.ALL LIMIT LIMIT GCRA 1 1 1 LIMIT x SLIDING 1 1");
        assert_eq!(all_key_positions(&w[..]), [2, 8]);
        assert_eq!(
            read_all(&w[..], Settings::default(), policies())
                .unwrap()
                .clauses
                .len(),
            2
        );
        let w = words("RL.ALL LIMIT a SLIDING 1 1 LIMIT a GCRA 1 1 1");
        assert_eq!(
            read_all(&w[..], Settings::default(), policies()).unwrap_err(),
            error::ALL_DISTINCT
        );
        let w = words("RL.ALL LIMIT a LEAKY 1 1 1 1");
        assert_eq!(
            read_all(&w[..], Settings::default(), policies()).unwrap_err(),
            error::ALGORITHM
        );
    }

    #[test]
    fn the_first_key_form_starts_with_its_first_clauses_key() {
        let all = |s: &str| read_all(&words(s)[..], Settings::default(), policies());
        let w = words("RL.ALL a SLIDING 10 60 COST 2 DRYRUN LIMIT b FIXED 5 DAY LIMIT c POLICY p");
        let a = read_all(&w[..], Settings::default(), policies()).unwrap();
        assert_eq!(
            a.clauses.iter().map(|c| c.key).collect::<Vec<_>>(),
            [1, 9, 14]
        );
        assert_eq!(
            a.clauses.iter().map(|c| c.cost).collect::<Vec<_>>(),
            [Some(2), None, None]
        );
        assert!(a.request.dry_run && a.request.cost.is_none());
        assert_eq!(all_key_positions(&w[..]), [1, 9, 14]);
        // The shortest call is one word shorter than the keyword form's.
        let w = words("RL.ALL a POLICY p");
        assert_eq!(all_key_positions(&w[..]), [1]);
        assert_eq!(
            read_take_all(&w[..], Settings::default(), policies())
                .unwrap()
                .clauses
                .len(),
            1
        );
        assert_eq!(all("RL.ALL a POLICY").unwrap_err(), CmdError::WrongArity);
        assert_eq!(
            all("RL.ALL LIMIT a POLICY").unwrap_err(),
            CmdError::WrongArity
        );
        // The first word decides: LIMIT or a request option starts the
        // keyword form, in any case; any other word is the first key, even
        // one spelled like an algorithm or POLICY.
        for (s, keys) in [
            ("RL.ALL LIMIT SLIDING SLIDING 1 1", vec![2]),
            ("RL.ALL limit a SLIDING 1 1", vec![2]),
            ("RL.ALL Dryrun LIMIT a SLIDING 1 1", vec![3]),
            ("RL.ALL COST 2 LIMIT a SLIDING 1 1", vec![4]),
            ("RL.ALL block 5 LIMIT a SLIDING 1 1", vec![4]),
            (
                "RL.ALL SLIDING SLIDING 1 1 LIMIT LIMIT GCRA 1 1 1",
                vec![1, 6],
            ),
            ("RL.ALL POLICY POLICY p LIMIT x POLICY q", vec![1, 5]),
        ] {
            let w = words(s);
            assert_eq!(all_key_positions(&w[..]), keys, "{s}");
            let a = read_all(&w[..], Settings::default(), policies()).unwrap();
            assert_eq!(
                a.clauses.iter().map(|c| c.key).collect::<Vec<_>>(),
                keys,
                "{s}"
            );
        }
        // A first key named LIMIT needs the keyword form (or a later clause).
        assert_eq!(
            all("RL.ALL LIMIT SLIDING 1 1").unwrap_err(),
            error::ALGORITHM
        );
        assert_eq!(all("RL.ALL a SLIDING 1 1 a").unwrap_err(), error::SYNTAX);
        assert_eq!(all("RL.ALL a LEAKY 1 1").unwrap_err(), error::ALGORITHM);
        assert_eq!(
            all("RL.ALL a SLIDING 1 1 LIMIT a GCRA 1 1 1").unwrap_err(),
            error::ALL_DISTINCT
        );
        let w = words("RL.TAKEALL a SLIDING 1 1");
        assert_eq!(
            read_take_all(&w[..], Settings::default(), policies()).unwrap_err(),
            error::POLICIES_ONLY
        );
    }

    #[test]
    fn clauses_are_capped_and_checked_distinct_in_linear_time() {
        let many = |n: usize, key: &dyn Fn(usize) -> String| {
            let mut s = "RL.ALL".to_string();
            for i in 0..n {
                s.push_str(&format!(" LIMIT {} GCRA 1 1 1", key(i)));
            }
            s
        };
        let settings = Settings::default();
        let cap = settings.max_limits as usize;
        let at_cap = many(cap, &|i| format!("k{i}"));
        assert_eq!(
            read_all(&words(&at_cap)[..], settings, policies())
                .unwrap()
                .clauses
                .len(),
            cap
        );
        let over = many(cap + 1, &|i| format!("k{i}"));
        assert_eq!(
            read_all(&words(&over)[..], settings, policies()).unwrap_err(),
            error::TOO_MANY_LIMITS
        );
        // The widest cap, with a repeated key last: found (a hash set).
        let wide = Settings {
            max_limits: MAX_LIMITS_MAX,
            ..settings
        };
        let n = MAX_LIMITS_MAX as usize;
        let dup = many(n, &|i| {
            if i + 1 == n {
                "k0".into()
            } else {
                format!("k{i}")
            }
        });
        assert_eq!(
            read_all(&words(&dup)[..], wide, policies()).unwrap_err(),
            error::ALL_DISTINCT
        );
        // Key positions stop one past the widest cap.
        let flood = many(n + 50, &|i| format!("k{i}"));
        assert_eq!(all_key_positions(&words(&flood)[..]).len(), n + 1);
    }

    #[test]
    fn take_all_takes_policy_clauses_only() {
        let w = words("RL.TAKEALL LIMIT a POLICY p COST 2 LIMIT b POLICY q DRYRUN");
        let all = read_take_all(&w[..], Settings::default(), policies()).unwrap();
        assert_eq!(all.clauses.len(), 2);
        assert!(all.request.dry_run);
        assert_eq!(all_key_positions(&w[..]), [2, 8]);
        let w = words("RL.TAKEALL LIMIT a POLICY p LIMIT b SLIDING 1 1");
        assert_eq!(
            read_take_all(&w[..], Settings::default(), policies()).unwrap_err(),
            error::POLICIES_ONLY
        );
        let w = words("RL.ALL LIMIT a POLICY p");
        assert_eq!(
            read_all(&w[..], Settings::default(), policies())
                .unwrap()
                .clauses
                .len(),
            1
        );
    }

    /// A reservation: ESTIMATE clauses next to exactly one CONCURRENCY
    /// clause, whose lease is the reservation.
    #[test]
    fn estimate_clauses_need_one_concurrency_limit_and_no_refund_or_block() {
        let all = |s: &str| read_all(&words(s)[..], Settings::default(), policies());
        let w = words("RL.ALL LIMIT a CONCURRENCY 5 30 LIMIT b SLIDING 10 60 ESTIMATE 7 LIMIT c POLICY p ESTIMATE 0 LIMIT d FIXED 1 1");
        let r = read_all(&w[..], Settings::default(), policies()).unwrap();
        let est: Vec<Option<u64>> = r.clauses.iter().map(|c| c.estimate).collect();
        assert_eq!(est, [None, Some(7), Some(0), None]);
        assert_eq!(r.clauses[3].cost, None);
        assert_eq!(all_key_positions(&w[..]), [2, 7, 14, 20]);
        // With DRYRUN: read, the decision only.
        assert!(
            all("RL.ALL DRYRUN LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 1").is_ok()
        );
        for (call, e) in [
            (
                "RL.ALL LIMIT b SLIDING 1 1 ESTIMATE 1",
                error::ESTIMATE_NEEDS_LEASE,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 ESTIMATE 1",
                error::ESTIMATE_CONCURRENCY,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 1 COST 2",
                error::ESTIMATE_COST,
            ),
            (
                "RL.ALL REFUND LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 1",
                error::CONCURRENCY_REFUND,
            ),
            (
                "RL.ALL LIMIT a SLIDING 1 1 ESTIMATE 1 REFUND",
                error::ESTIMATE_NEEDS_LEASE,
            ),
            (
                "RL.ALL BLOCK 5 LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 1",
                error::ESTIMATE_BLOCK,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE -1",
                error::ESTIMATE,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 9223372036854775808",
                error::ESTIMATE,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE",
                error::ESTIMATE,
            ),
            (
                "RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 1 ESTIMATE 2",
                error::SYNTAX,
            ),
        ] {
            assert_eq!(all(call).unwrap_err(), e, "{call}");
        }
        let ok =
            all("RL.ALL LIMIT a CONCURRENCY 1 1 LIMIT b SLIDING 1 1 ESTIMATE 9223372036854775807");
        assert_eq!(ok.unwrap().clauses[1].estimate, Some(i64::MAX as u64));
        // RL.TAKEALL reads it too.
        let w = words("RL.TAKEALL LIMIT a POLICY c LIMIT b POLICY p ESTIMATE 3");
        let r = read_take_all(&w[..], Settings::default(), policies()).unwrap();
        assert_eq!(r.clauses[1].estimate, Some(3));
    }

    #[test]
    fn policies_resolve_once_every_clause_reads_then_all_limits_are_checked_together() {
        let all = |s: &str| read_all(&words(s)[..], Settings::default(), policies());
        // A policy's limit counts with the inline ones: one CONCURRENCY in all.
        assert_eq!(
            all("RL.ALL LIMIT a POLICY c LIMIT b CONCURRENCY 1 1").unwrap_err(),
            error::ALL_ONE_CONCURRENCY
        );
        assert_eq!(
            all("RL.ALL REFUND LIMIT a POLICY c").unwrap_err(),
            error::CONCURRENCY_REFUND
        );
        // A syntax error anywhere comes before an unknown policy, which
        // comes before the limits' check.
        assert_eq!(
            all("RL.ALL LIMIT a POLICY x LIMIT b SLIDING 0 1").unwrap_err(),
            error::LIMIT
        );
        assert_eq!(
            all("RL.ALL LIMIT a POLICY x LIMIT b POLICY c LIMIT d POLICY c").unwrap_err(),
            error::POLICY_NAME
        );
        let ok = all("RL.ALL LIMIT a POLICY c LIMIT b POLICY q").unwrap();
        assert!(matches!(
            ok.clauses[0].limit,
            ClauseLimit::Policy(Spec::Concurrency(_))
        ));
    }

    #[test]
    fn gcra_reads_redis_cells_grammar_with_a_decimal_period_and_tokens() {
        let gcra = |s: &str| read_gcra(&words(s)[..]);
        let interval = |s: &str| gcra(s).unwrap().0.interval();
        let (b, cost) = gcra("GCRA api:user:1 3 5 10").unwrap();
        assert_eq!((b.limit(), b.interval(), cost), (4, Nanos::from_secs(2), 1));
        // The same bucket as CL.THROTTLE's where the interval is whole µs.
        assert_eq!(
            read_throttle(&words("CL.THROTTLE api:user:1 3 5 10")[..]).unwrap(),
            (b, 1)
        );
        assert_eq!(gcra("GCRA k 3 5 10 tokens 2").unwrap().1, 2);
        assert_eq!(gcra("GCRA k 3 5 10 TOKENS 0").unwrap().1, 0);
        // period / tokens_per_period to the nearest µs, halves up, at least 1 µs.
        for (s, us) in [
            ("GCRA k 0 3 10", 3_333_333),
            ("GCRA k 0 3 2", 666_667),
            ("GCRA k 0 2 1.000001", 500_001),
            ("GCRA k 0 1 1.5", 1_500_000),
            ("GCRA k 0 1000001 1", 1),
            ("GCRA k 0 3000000 1", 1),
        ] {
            assert_eq!(interval(s), Nanos::from_micros(us), "{s}");
        }
        assert_eq!(
            gcra("GCRA k 0 1 1e1").unwrap().0.interval(),
            Nanos::from_secs(10)
        );
        for bad in ["0.5", "0.999999", "1.0000001", "-1", "x", "inf", "0"] {
            assert_eq!(
                gcra(&format!("GCRA k 1 1 {bad}")).unwrap_err(),
                error::GCRA_CMD_PERIOD,
                "{bad}"
            );
        }
        assert_eq!(
            gcra("GCRA k 1 0 1").unwrap_err(),
            error::GCRA_TOKENS_PER_PERIOD
        );
        assert_eq!(gcra("GCRA k -1 1 1").unwrap_err(), error::CELL_MAX_BURST);
        assert_eq!(gcra("GCRA k 1 1 1 TOKENS").unwrap_err(), error::SYNTAX);
        assert_eq!(gcra("GCRA k 1 1 1 COST 2").unwrap_err(), error::SYNTAX);
        assert_eq!(
            gcra("GCRA k 1 1 1 TOKENS -2").unwrap_err(),
            error::GCRA_TOKENS
        );
        assert_eq!(gcra("GCRA k 1 1").unwrap_err(), CmdError::WrongArity);
        assert_eq!(
            gcra("GCRA k 1 1 1 TOKENS 1 x").unwrap_err(),
            CmdError::WrongArity
        );
        assert_eq!(
            gcra("GCRA k 1 1 3153600000").unwrap_err(),
            error::GCRA_CMD_TOO_LONG
        );
        assert_eq!(
            read_throttle(&words("CL.THROTTLE k 1 1 1 1 1")[..]).unwrap_err(),
            CmdError::WrongArity
        );
    }

    #[test]
    fn a_concurrency_limit_is_within_the_lease_cap() {
        let capped = Settings {
            max_leases: 5,
            ..Settings::default()
        };
        let w = words("RL.ACQUIRE k 5 30");
        assert!(read_command(&CONCURRENCY, &w[..], capped).is_ok());
        let w = words("RL.ACQUIRE k 6 30");
        assert_eq!(
            read_command(&CONCURRENCY, &w[..], capped).unwrap_err(),
            error::LEASE_LIMIT
        );
        assert!(read_command(&CONCURRENCY, &w[..], capped.loading()).is_ok());
    }
}
