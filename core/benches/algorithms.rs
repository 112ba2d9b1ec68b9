//! Criterion benches of the pure algorithms: one decision, no Redis.
// A benchmark stops loudly on a bad setup.
#![allow(clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use redis_ratelimit_core::algo::bucket::Bucket;
use redis_ratelimit_core::algo::sliding::{self, Log, Window};
use redis_ratelimit_core::time::Nanos;
use std::hint::black_box;

const T0: u64 = 1_700_000_000_000_000_000;

fn bucket(c: &mut Criterion) {
    let b = Bucket::new(100, Nanos::new(10_000_000)).expect("valid bucket");
    let mut g = c.benchmark_group("bucket");
    g.bench_function("allowed", |bench| {
        let mut t = T0;
        let mut tat = None;
        bench.iter(|| {
            t += 10_000_000;
            let (d, new) = b.decide(black_box(tat), Nanos::new(t), 1);
            if new.is_some() {
                tat = new;
            }
            black_box(d)
        })
    });
    g.bench_function("denied", |bench| {
        let now = Nanos::new(T0);
        let (_, tat) = b.decide(None, now, 100);
        bench.iter(|| black_box(b.decide(black_box(tat), now, 1)))
    });
    g.finish();
}

fn window(c: &mut Criterion) {
    let mut g = c.benchmark_group("sliding");
    for limit in [10u64, 100, 10_000] {
        let w = Window {
            limit,
            span: Nanos::from_micros(60_000_000),
            max_entries: 100_000,
        };
        // A full log, one admission every span/limit.
        let step = Nanos::new(w.span.as_u64() / limit);
        let mut log: Option<Log> = None;
        let mut now = Nanos::new(T0);
        for _ in 0..limit {
            let (_, u) = sliding::decide(log.as_ref(), &w, now, 1);
            if let Some(u) = u {
                match log.as_mut() {
                    Some(l) => l.apply(&u),
                    None => log = Some(Log::from_update(&u)),
                }
            }
            now = now.saturating_add(step);
        }
        let mut log = log.expect("filled");
        g.bench_function(format!("steady/limit={limit}"), |bench| {
            // Each call lets the oldest entry expire and admits one.
            bench.iter(|| {
                let (d, u) = sliding::decide(Some(&log), &w, now, 1);
                if let Some(u) = u {
                    log.apply(&u);
                }
                now = now.saturating_add(step);
                black_box(d)
            })
        });
        let full_now = now
            .saturating_sub(step)
            .saturating_add(Nanos::from_micros(1));
        g.bench_function(format!("denied/limit={limit}"), |bench| {
            bench.iter(|| black_box(sliding::decide(Some(&log), &w, black_box(full_now), 1)))
        });
    }
    g.finish();
}

criterion_group!(benches, bucket, window);
criterion_main!(benches);
