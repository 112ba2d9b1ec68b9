//! The sliding window's promise under concurrency, checked from the
//! outside: no interval of one window holds more than the limit, judged by
//! when the server decided each admission. Counting admissions per second
//! (as concurrency.rs does) would also pass for an epoch-aligned fixed
//! window; this load and this check would not, and the test proves it by
//! running both against RL.FIXED too.
//!
//! The load: 8 connections burst for 100 ms on each side of every whole
//! second of the server's clock and stay idle in between. A window of
//! 500 ms is then idle until 100 ms before its end: a fixed window lets
//! the limit through there, and the limit again right after the second
//! starts, 2x the limit within 100 ms. A sliding window lets the limit
//! through once per burst.
//!
//! Soundness on a loaded machine: each call goes out between two TIMEs in
//! one pipeline ([`bracketed`]), so its decision instant lies between
//! them, on the clock the module reads; only admissions whose bracket lies
//! wholly inside an interval count toward it ([`most_within`]). Slow
//! threads can only hide admissions from the count, never add any: a
//! failure is a real excess.
#![cfg(test)]

use redis_ratelimit_testkit::*;

use std::time::Duration;

/// Window and limit of both limiters.
const WINDOW_US: u64 = 500_000;
const LIMIT: usize = 20;
/// Bursts: `BURST_US` on each side of every whole second.
const PERIOD_US: u64 = 1_000_000;
const BURST_US: u64 = 100_000;
const CONNECTIONS: usize = 8;

fn in_burst(t_us: u64) -> bool {
    let p = t_us % PERIOD_US;
    !(BURST_US..PERIOD_US - BURST_US).contains(&p)
}

/// Runs `args` from every connection through `bursts` bursts; returns each
/// admission's bracket in server microseconds.
fn bursts(server: &Server, args: &[&str], bursts: u64) -> Vec<(u64, u64)> {
    let mut c = server.connect();
    let start = server_now_ns(&mut c) / 1000;
    // The end of the `bursts`-th burst to start after now.
    let end = (start / PERIOD_US + bursts) * PERIOD_US + BURST_US;
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let mut c = server.connect();
            let args = args.clone();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let allowed = |r: &[i64]| r[0] == 1;
                let mut mine = vec![];
                loop {
                    let now = server_now_ns(&mut c) / 1000;
                    if now >= end {
                        break;
                    }
                    if !in_burst(now) {
                        // Until the next burst, by the server's clock.
                        let wait = PERIOD_US - BURST_US - now % PERIOD_US;
                        std::thread::sleep(Duration::from_micros(wait));
                        continue;
                    }
                    let (t0, reply, t1) = bracketed(&mut c, &args);
                    if allowed(&reply) {
                        mine.push((t0 / 1000, t1 / 1000));
                    }
                }
                mine
            })
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

#[test]
fn no_interval_of_one_window_holds_more_than_the_limit_under_concurrent_bursts() {
    let s = Server::start();
    let window = format!("{}", WINDOW_US as f64 / 1e6);
    let limit = LIMIT.to_string();

    // The same load on an epoch-aligned fixed window: the check catches
    // it letting twice the limit through around a boundary (a few bursts
    // at most: a burst can miss its chance on a loaded machine).
    let mut caught = None;
    for round in 0..8 {
        let key = format!("fixed:{round}");
        let adm = bursts(&s, &["RL.FIXED", &key, &limit, &window], 1);
        let (most, at) = most_within(&adm, WINDOW_US);
        eprintln!(
            "RL.FIXED, burst {round}: {} admitted, at most {most} certainly within one window",
            adm.len()
        );
        if most > LIMIT {
            caught = Some((most, at));
            break;
        }
    }
    let (most, at) = caught.expect("the check never caught the fixed window's excess");
    eprintln!("the check catches RL.FIXED: {most} admissions within {WINDOW_US} us from {at} us");

    // The sliding window under the same load: never more than the limit.
    let adm = bursts(&s, &["RL.SLIDING", "sliding", &limit, &window], 4);
    let (most, at) = most_within(&adm, WINDOW_US);
    eprintln!(
        "RL.SLIDING: {} admitted in 4 bursts, at most {most} certainly within one window",
        adm.len()
    );
    assert!(
        most <= LIMIT,
        "{most} admissions decided within {WINDOW_US} us from {at} us (server clock)"
    );
    // The load was real: the limit went through in bursts.
    assert!(adm.len() >= 2 * LIMIT, "only {} admitted", adm.len());
}

/// The check's power without timing: admissions on the module's test
/// clock, the limit 1 ms before a window boundary and the limit at it. A
/// fixed window admits all of them and the check flags it; a sliding
/// window admits the first half only.
#[test]
fn the_check_flags_a_fixed_window_at_its_boundary() {
    let s = Server::start();
    let mut c = s.connect();
    let boundary = clock_start(&mut c) / (WINDOW_US * 1000) * (WINDOW_US * 1000);
    let window = format!("{}", WINDOW_US as f64 / 1e6);
    let limit = LIMIT.to_string();
    for (name, admitted_all) in [("RL.FIXED", true), ("RL.SLIDING", false)] {
        let mut adm = vec![];
        for at in [boundary - 1_000_000, boundary] {
            set_clock(&mut c, at);
            for _ in 0..LIMIT {
                if rl(&mut c, &[name, name, &limit, &window])[0] == 1 {
                    adm.push((at / 1000, at / 1000));
                }
            }
        }
        let (most, _) = most_within(&adm, WINDOW_US);
        assert_eq!(
            (adm.len(), most > LIMIT),
            (if admitted_all { 2 * LIMIT } else { LIMIT }, admitted_all),
            "{name}"
        );
    }
}
