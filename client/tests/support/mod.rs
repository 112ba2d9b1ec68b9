//! Shared by the live tests: probes for commands that have not landed in
//! the module yet (a test skips itself, with a note, until they do), and
//! small connection helpers. Servers come from `redis-ratelimit-testkit`.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use redis::Value;
use redis_ratelimit_testkit::Server;

/// Does the server know this command? (`COMMAND INFO` answers nil if not.)
pub fn has_command(con: &mut redis::Connection, name: &str) -> bool {
    match redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query::<Value>(con)
    {
        Ok(Value::Array(items)) => items.first().is_some_and(|v| *v != Value::Nil),
        _ => false,
    }
}

/// Do the limiter commands take DRYRUN and REFUND? (Before they land the
/// flags are `ERR syntax error`.)
pub fn has_flags(con: &mut redis::Connection) -> bool {
    ["DRYRUN", "REFUND"].iter().all(|flag| {
        redis::cmd("RL.TOKENBUCKET")
            .arg("rl-probe-flags")
            .arg(1)
            .arg(1)
            .arg(0)
            .arg(*flag)
            .query::<Value>(con)
            .is_ok()
    })
}

/// Prints why a test stops early; returns true when it must.
pub fn skip_unless(present: bool, what: &str) -> bool {
    if !present {
        eprintln!("skipped: not landed ({what})");
    }
    !present
}

/// A command that the running module lacks, or None when all are there.
pub fn missing_command(con: &mut redis::Connection, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find(|n| !has_command(con, n))
        .map(|n| n.to_string())
}

pub async fn multiplexed(s: &Server) -> redis::aio::MultiplexedConnection {
    redis::Client::open(s.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

pub async fn manager(s: &Server) -> redis::aio::ConnectionManager {
    redis::Client::open(s.url())
        .unwrap()
        .get_connection_manager()
        .await
        .unwrap()
}

/// SIGKILLs a server and removes its directory.
pub fn kill(s: Server) {
    let dir = s.kill();
    let _ = std::fs::remove_dir_all(dir);
}
