//! Valkey 9's atomic slot migration (`CLUSTER MIGRATESLOTS`) with the module
//! loaded on every node of a real cluster (three masters, three replicas).
//!
//! The module opts in (docs/COMMANDS.md, "Slot migration"), so the call
//! succeeds; limiter keys of every kind arrive on the target with the same
//! bytes and absolute expiry; a waiter on a slot that left gets TRYAGAIN,
//! nothing taken; leases taken before a move are renewed and released
//! after it; INFO's key counters match each node's keys. Under load
//! (clients hammering sliding windows, token buckets and leases of the
//! moving slot while it moves back and forth), every admission the clients
//! were told of is in the final state and nothing more, no lease leaks, and
//! neither redis-rs's cluster client nor this project's client crate sees an
//! error. An import that fails (the target out of memory) leaves neither
//! keys nor counts on the target, and the source keeps every key.
//!
//! Those run only when `RL_SERVER` is a Valkey 9 (or later) binary: the
//! other servers have no `CLUSTER MIGRATESLOTS` (each test prints why it
//! skipped). One more runs on every server: a classic move (`MIGRATE`), of
//! which no event tells the module, ends a waiter whose deadline comes
//! first with TRYAGAIN, not with a denial read from a key that left.
#![cfg(test)]

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use redis_ratelimit_testkit::*;

/// True when `RL_SERVER` migrates slots atomically; prints why not.
fn atomic_slot_migration(test: &str) -> bool {
    match valkey_major() {
        Some(m) if m >= 9 => true,
        other => {
            eprintln!(
                "{test}: skipped: {} is not Valkey 9 or later ({other:?}): no CLUSTER MIGRATESLOTS",
                server_binary()
            );
            false
        }
    }
}

fn ints(c: &mut dyn redis::ConnectionLike, args: &[&str]) -> Result<Vec<i64>, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Vec<i64>>(c).map_err(error_text)
}

/// Another master than `port`.
fn other_master(cluster: &Cluster, port: u16) -> u16 {
    cluster
        .topology()
        .shards
        .iter()
        .map(|s| s.master)
        .find(|p| *p != port)
        .unwrap()
}

/// Each key's DUMP and absolute expiry (ms) on the node at `port`.
fn states(cluster: &Cluster, port: u16, keys: &[&str]) -> Vec<(Option<Vec<u8>>, i64)> {
    let mut c = cluster.node(port).connect();
    keys.iter()
        .map(|k| {
            (
                bytes(&mut c, &["DUMP", k]),
                int(&mut c, &["PEXPIRETIME", k]),
            )
        })
        .collect()
}

/// Every node's limiter keys by INFO (all kinds) equal its DBSIZE, once
/// nothing is left to free in the background: masters and replicas.
fn assert_key_counters_match(cluster: &Cluster) {
    for n in &cluster.nodes {
        let mut c = n.connect();
        let mut seen = (0, 0);
        let agree = wait_until(10, || {
            let counted: i64 = ["bucket", "window", "fixed", "leases", "lockout"]
                .iter()
                .map(|k| info_int(&mut c, "ratelimit", &format!("ratelimit_keys_{k}")))
                .sum();
            seen = (counted, int(&mut c, &["DBSIZE"]));
            info_int(&mut c, "memory", "lazyfree_pending_objects") == 0 && seen.0 == seen.1
        });
        assert!(
            agree,
            "node {}: INFO counts {} limiter keys, DBSIZE {}",
            n.port, seen.0, seen.1
        );
    }
}

#[test]
fn migrateslots_moves_every_kind_of_limiter_key_exactly() {
    if !atomic_slot_migration("migrateslots_moves_every_kind_of_limiter_key_exactly") {
        return;
    }
    // The AOF shows how keys travel.
    let mut cluster = Cluster::start_with(AOF_COMMANDS);
    let slot = cluster.slot("{asm}");
    let source = cluster.shard_of("{asm}").master;
    let target = other_master(&cluster, source);
    // A policy with a LOCKOUT, on every master (policies live per node).
    for s in &cluster.topology().shards {
        let mut c = cluster.node(s.master).connect();
        ok(
            &mut c,
            &[
                "RL.POLICY",
                "SET",
                "lk",
                "TOKENBUCKET",
                "1",
                "1",
                "PERIOD",
                "60",
                "LOCKOUT",
                "600",
            ],
        );
    }
    let mut src = cluster.node(source).connect();
    let keys = [
        "{asm}:bucket",
        "{asm}:gcra",
        "{asm}:cell",
        "{asm}:sliding",
        "{asm}:fixed",
        "{asm}:day",
        "{asm}:leases",
        "{asm}:lockout",
        "{asm}:line",
    ];
    ints(
        &mut src,
        &["RL.TOKENBUCKET", keys[0], "10", "1", "3", "PERIOD", "60"],
    )
    .unwrap();
    ints(&mut src, &["RL.GCRA", keys[1], "5", "10", "60"]).unwrap();
    ints(&mut src, &["CL.THROTTLE", keys[2], "5", "10", "60"]).unwrap();
    for _ in 0..3 {
        ints(&mut src, &["RL.SLIDING", keys[3], "10", "600"]).unwrap();
        thread::sleep(Duration::from_millis(3));
    }
    ints(&mut src, &["RL.FIXED", keys[4], "10", "HOUR", "COST", "4"]).unwrap();
    ints(
        &mut src,
        &["RL.FIXED", keys[5], "10", "DAY", "TZ", "America/New_York"],
    )
    .unwrap();
    let lease_a = ints(&mut src, &["RL.ACQUIRE", keys[6], "3", "600"]).unwrap()[5];
    let lease_b = ints(&mut src, &["RL.ACQUIRE", keys[6], "3", "600"]).unwrap()[5];
    assert_eq!(ints(&mut src, &["RL.TAKE", keys[7], "lk"]).unwrap()[0], 1);
    assert_eq!(ints(&mut src, &["RL.TAKE", keys[7], "lk"]).unwrap()[0], 0);
    assert_eq!(src_type(&mut src, keys[7]), "rl-locked");
    // A waiter on the slot, its turn 600 s away: ended by the move, not by
    // its timer.
    assert_eq!(
        ints(&mut src, &["RL.SLIDING", keys[8], "1", "600"]).unwrap()[0],
        1
    );
    let mut wc = cluster.node(source).connect();
    let waiter = thread::spawn(move || {
        let r = ints(
            &mut wc,
            &["RL.SLIDING", "{asm}:line", "1", "600", "BLOCK", "20000"],
        );
        (r, wc)
    });
    assert!(wait_until(10, || info_int(
        &mut src,
        "ratelimit",
        "ratelimit_waiters"
    ) == 1));
    let before = states(&cluster, source, &keys);
    assert!(
        before.iter().all(|(d, t)| d.is_some() && *t > 0),
        "{before:?}"
    );

    cluster.migrate_slots(&[(slot, slot)], target);

    // The waiter left the line with TRYAGAIN; its connection stays.
    let (reply, mut wc) = waiter.join().unwrap();
    assert_eq!(
        reply.unwrap_err(),
        redis_ratelimit_core::error::TRYAGAIN.text(),
        "the waiter's reply"
    );
    assert_eq!(redis::cmd("PING").query::<String>(&mut wc).unwrap(), "PONG");
    assert_eq!(info_int(&mut src, "ratelimit", "ratelimit_waiters"), 0);
    // Every key arrived as it was, the source holds none of the slot.
    assert_eq!(states(&cluster, target, &keys), before);
    // ... sent as its AOF rewrite: RL.SETSTATE, then PEXPIREAT (the target
    // keeps what its import client runs in its AOF).
    let aof = aof_commands(&cluster.node(target).dir);
    for k in &keys {
        let sent: Vec<&[u8]> = aof
            .iter()
            .filter(|a| a.get(1).map(Vec::as_slice) == Some(k.as_bytes()))
            .map(|a| a[0].as_slice())
            .collect();
        assert!(
            sent.starts_with(&[b"RL.SETSTATE", b"PEXPIREAT"]),
            "{k} reached the target's AOF as {:?}",
            sent.iter()
                .map(|c| String::from_utf8_lossy(c))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        int(&mut src, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]),
        0
    );
    let mut dst = cluster.node(target).connect();
    // Nothing was taken for the waiter.
    let peek = ints(&mut dst, &["RL.SLIDING", keys[8], "1", "600", "COST", "0"]).unwrap();
    assert_eq!(peek[2], 0, "{peek:?}");
    // The target's replica holds the same.
    cluster.wait_replicated();
    let mut replica = cluster.connect_replica("{asm}");
    for (k, (dump, at)) in keys.iter().zip(&before) {
        assert_eq!(
            &bytes(&mut replica, &["DUMP", k]),
            dump,
            "{k} on the target's replica"
        );
        assert_eq!(
            int(&mut replica, &["PEXPIRETIME", k]),
            *at,
            "{k} on the target's replica"
        );
    }
    assert_key_counters_match(&cluster);

    // Back again: the round trip changes nothing either.
    cluster.migrate_slots(&[(slot, slot)], source);
    assert_eq!(states(&cluster, source, &keys), before);
    // The leases taken before both moves are renewed and released after.
    let mut src = cluster.node(source).connect();
    for id in [lease_a, lease_b] {
        let id = id.to_string();
        assert_eq!(int(&mut src, &["RL.RENEW", keys[6], &id, "600"]), 1);
        assert_eq!(int(&mut src, &["RL.RELEASE", keys[6], &id]), 1);
    }
    assert_eq!(
        int(&mut src, &["EXISTS", keys[6]]),
        0,
        "the last release deletes the key"
    );
    // The lock still holds on the policy's key.
    assert_eq!(ints(&mut src, &["RL.TAKE", keys[7], "lk"]).unwrap()[0], 0);
    assert_key_counters_match(&cluster);
}

fn src_type(c: &mut redis::Connection, key: &str) -> String {
    redis::cmd("TYPE").arg(key).query(c).unwrap()
}

/// What the workers of the load test saw.
#[derive(Default)]
struct Tally {
    /// Allowed replies per key.
    allowed: std::collections::BTreeMap<String, i64>,
    /// Leases acquired (each renewed and released, both answering 1).
    leases: i64,
    /// Every error any worker saw.
    errors: Vec<String>,
}

/// A worker taking one unit of `args` (a limiter command) in a loop through
/// redis-rs's cluster client until `stop`, counting allowed replies.
fn taker(
    cluster: &Cluster,
    key: &'static str,
    args: Vec<&'static str>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> thread::JoinHandle<()> {
    let mut con = cluster.client();
    thread::spawn(move || {
        let mut allowed = 0;
        while !stop.load(Ordering::Relaxed) {
            match ints(&mut con, &args) {
                Ok(r) => allowed += r[0],
                Err(e) => tally.lock().unwrap().errors.push(format!("{args:?}: {e}")),
            }
        }
        *tally.lock().unwrap().allowed.entry(key.into()).or_default() += allowed;
    })
}

/// A worker holding leases of `key` (3 slots), waiting in line (BLOCK) for
/// one: acquire, renew, release, each renew and release answering 1 (the
/// lease was live), never more than 3 held at once by the clients' count.
fn leaser(
    cluster: &Cluster,
    key: &'static str,
    held: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> thread::JoinHandle<()> {
    let mut con = cluster.client();
    thread::spawn(move || {
        let mut n = 0;
        let mut errors = vec![];
        while !stop.load(Ordering::Relaxed) {
            let id = match ints(&mut con, &["RL.ACQUIRE", key, "3", "600", "BLOCK", "3000"]) {
                Ok(r) if r[0] == 1 => r[5].to_string(),
                Ok(_) => continue,
                Err(e) => {
                    errors.push(format!("acquire: {e}"));
                    continue;
                }
            };
            n += 1;
            let now = held.fetch_add(1, Ordering::SeqCst) + 1;
            if now > 3 {
                errors.push(format!("{now} leases held at once"));
            }
            thread::sleep(Duration::from_millis(5));
            match redis::cmd("RL.RENEW")
                .arg(key)
                .arg(&id)
                .arg(600)
                .query::<i64>(&mut con)
            {
                Ok(1) => {}
                other => errors.push(format!("renew {id}: {other:?}")),
            }
            held.fetch_sub(1, Ordering::SeqCst);
            match redis::cmd("RL.RELEASE")
                .arg(key)
                .arg(&id)
                .query::<i64>(&mut con)
            {
                Ok(1) => {}
                other => errors.push(format!("release {id}: {other:?}")),
            }
        }
        let mut t = tally.lock().unwrap();
        t.leases += n;
        t.errors.extend(errors);
    })
}

/// The client crate over the cluster: a limiter of a sliding window and a
/// token bucket (RL.ALL) and one of leases, on the moving slot's hash tag.
/// Every call must be answered by Redis (`Source::Redis`), none an error.
fn client_crate_worker(
    cluster: &Cluster,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> thread::JoinHandle<()> {
    use redis_ratelimit_client::{
        Acquired, Concurrency, FailurePolicy, Limiter, Limits, SlidingWindow, Source, TokenBucket,
    };
    let urls = cluster.urls();
    thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let client = redis::cluster::ClusterClient::new(urls).unwrap();
            let limits = Limits::builder()
                .limit(
                    "sw",
                    SlidingWindow::new(1_000_000, Duration::from_secs(600)).unwrap(),
                )
                .limit(
                    "tb",
                    TokenBucket::new(100_000, 1, Duration::from_secs(10_000)).unwrap(),
                )
                .build()
                .unwrap();
            // The default 100 ms timeout answers by the failure policy when
            // a loaded machine is slow; this test is about following the
            // slot, so a slow answer must still be Redis's.
            let limiter = Limiter::connect_cluster(&client, limits, FailurePolicy::FailClosed)
                .await
                .unwrap()
                .with_timeout(Duration::from_secs(10));
            let leases =
                Limits::single("ls", Concurrency::new(2, Duration::from_secs(600)).unwrap())
                    .unwrap();
            let leaser = Limiter::connect_cluster(&client, leases, FailurePolicy::FailClosed)
                .await
                .unwrap()
                .with_timeout(Duration::from_secs(10))
                .with_lease_keep_alive(false);
            let (mut allowed, mut leased, mut errors) = (0i64, 0i64, vec![]);
            while !stop.load(Ordering::Relaxed) {
                match limiter.check("asm").await {
                    Ok(d) if d.decision.source == Source::Redis => {
                        allowed += i64::from(d.decision.allowed)
                    }
                    Ok(d) => errors.push(format!("client check: not Redis's answer: {d:?}")),
                    Err(e) => errors.push(format!("client check: {e}")),
                }
                match leaser.acquire("asm").await {
                    Ok(Acquired::Granted(lease))
                        if lease.decision().decision.source == Source::Redis =>
                    {
                        leased += 1;
                        match lease.renew().await {
                            Ok(true) => {}
                            other => errors.push(format!("client renew: {other:?}")),
                        }
                        match lease.release().await {
                            Ok(true) => {}
                            other => errors.push(format!("client release: {other:?}")),
                        }
                    }
                    Ok(Acquired::Granted(lease)) => {
                        errors.push(format!("client lease: not Redis's: {:?}", lease.decision()))
                    }
                    Ok(Acquired::Denied(d)) => errors.push(format!("client lease denied: {d:?}")),
                    Err(e) => errors.push(format!("client acquire: {e}")),
                }
            }
            let mut t = tally.lock().unwrap();
            *t.allowed.entry("client".into()).or_default() += allowed;
            *t.allowed.entry("client-leases".into()).or_default() += leased;
            t.errors.extend(errors);
        });
    })
}

#[test]
fn limiters_under_load_follow_their_slot_moving_back_and_forth() {
    if !atomic_slot_migration("limiters_under_load_follow_their_slot_moving_back_and_forth") {
        return;
    }
    let mut cluster = Cluster::start();
    // One slot holds every key: the raw keys' tag and the client crate's
    // (its keys are `rl:{asm}:sw`...).
    let slot = cluster.slot("{asm}");
    assert_eq!(slot, cluster.slot("rl:{asm}:sw"));
    let home = cluster.shard_of("{asm}").master;
    let away = other_master(&cluster, home);
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let held = Arc::new(AtomicI64::new(0));
    // A window that never fills; a bucket of 100000 tokens that gets one
    // back every 10000 s (the longest refill allowed is 100 years): what it
    // lost during the test is what it admitted.
    const BIG: &str = "1000000";
    const TB: &str = "100000";
    let mut workers = vec![
        // Never denies: every admission must be in the final log.
        taker(
            &cluster,
            "{asm}:sw",
            vec!["RL.SLIDING", "{asm}:sw", BIG, "600"],
            stop.clone(),
            tally.clone(),
        ),
        // Fills during the test: exactly 300 admitted, however the slot moves.
        taker(
            &cluster,
            "{asm}:sw300",
            vec!["RL.SLIDING", "{asm}:sw300", "300", "600"],
            stop.clone(),
            tally.clone(),
        ),
        taker(
            &cluster,
            "{asm}:tb",
            vec![
                "RL.TOKENBUCKET",
                "{asm}:tb",
                TB,
                "1",
                "1",
                "PERIOD",
                "10000",
            ],
            stop.clone(),
            tally.clone(),
        ),
        taker(
            &cluster,
            "{asm}:tb300",
            vec![
                "RL.TOKENBUCKET",
                "{asm}:tb300",
                "300",
                "1",
                "1",
                "PERIOD",
                "10000",
            ],
            stop.clone(),
            tally.clone(),
        ),
    ];
    // More holders than slots: some always wait in line (BLOCK) when the
    // slot moves.
    for _ in 0..6 {
        workers.push(leaser(
            &cluster,
            "{asm}:ls",
            held.clone(),
            stop.clone(),
            tally.clone(),
        ));
    }
    // A named policy, defined on every master (policies live per node),
    // and defined again and again during the moves: RL.POLICY SET
    // propagates a keyless command, which a migration must pass over.
    let masters: Vec<u16> = cluster.topology().shards.iter().map(|s| s.master).collect();
    let policy = ["RL.POLICY", "SET", "pl", "SLIDING", BIG, "600"];
    for &m in &masters {
        ok(&mut cluster.node(m).connect(), &policy);
    }
    workers.push(taker(
        &cluster,
        "{asm}:pl",
        vec!["RL.TAKE", "{asm}:pl", "pl"],
        stop.clone(),
        tally.clone(),
    ));
    let mut cons: Vec<redis::Connection> =
        masters.iter().map(|&m| cluster.node(m).connect()).collect();
    let (stop_policy, tally_policy) = (stop.clone(), tally.clone());
    workers.push(thread::spawn(move || {
        while !stop_policy.load(Ordering::Relaxed) {
            for c in &mut cons {
                if let Err(e) = call(c, &policy) {
                    tally_policy
                        .lock()
                        .unwrap()
                        .errors
                        .push(format!("RL.POLICY SET: {e}"));
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
    }));
    workers.push(client_crate_worker(&cluster, stop.clone(), tally.clone()));

    // Back and forth, six moves, each while the workers run.
    thread::sleep(Duration::from_millis(300));
    let mut moves = 0;
    for i in 0..6 {
        let to = if i % 2 == 0 { away } else { home };
        cluster.migrate_slots(&[(slot, slot)], to);
        moves += 1;
        thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let tally = tally.lock().unwrap();
    assert!(
        tally.errors.is_empty(),
        "after {moves} moves, errors: {:#?}",
        tally.errors
    );
    eprintln!(
        "{moves} moves; allowed replies: {:?}; leases {}",
        tally.allowed, tally.leases
    );

    // The server's record: the final states on the slot's owner (home).
    let mut c = cluster.connect_master("{asm}");
    assert_eq!(cluster.shard_of("{asm}").master, home);
    let used =
        |c: &mut redis::Connection, args: &[&str], limit: i64| limit - ints(c, args).unwrap()[2];
    let n = |k: &str| tally.allowed.get(k).copied().unwrap_or(0);
    let big: i64 = BIG.parse().unwrap();
    let tb: i64 = TB.parse().unwrap();
    assert_eq!(
        used(
            &mut c,
            &["RL.SLIDING", "{asm}:sw", BIG, "600", "COST", "0"],
            big
        ),
        n("{asm}:sw")
    );
    assert_eq!(
        used(
            &mut c,
            &["RL.SLIDING", "{asm}:sw300", "300", "600", "COST", "0"],
            300
        ),
        n("{asm}:sw300")
    );
    assert_eq!(
        used(
            &mut c,
            &["RL.SLIDING", "{asm}:pl", BIG, "600", "COST", "0"],
            big
        ),
        n("{asm}:pl")
    );
    assert_eq!(
        n("{asm}:sw300"),
        300,
        "the small window should fill during the test"
    );
    assert_eq!(
        used(
            &mut c,
            &[
                "RL.TOKENBUCKET",
                "{asm}:tb",
                TB,
                "1",
                "0",
                "PERIOD",
                "10000"
            ],
            tb
        ),
        n("{asm}:tb")
    );
    assert_eq!(
        used(
            &mut c,
            &[
                "RL.TOKENBUCKET",
                "{asm}:tb300",
                "300",
                "1",
                "0",
                "PERIOD",
                "10000"
            ],
            300
        ),
        n("{asm}:tb300")
    );
    assert_eq!(
        n("{asm}:tb300"),
        300,
        "the small bucket should empty during the test"
    );
    // The client crate's limits (RL.ALL of both): each took one unit per
    // allowed call.
    assert_eq!(
        used(
            &mut c,
            &["RL.SLIDING", "rl:{asm}:sw", BIG, "600", "COST", "0"],
            big
        ),
        n("client")
    );
    assert_eq!(
        used(
            &mut c,
            &[
                "RL.TOKENBUCKET",
                "rl:{asm}:tb",
                TB,
                "1",
                "0",
                "PERIOD",
                "10000"
            ],
            tb
        ),
        n("client")
    );
    assert!(n("client") > 0 && n("client-leases") > 0 && tally.leases > 0);
    // The owner's replica holds the same states (an import reaches the
    // target's replicas as the import stream).
    cluster.wait_replicated();
    let mut r = cluster.connect_replica("{asm}");
    for k in [
        "{asm}:sw",
        "{asm}:sw300",
        "{asm}:tb",
        "{asm}:tb300",
        "{asm}:pl",
        "rl:{asm}:sw",
        "rl:{asm}:tb",
    ] {
        let here = (
            bytes(&mut c, &["DUMP", k]),
            int(&mut c, &["PEXPIRETIME", k]),
        );
        let there = (
            bytes(&mut r, &["DUMP", k]),
            int(&mut r, &["PEXPIRETIME", k]),
        );
        assert!(here.0.is_some(), "{k} is missing");
        assert_eq!(here, there, "{k} on the owner and on its replica");
    }
    // No lease leaked: every one was released, the keys are gone.
    assert_eq!(int(&mut c, &["EXISTS", "{asm}:ls", "rl:{asm}:ls"]), 0);
    assert_eq!(held.load(Ordering::SeqCst), 0);
    // Nothing of the slot on the other master; INFO's counters right.
    let mut a = cluster.node(away).connect();
    assert_eq!(
        int(&mut a, &["CLUSTER", "COUNTKEYSINSLOT", &slot.to_string()]),
        0
    );
    let mut waits = [0; 3];
    for s in &cluster.topology().shards {
        let mut m = cluster.node(s.master).connect();
        assert_eq!(info_int(&mut m, "ratelimit", "ratelimit_waiters"), 0);
        for (n, f) in waits.iter_mut().zip(["started", "admitted", "cancelled"]) {
            *n += info_int(&mut m, "ratelimit", &format!("ratelimit_waits_{f}"));
        }
    }
    // Waits cancelled are those a move ended (TRYAGAIN, retried by the
    // cluster client).
    eprintln!("waits started, admitted, cancelled (all masters): {waits:?}");
    assert_key_counters_match(&cluster);
}

#[test]
fn an_import_that_fails_leaves_no_key_and_no_count_on_the_target() {
    if !atomic_slot_migration("an_import_that_fails_leaves_no_key_and_no_count_on_the_target") {
        return;
    }
    let mut cluster = Cluster::start();
    let slot = cluster.slot("{oom}");
    let source = cluster.shard_of("{oom}").master;
    let target = other_master(&cluster, source);
    // 3000 sliding logs in the slot, more than the target may take.
    let mut src = cluster.node(source).connect();
    let keys: Vec<String> = (0..3000).map(|i| format!("{{oom}}:{i}")).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("RL.SLIDING")
            .arg(k)
            .arg(1000)
            .arg(600)
            .arg("COST")
            .arg(5)
            .ignore();
        pipe.cmd("RL.SLIDING").arg(k).arg(1000).arg(600).ignore();
    }
    pipe.query::<()>(&mut src).unwrap();
    let sample: Vec<&str> = keys.iter().step_by(100).map(String::as_str).collect();
    let before = states(&cluster, source, &sample);
    let mut dst = cluster.node(target).connect();
    let used = info_int(&mut dst, "memory", "used_memory");
    ok(
        &mut dst,
        &["CONFIG", "SET", "maxmemory-policy", "noeviction"],
    );
    ok(
        &mut dst,
        &["CONFIG", "SET", "maxmemory", &(used + 300_000).to_string()],
    );

    // The import runs out of memory and fails: the target deletes what it
    // had imported (and its counts fall back), the source keeps the slot.
    let e = cluster
        .try_migrate_slots(&[(slot, slot)], target)
        .expect_err("the import should run out of memory");
    assert!(e.contains("\"failed\""), "{e}");
    eprintln!("{}", e.lines().next().unwrap_or_default());
    let import = slot_migrations(&mut dst)
        .into_iter()
        .find(|j| j.get("operation").map(String::as_str) == Some("IMPORT"))
        .expect("the target's import job");
    assert_eq!(
        import.get("state").map(String::as_str),
        Some("failed"),
        "{import:?}"
    );
    assert!(
        import.get("message").is_some_and(|m| m.contains("OOM")),
        "the import failed for another reason: {import:?}"
    );
    ok(&mut dst, &["CONFIG", "SET", "maxmemory", "0"]);
    let slot_s = slot.to_string();
    assert!(wait_until(10, || int(
        &mut dst,
        &["CLUSTER", "COUNTKEYSINSLOT", &slot_s]
    ) == 0));
    cluster.wait_ready();
    assert_eq!(cluster.shard_of("{oom}").master, source);
    assert_eq!(
        int(&mut src, &["CLUSTER", "COUNTKEYSINSLOT", &slot_s]),
        3000
    );
    assert_eq!(states(&cluster, source, &sample), before);
    assert_key_counters_match(&cluster);

    // With room, the same move succeeds, every key exact.
    cluster.migrate_slots(&[(slot, slot)], target);
    assert_eq!(states(&cluster, target, &sample), before);
    assert_eq!(
        int(&mut dst, &["CLUSTER", "COUNTKEYSINSLOT", &slot_s]),
        3000
    );
    assert_key_counters_match(&cluster);
}

/// A classic move of `key`'s slot from its master to `to` (SETSLOT
/// IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE on both), as `redis-cli
/// --cluster reshard` does it; on any server.
fn classic_move(cluster: &mut Cluster, key: &str, to: u16) {
    let from = cluster.shard_of(key).master;
    let slot = cluster.slot(key).to_string();
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let mut src = cluster.node(from).connect();
    let mut dst = cluster.node(to).connect();
    ok(
        &mut dst,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id],
    );
    ok(
        &mut src,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id],
    );
    let port = to.to_string();
    ok(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key],
    );
    for c in [&mut dst, &mut src] {
        ok(c, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
    }
    cluster.wait_ready();
}

#[test]
fn a_waiter_whose_slot_moved_by_migrate_gets_tryagain_at_its_deadline() {
    // No event tells the module of a classic move (nor of Redis 8.4's
    // migration): the waiter learns it at its deadline, which comes before
    // its turn (600 s away).
    let mut cluster = Cluster::start();
    let mut moved = false;
    for (n, timeout_ms) in [3000u64, 10_000, 30_000].into_iter().enumerate() {
        let key = format!("{{cm{n}}}:line");
        let source = cluster.shard_of(&key).master;
        let target = other_master(&cluster, source);
        let mut src = cluster.node(source).connect();
        assert_eq!(
            ints(&mut src, &["RL.SLIDING", &key, "1", "600"]).unwrap()[0],
            1
        );
        let mut wc = cluster.node(source).connect();
        let (k, t) = (key.clone(), timeout_ms.to_string());
        let started = std::time::Instant::now();
        let waiter =
            thread::spawn(move || ints(&mut wc, &["RL.SLIDING", &k, "1", "600", "BLOCK", &t]));
        assert!(wait_until(10, || info_int(
            &mut src,
            "ratelimit",
            "ratelimit_waiters"
        ) == 1));
        classic_move(&mut cluster, &key, target);
        let in_time = started.elapsed() < Duration::from_millis(timeout_ms);
        let reply = waiter.join().unwrap();
        assert_eq!(info_int(&mut src, "ratelimit", "ratelimit_waiters"), 0);
        let mut dst = cluster.node(target).connect();
        let peek = ints(&mut dst, &["RL.SLIDING", &key, "1", "600", "COST", "0"]).unwrap();
        assert_eq!(peek[2], 0, "one unit, the first call's: {peek:?}");
        match reply {
            Err(e) => {
                assert_eq!(e, redis_ratelimit_core::error::TRYAGAIN.text());
                moved = true;
                break;
            }
            // The deadline came before the slot moved: a denial, sound.
            Ok(r) if !in_time => {
                assert_eq!(r[0], 0, "{r:?}");
                eprintln!("the deadline ({timeout_ms} ms) came before the move: again, longer");
            }
            Ok(r) => panic!("moved in time, but the waiter got {r:?}"),
        }
    }
    assert!(moved, "the deadline came before the move, three times");
}
