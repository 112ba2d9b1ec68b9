//! Calendar dates without a date crate: enough to name instants in UTC and
//! to find the dates time-zone rules are written in ("the second Sunday of
//! March"), so tests can fake dates relative to the server's clock instead
//! of writing a year that will one day be in the past.

use super::{server_now_ns, SEC};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m as u32, d as u32)
}

/// Unix nanoseconds of a UTC date and time.
pub fn utc(y: i64, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> u64 {
    let secs = days_from_civil(y, m, d) * 86_400
        + i64::from(hh) * 3600
        + i64::from(mm) * 60
        + i64::from(ss);
    u64::try_from(secs).expect("a date after 1970") * SEC
}

/// Day of the week, 0 = Monday .. 6 = Sunday.
pub fn weekday(y: i64, m: u32, d: u32) -> u32 {
    // 1970-01-01 was a Thursday (3).
    (days_from_civil(y, m, d) + 3).rem_euclid(7) as u32
}

/// The day of the month of the `n`th (1-based) `wd` (0 = Monday) of a month.
pub fn nth_weekday(y: i64, m: u32, wd: u32, n: u32) -> u32 {
    let first = weekday(y, m, 1);
    1 + (wd + 7 - first) % 7 + 7 * (n - 1)
}

/// The day of the month of the last `wd` (0 = Monday) of a month.
pub fn last_weekday(y: i64, m: u32, wd: u32) -> u32 {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let last = days_from_civil(ny, nm, 1) - 1;
    let (_, _, d) = civil_from_days(last);
    let back = (weekday(y, m, d) + 7 - wd) % 7;
    d - back
}

/// The UTC year of a Unix-nanosecond instant.
pub fn year_of(ns: u64) -> i64 {
    civil_from_days((ns / SEC) as i64 / 86_400).0
}

/// The server's current UTC year: tests fake dates in a later year, so
/// every instant they name is ahead of the server's clock, whatever the
/// date is when they run.
pub fn server_year(con: &mut redis::Connection) -> i64 {
    year_of(server_now_ns(con))
}

/// An instant as `YYYY-MM-DDTHH:MM:SS.fffffffffZ`, for messages.
pub fn rfc3339(ns: u64) -> String {
    let secs = (ns / SEC) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        ns % SEC
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_match_known_instants() {
        assert_eq!(utc(1970, 1, 1, 0, 0, 0), 0);
        // `date -u -d 2027-03-14T05:00:00Z +%s`
        assert_eq!(utc(2027, 3, 14, 5, 0, 0), 1_805_000_400 * SEC);
        assert_eq!(utc(2000, 2, 29, 23, 59, 59), 951_868_799 * SEC);
        for day in [-719_468, -1, 0, 1, 10_956, 20_000, 60_000, 2_932_896] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
        assert_eq!(
            rfc3339(utc(2027, 11, 7, 4, 0, 0) + 5),
            "2027-11-07T04:00:00.000000005Z"
        );
        assert_eq!(year_of(utc(2026, 12, 31, 23, 59, 59)), 2026);
        assert_eq!(year_of(utc(2027, 1, 1, 0, 0, 0)), 2027);
    }

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
