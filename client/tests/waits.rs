#![cfg(test)]
//! Waiting that is fair: 8 workers share "5 a second" AND 500 a day (the
//! day at New York midnight) and each waits for its next call, over and
//! over. Served first come, first served, they take turns: per-worker
//! admissions never differ by more than one, and no worker waits much
//! longer than the 7 ahead of it need. Inside the server (`BLOCK`, with
//! `Limiter::connect` and the blocking limiter) and, where a limiter
//! polls, in line in the process. A deadline is "up to": a wait that
//! cannot be admitted in time still lasts to its deadline.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis_ratelimit_client::{
    blocking, CalendarUnit, Error, FailurePolicy, FixedWindow, Limiter, Limits, SlidingWindow,
};
use redis_ratelimit_testkit::{info_int, Server};

mod support;

const WORKERS: usize = 8;
const RUN: Duration = Duration::from_secs(4);

fn limits() -> Limits {
    Limits::builder()
        .limit(
            "second",
            SlidingWindow::new(5, Duration::from_secs(1)).unwrap(),
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

/// Admissions in order: (worker, since start, how long it waited).
type Order = Arc<Mutex<Vec<(usize, Duration, Duration)>>>;

/// Units free when the workers start: taken by whoever asks first, before
/// anyone waits. Turns are counted after them.
const BURST: usize = 5;

fn assert_fair(what: &str, order: &[(usize, Duration, Duration)]) {
    let mut per = [0usize; WORKERS];
    for (w, _, _) in order.iter().skip(BURST) {
        per[*w] += 1;
    }
    let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
    let longest = order.iter().skip(BURST).map(|o| o.2).max().unwrap();
    eprintln!(
        "{what}: {} admissions ({BURST} before anyone waited), then per worker {per:?}, longest wait {longest:?}",
        order.len()
    );
    assert!(
        order.len() >= 15,
        "{what}: only {} admissions in {RUN:?}",
        order.len()
    );
    assert!(hi - lo <= 1, "{what}: per-worker admissions {per:?}");
    // 7 ahead of a worker at 5 a second take 1.4 s; allow scheduling slack.
    assert!(
        longest < Duration::from_millis(2600),
        "{what}: a wait of {longest:?}"
    );
}

async fn workers<F, Fut>(call: F) -> Vec<(usize, Duration, Duration)>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let start = Instant::now();
    let order: Order = Arc::default();
    let mut tasks = vec![];
    for w in 0..WORKERS {
        let (call, order) = (call.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < RUN {
                let asked = Instant::now();
                call().await.unwrap();
                order
                    .lock()
                    .unwrap()
                    .push((w, start.elapsed(), asked.elapsed()));
            }
        }));
        // Arrive in order.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let o = order.lock().unwrap().clone();
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_take_turns_in_line_inside_the_server() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = Limiter::connect(&client, limits(), FailurePolicy::FailClosed).unwrap();
    let l = limiter.clone();
    let order = workers(move || {
        let l = l.clone();
        async move { l.wait("partner", Duration::from_secs(30)).await.map(|_| ()) }
    })
    .await;
    assert_fair("BLOCK", &order);
    // They waited inside the server: one call per admission, no polling.
    let mut c = s.connect();
    assert_eq!(
        info_int(&mut c, "ratelimit", "ratelimit_all_calls") as usize,
        order.len() + info_int(&mut c, "ratelimit", "ratelimit_waits_timed_out") as usize,
    );
    assert!(info_int(&mut c, "ratelimit", "ratelimit_waits_admitted") > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_take_turns_when_the_limiter_polls() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        limits(),
        FailurePolicy::FailClosed,
    );
    let l = limiter.clone();
    let order = workers(move || {
        let l = l.clone();
        async move { l.wait("partner", Duration::from_secs(30)).await.map(|_| ()) }
    })
    .await;
    assert_fair("polling, in line in the process", &order);
}

#[test]
fn eight_threads_take_turns_with_the_blocking_limiter() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = blocking::Limiter::connect(&client, limits(), FailurePolicy::FailClosed);
    let start = Instant::now();
    let order: Order = Arc::default();
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (l, order) = (limiter.clone(), order.clone());
            std::thread::sleep(Duration::from_millis(5));
            std::thread::spawn(move || {
                while start.elapsed() < RUN {
                    let asked = Instant::now();
                    l.wait("partner", Duration::from_secs(30)).unwrap();
                    order
                        .lock()
                        .unwrap()
                        .push((w, start.elapsed(), asked.elapsed()));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_fair("blocking::Limiter, BLOCK", &order.lock().unwrap());
}

#[tokio::test]
async fn a_deadline_is_waited_out_never_cut_short() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limits = Limits::single(
        "minute",
        SlidingWindow::new(1, Duration::from_secs(60)).unwrap(),
    )
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
        let t = Instant::now();
        match limiter.wait("k", Duration::from_millis(700)).await {
            Err(Error::TimedOut { last }) => {
                assert!(last.decision.retry_after.unwrap() > Duration::from_secs(58))
            }
            other => panic!("expected a timeout, got {other:?}"),
        }
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(700) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        // A refund while it waits: admitted at once inside the server; by
        // its last try at the deadline when polling (it sleeps to it).
        let (l2, waiting) = (limiter.clone(), limiter.clone());
        let t = Instant::now();
        let w = tokio::spawn(async move { waiting.wait("k", Duration::from_secs(3)).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        l2.refund("k", 1).await.unwrap();
        let d = tokio::time::timeout(Duration::from_secs(5), w)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(d.decision.allowed);
        let took = t.elapsed();
        if in_server {
            assert!(took < Duration::from_millis(1500), "{took:?}");
        } else {
            assert!(took >= Duration::from_secs(3), "{took:?}");
        }
    }
}
