//! Every command through the client, on a real server with the module:
//! sync and async traits, RESP2 and RESP3, dry run and refund, RL.ALL,
//! CL.THROTTLE, pipelines, and server errors. The module's test clock
//! (`RL.TEST.CLOCK`) makes every field exact. Nothing is probed or
//! skipped: a command or flag the module lacks fails its test.
#![cfg(test)]

mod support;

use std::time::Duration;

use redis_ratelimit_client::{
    cmd_sliding, cmd_token_bucket, All, AllDecision, AsyncRateLimitCommands, CalendarUnit, Decimal,
    Decision, FixedWindow, Gcra, Policy, RateLimitCommands, RateLimitPipeline, Request,
    SlidingWindow, Source, Throttle, TokenBucket,
};
use redis_ratelimit_testkit::{clock_start, int, server_year, set_clock, utc, Server, MS, SEC};

const S: fn(u64) -> Duration = Duration::from_secs;
const MILLIS: fn(u64) -> Duration = Duration::from_millis;

/// (allowed, limit, remaining, retry_after ms (-1: never), reset_after ms)
fn row(d: &Decision) -> (bool, u64, u64, i64, u64) {
    assert_eq!(d.source, Source::Redis);
    (
        d.allowed,
        d.limit,
        d.remaining,
        d.retry_after.map_or(-1, |r| r.as_millis() as i64),
        d.reset_after.as_millis() as u64,
    )
}

#[test]
fn token_bucket_fields() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let b = TokenBucket::new(3, 1, S(1)).unwrap();
    assert_eq!(
        row(&c.token_bucket("tb", &b, 1).unwrap()),
        (true, 3, 2, 0, 1000)
    );
    assert_eq!(
        row(&c.token_bucket("tb", &b, 2).unwrap()),
        (true, 3, 0, 0, 3000)
    );
    assert_eq!(
        row(&c.token_bucket("tb", &b, 1).unwrap()),
        (false, 3, 0, 1000, 3000)
    );
    assert_eq!(
        row(&c.token_bucket("tb", &b, 4).unwrap()),
        (false, 3, 0, -1, 3000)
    );
    set_clock(&mut c, t + 1500 * MS);
    // Peek: one token back, nothing taken.
    assert_eq!(
        row(&c.token_bucket("tb", &b, 0).unwrap()),
        (true, 3, 1, 0, 1500)
    );
    // 10 a minute, a decimal rate: one token every 6 s.
    let m = TokenBucket::new(2, "0.5".parse::<Decimal>().unwrap(), S(3)).unwrap();
    assert_eq!(
        row(&c.token_bucket("m", &m, 2).unwrap()),
        (true, 2, 0, 0, 12_000)
    );
    assert_eq!(
        row(&c.token_bucket("m", &m, 1).unwrap()),
        (false, 2, 0, 6_000, 12_000)
    );
    // A float rate, 1e4 per second: exact on the wire.
    let f = TokenBucket::new(3, Decimal::try_from(1e4).unwrap(), S(1)).unwrap();
    assert_eq!(
        row(&c.token_bucket("fast", &f, 3).unwrap()),
        (true, 3, 0, 0, 1)
    );
}

#[test]
fn sliding_window_fields() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let w = SlidingWindow::new(5, MILLIS(1000)).unwrap();
    assert_eq!(row(&c.sliding("sw", &w, 0).unwrap()), (true, 5, 5, 0, 0));
    assert_eq!(int(&mut c, &["EXISTS", "sw"]), 0);
    assert_eq!(row(&c.sliding("sw", &w, 3).unwrap()), (true, 5, 2, 0, 1000));
    set_clock(&mut c, t + 250 * MS);
    assert_eq!(row(&c.sliding("sw", &w, 2).unwrap()), (true, 5, 0, 0, 1000));
    set_clock(&mut c, t + 500 * MS);
    assert_eq!(
        row(&c.sliding("sw", &w, 4).unwrap()),
        (false, 5, 0, 750, 750)
    );
    assert_eq!(
        row(&c.sliding("sw", &w, 6).unwrap()),
        (false, 5, 0, -1, 750)
    );
    let sub = SlidingWindow::new(100, MILLIS(250)).unwrap();
    assert_eq!(
        row(&c.sliding("sub", &sub, 10).unwrap()),
        (true, 100, 90, 0, 250)
    );
    // Through the Policy enum too.
    let p: Policy = w.into();
    assert_eq!(c.limit("sw", &p, 0).unwrap().remaining, 0);
}

#[tokio::test]
async fn async_connections_and_resp3() {
    let s = Server::start();
    let mut sync = s.connect();
    let t = clock_start(&mut sync);
    set_clock(&mut sync, t);
    let b = TokenBucket::new(10, 1, S(1)).unwrap();
    let w = SlidingWindow::new(10, S(60)).unwrap();

    let mut mux = support::multiplexed(&s).await;
    assert_eq!(
        row(&mux.token_bucket("a", &b, 1).await.unwrap()),
        (true, 10, 9, 0, 1000)
    );
    let mut mgr = support::manager(&s).await;
    assert_eq!(
        row(&mgr.token_bucket("a", &b, 1).await.unwrap()),
        (true, 10, 8, 0, 2000)
    );
    assert_eq!(
        row(&mgr.sliding("w", &w, 4).await.unwrap()),
        (true, 10, 6, 0, 60_000)
    );

    let resp3 = redis::Client::open(format!("{}?protocol=resp3", s.url())).unwrap();
    let mut r3 = resp3.get_multiplexed_async_connection().await.unwrap();
    assert_eq!(
        row(&r3.token_bucket("a", &b, 1).await.unwrap()),
        (true, 10, 7, 0, 3000)
    );
    assert_eq!(
        row(&r3.sliding("w", &w, 0).await.unwrap()),
        (true, 10, 6, 0, 60_000)
    );
    let mut r3sync = resp3.get_connection().unwrap();
    assert_eq!(
        row(&r3sync.token_bucket("a", &b, 0).unwrap()),
        (true, 10, 7, 0, 3000)
    );
}

#[test]
fn pipelines_use_the_same_commands() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let b = TokenBucket::new(2, 1, S(1)).unwrap();
    let w = SlidingWindow::new(2, S(1)).unwrap();
    let (x, y, z): (Decision, Decision, Decision) = redis::pipe()
        .add_command(cmd_token_bucket("p:b", &b, Request::new(2)))
        .add_command(cmd_token_bucket("p:b", &b, Request::new(1)))
        .add_command(cmd_sliding("p:w", &w, Request::new(1)))
        .query(&mut c)
        .unwrap();
    assert_eq!(row(&x), (true, 2, 0, 0, 2000));
    assert_eq!(row(&y), (false, 2, 0, 1000, 2000));
    assert_eq!(row(&z), (true, 2, 1, 0, 1000));

    // The pipeline trait: the same commands the connection traits send,
    // an atomic pipeline included; CL.THROTTLE's reply read as a Value.
    let th = Throttle::new(1, 1, S(10)).unwrap();
    let all = All::new("{q}:a", w).and("{q}:b", b);
    let (p, q, v, a): (Decision, Decision, redis::Value, AllDecision) = redis::pipe()
        .atomic()
        .sliding("q:w", &w, 2)
        .token_bucket("q:b", &b, Request::new(1).dry_run())
        .throttle("q:t", &th, 1)
        .all(&all)
        .query(&mut c)
        .unwrap();
    assert_eq!(row(&p), (true, 2, 0, 0, 1000));
    assert_eq!(row(&q), (true, 2, 1, 0, 1000));
    let t = Decision::from_throttle_reply(&v).unwrap();
    assert_eq!((t.allowed, t.limit, t.remaining), (true, 2, 1));
    assert_eq!((a.allowed(), a.limit(), a.remaining()), (true, 2, 1));
}

#[test]
fn server_errors_are_errors_not_panics() {
    let s = Server::start();
    let mut c = s.connect();
    let _: () = redis::cmd("SET").arg("str").arg("x").query(&mut c).unwrap();
    let w = SlidingWindow::new(5, S(60)).unwrap();
    let e = c.sliding("str", &w, 1).unwrap_err();
    assert_eq!(e.code(), Some("WRONGTYPE"));
    // A token-bucket key is not a sliding window.
    let b = TokenBucket::new(5, 1, S(1)).unwrap();
    c.token_bucket("tb", &b, 1).unwrap();
    assert_eq!(
        c.sliding("tb", &w, 1).unwrap_err().code(),
        Some("WRONGTYPE")
    );
    // A cost the module refuses.
    let e = c.sliding("k", &w, u64::MAX).unwrap_err();
    assert!(e.to_string().contains("COST"), "{e}");
    // A command that is not a limiter: its reply is not a decision.
    let e = redis::cmd("PING").query::<Decision>(&mut c).unwrap_err();
    assert!(e.to_string().contains("5 integers"), "{e}");
}

#[test]
fn dry_run_and_refund() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let b = TokenBucket::new(3, 1, S(1)).unwrap();
    let dry = Request::new(1).dry_run();
    assert_eq!(
        row(&c.token_bucket("tb", &b, dry).unwrap()),
        (true, 3, 2, 0, 1000)
    );
    assert_eq!(
        int(&mut c, &["EXISTS", "tb"]),
        0,
        "a dry run writes nothing"
    );
    assert_eq!(
        row(&c.token_bucket("tb", &b, 3).unwrap()),
        (true, 3, 0, 0, 3000)
    );
    assert_eq!(
        row(&c.token_bucket("tb", &b, dry).unwrap()),
        (false, 3, 0, 1000, 3000)
    );
    let refund = |n| Request::new(n).refund();
    assert_eq!(
        row(&c.token_bucket("tb", &b, refund(2)).unwrap()),
        (true, 3, 2, 0, 1000)
    );
    // Never beyond fresh.
    assert_eq!(
        row(&c.token_bucket("tb", &b, refund(10)).unwrap()),
        (true, 3, 3, 0, 0)
    );

    let w = SlidingWindow::new(5, S(60)).unwrap();
    assert_eq!(
        c.sliding("sw", &w, Request::new(5).dry_run())
            .unwrap()
            .remaining,
        0
    );
    assert_eq!(int(&mut c, &["EXISTS", "sw"]), 0);
    assert_eq!(c.sliding("sw", &w, 4).unwrap().remaining, 1);
    let back = c.sliding("sw", &w, Request::new(3).refund()).unwrap();
    assert!(back.allowed);
    assert_eq!(back.remaining, 4);
    assert_eq!(
        c.sliding("sw", &w, Request::new(99).refund())
            .unwrap()
            .remaining,
        5
    );
}

#[tokio::test]
async fn dry_run_and_refund_async() {
    let s = Server::start();
    let mut a = support::multiplexed(&s).await;
    let w = SlidingWindow::new(2, S(60)).unwrap();
    assert!(a.sliding("k", &w, 2).await.unwrap().allowed);
    assert!(
        !a.sliding("k", &w, Request::new(1).dry_run())
            .await
            .unwrap()
            .allowed
    );
    assert_eq!(
        a.sliding("k", &w, Request::new(1).refund())
            .await
            .unwrap()
            .remaining,
        1
    );
    assert!(a.sliding("k", &w, 1).await.unwrap().allowed);
}

#[test]
fn gcra_fields() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // Bursts of 5, one per second.
    let g = Gcra::new(5, 1, S(1)).unwrap();
    assert_eq!(row(&c.gcra("g", &g, 1).unwrap()), (true, 5, 4, 0, 1000));
    assert_eq!(row(&c.gcra("g", &g, 4).unwrap()), (true, 5, 0, 0, 5000));
    assert_eq!(row(&c.gcra("g", &g, 1).unwrap()), (false, 5, 0, 1000, 5000));
    assert_eq!(row(&c.gcra("g", &g, 6).unwrap()), (false, 5, 0, -1, 5000));
    set_clock(&mut c, t + SEC);
    assert_eq!(row(&c.gcra("g", &g, 1).unwrap()), (true, 5, 0, 0, 5000));
    // A decimal rate per decimal period: 2.5 per 100 ms is one per 40 ms.
    let fast = Gcra::new(2, "2.5".parse::<Decimal>().unwrap(), MILLIS(100)).unwrap();
    assert_eq!(row(&c.gcra("f", &fast, 2).unwrap()), (true, 2, 0, 0, 80));
    assert_eq!(
        c.gcra("f", &fast, Request::new(1).dry_run())
            .unwrap()
            .retry_after,
        Some(MILLIS(40))
    );
    assert_eq!(
        c.gcra("f", &fast, Request::new(2).refund())
            .unwrap()
            .remaining,
        2
    );
}

#[test]
fn fixed_window_fields() {
    let s = Server::start();
    let mut c = s.connect();
    // January 15 of next year (ahead of the server's clock whatever the
    // date), 12:00:10 UTC: a whole number of minutes plus 10 s, and
    // 07:00:10 in New York (EST, UTC-5).
    let t = utc(server_year(&mut c) + 1, 1, 15, 12, 0, 10);
    set_clock(&mut c, t);
    let minute = FixedWindow::new(3, S(60)).unwrap();
    assert_eq!(
        row(&c.fixed("f", &minute, 1).unwrap()),
        (true, 3, 2, 0, 50_000)
    );
    assert_eq!(
        row(&c.fixed("f", &minute, 2).unwrap()),
        (true, 3, 0, 0, 50_000)
    );
    assert_eq!(
        row(&c.fixed("f", &minute, 1).unwrap()),
        (false, 3, 0, 50_000, 50_000)
    );
    assert_eq!(
        row(&c.fixed("f", &minute, 4).unwrap()),
        (false, 3, 0, -1, 50_000)
    );
    set_clock(&mut c, t + 50 * SEC);
    assert_eq!(
        row(&c.fixed("f", &minute, 1).unwrap()),
        (true, 3, 2, 0, 60_000)
    );

    let utc_day = FixedWindow::calendar(500, CalendarUnit::Day).unwrap();
    let d = c.fixed("day:utc", &utc_day, 1).unwrap();
    assert_eq!(row(&d), (true, 500, 499, 0, (12 * 3600 - 60) * 1000));
    let ny_day = utc_day.clone().in_time_zone("America/New_York").unwrap();
    let d = c.fixed("day:ny", &ny_day, 2).unwrap();
    // Midnight in New York is 05:00 UTC: 16 h 59 m from 12:01:00 UTC.
    assert_eq!(row(&d), (true, 500, 498, 0, (17 * 3600 - 60) * 1000));
    let hour = FixedWindow::calendar(10, CalendarUnit::Hour).unwrap();
    assert_eq!(c.fixed("h", &hour, 1).unwrap().reset_after, S(59 * 60));

    // A zone the module does not know is refused by the client already,
    // with the module's words.
    let mars = utc_day.in_time_zone("Mars/Olympus_Mons").unwrap_err();
    let server = redis_ratelimit_testkit::err(
        &mut c,
        &["RL.FIXED", "mars", "500", "DAY", "TZ", "Mars/Olympus_Mons"],
    );
    assert_eq!(format!("ERR {mars}"), server);
}

#[test]
fn throttle_is_redis_cell_compatible() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let p = Throttle::new(15, 30, S(60)).unwrap();
    // The spec's example: CL.THROTTLE user123 15 30 60 1 -> 0, 16, 15, -1, 2
    let d = c.throttle("user123", &p, 1).unwrap();
    assert_eq!(
        (
            d.allowed,
            d.limit,
            d.remaining,
            d.retry_after,
            d.reset_after
        ),
        (true, 16, 15, Some(Duration::ZERO), S(2))
    );
    let d = c.throttle("user123", &p, 15).unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 0));
    let d = c.throttle("user123", &p, 1).unwrap();
    assert!(!d.allowed);
    assert_eq!(d.retry_after, Some(S(2)));
}

#[tokio::test]
async fn all_is_all_or_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let two = SlidingWindow::new(2, S(60)).unwrap();
    let ten = SlidingWindow::new(10, S(60)).unwrap();
    let all = All::new("{u}:a", two).and("{u}:b", ten);
    let first = c.all(&all).unwrap();
    assert_eq!(
        (first.binding, row(&first.decision)),
        (0, (true, 2, 1, 0, 60_000))
    );
    let mut a = support::multiplexed(&s).await;
    let second = a.all(&all).await.unwrap();
    assert_eq!((second.binding, second.decision.remaining), (0, 0));
    let third = c.all(&all).unwrap();
    assert_eq!(
        (third.binding, row(&third.decision)),
        (0, (false, 2, 0, 60_000, 60_000))
    );
    // The denial took nothing from the other limit.
    assert_eq!(c.sliding("{u}:b", &ten, 0).unwrap().remaining, 8);
    // Cost: a per-limit COST overrides the call's.
    let costly = All::new("{v}:a", ten)
        .and_with_cost("{v}:b", ten, 5)
        .cost(2);
    let d = c.all(&costly).unwrap();
    assert_eq!((d.binding, d.decision.remaining), (1, 5));
    assert_eq!(c.sliding("{v}:a", &ten, 0).unwrap().remaining, 8);
    // Mixed policies, each through its RL.ALL spec.
    let mixed = All::new("{m}:tb", TokenBucket::new(4, 1, S(60)).unwrap())
        .and("{m}:fixed", FixedWindow::new(3, S(60)).unwrap())
        .and("{m}:sw", ten)
        .and("{m}:gcra", Gcra::new(5, 1, S(1)).unwrap());
    let d = c.all(&mixed).unwrap();
    assert!(d.decision.allowed);
    assert_eq!((d.binding, d.decision.remaining), (1, 2));
    let dry = c.all(&all.clone().dry_run()).unwrap();
    assert!(!dry.decision.allowed);
    let back = c
        .all(&All::new("{u}:a", two).and("{u}:b", ten).refund())
        .unwrap();
    assert!(back.decision.allowed);
    assert_eq!(c.sliding("{u}:a", &two, 0).unwrap().remaining, 1);
}

/// At each bound, what the client builds the server accepts, and what the
/// client refuses to build the server refuses too (sent by hand).
#[test]
fn client_and_server_agree_on_bounds() {
    let s = Server::start();
    let mut c = s.connect();
    let year = 365 * 24 * 3600;
    let refused = |c: &mut redis::Connection, argv: &[&str]| {
        let e = redis_ratelimit_testkit::err(c, argv);
        assert!(e.starts_with("ERR "), "{argv:?}: {e}");
    };
    let big_rate = "1e9".parse::<Decimal>().unwrap();
    let b = TokenBucket::new(10, big_rate, S(1)).unwrap();
    assert!(c.token_bucket("b1", &b, 1).unwrap().allowed);
    assert!(TokenBucket::new(10, "2e9".parse::<Decimal>().unwrap(), S(1)).is_err());
    refused(&mut c, &["RL.TOKENBUCKET", "b2", "10", "2000000000", "1"]);
    let full = TokenBucket::new(100 * year, 1, S(1)).unwrap();
    assert!(c.token_bucket("b3", &full, 0).unwrap().allowed);
    assert!(TokenBucket::new(100 * year + 1, 1, S(1)).is_err());
    refused(
        &mut c,
        &[
            "RL.TOKENBUCKET",
            "b4",
            &(100 * year + 1).to_string(),
            "1",
            "1",
        ],
    );

    let w = SlidingWindow::new(1, S(10 * year)).unwrap();
    assert!(c.sliding("w1", &w, 1).unwrap().allowed);
    assert!(SlidingWindow::new(1, S(10 * year) + MILLIS(1)).is_err());
    refused(&mut c, &["RL.SLIDING", "w2", "1", "315360000.001"]);

    let g = Gcra::new(5, big_rate, S(1)).unwrap();
    assert!(c.gcra("g1", &g, 1).unwrap().allowed);
    refused(&mut c, &["RL.GCRA", "g2", "5", "2000000000", "1"]);
    let g = Gcra::new(100 * year, 1, S(1)).unwrap();
    assert!(c.gcra("g3", &g, 0).unwrap().allowed);
    assert!(Gcra::new(100 * year + 1, 1, S(1)).is_err());
    refused(
        &mut c,
        &["RL.GCRA", "g4", &(100 * year + 1).to_string(), "1", "1"],
    );
    let f = FixedWindow::new(1, S(10 * year)).unwrap();
    assert!(c.fixed("f1", &f, 1).unwrap().allowed);
    assert!(FixedWindow::new(1, S(10 * year) + MILLIS(1)).is_err());
    refused(&mut c, &["RL.FIXED", "f2", "1", "315360000.001"]);
    refused(&mut c, &["RL.FIXED", "f3", "1", "60", "TZ", "UTC"]);
    let t = Throttle::new(100 * year - 1, 1, S(1)).unwrap();
    assert!(c.throttle("t1", &t, 0).unwrap().allowed);
    assert!(Throttle::new(100 * year, 1, S(1)).is_err());
    refused(
        &mut c,
        &["CL.THROTTLE", "t2", &(100 * year).to_string(), "1", "1"],
    );
    assert!(Throttle::new(0, 2_000_000_000, S(1)).is_err());
    refused(&mut c, &["CL.THROTTLE", "t3", "0", "2000000000", "1"]);
    let fast = Throttle::new(0, 1_000_000_000, S(1)).unwrap();
    assert!(c.throttle("t4", &fast, 1).unwrap().allowed);
}
