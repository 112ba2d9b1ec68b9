#![cfg(test)]
//! Redis killed and restarted under load, with the documented constructor
//! (`Limiter::connect`, and the blocking one): under each failure policy
//! the worst case during the outage holds (the table in
//! `FailurePolicy`'s docs; the fallback starts from Redis's last decisions,
//! so the outage's start admits no more than the limit), and decisions
//! come back from Redis within `BACK_TO_REDIS` of its return. Each run
//! prints a row of the outage table (connection, policy, admissions during
//! the outage, most admissions in any 3 s window, overall and until Redis
//! is back, time back to Redis).
//!
//! "Back to Redis" is judged on the server's clock: from a `TIME` the
//! restarted server answered (it was answering the limiter by then) to its
//! first decision for the limiter after the restart (the first admission
//! the AOF holds past what it held when the server was killed), with its
//! instant (the window is empty again after the 4 s
//! outage: that decision is an admission). A decision made before that
//! `TIME` (the limiter reconnected first) is back at once: counting only
//! decisions after it would skip the limiter's first burst and see the
//! next admission a window later. The limiter's own waits (the cooldown, a reconnection
//! pause, a connection attempt) run on this machine, which may be loaded:
//! the time this test process could not run in that interval (a thread
//! that sleeps 2 ms at a time and records how late it wakes) is not
//! counted against it. A limiter that stays on its failure policy longer
//! (a longer cooldown, a growing backoff) still fails: only the time the
//! process was held up is forgiven.
//!
//! "In any 3 s window" is judged on brackets: each call's admission was
//! decided between the instant it was sent and the instant its answer
//! came back (by Redis on its clock, or by the fallback on this machine's
//! wall clock, both running at the rate of this machine's monotonic
//! clock), so only admissions whose whole bracket lies inside a window
//! are counted in it. A late answer (a loaded machine) can hide an
//! admission from a window, never put one in a window it was not decided
//! in: a count over the bound is a real excess.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis_ratelimit_client::{
    blocking, FailurePolicy, Health, Limiter, Limits, Share, SlidingWindow, Source, BACK_TO_REDIS,
};
use redis_ratelimit_testkit::{aof_commands, server_now_ns, Server, AOF_COMMANDS};

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

/// (sent, answered, allowed, source), since the start.
type Log = Arc<Mutex<Vec<(Duration, Duration, bool, Source)>>>;

struct Row {
    connection: &'static str,
    policy: String,
    /// (allowed, source) of every call the failure policy answered.
    by_policy: Vec<(bool, Source)>,
    during: usize,
    max_window: usize,
    max_window_fallback: usize,
    /// The most admissions in any window among calls sent before Redis
    /// came back: Redis's before the outage and the failure policy's
    /// during it (the outage's start, without its end).
    max_window_until_up: usize,
    back: Duration,
    /// Back to Redis on the server's clock, and how long this process was
    /// held up meanwhile (see the module's doc).
    back_on_server: Option<Duration>,
    held_up: Duration,
    degraded_seen: bool,
}

/// This machine's wall clock in ns: the server's clock (same machine).
fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A thread that sleeps `STEP` at a time and records every wake-up that
/// came late (wall-clock instant, lateness): when this process could not
/// run.
struct Lateness {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(u64, u64)>>,
}

const STEP: Duration = Duration::from_millis(2);

impl Lateness {
    fn start() -> Lateness {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut late = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let t = Instant::now();
                std::thread::sleep(STEP);
                let over = t.elapsed().saturating_sub(STEP);
                // A sleep wakes a little late even when idle: only what
                // is well past a scheduler's tick counts.
                if over > Duration::from_millis(1) {
                    late.push((wall_ns(), over.as_nanos() as u64));
                }
            }
            late
        });
        Lateness { stop, thread }
    }

    fn stop(self) -> Vec<(u64, u64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// How much of `[from, to]` (ns) this process was held up.
fn held_up_in(late: &[(u64, u64)], from: u64, to: u64) -> Duration {
    let ns: u64 = late
        .iter()
        .map(|&(woke, over)| {
            let (a, b) = (woke.saturating_sub(over).max(from), woke.min(to));
            b.saturating_sub(a)
        })
        .sum();
    Duration::from_nanos(ns)
}

/// The instant (the server's clock) of the first decision for the limiter
/// among the AOF's commands past the first `before` (those written before
/// the server was killed): every admission is an `RL.WINDOWADD` whose
/// payload starts with the instant of the decision (µs).
fn first_decision_after(dir: &std::path::Path, before: usize) -> Option<u64> {
    aof_commands(dir)
        .into_iter()
        .skip(before)
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.WINDOWADD"))
        .map(|a| u64::from_le_bytes(a[2][0..8].try_into().unwrap()) * 1000)
        .min()
}

/// What the server and the lateness thread say of the return to Redis.
struct Return {
    up_ns: u64,
    first_ns: Option<u64>,
    late: Vec<(u64, u64)>,
}

/// The most admissions certainly decided in one window of `WINDOW`:
/// brackets `(sent, answered)` wholly inside `[t, t + WINDOW)` for some
/// `t` (the earliest sending of those counted, at best).
fn max_in_window(mut brackets: Vec<(Duration, Duration)>) -> usize {
    brackets.sort();
    let mut best = 0;
    for (i, (t, _)) in brackets.iter().enumerate() {
        let n = brackets[i..]
            .iter()
            .filter(|(_, answered)| *answered < *t + WINDOW)
            .count();
        best = best.max(n);
    }
    best
}

/// What one process may admit alone under the fallback in a window.
fn share_of(policy: FailurePolicy) -> u64 {
    match policy {
        FailurePolicy::Fallback(Share::DividedBy(n)) => (LIMIT / u64::from(n.get())).max(1),
        _ => LIMIT,
    }
}

fn summarize(
    connection: &'static str,
    policy: FailurePolicy,
    log: &Log,
    down: Duration,
    up: Duration,
    back_to_redis: Return,
    degraded_seen: bool,
) -> Row {
    let Return {
        up_ns,
        first_ns,
        late,
    } = back_to_redis;
    let back_on_server = first_ns.map(|f| Duration::from_nanos(f.saturating_sub(up_ns)));
    let held_up = held_up_in(&late, up_ns, first_ns.unwrap_or(u64::MAX));
    let log = log.lock().unwrap().clone();
    let during = log
        .iter()
        .filter(|(t, _, allowed, s)| *allowed && *t >= down && *s != Source::Redis)
        .count();
    let back = log
        .iter()
        .filter(|(t, _, _, s)| *t >= up && *s == Source::Redis)
        .map(|(_, answered, _, _)| answered.saturating_sub(up))
        .min()
        .unwrap_or(Duration::MAX);
    let admitted: Vec<(Duration, Duration)> =
        log.iter().filter(|e| e.2).map(|e| (e.0, e.1)).collect();
    let fallback: Vec<(Duration, Duration)> = log
        .iter()
        .filter(|e| e.2 && e.3 == Source::Fallback)
        .map(|e| (e.0, e.1))
        .collect();
    let by_policy: Vec<(bool, Source)> = log
        .iter()
        .filter(|e| e.3 != Source::Redis)
        .map(|e| (e.2, e.3))
        .collect();
    let until_up: Vec<(Duration, Duration)> = log
        .iter()
        .filter(|e| e.2 && e.0 < up)
        .map(|e| (e.0, e.1))
        .collect();
    let row = Row {
        connection,
        policy: format!("{policy:?}"),
        by_policy,
        during,
        max_window: max_in_window(admitted),
        max_window_fallback: max_in_window(fallback),
        max_window_until_up: max_in_window(until_up),
        back,
        back_on_server,
        held_up,
        degraded_seen,
    };
    eprintln!(
        "| {} | {} | {} | {} | {} | {} | {} ms (server: {:?}, held up {:?}) |",
        row.connection,
        row.policy,
        row.during,
        row.max_window,
        row.max_window_until_up,
        row.max_window_fallback,
        row.back.as_millis(),
        row.back_on_server,
        row.held_up
    );
    row
}

fn check(row: &Row, policy: FailurePolicy) {
    assert!(
        row.degraded_seen,
        "{}: the health hook never said Degraded",
        row.policy
    );
    let back = row.back_on_server.unwrap_or_else(|| {
        panic!(
            "{}: Redis never decided for the limiter after its return",
            row.policy
        )
    });
    assert!(
        back.saturating_sub(row.held_up) <= BACK_TO_REDIS,
        "{}: back to Redis {:?} after its return by the server's clock, this process \
         held up {:?} of it (documented worst case {:?})",
        row.policy,
        back,
        row.held_up,
        BACK_TO_REDIS
    );
    assert!(
        !row.by_policy.is_empty(),
        "{}: no call was answered by the failure policy",
        row.policy
    );
    match policy {
        FailurePolicy::FailClosed => {
            assert_eq!(row.during, 0, "{}", row.policy);
            assert!(
                row.by_policy
                    .iter()
                    .all(|&(allowed, s)| !allowed && s == Source::FailClosed),
                "{}: {:?}",
                row.policy,
                row.by_policy
            );
            // Only Redis admitted: its sliding window, exact.
            assert!(
                row.max_window as u64 <= LIMIT,
                "{}: {} admitted in 3 s",
                row.policy,
                row.max_window
            );
        }
        FailurePolicy::FailOpen => {
            // Everything the failure policy answered was admitted.
            assert!(
                row.by_policy
                    .iter()
                    .all(|&(allowed, s)| allowed && s == Source::FailOpen),
                "{}: {:?}",
                row.policy,
                row.by_policy
            );
        }
        FailurePolicy::Fallback(_) => {
            // The sliding window stays a sliding window, of this process's
            // share: never more than it in any WINDOW decided locally.
            let share = share_of(policy);
            assert!(
                row.max_window_fallback as u64 <= share,
                "{}: the fallback admitted {} in 3 s (its share: {share})",
                row.policy,
                row.max_window_fallback
            );
            // The outage's start: the fallback starts from Redis's last
            // decision, so what Redis admitted just before still counts:
            // never more than the limit in any window (one process). It
            // was Redis's 5 and a fresh share at once: 10 in 2.1 s.
            assert!(
                row.max_window_until_up as u64 <= LIMIT,
                "{}: {} admitted in 3 s across the outage's start (the limit: {LIMIT})",
                row.policy,
                row.max_window_until_up
            );
            // Its end: Redis does not know what the fallback took, so
            // Redis's quota and the share add up, never more (the
            // documented worst case).
            assert!(
                row.max_window as u64 <= LIMIT + share,
                "{}: {} admitted in 3 s (Redis's {LIMIT} and the share {share})",
                row.policy,
                row.max_window
            );
            // The 4 s outage outlasts the window: the share is admitted
            // once Redis's admissions have left it.
            assert!(
                row.during as u64 >= share,
                "{}: the fallback admitted {} during the outage (its share: {share})",
                row.policy,
                row.during
            );
        }
        _ => {}
    }
}

async fn async_run(policy: FailurePolicy) -> Row {
    let server = Server::start_with(AOF_COMMANDS);
    let lateness = Lateness::start();
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
                let sent = start.elapsed();
                let d = limiter.check("partner").await.unwrap();
                log.lock().unwrap().push((
                    sent,
                    start.elapsed(),
                    d.decision.allowed,
                    d.decision.source,
                ));
                tokio::time::sleep(EVERY).await;
            }
        }));
    }
    tokio::time::sleep(DOWN_AT).await;
    let stopped = server.stop();
    // What the AOF held when the server was killed: later commands are the
    // restarted server's.
    let before = aof_commands(&stopped.dir).len();
    let down = start.elapsed();
    tokio::time::sleep(UP_AT - DOWN_AT).await;
    let (server, up_ns) = tokio::task::spawn_blocking(move || {
        let server = stopped.start();
        let up_ns = server_now_ns(&mut server.connect());
        (server, up_ns)
    })
    .await
    .unwrap();
    let up = start.elapsed();
    for t in tasks {
        t.await.unwrap();
    }
    let back = Return {
        up_ns,
        first_ns: first_decision_after(&server.dir, before),
        late: lateness.stop(),
    };
    drop(server);
    let seen = *degraded.lock().unwrap();
    summarize(
        "Limiter::connect (ConnectionManager)",
        policy,
        &log,
        down,
        up,
        back,
        seen,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_killed_and_restarted_under_each_failure_policy() {
    eprintln!("| connection | policy | admitted during the outage | most in any 3 s | most in any 3 s until Redis is back | most in any 3 s, fallback | back to Redis |");
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
    let server = Server::start_with(AOF_COMMANDS);
    let lateness = Lateness::start();
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
                    let sent = start.elapsed();
                    let d = limiter.check("partner").unwrap();
                    log.lock().unwrap().push((
                        sent,
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
    // What the AOF held when the server was killed: later commands are the
    // restarted server's.
    let before = aof_commands(&stopped.dir).len();
    let down = start.elapsed();
    std::thread::sleep(UP_AT - DOWN_AT);
    let server = stopped.start();
    let up_ns = server_now_ns(&mut server.connect());
    let up = start.elapsed();
    for t in threads {
        t.join().unwrap();
    }
    let back = Return {
        up_ns,
        first_ns: first_decision_after(&server.dir, before),
        late: lateness.stop(),
    };
    drop(server);
    let seen = *degraded.lock().unwrap();
    summarize(
        "blocking::Limiter::connect",
        policy,
        &log,
        down,
        up,
        back,
        seen,
    )
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
