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

    // A failover: the waiters on the old master get an UNBLOCKED error
    // (from the server or the module, see FailoverEnds); the new master
    // holds only what was admitted. A
    // lease held across it stays the only holder of its slot, and its id
    // is never given again.
    let key = "{fo}:line";
    let slots = "{fo}:slots";
    let master = cluster.shard_of(key).master;
    let mut m = cluster.connect_master(key);
    assert_eq!(ints(&mut m, &["RL.SLIDING", key, "1", "60"]).unwrap()[0], 1);
    let held = ints(&mut m, &["RL.ACQUIRE", slots, "1", "300"]).unwrap()[5];
    let mut ended = vec![];
    for args in [
        &["RL.SLIDING", key, "1", "60", "BLOCK", "0"][..],
        &["RL.SLIDING", key, "1", "60", "BLOCK", "0"],
        &["RL.ACQUIRE", slots, "1", "300", "BLOCK", "0"],
    ] {
        ended.push(wait_on(&cluster, master, args));
    }
    assert!(wait_until(10, || waiters(&mut m) == 3));
    let ends = failover_ends(&mut m);
    cluster.wait_replicated();
    cluster.failover(key);
    // Whoever ends them, they end (a wait left behind would hang here).
    assert!(
        wait_until(30, || ended.iter().all(|w| w.is_finished())),
        "waiters on the old master still wait after the failover ({ends:?} ends them)"
    );
    let not_master = redis_ratelimit_core::error::NOT_MASTER.text();
    for w in ended {
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
    // The slot is still held: a second holder is refused; the holder can
    // renew and release it; the next lease gets a new id.
    let r = ints(&mut new_master, &["RL.ACQUIRE", slots, "1", "300"]).unwrap();
    assert_eq!(r[..3], [0, 1, 0], "a second holder of the one slot: {r:?}");
    let id = held.to_string();
    assert_eq!(int(&mut new_master, &["RL.RENEW", slots, &id, "300"]), 1);
    assert_eq!(int(&mut new_master, &["RL.RELEASE", slots, &id]), 1);
    let r = ints(&mut new_master, &["RL.ACQUIRE", slots, "1", "300"]).unwrap();
    assert_eq!(r[0], 1, "{r:?}");
    assert!(r[5] > held, "lease id {} after {held}", r[5]);

    // A slot moves while a request waits on it: TRYAGAIN at its turn, and
    // the key arrives on its new master exactly as it was, nothing taken
    // for the waiter, nothing left or made again on the old one. The turn
    // comes `period` after the first call: a machine slow enough to let
    // it come before the key moved gets it admitted there (sound, but not
    // the case under test): then again with a longer period.
    let mut moved = false;
    for (n, period) in [2u64, 8, 30].into_iter().enumerate() {
        let key = format!("{{mv{n}}}:line");
        match move_while_waiting(&cluster, &key, period) {
            Ok(()) => {
                moved = true;
                break;
            }
            Err(e) => eprintln!("{e}: again with a longer wait"),
        }
    }
    assert!(
        moved,
        "the waiter's turn came before its key moved, three times"
    );
}

/// A bucket of 2 tokens, one back every `period` seconds, emptied: a
/// waiter's turn comes `period` s on, the key is fresh again (expires) at
/// `2 * period` s. Its slot then moves to another master. `Err` when the
/// waiter was admitted before its key moved (checked exact too).
fn move_while_waiting(cluster: &Cluster, key: &str, period: u64) -> Result<(), String> {
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
    let admitted_before = info_int(&mut src, "ratelimit", "ratelimit_waits_admitted");
    let p = period.to_string();
    let bucket = ["RL.TOKENBUCKET", key, "2", "1", "2", "PERIOD", &p];
    assert_eq!(ints(&mut src, &bucket).unwrap()[..3], [1, 2, 0]);
    let before = (
        bytes(&mut src, &["DUMP", key]),
        int(&mut src, &["PEXPIRETIME", key]),
    );
    let w = wait_on(
        cluster,
        source,
        &[
            "RL.TOKENBUCKET",
            key,
            "2",
            "1",
            "1",
            "PERIOD",
            &p,
            "BLOCK",
            "0",
        ],
    );
    assert!(wait_until(10, || waiters(&mut src) == 1));
    let (src_id, dst_id) = (node_id(cluster, source), node_id(cluster, target));
    ok(
        &mut dst,
        &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id],
    );
    ok(
        &mut src,
        &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id],
    );
    let port = target.to_string();
    // MIGRATE carries the TTL relative (as DUMP/RESTORE do): the key's
    // expiry on arrival is later by up to how long the move took. The
    // state itself (DUMP) is absolute and arrives exact.
    let (m0, (), m1): ((u64, u64), (), (u64, u64)) = redis::pipe()
        .cmd("TIME")
        .cmd("MIGRATE")
        .arg(&["127.0.0.1", &port, "", "0", "5000", "KEYS", key][..])
        .cmd("TIME")
        .query(&mut src)
        .unwrap();
    let took_ms = ((m1.0 * 1_000_000 + m1.1) - (m0.0 * 1_000_000 + m0.1)).div_ceil(1000) as i64 + 1;
    let expiry_moved = |from: i64, to: i64| (from..=from + took_ms).contains(&to);
    for c in [&mut dst, &mut src] {
        ok(c, &["CLUSTER", "SETSLOT", &slot, "NODE", &dst_id]);
    }
    // What arrived, read before the waiter's turn could change anything
    // (the turn may come any time; the key lasts another `period` after).
    let arrived = (
        bytes(&mut dst, &["DUMP", key]),
        int(&mut dst, &["PEXPIRETIME", key]),
    );
    let outcome = w.join().unwrap().0;
    assert_eq!(waiters(&mut src), 0);
    assert_eq!(
        int(&mut src, &["CLUSTER", "COUNTKEYSINSLOT", &slot]),
        0,
        "the old master holds a key of the moved slot"
    );
    let admitted = info_int(&mut src, "ratelimit", "ratelimit_waits_admitted") - admitted_before;
    match outcome {
        Err(e) => {
            assert!(e.starts_with("TRYAGAIN"), "{e}");
            assert_eq!(
                arrived.0, before.0,
                "the state arrived changed (lost, or a unit taken)"
            );
            assert!(
                expiry_moved(before.1, arrived.1),
                "expiry {} on arrival, {} before the move (which took {took_ms} ms)",
                arrived.1,
                before.1
            );
            assert_eq!(admitted, 0);
            Ok(())
        }
        Ok(r) => {
            // Admitted on the old master before the key moved: it moved
            // with one more token taken, its full-again instant one
            // period later.
            assert_eq!(r[..3], [1, 2, 0], "{r:?}");
            assert_eq!(admitted, 1);
            assert!(
                expiry_moved(before.1 + period as i64 * 1000, arrived.1),
                "{arrived:?}, {before:?}"
            );
            Err(format!("admitted before the key moved (period {period} s)"))
        }
    }
}
