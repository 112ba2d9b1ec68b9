//! The Limiter on a real server: its keys, several limits at once, every
//! failure policy with the server killed mid-test or too slow to answer,
//! the cooldown, errors that are not outages, and waiting in line.
#![cfg(test)]

mod support;

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use redis_ratelimit_client::wait::{wait_until_allowed, Wait, WaitError};
use redis_ratelimit_client::{
    AsyncRateLimitCommands, Error, FailurePolicy, FixedWindow, Limiter, Limits, Request, Share,
    SlidingWindow, Source, TokenBucket,
};
use redis_ratelimit_testkit::{clock_start, info_int, int, set_clock, wait_until, Server};

const S: fn(u64) -> Duration = Duration::from_secs;
const MS: fn(u64) -> Duration = Duration::from_millis;

fn three_a_minute() -> Limits {
    Limits::single("minute", SlidingWindow::new(3, S(60)).unwrap()).unwrap()
}

#[tokio::test]
async fn one_limit_uses_its_own_command_and_a_hash_tagged_key() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailClosed,
    );
    assert_eq!(limiter.keys("user42"), ["rl:{user42}:minute"]);
    for left in [2, 1, 0] {
        let v = limiter.check("user42").await.unwrap();
        assert_eq!(
            (v.decision.allowed, v.decision.remaining, v.binding),
            (true, left, 0)
        );
        assert_eq!(v.decision.source, Source::Redis);
    }
    let v = limiter.check("user42").await.unwrap();
    assert!(!v.decision.allowed);
    assert!(v.decision.retry_after.unwrap() > S(59));
    let mut c = s.connect();
    assert_eq!(int(&mut c, &["EXISTS", "rl:{user42}:minute"]), 1);
    // Another user, another key.
    assert!(limiter.check("user43").await.unwrap().decision.allowed);
    let custom = limiter.clone().with_prefix("app:rl:").unwrap();
    assert_eq!(custom.keys("u"), ["app:rl:{u}:minute"]);
    assert!(limiter.clone().with_prefix("a{b").is_err());
}

#[tokio::test]
async fn errors_that_are_not_outages_come_back() {
    let s = Server::start();
    let mut c = s.connect();
    let limiter = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailOpen,
    );
    let _: () = redis::cmd("SET")
        .arg("rl:{taken}:minute")
        .arg("not a limiter")
        .query(&mut c)
        .unwrap();
    match limiter.check("taken").await {
        Err(Error::Redis(e)) => assert_eq!(e.code(), Some("WRONGTYPE")),
        other => panic!("expected WRONGTYPE, got {other:?}"),
    }
    assert!(matches!(
        limiter.check("").await,
        Err(Error::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn several_limits_are_checked_together() {
    let s = Server::start();
    let limits = Limits::builder()
        .limit("second", TokenBucket::new(5, 5, S(1)).unwrap())
        .limit("minute", SlidingWindow::new(2, S(60)).unwrap())
        .build()
        .unwrap();
    // The module's clock held still: nothing refills during the test.
    let mut sync = s.connect();
    let t = clock_start(&mut sync);
    set_clock(&mut sync, t);
    let limiter = Limiter::new(
        support::manager(&s).await,
        limits,
        FailurePolicy::FailClosed,
    );
    assert_eq!(limiter.keys("u1"), ["rl:{u1}:second", "rl:{u1}:minute"]);
    let v = limiter.check("u1").await.unwrap();
    assert_eq!(
        (v.decision.allowed, v.binding, v.decision.remaining),
        (true, 1, 1)
    );
    limiter.check("u1").await.unwrap();
    let v = limiter.check("u1").await.unwrap();
    assert_eq!((v.decision.allowed, v.binding), (false, 1));
    // All or nothing: the per-second bucket gave two tokens, not three
    // (peek it directly; on the held clock nothing refilled).
    let b = TokenBucket::new(5, 5, S(1)).unwrap();
    let mut mux = support::multiplexed(&s).await;
    assert_eq!(
        mux.token_bucket("rl:{u1}:second", &b, 0)
            .await
            .unwrap()
            .remaining,
        3
    );
    let back = limiter.refund("u1", 1).await.unwrap();
    assert!(back.decision.allowed);
    assert!(limiter.check("u1").await.unwrap().decision.allowed);
    let dry = limiter
        .check_with("u1", Request::new(1).dry_run())
        .await
        .unwrap();
    assert!(!dry.decision.allowed);
}

/// A limiter on a ConnectionManager with no cooldown, so every call tries
/// Redis again.
async fn limiter_for(
    s: &Server,
    failure: FailurePolicy,
    limits: Limits,
) -> Limiter<redis::aio::ConnectionManager> {
    Limiter::new(support::manager(s).await, limits, failure)
        .with_timeout(MS(200))
        .with_cooldown(Duration::ZERO)
}

#[tokio::test]
async fn fail_open_when_the_server_dies() {
    let s = Server::start();
    let limiter = limiter_for(&s, FailurePolicy::FailOpen, three_a_minute()).await;
    for _ in 0..3 {
        limiter.check("k").await.unwrap();
    }
    let denied = limiter.check("k").await.unwrap();
    assert!(!denied.decision.allowed);
    assert_eq!(denied.decision.source, Source::Redis);
    support::kill(s);
    for _ in 0..5 {
        let t = Instant::now();
        let v = limiter.check("k").await.unwrap();
        assert!(v.decision.allowed);
        assert_eq!(v.decision.source, Source::FailOpen);
        assert!(t.elapsed() < S(2), "took {:?}", t.elapsed());
    }
}

#[tokio::test]
async fn fail_closed_when_the_server_dies() {
    let s = Server::start();
    let limiter = limiter_for(&s, FailurePolicy::FailClosed, three_a_minute()).await;
    assert!(limiter.check("k").await.unwrap().decision.allowed);
    support::kill(s);
    let v = limiter.check("k").await.unwrap();
    assert!(!v.decision.allowed);
    assert_eq!(v.decision.source, Source::FailClosed);
    assert_eq!(v.decision.retry_after, Some(S(1)));
}

#[tokio::test]
async fn fallback_keeps_limiting_in_process() {
    let s = Server::start();
    let whole = limiter_for(&s, FailurePolicy::Fallback(Share::Whole), three_a_minute()).await;
    let third = limiter_for(
        &s,
        FailurePolicy::Fallback(Share::DividedBy(NonZeroU32::new(3).unwrap())),
        three_a_minute(),
    )
    .await;
    assert_eq!(
        whole.check("k").await.unwrap().decision.source,
        Source::Redis
    );
    support::kill(s);
    // The fallback starts from Redis's last decision (one of three taken):
    // the two left, then denials. (It started empty: three more.)
    for left in [1, 0] {
        let v = whole.check("k").await.unwrap();
        assert_eq!(v.decision.source, Source::Fallback);
        assert_eq!((v.decision.allowed, v.decision.remaining), (true, left));
    }
    let v = whole.check("k").await.unwrap();
    assert!(!v.decision.allowed);
    // Still a sliding window: nothing comes back until the first of the
    // three (Redis's) leaves it, a minute after it was admitted (a bucket
    // would give one back every 20 s, 9 admissions in the first minute of
    // an outage).
    let retry = v.decision.retry_after.unwrap();
    assert!(retry > S(59) && retry <= S(60), "{retry:?}");
    // A third of the quota per process: one unit.
    assert!(third.check("k").await.unwrap().decision.allowed);
    let v = third.check("k").await.unwrap();
    assert_eq!(
        (v.decision.allowed, v.decision.source),
        (false, Source::Fallback)
    );
    // Other keys have their own quota.
    assert!(third.check("other").await.unwrap().decision.allowed);
}

#[tokio::test]
async fn a_slow_server_is_an_outage_and_the_cooldown_skips_it() {
    let s = Server::start();
    let limiter = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailOpen,
    )
    .with_timeout(MS(100))
    .with_cooldown(S(30));
    assert_eq!(
        limiter.check("k").await.unwrap().decision.source,
        Source::Redis
    );
    // Block the server for two seconds from another connection, and wait
    // until it is blocked (a PING with a short timeout goes unanswered).
    // Both connections are made first: a handshake would wait too.
    let mut blocker = s.connect();
    let mut probe = s.connect();
    let sleeper = std::thread::spawn(move || {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg("2")
            .query(&mut blocker);
    });
    probe.set_read_timeout(Some(MS(50))).unwrap();
    let blocked_by = Instant::now() + S(1);
    while redis::cmd("PING").query::<String>(&mut probe).is_ok() {
        assert!(Instant::now() < blocked_by, "DEBUG SLEEP never blocked");
        std::thread::sleep(MS(10));
    }
    let t = Instant::now();
    let v = limiter.check("k").await.unwrap();
    let took = t.elapsed();
    assert_eq!(v.decision.source, Source::FailOpen);
    // The timeout (100 ms) answered, not the server (2 s).
    assert!(took >= MS(90) && took < MS(1500), "took {took:?}");
    sleeper.join().unwrap();
    // The server answers again, but within the cooldown calls skip it.
    let mut ping = s.connect();
    let _: String = redis::cmd("PING").query(&mut ping).unwrap();
    assert_eq!(
        limiter.check("k").await.unwrap().decision.source,
        Source::FailOpen
    );
    // Without a cooldown the next call goes to Redis again.
    let eager = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailOpen,
    )
    .with_cooldown(Duration::ZERO);
    assert_eq!(
        eager.check("k").await.unwrap().decision.source,
        Source::Redis
    );
}

#[tokio::test]
async fn waiting_in_line() {
    let s = Server::start();
    // One token, five a second: the second call waits about 200 ms.
    let bucket = TokenBucket::new(1, 5, S(1)).unwrap();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = Limiter::connect(
        &client,
        Limits::single("b", bucket).unwrap(),
        FailurePolicy::FailClosed,
    )
    .unwrap();
    assert!(limiter.check("w").await.unwrap().decision.allowed);
    let t = Instant::now();
    let v = limiter.wait("w", S(2)).await.unwrap();
    let took = t.elapsed();
    assert!(v.decision.allowed);
    assert!(took >= MS(150) && took < MS(1500), "took {took:?}");
    // A wait longer than the deadline waits to the deadline, no less.
    let slow = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailClosed,
    );
    for _ in 0..3 {
        slow.check("x").await.unwrap();
    }
    let t = Instant::now();
    match slow.wait("x", MS(300)).await {
        Err(Error::TimedOut { last }) => assert!(last.decision.retry_after.unwrap() > S(59)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // It did not give up before the 300 ms.
    assert!(t.elapsed() >= MS(300), "{:?}", t.elapsed());
    // A cost above the limit never fits.
    let r = slow
        .wait_with("y", Request::new(4), &Wait::up_to(S(5)))
        .await;
    assert!(matches!(r, Err(Error::NeverAllowed { .. })));
}

#[tokio::test]
async fn waiting_without_a_limiter() {
    let s = Server::start();
    let con = support::multiplexed(&s).await;
    let w = SlidingWindow::new(2, MS(300)).unwrap();
    let take = || {
        let mut con = con.clone();
        async move { con.sliding("raw", &w, 1).await }
    };
    let t = Instant::now();
    for _ in 0..5 {
        let d = wait_until_allowed(S(3), take).await.unwrap();
        assert!(d.allowed);
    }
    // 5 units at 2 per 300 ms: two full windows of waiting.
    let took = t.elapsed();
    assert!(took >= MS(550) && took < MS(2500), "took {took:?}");
    let never = wait_until_allowed(S(1), || {
        let mut con = con.clone();
        async move { con.sliding("raw", &w, 3).await }
    })
    .await;
    assert!(matches!(never, Err(WaitError::Never { .. })));
}

#[tokio::test]
async fn calendar_windows_through_the_limiter() {
    let s = Server::start();
    // The partner's quota: 10 a minute and 500 a day (New York days).
    let day = FixedWindow::calendar(500, redis_ratelimit_client::CalendarUnit::Day)
        .unwrap()
        .in_time_zone("America/New_York")
        .unwrap();
    let limits = Limits::builder()
        .limit("minute", SlidingWindow::new(10, S(60)).unwrap())
        .limit("day", day.clone())
        .build()
        .unwrap();
    let limiter = Limiter::new(
        support::manager(&s).await,
        limits,
        FailurePolicy::FailClosed,
    );
    let mut mux = support::multiplexed(&s).await;
    // A unit of a probe key with the same day, before and after: its reply
    // says how long the server's New York day has left. If that grew, a
    // New York midnight passed during the calls (on the server's clock)
    // and the day's count started over: run again on fresh keys (the next
    // midnight is a day away).
    for attempt in 0..2 {
        let caller = format!("partner{attempt}");
        let left_before = mux.fixed("day-probe", &day, 1).await.unwrap().reset_after;
        for _ in 0..10 {
            assert!(limiter.wait(&caller, S(1)).await.unwrap().decision.allowed);
        }
        let v = limiter.check(&caller).await.unwrap();
        assert_eq!((v.decision.allowed, v.binding), (false, 0));
        let d = mux
            .fixed(format!("rl:{{{caller}}}:day"), &day, 0)
            .await
            .unwrap();
        let left_after = mux.fixed("day-probe", &day, 1).await.unwrap().reset_after;
        if left_after > left_before {
            eprintln!("a New York day ended during the calls: again on fresh keys");
            continue;
        }
        assert_eq!(d.remaining, 490);
        assert!(d.reset_after <= S(86_400 + 3600));
        return;
    }
    panic!("a New York day ended during each of two runs of a few milliseconds");
}

/// Random keys while Redis is away cannot grow the application's memory:
/// the fallback keeps at most its cap of keys, denies new ones when full,
/// and the callers it knows carry on under their own limits.
#[tokio::test]
async fn the_fallback_keeps_at_most_its_cap_of_keys() {
    // No server at all: the fallback decides every call.
    let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let limiter = Limiter::connect(
        &client,
        three_a_minute(),
        FailurePolicy::Fallback(Share::Whole),
    )
    .unwrap()
    .with_fallback_keys(100);
    for i in 0..100 {
        let d = limiter.check(&format!("user{i}")).await.unwrap().decision;
        assert_eq!((d.allowed, d.source), (true, Source::Fallback));
    }
    let d = limiter.check("someone-new").await.unwrap().decision;
    assert_eq!((d.allowed, d.source), (false, Source::Fallback));
    assert!(d
        .retry_after
        .is_some_and(|r| r > Duration::ZERO && r <= S(60)));
    let d = limiter.check("user0").await.unwrap().decision;
    assert_eq!((d.allowed, d.remaining), (true, 1));
}

/// A wait of any length is an answer, never a panic (`Instant::now() +
/// max_wait` overflowed for a huge `max_wait`): through the limiter (in
/// line inside the server, and polling), the blocking limiter, and a plain
/// `Wait`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_wait_is_waited_not_a_panic() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let inside = Limiter::connect(&client, three_a_minute(), FailurePolicy::FailClosed).unwrap();
    let polling = Limiter::new(
        support::manager(&s).await,
        three_a_minute(),
        FailurePolicy::FailClosed,
    )
    .with_prefix("poll:")
    .unwrap();
    for l in [&inside, &polling] {
        let d = l.wait("k", Duration::MAX).await.unwrap();
        assert!(d.decision.allowed);
    }
    // One that waits in line (BLOCK) until a refund frees a unit.
    for _ in 0..3 {
        assert!(inside.check("full").await.unwrap().decision.allowed);
    }
    let waiter = inside.clone();
    let w = tokio::spawn(async move { waiter.wait("full", Duration::MAX).await });
    let mut c = s.connect();
    assert!(wait_until(10, || info_int(
        &mut c,
        "ratelimit",
        "ratelimit_waiters"
    ) == 1));
    inside.refund("full", 1).await.unwrap();
    assert!(w.await.unwrap().unwrap().decision.allowed);
    let d = Wait::up_to(Duration::MAX)
        .until_allowed(|| {
            let l = inside.clone();
            async move { l.check("k").await }
        })
        .await
        .unwrap();
    assert!(d.decision.allowed);
    let blocking = redis_ratelimit_client::blocking::Limiter::connect(
        &client,
        three_a_minute(),
        FailurePolicy::FailClosed,
    )
    .with_prefix("blocking:")
    .unwrap();
    let d = tokio::task::spawn_blocking(move || blocking.wait("k", Duration::MAX))
        .await
        .unwrap()
        .unwrap();
    assert!(d.decision.allowed);
}

/// `Limiter::connect` is a plain function: called outside a tokio runtime
/// it panicked ("there is no reactor running"); it says so in an error.
#[test]
fn connect_outside_a_runtime_is_an_error_not_a_panic() {
    let client = redis::Client::open("redis://127.0.0.1:6379/").unwrap();
    let r = std::panic::catch_unwind(|| {
        Limiter::connect(&client, three_a_minute(), FailurePolicy::FailClosed)
    });
    match r {
        Ok(Err(e @ Error::NoRuntime)) => {
            assert!(e.to_string().contains("inside a tokio runtime"), "{e}")
        }
        Ok(other) => panic!("expected Error::NoRuntime, got {other:?}"),
        Err(_) => panic!("Limiter::connect panicked outside a runtime"),
    }
    // Inside one (entered, not even running a task), it connects.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in = rt.enter();
    assert!(Limiter::connect(&client, three_a_minute(), FailurePolicy::FailClosed).is_ok());
}
