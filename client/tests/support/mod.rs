//! Shared by the live tests: small connection helpers. Servers come from
//! `redis-ratelimit-testkit`.
#![allow(dead_code)]

use redis_ratelimit_testkit::Server;

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
