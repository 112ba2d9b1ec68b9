//! Throttle my calls to someone else's API: a pool of workers shares the
//! partner's quota of 5 calls per 3 seconds AND 500 a day, the day
//! starting at midnight New York time. Each worker waits in line inside
//! Redis for its next call (first come, first served across every worker
//! of every process), so no call is made that the partner would refuse.
//! If Redis is down the workers stop calling (fail closed) and resume by
//! themselves when it is back.
//!
//! ```sh
//! make run    # Redis with the module on 127.0.0.1:6379
//! cargo run -p redis-ratelimit-client --example worker_pool
//! ```
//!
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`), `WORKERS` (default 8)
//! and `RUN_SECONDS` (default 15) change the setup.

use std::time::{Duration, Instant};

use redis_ratelimit_client::{
    redis, CalendarUnit, Error, FailurePolicy, FixedWindow, Health, Limiter, Limits, SlidingWindow,
};

/// The partner's API (here: a no-op that takes 10 ms).
async fn call_partner(_worker: usize) {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let workers = env("WORKERS", 8) as usize;
    let run = Duration::from_secs(env("RUN_SECONDS", 15));

    let limits = Limits::builder()
        .limit("burst", SlidingWindow::new(5, Duration::from_secs(3))?)
        .limit(
            "day",
            FixedWindow::calendar(500, CalendarUnit::Day)?.in_time_zone("America/New_York")?,
        )
        .build()?;
    // Reconnects by itself; waits in line inside the server.
    let limiter = Limiter::connect(
        &redis::Client::open(url)?,
        limits,
        FailurePolicy::FailClosed,
    )?
    .on_health_change(|h| match h {
        Health::Degraded => eprintln!("redis is away: not calling the partner"),
        _ => eprintln!("redis is back"),
    });

    let start = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..workers {
        let limiter = limiter.clone();
        tasks.push(tokio::spawn(async move {
            let mut calls = 0u32;
            while start.elapsed() < run {
                // Wait in line at most until the run ends. Keys
                // rl:{partner}:burst and rl:{partner}:day (one hash slot).
                let left = run.saturating_sub(start.elapsed());
                match limiter.wait("partner", left).await {
                    Ok(_) => {
                        call_partner(worker).await;
                        calls += 1;
                        println!(
                            "{:>6} ms  worker {worker} called",
                            start.elapsed().as_millis()
                        );
                    }
                    Err(Error::TimedOut { last }) => {
                        // The run ended first (or the day's quota is spent).
                        eprintln!(
                            "worker {worker}: no slot in time (next in {:?})",
                            last.retry_after()
                        );
                    }
                    Err(Error::NeverAllowed { .. }) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok::<u32, Error>(calls)
        }));
    }
    let mut per_worker = Vec::new();
    for t in tasks {
        per_worker.push(t.await??);
    }
    println!("calls per worker: {per_worker:?}");
    Ok(())
}
