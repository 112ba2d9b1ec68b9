#![cfg(test)]
//! Redis killed and restarted under load, with the documented constructor
//! (`Limiter::connect`, and the blocking one): under each failure policy
//! the worst case during the outage holds, and decisions come back from
//! Redis within `BACK_TO_REDIS` of its return. Each run prints a row of
//! the outage table (connection, policy, admissions during the outage,
//! most admissions in any 3 s window, time back to Redis).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_ratelimit_client::{
    blocking, FailurePolicy, Health, Limiter, Limits, Share, SlidingWindow, Source, BACK_TO_REDIS,
};
use redis_ratelimit_testkit::Server;

const LIMIT: u64 = 5;
const WINDOW: Duration = Duration::from_secs(3);
const WORKERS: usize = 8;
const EVERY: Duration = Duration::from_millis(50);
const DOWN_AT: Duration = Duration::from_secs(2);
const UP_AT: Duration = Duration::from_secs(6);
const END: Duration = Duration::from_secs(10);

fn limits() -> Limits {
    Limits::single("partner", SlidingWindow::new(LIMIT, WINDOW).unwrap()).unwrap()
}

/// (since start, allowed, source)
type Log = Arc<Mutex<Vec<(Duration, bool, Source)>>>;

struct Row {
    connection: &'static str,
    policy: String,
    during: usize,
    max_window: usize,
    max_window_fallback: usize,
    back: Duration,
    degraded_seen: bool,
}

/// The most admissions in any window of `WINDOW` among `times`.
fn max_in_window(mut times: Vec<Duration>) -> usize {
    times.sort();
    let mut best = 0;
    for (i, t) in times.iter().enumerate() {
        let n = times[i..].iter().take_while(|u| **u < *t + WINDOW).count();
        best = best.max(n);
    }
    best
}

fn summarize(
    connection: &'static str,
    policy: FailurePolicy,
    log: &Log,
    down: Duration,
    up: Duration,
    degraded_seen: bool,
) -> Row {
    let log = log.lock().unwrap().clone();
    let during = log
        .iter()
        .filter(|(t, allowed, s)| *allowed && *t >= down && *s != Source::Redis)
        .count();
    let back = log
        .iter()
        .filter(|(t, _, s)| *t >= up && *s == Source::Redis)
        .map(|(t, _, _)| *t - up)
        .min()
        .unwrap_or(Duration::MAX);
    let admitted: Vec<Duration> = log.iter().filter(|e| e.1).map(|e| e.0).collect();
    let fallback: Vec<Duration> = log
        .iter()
        .filter(|e| e.1 && e.2 == Source::Fallback)
        .map(|e| e.0)
        .collect();
    let row = Row {
        connection,
        policy: format!("{policy:?}"),
        during,
        max_window: max_in_window(admitted),
        max_window_fallback: max_in_window(fallback),
        back,
        degraded_seen,
    };
    eprintln!(
        "| {} | {} | {} | {} | {} | {} ms |",
        row.connection,
        row.policy,
        row.during,
        row.max_window,
        row.max_window_fallback,
        row.back.as_millis()
    );
    row
}

fn check(row: &Row, policy: FailurePolicy) {
    assert!(
        row.degraded_seen,
        "{}: the health hook never said Degraded",
        row.policy
    );
    assert!(
        row.back <= BACK_TO_REDIS,
        "{}: back to Redis after {:?} (documented worst case {:?})",
        row.policy,
        row.back,
        BACK_TO_REDIS
    );
    let outage = UP_AT - DOWN_AT;
    match policy {
        FailurePolicy::FailClosed => assert_eq!(row.during, 0, "{}", row.policy),
        FailurePolicy::FailOpen => {
            // Everything: about 8 workers x 20 calls a second, minus slack.
            let calls = (outage.as_millis() / EVERY.as_millis()) as usize * WORKERS;
            assert!(
                row.during >= calls / 2,
                "{}: {} of ~{calls}",
                row.policy,
                row.during
            );
        }
        FailurePolicy::Fallback(_) => {
            // The sliding window stays a sliding window: never more than
            // LIMIT in any WINDOW decided locally.
            assert!(
                row.max_window_fallback as u64 <= LIMIT,
                "{}: {}",
                row.policy,
                row.max_window_fallback
            );
            assert!(
                row.during > 0,
                "{}: the fallback admitted nothing",
                row.policy
            );
        }
        _ => {}
    }
}

async fn async_run(policy: FailurePolicy) -> Row {
    let server = Server::start();
    let client = redis::Client::open(server.url()).unwrap();
    let degraded = Arc::new(Mutex::new(false));
    let seen = degraded.clone();
    let limiter = Limiter::connect(&client, limits(), policy)
        .unwrap()
        .on_health_change(move |h| {
            if h == Health::Degraded {
                *seen.lock().unwrap() = true;
            }
        });
    let start = Instant::now();
    let log: Log = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..WORKERS {
        let (limiter, log) = (limiter.clone(), log.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < END {
                let d = limiter.check("partner").await.unwrap();
                log.lock()
                    .unwrap()
                    .push((start.elapsed(), d.decision.allowed, d.decision.source));
                tokio::time::sleep(EVERY).await;
            }
        }));
    }
    tokio::time::sleep(DOWN_AT).await;
    let stopped = server.stop();
    let down = start.elapsed();
    tokio::time::sleep(UP_AT - DOWN_AT).await;
    let server = tokio::task::spawn_blocking(move || stopped.start())
        .await
        .unwrap();
    let up = start.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    drop(server);
    let seen = *degraded.lock().unwrap();
    summarize(
        "Limiter::connect (ConnectionManager)",
        policy,
        &log,
        down,
        up,
        seen,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_under_each_failure_policy() {
    eprintln!("| connection | policy | admitted during the outage | most in any 3 s | most in any 3 s, fallback | back to Redis |");
    for policy in [
        FailurePolicy::FailOpen,
        FailurePolicy::FailClosed,
        FailurePolicy::Fallback(Share::Whole),
    ] {
        let row = async_run(policy).await;
        check(&row, policy);
    }
}

fn blocking_run(policy: FailurePolicy) -> Row {
    let server = Server::start();
    let client = redis::Client::open(server.url()).unwrap();
    let degraded = Arc::new(Mutex::new(false));
    let seen = degraded.clone();
    let limiter =
        blocking::Limiter::connect(&client, limits(), policy).on_health_change(move |h| {
            if h == Health::Degraded {
                *seen.lock().unwrap() = true;
            }
        });
    let start = Instant::now();
    let log: Log = Arc::default();
    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (limiter, log) = (limiter.clone(), log.clone());
            std::thread::spawn(move || {
                while start.elapsed() < END {
                    let d = limiter.check("partner").unwrap();
                    log.lock().unwrap().push((
                        start.elapsed(),
                        d.decision.allowed,
                        d.decision.source,
                    ));
                    std::thread::sleep(EVERY);
                }
            })
        })
        .collect();
    std::thread::sleep(DOWN_AT);
    let stopped = server.stop();
    let down = start.elapsed();
    std::thread::sleep(UP_AT - DOWN_AT);
    let server = stopped.start();
    let up = start.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    drop(server);
    let seen = *degraded.lock().unwrap();
    summarize("blocking::Limiter::connect", policy, &log, down, up, seen)
}

#[test]
fn the_blocking_limiter_survives_the_same_outage() {
    for policy in [
        FailurePolicy::FailClosed,
        FailurePolicy::Fallback(Share::divided_by(2)),
    ] {
        let row = blocking_run(policy);
        check(&row, policy);
    }
}
