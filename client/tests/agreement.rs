//! The client refuses exactly what the module refuses: every policy
//! constructor against the real module, on the same randomized inputs
//! (boundaries, odd decimals, durations finer than a millisecond, unknown
//! zones). Each input is sent as the raw command with DRYRUN; the client
//! must accept it exactly when the server does, and when both refuse, say
//! the server's words. `RL_AGREE_SEED` replays a run; `RL_AGREE_CASES`
//! sets its size (default 3000).
#![cfg(test)]

use std::time::Duration;

use redis_ratelimit_client::{
    CalendarUnit, Decimal, FixedWindow, Gcra, PolicyError, SlidingWindow, Throttle, TokenBucket,
};
use redis_ratelimit_testkit::{call, Rng, Server};

/// The server's answer: `Ok` or its error text.
fn server(c: &mut redis::Connection, argv: &[String]) -> Result<(), String> {
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    call(c, &args).map(|_| ())
}

/// The client's answer, in the server's words.
fn client<T>(r: Result<T, PolicyError>) -> Result<(), String> {
    r.map(|_| ()).map_err(|e| format!("ERR {e}"))
}

fn int(rng: &mut Rng) -> u64 {
    let max = i64::MAX as u64;
    match rng.below(6) {
        0 => rng.pick(&[0, 1, 2, max - 1, max, max + 1, u64::MAX]),
        1 => 3_153_600_000 + rng.below(3) - 1, // 100 years of seconds, +-1
        2 => rng.next_u64(),
        _ => rng.below(1000),
    }
}

/// A decimal as text: plain, with an exponent, or tiny/huge.
fn decimal(rng: &mut Rng) -> String {
    let digits = match rng.below(4) {
        0 => rng.below(10),
        1 => rng.below(1_000_000),
        2 => rng.next_u64() >> rng.below(64),
        _ => 1,
    };
    match rng.below(5) {
        0 => digits.to_string(),
        1 => format!("{digits}e{}", rng.below(25)),
        2 => format!("{digits}e-{}", rng.below(35)),
        3 => format!("0.{:0>width$}", digits, width = rng.below(12) as usize),
        _ => format!("{}.{}", rng.below(100), rng.below(1000)),
    }
}

fn duration(rng: &mut Rng) -> Duration {
    let ten_years = 10 * 365 * 86_400;
    match rng.below(6) {
        0 => Duration::from_millis(rng.below(100_000)),
        1 => Duration::from_micros(rng.below(10_000_000)),
        2 => Duration::from_secs(ten_years + rng.below(3)) - Duration::from_millis(1),
        3 => Duration::from_nanos(rng.next_u64()),
        4 => Duration::from_secs(rng.below(1000)),
        _ => Duration::ZERO,
    }
}

fn secs(d: Duration) -> String {
    Decimal::from_duration_secs(d).map_or("0".into(), |v| v.to_string())
}

#[test]
fn the_client_refuses_exactly_what_the_module_refuses() {
    let seed = Rng::seed_from_env("RL_AGREE_SEED");
    let cases: u64 = std::env::var("RL_AGREE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    println!("RL_AGREE_SEED={seed} RL_AGREE_CASES={cases}");
    let mut rng = Rng::new(seed);
    let s = Server::start();
    let mut c = s.connect();
    let zones = [
        "America/New_York",
        "UTC",
        "Europe/Paris",
        "Mars/Olympus",
        "",
        "Etc/GMT+5",
        "new york",
    ];
    let units = [
        CalendarUnit::Minute,
        CalendarUnit::Hour,
        CalendarUnit::Day,
        CalendarUnit::Week,
        CalendarUnit::Month,
    ];
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases {
        let (argv, mine): (Vec<String>, Result<(), String>) = match rng.below(6) {
            0 => {
                let (cap, rate, period) = (int(&mut rng), decimal(&mut rng), duration(&mut rng));
                let argv = vec![
                    "RL.TOKENBUCKET".into(),
                    "k".into(),
                    cap.to_string(),
                    rate.clone(),
                    "0".into(),
                    "PERIOD".into(),
                    secs(period),
                    "DRYRUN".into(),
                ];
                let mine = match rate.parse::<Decimal>() {
                    Ok(r) => client(TokenBucket::new(cap, r, period)),
                    Err(_) => Err("unparsed".into()),
                };
                (argv, mine)
            }
            1 => {
                let (burst, rate, period) = (int(&mut rng), decimal(&mut rng), duration(&mut rng));
                let argv = vec![
                    "RL.GCRA".into(),
                    "k".into(),
                    burst.to_string(),
                    rate.clone(),
                    secs(period),
                    "DRYRUN".into(),
                ];
                let mine = match rate.parse::<Decimal>() {
                    Ok(r) => client(Gcra::new(burst, r, period)),
                    Err(_) => Err("unparsed".into()),
                };
                (argv, mine)
            }
            2 => {
                let (limit, window) = (int(&mut rng), duration(&mut rng));
                let argv = vec![
                    "RL.SLIDING".into(),
                    "k".into(),
                    limit.to_string(),
                    secs(window),
                    "DRYRUN".into(),
                ];
                (argv, client(SlidingWindow::new(limit, window)))
            }
            3 => {
                let (limit, window) = (int(&mut rng), duration(&mut rng));
                let argv = vec![
                    "RL.FIXED".into(),
                    "k".into(),
                    limit.to_string(),
                    secs(window),
                    "DRYRUN".into(),
                ];
                (argv, client(FixedWindow::new(limit, window)))
            }
            4 => {
                let (limit, unit, zone) = (int(&mut rng), rng.pick(&units), rng.pick(&zones));
                let mut argv = vec![
                    "RL.FIXED".into(),
                    "k".into(),
                    limit.to_string(),
                    unit.keyword().to_string(),
                ];
                let mut mine = FixedWindow::calendar(limit, unit);
                if !rng.one_in(3) {
                    argv.extend(["TZ".to_string(), zone.to_string()]);
                    mine = mine.and_then(|f| f.in_time_zone(zone));
                }
                argv.push("DRYRUN".into());
                (argv, client(mine))
            }
            _ => {
                let (burst, count, period) = (int(&mut rng), int(&mut rng), duration(&mut rng));
                let argv = vec![
                    "CL.THROTTLE".into(),
                    "k".into(),
                    burst.to_string(),
                    count.to_string(),
                    secs(period),
                    "0".into(),
                ];
                (argv, client(Throttle::new(burst, count, period)))
            }
        };
        let theirs = server(&mut c, &argv);
        match (&mine, &theirs) {
            (Ok(()), Ok(())) => accepted += 1,
            // A rate the client cannot parse: the server must refuse it too.
            (Err(m), Err(_)) if m == "unparsed" => refused += 1,
            (Err(m), Err(t)) => {
                assert_eq!(m, t, "case {case} (seed {seed}): {argv:?}");
                refused += 1;
            }
            _ => panic!("case {case} (seed {seed}): {argv:?}: client {mine:?}, server {theirs:?}"),
        }
    }
    println!("{accepted} accepted and {refused} refused by both");
    assert!(
        accepted > cases / 10 && refused > cases / 10,
        "{accepted} {refused}"
    );
    // Nothing was written: every call was a dry run or a peek.
    assert_eq!(redis_ratelimit_testkit::int(&mut c, &["DBSIZE"]), 0);
}
