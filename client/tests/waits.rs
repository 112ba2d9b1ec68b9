#![cfg(test)]
//! Waiting that is fair: 8 workers share "5 a second" AND 500 a day (the
//! day at New York midnight) and each waits for its next call, over and
//! over. Served first come, first served, they take turns: per-worker
//! admissions never differ by more than one. Inside the server (`BLOCK`,
//! with `Limiter::connect` and the blocking limiter) and, where a limiter
//! polls, in line in the process. A deadline is "up to": a wait that
//! cannot be admitted in time still lasts to its deadline.
//!
//! What is judged comes from the server, not this machine's clock: the
//! admissions are the server's (its AOF records each one with the instant
//! it was made, on its clock), so over-admission (6 within a second) and
//! admissions the workers saw but the server never made (or the reverse)
//! both fail. Turns are counted from the workers' own replies, which no
//! scheduling delay can change; see [`run`] for why the order in which the
//! workers arrive does not matter.

use std::time::{Duration, Instant};

use redis_ratelimit_client::{
    blocking, AllDecision, CalendarUnit, Error, FailurePolicy, FixedWindow, Limiter, Limits,
    SlidingWindow, Source,
};
use redis_ratelimit_testkit::{aof_commands, info_int, server_now_ns, Server, AOF_COMMANDS};

mod support;

const WORKERS: usize = 8;
const RUN: Duration = Duration::from_secs(4);
/// 5 a second.
const LIMIT: usize = 5;
const SPAN_US: u64 = 1_000_000;
/// How far apart the limit is filled before the workers start.
const FILL_GAP: Duration = Duration::from_millis(200);
/// The sliding window's key (the caller's key is "partner").
const SECOND_KEY: &str = "rl:{partner}:second";

fn limits() -> Limits {
    Limits::builder()
        .limit(
            "second",
            SlidingWindow::new(LIMIT as u64, Duration::from_secs(1)).unwrap(),
        )
        .limit(
            "day",
            FixedWindow::calendar(500, CalendarUnit::Day)
                .unwrap()
                .in_time_zone("America/New_York")
                .unwrap(),
        )
        .build()
        .unwrap()
}

/// A server whose AOF is the stream of admissions (one RL.WINDOWADD each,
/// with its instant).
fn server() -> Server {
    Server::start_with(AOF_COMMANDS)
}

/// The instants (µs, server clock) of every admission on `key`, in the
/// order the server made them.
fn admissions(s: &Server, key: &str) -> Vec<u64> {
    aof_commands(&s.dir)
        .into_iter()
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.WINDOWADD") && a[1] == key.as_bytes())
        .map(|a| {
            let p = &a[2];
            let units = u64::from_le_bytes(p[24..32].try_into().unwrap());
            assert_eq!(units, 1, "one unit per admission");
            u64::from_le_bytes(p[16..24].try_into().unwrap())
        })
        .collect()
}

/// The limit's `LIMIT` units are taken `FILL_GAP` apart before the
/// workers start, each decided by Redis: every worker then starts in line,
/// and the admissions that follow come `FILL_GAP` apart (a sliding window
/// admits again at the instants of the units it forgets).
fn filled(d: AllDecision) {
    assert!(
        d.decision.allowed && d.decision.source == Source::Redis,
        "{d:?}"
    );
}

async fn fill<C: redis_ratelimit_client::LimiterConnection>(l: &Limiter<C>) {
    for i in 0..LIMIT {
        if i > 0 {
            tokio::time::sleep(FILL_GAP).await;
        }
        filled(l.check("partner").await.unwrap());
    }
}

/// The checks, on the server's record of the run (`server_secs` long on
/// its clock) and each worker's count of its admissions:
/// - the server made exactly the fill's admissions and the workers'
///   (none the workers did not see, none they saw that it did not make);
/// - never `LIMIT + 1` within a second, on the server's clock;
/// - as many as the limit allows, give or take a loaded machine (half);
/// - turns: per-worker admissions differ by at most one.
fn check(what: &str, s: &Server, per_worker: &[usize], server_secs: f64) {
    let at = admissions(s, SECOND_KEY);
    let seen: usize = per_worker.iter().sum();
    eprintln!(
        "{what}: {} admissions in {server_secs:.1} s ({LIMIT} by the fill), per worker {per_worker:?}",
        at.len()
    );
    assert_eq!(
        at.len(),
        LIMIT + seen,
        "{what}: the server made {} admissions, the workers saw {seen} after the fill's {LIMIT}",
        at.len()
    );
    for k in LIMIT..at.len() {
        assert!(
            at[k] - at[k - LIMIT] >= SPAN_US,
            "{what}: admission {k} at {} µs is {} µs after admission {}",
            at[k],
            at[k] - at[k - LIMIT],
            k - LIMIT
        );
    }
    assert!(
        (at.len() as f64) * 2.0 >= LIMIT as f64 * server_secs,
        "{what}: only {} admissions in {server_secs:.1} s",
        at.len()
    );
    let (lo, hi) = (
        per_worker.iter().min().unwrap(),
        per_worker.iter().max().unwrap(),
    );
    assert!(hi - lo <= 1, "{what}: per-worker admissions {per_worker:?}");
}

/// Runs `WORKERS` workers, all at once, each calling `call` (a wait for
/// one unit) until `RUN` has passed; returns each one's admissions.
///
/// The order they arrive in does not matter: served first come, first
/// served, each admitted worker queues again behind the others, so they
/// take turns in whatever order they first queued, and admissions
/// `FILL_GAP` apart give each one 200 ms to queue again before the next
/// admission. Per-worker counts could differ by two only if one worker
/// stayed out of line for a whole round (7 admissions, 1.4 s) while the
/// others ran.
async fn run<F, Fut>(call: F) -> Vec<usize>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let start = Instant::now();
    let counts: Vec<_> = (0..WORKERS)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut admitted = 0;
                while start.elapsed() < RUN {
                    call().await.unwrap();
                    admitted += 1;
                }
                admitted
            })
        })
        .collect();
    let mut out = vec![];
    for c in counts {
        out.push(c.await.unwrap());
    }
    out
}

fn server_secs(since_ns: u64, s: &Server) -> f64 {
    (server_now_ns(&mut s.connect()) - since_ns) as f64 / 1e9
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_take_turns_in_line_inside_the_server() {
    let s = server();
    let t0 = server_now_ns(&mut s.connect());
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = Limiter::connect(&client, limits(), FailurePolicy::FailClosed).unwrap();
    fill(&limiter).await;
    let l = limiter.clone();
    let per_worker = run(move || {
        let l = l.clone();
        async move { l.wait("partner", Duration::from_secs(30)).await.map(|_| ()) }
    })
    .await;
    check("BLOCK", &s, &per_worker, server_secs(t0, &s));
    // They waited inside the server: one call per admission, no polling.
    let mut c = s.connect();
    let admitted: usize = per_worker.iter().sum();
    assert_eq!(
        info_int(&mut c, "ratelimit", "ratelimit_all_calls") as usize,
        LIMIT + admitted + info_int(&mut c, "ratelimit", "ratelimit_waits_timed_out") as usize,
    );
    assert!(info_int(&mut c, "ratelimit", "ratelimit_waits_admitted") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_take_turns_when_the_limiter_polls() {
    let s = server();
    let t0 = server_now_ns(&mut s.connect());
    let limiter = Limiter::new(
        support::manager(&s).await,
        limits(),
        FailurePolicy::FailClosed,
    );
    fill(&limiter).await;
    let l = limiter.clone();
    let per_worker = run(move || {
        let l = l.clone();
        async move { l.wait("partner", Duration::from_secs(30)).await.map(|_| ()) }
    })
    .await;
    check(
        "polling, in line in the process",
        &s,
        &per_worker,
        server_secs(t0, &s),
    );
}

#[test]
fn eight_threads_take_turns_with_the_blocking_limiter() {
    let s = server();
    let t0 = server_now_ns(&mut s.connect());
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = blocking::Limiter::connect(&client, limits(), FailurePolicy::FailClosed);
    for i in 0..LIMIT {
        if i > 0 {
            std::thread::sleep(FILL_GAP);
        }
        filled(limiter.check("partner").unwrap());
    }
    let start = Instant::now();
    let threads: Vec<_> = (0..WORKERS)
        .map(|_| {
            let l = limiter.clone();
            std::thread::spawn(move || {
                let mut admitted = 0;
                while start.elapsed() < RUN {
                    l.wait("partner", Duration::from_secs(30)).unwrap();
                    admitted += 1;
                }
                admitted
            })
        })
        .collect();
    let per_worker: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    check(
        "blocking::Limiter, BLOCK",
        &s,
        &per_worker,
        server_secs(t0, &s),
    );
}

/// The server's counts of calls and waits (`INFO ratelimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts {
    calls: i64,
    started: i64,
    admitted: i64,
    timed_out: i64,
}

fn counts(s: &Server) -> Counts {
    let mut c = s.connect();
    let mut f = |name: &str| info_int(&mut c, "ratelimit", &format!("ratelimit_{name}"));
    Counts {
        // A single limit is sent as RL.SLIDING, several as RL.ALL.
        calls: f("sliding_calls") + f("all_calls"),
        started: f("waits_started"),
        admitted: f("waits_admitted"),
        timed_out: f("waits_timed_out"),
    }
}

/// The `BLOCK` arguments of the calls the server logged since `SLOWLOG
/// RESET` (every call is logged: `slowlog-log-slower-than 0`).
fn blocks_asked(s: &Server) -> Vec<u64> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(1000)
        .query(&mut s.connect())
        .unwrap();
    let word = |v: &redis::Value| match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        other => format!("{other:?}"),
    };
    let mut blocks = Vec::new();
    for e in entries {
        let redis::Value::Array(fields) = e else {
            continue;
        };
        let Some(redis::Value::Array(args)) = fields.get(3) else {
            continue;
        };
        let args: Vec<String> = args.iter().map(word).collect();
        if let Some(i) = args.iter().position(|a| a.eq_ignore_ascii_case("BLOCK")) {
            blocks.push(args[i + 1].parse().unwrap());
        }
    }
    blocks
}

/// A deadline is "up to": a wait that cannot be admitted in time lasts to
/// its deadline, never less (this process's monotonic clock: a loaded
/// machine makes a wait longer, never shorter), and ends there. That it
/// ends there is judged by what the server saw, not by how late this
/// machine woke: inside the server, one call that asked to wait at most
/// the deadline (`BLOCK`, from the server's log of calls) and that the
/// server ended at it (its count of timeouts); when polling, two tries,
/// the first and one at the deadline, and a denial (a poller that slept
/// past its deadline to the window's end would have been allowed). A
/// refund while a wait is in line admits it at once inside the server:
/// the server counts it admitted from the line, not timed out (with a
/// minute-long window, only the refund can admit it); when polling, at
/// its last try at the deadline (it sleeps to it).
#[tokio::test]
async fn a_deadline_is_waited_out_never_cut_short() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limits = Limits::single(
        "minute",
        SlidingWindow::new(1, Duration::from_secs(60)).unwrap(),
    )
    .unwrap();
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(0)
        .arg("slowlog-max-len")
        .arg(1000)
        .query::<()>(&mut s.connect())
        .unwrap();
    for (limiter, in_server) in [
        (
            Limiter::connect(&client, limits.clone(), FailurePolicy::FailClosed).unwrap(),
            true,
        ),
        (
            Limiter::new(
                support::manager(&s).await,
                limits.clone(),
                FailurePolicy::FailClosed,
            )
            .with_prefix("poll:")
            .unwrap(),
            false,
        ),
    ] {
        assert!(limiter.check("k").await.unwrap().decision.allowed);
        redis::cmd("SLOWLOG")
            .arg("RESET")
            .query::<()>(&mut s.connect())
            .unwrap();
        let before = counts(&s);
        let t = Instant::now();
        match limiter.wait("k", Duration::from_millis(700)).await {
            Err(Error::TimedOut { last }) => {
                let retry = last.decision.retry_after.unwrap();
                assert!(
                    !last.decision.allowed
                        && retry > Duration::ZERO
                        && retry <= Duration::from_secs(60),
                    "{last:?}"
                )
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(700), "{took:?}");
        let after = counts(&s);
        if in_server {
            let blocks = blocks_asked(&s);
            assert!(
                blocks.len() == 1 && blocks[0] <= 700,
                "BLOCK asked: {blocks:?}"
            );
            assert_eq!(
                after,
                Counts {
                    calls: before.calls + 1,
                    started: before.started + 1,
                    timed_out: before.timed_out + 1,
                    ..before
                },
                "one call, ended by the server at its deadline"
            );
        } else {
            assert_eq!(
                (after.calls - before.calls, after.started - before.started),
                (2, 0),
                "two tries, the last at the deadline; none waited in the server"
            );
        }
        // A refund while it waits: admitted at once inside the server; by
        // its last try at the deadline when polling (it sleeps to it).
        let (l2, waiting) = (limiter.clone(), limiter.clone());
        let before = counts(&s);
        let t = Instant::now();
        let w = tokio::spawn(async move { waiting.wait("k", Duration::from_secs(3)).await });
        if in_server {
            // Refunded once it waits in line (the server's count).
            let give_up = Instant::now() + Duration::from_secs(30);
            while counts(&s).started == before.started {
                assert!(
                    Instant::now() < give_up,
                    "the wait never reached the server"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        l2.refund("k", 1).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(d.decision.allowed);
        let took = t.elapsed();
        let after = counts(&s);
        if in_server {
            assert_eq!(
                (
                    after.started - before.started,
                    after.admitted - before.admitted,
                    after.timed_out - before.timed_out
                ),
                (1, 1, 0),
                "admitted from the line by the refund"
            );
        } else {
            assert!(took >= Duration::from_secs(3), "{took:?}");
        }
    }
}
