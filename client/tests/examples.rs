#![cfg(test)]
//! The examples run, against a real server: `worker_pool` (the partner
//! API's quota shared by a pool of workers) holds the quota and serves
//! the workers in turn; `axum_api` limits per key; `ai_gateway` reserves
//! token estimates and settles them from the model's usage.

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

/// One HTTP/1.1 GET on a fresh connection: (status, the whole response).
fn http_get(addr: &str, path: &str, api_key: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {api_key}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw)
}

/// Stops the example's process however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn axum_api_limits_per_key_and_answers_429_with_headers() {
    let s = Server::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _app = Running(
        Command::new(example("axum_api"))
            .env("REDIS_URL", s.url())
            .env("LISTEN", &addr)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            up.elapsed() < std::time::Duration::from_secs(20),
            "the example did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Bursts of 10 per key: the 11th is a 429 with its headers and body.
    for _ in 0..10 {
        let (status, raw) = http_get(&addr, "/", "alice");
        assert_eq!(status, 200, "{raw}");
        assert!(
            raw.to_ascii_lowercase().contains("ratelimit-policy:"),
            "{raw}"
        );
    }
    let (status, raw) = http_get(&addr, "/", "alice");
    assert_eq!(status, 429, "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains("retry-after:") && lower.contains("application/problem+json"),
        "{raw}"
    );
    // Another key has its own burst; /bulk weighs 5.
    assert_eq!(http_get(&addr, "/bulk", "bob").0, 200);
    assert_eq!(http_get(&addr, "/bulk", "bob").0, 200);
    assert_eq!(http_get(&addr, "/bulk", "bob").0, 429);
    // The keys are the layer's namespace's.
    let mut c = s.connect();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(keys.iter().all(|k| k.starts_with("rl:api:")), "{keys:?}");
}

#[test]
fn ai_gateway_reserves_settles_from_the_usage_and_denies_during_debt() {
    let s = Server::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _app = Running(
        Command::new(example("ai_gateway"))
            .env("REDIS_URL", s.url())
            .env("LISTEN", &addr)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let up = std::time::Instant::now();
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            up.elapsed() < std::time::Duration::from_secs(20),
            "the example did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut c = s.connect();
    let tokens_left = |c: &mut redis::Connection, key: &str| -> i64 {
        let k = format!("rl:ai:{{{key}}}:tpm");
        let r: Vec<i64> = redis::cmd("RL.TOKENBUCKET")
            .arg(&k)
            .arg(10_000)
            .arg(10_000)
            .arg(0)
            .arg("PERIOD")
            .arg(60)
            .query(c)
            .unwrap();
        r[2]
    };
    // 700 used of the 500 reserved: 9300 left on the minute's budget.
    let (status, raw) = http_get(&addr, "/v1/chat?tokens=700", "alice");
    assert_eq!(status, 200, "{raw}");
    let left = tokens_left(&mut c, "alice");
    assert!((9300..=9302).contains(&left), "{left}");
    // The day's budget counted the same 700.
    let day: Vec<i64> = redis::cmd("RL.FIXED")
        .arg("rl:ai:{alice}:tpd")
        .arg(200_000)
        .arg("DAY")
        .arg("TZ")
        .arg("America/New_York")
        .arg("COST")
        .arg(0)
        .query(&mut c)
        .unwrap();
    assert_eq!(day[2], 200_000 - 700);
    // 12000 used: served (the tokens were spent), the budget in debt, and
    // the response says nothing is left.
    let (status, raw) = http_get(&addr, "/v1/chat?tokens=12000", "alice");
    assert_eq!(status, 200, "{raw}");
    let lower = raw.to_ascii_lowercase();
    assert!(lower.contains("ratelimit: \"tpm\";r=0;"), "{raw}");
    // The next request waits for the debt: 429 with a Retry-After.
    let (status, raw) = http_get(&addr, "/v1/chat?tokens=1", "alice");
    assert_eq!(status, 429, "{raw}");
    let retry: u64 = raw
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("retry-after: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    // About 2700 tokens of debt and the 500 estimate, 6 ms each.
    assert!((15..=21).contains(&retry), "{retry}\n{raw}");
    // Another key has its own budgets.
    assert_eq!(http_get(&addr, "/v1/chat?tokens=5", "bob").0, 200);
    // No slot leaked: both keys' in-flight caps are free again.
    for key in ["alice", "bob"] {
        let r: Vec<i64> = redis::cmd("RL.ACQUIRE")
            .arg(format!("rl:ai:{{{key}}}:inflight"))
            .arg(4)
            .arg(120)
            .arg("DRYRUN")
            .query(&mut c)
            .unwrap();
        assert_eq!((r[0], r[2]), (1, 3), "{key}: {r:?}");
    }
}
