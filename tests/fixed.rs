//! RL.FIXED on a real server: windows aligned to the epoch and the
//! calendar, time zones across daylight-saving changes (the module's clock
//! under test control), TTL = window end, denials not counted.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// The year every date below is faked in: the one after the server's, so
/// every instant named is ahead of the server's clock (keys written at it
/// never expire on Redis's real clock during the test) whatever the date
/// is when the test runs. The rules tested hold every year: New York
/// changes its clocks on the second Sunday of March and the first Sunday of
/// November, Europe on the last Sunday of March.
fn year(c: &mut redis::Connection) -> i64 {
    server_year(c) + 1
}

const SUNDAY: u32 = 6;
const WEDNESDAY: u32 = 2;

#[test]
fn counts_in_the_window_and_resets_at_its_end() {
    let s = Server::start();
    let mut c = s.connect();
    // 10 s windows aligned to the epoch.
    let t = (clock_start(&mut c) / (10 * SEC)) * 10 * SEC;
    set_clock(&mut c, t + 2_500 * MS);
    let k = &["RL.FIXED", "f", "3", "10"];
    assert_eq!(rl(&mut c, k), [1, 3, 2, 0, 7_500]);
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "f", "3", "10", "COST", "2"]),
        [1, 3, 0, 0, 7_500]
    );
    // Denied requests do not count: after the window, 3 again.
    for _ in 0..5 {
        assert_eq!(rl(&mut c, k), [0, 3, 0, 7_500, 7_500]);
    }
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "f", "3", "10", "COST", "4"]),
        [0, 3, 0, -1, 7_500]
    );
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", "f"]),
        ((t + 10 * SEC) / MS) as i64
    );
    set_clock(&mut c, t + 10 * SEC - MS);
    assert_eq!(rl(&mut c, k), [0, 3, 0, 1, 1]);
    set_clock(&mut c, t + 10 * SEC);
    assert_eq!(rl(&mut c, k), [1, 3, 2, 0, 10_000]);
    assert_eq!(
        call(&mut c, &["TYPE", "f"]),
        Ok(Value::SimpleString("rl-fixwin".into()))
    );
}

#[test]
fn calendar_units_align_in_utc() {
    let s = Server::start();
    let mut c = s.connect();
    // A Wednesday in May, 13:45:30 UTC.
    let y = year(&mut c);
    let d = 12 + (WEDNESDAY + 7 - weekday(y, 5, 12)) % 7;
    let now = utc(y, 5, d, 13, 45, 30);
    set_clock(&mut c, now);
    let reset = |c: &mut redis::Connection, w: &str| {
        let key = format!("u:{w}");
        let r = rl(c, &["RL.FIXED", &key, "5", w]);
        // The key expires exactly at the window's end.
        assert_eq!(int(c, &["PEXPIRETIME", &key]), (now / MS) as i64 + r[4]);
        r[4]
    };
    let ms = |end: u64| ((end - now) / MS) as i64;
    assert_eq!(reset(&mut c, "MINUTE"), 30_000);
    assert_eq!(reset(&mut c, "HOUR"), (14 * 60 + 30) * 1000);
    assert_eq!(reset(&mut c, "DAY"), ms(utc(y, 5, d + 1, 0, 0, 0)));
    // The next Monday.
    assert_eq!(reset(&mut c, "week"), ms(utc(y, 5, d + 5, 0, 0, 0)));
    assert_eq!(reset(&mut c, "Month"), ms(utc(y, 6, 1, 0, 0, 0)));
}

/// 500 a day, the day resetting at midnight New York time, across both
/// daylight-saving changes of a year.
#[test]
fn new_york_days_across_daylight_saving() {
    let s = Server::start();
    let mut c = s.connect();
    let k = |c: &mut redis::Connection, cost: &str| {
        rl(
            c,
            &[
                "RL.FIXED",
                "wu:daily",
                "500",
                "DAY",
                "TZ",
                "America/New_York",
                "COST",
                cost,
            ],
        )
    };
    let expiry = |c: &mut redis::Connection| int(c, &["PEXPIRETIME", "wu:daily"]) as u64 * MS;
    let y = year(&mut c);
    // The second Sunday of March: clocks spring forward at 2:00 EST; the
    // day is 23 h, from 05:00Z to 04:00Z the next day.
    let spring = nth_weekday(y, 3, SUNDAY, 2);
    set_clock(&mut c, utc(y, 3, spring, 5, 0, 0));
    assert_eq!(k(&mut c, "499"), [1, 500, 1, 0, 23 * 3600 * 1000]);
    assert_eq!(expiry(&mut c), utc(y, 3, spring + 1, 4, 0, 0));
    set_clock(&mut c, utc(y, 3, spring + 1, 3, 59, 59));
    assert_eq!(k(&mut c, "2"), [0, 500, 1, 1000, 1000]);
    set_clock(&mut c, utc(y, 3, spring + 1, 4, 0, 0));
    assert_eq!(k(&mut c, "500"), [1, 500, 0, 0, 24 * 3600 * 1000]);
    assert_eq!(expiry(&mut c), utc(y, 3, spring + 2, 4, 0, 0));
    // The first Sunday of November: clocks fall back at 2:00 EDT; the day is 25 h.
    let fall = nth_weekday(y, 11, SUNDAY, 1);
    set_clock(&mut c, utc(y, 11, fall, 4, 0, 0));
    assert_eq!(k(&mut c, "1"), [1, 500, 499, 0, 25 * 3600 * 1000]);
    assert_eq!(expiry(&mut c), utc(y, 11, fall + 1, 5, 0, 0));
    set_clock(&mut c, utc(y, 11, fall + 1, 4, 59, 59));
    assert_eq!(k(&mut c, "499"), [1, 500, 0, 0, 1000]);
    assert_eq!(k(&mut c, "1"), [0, 500, 0, 1000, 1000]);
    set_clock(&mut c, utc(y, 11, fall + 1, 5, 0, 0));
    assert_eq!(k(&mut c, "1"), [1, 500, 499, 0, 24 * 3600 * 1000]);
    assert_eq!(expiry(&mut c), utc(y, 11, fall + 2, 5, 0, 0));
}

#[test]
fn zones_apply_to_weeks_months_and_hours() {
    let s = Server::start();
    let mut c = s.connect();
    // The Wednesday before New York springs forward, 12:00 UTC.
    let y = year(&mut c);
    let spring = nth_weekday(y, 3, SUNDAY, 2);
    let now = utc(y, 3, spring - 4, 12, 0, 0);
    set_clock(&mut c, now);
    // The New York week starts on the Monday before at 05:00Z (EST) and
    // ends on the Monday after at 04:00Z (EDT): the clocks changed between.
    let r = rl(
        &mut c,
        &["RL.FIXED", "w", "5", "WEEK", "TZ", "America/New_York"],
    );
    assert_eq!(r[4] as u64, (utc(y, 3, spring + 1, 4, 0, 0) - now) / MS);
    // Paris's April starts at 22:00Z on March 31 (CEST, UTC+2, since the
    // last Sunday of March).
    let r = rl(
        &mut c,
        &["RL.FIXED", "m", "5", "MONTH", "TZ", "Europe/Paris"],
    );
    assert_eq!(r[4] as u64, (utc(y, 3, 31, 22, 0, 0) - now) / MS);
    // Kolkata is UTC+5:30: its hours start at half past UTC hours.
    let r = rl(
        &mut c,
        &["RL.FIXED", "h", "5", "HOUR", "TZ", "Asia/Kolkata"],
    );
    assert_eq!(r[4], 30 * 60 * 1000);
    // Each key expires exactly at its window's end.
    for (key, end) in [
        ("w", utc(y, 3, spring + 1, 4, 0, 0)),
        ("m", utc(y, 3, 31, 22, 0, 0)),
        ("h", now + 30 * 60 * SEC),
    ] {
        assert_eq!(int(&mut c, &["PEXPIRETIME", key]) as u64 * MS, end, "{key}");
    }
}

#[test]
fn bad_windows_and_zones_are_refused() {
    let s = Server::start();
    let mut c = s.connect();
    let window_err = "ERR window must be MINUTE, HOUR, DAY, WEEK, MONTH or a positive number of seconds with at most 3 decimals, at most 10 years";
    assert_eq!(err(&mut c, &["RL.FIXED", "k", "5", "YEAR"]), window_err);
    assert_eq!(err(&mut c, &["RL.FIXED", "k", "5", "0"]), window_err);
    assert_eq!(err(&mut c, &["RL.FIXED", "k", "5", "0.0001"]), window_err);
    assert_eq!(
        err(
            &mut c,
            &["RL.FIXED", "k", "5", "DAY", "TZ", "Mars/Olympus_Mons"]
        ),
        "ERR TZ must be an IANA time zone name such as America/New_York"
    );
    assert_eq!(
        err(&mut c, &["RL.FIXED", "k", "5", "DAY", "TZ"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(&mut c, &["RL.FIXED", "k", "5", "60", "TZ", "UTC"]),
        "ERR TZ needs a calendar window: MINUTE, HOUR, DAY, WEEK or MONTH"
    );
    assert_eq!(
        err(
            &mut c,
            &["RL.FIXED", "k", "5", "DAY", "TZ", "UTC", "TZ", "UTC"]
        ),
        "ERR syntax error"
    );
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0);
}

#[test]
fn a_persisted_counter_is_treated_as_fresh() {
    let s = Server::start();
    let mut c = s.connect();
    let y = year(&mut c);
    set_clock(&mut c, utc(y, 5, 12, 13, 45, 30));
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "p", "2", "DAY", "COST", "2"])[0],
        1
    );
    // PERSIST found the key and took its expiry away.
    assert_eq!(int(&mut c, &["PERSIST", "p"]), 1);
    assert_eq!(int(&mut c, &["PTTL", "p"]), -1);
    // Without its window's end the count means nothing: it starts over (and
    // gets its expiry back, the day's end), instead of blocking the client
    // forever.
    assert_eq!(rl(&mut c, &["RL.FIXED", "p", "2", "DAY"])[0..3], [1, 2, 1]);
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", "p"]) as u64 * MS,
        utc(y, 5, 13, 0, 0, 0)
    );
}
