//! 32 connections hammering one key: the total admitted equals the
//! theoretical count for the elapsed time, within one refill (plus the
//! measuring slack), never above.
//! Elapsed time is read from the server's own clock (TIME) just before the
//! first request can leave and just after the last reply.
#![cfg(test)]

use redis_ratelimit_testkit::*;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// The measured interval holds the demand plus the time before the first
/// request reaches the server and after the last reply: up to this much
/// (32 threads starting on 2 cores can be that late). The lower bounds
/// allow for it; slow rates (10 a second) keep it under a token.
const SLACK_S: f64 = 0.05;

/// The server's clock, in seconds.
fn server_time(c: &mut redis::Connection) -> f64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(c).unwrap();
    s as f64 + us as f64 / 1e6
}

/// Runs `args` from `conns` connections for `run`; returns (admitted, elapsed
/// seconds on the server's clock).
fn hammer(
    server: &Server,
    conns: usize,
    run: Duration,
    args: &[&str],
    allowed: (usize, i64),
) -> (i64, f64) {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let mut c = server.connect();
            let barrier = barrier.clone();
            let args = args.clone();
            std::thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                barrier.wait();
                let deadline = Instant::now() + run;
                let mut admitted = 0i64;
                while Instant::now() < deadline {
                    let reply: Vec<i64> = {
                        let mut cmd = redis::cmd(args[0]);
                        for a in &args[1..] {
                            cmd.arg(*a);
                        }
                        cmd.query(&mut c).unwrap()
                    };
                    if reply[allowed.0] == allowed.1 {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut c = server.connect();
    let start = server_time(&mut c);
    barrier.wait();
    let total = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (total, server_time(&mut c) - start)
}

#[test]
fn token_bucket_admits_the_theoretical_count_within_one_refill() {
    let s = Server::start();
    // 10 tokens, 10 a second: one refill every 100 ms.
    let (admitted, elapsed) = hammer(
        &s,
        32,
        Duration::from_millis(1500),
        &["RL.TOKENBUCKET", "hot", "10", "10", "1"],
        (0, 1),
    );
    let theory = 10.0 + 10.0 * elapsed;
    let floor = theory - 1.0 - 10.0 * SLACK_S;
    println!("token bucket: {admitted} admitted in {elapsed:.4} s, theory {theory:.2}");
    assert!(admitted as f64 <= theory, "{admitted} > {theory}");
    assert!(
        admitted as f64 >= floor,
        "{admitted} more than one refill below {theory}"
    );
}

#[test]
fn gcra_and_throttle_admit_the_theoretical_count_within_one_refill() {
    let s = Server::start();
    let (admitted, elapsed) = hammer(
        &s,
        32,
        Duration::from_millis(1200),
        &["RL.GCRA", "g", "5", "10", "1"],
        (0, 1),
    );
    let theory = 5.0 + 10.0 * elapsed;
    let floor = theory - 1.0 - 10.0 * SLACK_S;
    assert!(
        admitted as f64 <= theory && admitted as f64 >= floor,
        "gcra {admitted} vs {theory}"
    );
    // CL.THROTTLE answers 0 when allowed: max_burst 4 (limit 5), 10 per second.
    let (admitted, elapsed) = hammer(
        &s,
        32,
        Duration::from_millis(1200),
        &["CL.THROTTLE", "t", "4", "10", "1"],
        (0, 0),
    );
    let theory = 5.0 + 10.0 * elapsed;
    let floor = theory - 1.0 - 10.0 * SLACK_S;
    assert!(
        admitted as f64 <= theory && admitted as f64 >= floor,
        "throttle {admitted} vs {theory}"
    );
}

#[test]
fn sliding_window_never_admits_more_than_limit_per_window() {
    let s = Server::start();
    let (admitted, elapsed) = hammer(
        &s,
        32,
        Duration::from_millis(1500),
        &["RL.SLIDING", "hot", "100", "0.5"],
        (0, 1),
    );
    // Demand never stops: each window admits exactly its limit.
    let windows = (elapsed / 0.5).floor() + 1.0;
    println!(
        "sliding window: {admitted} admitted in {elapsed:.4} s, at most {}",
        100.0 * windows
    );
    assert!(admitted as f64 <= 100.0 * windows);
    assert!(
        admitted as f64 >= 100.0 * (elapsed / 0.5).floor(),
        "{admitted} too low"
    );
}

#[test]
fn rl_all_consumes_from_every_key_alike_and_within_every_bound() {
    let s = Server::start();
    let args = [
        "RL.ALL",
        "LIMIT",
        "{h}:tb",
        "TOKENBUCKET",
        "10",
        "10",
        "LIMIT",
        "{h}:sw",
        "SLIDING",
        "1000",
        "60",
        "LIMIT",
        "{h}:fw",
        "FIXED",
        "1000",
        "HOUR",
    ];
    let (admitted, elapsed) = hammer(&s, 32, Duration::from_millis(1500), &args, (0, 1));
    let theory = 10.0 + 10.0 * elapsed;
    let floor = theory - 1.0 - 10.0 * SLACK_S;
    println!("RL.ALL: {admitted} admitted in {elapsed:.4} s, theory {theory:.2}");
    assert!(
        admitted as f64 <= theory && admitted as f64 >= floor,
        "{admitted} vs {theory}"
    );
    // Every key spent exactly what RL.ALL admitted: none spent on denials.
    let mut c = s.connect();
    let sw = rl(&mut c, &["RL.SLIDING", "{h}:sw", "1000", "60", "COST", "0"]);
    let fw = rl(&mut c, &["RL.FIXED", "{h}:fw", "1000", "HOUR", "COST", "0"]);
    assert_eq!(1000 - sw[2], admitted);
    assert!(
        1000 - fw[2] <= admitted,
        "fixed window may have rolled over the hour"
    );
}
