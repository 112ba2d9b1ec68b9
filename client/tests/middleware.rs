#![cfg(test)]
#![cfg(feature = "tower")]
//! The tower middleware in a real axum server on 127.0.0.1, answering real
//! HTTP requests: allowed responses carry the RateLimit headers, the
//! request over the limit gets 429 with them and Retry-After, requests
//! without a key pass, and a dead Redis fails open as configured.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use redis_ratelimit_client::middleware::{HeaderKey, RateLimitLayer};
use redis_ratelimit_client::{FailurePolicy, Limiter, Limits, SlidingWindow};
use redis_ratelimit_testkit::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection, read to the end.
async fn get_with(addr: SocketAddr, api_key: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let key = api_key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    let req = format!("GET / HTTP/1.1\r\nhost: 127.0.0.1\r\n{key}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn serve(limiter: Limiter<redis::aio::ConnectionManager>) -> SocketAddr {
    let layer = RateLimitLayer::new(
        limiter,
        HeaderKey::new(http::HeaderName::from_static("x-api-key")),
    );
    let app: Router = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn per_key() -> Limits {
    Limits::single(
        "per-key",
        SlidingWindow::new(2, Duration::from_secs(60)).unwrap(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_429_with_ratelimit_headers() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        per_key(),
        FailurePolicy::FailClosed,
    );
    let addr = serve(limiter).await;

    let r = get_with(addr, Some("k1")).await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"));
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
    assert_eq!(r.headers["ratelimit"], "\"per-key\";r=1;t=60");
    assert!(!r.headers.contains_key("retry-after"));

    let r = get_with(addr, Some("k1")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit"], "\"per-key\";r=0;t=60");

    let r = get_with(addr, Some("k1")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.body, "");
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers["ratelimit"], format!("\"per-key\";r=0;t={retry}"));

    // Another key has its own quota; no key at all passes unlimited.
    assert_eq!(get_with(addr, Some("k2")).await.status, 200);
    for _ in 0..4 {
        let r = get_with(addr, None).await;
        assert_eq!(r.status, 200);
        assert!(!r.headers.contains_key("ratelimit-policy"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_open_when_redis_is_gone() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        per_key(),
        FailurePolicy::FailOpen,
    )
    .with_timeout(Duration::from_millis(200));
    let addr = serve(limiter).await;
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    support::kill(s);
    for _ in 0..3 {
        let r = get_with(addr, Some("k")).await;
        assert_eq!(r.status, 200);
        // The policy is known; the counters are not.
        assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
        assert!(!r.headers.contains_key("ratelimit"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_with_retry_after() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        per_key(),
        FailurePolicy::FailClosed,
    )
    .with_timeout(Duration::from_millis(200));
    let addr = serve(limiter).await;
    support::kill(s);
    let r = get_with(addr, Some("k")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert!(!r.headers.contains_key("ratelimit"));
}

#[test]
fn a_closure_extracts_keys_too() {
    // Any Fn(&Request<B>) -> Option<String> is a key extractor: here the
    // tenant from the path.
    let _layer = |limiter: Limiter<redis::aio::ConnectionManager>| {
        RateLimitLayer::new(limiter, |req: &http::Request<Body>| {
            req.uri().path().split('/').nth(1).map(str::to_string)
        })
    };
}
