#![cfg(test)]
//! An overloaded client is not a Redis outage. In the field, 256 tasks on
//! one tokio worker thread stalled the client's own runtime past the
//! default 100 ms call timeout, and the limiter took it for an outage
//! again and again: 15.3 million local FailClosed denials in 5 s while
//! Redis was healthy and idle. Here the same: 256 tasks on one worker
//! thread, each doing CPU-bound work between calls, against a healthy
//! server; every decision must come from Redis, and the limiter must never
//! say it is degraded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ratelimit_client::{FailurePolicy, Health, Limiter, Limits, Source, TokenBucket};
use redis_ratelimit_testkit::Server;

const TASKS: usize = 256;
/// CPU-bound work between two calls: 256 of them keep the worker busy for
/// half a second, five times the call timeout.
const WORK: Duration = Duration::from_millis(2);
const RUN: Duration = Duration::from_secs(4);

/// Burns the thread for `d` without yielding to the runtime.
fn work(d: Duration) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < d {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
    }
    x
}

#[test]
fn an_overloaded_runtime_is_not_an_outage() {
    let s = Server::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let degraded = Arc::new(AtomicUsize::new(0));
    let (by_redis, by_policy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    rt.block_on(async {
        let client = redis::Client::open(s.url()).unwrap();
        let limits = Limits::single(
            "calls",
            TokenBucket::new(1_000_000_000, 1_000_000_000, Duration::from_secs(1)).unwrap(),
        )
        .unwrap();
        let seen = degraded.clone();
        let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed)
            .unwrap()
            .on_health_change(move |h| {
                if h == Health::Degraded {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            });
        // Connected and answering before the load starts.
        assert_eq!(
            limiter.check("warm-up").await.unwrap().decision.source,
            Source::Redis
        );
        let start = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|i| {
                let (limiter, by_redis, by_policy) =
                    (limiter.clone(), by_redis.clone(), by_policy.clone());
                tokio::spawn(async move {
                    let key = format!("task{i}");
                    let mut sink = 0u64;
                    while start.elapsed() < RUN {
                        sink ^= work(WORK);
                        let d = limiter.check(&key).await.unwrap();
                        if d.decision.source == Source::Redis {
                            by_redis.fetch_add(1, Ordering::Relaxed);
                        } else {
                            by_policy.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    sink
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
    let (redis, policy) = (
        by_redis.load(Ordering::Relaxed),
        by_policy.load(Ordering::Relaxed),
    );
    eprintln!(
        "{TASKS} tasks on one worker, {WORK:?} of work per call: {redis} decisions by Redis, \
         {policy} by the failure policy, degraded {} times",
        degraded.load(Ordering::Relaxed)
    );
    assert!(redis > 0);
    assert_eq!(
        (policy, degraded.load(Ordering::Relaxed)),
        (0, 0),
        "an overloaded client was taken for a Redis outage"
    );
}
