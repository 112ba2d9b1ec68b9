//! The real-server harness: starts `redis-server` (or `valkey-server`)
//! processes with the module loaded, on free loopback ports, each in its own
//! temporary directory, and stops them when the handle drops.
//!
//! Environment:
//! - `RL_SERVER`: the server binary (default `redis-server`).
//! - `RL_MODULE`: the module to load (default: the debug build with test hooks).
#![forbid(unsafe_code)]
// A test harness: it fails loudly (unwrap, panic) by design.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use redis::Value;

mod civil;
mod cluster;
pub mod dump;
mod durable;
mod line;
mod pinger;
mod rng;
mod traffic;
pub use civil::*;
pub use cluster::*;
pub use durable::*;
pub use line::*;
pub use pinger::*;
pub use rng::Rng;
pub use traffic::*;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

pub fn server_binary() -> String {
    std::env::var("RL_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// The Valkey major version of the server binary (`RL_SERVER --version`
/// prints `Valkey server v=9.1.2 ...`); `None` for Redis or when the binary
/// does not run.
pub fn valkey_major() -> Option<u32> {
    let out = Command::new(server_binary())
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !text.starts_with("Valkey ") {
        return None;
    }
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    v.split('.').next()?.parse().ok()
}

pub fn module_path() -> PathBuf {
    if let Ok(p) = std::env::var("RL_MODULE") {
        return PathBuf::from(p);
    }
    let p = workspace_root().join("target/debug/libredis_ratelimit.so");
    assert!(
        p.exists(),
        "{} is missing: run `make test` (it builds the module first)",
        p.display()
    );
    p
}

/// A fresh directory for one server's files.
pub fn temp_dir() -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rl-test-{}-{}", std::process::id(), n));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The repository root (this crate lives in `testkit/`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A running server; killed (and its directory removed) on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
    keep_dir: bool,
}

impl Server {
    /// A server with the module and test-friendly defaults.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Extra `--option value` pairs, e.g. `&["--appendonly", "yes"]`.
    pub fn start_with(extra: &[&str]) -> Server {
        Server::start_in(temp_dir(), extra)
    }

    /// Starts in an existing directory (to restart from its RDB/AOF).
    pub fn start_in(dir: PathBuf, extra: &[&str]) -> Server {
        Server::start_full(dir, module_path(), extra)
    }

    /// Starts with a given module file.
    pub fn start_full(dir: PathBuf, module: PathBuf, extra: &[&str]) -> Server {
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        extra.insert(0, module.display().to_string());
        extra.insert(0, "--loadmodule".to_string());
        Server::start_raw(dir, extra)
    }

    /// Starts with exactly these options: no module unless they load one
    /// (`--loadmodule path args...`, for module arguments).
    pub fn start_exact(dir: PathBuf, options: &[&str]) -> Server {
        Server::start_raw(dir, options.iter().map(|s| s.to_string()).collect())
    }

    /// Starts with exactly these options (the module line included).
    fn start_raw(dir: PathBuf, extra: Vec<String>) -> Server {
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            match Server::spawn(&dir, port, &extra) {
                Ok(child) => {
                    return Server {
                        child: Some(child),
                        port,
                        dir,
                        extra,
                        keep_dir: false,
                    };
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start {}: {last_err}", server_binary());
    }

    fn spawn(dir: &Path, port: u16, extra: &[String]) -> Result<Child, String> {
        let log = dir.join("server.log");
        let mut cmd = Command::new(server_binary());
        cmd.arg("--port")
            .arg(port.to_string())
            .args([
                "--bind",
                "127.0.0.1",
                "--protected-mode",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .args(["--save", "", "--appendonly", "no"])
            .args([
                "--enable-debug-command",
                "yes",
                "--enable-module-command",
                "yes",
            ])
            .args(["--repl-diskless-sync-delay", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("spawn: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!("exited with {status}; log:\n{text}"));
            }
            if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) {
                if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(200))
                {
                    let _ = con.set_read_timeout(Some(Duration::from_secs(2)));
                    // LOADING while replaying an AOF: keep waiting. The
                    // answer must come from this child: another test's
                    // server may have taken the port first (this one then
                    // fails to bind and exits, and the caller retries).
                    if let Ok(Value::Okay | Value::SimpleString(_)) =
                        redis::cmd("PING").query::<Value>(&mut con)
                    {
                        if process_id(&mut con).is_some_and(|p| started_by(p, child.id())) {
                            return Ok(child);
                        }
                    }
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not answer PING within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A connection whose replies time out after [`REPLY_TIMEOUT`].
    pub fn connect(&self) -> redis::Connection {
        connect_to(self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// The server's process id (None once stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's child processes (a BGSAVE or AOF rewrite), by pid.
    pub fn children(&self) -> Vec<u32> {
        let Some(pid) = self.pid() else {
            return vec![];
        };
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// Is the process still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, keeping the directory: for crash-recovery tests.
    pub fn kill(mut self) -> PathBuf {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.keep_dir = true;
        self.dir.clone()
    }

    /// `SHUTDOWN` (saving per the server's config), keeping the directory.
    pub fn shutdown(mut self, save: bool) -> PathBuf {
        let mut con = self.connect();
        let _ = redis::cmd("SHUTDOWN")
            .arg(if save { "SAVE" } else { "NOSAVE" })
            .query::<Value>(&mut con);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.keep_dir = true;
        self.dir.clone()
    }

    /// The same options again, in the same directory.
    pub fn restart(self, save: bool) -> Server {
        let extra = self.extra.clone();
        let dir = self.shutdown(save);
        Server::start_raw(dir, extra)
    }

    /// Stops the process (SIGKILL), keeping its port and directory: an
    /// outage. [`Stopped::start`] brings it back on the same port.
    pub fn stop(mut self) -> Stopped {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.keep_dir = true;
        Stopped {
            port: self.port,
            dir: self.dir.clone(),
            extra: self.extra.clone(),
        }
    }
}

/// A server stopped by [`Server::stop`]: its port, directory and options.
#[derive(Debug)]
pub struct Stopped {
    pub port: u16,
    pub dir: PathBuf,
    extra: Vec<String>,
}

impl Stopped {
    /// The same server again, on the same port and directory (the port is
    /// retried for a few seconds if something holds it).
    pub fn start(self) -> Server {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Server::spawn(&self.dir, self.port, &self.extra) {
                Ok(child) => {
                    return Server {
                        child: Some(child),
                        port: self.port,
                        dir: self.dir,
                        extra: self.extra,
                        keep_dir: false,
                    }
                }
                Err(e) if Instant::now() > deadline => {
                    panic!("could not restart on port {}: {e}", self.port)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// How long a test connection waits for a reply: longer than any wait a
/// test makes on purpose, so that a lost wake-up (a `BLOCK 0` never
/// answered) fails its test instead of hanging the run.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to the server on loopback `port`, with [`REPLY_TIMEOUT`].
pub fn connect_to(port: u16) -> redis::Connection {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(REPLY_TIMEOUT)).unwrap();
    con.set_write_timeout(Some(REPLY_TIMEOUT)).unwrap();
    con
}

/// The `process_id` a server reports in `INFO server`.
fn process_id(con: &mut redis::Connection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Is `pid` the process `child`, or its child (a wrapper that forks)?
fn started_by(pid: u32, child: u32) -> bool {
    pid == child
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                // pid (comm) state ppid ...: comm may hold spaces.
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            })
            == Some(child)
}

/// Runs a command; a server error comes back as its full text.
pub fn call(con: &mut redis::Connection, args: &[&str]) -> Result<Value, String> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<Value>(con).map_err(error_text)
}

pub fn error_text(e: redis::RedisError) -> String {
    if e.is_timeout() {
        return format!(
            "no reply within {} s (a wake-up lost?): {e}",
            REPLY_TIMEOUT.as_secs()
        );
    }
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

/// Runs a limiter command and returns its five integers.
pub fn rl(con: &mut redis::Connection, args: &[&str]) -> [i64; 5] {
    match call(con, args) {
        Ok(Value::Array(items)) => {
            let v: Vec<i64> = items
                .iter()
                .map(|x| match x {
                    Value::Int(i) => *i,
                    other => panic!("non-integer in reply to {args:?}: {other:?}"),
                })
                .collect();
            v.try_into().unwrap_or_else(|v: Vec<i64>| {
                panic!("expected 5 integers from {args:?}, got {v:?}")
            })
        }
        other => panic!("unexpected reply to {args:?}: {other:?}"),
    }
}

/// Runs a command that must fail, returning the error text.
pub fn err(con: &mut redis::Connection, args: &[&str]) -> String {
    match call(con, args) {
        Err(e) => e,
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
    }
}

pub fn int(con: &mut redis::Connection, args: &[&str]) -> i64 {
    match call(con, args) {
        Ok(Value::Int(i)) => i,
        other => panic!("expected an integer from {args:?}, got {other:?}"),
    }
}

pub fn bytes(con: &mut redis::Connection, args: &[&str]) -> Option<Vec<u8>> {
    match call(con, args) {
        Ok(Value::BulkString(b)) => Some(b),
        Ok(Value::Nil) => None,
        other => panic!("expected a bulk string from {args:?}, got {other:?}"),
    }
}

pub fn ok(con: &mut redis::Connection, args: &[&str]) {
    match call(con, args) {
        Ok(Value::Okay) => {}
        Ok(Value::SimpleString(s)) if s == "OK" => {}
        other => panic!("expected OK from {args:?}, got {other:?}"),
    }
}

/// The server's own wall clock (`TIME`), in Unix nanoseconds (to the
/// microsecond). Tests take time from here, never from their own process:
/// Redis expires keys on this clock, and it may differ from the test's
/// (`make test-future` runs the servers a year ahead).
pub fn server_now_ns(con: &mut redis::Connection) -> u64 {
    let (s, us): (u64, u64) = redis::cmd("TIME").query(con).unwrap();
    s * SEC + us * 1000
}

/// How far ahead of the server's real clock every faked instant must be:
/// whatever the module writes at a faked instant then expires (on Redis's
/// real clock) only long after the test ends, however slowly it runs.
pub const FAKE_MARGIN_NS: u64 = 600 * SEC;

/// A start for the module's test clock: the server's clock an hour ahead,
/// on a whole second.
pub fn clock_start(con: &mut redis::Connection) -> u64 {
    (server_now_ns(con) / SEC + 3600) * SEC
}

/// Sets the module's test clock (needs the test-hooks build). Refuses an
/// instant less than [`FAKE_MARGIN_NS`] ahead of the server's real clock:
/// what the module writes then could expire (on Redis's clock) during the
/// test, and a test built on it would pass or fail by the date. Use dates
/// relative to the server's clock ([`clock_start`], [`server_year`]).
pub fn set_clock(con: &mut redis::Connection, ns: u64) {
    let real = server_now_ns(con);
    assert!(
        ns >= real + FAKE_MARGIN_NS,
        "faked instant {} ({}) is not {} s ahead of the server's clock {} ({}): \
         Redis would expire what the module writes at it during the test",
        ns,
        rfc3339(ns),
        FAKE_MARGIN_NS / SEC,
        real,
        rfc3339(real)
    );
    ok(con, &["RL.TEST.CLOCK", "SET", &ns.to_string()]);
}

/// Runs a command that answers integers between two TIMEs, in one
/// pipeline: (the server's clock just before, the reply, just after, in
/// Unix ns). The server runs pipelined commands in order, and the module
/// reads the same clock TIME does: it decided between the two instants
/// (TIME has microseconds: the second is rounded up to the next one).
pub fn bracketed(con: &mut redis::Connection, args: &[&str]) -> (u64, Vec<i64>, u64) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let (t0, reply, t1): ((u64, u64), Vec<i64>, (u64, u64)) = redis::pipe()
        .cmd("TIME")
        .add_command(cmd)
        .cmd("TIME")
        .query(con)
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let ns = |(s, us): (u64, u64)| s * SEC + us * 1000;
    (ns(t0), reply, ns(t1) + 999)
}

/// Admissions known only by a bracket of their decision instants
/// (`(before, after)`, as [`bracketed`] reads them): the most of them that
/// certainly fall within one interval `[a, a + window)`, and its `a`.
/// Only admissions whose whole bracket lies inside are counted, so the
/// count is never more than the truth: a limit it exceeds was exceeded.
pub fn most_within(adm: &[(u64, u64)], window: u64) -> (usize, u64) {
    let mut adm = adm.to_vec();
    adm.sort();
    let mut best = (0, 0);
    for (i, &(a, _)) in adm.iter().enumerate() {
        let end = a + window;
        let inside = adm[i..]
            .iter()
            .take_while(|(s, _)| *s < end)
            .filter(|(_, e)| *e < end)
            .count();
        if inside > best.0 {
            best = (inside, a);
        }
    }
    best
}

/// The server's real clock again (the module's test clock off).
pub fn real_clock(con: &mut redis::Connection) {
    ok(con, &["RL.TEST.CLOCK", "REAL"]);
}

/// Every key and its DUMP, sorted by key. Binary-safe: a key that is not
/// UTF-8 is read by its bytes and named lossily.
pub fn dump_all(con: &mut redis::Connection) -> Vec<(String, Option<Vec<u8>>)> {
    raw_states(con, false)
        .into_iter()
        .map(|(k, d, _)| (k, d))
        .collect()
}

/// A key name as text, one to one: printable ASCII as it is, any other
/// byte (and the backslash) as `\xNN`, so binary names never collide.
pub fn key_name(k: &[u8]) -> String {
    let mut s = String::with_capacity(k.len());
    for &b in k {
        if (0x20..0x7f).contains(&b) && b != b'\\' {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("\\x{b:02x}"));
        }
    }
    s
}

/// Every key (sorted by its bytes), its DUMP and, if asked, its PEXPIRETIME.
fn raw_states(con: &mut redis::Connection, expiry: bool) -> Vec<(String, Option<Vec<u8>>, i64)> {
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).unwrap();
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let d = match redis::cmd("DUMP").arg(&k).query::<Value>(con) {
                Ok(Value::BulkString(b)) => Some(b),
                Ok(Value::Nil) => None,
                other => panic!("DUMP answered {other:?}"),
            };
            let e = if expiry {
                redis::cmd("PEXPIRETIME").arg(&k).query::<i64>(con).unwrap()
            } else {
                0
            };
            (key_name(&k), d, e)
        })
        .collect()
}

/// Polls `f` until it returns true or `secs` pass.
pub fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// The test process's wall clock in nanoseconds: for seeds only. Anything
/// compared with what the server does takes [`server_now_ns`].
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `rdb_changes_since_last_save` from INFO: moves on every write.
pub fn dirty(con: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("persistence").query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

/// Everything that moves when a server writes or propagates: the dirty
/// counter, the replication offset (with a replica attached) and the
/// AOF's bytes (written and still buffered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub dirty: i64,
    pub repl_offset: i64,
    pub aof_bytes: i64,
}

/// What `con`'s server has written and propagated so far.
pub fn written(con: &mut redis::Connection) -> Written {
    Written {
        dirty: dirty(con),
        repl_offset: info_int(con, "replication", "master_repl_offset"),
        aof_bytes: info_int(con, "persistence", "aof_current_size")
            + info_int(con, "persistence", "aof_buffer_length"),
    }
}

/// Options for a master whose replication offset moves only when it
/// propagates a command: no PING to its replicas every 10 s.
pub const NO_PINGS: &[&str] = &["--repl-ping-replica-period", "3600"];

pub const SEC: u64 = 1_000_000_000;
pub const MS: u64 = 1_000_000;

/// Starts a replica of `master` and waits until its link is up.
pub fn start_replica(master: &Server, extra: &[&str]) -> Server {
    let port = master.port.to_string();
    let mut args = vec!["--replicaof", "127.0.0.1", port.as_str()];
    args.extend_from_slice(extra);
    let replica = Server::start_with(&args);
    let mut rc = replica.connect();
    assert!(
        wait_until(30, || {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut rc)
                .unwrap();
            info.contains("master_link_status:up")
        }),
        "replica did not sync; log:\n{}",
        replica.log()
    );
    replica
}

/// Waits until `n` replicas acknowledged everything written so far.
pub fn wait_replicas(master: &mut redis::Connection, n: i64) {
    assert!(wait_until(30, || int(
        master,
        &["WAIT", &n.to_string(), "1000"]
    ) >= n));
}

/// Every key with its DUMP and absolute expiry (DUMP does not carry the TTL).
pub fn state_of(con: &mut redis::Connection) -> Vec<(String, Option<Vec<u8>>, i64)> {
    raw_states(con, true)
}

/// Asserts master and replica hold the same keys, bytes and expiries,
/// ignoring keys that expire within two seconds (they may be gone on one
/// side and not yet on the other while the comparison runs).
pub fn assert_same_state(master: &mut redis::Connection, replica: &mut redis::Connection) -> usize {
    let now_ms = (server_now_ns(master) / MS) as i64;
    let horizon = now_ms + 2000;
    let lasting = |v: Vec<(String, Option<Vec<u8>>, i64)>| -> Vec<(String, Option<Vec<u8>>, i64)> {
        v.into_iter()
            .filter(|(_, _, e)| *e == -1 || *e > horizon)
            .collect()
    };
    let m = lasting(state_of(master));
    let r = lasting(state_of(replica));
    type Entry = (String, Option<Vec<u8>>, i64);
    let only = |a: &[Entry], b: &[Entry]| -> Vec<Entry> {
        a.iter()
            .filter(|x| !b.iter().any(|y| y.0 == x.0))
            .cloned()
            .collect()
    };
    let (only_m, only_r) = (only(&m, &r), only(&r, &m));
    assert!(
        only_m.is_empty() && only_r.is_empty(),
        "different keys (with their expiry, the server's clock {now_ms} ms): only on the first {only_m:?}, only on the second {only_r:?}"
    );
    for (a, b) in m.iter().zip(&r) {
        assert_eq!(a, b, "key {} differs", a.0);
    }
    m.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn most_within_counts_only_admissions_certainly_inside() {
        // Brackets (before, after) in us; a window of 100.
        let adm = [(0, 10), (50, 60), (95, 99), (99, 101), (150, 160)];
        // [0, 100) certainly holds the first three; the fourth may have
        // been decided at 100.
        assert_eq!(most_within(&adm, 100), (3, 0));
        assert_eq!(most_within(&adm, 101), (3, 0));
        assert_eq!(most_within(&adm, 102), (4, 0));
        assert_eq!(most_within(&[], 100), (0, 0));
        // Order does not matter.
        let mut rev = adm.to_vec();
        rev.reverse();
        assert_eq!(most_within(&rev, 100), (3, 0));
        // The best interval may start anywhere.
        assert_eq!(
            most_within(&[(0, 1), (500, 501), (510, 511)], 100),
            (2, 500)
        );
    }

    #[test]
    fn a_server_that_cannot_bind_is_not_taken_for_the_one_holding_its_port() {
        // Another server holds the port: the new one fails to bind and
        // exits, while the other answers the start-up PING on that port.
        let other = Server::start();
        let dir = temp_dir();
        let started = Server::spawn(&dir, other.port, &other.extra);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            started.is_err(),
            "a server that could not bind port {} passed for the one there",
            other.port
        );
    }

    #[test]
    fn seeded_rngs_repeat_themselves() {
        let a: Vec<u64> = (0..5)
            .scan(Rng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..5)
            .scan(Rng::new(42), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..5)
            .scan(Rng::new(43), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn key_names_are_one_to_one() {
        assert_eq!(key_name(b"user:42"), "user:42");
        assert_eq!(key_name(b"a\\b"), "a\\x5cb");
        assert_eq!(key_name(&[0, 0xff]), "\\x00\\xff");
        assert_ne!(key_name(b"\\x00"), key_name(&[0]));
    }

    #[test]
    fn cluster_nodes_parse_into_shards_and_refuse_unhealthy_views() {
        let nodes = "\
a1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
a2 127.0.0.1:30002@40002 master - 0 0 2 connected 5461-10922
a3 127.0.0.1:30003@40003 master - 0 0 3 connected 10923-16383
b1 127.0.0.1:30004@40004 slave a1 0 0 1 connected
b2 127.0.0.1:30005@40005 slave a2 0 0 2 connected
b3 127.0.0.1:30006@40006 slave a3 0 0 3 connected
";
        let t = topology_from_nodes(nodes).unwrap();
        assert_eq!(t.shards.len(), 3);
        assert_eq!(t.shards[0].master, 30001);
        assert_eq!(t.shards[0].replicas, vec![30004]);
        assert!(t.shards[1].serves(5461) && !t.shards[1].serves(5460));
        let failing = nodes.replace("slave a2", "slave,fail a2");
        assert!(topology_from_nodes(&failing).is_err());
        let migrating = nodes.replace("0-5460", "0-5460 [5461->-a2]");
        assert!(topology_from_nodes(&migrating).is_err());
    }
}
