//! The soak (`make soak`; `make test` runs it for 20 s): 60 s of 24
//! connections on a few keys of every limiter, with a replica
//! attached. Every key stays within its bound for the whole run:
//! - token bucket, GCRA, CL.THROTTLE: admitted <= burst + rate * elapsed,
//!   and (demand never stops) at least rate * elapsed;
//! - sliding window: no interval of one window holds more than the limit,
//!   judged from each admission's send and reply times;
//! - fixed window: no epoch-aligned window holds more than the limit;
//! - RL.ALL: both bounds for the limits it takes together.
//!
//! Then the replica holds the same bytes (of the long-lived keys some
//! requests also write). `RL_SOAK_SECS` changes the length.
#![cfg(test)]

use redis_ratelimit_testkit::*;

use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 24;
const KEYS_EACH: usize = 3;

/// Tokens per second and burst of the rate-based limiters.
const RATE: f64 = 50.0;
const BURST: i64 = 50;
/// Limit per window and window length of the window-based ones.
const WINDOW_LIMIT: usize = 30;
const WINDOW_MS: u64 = 500;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Kind {
    Bucket,
    Gcra,
    Throttle,
    Sliding,
    Fixed,
    All,
}

fn command(kind: Kind, i: usize) -> Vec<String> {
    let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let key = format!("soak:{kind:?}:{i}");
    match kind {
        Kind::Bucket => s(&["RL.TOKENBUCKET", &key, "50", "50", "1"]),
        Kind::Gcra => s(&["RL.GCRA", &key, "50", "50", "1"]),
        // max_burst 49: a limit of 50.
        Kind::Throttle => s(&["CL.THROTTLE", &key, "49", "50", "1", "1"]),
        Kind::Sliding => s(&["RL.SLIDING", &key, "30", "0.5"]),
        Kind::Fixed => s(&["RL.FIXED", &key, "30", "0.5"]),
        Kind::All => s(&[
            "RL.ALL",
            "LIMIT",
            &format!("{{soak{i}}}:bucket"),
            "TOKENBUCKET",
            "50",
            "50",
            "LIMIT",
            &format!("{{soak{i}}}:window"),
            "SLIDING",
            "30",
            "0.5",
        ]),
    }
}

fn allowed(kind: Kind, reply: &[i64]) -> bool {
    match kind {
        Kind::Throttle => reply[0] == 0,
        _ => reply[0] == 1,
    }
}

/// Admissions as the server's clock (TIME) just before and just after
/// each decision, in microseconds: the module decides on that clock.
type Admissions = Vec<(u64, u64)>;

/// No interval of `window_us` holds more than `limit` admissions. Only
/// admissions whose whole bracket falls inside [s, s + window) are
/// certain to have been decided there, so those are counted.
fn assert_sliding_bound(what: &str, adm: &mut Admissions, limit: usize, window_us: u64) {
    let (inside, from) = most_within(adm, window_us);
    assert!(
        inside <= limit,
        "{what}: {inside} admissions decided within {window_us} us from {from}"
    );
}

/// No epoch-aligned window holds more than `limit` admissions (counting
/// those whose round trip lies in one window).
fn assert_fixed_bound(what: &str, adm: &Admissions, limit: usize, window_us: u64) {
    let mut per: HashMap<u64, usize> = HashMap::new();
    for &(s, r) in adm {
        if s / window_us == r / window_us {
            *per.entry(s / window_us).or_default() += 1;
        }
    }
    for (w, n) in per {
        assert!(n <= limit, "{what}: {n} admissions in window {w}");
    }
}

#[test]
#[ignore = "a minute long: run by `make soak`, and for 20 s by `make test`"]
fn a_minute_of_many_connections_keeps_every_limiter_within_its_bound() {
    let secs: u64 = std::env::var("RL_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let kinds = [
        Kind::Bucket,
        Kind::Sliding,
        Kind::Gcra,
        Kind::Throttle,
        Kind::Fixed,
        Kind::All,
    ];
    eprintln!("soaking {kinds:?} for {secs} s on {CONNECTIONS} connections");
    let targets: Vec<(Kind, usize)> = kinds
        .iter()
        .flat_map(|&k| (0..KEYS_EACH).map(move |i| (k, i)))
        .collect();

    let barrier = Arc::new(Barrier::new(CONNECTIONS + 1));
    let seed = Rng::seed_from_env("RL_SOAK_SEED");
    eprintln!("soak seed {seed} (rerun with RL_SOAK_SEED={seed})");
    let handles: Vec<_> = (0..CONNECTIONS)
        .map(|n| {
            let mut c = master.connect();
            let barrier = barrier.clone();
            let targets = targets.clone();
            let mut r = Rng::new(seed + n as u64);
            std::thread::spawn(move || {
                let mut mine: HashMap<(Kind, usize), Admissions> = HashMap::new();
                let mut requests = 0u64;
                barrier.wait();
                let deadline = Instant::now() + Duration::from_secs(secs);
                while Instant::now() < deadline {
                    if r.one_in(50) {
                        // Long-lived state, for the replica comparison at the end.
                        let k = r.below(8).to_string();
                        rl_on(
                            &mut c,
                            &[
                                "RL.TOKENBUCKET",
                                &format!("soak:long:tb:{k}"),
                                "1000000",
                                "0.001",
                                "1",
                            ],
                        );
                        rl_on(
                            &mut c,
                            &[
                                "RL.SLIDING",
                                &format!("soak:long:sw:{k}"),
                                "1000000",
                                "3600",
                            ],
                        );
                    }
                    let (kind, i) = r.pick(&targets);
                    let args = command(kind, i);
                    let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                    let (sent, reply, replied) = bracketed(&mut c, &args);
                    let (sent, replied) = (sent / 1000, replied / 1000);
                    requests += 1;
                    if allowed(kind, &reply) {
                        mine.entry((kind, i)).or_default().push((sent, replied));
                    }
                }
                (mine, requests)
            })
        })
        .collect();
    // Timed on the server's clock from before the first request can leave
    // to after the last reply.
    let start = server_now_ns(&mut m);
    barrier.wait();
    let mut all: HashMap<(Kind, usize), Admissions> = HashMap::new();
    let mut requests = 0;
    for h in handles {
        let (mine, n) = h.join().unwrap();
        requests += n;
        for (k, v) in mine {
            all.entry(k).or_default().extend(v);
        }
    }
    let elapsed = (server_now_ns(&mut m) - start) as f64 / 1e9;
    eprintln!("{requests} requests in {elapsed:.1} s");

    let rate_bound = BURST as f64 + RATE * elapsed;
    let window_us = WINDOW_MS * 1000;
    for (kind, i) in &targets {
        let what = format!("{kind:?} {i}");
        let mut adm = all.remove(&(*kind, *i)).unwrap_or_default();
        let n = adm.len() as f64;
        eprintln!("{what}: {n} admitted");
        match kind {
            Kind::Bucket | Kind::Gcra | Kind::Throttle => {
                assert!(n <= rate_bound, "{what}: {n} admitted > {rate_bound:.1}");
                assert!(n >= RATE * elapsed, "{what}: only {n} admitted");
            }
            Kind::Sliding => {
                assert_sliding_bound(&what, &mut adm, WINDOW_LIMIT, window_us);
                let floor = 0.5 * WINDOW_LIMIT as f64 * elapsed * 1000.0 / WINDOW_MS as f64;
                assert!(n >= floor, "{what}: only {n} admitted");
            }
            Kind::Fixed => {
                assert_fixed_bound(&what, &adm, WINDOW_LIMIT, window_us);
                let floor = 0.5 * WINDOW_LIMIT as f64 * elapsed * 1000.0 / WINDOW_MS as f64;
                assert!(n >= floor, "{what}: only {n} admitted");
            }
            Kind::All => {
                // Admitted only when both allowed: within both bounds.
                assert!(n <= rate_bound, "{what}: {n} admitted > {rate_bound:.1}");
                assert_sliding_bound(&what, &mut adm, WINDOW_LIMIT, window_us);
            }
        }
    }
    wait_caught_up(&master, &replica);
    let keys = assert_same_state(&mut m, &mut replica.connect());
    eprintln!("{keys} keys identical on the replica");
    assert!(keys >= 16, "{keys}");
}
