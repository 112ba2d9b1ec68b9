//! A real Redis Cluster (three masters, one replica each, the module on
//! every node): commands route by key, replicas hold byte-identical state,
//! a manually promoted replica keeps enforcing, and RL.ALL works with hash
//! tags and gets CROSSSLOT without.
//!
//! Starting a cluster takes seconds, so one cluster serves the whole file:
//! a single test runs the sections in order (each says which one failed).
#![cfg(test)]

use redis::cluster::ClusterConnection;
use redis_ratelimit_testkit::*;

#[test]
fn a_three_shard_cluster_routes_replicates_fails_over_and_guards_slots() {
    let mut cluster = Cluster::start();
    let mut cc = cluster.client();

    section(
        "commands route by key to the master serving its slot",
        || commands_route_by_key(&cluster, &mut cc),
    );
    section("a replica holds byte-identical limiter state", || {
        replicas_hold_identical_state(&cluster, &mut cc)
    });
    section(
        "a promoted replica holds the same state and keeps enforcing",
        || failover_keeps_enforcing(&mut cluster, &mut cc),
    );
    section(
        "RL.ALL works with hash tags and gets CROSSSLOT without",
        || rl_all_needs_one_slot(&cluster, &mut cc),
    );
}

fn section(name: &str, f: impl FnOnce()) {
    eprintln!("section: {name}");
    let t = std::time::Instant::now();
    f();
    eprintln!("section ok in {:?}: {name}", t.elapsed());
}

/// A first request on a fresh key of each single-key command, and its
/// exact reply where the spec fixes it.
fn first_requests(key: &str) -> Vec<(Vec<String>, Option<Vec<i64>>)> {
    vec![
        (
            args(&["RL.TOKENBUCKET", &format!("{key}:tb"), "5", "0.001", "1"]),
            Some(vec![1, 5, 4, 0, 1_000_000]),
        ),
        (
            args(&["RL.SLIDING", &format!("{key}:sw"), "10", "60"]),
            Some(vec![1, 10, 9, 0, 60_000]),
        ),
        (
            args(&["RL.GCRA", &format!("{key}:gcra"), "5", "1", "1000"]),
            Some(vec![1, 5, 4, 0, 1_000_000]),
        ),
        (args(&["RL.FIXED", &format!("{key}:fw"), "5", "3600"]), None),
        (
            args(&["CL.THROTTLE", &format!("{key}:cell"), "15", "30", "60", "1"]),
            Some(vec![0, 16, 15, -1, 2]),
        ),
    ]
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(|s| s.as_str()).collect()
}

fn commands_route_by_key(cluster: &Cluster, cc: &mut ClusterConnection) {
    let mut created = 0;
    let mut per_shard = vec![0; cluster.topology().shards.len()];
    for i in 0..12 {
        for (cmd, expected) in first_requests(&format!("route:{i}")) {
            let cmd = strs(&cmd);
            let key = cmd[1];
            let reply = ints_on(cc, &cmd);
            match expected {
                Some(e) => assert_eq!(reply, e, "{cmd:?}"),
                None => {
                    // The fixed window: allowed, limit 5, 4 left, no wait,
                    // fresh again when the current hour (since the epoch) ends.
                    assert_eq!(reply.len(), 5, "{cmd:?}: {reply:?}");
                    assert_eq!(reply[..4], [1, 5, 4, 0], "{cmd:?}: {reply:?}");
                    assert!((1..=3_600_000).contains(&reply[4]), "{cmd:?}: {reply:?}");
                }
            }
            created += 1;
            // The key lives on the master serving its slot...
            let shard = cluster.shard_of(key).clone();
            let idx = cluster
                .topology()
                .shards
                .iter()
                .position(|s| *s == shard)
                .unwrap();
            per_shard[idx] += 1;
            let mut m = cluster.node(shard.master).connect();
            assert_eq!(int(&mut m, &["EXISTS", key]), 1, "{key} not on its master");
            // ...and every other node redirects the command there.
            let slot = cluster.slot(key);
            let moved = format!("MOVED {slot} 127.0.0.1:{}", shard.master);
            for n in cluster.nodes.iter().filter(|n| n.port != shard.master) {
                let mut c = n.connect();
                assert_eq!(err(&mut c, &cmd), moved, "{cmd:?} on node {}", n.port);
            }
        }
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "keys did not spread over every shard: {per_shard:?}"
    );
    // Exactly the keys made above exist, each once, on the masters.
    let on_masters: i64 = cluster
        .topology()
        .shards
        .iter()
        .map(|s| int(&mut cluster.node(s.master).connect(), &["DBSIZE"]))
        .sum();
    assert_eq!(on_masters, created);
}

fn replicas_hold_identical_state(cluster: &Cluster, cc: &mut ClusterConnection) {
    for round in 0..6u64 {
        for i in 0..40u64 {
            let key = format!("same:{i}");
            let cost = ((i + round) % 3).to_string();
            rl_on(
                cc,
                &["RL.TOKENBUCKET", &format!("{key}:tb"), "6", "0.5", &cost],
            );
            rl_on(
                cc,
                &[
                    "RL.SLIDING",
                    &format!("{key}:sw"),
                    "7",
                    "600",
                    "COST",
                    &cost,
                ],
            );
            rl_on(
                cc,
                &[
                    "RL.GCRA",
                    &format!("{key}:gcra"),
                    "4",
                    "2",
                    "60",
                    "COST",
                    &cost,
                ],
            );
            rl_on(
                cc,
                &["RL.FIXED", &format!("{key}:fw"), "9", "HOUR", "COST", &cost],
            );
            rl_on(
                cc,
                &[
                    "CL.THROTTLE",
                    &format!("{key}:cell"),
                    "5",
                    "10",
                    "60",
                    &cost,
                ],
            );
        }
    }
    cluster.wait_replicated();
    let mut compared = 0;
    for (mut m, mut r) in cluster.connect_pairs() {
        compared += assert_same_state(&mut m, &mut r);
    }
    // Every key written above (40 per command), plus those of the first section.
    assert!(compared >= 80, "only {compared} keys compared");
}

/// The key's DUMP and absolute expiry.
fn state(c: &mut redis::Connection, key: &str) -> (Option<Vec<u8>>, i64) {
    (bytes(c, &["DUMP", key]), int(c, &["PEXPIRETIME", key]))
}

fn failover_keeps_enforcing(cluster: &mut Cluster, cc: &mut ClusterConnection) {
    let tb = "{acct7}:tb";
    let sw = "{acct7}:sw";
    // Both exhausted; a token comes back only after 1000 s, the window
    // empties after an hour.
    assert_eq!(
        rl_on(cc, &["RL.TOKENBUCKET", tb, "3", "0.001", "3"]),
        [1, 3, 0, 0, 3_000_000]
    );
    assert_eq!(
        rl_on(cc, &["RL.SLIDING", sw, "2", "3600", "COST", "2"]),
        [1, 2, 0, 0, 3_600_000]
    );
    // The other limiters, exhausted too: (key, request that must be
    // denied after the failover).
    let mut others: Vec<(&str, Vec<&str>)> = vec![];
    let k = "{acct7}:gcra";
    let r = rl_on(cc, &["RL.GCRA", k, "2", "1", "3600", "COST", "2"]);
    assert_eq!(r[..3], [1, 2, 0], "{r:?}");
    others.push((k, vec!["RL.GCRA", k, "2", "1", "3600"]));
    let k = "{acct7}:fw";
    let r = rl_on(cc, &["RL.FIXED", k, "2", "DAY", "COST", "2"]);
    assert_eq!(r[..3], [1, 2, 0], "{r:?}");
    // Unless the day ends within the minute, it stays exhausted.
    if r[4] > 60_000 {
        others.push((k, vec!["RL.FIXED", k, "2", "DAY"]));
    } else {
        eprintln!("fixed window not checked: the UTC day ends in {} ms", r[4]);
    }
    let k = "{acct7}:cell";
    // A limit of 2, one more every hour: both taken.
    let r = rl_on(cc, &["CL.THROTTLE", k, "1", "1", "3600", "2"]);
    assert_eq!(r[..4], [0, 2, 0, -1], "{r:?}");
    others.push((k, vec!["CL.THROTTLE", k, "1", "1", "3600", "1"]));
    let mut keys = vec![tb, sw];
    keys.extend(others.iter().map(|(k, _)| *k));
    let states = |c: &mut redis::Connection| -> Vec<(Option<Vec<u8>>, i64)> {
        keys.iter().map(|k| state(c, k)).collect()
    };
    let old_master = cluster.shard_of(tb).master;
    let before = states(&mut cluster.connect_master(tb));
    assert!(
        before.iter().all(|(d, e)| d.is_some() && *e > 0),
        "{before:?}"
    );
    cluster.wait_replicated();

    cluster.failover(tb);

    let new_master = cluster.shard_of(tb).master;
    assert_ne!(new_master, old_master);
    let mut m = cluster.connect_master(tb);
    assert_eq!(states(&mut m), before);
    // The cluster client follows the slot to the new master, which denies.
    let r = rl_on(cc, &["RL.TOKENBUCKET", tb, "3", "0.001", "1"]);
    assert_eq!(r[..3], [0, 3, 0], "{r:?}");
    assert!(r[3] > 900_000 && r[3] <= 1_000_000, "{r:?}");
    let r = rl_on(cc, &["RL.SLIDING", sw, "2", "3600"]);
    assert_eq!(r[..3], [0, 2, 0], "{r:?}");
    assert!(r[3] > 3_500_000 && r[3] <= 3_600_000, "{r:?}");
    for (_, probe) in &others {
        let r = rl_on(cc, probe);
        let denied = if probe[0] == "CL.THROTTLE" {
            r[0] == 1 && r[3] > 0
        } else {
            r[0] == 0 && r[3] > 0
        };
        assert!(denied && r[2] == 0, "{probe:?} after the failover: {r:?}");
    }
    // Denied requests changed nothing.
    assert_eq!(states(&mut m), before);
    // The old master now replicates from the new one...
    let fresh = "{acct7}:after";
    assert_eq!(
        rl_on(cc, &["RL.TOKENBUCKET", fresh, "3", "0.001", "1"]),
        [1, 3, 2, 0, 1_000_000]
    );
    cluster.wait_replicated();
    let mut old = cluster.node(old_master).connect();
    ok(&mut old, &["READONLY"]);
    assert_eq!(state(&mut old, fresh), state(&mut m, fresh));
    assert_same_state(&mut m, &mut old);
    // ...and sends writes for the slot to it.
    let slot = cluster.slot(tb);
    assert_eq!(
        err(&mut old, &["RL.TOKENBUCKET", tb, "3", "0.001", "1"]),
        format!("MOVED {slot} 127.0.0.1:{new_master}")
    );
}

fn rl_all_needs_one_slot(cluster: &Cluster, cc: &mut ClusterConnection) {
    let mut c0 = cluster.nodes[0].connect();
    let (a, b) = ("{user42}:min", "{user42}:day");
    let both = [
        "RL.ALL",
        "LIMIT",
        a,
        "TOKENBUCKET",
        "10",
        "1",
        "LIMIT",
        b,
        "SLIDING",
        "100",
        "86400",
    ];
    // The server finds both keys, so the cluster can check their slots.
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg(&both[..])
        .query(&mut c0)
        .unwrap();
    assert_eq!(keys, [a, b]);
    // Allowed; the binding limit is the one with the least remaining (the
    // bucket, index 1).
    let mut m = cluster.connect_master(a);
    let calls = |m: &mut redis::Connection| info_int(m, "ratelimit", "ratelimit_all_calls");
    let before = calls(&mut m);
    assert_eq!(ints_on(cc, &both), [1, 10, 9, 0, 1000, 1]);
    assert_eq!(int(&mut m, &["EXISTS", a, b]), 2);
    // One call counted: the cluster asks where the keys are before running
    // it (and Valkey 9.1 does even without a cluster), which is no call.
    assert_eq!(calls(&mut m), before + 1);

    let (x, y) = ("all:x", "all:y");
    assert_ne!(cluster.slot(x), cluster.slot(y));
    let split = [
        "RL.ALL",
        "LIMIT",
        x,
        "TOKENBUCKET",
        "10",
        "1",
        "LIMIT",
        y,
        "SLIDING",
        "100",
        "86400",
    ];
    let crossslot = "CROSSSLOT Keys in request don't hash to the same slot";
    assert_eq!(err_on(cc, &split), crossslot);
    for n in &cluster.nodes {
        assert_eq!(err(&mut n.connect(), &split), crossslot, "node {}", n.port);
    }
    for k in [x, y] {
        assert_eq!(int(&mut cluster.connect_master(k), &["EXISTS", k]), 0);
    }
    rl_all_first_key_routes_by_its_first_argument(cluster, cc);
}

/// The first-key form (`RL.ALL key <algorithm> ... LIMIT key ...`): a
/// client that routes by the first argument (redis-rs's cluster client
/// here, Valkey GLIDE alike) sends it straight to its keys' master, with
/// no MOVED; the server still finds every key (CROSSSLOT, GETKEYS).
fn rl_all_first_key_routes_by_its_first_argument(cluster: &Cluster, cc: &mut ClusterConnection) {
    // `errorstat_MOVED:count=N` summed over the nodes.
    let moved = |cluster: &Cluster| -> i64 {
        let count = |n: &Server| {
            let info: String = redis::cmd("INFO")
                .arg("errorstats")
                .query(&mut n.connect())
                .unwrap();
            info.lines()
                .find_map(|l| l.strip_prefix("errorstat_MOVED:count="))
                .map_or(0, |v| v.trim().parse::<i64>().unwrap())
        };
        cluster.nodes.iter().map(count).sum()
    };
    let before = moved(cluster);
    let mut shards = std::collections::BTreeSet::new();
    for i in 0..30 {
        let (a, b) = (format!("{{fk{i}}}:min"), format!("{{fk{i}}}:day"));
        let call = [
            "RL.ALL", &a, "SLIDING", "10", "60", "LIMIT", &b, "FIXED", "500", "DAY",
        ];
        let r = ints_on(cc, &call);
        assert_eq!(r[..3], [1, 10, 9], "{call:?}: {r:?}");
        let mut m = cluster.connect_master(&a);
        assert_eq!(int(&mut m, &["EXISTS", &a, &b]), 2, "{call:?}");
        shards.insert(cluster.shard_of(&a).master);
    }
    assert_eq!(
        shards.len(),
        cluster.topology().shards.len(),
        "keys on every shard"
    );
    assert_eq!(
        moved(cluster),
        before,
        "MOVED replies to the first-key form"
    );
    let split = [
        "RL.ALL", "all:x", "SLIDING", "10", "60", "LIMIT", "all:y", "GCRA", "1", "1", "1",
    ];
    assert_eq!(
        err_on(cc, &split),
        "CROSSSLOT Keys in request don't hash to the same slot"
    );
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg(&split[..])
        .query(&mut cluster.nodes[0].connect())
        .unwrap();
    assert_eq!(keys, ["all:x", "all:y"]);
}
