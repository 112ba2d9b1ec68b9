//! RL.ALL: several limits, one atomic decision.
//!
//! Every limit is evaluated against its own key; only if all of them allow
//! do all of them consume. Their effects are propagated one after the
//! other inside this one command, which Redis wraps in MULTI/EXEC for
//! replicas and the AOF: all keys change together or none does.

use std::ffi::c_int;

use super::bucket::{bucket, GCRA_ERRORS, TOKENBUCKET_ERRORS};
use super::fixed::{calendar, time_zone, window_arg};
use super::limit::{apply, evaluate, event, Flags, Spec};
use super::sliding::{window, window_span_us};
use super::{is, Args};
use crate::algo::all::combine;
use crate::api::{bytes, rm, Ctx, Key, RawString};
use crate::error::{
    CmdError, CmdResult, ALGORITHM, ALL_DISTINCT, BURST, CAPACITY, COST_OPTION, GCRA_PERIOD,
    INTERNAL, LIMIT, PERIOD, RATE, SYNTAX, WINDOW,
};
use crate::num::Decimal;
use crate::stats::{self, Cmd};

/// One `LIMIT key <algorithm> ...` clause.
struct Clause {
    key: RawString,
    spec: Spec,
    cost: Option<u64>,
}

/// RL.ALL [COST n] [DRYRUN] [REFUND] LIMIT key spec [COST n] [LIMIT key spec [COST n]] ...
pub fn all(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    if ctx.is_keys_position_request() {
        // Cluster routing and COMMAND GETKEYS: report every clause's key.
        for pos in key_positions(argv) {
            rm!(RedisModule_KeyAtPos(ctx.raw(), pos as c_int) else ());
        }
        return Ok(());
    }
    let mut args = Args::new(argv, 5)?;
    let mut cost = None;
    let mut flags = Flags::default();
    while !args.done() {
        let opt = args.peek_bytes();
        if is(opt, b"LIMIT") {
            break;
        }
        args.next_raw()?;
        let known = args.option(opt, b"COST", &mut cost, |a| a.next_int(0, COST_OPTION))?
            || flags.read(opt);
        if !known {
            return Err(SYNTAX);
        }
    }
    let mut clauses: Vec<Clause> = Vec::new();
    while !args.done() {
        clauses.push(clause(&mut args, &mut flags)?);
    }
    if clauses.is_empty() {
        return Err(SYNTAX);
    }
    for (i, c) in clauses.iter().enumerate() {
        let name = bytes(c.key);
        if clauses.iter().take(i).any(|o| bytes(o.key) == name) {
            return Err(ALL_DISTINCT);
        }
    }

    let now = crate::time::now();
    let mut keys: Vec<Key> = Vec::with_capacity(clauses.len());
    for c in &clauses {
        keys.push(Key::open(ctx, c.key).ok_or(INTERNAL)?);
    }
    let mut evaluated = Vec::with_capacity(clauses.len());
    for (c, key) in clauses.iter().zip(keys.iter_mut()) {
        let units = c.cost.or(cost).unwrap_or(1);
        evaluated.push(evaluate(key, &c.spec, now, units, flags.mode())?);
    }
    let (index, decision, effects) = combine(evaluated).ok_or(INTERNAL)?;
    if !flags.dry_run {
        // Empty unless every limit allowed.
        for ((c, key), effect) in clauses.iter().zip(keys.iter_mut()).zip(&effects) {
            apply(ctx, key, c.key, effect, event(Cmd::All))?;
        }
    }
    drop(keys);
    stats::decided(Cmd::All, decision.allowed, flags.dry_run, flags.refund);
    let f = decision.reply_fields();
    let position = i64::try_from(index + 1).unwrap_or(i64::MAX);
    ctx.reply_ints(&[f[0], f[1], f[2], f[3], f[4], position]);
    Ok(())
}

/// Parses `LIMIT key <algorithm> args... [options]`; the command's
/// DRYRUN and REFUND flags may stand among the options too.
fn clause(args: &mut Args, flags: &mut Flags) -> Result<Clause, CmdError> {
    if !is(args.next_bytes()?, b"LIMIT") {
        return Err(SYNTAX);
    }
    let key = args.next_raw()?;
    let algorithm = args.next_bytes().map_err(|_| ALGORITHM)?;
    let mut cost = None;
    let mut period = None;
    let mut tz = None;
    enum Kind {
        TokenBucket(u64, Decimal),
        Sliding(u64, u64),
        Gcra(u64, Decimal, Decimal),
        Fixed(u64, super::fixed::WindowArg),
    }
    let kind = if is(algorithm, b"TOKENBUCKET") {
        Kind::TokenBucket(args.next_int(1, CAPACITY)?, args.next_positive(RATE)?)
    } else if is(algorithm, b"SLIDING") {
        Kind::Sliding(
            args.next_int(1, LIMIT)?,
            window_span_us(&args.next_positive(WINDOW)?)?,
        )
    } else if is(algorithm, b"GCRA") {
        Kind::Gcra(
            args.next_int(1, BURST)?,
            args.next_positive(RATE)?,
            args.next_positive(GCRA_PERIOD)?,
        )
    } else if is(algorithm, b"FIXED") {
        Kind::Fixed(args.next_int(1, LIMIT)?, window_arg(args.next_bytes()?)?)
    } else {
        return Err(ALGORITHM);
    };
    while !args.done() && !is(args.peek_bytes(), b"LIMIT") {
        let opt = args.next_bytes()?;
        let bucket_kind = matches!(kind, Kind::TokenBucket(..));
        let fixed_kind = matches!(kind, Kind::Fixed(..));
        // DRYRUN and REFUND are the command's, wherever they stand.
        let known = args.option(opt, b"COST", &mut cost, |a| a.next_int(0, COST_OPTION))?
            || (bucket_kind
                && args.option(opt, b"PERIOD", &mut period, |a| a.next_positive(PERIOD))?)
            || (fixed_kind && args.option(opt, b"TZ", &mut tz, |a| time_zone(a.next_bytes()?))?)
            || flags.read(opt);
        if !known {
            return Err(SYNTAX);
        }
    }
    let spec = match kind {
        Kind::TokenBucket(capacity, rate) => {
            let period = period.unwrap_or(Decimal::from_int(1));
            Spec::Bucket(bucket(capacity, &rate, &period, &TOKENBUCKET_ERRORS)?)
        }
        Kind::Sliding(limit, span_us) => window(limit, span_us),
        Kind::Gcra(burst, rate, period) => {
            Spec::Bucket(bucket(burst, &rate, &period, &GCRA_ERRORS)?)
        }
        Kind::Fixed(limit, w) => Spec::Fixed {
            limit,
            calendar: calendar(w, tz)?,
        },
    };
    Ok(Clause { key, spec, cost })
}

/// Where the keys are, for the keys-position API: the argument after each
/// LIMIT that starts a clause. Clauses are skipped by their shape (an
/// algorithm's positional arguments, then option/value pairs), so a key or
/// value that happens to read "LIMIT" is not mistaken for one.
fn key_positions(argv: &[RawString]) -> Vec<usize> {
    let word = |i: usize| argv.get(i).map(|a| bytes(*a)).unwrap_or(&[]);
    let mut out = Vec::new();
    let mut i = 1;
    // Top-level options: COST takes a value, flags do not.
    while i < argv.len() && !is(word(i), b"LIMIT") {
        i += if is(word(i), b"COST") { 2 } else { 1 };
    }
    while i + 1 < argv.len() {
        if !is(word(i), b"LIMIT") {
            break;
        }
        out.push(i + 1);
        let positional = match word(i + 2) {
            a if is(a, b"GCRA") => 3,
            a if is(a, b"TOKENBUCKET") || is(a, b"SLIDING") || is(a, b"FIXED") => 2,
            _ => break,
        };
        i += 3 + positional;
        while i < argv.len() && !is(word(i), b"LIMIT") {
            i += if is(word(i), b"DRYRUN") || is(word(i), b"REFUND") {
                1
            } else {
                2
            };
        }
    }
    out
}
