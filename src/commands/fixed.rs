//! RL.FIXED: fixed windows aligned to the epoch or to the calendar, in UTC
//! or an IANA time zone.

use jiff::tz::TimeZone;

use super::limit::{self, Flags, Spec};
use super::Args;
use crate::algo::calendar::{Calendar, Unit};
use crate::api::{bytes, Ctx, RawString};
use crate::error::{
    CmdError, CmdResult, COST_OPTION, FIXED_WINDOW, LIMIT, SYNTAX, TZ_NEEDS_UNIT, TZ_UNKNOWN,
};
use crate::num::Decimal;
use crate::stats::Cmd;

use super::sliding::window_span_us;

/// A window as typed: a length, or a calendar unit.
#[derive(Debug, Clone, Copy)]
pub enum WindowArg {
    Millis(u64),
    Unit(Unit),
}

pub fn window_arg(arg: &[u8]) -> Result<WindowArg, CmdError> {
    if let Some(u) = Unit::parse(arg) {
        return Ok(WindowArg::Unit(u));
    }
    let d = Decimal::parse(arg)
        .filter(|d| !d.is_zero())
        .ok_or(FIXED_WINDOW)?;
    let us = window_span_us(&d).map_err(|_| FIXED_WINDOW)?;
    Ok(WindowArg::Millis(us / 1000))
}

pub fn time_zone(arg: &[u8]) -> Result<TimeZone, CmdError> {
    let name = std::str::from_utf8(arg).map_err(|_| TZ_UNKNOWN)?;
    TimeZone::get(name).map_err(|_| TZ_UNKNOWN)
}

/// The window and the optional zone, checked together.
pub fn calendar(window: WindowArg, tz: Option<TimeZone>) -> Result<Calendar, CmdError> {
    match (window, tz) {
        (WindowArg::Millis(ms), None) => Ok(Calendar::Millis(ms)),
        (WindowArg::Millis(_), Some(_)) => Err(TZ_NEEDS_UNIT),
        (WindowArg::Unit(u), tz) => Ok(Calendar::Unit(u, tz)),
    }
}

/// RL.FIXED key limit window [COST n] [TZ zone] [DRYRUN] [REFUND]
pub fn fixed(ctx: Ctx, argv: &[RawString]) -> CmdResult {
    let mut args = Args::new(argv, 3)?;
    let key = args.next_raw()?;
    let limit = args.next_int(1, LIMIT)?;
    let window = window_arg(bytes(args.next_raw()?))?;
    let mut cost = None;
    let mut tz = None;
    let mut flags = Flags::default();
    while !args.done() {
        let opt = args.next_bytes()?;
        let known = args.option(opt, b"COST", &mut cost, |a| a.next_int(0, COST_OPTION))?
            || args.option(opt, b"TZ", &mut tz, |a| time_zone(a.next_bytes()?))?
            || flags.read(opt);
        if !known {
            return Err(SYNTAX);
        }
    }
    let spec = Spec::Fixed {
        limit,
        calendar: calendar(window, tz)?,
    };
    let decision = limit::run(ctx, key, &spec, cost.unwrap_or(1), flags, Cmd::Fixed)?;
    ctx.reply_decision(&decision);
    Ok(())
}
