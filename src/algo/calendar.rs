//! Where a fixed window starts and ends.
//!
//! A window is either a length in milliseconds, aligned to multiples of it
//! since the Unix epoch (UTC), or a calendar unit: a minute, hour, day, week
//! (starting Monday) or month, in UTC or in an IANA time zone. In a zone,
//! days, weeks and months start at local midnight and follow daylight-saving
//! changes: a day is 23 or 25 hours long when the clocks change. Minutes and
//! hours start at local boundaries (which differ from UTC's in zones such as
//! Asia/Kolkata), using the offset in force at `now`.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Unit {
    /// The keyword as users type it (case-insensitively).
    pub fn parse(s: &[u8]) -> Option<Unit> {
        [
            (&b"MINUTE"[..], Unit::Minute),
            (b"HOUR", Unit::Hour),
            (b"DAY", Unit::Day),
            (b"WEEK", Unit::Week),
            (b"MONTH", Unit::Month),
        ]
        .into_iter()
        .find(|(k, _)| s.eq_ignore_ascii_case(k))
        .map(|(_, u)| u)
    }
}

/// The shape of a fixed window.
#[derive(Debug, Clone, PartialEq)]
pub enum Calendar {
    /// Multiples of this many milliseconds since the epoch.
    Millis(u64),
    /// A calendar unit in a time zone (UTC when none is given).
    Unit(Unit, TimeZone),
}

/// The window holding `now_ms`: `(start_ms, end_ms)`, end exclusive.
/// `None` only for instants outside jiff's range (years -9999..=9999).
pub fn bounds(cal: &Calendar, now_ms: i64) -> Option<(i64, i64)> {
    match cal {
        Calendar::Millis(len) => {
            let len = i64::try_from(*len).ok().filter(|l| *l > 0)?;
            let start = now_ms.checked_sub(now_ms.rem_euclid(len))?;
            Some((start, start.checked_add(len)?))
        }
        Calendar::Unit(unit @ (Unit::Minute | Unit::Hour), tz) => {
            let len = if *unit == Unit::Minute {
                MINUTE_MS
            } else {
                HOUR_MS
            };
            let ts = Timestamp::from_millisecond(now_ms).ok()?;
            let offset_ms = i64::from(tz.to_offset(ts).seconds()) * 1000;
            let local = now_ms.checked_add(offset_ms)?;
            let start = local
                .checked_sub(local.rem_euclid(len))?
                .checked_sub(offset_ms)?;
            Some((start, start.checked_add(len)?))
        }
        Calendar::Unit(unit, tz) => {
            let ts = Timestamp::from_millisecond(now_ms).ok()?;
            let today = ts.to_zoned(tz.clone()).date();
            let (first, next) = match unit {
                Unit::Day => (today, today.tomorrow().ok()?),
                Unit::Week => {
                    let back = i64::from(today.weekday().to_monday_zero_offset());
                    let monday = today.checked_sub(back.days()).ok()?;
                    (monday, monday.checked_add(7.days()).ok()?)
                }
                Unit::Month => {
                    let first = today.first_of_month();
                    (first, first.checked_add(1.month()).ok()?)
                }
                Unit::Minute | Unit::Hour => return None,
            };
            Some((midnight(first, tz)?, midnight(next, tz)?))
        }
    }
}

/// The first instant of `date` in `tz` (midnight, or the end of a gap that
/// swallows midnight).
fn midnight(date: Date, tz: &TimeZone) -> Option<i64> {
    Some(date.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    #[test]
    fn lengths_align_to_the_epoch() {
        assert_eq!(
            bounds(&Calendar::Millis(60_000), 125_000),
            Some((120_000, 180_000))
        );
        assert_eq!(bounds(&Calendar::Millis(250), 1_000), Some((1_000, 1_250)));
        assert_eq!(bounds(&Calendar::Millis(0), 1_000), None);
    }

    #[rustfmt::skip]
    #[test]
    fn calendar_units_in_utc() {
        let utc = TimeZone::UTC;
        let now = ms("2026-11-22T15:04:05.678Z"); // a Sunday
        let b = |u| bounds(&Calendar::Unit(u, utc.clone()), now).unwrap();
        assert_eq!(b(Unit::Minute), (ms("2026-11-22T15:04:00Z"), ms("2026-11-22T15:05:00Z")));
        assert_eq!(b(Unit::Hour), (ms("2026-11-22T15:00:00Z"), ms("2026-11-22T16:00:00Z")));
        assert_eq!(b(Unit::Day), (ms("2026-11-22T00:00:00Z"), ms("2026-11-23T00:00:00Z")));
        assert_eq!(b(Unit::Week), (ms("2026-11-16T00:00:00Z"), ms("2026-11-23T00:00:00Z")));
        assert_eq!(b(Unit::Month), (ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z")));
    }

    #[rustfmt::skip]
    #[test]
    fn new_york_days_follow_daylight_saving() {
        let ny = tz("America/New_York");
        let day = |now| bounds(&Calendar::Unit(Unit::Day, ny.clone()), ms(now)).unwrap();
        // 2026-03-08: clocks spring forward, a 23-hour day.
        let (s, e) = day("2026-03-08T12:00:00Z");
        assert_eq!((s, e), (ms("2026-03-08T05:00:00Z"), ms("2026-03-09T04:00:00Z")));
        assert_eq!(e - s, 23 * HOUR_MS);
        // 2026-11-01: clocks fall back, a 25-hour day.
        let (s, e) = day("2026-11-01T12:00:00Z");
        assert_eq!((s, e), (ms("2026-11-01T04:00:00Z"), ms("2026-11-02T05:00:00Z")));
        assert_eq!(e - s, 25 * HOUR_MS);
        // Just before local midnight is still the old day.
        assert_eq!(day("2026-11-22T04:59:59.999Z").1, ms("2026-11-22T05:00:00Z"));
        assert_eq!(day("2026-11-22T05:00:00Z").0, ms("2026-11-22T05:00:00Z"));
    }

    #[test]
    fn weeks_start_monday_and_months_the_first_local_midnight() {
        let ny = tz("America/New_York");
        let now = ms("2026-03-10T12:00:00Z");
        let week = bounds(&Calendar::Unit(Unit::Week, ny.clone()), now).unwrap();
        assert_eq!(
            week,
            (ms("2026-03-09T04:00:00Z"), ms("2026-03-16T04:00:00Z"))
        );
        let month = bounds(&Calendar::Unit(Unit::Month, ny), now).unwrap();
        // March starts in EST and ends in EDT.
        assert_eq!(
            month,
            (ms("2026-03-01T05:00:00Z"), ms("2026-04-01T04:00:00Z"))
        );
    }

    #[test]
    fn hours_follow_half_hour_offsets() {
        let kolkata = tz("Asia/Kolkata"); // UTC+5:30
        let b = bounds(
            &Calendar::Unit(Unit::Hour, kolkata),
            ms("2026-11-22T15:04:05Z"),
        )
        .unwrap();
        assert_eq!(b, (ms("2026-11-22T14:30:00Z"), ms("2026-11-22T15:30:00Z")));
    }

    #[test]
    fn units_parse_case_insensitively() {
        assert_eq!(Unit::parse(b"day"), Some(Unit::Day));
        assert_eq!(Unit::parse(b"Month"), Some(Unit::Month));
        assert_eq!(Unit::parse(b"days"), None);
    }
}
