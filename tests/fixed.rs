//! RL.FIXED on a real server: windows aligned to the epoch and the
//! calendar, time zones across daylight-saving changes (the module's clock
//! under test control), TTL = window end, denials not counted.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// Unix ns of an RFC 3339 instant (no external date crate in tests).
fn at(rfc3339: &str) -> u64 {
    // YYYY-MM-DDTHH:MM:SSZ only.
    let n = |a: usize, b: usize| rfc3339[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let (hh, mm, ss) = (n(11, 13), n(14, 16), n(17, 19));
    // days from civil (Howard Hinnant)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 86_400 + hh * 3600 + mm * 60 + ss) as u64) * SEC
}

#[test]
fn counts_in_the_window_and_resets_at_its_end() {
    let s = Server::start();
    let mut c = s.connect();
    // 10 s windows aligned to the epoch.
    let t = (fake_start() / (10 * SEC)) * 10 * SEC;
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
    set_clock(&mut c, at("2027-05-12T13:45:30Z")); // a Wednesday
    let reset =
        |c: &mut redis::Connection, w: &str| rl(c, &["RL.FIXED", &format!("u:{w}"), "5", w])[4];
    assert_eq!(reset(&mut c, "MINUTE"), 30_000);
    assert_eq!(reset(&mut c, "HOUR"), (14 * 60 + 30) * 1000);
    assert_eq!(
        reset(&mut c, "DAY"),
        ((at("2027-05-13T00:00:00Z") - at("2027-05-12T13:45:30Z")) / MS) as i64
    );
    assert_eq!(
        reset(&mut c, "week"),
        ((at("2027-05-17T00:00:00Z") - at("2027-05-12T13:45:30Z")) / MS) as i64
    );
    assert_eq!(
        reset(&mut c, "Month"),
        ((at("2027-06-01T00:00:00Z") - at("2027-05-12T13:45:30Z")) / MS) as i64
    );
}

/// 500 a day, the day resetting at midnight New York time, across both
/// daylight-saving changes of 2027.
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
    // Sunday 2027-03-14: clocks spring forward at 2:00 EST; the day is 23 h,
    // from 05:00Z to 04:00Z the next day.
    set_clock(&mut c, at("2027-03-14T05:00:00Z"));
    assert_eq!(k(&mut c, "499"), [1, 500, 1, 0, 23 * 3600 * 1000]);
    set_clock(&mut c, at("2027-03-15T03:59:59Z"));
    assert_eq!(k(&mut c, "2"), [0, 500, 1, 1000, 1000]);
    set_clock(&mut c, at("2027-03-15T04:00:00Z"));
    assert_eq!(k(&mut c, "500"), [1, 500, 0, 0, 24 * 3600 * 1000]);
    // Sunday 2027-11-07: clocks fall back at 2:00 EDT; the day is 25 h.
    set_clock(&mut c, at("2027-11-07T04:00:00Z"));
    assert_eq!(k(&mut c, "1"), [1, 500, 499, 0, 25 * 3600 * 1000]);
    set_clock(&mut c, at("2027-11-08T04:59:59Z"));
    assert_eq!(k(&mut c, "499"), [1, 500, 0, 0, 1000]);
    assert_eq!(k(&mut c, "1"), [0, 500, 0, 1000, 1000]);
    set_clock(&mut c, at("2027-11-08T05:00:00Z"));
    assert_eq!(k(&mut c, "1"), [1, 500, 499, 0, 24 * 3600 * 1000]);
}

#[test]
fn zones_apply_to_weeks_months_and_hours() {
    let s = Server::start();
    let mut c = s.connect();
    set_clock(&mut c, at("2027-03-10T12:00:00Z"));
    // The New York week starts Monday 2027-03-08 05:00Z and ends Monday
    // 2027-03-15 04:00Z (the clocks changed in between).
    let r = rl(
        &mut c,
        &["RL.FIXED", "w", "5", "WEEK", "TZ", "America/New_York"],
    );
    assert_eq!(
        r[4] as u64,
        (at("2027-03-15T04:00:00Z") - at("2027-03-10T12:00:00Z")) / MS
    );
    let r = rl(
        &mut c,
        &["RL.FIXED", "m", "5", "MONTH", "TZ", "Europe/Paris"],
    );
    assert_eq!(
        r[4] as u64,
        (at("2027-03-31T22:00:00Z") - at("2027-03-10T12:00:00Z")) / MS
    );
    // Kolkata is UTC+5:30: its hours start at half past UTC hours.
    let r = rl(
        &mut c,
        &["RL.FIXED", "h", "5", "HOUR", "TZ", "Asia/Kolkata"],
    );
    assert_eq!(r[4], 30 * 60 * 1000);
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
    set_clock(&mut c, at("2027-05-12T13:45:30Z"));
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "p", "2", "DAY", "COST", "2"])[0],
        1
    );
    int(&mut c, &["PERSIST", "p"]);
    // Without its window's end the count means nothing: it starts over (and
    // gets its expiry back), instead of blocking the client forever.
    assert_eq!(rl(&mut c, &["RL.FIXED", "p", "2", "DAY"])[0..3], [1, 2, 1]);
    assert!(int(&mut c, &["PTTL", "p"]) > 0);
}
