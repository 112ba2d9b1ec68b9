//! Named policies in a real Redis Cluster. Policies are not keys: each
//! node holds its own set. They are the same everywhere when given as
//! module arguments (every node starts with them), or when RL.POLICY SET
//! is sent to every primary (the client crate does this and checks that
//! all agree): replicas follow their primary, and a failover promotes a
//! replica that holds the policies and the locked keys.
#![cfg(test)]

use redis_ratelimit_testkit::*;

fn list(c: &mut redis::Connection) -> Vec<(String, String)> {
    redis::cmd("RL.POLICY").arg("LIST").query(c).unwrap()
}

#[test]
fn policies_reach_every_node_and_survive_a_failover() {
    let mut cluster =
        Cluster::start_with_module_args(&["POLICY", "base", "SLIDING", "5", "60"], &[]);
    // From the module arguments: everywhere, replicas included.
    for n in &cluster.nodes {
        let mut c = n.connect();
        assert_eq!(
            list(&mut c),
            [("base".to_string(), "SLIDING 5 60".to_string())]
        );
    }
    // RL.POLICY SET on every primary (no key: any node takes it).
    let masters: Vec<u16> = cluster.topology().shards.iter().map(|s| s.master).collect();
    for &m in &masters {
        let mut c = cluster.node(m).connect();
        ok(
            &mut c,
            &[
                "RL.POLICY",
                "SET",
                "login",
                "FIXED",
                "2",
                "HOUR",
                "LOCKOUT",
                "600",
            ],
        );
    }
    cluster.wait_replicated();
    let want = list(&mut cluster.node(masters[0]).connect());
    assert_eq!(want.len(), 2);
    for n in &cluster.nodes {
        assert_eq!(list(&mut n.connect()), want, "node {}", n.port);
    }
    // Keys on every shard: RL.TAKE routes by its key.
    let mut cc = cluster.client();
    let keys: Vec<String> = (0..30).map(|i| format!("user:{i}")).collect();
    for k in &keys {
        for _ in 0..3 {
            ints_on(&mut cc, &["RL.TAKE", k, "login"]);
        }
        assert_eq!(
            rl_on(&mut cc, &["RL.TAKE", &format!("{k}:api"), "base"])[0],
            1
        );
    }
    let shards: std::collections::BTreeSet<u16> =
        keys.iter().map(|k| cluster.shard_of(k).master).collect();
    assert_eq!(shards.len(), 3, "the keys cover every shard");
    // RL.ALL with a policy clause, in one slot.
    let r = ints_on(
        &mut cc,
        &[
            "RL.ALL", "LIMIT", "{t}:a", "POLICY", "base", "LIMIT", "{t}:b", "POLICY", "login",
        ],
    );
    assert_eq!(r[0], 1);
    cluster.wait_replicated();
    for (mut m, mut r) in cluster.connect_pairs() {
        assert_same_state(&mut m, &mut r);
    }
    // A failover: the promoted replica holds the policies and the locks.
    let key = &keys[0];
    cluster.failover(key);
    let mut nm = cluster.connect_master(key);
    assert_eq!(list(&mut nm), want);
    let t: redis::Value = redis::cmd("TYPE").arg(key).query(&mut nm).unwrap();
    assert_eq!(t, redis::Value::SimpleString("rl-locked".into()));
    let r = rl_on(&mut nm, &["RL.TAKE", key, "login"]);
    assert_eq!(r[0], 0, "still locked out on the new master");
    // Policies set on the new master reach the old one, now its replica.
    ok(
        &mut nm,
        &["RL.POLICY", "SET", "after", "GCRA", "1", "1", "1"],
    );
    cluster.wait_replicated();
    let mut old = cluster.connect_replica(key);
    assert_eq!(list(&mut old), list(&mut nm));
}
