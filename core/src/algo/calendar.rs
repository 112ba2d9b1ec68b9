//! Where a fixed window starts and ends.
//!
//! A window is either a length in milliseconds, aligned to multiples of it
//! since the Unix epoch (UTC), or a calendar unit: a minute, hour, day, week
//! (starting Monday) or month, in UTC or in an IANA time zone. In a zone,
//! days, weeks and months start at local midnight and follow daylight-saving
//! changes: a day is 23 or 25 hours long when the clocks change. Minutes and
//! hours start at local boundaries (which differ from UTC's in zones such as
//! Asia/Kolkata), using the offset in force at `now`.

use crate::time::Nanos;
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
    /// Every unit, shortest first.
    pub const ALL: [Unit; 5] = [Unit::Minute, Unit::Hour, Unit::Day, Unit::Week, Unit::Month];

    /// Its keyword, as the module reads it and writes it (capitals).
    pub const fn keyword(self) -> &'static str {
        match self {
            Unit::Minute => "MINUTE",
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
            Unit::Week => "WEEK",
            Unit::Month => "MONTH",
        }
    }

    /// The keyword as users type it (case-insensitively).
    pub fn parse(s: &[u8]) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .find(|u| s.eq_ignore_ascii_case(u.keyword().as_bytes()))
    }

    /// Its nominal length, where one number must stand for it (a
    /// header's window, an estimate): a day is 24 h even when the clocks
    /// change, a month 31 days (the longest, so estimates err on the
    /// strict side).
    pub const fn nominal(self) -> Nanos {
        let ms = match self {
            Unit::Minute => MINUTE_MS,
            Unit::Hour => HOUR_MS,
            Unit::Day => DAY_MS,
            Unit::Week => 7 * DAY_MS,
            Unit::Month => 31 * DAY_MS,
        };
        Nanos::from_millis(ms.unsigned_abs())
    }
}

/// The shape of a fixed window.
#[derive(Debug, Clone, PartialEq)]
pub enum Calendar {
    /// Multiples of this many milliseconds since the epoch.
    Millis(u64),
    /// A calendar unit in a time zone, or in UTC (`None`: plain
    /// arithmetic, no time zone database).
    Unit(Unit, Option<TimeZone>),
}

/// The end of the window holding `now` (exclusive), in whole
/// milliseconds. `None` only for instants outside jiff's range.
pub fn window_end(cal: &Calendar, now: Nanos) -> Option<Nanos> {
    let now_ms = i64::try_from(now.as_millis()).ok()?;
    let (_, end_ms) = bounds(cal, now_ms)?;
    u64::try_from(end_ms).ok().map(Nanos::from_millis)
}

/// The window holding `now_ms`: `(start_ms, end_ms)`, end exclusive.
/// `None` only for instants outside jiff's range (years -9999..=9999).
pub(crate) fn bounds(cal: &Calendar, now_ms: i64) -> Option<(i64, i64)> {
    match cal {
        Calendar::Millis(len) => {
            let len = i64::try_from(*len).ok().filter(|l| *l > 0)?;
            let start = now_ms.checked_sub(now_ms.rem_euclid(len))?;
            Some((start, start.checked_add(len)?))
        }
        Calendar::Unit(unit, None) => utc_bounds(*unit, now_ms),
        Calendar::Unit(unit @ (Unit::Minute | Unit::Hour), Some(tz)) => {
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
        Calendar::Unit(unit, Some(tz)) => {
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

const DAY_MS: i64 = 86_400_000;

/// Calendar units in UTC by arithmetic alone.
fn utc_bounds(unit: Unit, now_ms: i64) -> Option<(i64, i64)> {
    let floor = |len: i64| -> Option<(i64, i64)> {
        let start = now_ms.checked_sub(now_ms.rem_euclid(len))?;
        Some((start, start.checked_add(len)?))
    };
    match unit {
        Unit::Minute => floor(MINUTE_MS),
        Unit::Hour => floor(HOUR_MS),
        Unit::Day => floor(DAY_MS),
        Unit::Week => {
            // 1970-01-01 was a Thursday: Monday is 3 days before it.
            let day = now_ms.div_euclid(DAY_MS);
            let monday = day.checked_sub((day + 3).rem_euclid(7))?;
            let start = monday.checked_mul(DAY_MS)?;
            Some((start, start.checked_add(7 * DAY_MS)?))
        }
        Unit::Month => {
            let (y, m, _) = civil_from_days(now_ms.div_euclid(DAY_MS));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let start = days_from_civil(y, m, 1).checked_mul(DAY_MS)?;
            let end = days_from_civil(ny, nm, 1).checked_mul(DAY_MS)?;
            Some((start, end))
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The first instant of `date` in `tz` (midnight, or the end of a gap that
/// swallows midnight).
fn midnight(date: Date, tz: &TimeZone) -> Option<i64> {
    Some(date.to_zoned(tz.clone()).ok()?.timestamp().as_millisecond())
}

#[cfg(test)]
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
        let now = ms("2026-11-22T15:04:05.678Z"); // a Sunday
        let b = |u| bounds(&Calendar::Unit(u, None), now).unwrap();
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
        let day = |now| bounds(&Calendar::Unit(Unit::Day, Some(ny.clone())), ms(now)).unwrap();
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
        let week = bounds(&Calendar::Unit(Unit::Week, Some(ny.clone())), now).unwrap();
        assert_eq!(
            week,
            (ms("2026-03-09T04:00:00Z"), ms("2026-03-16T04:00:00Z"))
        );
        let month = bounds(&Calendar::Unit(Unit::Month, Some(ny)), now).unwrap();
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
            &Calendar::Unit(Unit::Hour, Some(kolkata)),
            ms("2026-11-22T15:04:05Z"),
        )
        .unwrap();
        assert_eq!(b, (ms("2026-11-22T14:30:00Z"), ms("2026-11-22T15:30:00Z")));
    }

    /// Windows whose bounds were computed outside this crate and outside
    /// jiff: Python's `zoneinfo` on the system's tz database (the first
    /// instant of each local date, found by stepping through UTC), and by
    /// hand for UTC. Daylight-saving days in New York (23 and 25 hours),
    /// half-hour offsets (Kolkata), a half-hour daylight-saving shift
    /// (Lord Howe: days of 23.5 and 24.5 hours, hours on the half hour
    /// half the year), a change at midnight (Santiago: the day starts at
    /// 01:00), and UTC months across leap years and centuries.
    #[rustfmt::skip]
    const KNOWN: &[(Option<&str>, Unit, &str, &str, &str)] = &[
        // (zone, unit, now, start, end)
        (Some("America/New_York"), Unit::Day, "2027-03-14T12:00:00Z", "2027-03-14T05:00:00Z", "2027-03-15T04:00:00Z"),
        (Some("America/New_York"), Unit::Day, "2027-11-07T12:00:00Z", "2027-11-07T04:00:00Z", "2027-11-08T05:00:00Z"),
        (Some("America/New_York"), Unit::Day, "2027-11-08T04:59:59Z", "2027-11-07T04:00:00Z", "2027-11-08T05:00:00Z"),
        (Some("America/New_York"), Unit::Day, "2027-11-08T05:00:00Z", "2027-11-08T05:00:00Z", "2027-11-09T05:00:00Z"),
        (Some("America/New_York"), Unit::Week, "2027-03-10T12:00:00Z", "2027-03-08T05:00:00Z", "2027-03-15T04:00:00Z"),
        (Some("America/New_York"), Unit::Month, "2027-03-10T12:00:00Z", "2027-03-01T05:00:00Z", "2027-04-01T04:00:00Z"),
        (Some("Asia/Kolkata"), Unit::Day, "2027-05-12T20:00:00Z", "2027-05-12T18:30:00Z", "2027-05-13T18:30:00Z"),
        (Some("Asia/Kolkata"), Unit::Hour, "2027-05-12T15:04:05Z", "2027-05-12T14:30:00Z", "2027-05-12T15:30:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Day, "2027-04-04T06:00:00Z", "2027-04-03T13:00:00Z", "2027-04-04T13:30:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Day, "2027-10-03T06:00:00Z", "2027-10-02T13:30:00Z", "2027-10-03T13:00:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Hour, "2027-04-04T06:00:00Z", "2027-04-04T05:30:00Z", "2027-04-04T06:30:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Hour, "2027-01-15T06:00:00Z", "2027-01-15T06:00:00Z", "2027-01-15T07:00:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Week, "2027-04-04T06:00:00Z", "2027-03-28T13:00:00Z", "2027-04-04T13:30:00Z"),
        (Some("Australia/Lord_Howe"), Unit::Month, "2027-04-04T06:00:00Z", "2027-03-31T13:00:00Z", "2027-04-30T13:30:00Z"),
        (Some("America/Santiago"), Unit::Day, "2027-09-05T12:00:00Z", "2027-09-05T04:00:00Z", "2027-09-06T03:00:00Z"),
        (Some("America/Santiago"), Unit::Day, "2027-04-04T02:00:00Z", "2027-04-03T03:00:00Z", "2027-04-04T04:00:00Z"),
        (None, Unit::Month, "2100-02-15T00:00:00Z", "2100-02-01T00:00:00Z", "2100-03-01T00:00:00Z"),
        (None, Unit::Month, "2000-02-29T23:59:59Z", "2000-02-01T00:00:00Z", "2000-03-01T00:00:00Z"),
        (None, Unit::Month, "2400-02-29T12:00:00Z", "2400-02-01T00:00:00Z", "2400-03-01T00:00:00Z"),
        (None, Unit::Month, "2027-12-31T23:59:59Z", "2027-12-01T00:00:00Z", "2028-01-01T00:00:00Z"),
        (None, Unit::Month, "1969-12-31T12:00:00Z", "1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z"),
        (None, Unit::Week, "2027-01-01T00:00:00Z", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z"),
        (None, Unit::Day, "1969-12-31T12:00:00Z", "1969-12-31T00:00:00Z", "1970-01-01T00:00:00Z"),
    ];

    #[test]
    fn bounds_match_a_table_computed_elsewhere() {
        for &(zone, unit, now, start, end) in KNOWN {
            let cal = Calendar::Unit(unit, zone.map(tz));
            assert_eq!(
                bounds(&cal, ms(now)),
                Some((ms(start), ms(end))),
                "{zone:?} {unit:?} at {now}"
            );
        }
    }

    proptest::proptest! {
        /// UTC arithmetic agrees with the time zone database's UTC.
        #[test]
        fn utc_arithmetic_matches_jiff(now in -62_000_000_000_000i64..250_000_000_000_000) {
            for u in [Unit::Minute, Unit::Hour, Unit::Day, Unit::Week, Unit::Month] {
                proptest::prop_assert_eq!(
                    bounds(&Calendar::Unit(u, None), now),
                    bounds(&Calendar::Unit(u, Some(TimeZone::UTC)), now),
                    "{:?}", u
                );
            }
        }
    }

    #[test]
    fn units_parse_case_insensitively() {
        assert_eq!(Unit::parse(b"day"), Some(Unit::Day));
        assert_eq!(Unit::parse(b"Month"), Some(Unit::Month));
        assert_eq!(Unit::parse(b"days"), None);
    }
}
