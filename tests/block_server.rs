//! BLOCK against the rest of the server: the `max-waiters` cap, flushes,
//! DEL, UNLINK, SET, RENAME, MOVE, RESTORE, expiry and eviction of a key
//! with waiters, waiters in another database,
//! CLIENT PAUSE and a failover's pause, a standalone REPLICAOF, `maxmemory`,
//! and RL.ALL's CONCURRENCY clause and a CONCURRENCY policy waiting for a
//! slot.
//!
//! Lines move by events wherever the test can choose (a refund, a
//! release, a flush, a key changed under its line): windows an hour long,
//! so that nothing depends on this machine's timing. Where a timer must
//! fire (a pause, a lock), instants come from the server: the AOF records
//! the instant of every admission.
#![cfg(test)]

use std::thread;

use redis_ratelimit_testkit::*;

fn ints(c: &mut redis::Connection, args: &[&str]) -> Result<Vec<i64>, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Vec<i64>>(c).map_err(error_text)
}

const AOF: &[&str] = &[
    "--appendonly",
    "yes",
    "--aof-use-rdb-preamble",
    "no",
    "--appendfsync",
    "always",
];

/// A client waiting on `args` in a thread, on a connection that first
/// runs `setup` (a SELECT).
fn waiting_with(
    s: &Server,
    setup: &[&str],
    args: &[&str],
) -> thread::JoinHandle<Result<Vec<i64>, String>> {
    let mut con = s.connect();
    if !setup.is_empty() {
        call(&mut con, setup).unwrap();
    }
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ints(&mut con, &a)
    })
}

fn waiting(s: &Server, args: &[&str]) -> thread::JoinHandle<Result<Vec<i64>, String>> {
    waiting_with(s, &[], args)
}

fn field(c: &mut redis::Connection, name: &str) -> i64 {
    info_int(c, "ratelimit", &format!("ratelimit_{name}"))
}

/// Waits until `n` clients wait in line.
fn until_waiters(c: &mut redis::Connection, n: i64) {
    assert!(
        wait_until(10, || field(c, "waiters") == n),
        "waiters: {}",
        field(c, "waiters")
    );
}

/// The decision instants (µs, server clock) of every RL.WINDOWADD on `key`.
fn admissions(dir: &std::path::Path, key: &str) -> Vec<u64> {
    aof_commands(dir)
        .into_iter()
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.WINDOWADD") && a[1] == key.as_bytes())
        .map(|a| u64::from_le_bytes(a[2][0..8].try_into().unwrap()))
        .collect()
}

const HOUR: [&str; 4] = ["RL.SLIDING", "k", "1", "3600"];
const HOUR_WAIT: [&str; 6] = ["RL.SLIDING", "k", "1", "3600", "BLOCK", "20000"];

#[test]
fn past_max_waiters_a_block_call_answers_at_once() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["CONFIG", "SET", "ratelimit.max-waiters", "2"]);
    assert_eq!(ints(&mut c, &HOUR).unwrap()[0], 1);
    let a = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 1);
    let b = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 2);
    // The third answers at once: denied behind the line, as without BLOCK.
    let r = ints(&mut c, &["RL.SLIDING", "k", "1", "3600", "BLOCK", "3000"]).unwrap();
    assert_eq!(r[..3], [0, 1, 0], "{r:?}");
    assert_eq!(
        (
            field(&mut c, "waits_started"),
            field(&mut c, "waits_refused")
        ),
        (2, 1)
    );
    // 0 turns waiting off: even with no one in line.
    ok(&mut c, &["CONFIG", "SET", "ratelimit.max-waiters", "0"]);
    for w in [a, b] {
        let refund = ["RL.SLIDING", "k", "1", "3600", "REFUND"];
        assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
        assert_eq!(w.join().unwrap().unwrap()[0], 1);
    }
    until_waiters(&mut c, 0);
    let r = ints(&mut c, &["RL.SLIDING", "k", "1", "3600", "BLOCK", "3000"]).unwrap();
    assert_eq!(r[0], 0, "{r:?}");
    assert_eq!(
        (
            field(&mut c, "waits_started"),
            field(&mut c, "waits_refused")
        ),
        (2, 2)
    );
}

#[test]
fn a_flush_frees_the_line_at_once() {
    let s = Server::start();
    let mut c = s.connect();
    assert_eq!(ints(&mut c, &HOUR).unwrap()[0], 1);
    let first = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 1);
    let second = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 2);
    // The database emptied: the first in line takes the unit at once, the
    // second waits for it.
    ok(&mut c, &["FLUSHDB"]);
    assert_eq!(first.join().unwrap().unwrap()[..3], [1, 1, 0]);
    until_waiters(&mut c, 1);
    assert_eq!(
        ints(&mut c, &["RL.SLIDING", "k", "2", "3600", "COST", "0"]).unwrap()[..3],
        [1, 2, 1]
    );
    ok(&mut c, &["FLUSHALL"]);
    assert_eq!(second.join().unwrap().unwrap()[..3], [1, 1, 0]);
    assert_eq!(field(&mut c, "waits_admitted"), 2);
}

#[test]
fn waiters_in_two_databases_wait_in_their_own_lines_and_are_served_there() {
    let s = Server::start();
    let mut c = s.connect();
    let mut five = s.connect();
    ok(&mut five, &["SELECT", "5"]);
    // The same name in databases 0 and 5: two keys, two lines.
    assert_eq!(ints(&mut five, &HOUR).unwrap()[0], 1);
    assert_eq!(ints(&mut c, &HOUR).unwrap()[0], 1);
    let w5 = waiting_with(&s, &["SELECT", "5"], &HOUR_WAIT);
    until_waiters(&mut c, 1);
    let w0 = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 2);
    // Served in database 0 first, then 5; each takes the unit given back
    // in its own database.
    let refund = ["RL.SLIDING", "k", "1", "3600", "REFUND"];
    let peek = ["RL.SLIDING", "k", "3", "3600", "COST", "0"];
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    assert_eq!(w0.join().unwrap().unwrap()[..3], [1, 1, 0]);
    assert_eq!(ints(&mut c, &peek).unwrap()[2], 2, "database 0");
    assert_eq!(ints(&mut five, &peek).unwrap()[2], 2, "database 5");
    assert_eq!(ints(&mut five, &refund).unwrap()[0], 1);
    assert_eq!(w5.join().unwrap().unwrap()[..3], [1, 1, 0]);
    assert_eq!(ints(&mut five, &peek).unwrap()[2], 2, "database 5");
    assert_eq!(ints(&mut c, &peek).unwrap()[2], 2, "database 0");
    // A FLUSHALL sent from database 0 wakes the line of database 5: the
    // waiter still takes its unit in database 5 (the timer that serves
    // it was made from database 0's client).
    let w5 = waiting_with(&s, &["SELECT", "5"], &HOUR_WAIT);
    until_waiters(&mut c, 1);
    ok(&mut c, &["FLUSHALL"]);
    assert_eq!(w5.join().unwrap().unwrap()[..3], [1, 1, 0]);
    assert_eq!(ints(&mut five, &peek).unwrap()[2], 2, "database 5");
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0, "database 0");
}

/// A key changed under its line by someone else is served at once, on
/// what it holds now, as a flush is: DEL and UNLINK (a limiter reset by
/// hand) and RENAME or MOVE away leave a fresh limit; RESTORE .. REPLACE
/// puts another state in its place; SET or SUNIONSTORE make it a string
/// or a set, and its waiter is answered WRONGTYPE without touching it;
/// an expiry and an eviction empty it. Every window is an hour long and
/// every wait 20 s: a waiter answered "allowed" was admitted by the
/// change (its old turn is an hour away), with no timing on this
/// machine's clock; none reached its deadline (the server's count).
/// Without the module hearing of these changes, each waits until its
/// deadline, and is denied there (or answered WRONGTYPE, which the count
/// of timeouts tells). The AOF shows that nothing wrong was taken: one
/// admission on each emptied key, none on the string, the set nor the
/// renamed state.
#[test]
fn a_key_deleted_overwritten_or_renamed_under_its_line_is_served_at_once() {
    let s = Server::start_with(AOF);
    let mut c = s.connect();
    let hour = |k: &str, limit: &str| -> Vec<String> {
        ["RL.SLIDING", k, limit, "3600"].map(String::from).to_vec()
    };
    let wait = |k: &str, limit: &str| -> Vec<String> {
        let mut w = hour(k, limit);
        w.extend(["BLOCK".into(), "20000".into()]);
        w
    };
    let run = |c: &mut redis::Connection, args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ints(c, &a)
    };
    // Each key spent: one unit an hour (two for the one RESTORE replaces,
    // spent in one call; its donor holds one of two).
    let simple = [
        "{e}:del",
        "{e}:unlink",
        "{e}:set",
        "{e}:ren",
        "{e}:move",
        "{e}:store",
    ];
    for k in simple {
        assert_eq!(run(&mut c, &hour(k, "1")).unwrap()[0], 1, "{k}");
    }
    let mut spend = hour("{e}:restore", "2");
    spend.extend(["COST".into(), "2".into()]);
    assert_eq!(run(&mut c, &spend).unwrap()[..3], [1, 2, 0]);
    assert_eq!(
        run(&mut c, &hour("{e}:donor", "2")).unwrap()[..3],
        [1, 2, 1]
    );
    let donor = bytes(&mut c, &["DUMP", "{e}:donor"]).unwrap();
    let donor_at = int(&mut c, &["PEXPIRETIME", "{e}:donor"]).to_string();
    let renamed = bytes(&mut c, &["DUMP", "{e}:ren"]);

    let mut ws: Vec<_> = simple
        .iter()
        .map(|k| {
            waiting(
                &s,
                &wait(k, "1").iter().map(String::as_str).collect::<Vec<_>>(),
            )
        })
        .collect();
    ws.push(waiting(
        &s,
        &wait("{e}:restore", "2")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    ));
    assert_eq!(int(&mut c, &["SADD", "{e}:members", "a"]), 1);
    until_waiters(&mut c, 7);
    assert_eq!(int(&mut c, &["DEL", "{e}:del"]), 1);
    assert_eq!(int(&mut c, &["UNLINK", "{e}:unlink"]), 1);
    ok(&mut c, &["SET", "{e}:set", "a string"]);
    ok(&mut c, &["RENAME", "{e}:ren", "{e}:moved"]);
    assert_eq!(int(&mut c, &["MOVE", "{e}:move", "3"]), 1);
    assert_eq!(int(&mut c, &["SUNIONSTORE", "{e}:store", "{e}:members"]), 1);
    let mut restore = redis::cmd("RESTORE");
    restore
        .arg("{e}:restore")
        .arg(&donor_at)
        .arg(&donor)
        .arg("REPLACE")
        .arg("ABSTTL");
    let () = restore.query(&mut c).unwrap();
    let answers: Vec<Result<Vec<i64>, String>> = ws.drain(..).map(|w| w.join().unwrap()).collect();
    let expected = [
        ("DEL", Ok(vec![1, 1, 0])),
        ("UNLINK", Ok(vec![1, 1, 0])),
        ("SET", Err("WRONGTYPE".to_string())),
        ("RENAME", Ok(vec![1, 1, 0])),
        ("MOVE", Ok(vec![1, 1, 0])),
        ("SUNIONSTORE", Err("WRONGTYPE".to_string())),
        ("RESTORE .. REPLACE", Ok(vec![1, 2, 0])),
    ];
    let wrong: Vec<String> = expected
        .iter()
        .zip(&answers)
        .filter(|((_, want), got)| match (want, got) {
            (Ok(w), Ok(g)) => g.get(..3) != Some(w.as_slice()),
            (Err(w), Err(g)) => !g.starts_with(w.as_str()),
            _ => true,
        })
        .map(|((what, want), got)| format!("{what}: {got:?}, not {want:?}"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(bytes(&mut c, &["GET", "{e}:set"]).unwrap(), b"a string");
    assert_eq!(int(&mut c, &["SCARD", "{e}:store"]), 1);
    assert_eq!(bytes(&mut c, &["DUMP", "{e}:moved"]), renamed);
    ok(&mut c, &["CONFIG", "SET", "appendfsync", "always"]);
    for (k, n) in [
        ("{e}:del", 2),
        ("{e}:unlink", 2),
        ("{e}:set", 1),
        ("{e}:ren", 2),
        ("{e}:moved", 0),
        ("{e}:move", 2),
        ("{e}:store", 1),
    ] {
        assert_eq!(admissions(&s.dir, k).len(), n, "{k}");
    }
    // Each was answered when its key changed: none at its deadline (a
    // WRONGTYPE at the deadline would look the same to the client).
    assert_eq!(
        (
            field(&mut c, "waits_admitted"),
            field(&mut c, "waits_timed_out"),
            field(&mut c, "waiters")
        ),
        (5, 0, 0)
    );

    // An expiry: the key's TTL is set before its waiter joins, so that
    // the expiry is the only event after it. A machine so slow that the
    // key expired before the waiter joined makes the round inconclusive.
    let mut expired = false;
    for ttl_ms in ["1000", "3000", "10000"] {
        let admitted = field(&mut c, "waits_admitted");
        assert_eq!(run(&mut c, &hour("{e}:exp", "1")).unwrap()[0], 1);
        assert_eq!(int(&mut c, &["PEXPIRE", "{e}:exp", ttl_ms]), 1);
        let r = run(&mut c, &wait("{e}:exp", "1")).unwrap();
        assert_eq!(r[..3], [1, 1, 0], "expired: {r:?}");
        if field(&mut c, "waits_admitted") == admitted + 1 {
            expired = true;
            break;
        }
        eprintln!("the key expired before its waiter joined ({ttl_ms} ms): again");
        assert_eq!(int(&mut c, &["DEL", "{e}:exp"]), 1);
    }
    assert!(
        expired,
        "the key expired before its waiter joined, three times"
    );

    // An eviction: past maxmemory, the next command evicts every key.
    ok(
        &mut c,
        &["CONFIG", "SET", "maxmemory-policy", "allkeys-random"],
    );
    assert_eq!(run(&mut c, &hour("{e}:evict", "1")).unwrap()[0], 1);
    let w = waiting(
        &s,
        &["RL.SLIDING", "{e}:evict", "1", "3600", "BLOCK", "20000"],
    );
    until_waiters(&mut c, 1);
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
    let _ = call(&mut c, &["SET", "x", "y"]);
    let r = w.join().unwrap();
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    assert_eq!(r.unwrap()[..3], [1, 1, 0], "evicted");
    assert_eq!(field(&mut c, "waits_timed_out"), 0);

    // A waiter that is not first on every key when one of them changes
    // (someone is ahead of it on the other) waits on; when it leaves, it is
    // answered what the call would answer now: WRONGTYPE.
    assert_eq!(run(&mut c, &hour("{e}:a", "1")).unwrap()[0], 1);
    let first = waiting(&s, &["RL.SLIDING", "{e}:a", "1", "3600", "BLOCK", "20000"]);
    until_waiters(&mut c, 1);
    let mut con = s.connect();
    let id = int(&mut con, &["CLIENT", "ID"]).to_string();
    let both = thread::spawn(move || {
        let all = [
            "RL.ALL", "LIMIT", "{e}:a", "SLIDING", "1", "3600", "LIMIT", "{e}:b", "SLIDING", "1",
            "3600", "BLOCK", "0",
        ];
        ints(&mut con, &all)
    });
    until_waiters(&mut c, 2);
    ok(&mut c, &["SET", "{e}:b", "a string"]);
    assert_eq!(int(&mut c, &["CLIENT", "UNBLOCK", &id, "TIMEOUT"]), 1);
    let e = both.join().unwrap().unwrap_err();
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(int(&mut c, &["DEL", "{e}:a"]), 1);
    assert_eq!(first.join().unwrap().unwrap()[..3], [1, 1, 0]);
}

/// CLIENT PAUSE WRITE (and a failover, which pauses writes the same way)
/// holds admissions back until it ends: a replica must never miss one.
/// The waiter's turn comes `turn_ms` after the first call; the pause
/// (1.5 s) starts before it, and the admission must come after the
/// pause's end, by the server's clock. A machine so slow that the turn
/// came before the pause began makes that round inconclusive.
#[test]
fn client_pause_holds_admissions_back_until_it_ends() {
    let s = Server::start_with(AOF);
    let mut c = s.connect();
    for (n, turn_ms) in [300u64, 1000, 3000].into_iter().enumerate() {
        let key = format!("p{n}");
        let window = format!("{}", turn_ms as f64 / 1000.0);
        let limit = ["RL.SLIDING", &key, "1", &window];
        let (f0, r, _) = bracketed(&mut c, &limit);
        assert_eq!(r[0], 1);
        let w = waiting(&s, &["RL.SLIDING", &key, "1", &window, "BLOCK", "10000"]);
        until_waiters(&mut c, 1);
        let (p0, _, p1) = bracketed_ok(&mut c, &["CLIENT", "PAUSE", "1500", "WRITE"]);
        let r = w.join().unwrap().unwrap();
        assert_eq!(r[0], 1, "{r:?}");
        let at = *admissions(&s.dir, &key).last().unwrap() * 1000;
        // The turn is no earlier than f0 + turn_ms (timers never fire
        // early): a pause begun by p1 before it covers it.
        if p1 >= f0 + turn_ms * MS {
            eprintln!("the pause began after the turn ({turn_ms} ms): again");
            continue;
        }
        // The server sets the pause's end on its millisecond clock: from
        // p0 cut down to its millisecond, at the earliest.
        let end = p0 / MS * MS + 1500 * MS;
        assert!(
            at >= end,
            "admitted at {at} ns, the pause (from {p0}) lasts until {end} ns at least"
        );
        return;
    }
    panic!("the pause began after the turn three times");
}

/// `args` (a reply of OK) between two TIMEs in one pipeline.
fn bracketed_ok(c: &mut redis::Connection, args: &[&str]) -> (u64, (), u64) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let (t0, (), t1): ((u64, u64), (), (u64, u64)) = redis::pipe()
        .cmd("TIME")
        .add_command(cmd)
        .cmd("TIME")
        .query(c)
        .unwrap();
    let ns = |(s, us): (u64, u64)| s * SEC + us * 1000;
    (ns(t0), (), ns(t1) + 999)
}

/// A standalone failover (FAILOVER: writes paused until the replica has
/// everything, then the roles swap) and a REPLICAOF: the waiters on the
/// old master end with an error and take nothing; the new master holds
/// exactly what was admitted, and serves a line of its own.
#[test]
fn failover_and_replicaof_end_the_waits_and_take_nothing() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    assert_eq!(ints(&mut m, &HOUR).unwrap()[0], 1);
    let a = waiting(&master, &HOUR_WAIT);
    until_waiters(&mut m, 1);
    let b = waiting(&master, &HOUR_WAIT);
    until_waiters(&mut m, 2);
    wait_replicas(&mut m, 1);
    let state = (
        bytes(&mut m, &["DUMP", "k"]),
        int(&mut m, &["PEXPIRETIME", "k"]),
    );
    ok(&mut m, &["FAILOVER"]);
    for w in [a, b] {
        let e = w.join().unwrap().unwrap_err();
        assert!(
            e.starts_with("UNBLOCKED") || e.contains("closed") || e.contains("reset"),
            "{e}"
        );
    }
    let mut r = replica.connect();
    assert!(
        wait_until(20, || {
            let role: Vec<Value> = redis::cmd("ROLE").query(&mut r).unwrap();
            matches!(role.first(), Some(Value::BulkString(b)) if b == b"master")
        }),
        "the replica did not become master"
    );
    let mut old = master.connect();
    assert_eq!(field(&mut old, "waiters"), 0);
    assert_eq!(field(&mut old, "waits_admitted"), 0);
    assert_eq!(
        (
            bytes(&mut r, &["DUMP", "k"]),
            int(&mut r, &["PEXPIRETIME", "k"])
        ),
        state,
        "the new master's key"
    );
    // The new master has a line of its own; a REPLICAOF ends it too.
    let w = waiting(&replica, &HOUR_WAIT);
    until_waiters(&mut r, 1);
    let other = Server::start();
    ok(&mut r, &["REPLICAOF", "127.0.0.1", &other.port.to_string()]);
    let e = w.join().unwrap().unwrap_err();
    assert!(
        e.starts_with("UNBLOCKED") || e.contains("closed") || e.contains("reset"),
        "{e}"
    );
    let mut r = replica.connect();
    assert_eq!(field(&mut r, "waiters"), 0);
    assert_eq!(field(&mut r, "waits_admitted"), 0);
}

/// A waiter that joined before the server ran out of memory is still
/// admitted at its turn: the module's timer is not a command, so Redis
/// does not refuse it (the write is a few bytes); calls meanwhile get OOM.
#[test]
fn a_waiter_from_before_maxmemory_is_admitted_at_its_turn() {
    let s = Server::start_with(&["--maxmemory-policy", "noeviction"]);
    let mut c = s.connect();
    assert_eq!(ints(&mut c, &HOUR).unwrap()[0], 1);
    let w = waiting(&s, &HOUR_WAIT);
    until_waiters(&mut c, 1);
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
    let oom = "OOM command not allowed when used memory > 'maxmemory'.";
    assert_eq!(
        err(&mut c, &["RL.SLIDING", "k", "1", "3600", "REFUND"]),
        oom
    );
    assert_eq!(err(&mut c, &["RL.SLIDING", "other", "1", "3600"]), oom);
    // FLUSHALL frees memory, and is allowed: the line is served at once,
    // though memory is still past the limit.
    ok(&mut c, &["FLUSHALL"]);
    assert_eq!(w.join().unwrap().unwrap()[..3], [1, 1, 0]);
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 1);
    assert_eq!(err(&mut c, &HOUR), oom);
}

/// RL.ALL with a CONCURRENCY clause and BLOCK waits for a slot and the
/// rate together; RL.TAKE of a CONCURRENCY policy waits for a slot. A
/// release admits the first in line at once, with a lease of its own.
#[test]
fn waiting_for_a_slot_with_rl_all_and_a_concurrency_policy() {
    let s = Server::start();
    let mut c = s.connect();
    ok(
        &mut c,
        &["RL.POLICY", "SET", "llm", "CONCURRENCY", "1", "300"],
    );
    let all = [
        "RL.ALL",
        "LIMIT",
        "{u}:rate",
        "SLIDING",
        "10",
        "3600",
        "LIMIT",
        "{u}:slot",
        "CONCURRENCY",
        "1",
        "300",
    ];
    let first = ints(&mut c, &all).unwrap();
    assert_eq!((first[0], first.len()), (1, 7), "{first:?}");
    let mut blocked = all.to_vec();
    blocked.extend(["BLOCK", "0"]);
    let w = waiting(&s, &blocked);
    until_waiters(&mut c, 1);
    // Waiting took nothing: one unit of the rate, one lease.
    let peek = ["RL.SLIDING", "{u}:rate", "10", "3600", "COST", "0"];
    assert_eq!(ints(&mut c, &peek).unwrap()[2], 9);
    assert_eq!(
        int(&mut c, &["RL.RELEASE", "{u}:slot", &first[6].to_string()]),
        1
    );
    let r = w.join().unwrap().unwrap();
    assert_eq!((r[0], r[5], r.len()), (1, 2, 7), "{r:?}");
    assert!(r[6] > first[6], "{r:?}");
    assert_eq!(ints(&mut c, &peek).unwrap()[2], 8);
    assert_eq!(
        int(&mut c, &["RL.RELEASE", "{u}:slot", &r[6].to_string()]),
        1,
        "the lease answered is live"
    );

    let held = ints(&mut c, &["RL.TAKE", "job", "llm"]).unwrap();
    assert_eq!((held[0], held.len()), (1, 6), "{held:?}");
    let w = waiting(&s, &["RL.TAKE", "job", "llm", "BLOCK", "0"]);
    until_waiters(&mut c, 1);
    assert_eq!(int(&mut c, &["RL.RELEASE", "job", &held[5].to_string()]), 1);
    let r = w.join().unwrap().unwrap();
    assert_eq!((r[0], r.len()), (1, 6), "{r:?}");
    assert!(r[5] > held[5]);
    assert_eq!(int(&mut c, &["RL.RELEASE", "job", &r[5].to_string()]), 1);
    let counts: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
    assert!(
        counts.contains("ratelimit_policy_llm:calls=2,allowed=2,denied=0"),
        "{counts}"
    );
}

// ---------------------------------------------------------------- policies

/// A waiter keeps the policy it came with (its parameters as of the call):
/// redefined, deleted, even replaced by another algorithm under the same
/// name, the waiter is served on those terms; newcomers get the new ones
/// (and wait behind it).
#[test]
fn redefining_or_deleting_a_policy_leaves_its_waiters_on_their_terms() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["RL.POLICY", "SET", "p", "SLIDING", "1", "3600"]);
    assert_eq!(ints(&mut c, &["RL.TAKE", "k", "p"]).unwrap()[0], 1);
    let w = waiting(&s, &["RL.TAKE", "k", "p", "BLOCK", "20000"]);
    until_waiters(&mut c, 1);
    // Raised to 3: a newcomer still waits behind the line.
    ok(&mut c, &["RL.POLICY", "SET", "p", "SLIDING", "3", "3600"]);
    assert_eq!(
        ints(&mut c, &["RL.TAKE", "k", "p"]).unwrap()[..3],
        [0, 3, 0]
    );
    // The unit back: the waiter is served on its own terms (limit 1).
    assert_eq!(
        ints(&mut c, &["RL.TAKE", "k", "p", "REFUND"]).unwrap()[0],
        1
    );
    assert_eq!(w.join().unwrap().unwrap()[..3], [1, 1, 0]);
    // The new limit from now on: two more, then denied.
    for left in [1, 0] {
        assert_eq!(
            ints(&mut c, &["RL.TAKE", "k", "p"]).unwrap()[..3],
            [1, 3, left]
        );
    }
    assert_eq!(ints(&mut c, &["RL.TAKE", "k", "p"]).unwrap()[0], 0);

    // Deleted, then its name given to another algorithm.
    ok(&mut c, &["RL.POLICY", "SET", "q", "SLIDING", "1", "3600"]);
    assert_eq!(ints(&mut c, &["RL.TAKE", "k2", "q"]).unwrap()[0], 1);
    let w = waiting(&s, &["RL.TAKE", "k2", "q", "BLOCK", "20000"]);
    until_waiters(&mut c, 1);
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "q"]), 1);
    assert_eq!(
        err(&mut c, &["RL.TAKE", "k2", "q"]),
        "ERR no such policy 'q': RL.POLICY SET defines it"
    );
    ok(&mut c, &["RL.POLICY", "SET", "q", "FIXED", "5", "3600"]);
    let state = bytes(&mut c, &["DUMP", "k2"]);
    for blocking in [false, true] {
        let mut take = vec!["RL.TAKE", "k2", "q"];
        if blocking {
            take.extend(["BLOCK", "20000"]);
        }
        assert!(
            err(&mut c, &take).starts_with("WRONGTYPE"),
            "the new algorithm over the old key: {take:?}"
        );
    }
    assert_eq!(bytes(&mut c, &["DUMP", "k2"]), state);
    assert_eq!(field(&mut c, "waiters"), 1);
    // The old waiter, served on the old terms by the algorithm's own refund.
    let refund = ["RL.SLIDING", "k2", "1", "3600", "REFUND"];
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    assert_eq!(w.join().unwrap().unwrap()[..3], [1, 1, 0]);
    let info: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
    assert!(
        info.contains("ratelimit_policy_q:calls=0,allowed=0,denied=0"),
        "the new q counts nothing of the old one's: {info}"
    );
}

/// LOCKOUT with BLOCK: waiting never starts a lock (a wait in line, a
/// wait that times out, a call denied behind waiters); a denial with no
/// one waiting does; a waiter on a locked key is admitted when the lock
/// ends (by the server's clock, from the AOF), not before.
#[test]
fn lockout_with_block_waits_for_the_lock_and_waiting_never_locks() {
    let s = Server::start_with(AOF);
    let mut c = s.connect();
    ok(
        &mut c,
        &["RL.POLICY", "SET", "l", "SLIDING", "1", "1", "LOCKOUT", "2"],
    );
    let take = |key: &str| -> Vec<String> {
        ["RL.TAKE", key, "l"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    for n in 0..3 {
        let key = format!("lk{n}");
        let t: Vec<String> = take(&key);
        let t: Vec<&str> = t.iter().map(String::as_str).collect();
        let mut wait = t.clone();
        wait.extend(["BLOCK", "20000"]);
        let typ = |c: &mut redis::Connection| -> String {
            redis::cmd("TYPE").arg(&key).query(c).unwrap()
        };
        assert_eq!(ints(&mut c, &t).unwrap()[0], 1);
        // In line: no lock, nor for a call denied behind it.
        let w = waiting(&s, &wait);
        until_waiters(&mut c, 1);
        assert_eq!(ints(&mut c, &t).unwrap()[..3], [0, 1, 0]);
        assert_eq!(typ(&mut c), "rl-window");
        let mut refund = t.clone();
        refund.push("REFUND");
        assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
        assert_eq!(w.join().unwrap().unwrap()[0], 1);
        // A wait that times out: no lock.
        let mut short = t.clone();
        short.extend(["BLOCK", "50"]);
        let (_, r, _) = bracketed(&mut c, &short);
        let mut lock = None;
        if r[0] == 0 {
            assert_eq!(typ(&mut c), "rl-window");
            // A denial with no one waiting: the lock, for 2 s from it.
            let (d0, r, d1) = bracketed(&mut c, &t);
            if r[0] == 0 {
                assert_eq!(typ(&mut c), "rl-locked");
                lock = Some((d0, d1));
            }
        }
        let Some((d0, d1)) = lock else {
            eprintln!("the window freed before the lock could start: again");
            continue;
        };
        // On the locked key: waits until the lock ends, then admitted.
        let r = ints(&mut c, &wait).unwrap();
        assert_eq!(r[0], 1, "{r:?}");
        let at = *admissions(&s.dir, &key).last().unwrap() * 1000;
        assert!(
            at >= d0 + 2 * SEC,
            "admitted at {at} ns, the lock (from {d0}..{d1}) ends at {} ns at the earliest",
            d0 + 2 * SEC
        );
        assert_eq!(typ(&mut c), "rl-window", "the lock is over");
        let info: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
        assert!(info.contains(",lockouts=1"), "{info}");
        return;
    }
    panic!("the window freed before the lock could start, three times");
}
