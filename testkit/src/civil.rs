//! Calendar dates for tests: enough to name instants in UTC and to find
//! the dates time-zone rules are written in ("the second Sunday of
//! March"), so tests can fake dates relative to the server's clock instead
//! of writing a year that will one day be in the past.
//!
//! This is the tests' date oracle, so it shares no code with the module's
//! calendar (core's `algo::calendar`, which does UTC months by its own day
//! arithmetic): dates come from jiff's civil calendar, and the tests below
//! pin it to instants printed by GNU `date` (the system's calendar), leap
//! years and centuries included.

use jiff::civil::{Date, DateTime, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use super::{server_now_ns, SEC};

/// The date `d - 1` days after the first of month `m` of year `y` (a day
/// past the month's end runs into the next month, as `utc(y, 3, 32, ..)`
/// is April 1st).
fn date(y: i64, m: u32, d: u32) -> Date {
    let year = i16::try_from(y).expect("a year jiff knows (-9999..=9999)");
    let month = i8::try_from(m).expect("a month 1..=12");
    let first = Date::new(year, month, 1).expect("a valid month");
    first
        .checked_add(i64::from(d).checked_sub(1).expect("a day from 1").days())
        .expect("a date jiff knows")
}

fn to_utc(dt: DateTime) -> Timestamp {
    dt.to_zoned(TimeZone::UTC)
        .expect("a UTC instant jiff knows")
        .timestamp()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    to_utc(date(y, m, d).at(0, 0, 0, 0)).as_second() / 86_400
}

/// The date of a day count since 1970-01-01: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let ts = Timestamp::from_second(z.checked_mul(86_400).expect("a day jiff knows"))
        .expect("a day jiff knows");
    let day = ts.to_zoned(TimeZone::UTC).date();
    (i64::from(day.year()), day.month() as u32, day.day() as u32)
}

/// Unix nanoseconds of a UTC date and time.
pub fn utc(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> u64 {
    let small = |v: u32| i8::try_from(v).expect("a time of day");
    let at = date(y, m, d).at(small(hh), small(mm), small(ss), 0);
    u64::try_from(to_utc(at).as_nanosecond()).expect("a date after 1970")
}

/// Day of the week, 0 = Monday .. 6 = Sunday.
pub fn weekday(y: i64, m: u32, d: u32) -> u32 {
    date(y, m, d).weekday().to_monday_zero_offset() as u32
}

fn weekday_from(wd: u32) -> Weekday {
    let offset = i8::try_from(wd).expect("a weekday 0..=6");
    Weekday::from_monday_zero_offset(offset).expect("a weekday 0..=6")
}

/// The day of the month of the `n`th (1-based) `wd` (0 = Monday) of a month.
pub fn nth_weekday(y: i64, m: u32, wd: u32, n: u32) -> u32 {
    let n = i8::try_from(n).expect("a small n");
    date(y, m, 1)
        .nth_weekday_of_month(n, weekday_from(wd))
        .expect("the month has that many")
        .day() as u32
}

/// The day of the month of the last `wd` (0 = Monday) of a month.
pub fn last_weekday(y: i64, m: u32, wd: u32) -> u32 {
    date(y, m, 1)
        .nth_weekday_of_month(-1, weekday_from(wd))
        .expect("every month has one")
        .day() as u32
}

fn timestamp(ns: u64) -> Timestamp {
    Timestamp::from_nanosecond(i128::from(ns)).expect("an instant jiff knows")
}

/// The UTC year of a Unix-nanosecond instant.
pub fn year_of(ns: u64) -> i64 {
    i64::from(timestamp(ns).to_zoned(TimeZone::UTC).year())
}

/// The server's current UTC year: tests fake dates in a later year, so
/// every instant they name is ahead of the server's clock, whatever the
/// date is when they run.
pub fn server_year(con: &mut redis::Connection) -> i64 {
    year_of(server_now_ns(con))
}

/// An instant as `YYYY-MM-DDTHH:MM:SS.fffffffffZ`, for messages.
pub fn rfc3339(ns: u64) -> String {
    let z = timestamp(ns).to_zoned(TimeZone::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second(),
        ns % SEC
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    type Known = ((i64, u32, u32), (u32, u32, u32), u64, u32);

    /// (date, time, Unix seconds, ISO weekday 1 = Monday), each printed by
    /// GNU date: `date -u -d "2100-03-01 00:00:00 UTC" +%s\ %u`.
    #[rustfmt::skip]
    const KNOWN: &[Known] = &[
        ((1970, 1, 1),   (0, 0, 0),    0,              4),
        ((1999, 12, 31), (23, 59, 59), 946_684_799,    5),
        ((2000, 2, 29),  (23, 59, 59), 951_868_799,    2), // 2000: a leap year (divisible by 400)
        ((2000, 3, 1),   (0, 0, 0),    951_868_800,    3),
        ((2027, 3, 14),  (5, 0, 0),    1_805_000_400,  7),
        ((2038, 1, 19),  (3, 14, 8),   2_147_483_648,  2), // one past i32 seconds
        ((2100, 2, 28),  (0, 0, 0),    4_107_456_000,  7),
        ((2100, 3, 1),   (0, 0, 0),    4_107_542_400,  1), // 2100: no February 29
        ((2400, 2, 29),  (0, 0, 0),    13_574_563_200, 2), // 2400: a leap year again
    ];

    #[test]
    fn dates_match_instants_printed_by_gnu_date() {
        for &((y, m, d), (hh, mm, ss), secs, iso_weekday) in KNOWN {
            let what = format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z");
            assert_eq!(utc(y, m, d, hh, mm, ss), secs * SEC, "{what}");
            assert_eq!(weekday(y, m, d) + 1, iso_weekday, "{what}");
            let day = days_from_civil(y, m, d);
            assert_eq!(day, (secs / 86_400) as i64, "{what}");
            assert_eq!(civil_from_days(day), (y, m, d), "{what}");
            assert_eq!(year_of(secs * SEC), y, "{what}");
            assert_eq!(rfc3339(secs * SEC + 5)[..19], what[..19]);
        }
    }

    #[test]
    fn dates_round_trip_and_days_run_on_past_the_month() {
        for day in [-719_468, -1, 0, 1, 10_956, 20_000, 60_000, 2_932_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(utc(2027, 3, 32, 0, 0, 0), utc(2027, 4, 1, 0, 0, 0));
        assert_eq!(utc(2100, 2, 29, 0, 0, 0), utc(2100, 3, 1, 0, 0, 0));
        assert_eq!(
            rfc3339(utc(2027, 11, 7, 4, 0, 0) + 5),
            "2027-11-07T04:00:00.000000005Z"
        );
        assert_eq!(year_of(utc(2026, 12, 31, 23, 59, 59)), 2026);
        assert_eq!(year_of(utc(2027, 1, 1, 0, 0, 0)), 2027);
    }

    /// The rule dates the time-zone tests use, checked against the days
    /// the clocks really changed (`zdump -v America/New_York Europe/Paris`).
    #[test]
    fn weekdays_follow_the_calendar() {
        assert_eq!(weekday(1970, 1, 1), 3); // a Thursday
        assert_eq!(weekday(2027, 5, 12), 2); // a Wednesday
                                             // New York's daylight saving time: second Sunday of March, first of November.
        assert_eq!(nth_weekday(2027, 3, 6, 2), 14);
        assert_eq!(nth_weekday(2027, 11, 6, 1), 7);
        assert_eq!(nth_weekday(2026, 3, 6, 2), 8);
        assert_eq!(nth_weekday(2026, 11, 6, 1), 1);
        // Europe's: last Sunday of March.
        assert_eq!(last_weekday(2027, 3, 6), 28);
        assert_eq!(last_weekday(2029, 3, 6), 25);
        assert_eq!(last_weekday(2024, 3, 6), 31);
    }
}
