//! The client against a real Redis Cluster (3 masters, 3 replicas, on
//! loopback, the module on every node): single-key commands route by key
//! through redis-rs's cluster connection, the client's slot function
//! agrees with the server's, the Limiter works over it, and `RL.ALL`
//! reaches its keys' node through `ClusterRouted` (and gets CROSSSLOT when
//! its keys are in different slots).
#![cfg(test)]

mod support;

use std::time::Duration;

use redis_ratelimit_client::{
    slot, All, AsyncRateLimitCommands, ClusterRouted, FailurePolicy, Limiter, Limits,
    SlidingWindow, Source, TokenBucket,
};
use redis_ratelimit_testkit::Cluster;

const S: fn(u64) -> Duration = Duration::from_secs;

async fn connect(c: &Cluster) -> redis::cluster_async::ClusterConnection {
    redis::cluster::ClusterClient::new(c.urls())
        .unwrap()
        .get_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_across_a_cluster() {
    let cluster = Cluster::start();
    let mut any = cluster.connect_master("any");

    // The client's slots are the server's.
    for key in ["foo", "rl:{user42}:minute", "{a}b", "x{}y", "user:1", ""] {
        let server: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut any)
            .unwrap();
        assert_eq!(slot(key.as_bytes()), server, "{key:?}");
    }

    // Single-key commands, keys spread over every master.
    let mut con = connect(&cluster).await;
    let b = TokenBucket::new(2, 1, S(60)).unwrap();
    let mut slots = std::collections::BTreeSet::new();
    for i in 0..30 {
        let key = format!("user:{i}");
        slots.insert(slot(key.as_bytes()) / 5462);
        assert_eq!(
            con.token_bucket(key.as_str(), &b, 1)
                .await
                .unwrap()
                .remaining,
            1
        );
        assert_eq!(
            con.token_bucket(key.as_str(), &b, 1)
                .await
                .unwrap()
                .remaining,
            0
        );
        assert!(!con.token_bucket(key.as_str(), &b, 1).await.unwrap().allowed);
    }
    assert_eq!(slots.len(), 3, "keys should land on all three masters");

    // The Limiter over the cluster connection (single limit).
    let limits = Limits::single("minute", SlidingWindow::new(3, S(60)).unwrap()).unwrap();
    let limiter = Limiter::new(
        ClusterRouted::new(con.clone()),
        limits,
        FailurePolicy::FailClosed,
    );
    for i in 0..20 {
        let user = format!("u{i}");
        for left in [2, 1, 0] {
            let v = limiter.check(&user).await.unwrap();
            assert_eq!(v.decision.source, Source::Redis);
            assert_eq!(v.decision.remaining, left);
        }
        assert!(!limiter.check(&user).await.unwrap().decision.allowed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rl_all_in_a_cluster() {
    let cluster = Cluster::start();
    let con = connect(&cluster).await;
    let limits = Limits::builder()
        .limit("second", TokenBucket::new(10, 10, S(1)).unwrap())
        .limit("minute", SlidingWindow::new(2, S(60)).unwrap())
        .build()
        .unwrap();
    let limiter = Limiter::new(
        ClusterRouted::new(con.clone()),
        limits,
        FailurePolicy::FailClosed,
    );
    for i in 0..20 {
        let user = format!("u{i}");
        assert!(limiter.check(&user).await.unwrap().decision.allowed);
        assert!(limiter.check(&user).await.unwrap().decision.allowed);
        let v = limiter.check(&user).await.unwrap();
        assert_eq!((v.decision.allowed, v.binding), (false, 1));
    }
    // Unrouted, the cluster client still gets there (by MOVED).
    let mut plain = con.clone();
    let w = SlidingWindow::new(5, S(60)).unwrap();
    let all = All::new("{t}:a", w).and("{t}:b", w);
    assert!(plain.all(&all).await.unwrap().decision.allowed);
    // Keys in different slots: CROSSSLOT, as an error.
    let mut routed = ClusterRouted::new(con);
    assert!(slot(b"{p}:a") != slot(b"{q}:b"));
    let cross = All::new("{p}:a", w).and("{q}:b", w);
    let e = routed.all(&cross).await.unwrap_err();
    assert_eq!(e.code(), Some("CROSSSLOT"), "{e}");
}
