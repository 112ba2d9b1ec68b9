//! An axum API limited per caller through Redis: each API key (or, without
//! one, each client IP) gets bursts of 10, then 1 request a second; a
//! request to `/bulk` weighs 5. Over the limit: `429` with a problem
//! details body, `Retry-After` and the `RateLimit` / `RateLimit-Policy`
//! headers; within it, the same headers on the `200`. If Redis is down the
//! API stays up (fail open). Keys live under `rl:api:` (the layer's
//! namespace).
//!
//! ```sh
//! make run    # Redis with the module on 127.0.0.1:6379
//! cargo run -p redis-ratelimit-client --features tower --example axum_api
//! curl -i -H 'x-api-key: alice' http://127.0.0.1:3000/
//! curl -i http://127.0.0.1:3000/bulk
//! ```
//!
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`) and `LISTEN` (default
//! `127.0.0.1:3000`) change the addresses.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use redis_ratelimit_client::middleware::RateLimitLayer;
use redis_ratelimit_client::{redis, FailurePolicy, Limiter, Limits, TokenBucket};

/// The caller: its API key if it sent one, else its IP address. The IP
/// needs `into_make_service_with_connect_info` below; without it no
/// request would have a key, and the layer would refuse them all (400)
/// rather than let them through unlimited.
fn caller<B>(req: &Request<B>) -> Option<String> {
    if let Some(key) = req.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(format!("key:{key}"));
    }
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| format!("ip:{}", addr.ip()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());

    let redis = redis::Client::open(url)?;
    // One limit is one RL.TOKENBUCKET per request. Add more with
    // `Limits::builder().limit(..).limit(..)` (one RL.ALL per request), say
    // `.limit("hour", SlidingWindow::new(300, Duration::from_secs(3600))?)`.
    let limits = Limits::single("burst", TokenBucket::new(10, 1, Duration::from_secs(1))?)?;
    // Reconnects by itself; while Redis is away, the API stays up (fail open).
    let limiter = Limiter::connect(&redis, limits, FailurePolicy::FailOpen)?
        .with_timeout(Duration::from_millis(50));

    let layer = RateLimitLayer::builder(limiter)
        .namespace("api")
        .key(caller)
        .cost(|req| if req.uri().path() == "/bulk" { 5 } else { 1 })
        .build()?;

    let app = Router::new()
        .route("/", get(|| async { "hello\n" }))
        .route("/bulk", get(|| async { "a heavy answer\n" }))
        .layer(layer);

    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}/");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
