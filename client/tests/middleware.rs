#![cfg(test)]
#![cfg(feature = "tower")]
//! The tower middleware in real axum servers on 127.0.0.1, answering real
//! HTTP requests, over a real redis-server with the module: the RateLimit
//! headers, the default 429 body, the limited and error hooks, the error
//! log, per-request cost, the async key extractor, namespaces, the
//! build-time refusal of layers that would share keys, each choice for
//! requests without a key, and the failure policy when Redis is gone.
//!
//! Each test gives its layers a namespace (or a limit name) of its own:
//! the registry of claimed keys is process-wide, and tests run in
//! parallel in one process.

mod support;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use redis_ratelimit_client::middleware::{BuildError, HeaderKey, NoKey, RateLimitLayer};
use redis_ratelimit_client::{
    Error, FailurePolicy, Limiter, Limits, Policy, Share, SlidingWindow, TokenBucket,
};
use redis_ratelimit_testkit::{call, int, ok, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Layer = RateLimitLayer<redis::aio::ConnectionManager, Body, Body>;

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 GET on a fresh connection, read to the end.
async fn send(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n");
    for (k, v) in headers {
        write!(req, "{k}: {v}\r\n").unwrap();
    }
    req.push_str("\r\n");
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

async fn get_with(addr: SocketAddr, api_key: Option<&str>) -> Reply {
    match api_key {
        Some(k) => send(addr, "/", &[("x-api-key", k)]).await,
        None => send(addr, "/", &[]).await,
    }
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn hello(layer: Layer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

fn api_key() -> HeaderKey {
    HeaderKey::new("x-api-key")
}

fn per_key() -> Limits {
    Limits::single(
        "per-key",
        SlidingWindow::new(2, Duration::from_secs(60)).unwrap(),
    )
    .unwrap()
}

async fn limiter(s: &Server, limits: Limits) -> Limiter<redis::aio::ConnectionManager> {
    Limiter::new(support::manager(s).await, limits, FailurePolicy::FailClosed)
}

/// A layer keyed by `x-api-key`, 2 a minute, in its own namespace.
async fn api_layer(s: &Server, namespace: &str) -> Layer {
    RateLimitLayer::builder(limiter(s, per_key()).await)
        .namespace(namespace)
        .key_extractor(api_key())
        .build()
        .unwrap()
}

fn exists(s: &Server, key: &str) -> bool {
    int(&mut s.connect(), &["EXISTS", key]) == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_429_with_a_problem_body_and_ratelimit_headers() {
    let s = Server::start();
    let addr = serve(hello(api_layer(&s, "t429").await)).await;

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
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    assert_eq!(r.headers["ratelimit"], format!("\"per-key\";r=0;t={retry}"));
    assert_eq!(
        r.body,
        format!(
            "{{\"title\":\"Too Many Requests\",\"status\":429,\
             \"detail\":\"rate limit \\\"per-key\\\" exceeded; retry in {retry} s\"}}"
        )
    );

    // Another key has its own quota.
    assert_eq!(get_with(addr, Some("k2")).await.status, 200);
    assert!(exists(&s, "rl:t429:{k1}:per-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_shape_the_429_and_the_error_response() {
    let s = Server::start();
    let layer = RateLimitLayer::builder(limiter(&s, per_key()).await)
        .namespace("hooks")
        .key_extractor(api_key())
        .on_limited(|l| {
            let d = &l.verdict.decision;
            let body = format!(
                "{{\"key\":\"{}\",\"limit\":\"{}\",\"remaining\":{},\"retry_ms\":{},\"path\":\"{}\",\"policy\":{:?}}}",
                l.key,
                l.limit_name().unwrap(),
                d.remaining,
                d.retry_after.unwrap().as_millis(),
                l.request.uri.path(),
                l.headers.policy,
            );
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response()
        })
        .on_error(|f| {
            let code = match f.error {
                Error::Redis(e) => e.code().unwrap_or("?").to_string(),
                other => other.to_string(),
            };
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("limiter error {code} for {}", f.key),
            )
                .into_response()
        })
        .build()
        .unwrap();
    let wrong = layer.keys("broken");
    assert_eq!(wrong, ["rl:hooks:{broken}:per-key"]);
    let addr = serve(hello(layer)).await;

    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    let r = get_with(addr, Some("k")).await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["content-type"], "application/json");
    // The hook's body saw the decision and the request; the middleware
    // added the headers.
    assert!(
        r.body
            .starts_with("{\"key\":\"k\",\"limit\":\"per-key\",\"remaining\":0,\"retry_ms\":"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .ends_with(",\"path\":\"/\",\"policy\":\"\\\"per-key\\\";q=2;w=60\"}"),
        "{}",
        r.body
    );
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");

    // A plain string where the limiter keeps its state: WRONGTYPE, not an
    // outage, so the error hook answers.
    ok(&mut s.connect(), &["SET", &wrong[0], "not a limiter"]);
    let r = get_with(addr, Some("broken")).await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (503, "limiter error WRONGTYPE for broken")
    );
    assert!(!r.headers.contains_key("ratelimit-policy"));
    // The key was not touched.
    assert_eq!(
        call(&mut s.connect(), &["GET", &wrong[0]]).unwrap(),
        redis::Value::BulkString(b"not a limiter".to_vec())
    );
}

/// Records every event's level and fields.
struct Capture(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                write!(self.0, " {}={v:?}", f.name()).unwrap();
            }
        }
        let mut fields = Fields(event.metadata().level().to_string());
        event.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// One thread: the server's tasks run where the test's subscriber is set.
#[tokio::test(flavor = "current_thread")]
async fn errors_are_logged_and_answer_500_by_default() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let _log = tracing::subscriber::set_default(Capture(events.clone()));
    let s = Server::start();
    let layer = api_layer(&s, "errlog").await;
    let wrong = layer.keys("secret-api-key");
    let addr = serve(hello(layer)).await;
    ok(&mut s.connect(), &["SET", &wrong[0], "x"]);

    let r = get_with(addr, Some("secret-api-key")).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(
        r.body,
        "{\"title\":\"Internal Server Error\",\"status\":500,\"detail\":\"the rate limiter failed\"}"
    );
    assert!(!r.headers.contains_key("ratelimit-policy"));

    let events = events.lock().unwrap();
    let errors: Vec<&String> = events.iter().filter(|e| e.starts_with("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{events:?}");
    let e = errors[0];
    assert!(e.contains("message=rate limiter failed"), "{e}");
    assert!(
        e.contains("error=redis: \"WRONGTYPE\": Operation against a key holding the wrong kind"),
        "{e}"
    );
    assert!(e.contains("keys=rl:errlog:{*}:per-key"), "{e}");
    assert!(e.contains("method=GET"), "{e}");
    // Keys may be API keys: the log names the pattern, not the caller.
    assert!(!e.contains("secret-api-key"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_request_takes_its_cost() {
    let s = Server::start();
    let limits = Limits::single(
        "units",
        SlidingWindow::new(10, Duration::from_secs(60)).unwrap(),
    )
    .unwrap();
    let layer: Layer = RateLimitLayer::builder(limiter(&s, limits).await)
        .namespace("cost")
        .key_extractor(api_key())
        .cost(|req| {
            req.headers()
                .get("x-cost")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1)
        })
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    let take = |cost: &'static str| async move {
        send(addr, "/", &[("x-api-key", "k"), ("x-cost", cost)]).await
    };

    let r = take("4").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit"], "\"units\";r=6;t=60");
    let r = send(addr, "/", &[("x-api-key", "k")]).await; // no header: 1
    assert_eq!(r.headers["ratelimit"], "\"units\";r=5;t=60");
    let r = take("5").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit"], "\"units\";r=0;t=60");
    let r = take("1").await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));

    // More than the limit: never allowed, so no Retry-After.
    let r = send(addr, "/", &[("x-api-key", "big"), ("x-cost", "11")]).await;
    assert_eq!(r.status, 429);
    assert!(!r.headers.contains_key("retry-after"), "{:?}", r.headers);
    assert!(
        r.body.contains(
            "this request (cost 11) exceeds rate limit \\\"units\\\" and will never be allowed"
        ),
        "{}",
        r.body
    );
    // ... and nothing was taken from that caller.
    let r = send(addr, "/", &[("x-api-key", "big"), ("x-cost", "10")]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_extractor_finds_the_tenant_of_a_token() {
    let s = Server::start();
    {
        let mut con = s.connect();
        ok(&mut con, &["SET", "token:t1", "acme"]);
        ok(&mut con, &["SET", "token:t2", "acme"]);
        ok(&mut con, &["SET", "token:t3", "globex"]);
    }
    // The tenant is looked up in Redis, asynchronously, for each request.
    let lookup = support::multiplexed(&s).await;
    let layer: Layer = RateLimitLayer::builder(limiter(&s, per_key()).await)
        .namespace("tenants")
        .key_async(move |req| {
            let token = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_string);
            let mut con = lookup.clone();
            async move {
                let token = token?;
                redis::cmd("GET")
                    .arg(format!("token:{token}"))
                    .query_async::<Option<String>>(&mut con)
                    .await
                    .ok()
                    .flatten()
            }
        })
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    let bearer = |t: &'static str| async move {
        send(addr, "/", &[("authorization", &format!("Bearer {t}"))]).await
    };

    // Two tokens of one tenant share its quota; another tenant has its own.
    assert_eq!(bearer("t1").await.status, 200);
    let r = bearer("t2").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit"], "\"per-key\";r=0;t=60");
    assert_eq!(bearer("t1").await.status, 429);
    assert_eq!(bearer("t3").await.status, 200);
    assert!(exists(&s, "rl:tenants:{acme}:per-key"));
    assert!(exists(&s, "rl:tenants:{globex}:per-key"));
    // An unknown token has no tenant: no key, rejected by default.
    assert_eq!(bearer("nope").await.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_keep_two_routes_with_one_limit_name_apart() {
    let s = Server::start();
    // Both limits are called "rate", with different policies.
    let search_limits = Limits::single(
        "rate",
        SlidingWindow::new(2, Duration::from_secs(60)).unwrap(),
    )
    .unwrap();
    let upload_limits = Limits::single(
        "rate",
        TokenBucket::new(5, 1, Duration::from_secs(10)).unwrap(),
    )
    .unwrap();
    // No type annotations: axum's router pins the body types.
    let search = RateLimitLayer::builder(limiter(&s, search_limits).await)
        .namespace("search")
        .key_extractor(api_key())
        .build()
        .unwrap();
    let upload = RateLimitLayer::builder(limiter(&s, upload_limits).await)
        .namespace("upload")
        .key_extractor(api_key())
        .build()
        .unwrap();
    let app = Router::new()
        .route("/search", get(|| async { "found" }).layer(search))
        .route("/upload", get(|| async { "stored" }).layer(upload));
    let addr = serve(app).await;
    let k = [("x-api-key", "alice")];

    assert_eq!(send(addr, "/search", &k).await.status, 200);
    assert_eq!(send(addr, "/search", &k).await.status, 200);
    assert_eq!(send(addr, "/search", &k).await.status, 429);
    // The upload route's quota is untouched by the search route's.
    let r = send(addr, "/upload", &k).await;
    assert_eq!((r.status, r.body.as_str()), (200, "stored"));
    assert_eq!(r.headers["ratelimit-policy"], "\"rate\";q=5;w=50");
    assert_eq!(r.headers["ratelimit"], "\"rate\";r=4;t=10");
    assert!(exists(&s, "rl:search:{alice}:rate"));
    assert!(exists(&s, "rl:upload:{alice}:rate"));
    assert!(!exists(&s, "rl:{alice}:rate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_that_would_share_keys_under_another_policy_are_refused() {
    let s = Server::start();
    // A limit name no other test uses: the registry is process-wide.
    let sliding = || {
        Limits::single(
            "collide",
            SlidingWindow::new(2, Duration::from_secs(60)).unwrap(),
        )
        .unwrap()
    };
    let bucket = || {
        Limits::single(
            "collide",
            TokenBucket::new(5, 1, Duration::from_secs(1)).unwrap(),
        )
        .unwrap()
    };
    let build = |l: Limiter<_>, ns: Option<&str>| {
        let b = RateLimitLayer::builder(l).key_extractor(api_key());
        match ns {
            Some(ns) => b.namespace(ns),
            None => b,
        }
        .build()
    };

    let first: Layer = build(limiter(&s, sliding()).await, None).unwrap();
    // The same limit again (say the app built once more): allowed.
    let again: Layer = build(limiter(&s, sliding()).await, None).unwrap();
    // Another policy under the same keys: refused, naming both.
    let err = build(limiter(&s, bucket()).await, None).unwrap_err();
    let BuildError::SharedKeys {
        keys,
        namespace,
        policy,
        other_namespace,
        other_policy,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(keys, "rl:{*}:collide");
    assert_eq!((namespace, other_namespace), (&None, &None));
    assert!(matches!(**policy, Policy::TokenBucket(_)), "{policy:?}");
    assert!(
        matches!(**other_policy, Policy::Sliding(_)),
        "{other_policy:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with(
            "this layer (no namespace) would share the keys rl:{*}:collide with a layer \
             built earlier (no namespace) under another policy (TokenBucket("
        ),
        "{text}"
    );
    assert!(
        text.ends_with("give the layers different namespaces"),
        "{text}"
    );

    // In a namespace of its own it is fine; a second one in that
    // namespace with the first policy is refused, naming it.
    let _own: Layer = build(limiter(&s, bucket()).await, Some("collide-b")).unwrap();
    let err = build(limiter(&s, sliding()).await, Some("collide-b")).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "this layer (namespace \"collide-b\") would share the keys rl:collide-b:{*}:collide \
             with a layer built earlier (namespace \"collide-b\")"
        ),
        "{err}"
    );

    // Keys are compared, not namespaces: a limiter whose own prefix
    // spells the same keys collides too.
    let prefixed = limiter(&s, sliding())
        .await
        .with_prefix("rl:collide-b:")
        .unwrap();
    let err = build(prefixed, None).unwrap_err();
    assert!(
        matches!(&err, BuildError::SharedKeys { keys, .. } if keys == "rl:collide-b:{*}:collide"),
        "{err:?}"
    );

    // Once the layers using the keys are gone, the keys are free.
    drop((first, again));
    let _now: Layer = build(limiter(&s, bucket()).await, None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn build_errors_say_what_is_missing_or_wrong() {
    let s = Server::start();
    let sliding = || {
        Limits::single(
            "errors",
            SlidingWindow::new(2, Duration::from_secs(60)).unwrap(),
        )
        .unwrap()
    };
    let build = |l: Limiter<_>, ns: &str| -> Result<Layer, _> {
        RateLimitLayer::builder(l)
            .key_extractor(api_key())
            .namespace(ns)
            .build()
    };
    let e = build(limiter(&s, sliding()).await, "a{b}").unwrap_err();
    assert_eq!(
        e,
        BuildError::InvalidNamespace {
            namespace: "a{b}".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "namespace \"a{b}\" must be 1 to 64 characters of A-Z a-z 0-9 _ - . :"
    );
    assert!(matches!(
        build(limiter(&s, sliding()).await, ""),
        Err(BuildError::InvalidNamespace { .. })
    ));
    let e = RateLimitLayer::<_, Body, Body>::builder(limiter(&s, sliding()).await)
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::NoKeyExtractor);
    let e = RateLimitLayer::<_, Body, Body>::builder(limiter(&s, sliding()).await)
        .key_extractor(api_key())
        .no_key(NoKey::shared(""))
        .build()
        .unwrap_err();
    assert_eq!(e, BuildError::EmptySharedKey);
}

/// The client's IP, as the example keys requests without an API key.
fn peer_ip(req: &http::Request<Body>) -> Option<String> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| format!("ip:{}", addr.ip()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_is_rejected_by_default() {
    let s = Server::start();
    let layer = || async {
        RateLimitLayer::builder(limiter(&s, per_key()).await)
            .namespace("reject")
            .key(peer_ip)
            .build()
            .unwrap()
    };
    // Served without connect info, the IP extractor finds nothing: every
    // request is refused, not waved through unlimited.
    let addr = serve(hello(layer().await)).await;
    let r = get_with(addr, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(
        r.body,
        "{\"title\":\"Bad Request\",\"status\":400,\"detail\":\"the request carries no rate-limit key\"}"
    );
    assert!(!r.headers.contains_key("ratelimit-policy"));

    // With connect info, the same layer limits by IP.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let with_ip = listener.local_addr().unwrap();
    let app = hello(layer().await).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = get_with(with_ip, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit"], "\"per-key\";r=1;t=60");
    assert!(exists(&s, "rl:reject:{ip:127.0.0.1}:per-key"));

    // The no-key hook shapes the refusal.
    let hooked: Layer = RateLimitLayer::builder(limiter(&s, per_key()).await)
        .namespace("reject")
        .key_extractor(api_key())
        .on_no_key(|parts| {
            (
                StatusCode::UNAUTHORIZED,
                format!("send x-api-key to {}", parts.uri.path()),
            )
                .into_response()
        })
        .build()
        .unwrap();
    let addr = serve(hello(hooked)).await;
    let r = get_with(addr, None).await;
    assert_eq!((r.status, r.body.as_str()), (401, "send x-api-key to /"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_shared_limits_keyless_requests_together() {
    let s = Server::start();
    let layer: Layer = RateLimitLayer::builder(limiter(&s, per_key()).await)
        .namespace("shared")
        .key_extractor(api_key())
        .no_key(NoKey::shared("anonymous"))
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    assert_eq!(get_with(addr, None).await.status, 200);
    assert_eq!(get_with(addr, None).await.status, 200);
    let r = get_with(addr, None).await;
    assert_eq!(r.status, 429);
    assert!(r.headers.contains_key("retry-after"));
    // Callers with a key are not in the anonymous pool.
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    assert!(exists(&s, "rl:shared:{anonymous}:per-key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_pass_lets_keyless_requests_through_unlimited() {
    let s = Server::start();
    let layer: Layer = RateLimitLayer::builder(limiter(&s, per_key()).await)
        .namespace("pass")
        .key_extractor(api_key())
        .no_key(NoKey::Pass)
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    for _ in 0..4 {
        let r = get_with(addr, None).await;
        assert_eq!((r.status, r.body.as_str()), (200, "hello"));
        assert!(!r.headers.contains_key("ratelimit-policy"));
    }
    // An empty key is no key.
    assert_eq!(get_with(addr, Some("")).await.status, 200);
    // Keyed callers are still limited.
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    assert_eq!(get_with(addr, Some("k")).await.status, 429);
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
    let layer = RateLimitLayer::builder(limiter)
        .namespace("open")
        .key_extractor(api_key())
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
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

/// Redis unreachable and the limiter fails closed: the caller is not over
/// its limit, the service cannot tell. `503` with `Retry-After`, not `429`
/// (it was 429), and the limited hook is not asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_closed_with_503_and_retry_after() {
    let s = Server::start();
    let limiter = limiter(&s, per_key())
        .await
        .with_timeout(Duration::from_millis(200));
    let layer = RateLimitLayer::builder(limiter)
        .namespace("closed")
        .key_extractor(api_key())
        .on_limited(|_| (StatusCode::IM_A_TEAPOT, "not a limit").into_response())
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    support::kill(s);
    let r = get_with(addr, Some("k")).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.headers["content-type"], "application/problem+json");
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
    assert!(!r.headers.contains_key("ratelimit"));
    assert_eq!(
        r.body,
        "{\"title\":\"Service Unavailable\",\"status\":503,\
         \"detail\":\"the rate limits cannot be checked now; retry in 1 s\"}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unavailable_hook_shapes_the_503() {
    let s = Server::start();
    let limiter = limiter(&s, per_key())
        .await
        .with_timeout(Duration::from_millis(200))
        .with_cooldown(Duration::from_secs(5));
    let layer = RateLimitLayer::builder(limiter)
        .namespace("closed-hook")
        .key_extractor(api_key())
        .on_unavailable(|l| {
            assert!(l.is_unavailable());
            (StatusCode::SERVICE_UNAVAILABLE, format!("later, {}", l.key)).into_response()
        })
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    support::kill(s);
    let r = get_with(addr, Some("k")).await;
    assert_eq!((r.status, r.body.as_str()), (503, "later, k"));
    // The cooldown: no point asking again before Redis is tried again.
    assert_eq!(r.headers["retry-after"], "5");
}

/// The in-process fallback decides like a limit (429 when over it), and
/// its RateLimit field says who decided: `;fallback`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_decisions_are_marked_in_the_ratelimit_field() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        per_key(),
        FailurePolicy::Fallback(Share::Whole),
    )
    .with_timeout(Duration::from_millis(200));
    let layer = RateLimitLayer::builder(limiter)
        .namespace("fallback")
        .key_extractor(api_key())
        .build()
        .unwrap();
    let addr = serve(hello(layer)).await;
    support::kill(s);
    let r = get_with(addr, Some("k")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["ratelimit-policy"], "\"per-key\";q=2;w=60");
    assert_eq!(r.headers["ratelimit"], "\"per-key\";r=1;t=60;fallback");
    assert_eq!(get_with(addr, Some("k")).await.status, 200);
    let r = get_with(addr, Some("k")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert_eq!(
        r.headers["ratelimit"],
        format!("\"per-key\";r=0;t={retry};fallback")
    );
}

/// A closure is a key extractor, its argument's type inferred (it needed
/// `|req: &Request<Body>|`: E0282 without), and so is a function generic
/// over the body; the body type comes from the router.
#[test]
fn a_closure_extracts_keys_too() {
    fn tenant<B>(req: &http::Request<B>) -> Option<String> {
        req.uri().path().split('/').nth(1).map(str::to_string)
    }
    let _app = |limiter: Limiter<redis::aio::ConnectionManager>| -> Router {
        let by_path = RateLimitLayer::builder(limiter.clone())
            .namespace("closure")
            .key(|req| req.uri().path().split('/').nth(1).map(str::to_string))
            .cost(|req| {
                if req.uri().path().ends_with("/bulk") {
                    5
                } else {
                    1
                }
            })
            .build()
            .unwrap();
        let by_fn = RateLimitLayer::builder(limiter)
            .namespace("function")
            .key(tenant)
            .build()
            .unwrap();
        Router::new()
            .route("/", get(|| async { "hello" }))
            .layer(by_path)
            .layer(by_fn)
    };
}
