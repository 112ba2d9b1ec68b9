#![cfg(test)]
//! Leases and named policies from the client, on a real server (and the
//! real test cluster): `acquire` gives a guard that releases on drop and
//! renews while held; a CONCURRENCY limit sits in `Limits` with rate
//! limits, all or nothing; named policies are stored from `Limits`,
//! taken with `RL.TAKE`, fanned out to every primary of a cluster and
//! checked for agreement.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis_ratelimit_client::{
    blocking, policies_everywhere, store_policy, Acquired, AsyncRateLimitCommands, ClusterRouted,
    Concurrency, Error, FailurePolicy, FixedWindow, Limiter, Limits, NamedPolicy,
    RateLimitCommands, Request, Share, SlidingWindow, TokenBucket,
};
use redis_ratelimit_testkit::{info_int, server_now_ns, wait_until, Cluster, Server};

mod support;

const S: fn(u64) -> Duration = Duration::from_secs;

fn inflight(n: u64, lease: Duration) -> Limits {
    Limits::builder()
        .limit("inflight", Concurrency::new(n, lease).unwrap())
        .limit("minute", SlidingWindow::new(1000, S(60)).unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leases_release_on_drop_and_never_exceed_the_limit() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = Limiter::connect(&client, inflight(2, S(30)), FailurePolicy::FailClosed).unwrap();
    // Two slots: a third is denied, and spends no rate quota.
    let Acquired::Granted(a) = limiter.acquire("llm").await.unwrap() else {
        panic!()
    };
    let Acquired::Granted(b) = limiter.acquire("llm").await.unwrap() else {
        panic!()
    };
    let Acquired::Denied(d) = limiter.acquire("llm").await.unwrap() else {
        panic!()
    };
    assert_eq!((d.binding, d.decision.remaining), (0, 0));
    assert!(a.id() != b.id());
    let mut c = s.connect();
    let minute: Vec<i64> = redis::cmd("RL.SLIDING")
        .arg("rl:{llm}:minute")
        .arg(1000)
        .arg(60)
        .arg("DRYRUN")
        .query(&mut c)
        .unwrap();
    assert_eq!(minute[2], 997, "two taken, the denial took none");
    // Released explicitly, then by drop: the drop's release goes out in
    // the background; the server shows when it has come (no slot held: a
    // dry run would leave one of two), or the test fails.
    assert!(a.release().await.unwrap());
    drop(b);
    let mut probe = s.connect();
    let free = move || {
        let r: Vec<i64> = redis::cmd("RL.ACQUIRE")
            .arg("rl:{llm}:inflight")
            .arg(2)
            .arg(30)
            .arg("DRYRUN")
            .query(&mut probe)
            .unwrap();
        r[2] == 1
    };
    assert!(
        tokio::task::spawn_blocking(move || wait_until(10, free))
            .await
            .unwrap(),
        "the dropped lease was never given back"
    );
    let Acquired::Granted(x) = limiter.acquire("llm").await.unwrap() else {
        panic!()
    };
    let Acquired::Granted(y) = limiter.acquire("llm").await.unwrap() else {
        panic!("the dropped lease was not given back")
    };
    drop((x, y));

    // 12 tasks, 2 slots: never more than 2 hold one at once.
    let holding = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..12 {
        let (l, holding, most) = (limiter.clone(), holding.clone(), most.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..3 {
                let lease = l.acquire_wait("pool", S(20)).await.unwrap();
                let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                holding.fetch_sub(1, Ordering::SeqCst);
                assert!(lease.release().await.unwrap());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

/// A lease is held while its guard lives, past its lease time, without
/// the caller asking (it used to end silently at the lease time unless
/// the caller called keep_alive); a limiter told not to keep leases alive
/// lets them end at their lease time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_is_held_while_its_guard_lives() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = Limiter::connect(
        &client,
        inflight(1, Duration::from_millis(600)),
        FailurePolicy::FailClosed,
    )
    .unwrap();
    let Acquired::Granted(held) = limiter.acquire("job").await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Still held, by the server's account: renewed in the background.
    assert!(matches!(
        limiter.acquire("job").await.unwrap(),
        Acquired::Denied(_)
    ));
    assert!(held.renew().await.unwrap(), "the lease is live");
    // keep_alive on it is a no-op, not a second renewer.
    let held = held.keep_alive();
    assert!(held.release().await.unwrap());
    // Not kept alive: it ends by itself.
    let lapse = limiter.clone().with_lease_keep_alive(false);
    let Acquired::Granted(lapsing) = lapse.acquire("job").await.unwrap() else {
        panic!()
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!lapsing.renew().await.unwrap(), "the lease ended");
    std::mem::forget(lapsing);
    assert!(matches!(
        limiter.acquire("job").await.unwrap(),
        Acquired::Granted(_)
    ));
}

/// The blocking limiter's leases too, renewed by one thread of the
/// limiter's.
#[test]
fn a_blocking_lease_is_held_while_its_guard_lives() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter = blocking::Limiter::connect(
        &client,
        inflight(2, Duration::from_millis(600)),
        FailurePolicy::FailClosed,
    );
    let a = limiter.acquire("job").unwrap().unwrap();
    let b = limiter.acquire("job").unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(limiter.acquire("job").unwrap().is_err(), "both still held");
    assert!(a.renew().unwrap() && b.renew().unwrap());
    drop(a);
    let c = limiter.acquire("job").unwrap().unwrap();
    // Without keep-alive: ends at its lease time, guard or not.
    drop((b, c));
    let lapse = limiter.clone().with_lease_keep_alive(false);
    let lapsing = lapse.acquire("job").unwrap().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    assert!(!lapsing.renew().unwrap(), "the lease ended");
    drop(lapsing);
}

#[test]
fn blocking_leases() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let limiter =
        blocking::Limiter::connect(&client, inflight(1, S(30)), FailurePolicy::FailClosed);
    let lease = limiter.acquire("b").unwrap().unwrap();
    assert!(limiter.acquire("b").unwrap().is_err());
    drop(lease);
    let lease = limiter.acquire("b").unwrap().unwrap();
    // A waiter is admitted the moment the slot comes back: by the time the
    // server has answered the release (the admission runs in the same pass
    // of its event loop), no one waits and one wait was admitted; the new
    // lease began after the release (its id is the server's clock in ns).
    let mut c = s.connect();
    let l2 = limiter.clone();
    let w = std::thread::spawn(move || l2.acquire_wait("b", S(30)).map(|l| l.id()));
    assert!(
        wait_until(10, || info_int(&mut c, "ratelimit", "ratelimit_waiters")
            == 1),
        "the waiter never queued"
    );
    let before_release = server_now_ns(&mut c);
    assert!(lease.release().unwrap());
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_waiters"), 0);
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_waits_admitted"), 1);
    let id = w.join().unwrap().unwrap();
    assert!(
        id > before_release,
        "lease {id} began before the release ({before_release})"
    );
}

#[tokio::test]
async fn fallback_leases_keep_the_limit_in_process() {
    // No server at all: the fallback hands out and takes back leases.
    let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let limiter = Limiter::connect(
        &client,
        inflight(2, S(30)),
        FailurePolicy::Fallback(Share::Whole),
    )
    .unwrap();
    let Acquired::Granted(a) = limiter.acquire("x").await.unwrap() else {
        panic!()
    };
    let Acquired::Granted(_b) = limiter.acquire("x").await.unwrap() else {
        panic!()
    };
    assert!(matches!(
        limiter.acquire("x").await.unwrap(),
        Acquired::Denied(_)
    ));
    assert!(limiter.is_degraded());
    assert!(a.release().await.unwrap());
    assert!(matches!(
        limiter.acquire("x").await.unwrap(),
        Acquired::Granted(_)
    ));
}

#[tokio::test]
async fn named_policies_from_limits_are_stored_and_taken() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let api = NamedPolicy::new("api", SlidingWindow::new(3, S(60)).unwrap())
        .unwrap()
        .lockout(S(600))
        .unwrap();
    let day = NamedPolicy::new("day", FixedWindow::new(100, S(86_400)).unwrap()).unwrap();
    let limits = Limits::builder()
        .limit("api", api.clone())
        .limit("day", day.clone())
        .build()
        .unwrap();
    let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed).unwrap();
    // Not stored yet: the server names what it lacks.
    match limiter.check("u").await {
        Err(Error::Redis(e)) => assert!(e.to_string().contains("no such policy 'api'"), "{e}"),
        other => panic!("{other:?}"),
    }
    limiter.store_policies().await.unwrap();
    let mut c = support::manager(&s).await;
    assert_eq!(
        c.policy_get("api").await.unwrap().as_deref(),
        Some("SLIDING 3 60 LOCKOUT 600")
    );
    for _ in 0..3 {
        assert!(limiter.check("u").await.unwrap().decision.allowed);
    }
    let d = limiter.check("u").await.unwrap();
    assert!(!d.decision.allowed);
    assert_eq!(d.binding, 0);
    assert_eq!(d.decision.retry_after, Some(S(600)), "locked out");
    // The commands directly: RL.TAKE, LIST, DEL.
    let one = c.take("v", "day", Request::new(2)).await.unwrap();
    assert_eq!((one.allowed, one.remaining), (true, 98));
    let list = c.policy_list().await.unwrap();
    assert_eq!(list.len(), 2);
    assert!(c.policy_del("day").await.unwrap());
    // The blocking commands too.
    let mut sc = s.connect();
    sc.policy_set(&day).unwrap();
    assert_eq!(sc.take("w", "day", 1).unwrap().remaining, 99);
}

#[tokio::test]
async fn named_policies_decide_locally_with_their_rules_when_redis_is_away() {
    let client = redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let shadow = NamedPolicy::new("soft", TokenBucket::new(1, 1, S(60)).unwrap())
        .unwrap()
        .shadow();
    let limiter = Limiter::connect(
        &client,
        Limits::single("soft", shadow).unwrap(),
        FailurePolicy::Fallback(Share::Whole),
    )
    .unwrap();
    for _ in 0..3 {
        // A shadow policy answers allowed, here as in the server.
        assert!(limiter.check("k").await.unwrap().decision.allowed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_reach_every_primary_and_disagreement_is_an_error() {
    let cluster = Cluster::start();
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let api = NamedPolicy::new("api", SlidingWindow::new(5, S(60)).unwrap()).unwrap();
    let limiter = Limiter::connect_cluster(
        &client,
        Limits::single("api", api.clone()).unwrap(),
        FailurePolicy::FailClosed,
    )
    .await
    .unwrap();
    limiter.store_policies().await.unwrap();
    let mut con = ClusterRouted::new(client.get_async_connection().await.unwrap());
    let all = policies_everywhere(&mut con).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    for (node, list) in &all {
        assert_eq!(
            list,
            &[("api".to_string(), "SLIDING 5 60".to_string())],
            "{node}"
        );
    }
    // Keys on every shard are limited by it.
    for i in 0..20 {
        assert!(
            limiter
                .check(&format!("user{i}"))
                .await
                .unwrap()
                .decision
                .allowed
        );
    }
    // One primary changed behind our back: storing again repairs it, and
    // a check of another definition names the node that differs.
    let master = cluster.topology().shards[1].master;
    let mut m = cluster.node(master).connect();
    let other = NamedPolicy::new("api", SlidingWindow::new(6, S(60)).unwrap()).unwrap();
    m.policy_set(&other).unwrap();
    store_policy(&mut con, &api).await.unwrap();
    limiter.check_policies().await.unwrap();
    m.policy_set(&other).unwrap();
    match limiter.check_policies().await {
        Err(Error::PoliciesDisagree {
            name,
            node,
            held,
            want,
        }) => {
            assert_eq!(name, "api");
            assert!(node.contains(&master.to_string()), "{node}");
            assert_eq!(held.as_deref(), Some("SLIDING 6 60"));
            assert_eq!(want.as_deref(), Some("SLIDING 5 60"));
        }
        other => panic!("{other:?}"),
    }
}

/// On a standalone server, a disagreement names the server by its
/// address, as a cluster names its node (it said "redis").
#[tokio::test]
async fn a_standalone_disagreement_names_the_server() {
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let api = NamedPolicy::new("api", SlidingWindow::new(5, S(60)).unwrap()).unwrap();
    let limiter = Limiter::connect(
        &client,
        Limits::single("api", api).unwrap(),
        FailurePolicy::FailClosed,
    )
    .unwrap();
    let other = NamedPolicy::new("api", SlidingWindow::new(6, S(60)).unwrap()).unwrap();
    s.connect().policy_set(&other).unwrap();
    match limiter.check_policies().await {
        Err(e @ Error::PoliciesDisagree { .. }) => {
            let Error::PoliciesDisagree { node, .. } = &e else {
                unreachable!()
            };
            assert_eq!(node, &format!("127.0.0.1:{}", s.port), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// "Allowed, lease id 0" is an admission that holds no slot, not a
/// denial: FailOpen while Redis is away, and a SHADOW concurrency policy
/// over a full limit (the server answers allowed, takes no slot, and the
/// other limits of the call took their unit). Read as denied, the caller
/// was refused what it had been given, and the units were spent for
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_without_a_slot_is_granted_not_denied() {
    // FailOpen, no server at all.
    let nowhere = redis::Client::open("redis://127.0.0.1:1/").unwrap();
    let open = Limiter::connect(&nowhere, inflight(1, S(30)), FailurePolicy::FailOpen).unwrap();
    for _ in 0..2 {
        let Acquired::Granted(lease) = open.acquire("x").await.unwrap() else {
            panic!("FailOpen admits every request")
        };
        assert_eq!(lease.id(), 0);
        assert!(lease.renew().await.unwrap());
        assert!(lease.release().await.unwrap());
    }
    let lease = open.acquire_wait("x", S(1)).await.unwrap();
    assert_eq!(lease.id(), 0);
    drop(lease);

    // A SHADOW concurrency policy of one slot, and 3 a minute.
    let s = Server::start();
    let client = redis::Client::open(s.url()).unwrap();
    let pool = NamedPolicy::new("pool", Concurrency::new(1, S(30)).unwrap())
        .unwrap()
        .shadow();
    let limits = Limits::builder()
        .limit("pool", pool)
        .limit("minute", SlidingWindow::new(3, S(60)).unwrap())
        .build()
        .unwrap();
    let limiter = Limiter::connect(&client, limits, FailurePolicy::FailClosed).unwrap();
    limiter.store_policies().await.unwrap();
    let Acquired::Granted(held) = limiter.acquire("u").await.unwrap() else {
        panic!()
    };
    assert!(held.id() > 0);
    let Acquired::Granted(shadowed) = limiter.acquire("u").await.unwrap() else {
        panic!("the server allowed it (SHADOW): granted, without a slot")
    };
    assert_eq!(shadowed.id(), 0);
    // Both took their unit of the minute, and both were handed out.
    let mut c = s.connect();
    let minute: Vec<i64> = redis::cmd("RL.SLIDING")
        .arg("rl:{u}:minute")
        .arg(3)
        .arg(60)
        .arg("DRYRUN")
        .query(&mut c)
        .unwrap();
    assert_eq!(minute[2], 0, "two taken, one left before this dry run");
    // The slotless lease sends nothing: the real one is still held.
    assert!(shadowed.release().await.unwrap());
    let leases: i64 = redis::cmd("EXISTS")
        .arg("rl:{u}:pool")
        .query(&mut c)
        .unwrap();
    assert_eq!(leases, 1);
    assert!(held.release().await.unwrap());

    // The blocking limiter reads it the same way.
    let blocking =
        blocking::Limiter::connect(&nowhere, inflight(1, S(30)), FailurePolicy::FailOpen);
    let lease = tokio::task::spawn_blocking(move || blocking.acquire("y").unwrap())
        .await
        .unwrap()
        .expect("FailOpen admits every request");
    assert_eq!(lease.id(), 0);
}
