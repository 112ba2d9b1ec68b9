//! An AI-gateway-style axum service: per API key, 60 requests a minute,
//! 10000 tokens a minute, 200000 tokens a day (the day of New York, from
//! its midnight) and at most 4 requests in flight. A token count is only
//! known from the model's answer, so each request **reserves** an estimate
//! at admission (the `x-max-tokens` header, or 500) on the two token
//! budgets, holds a slot of the in-flight cap while the model works, and is
//! **settled** with the usage the answer reports (`x-usage-tokens`): the
//! difference is charged or given back on both budgets and the slot freed,
//! in one atomic step. A request that used more than what was left puts
//! the key in debt: it is served (the tokens were spent), its response
//! says `RateLimit: "tpm";r=0;t=<wait>`, and the next requests get `429`
//! with an honest `Retry-After` until the debt is paid back by time. A
//! gateway that dies mid-request leaves its reservation to end with its
//! lease (two minutes), settled at its estimate: never lost, never
//! handed out twice.
//!
//! The "model" here is a stand-in: `GET /v1/chat?tokens=N` answers as if
//! it had used N tokens.
//!
//! ```sh
//! make run    # Redis with the module on 127.0.0.1:6379
//! cargo run -p redis-ratelimit-client --features tower --example ai_gateway
//! curl -i -H 'x-api-key: alice' 'http://127.0.0.1:3000/v1/chat?tokens=700'
//! ```
//!
//! `REDIS_URL` (default `redis://127.0.0.1:6379/`) and `LISTEN` (default
//! `127.0.0.1:3000`) change the addresses.

use std::time::Duration;

use axum::http::{HeaderMap, Request, Response, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use redis_ratelimit_client::middleware::{HeaderKey, RateLimitLayer};
use redis_ratelimit_client::{
    redis, CalendarUnit, Concurrency, Estimate, FailurePolicy, FixedWindow, Limiter, Limits,
    SlidingWindow, TokenBucket,
};

/// The estimate when the caller does not say how many tokens it may use.
const DEFAULT_ESTIMATE: u64 = 500;

/// The header the model's answer reports its usage in.
const USAGE: &str = "x-usage-tokens";

/// The stand-in model: answers `?tokens=N` as if it had used N tokens
/// (100 without), and reports them.
async fn chat(uri: Uri) -> impl IntoResponse {
    let used = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("tokens="))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(100);
    let mut headers = HeaderMap::new();
    if let Ok(v) = used.to_string().parse() {
        headers.insert(USAGE, v);
    }
    (headers, format!("an answer of {used} tokens\n"))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());

    let limits = Limits::builder()
        // The in-flight cap: its lease is each request's reservation
        // (renewed while the request runs; two minutes after a crash).
        .limit("inflight", Concurrency::new(4, Duration::from_secs(120))?)
        .limit("rpm", SlidingWindow::new(60, Duration::from_secs(60))?)
        .limit(
            "tpm",
            TokenBucket::new(10_000, 10_000, Duration::from_secs(60))?,
        )
        .limit(
            "tpd",
            FixedWindow::calendar(200_000, CalendarUnit::Day)?.in_time_zone("America/New_York")?,
        )
        .build()?;
    let redis = redis::Client::open(url)?;
    // Tokens are money: while Redis is away, nothing is admitted.
    let limiter = Limiter::connect(&redis, limits, FailurePolicy::FailClosed)?
        .with_timeout(Duration::from_millis(100));

    let layer = RateLimitLayer::builder(limiter)
        .namespace("ai")
        .key_extractor(HeaderKey::new("x-api-key"))
        // Reserve the caller's ceiling (or a default) on the token
        // budgets; the requests-per-minute limit counts the request.
        .reserve(|req: &Request<axum::body::Body>| {
            let max = req
                .headers()
                .get("x-max-tokens")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(DEFAULT_ESTIMATE);
            Estimate::new(max).on("tpm").on("tpd")
        })
        // Settle with what the model reports (no report: the estimate).
        .charge(|resp: &Response<axum::body::Body>| {
            resp.headers().get(USAGE)?.to_str().ok()?.parse().ok()
        })
        .build()?;

    let app = Router::new().route("/v1/chat", get(chat)).layer(layer);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}/v1/chat");
    axum::serve(listener, app).await?;
    Ok(())
}
