#![cfg(test)]
//! The examples run, against a real server: `worker_pool` (the partner
//! API's quota shared by a pool of workers) holds the quota and serves
//! the workers in turn.

use redis_ratelimit_testkit::{workspace_root, Server};
use std::process::Command;

fn example(name: &str) -> std::path::PathBuf {
    // Built here, so a run of this file alone (`--test examples`) never
    // runs a stale example (a no-op when `cargo test` built them).
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(name);
    {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace_root())
            .args([
                "build",
                "-p",
                "redis-ratelimit-client",
                "--all-features",
                "--examples",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples; run from the workspace: {})",
        path.display(),
        workspace_root().display()
    );
    path
}

#[test]
fn worker_pool_holds_the_partners_quota_and_takes_turns() {
    let s = Server::start();
    let out = Command::new(example("worker_pool"))
        .env("REDIS_URL", s.url())
        .env("WORKERS", "8")
        .env("RUN_SECONDS", "4")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Calls, by their instants: never more than 5 in any 3 s.
    let calls: Vec<u64> = text
        .lines()
        .filter(|l| l.ends_with("called"))
        .map(|l| l.trim_start().split(' ').next().unwrap().parse().unwrap())
        .collect();
    for (i, t) in calls.iter().enumerate() {
        let within = calls[i..].iter().filter(|u| **u < t + 3000 - 50).count();
        assert!(
            within <= 5,
            "{within} calls within 3 s from {t} ms:\n{text}"
        );
    }
    // 5 at once, then 5 more at 3 s (and the pool waited for them).
    assert_eq!(calls.len(), 10, "{text}");
    let per: Vec<u32> = text
        .lines()
        .find_map(|l| l.strip_prefix("calls per worker: "))
        .map(|v| {
            v.trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .unwrap();
    assert_eq!(per.iter().sum::<u32>(), 10);
    assert!(per.iter().all(|n| *n <= 2), "turns: {per:?}");
}
