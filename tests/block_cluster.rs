//! BLOCK in a real Redis Cluster: a failover ends the waits on the old
//! master with an error the client can retry, and a slot that moves away
//! while requests wait on it answers TRYAGAIN; nothing is admitted twice,
//! nothing is taken for a wait that ended in an error.
#![cfg(test)]

use std::thread;

use redis_ratelimit_testkit::*;

/// Who ends the waits when a cluster master becomes a replica. Redis, and
/// Valkey before 9.0, unblock every blocked client themselves with
/// `-UNBLOCKED force unblock ... instance state changed` and close the
/// connection, before the module hears of the role change. Valkey 9.0 and
/// later (valkey-io/valkey#2329) redirect clients blocked on keys with MOVED
/// and leave a module's clients that are not blocked on keys (BLOCK's
/// waiters) blocked: the module's role-change event ends them, with its own
/// `UNBLOCKED` error, and the connection stays open.
#[derive(Debug, PartialEq)]
enum FailoverEnds {
    Server,
    Module,
}

fn failover_ends(c: &mut redis::Connection) -> FailoverEnds {
    let info: String = redis::cmd("INFO").arg("server").query(c).unwrap();
    let valkey_major = info
        .lines()
        .find_map(|l| l.strip_prefix("valkey_version:"))
        .map(|v| v.trim().split('.').next().unwrap().parse::<u32>().unwrap());
    match valkey_major {
        Some(major) if major >= 9 => FailoverEnds::Module,
        _ => FailoverEnds::Server,
    }
}

fn ints(c: &mut redis::Connection, args: &[&str]) -> Result<Vec<i64>, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Vec<i64>>(c).map_err(error_text)
}

fn waiters(c: &mut redis::Connection) -> i64 {
    info_int(c, "ratelimit", "ratelimit_waiters")
}

type Waiter = thread::JoinHandle<(Result<Vec<i64>, String>, redis::Connection)>;

/// Starts a client waiting on `args` in a thread, on the node at `port`;
/// the thread hands back the reply and the connection.
fn wait_on(cluster: &Cluster, port: u16, args: &[&str]) -> Waiter {
    let mut con = cluster.node(port).connect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        (ints(&mut con, &a), con)
    })
}

fn node_id(cluster: &Cluster, port: u16) -> String {
    let mut c = cluster.node(port).connect();
    redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
}

#[test]
fn failovers_and_slot_moves_end_waits_with_errors_that_take_nothing() {
    let mut cluster = Cluster::start();

    // A failover: the waiters on the old master get an error and their
    // connection closes; the new master holds only what was admitted.
    let key = "{fo}:line";
    let master = cluster.shard_of(key).master;
    let mut m = cluster.connect_master(key);
    assert_eq!(ints(&mut m, &["RL.SLIDING", key, "1", "60"]).unwrap()[0], 1);
    let a = wait_on(
        &cluster,
        master,
        &["RL.SLIDING", key, "1", "60", "BLOCK", "0"],
    );
    let b = wait_on(
        &cluster,
        master,
        &["RL.SLIDING", key, "1", "60", "BLOCK", "0"],
    );
    assert!(wait_until(10, || waiters(&mut m) == 2));
    let ends = failover_ends(&mut m);
    cluster.wait_replicated();
    cluster.failover(key);
    // Whoever ends them, they end (a wait left behind would hang here).
    assert!(
        wait_until(30, || a.is_finished() && b.is_finished()),
        "waiters on the old master still wait after the failover ({ends:?} ends them)"
    );
    let not_master = redis_ratelimit_core::error::NOT_MASTER.text();
    for w in [a, b] {
        let (reply, mut con) = w.join().unwrap();
        let e = reply.unwrap_err();
        match ends {
            // The server's reply, then it closes the connection (a client
            // may see the close first).
            FailoverEnds::Server => assert!(
                e.starts_with("UNBLOCKED force unblock from blocking operation")
                    || e.contains("closed")
                    || e.contains("reset"),
                "{e}"
            ),
            // The module's reply, and the server keeps the connection:
            // it answers the next command.
            FailoverEnds::Module => {
                assert_eq!(e, not_master);
                let pong: String = redis::cmd("PING").query(&mut con).unwrap();
                assert_eq!(pong, "PONG");
            }
        }
        // One code either way: a client retries UNBLOCKED (docs/CLIENTS.md).
        assert!(
            e.starts_with("UNBLOCKED ") || e.contains("closed") || e.contains("reset"),
            "{e}"
        );
    }
    let mut new_master = cluster.connect_master(key);
    let peek = ints(
        &mut new_master,
        &["RL.SLIDING", key, "2", "60", "COST", "0"],
    )
    .unwrap();
    assert_eq!(peek[2], 1, "one unit taken in all: {peek:?}");
    let mut old = cluster.node(master).connect();
    assert_eq!(waiters(&mut old), 0);

    // A slot moves while a request waits on it: TRYAGAIN at admission, and
    // the key arrives on its new master with nothing taken for the waiter.
    let key = "{mv}:line";
    let source = cluster.shard_of(key).master;
    let target = cluster
        .topology()
        .shards
        .iter()
        .map(|s| s.master)
        .find(|p| *p != source)
        .unwrap();
    let slot = cluster.slot(key).to_string();
    let mut src = cluster.node(source).connect();
    let mut dst = cluster.node(target).connect();
    assert_eq!(
        ints(&mut src, &["RL.SLIDING", key, "1", "2"]).unwrap()[0],
        1
    );
    let w = wait_on(
        &cluster,
        source,
        &["RL.SLIDING", key, "1", "2", "BLOCK", "0"],
    );
    assert!(wait_until(10, || waiters(&mut src) == 1));
    let (src_id, dst_id) = (node_id(&cluster, source), node_id(&cluster, target));
    ok(
        &mut dst,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id],
    );
    ok(
        &mut src,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id],
    );
    let port = target.to_string();
    ok(
        &mut src,
        &["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", key],
    );
    for c in [&mut dst, &mut src] {
        ok(c, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
    }
    let e = w.join().unwrap().0.unwrap_err();
    assert!(e.starts_with("TRYAGAIN"), "{e}");
    assert_eq!(waiters(&mut src), 0);
    let peek = ints(&mut dst, &["RL.SLIDING", key, "2", "2", "COST", "0"]).unwrap();
    assert!(
        peek[2] >= 1,
        "the moved key holds at most the one unit: {peek:?}"
    );
    assert_eq!(
        info_int(&mut src, "ratelimit", "ratelimit_waits_admitted"),
        0
    );
}
