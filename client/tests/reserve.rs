//! Reservations through the client on a real server (issue 25): a
//! [`Reservation`] reserved at admission and settled with the actual cost,
//! higher (debt: the next request is denied with an honest retry_after) or
//! lower (units come back), dropped without settling (settled at its
//! estimate), settled twice (the second answers 0), and the outage
//! policies.
#![cfg(test)]

mod support;

use std::time::Duration;

use redis_ratelimit_client::{
    AsyncRateLimitCommands, Concurrency, Error, Estimate, FailurePolicy, Limiter, Limits, Reserved,
    SlidingWindow, Source, TokenBucket,
};
use redis_ratelimit_testkit::{ints_on, wait_until, Server};

const S: fn(u64) -> Duration = Duration::from_secs;

/// 5 in flight, 100 requests a minute, 100 tokens an hour (one token
/// back every 36 s: nothing refills during a test).
fn gateway() -> Limits {
    Limits::builder()
        .limit("inflight", Concurrency::new(5, S(60)).unwrap())
        .limit("rpm", SlidingWindow::new(100, S(60)).unwrap())
        .limit("tokens", TokenBucket::new(100, 100, S(3600)).unwrap())
        .build()
        .unwrap()
}

/// The tokens left on `key`, by a peek that changes nothing.
fn tokens_left(c: &mut redis::Connection, user: &str) -> i64 {
    let key = format!("rl:{{{user}}}:tokens");
    let r = ints_on(
        c,
        &["RL.TOKENBUCKET", &key, "100", "100", "0", "PERIOD", "3600"],
    );
    r[2]
}

/// Free slots of the in-flight cap (a dry run answers what would be left
/// after taking one).
fn free_slots(c: &mut redis::Connection, user: &str) -> i64 {
    let key = format!("rl:{{{user}}}:inflight");
    let r = ints_on(c, &["RL.ACQUIRE", &key, "5", "60", "DRYRUN"]);
    r[2] + r[0]
}

async fn limiter(s: &Server, failure: FailurePolicy) -> Limiter<redis::aio::ConnectionManager> {
    Limiter::new(support::manager(s).await, gateway(), failure)
}

fn granted<C: redis_ratelimit_client::LimiterConnection>(
    r: Reserved<C>,
) -> redis_ratelimit_client::Reservation<C> {
    match r {
        Reserved::Granted(g) => g,
        Reserved::Denied(d) => panic!("denied: {d:?}"),
    }
}

#[tokio::test]
async fn settled_higher_goes_into_debt_and_denies_honestly() {
    let s = Server::start();
    let mut c = s.connect();
    let limiter = limiter(&s, FailurePolicy::FailClosed).await;
    let r = granted(
        limiter
            .reserve("k1", Estimate::new(10).on("tokens"))
            .await
            .unwrap(),
    );
    assert!(r.id() > 0);
    assert_eq!(r.anchor(), "rl:{k1}:inflight");
    assert_eq!(r.keys(), ["rl:{k1}:tokens"]);
    assert_eq!(tokens_left(&mut c, "k1"), 90);
    assert_eq!(free_slots(&mut c, "k1"), 4);
    let settled = r.settle(150).await.unwrap();
    assert!(settled.settled, "{settled:?}");
    assert_eq!(settled.source, Source::Redis);
    // In debt: a one-unit request waits for the 50 tokens of debt and one
    // more (36 s each), and the settlement says so.
    let d = settled.decision;
    assert!(!d.allowed());
    assert_eq!(
        (d.remaining(), d.binding),
        (0, 2),
        "binding: the tokens, third of the limits"
    );
    let debt_wait = |w: Option<Duration>| {
        let w = w.unwrap();
        w > S(50 * 36) && w <= S(51 * 36)
    };
    assert!(debt_wait(d.retry_after()), "{d:?}");
    assert_eq!(free_slots(&mut c, "k1"), 5, "the slot is freed");
    // The next reservation, even of 0 ("if any budget is left"), is denied
    // with the same honest wait.
    match limiter.reserve("k1", Estimate::new(0)).await.unwrap() {
        Reserved::Denied(d) => {
            assert_eq!(d.binding, 2, "{d:?}");
            assert_eq!(d.remaining(), 0);
            assert!(debt_wait(d.retry_after()), "{d:?}");
        }
        Reserved::Granted(g) => panic!("granted during debt: {g:?}"),
    }
    assert_eq!(free_slots(&mut c, "k1"), 5, "a denial takes no slot");
}

#[tokio::test]
async fn settled_lower_gives_units_back() {
    let s = Server::start();
    let mut c = s.connect();
    let limiter = limiter(&s, FailurePolicy::FailClosed).await;
    let r = granted(limiter.reserve("k2", 50).await.unwrap());
    // A bare estimate reserves on every limit but the anchor: the window
    // holds 50 too.
    assert_eq!(r.keys(), ["rl:{k2}:rpm", "rl:{k2}:tokens"]);
    assert_eq!(tokens_left(&mut c, "k2"), 50);
    let settled = r.settle(5).await.unwrap();
    assert!(settled.settled);
    assert!(settled.decision.allowed());
    assert_eq!(tokens_left(&mut c, "k2"), 95);
    let rpm = ints_on(
        &mut c,
        &["RL.SLIDING", "rl:{k2}:rpm", "100", "60", "COST", "0"],
    );
    assert_eq!(rpm[2], 95);
    assert_eq!(free_slots(&mut c, "k2"), 5);
}

// Two threads: the test blocks its own while polling the server, and the
// release of the dropped reservation runs on the runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_unsettled_is_settled_at_its_estimate_and_settles_once() {
    let s = Server::start();
    let mut c = s.connect();
    let limiter = limiter(&s, FailurePolicy::FailClosed).await;
    let est = Estimate::new(30).on("tokens");
    let r = granted(limiter.reserve("k3", est.clone()).await.unwrap());
    let (anchor, keys, id) = (r.anchor().to_string(), r.keys().to_vec(), r.id());
    drop(r);
    // Released in the background: the slot comes back, the estimate stays.
    assert!(wait_until(5, || free_slots(&mut c, "k3") == 5));
    assert_eq!(tokens_left(&mut c, "k3"), 70);
    let mut con = support::multiplexed(&s).await;
    let late = con
        .settle(anchor.as_str(), keys.iter().map(String::as_str), id, 0)
        .await
        .unwrap();
    assert!(!late.settled, "{late:?}");
    assert_eq!(tokens_left(&mut c, "k3"), 70, "nothing came back");

    // Settled twice: the second answers 0 and changes nothing.
    let r = granted(limiter.reserve("k3", est).await.unwrap());
    let (anchor, keys, id) = (r.anchor().to_string(), r.keys().to_vec(), r.id());
    assert!(r.settle(10).await.unwrap().settled);
    assert_eq!(tokens_left(&mut c, "k3"), 60);
    let again = con
        .settle(anchor.as_str(), keys.iter().map(String::as_str), id, 0)
        .await
        .unwrap();
    assert!(!again.settled, "{again:?}");
    assert_eq!(tokens_left(&mut c, "k3"), 60);
}

#[tokio::test]
async fn a_held_reservation_keeps_its_lease_alive() {
    let s = Server::start();
    let mut c = s.connect();
    let limits = Limits::builder()
        .limit(
            "inflight",
            Concurrency::new(5, Duration::from_millis(600)).unwrap(),
        )
        .limit("tokens", TokenBucket::new(100, 100, S(3600)).unwrap())
        .build()
        .unwrap();
    let limiter = Limiter::new(
        support::manager(&s).await,
        limits,
        FailurePolicy::FailClosed,
    );
    let r = granted(limiter.reserve("k4", 40).await.unwrap());
    // Three lease times later it is still live, and settles.
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let key = "rl:{k4}:inflight";
    assert_eq!(
        ints_on(&mut c, &["RL.ACQUIRE", key, "5", "0.6", "DRYRUN"])[2],
        3
    );
    let settled = r.settle(40).await.unwrap();
    assert!(settled.settled, "{settled:?}");
    assert_eq!(tokens_left(&mut c, "k4"), 60);
}

#[tokio::test]
async fn limits_without_an_anchor_cannot_reserve_and_outages_follow_the_policy() {
    let s = Server::start();
    let plain = Limits::single("tokens", TokenBucket::new(100, 100, S(3600)).unwrap()).unwrap();
    let l = Limiter::new(support::manager(&s).await, plain, FailurePolicy::FailOpen);
    assert!(matches!(
        l.reserve("k", 1).await,
        Err(Error::NotReservable { .. })
    ));
    let l = limiter(&s, FailurePolicy::FailOpen).await;
    assert!(matches!(
        l.reserve("k", Estimate::new(1).on("nope")).await,
        Err(Error::NotReservable { .. })
    ));
    let only = Limits::single("inflight", Concurrency::new(5, S(60)).unwrap()).unwrap();
    let l = Limiter::new(support::manager(&s).await, only, FailurePolicy::FailOpen);
    assert!(matches!(
        l.reserve("k", 1).await,
        Err(Error::NotReservable { .. })
    ));

    let open = limiter(&s, FailurePolicy::FailOpen).await;
    let closed = limiter(&s, FailurePolicy::FailClosed).await;
    let fallback = limiter(
        &s,
        FailurePolicy::Fallback(redis_ratelimit_client::Share::Whole),
    )
    .await;
    support::kill(s);
    // FailOpen admits with a reservation that holds nothing.
    let r = granted(open.reserve("k", 10).await.unwrap());
    assert_eq!((r.id(), r.decision().source()), (0, Source::FailOpen));
    let settled = r.settle(20).await.unwrap();
    assert_eq!((settled.settled, settled.source), (false, Source::FailOpen));
    // FailClosed denies.
    match closed.reserve("k", 10).await.unwrap() {
        Reserved::Denied(d) => assert_eq!(d.source(), Source::FailClosed),
        Reserved::Granted(g) => panic!("{g:?}"),
    }
    // Fallback decides in this process: five slots, then none.
    let held: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            let r = granted(fallback.reserve("k", 10).await.unwrap());
            assert_eq!(r.decision().source(), Source::Fallback);
            v.push(r);
        }
        v
    };
    assert!(matches!(
        fallback.reserve("k", 10).await.unwrap(),
        Reserved::Denied(_)
    ));
    let mut held = held.into_iter();
    let first = held.next().unwrap();
    let settled = first.settle(3).await.unwrap();
    assert_eq!((settled.settled, settled.source), (false, Source::Fallback));
    // Its slot came back.
    assert!(matches!(
        fallback.reserve("k", 10).await.unwrap(),
        Reserved::Granted(_)
    ));
}

/// The tower layer charging from the response: a plain tower service
/// (no HTTP) whose response carries the tokens it used in `x-usage`, or
/// fails when asked to.
#[cfg(feature = "tower")]
mod layer {
    use super::*;
    use std::future::{poll_fn, ready, Ready};
    use std::task::{Context, Poll};

    use http::{Request, Response};
    use redis_ratelimit_client::middleware::{BuildError, RateLimitLayer};
    use tower_layer::Layer as _;
    use tower_service::Service;

    /// Answers with `x-usage: <x-will-use>`, or fails with `x-fail`.
    #[derive(Clone)]
    struct Upstream;

    impl Service<Request<String>> for Upstream {
        type Response = Response<String>;
        type Error = String;
        type Future = Ready<Result<Response<String>, String>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), String>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, req: Request<String>) -> Self::Future {
            if req.headers().contains_key("x-fail") {
                return ready(Err("upstream failed".to_string()));
            }
            let mut r = Response::new(String::from("ok"));
            if let Some(used) = req.headers().get("x-will-use") {
                r.headers_mut().insert("x-usage", used.clone());
            }
            ready(Ok(r))
        }
    }

    fn request(key: &str, headers: &[(&'static str, &str)]) -> Request<String> {
        let mut b = Request::builder().uri("/v1/chat").header("x-api-key", key);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(String::new()).unwrap()
    }

    async fn call<S: Service<Request<String>>>(
        svc: &mut S,
        req: Request<String>,
    ) -> Result<S::Response, S::Error> {
        poll_fn(|cx| svc.poll_ready(cx)).await?;
        svc.call(req).await
    }

    fn header(r: &Response<String>, name: &str) -> Option<String> {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// `t=` of a RateLimit field.
    fn t_of(field: &str) -> u64 {
        field
            .rsplit(";t=")
            .next()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    // Two threads: the release of a dropped reservation runs while the
    // test polls the server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_layer_charges_from_the_response_and_tells_the_debt() {
        let s = Server::start();
        let mut c = s.connect();
        let limiter = limiter(&s, FailurePolicy::FailClosed).await;
        let layer: RateLimitLayer<_, String, String> = RateLimitLayer::builder(limiter)
            .key(|req: &Request<String>| {
                req.headers()
                    .get("x-api-key")?
                    .to_str()
                    .ok()
                    .map(String::from)
            })
            .reserve(|_| Estimate::new(10).on("tokens"))
            .charge(|resp: &Response<String>| {
                resp.headers().get("x-usage")?.to_str().ok()?.parse().ok()
            })
            .build()
            .unwrap();
        let mut svc = layer.layer(Upstream);

        // Used 3 of the 10 reserved: 97 left, told by the response.
        let r = call(&mut svc, request("a", &[("x-will-use", "3")]))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(tokens_left(&mut c, "a"), 97);
        let field = header(&r, "ratelimit").unwrap();
        assert!(field.starts_with("\"tokens\";r=97;"), "{field}");
        assert_eq!(header(&r, "retry-after"), None);
        assert_eq!(free_slots(&mut c, "a"), 5, "the slot is freed");

        // Used 150: served, charged beyond the limit, and the response
        // says so: nothing remains until the debt is paid back.
        let r = call(&mut svc, request("a", &[("x-will-use", "150")]))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(tokens_left(&mut c, "a"), 0);
        let field = header(&r, "ratelimit").unwrap();
        assert!(field.starts_with("\"tokens\";r=0;"), "{field}");
        // 53 tokens of debt and one more, 36 s each.
        let wait = t_of(&field);
        assert!((53 * 36..=54 * 36).contains(&wait), "{field}");

        // The next request is denied with an honest wait: the debt, then
        // its own estimate of 10.
        let r = call(&mut svc, request("a", &[("x-will-use", "1")]))
            .await
            .unwrap();
        assert_eq!(r.status(), 429);
        let retry: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
        assert!((62 * 36..=63 * 36).contains(&retry), "{retry}");
        assert!(header(&r, "ratelimit")
            .unwrap()
            .starts_with("\"tokens\";r=0;"));

        // No usage in the response, or a failed service: settled at the
        // estimate.
        let r = call(&mut svc, request("b", &[])).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(tokens_left(&mut c, "b"), 90);
        let e = call(&mut svc, request("b", &[("x-fail", "1")])).await;
        assert_eq!(e.unwrap_err(), "upstream failed");
        assert!(wait_until(5, || free_slots(&mut c, "b") == 5));
        assert_eq!(tokens_left(&mut c, "b"), 80);
    }

    #[test]
    fn charge_needs_reserve() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _enter = rt.enter();
        let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
        let limiter = Limiter::connect(&client, gateway(), FailurePolicy::FailOpen).unwrap();
        let built: Result<RateLimitLayer<_, String, String>, _> = RateLimitLayer::builder(limiter)
            .key(|_: &Request<String>| Some("k".to_string()))
            .charge(|_: &Response<String>| Some(1))
            .build();
        assert_eq!(built.err(), Some(BuildError::ChargeWithoutReserve));
    }
}

/// The blocking limiter reserves and settles the same way.
#[test]
fn the_blocking_limiter_reserves_and_settles() {
    use redis_ratelimit_client::blocking;
    let s = Server::start();
    let mut c = s.connect();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = blocking::Limiter::connect(&client, gateway(), FailurePolicy::FailClosed);
    let est = Estimate::new(10).on("tokens");
    let r = limiter.reserve("b1", est.clone()).unwrap().unwrap();
    assert_eq!(r.keys(), ["rl:{b1}:tokens"]);
    assert_eq!(r.positions(), [2]);
    assert_eq!(tokens_left(&mut c, "b1"), 90);
    let settled = r.settle(4).unwrap();
    assert!(settled.settled && settled.decision.allowed(), "{settled:?}");
    assert_eq!(tokens_left(&mut c, "b1"), 96);
    // Dropped unsettled: released at once, the estimate stays charged.
    let r = limiter.reserve("b1", est.clone()).unwrap().unwrap();
    assert_eq!(free_slots(&mut c, "b1"), 4);
    drop(r);
    assert_eq!(free_slots(&mut c, "b1"), 5);
    assert_eq!(tokens_left(&mut c, "b1"), 86);
    // Into debt, then denied with the debt's wait.
    let r = limiter.reserve("b1", est.clone()).unwrap().unwrap();
    let settled = r.settle(200).unwrap();
    assert!(settled.settled && !settled.decision.allowed());
    assert_eq!(settled.decision.binding, 2);
    let denied = limiter.reserve("b1", est).unwrap().unwrap_err();
    assert_eq!((denied.binding, denied.remaining()), (2, 0));
    // 114 tokens of debt, then the estimate of 10: 36 s each.
    let w = denied.retry_after().unwrap();
    assert!(w > S(123 * 36) && w <= S(124 * 36), "{denied:?}");
}
