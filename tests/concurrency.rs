#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! 32 connections hammering one key: the total admitted stays within the
//! theoretical bound, never above it.

use redis_ratelimit_testkit::*;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Runs `args` from `conns` connections for `run` and returns (admitted units, elapsed).
fn hammer(
    server: &Server,
    conns: usize,
    run: Duration,
    args: &'static [&'static str],
) -> (i64, Duration) {
    let barrier = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let mut c = server.connect();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let deadline = Instant::now() + run;
                let mut admitted = 0i64;
                while Instant::now() < deadline {
                    if rl(&mut c, args)[0] == 1 {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    // Timed from before the first request can leave to after the last reply.
    let start = Instant::now();
    barrier.wait();
    let total = handles.into_iter().map(|h| h.join().unwrap()).sum();
    (total, start.elapsed())
}

#[test]
fn token_bucket_admits_capacity_plus_rate_times_elapsed_at_most() {
    let s = Server::start();
    let (admitted, elapsed) = hammer(
        &s,
        32,
        Duration::from_millis(1500),
        &["RL.TOKENBUCKET", "hot", "50", "400", "1"],
    );
    let bound = 50.0 + 400.0 * elapsed.as_secs_f64();
    println!("token bucket: {admitted} admitted in {elapsed:?}, bound {bound:.1}");
    assert!(admitted as f64 <= bound, "{admitted} > {bound}");
    // Demand never stopped, so nearly every token was taken.
    assert!(
        admitted as f64 >= 50.0 + 400.0 * (elapsed.as_secs_f64() - 0.3),
        "{admitted} too low"
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
    );
    let windows = (elapsed.as_secs_f64() / 0.5).floor() + 1.0;
    println!(
        "sliding window: {admitted} admitted in {elapsed:?}, bound {}",
        100.0 * windows
    );
    assert!(admitted as f64 <= 100.0 * windows);
    assert!(admitted >= 300, "{admitted} too low");
}
