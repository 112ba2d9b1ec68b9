//! Concurrency leases on a real server: RL.ACQUIRE, RL.RELEASE, RL.RENEW
//! and RL.ALL's CONCURRENCY clause. The hammer test reads every lease the
//! server handed out, released, renewed or let expire back from its AOF
//! (each change travels as RL.LEASE with the instant it was decided on the
//! server's clock), so "never more than the limit live" is checked on the
//! server's own record, exactly.
#![cfg(test)]

use std::thread;
use std::time::Duration;

use redis_ratelimit_testkit::*;

const AOF: &[&str] = &[
    "--appendonly",
    "yes",
    "--aof-use-rdb-preamble",
    "no",
    "--appendfsync",
    "no",
];

fn ints(c: &mut redis::Connection, args: &[&str]) -> Result<Vec<i64>, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Vec<i64>>(c).map_err(error_text)
}

/// Every RL.LEASE op on `key` in the AOF: (tag, now ns, id, expires ns).
fn lease_ops(dir: &std::path::Path, key: &str) -> Vec<(u8, u64, u64, u64)> {
    aof_commands(dir)
        .into_iter()
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.LEASE") && a[1] == key.as_bytes())
        .map(|a| {
            let p = &a[2];
            let u = |at: usize| u64::from_le_bytes(p[at..at + 8].try_into().unwrap());
            (p[0], u(1), u(9), u(17))
        })
        .collect()
}

/// Lease intervals [start, end) on the server's clock, from its ops: a
/// release or a renewal at `now` only acts on a lease live at `now`.
fn intervals(ops: &[(u8, u64, u64, u64)]) -> Vec<(u64, u64, u64, bool)> {
    // id -> (start, end, released)
    let mut leases: Vec<(u64, u64, u64, bool)> = Vec::new();
    for &(tag, now, id, expires) in ops {
        match tag {
            b'A' => leases.push((id, now, expires, false)),
            b'R' => {
                let l = leases.iter_mut().find(|l| l.0 == id).unwrap();
                assert!(l.2 > now, "lease {id} released after it ended");
                l.2 = now;
                l.3 = true;
            }
            b'N' => {
                let l = leases.iter_mut().find(|l| l.0 == id).unwrap();
                assert!(l.2 > now, "lease {id} renewed after it ended");
                l.2 = expires;
            }
            other => panic!("op {other}"),
        }
    }
    leases
}

fn max_live(leases: &[(u64, u64, u64, bool)]) -> usize {
    leases
        .iter()
        .map(|&(_, s, ..)| {
            leases
                .iter()
                .filter(|&&(_, a, b, _)| a <= s && s < b)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// `args` between two TIMEs in one pipeline, for a reply that is one
/// integer: (just before, the reply, just after), in Unix ns.
fn bracketed_int(c: &mut redis::Connection, args: &[&str]) -> (u64, i64, u64) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let (t0, r, t1): ((u64, u64), i64, (u64, u64)) = redis::pipe()
        .cmd("TIME")
        .add_command(cmd)
        .cmd("TIME")
        .query(c)
        .unwrap();
    let ns = |(s, us): (u64, u64)| s * SEC + us * 1000;
    (ns(t0), r, ns(t1) + 999)
}

/// A renewal or release a worker made: (op tag as in the AOF, lease id,
/// server instant just before, the reply, just after).
type Made = (u8, u64, u64, i64, u64);

/// The most leases live at once at any instant of `[a, b]`.
fn most_live(leases: &[(u64, u64, u64, bool)], a: u64, b: u64) -> usize {
    let live = |s: u64| {
        leases
            .iter()
            .filter(|&&(_, st, end, _)| st <= s && s < end)
            .count()
    };
    leases
        .iter()
        .map(|l| l.1)
        .filter(|&st| a <= st && st <= b)
        .chain([a])
        .map(live)
        .max()
        .unwrap_or(0)
}

/// One run of the hammer: sixteen workers take one of three slots (BLOCK),
/// hold it a while, and release it, renew it first, or crash (never
/// release). Everything is checked on the server's record: the AOF's
/// RL.LEASE ops, the instants each renewal and release was decided
/// between, and the probe's looks at the line. `Err` when the looks
/// covered too little of the run to judge.
fn hammer(seed: u64) -> Result<(), String> {
    let s = Server::start_with(AOF);
    let probe = Probe::start(&s, false);
    let start = server_now_ns(&mut s.connect());
    let stop = std::time::Instant::now() + Duration::from_secs(8);
    let handles: Vec<_> = (0..16u64)
        .map(|w| {
            let port = s.port;
            thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (w + 1));
                let mut c = connect_to(port);
                let (mut taken, mut crashed, mut made) = (0, 0, Vec::<Made>::new());
                while std::time::Instant::now() < stop {
                    let r = ints(
                        &mut c,
                        &["RL.ACQUIRE", "slots", "3", "0.4", "BLOCK", "1000"],
                    )
                    .unwrap();
                    if r[0] == 0 {
                        continue;
                    }
                    taken += 1;
                    thread::sleep(Duration::from_millis(rng.below(150)));
                    if rng.one_in(8) {
                        // A crash: the lease is never released.
                        crashed += 1;
                        c = connect_to(port);
                        continue;
                    }
                    let id = r[5].to_string();
                    if rng.one_in(4) {
                        let (t0, renewed, t1) =
                            bracketed_int(&mut c, &["RL.RENEW", "slots", &id, "0.3"]);
                        made.push((b'N', r[5] as u64, t0, renewed, t1));
                    }
                    let (t0, released, t1) = bracketed_int(&mut c, &["RL.RELEASE", "slots", &id]);
                    made.push((b'R', r[5] as u64, t0, released, t1));
                }
                (taken, crashed, made)
            })
        })
        .collect();
    let results: Vec<(u32, u32, Vec<Made>)> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    let looks = probe.stop();
    let taken: u32 = results.iter().map(|r| r.0).sum();
    let crashed: u32 = results.iter().map(|r| r.1).sum();
    let mut c = s.connect();
    let end = server_now_ns(&mut c);
    ok(&mut c, &["CONFIG", "SET", "appendfsync", "always"]);
    call(&mut c, &["PING"]).unwrap();
    let ops = lease_ops(&s.dir, "slots");
    let leases = intervals(&ops);
    assert_eq!(leases.len() as u32, taken, "replies and AOF disagree");
    assert!(crashed > 0, "no crash happened (seed {seed})");
    assert_eq!(
        max_live(&leases),
        3,
        "seed {seed}: more than 3 leases live at once"
    );
    // Every renewal and release answered what it did: 1 for an op decided
    // between its TIMEs, 0 for a lease already over by then.
    for &(tag, id, t0, reply, t1) in results.iter().flat_map(|r| &r.2) {
        let did = ops
            .iter()
            .any(|&(t, now, i, _)| t == tag && i == id && (t0..=t1).contains(&now));
        let lease = leases.iter().find(|l| l.0 == id).unwrap();
        match reply {
            1 => assert!(
                did,
                "seed {seed}: {} of lease {id} answered 1, did nothing",
                tag as char
            ),
            0 => assert!(
                !did && lease.2 <= t1,
                "seed {seed}: {} of lease {id} answered 0, the lease live until {} (asked by {t1})",
                tag as char,
                lease.2
            ),
            other => panic!("{} answered {other}", tag as char),
        }
    }
    // Every slot comes back for whoever waits: a round of the server's
    // event loop that ran while someone waited, with a slot free for
    // longer than a timer's slack (an expiry, a release), is a slot left
    // idle. A stall only removes rounds.
    for (a, b) in waiting_rounds(&looks) {
        assert!(
            most_live(&leases, a - TIMER_SLACK_NS, b) == 3,
            "seed {seed}: someone waited at {a} ns, a slot was free from {} ns until the \
             server had run its timers ({b} ns)",
            a - TIMER_SLACK_NS
        );
    }
    let expired = leases.iter().filter(|l| !l.3 && l.2 < end).count();
    assert!(expired > 0, "no lease expired (seed {seed})");
    let covered = covered(&looks, start, end, TIMER_SLACK_NS);
    println!(
        "{taken} leases, {crashed} crashed, {expired} ended by expiry; the looks covered {:.0}% \
         of the run",
        covered * 100.0
    );
    if covered < 0.5 {
        return Err(format!(
            "the looks covered {:.0}% of the run",
            covered * 100.0
        ));
    }
    Ok(())
}

#[test]
fn sixteen_workers_never_hold_more_than_three_and_every_slot_comes_back() {
    let seed = Rng::seed_from_env("RL_LEASE_SEED");
    println!("RL_LEASE_SEED={seed}");
    for n in 1..=3 {
        match hammer(seed) {
            Ok(()) => return,
            Err(e) => eprintln!("attempt {n}: {e}"),
        }
    }
    panic!("three runs in a row proved too little");
}

#[test]
fn rl_all_takes_a_slot_and_quota_together_or_neither() {
    let s = Server::start();
    let mut c = s.connect();
    let all = [
        "RL.ALL",
        "LIMIT",
        "{u}:rate",
        "SLIDING",
        "2",
        "60",
        "LIMIT",
        "{u}:slots",
        "CONCURRENCY",
        "1",
        "30",
    ];
    let (t0, r, t1) = bracketed(&mut c, &all);
    assert_eq!(r.len(), 7);
    assert_eq!((r[0], r[5]), (1, 2));
    let lease = r[6];
    assert!(lease > 0);
    // Each key expires exactly when its state is fresh again, from the
    // decision's instant (between t0 and t1): the lease's end 30 s on,
    // the window's 60 s on.
    for (key, secs) in [("{u}:slots", 30), ("{u}:rate", 60)] {
        let at = int(&mut c, &["PEXPIRETIME", key]) as u64;
        let (lo, hi) = (
            (t0 + secs * SEC).div_ceil(MS),
            (t1 + secs * SEC).div_ceil(MS),
        );
        assert!(
            (lo..=hi).contains(&at),
            "{key} expires at {at}, not in [{lo}, {hi}]"
        );
    }
    // No slot: refused, and the rate quota is not spent.
    let r = ints(&mut c, &all).unwrap();
    assert_eq!((r[0], r[5], r[6]), (0, 2, 0));
    assert_eq!(
        ints(&mut c, &["RL.SLIDING", "{u}:rate", "2", "60", "COST", "0"]).unwrap()[2],
        1
    );
    // The slot back, the quota used up elsewhere: refused, no slot taken.
    assert_eq!(
        int(&mut c, &["RL.RELEASE", "{u}:slots", &lease.to_string()]),
        1
    );
    assert_eq!(
        int(&mut c, &["EXISTS", "{u}:slots"]),
        0,
        "the last lease gone, the key goes"
    );
    assert_eq!(
        ints(&mut c, &["RL.SLIDING", "{u}:rate", "2", "60"]).unwrap()[0],
        1
    );
    let r = ints(&mut c, &all).unwrap();
    assert_eq!((r[0], r[5], r[6]), (0, 1, 0));
    assert_eq!(
        int(&mut c, &["EXISTS", "{u}:slots"]),
        0,
        "a refused request took a slot"
    );
    // Without a CONCURRENCY clause the reply keeps six integers.
    let r = ints(&mut c, &["RL.ALL", "LIMIT", "{u}:x", "GCRA", "1", "1", "1"]).unwrap();
    assert_eq!(r.len(), 6);
}

#[test]
fn replies_expiry_and_errors() {
    let s = Server::start();
    let mut c = s.connect();
    // Between the server's TIME just before and just after (one pipeline).
    let (t0, a, t1) = bracketed(&mut c, &["RL.ACQUIRE", "l", "2", "10"]);
    assert_eq!(a[..5], [1, 2, 1, 0, 10_000]);
    let b = ints(&mut c, &["RL.ACQUIRE", "l", "2", "5.5"]).unwrap();
    assert_eq!(b[..3], [1, 2, 0]);
    assert!(b[5] > a[5], "ids grow");
    let d = ints(&mut c, &["RL.ACQUIRE", "l", "2", "10"]).unwrap();
    assert_eq!((d[0], d[2], d[5]), (0, 0, 0));
    assert!(
        d[3] > 5_400 && d[3] <= 5_500,
        "retry_after: the earliest end {d:?}"
    );
    assert!(
        d[4] > 9_900 && d[4] <= 10_000,
        "reset_after: the last end {d:?}"
    );
    // The key's expiry is the last lease's end, exactly: the first
    // lease's 10 s from its decision, which lies between t0 and t1.
    let pexpiretime = int(&mut c, &["PEXPIRETIME", "l"]) as u64;
    let (earliest, latest) = ((t0 + 10 * SEC).div_ceil(MS), (t1 + 10 * SEC).div_ceil(MS));
    assert!(
        (earliest..=latest).contains(&pexpiretime),
        "expires at {pexpiretime} ms, not in [{earliest}, {latest}]"
    );
    // A dry run takes nothing and answers lease id 0.
    assert_eq!(
        ints(&mut c, &["RL.ACQUIRE", "x", "1", "1", "DRYRUN"]).unwrap(),
        [1, 1, 0, 0, 1000, 0]
    );
    assert_eq!(int(&mut c, &["EXISTS", "x"]), 0);
    // Renewing moves the end; unknown ids answer 0, never an error.
    let id = b[5].to_string();
    assert_eq!(int(&mut c, &["RL.RENEW", "l", &id, "20"]), 1);
    assert!(int(&mut c, &["PTTL", "l"]) > 19_000);
    assert_eq!(int(&mut c, &["RL.RENEW", "l", "12345", "20"]), 0);
    assert_eq!(int(&mut c, &["RL.RELEASE", "l", "12345"]), 0);
    assert_eq!(int(&mut c, &["RL.RELEASE", "nokey", "1"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "nokey"]), 0);
    // A short lease frees its slot by itself.
    let short = ints(&mut c, &["RL.ACQUIRE", "s", "1", "0.05"]).unwrap();
    assert_eq!(short[0], 1);
    thread::sleep(Duration::from_millis(80));
    assert_eq!(int(&mut c, &["EXISTS", "s"]), 0);
    assert_eq!(
        ints(&mut c, &["RL.ACQUIRE", "s", "1", "0.05"]).unwrap()[0],
        1
    );
    assert_eq!(int(&mut c, &["RL.RELEASE", "s", &short[5].to_string()]), 0);
    // Bad input: the argument named, nothing written.
    let before = dirty(&mut c);
    for (args, e) in [
        (&["RL.ACQUIRE", "e", "0", "1"][..], "ERR limit must be an integer between 1 and 9223372036854775807"),
        (&["RL.ACQUIRE", "e", "1", "0"], "ERR lease_seconds must be a positive number of seconds with at most 9 decimals, at most 10 years"),
        (&["RL.ACQUIRE", "e", "1", "0.0000000001"], "ERR lease_seconds must be a positive number of seconds with at most 9 decimals, at most 10 years"),
        (&["RL.ACQUIRE", "e", "1", "1", "COST", "2"], "ERR a CONCURRENCY limit takes no COST and no REFUND: RL.RELEASE gives a slot back"),
        (&["RL.ACQUIRE", "e", "1", "1", "REFUND"], "ERR a CONCURRENCY limit takes no COST and no REFUND: RL.RELEASE gives a slot back"),
        (&["RL.RELEASE", "e", "-1"], "ERR lease_id must be an integer between 1 and 9223372036854775807"),
        (&["RL.RENEW", "e", "1", "x"], "ERR lease_seconds must be a positive number of seconds with at most 9 decimals, at most 10 years"),
        (&["RL.ALL", "LIMIT", "a", "CONCURRENCY", "1", "1", "LIMIT", "b", "CONCURRENCY", "1", "1"], "ERR RL.ALL takes at most one CONCURRENCY limit"),
        (&["RL.ALL", "LIMIT", "a", "CONCURRENCY", "1", "1", "COST", "2"], "ERR a CONCURRENCY limit takes no COST and no REFUND: RL.RELEASE gives a slot back"),
        (&["RL.SLIDING", "l", "1", "1"], "WRONGTYPE Operation against a key holding the wrong kind of value"),
    ] {
        assert_eq!(err(&mut c, args), e, "{args:?}");
    }
    assert_eq!(dirty(&mut c), before);
    ok(&mut c, &["SET", "str", "x"]);
    assert!(err(&mut c, &["RL.RELEASE", "str", "1"]).starts_with("WRONGTYPE"));
}

#[test]
fn waiting_for_a_slot_is_served_in_order_when_one_frees() {
    let s = Server::start();
    let mut c = s.connect();
    let id = ints(&mut c, &["RL.ACQUIRE", "q", "1", "30"]).unwrap()[5];
    let mut handles = Vec::new();
    for i in 0..4 {
        let mut w = s.connect();
        handles.push(thread::spawn(move || {
            let r = ints(&mut w, &["RL.ACQUIRE", "q", "1", "30", "BLOCK", "10000"]).unwrap();
            // Hand the slot on.
            let _: i64 = redis::cmd("RL.RELEASE")
                .arg("q")
                .arg(r[5])
                .query(&mut w)
                .unwrap();
            (i, r[5])
        }));
        // In line one after the other.
        let n = i + 1;
        assert!(wait_until(10, || info_int(
            &mut c,
            "ratelimit",
            "ratelimit_waiters"
        ) == n));
    }
    assert_eq!(int(&mut c, &["RL.RELEASE", "q", &id.to_string()]), 1);
    let mut served: Vec<(i64, i64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    served.sort_by_key(|&(_, lease)| lease);
    assert_eq!(
        served.iter().map(|s| s.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "not in order: {served:?}"
    );
}

#[test]
fn leases_replicate_and_persist_byte_identical_and_memory_is_per_live_lease() {
    let master = Server::start_with(&[
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ]);
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(ints(&mut m, &["RL.ACQUIRE", "{r}:l", "10", "300"]).unwrap()[5]);
    }
    assert_eq!(
        int(&mut m, &["RL.RELEASE", "{r}:l", &ids[1].to_string()]),
        1
    );
    assert_eq!(
        int(&mut m, &["RL.RENEW", "{r}:l", &ids[2].to_string(), "600"]),
        1
    );
    ints(
        &mut m,
        &[
            "RL.ALL",
            "LIMIT",
            "{r}:rate",
            "GCRA",
            "5",
            "1",
            "600",
            "LIMIT",
            "{r}:c",
            "CONCURRENCY",
            "2",
            "100",
        ],
    )
    .unwrap();
    wait_replicas(&mut m, 1);
    let before = state_of(&mut m);
    assert_eq!(before, state_of(&mut r), "replica differs");
    ok(&mut m, &["DEBUG", "RELOAD"]);
    assert_eq!(before, state_of(&mut m), "RDB reload differs");
    let master = master.restart(false);
    let mut m = master.connect();
    assert_eq!(before, state_of(&mut m), "AOF replay differs");
    call(&mut m, &["BGREWRITEAOF"]).unwrap();
    assert!(wait_until(20, || {
        let info: String = redis::cmd("INFO").arg("persistence").query(&mut m).unwrap();
        info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0")
    }));
    let master = master.restart(false);
    let mut m = master.connect();
    assert_eq!(before, state_of(&mut m), "rewritten AOF differs");
    // Memory per key: grows with live leases only.
    let usage = |m: &mut redis::Connection, n: usize| -> i64 {
        let key = format!("mem{n}");
        for _ in 0..n {
            ints(m, &["RL.ACQUIRE", &key, "10000", "600"]).unwrap();
        }
        int(m, &["MEMORY", "USAGE", &key])
    };
    let (one, ten, thousand) = (usage(&mut m, 1), usage(&mut m, 10), usage(&mut m, 1000));
    println!("MEMORY USAGE with 1, 10, 1000 live leases: {one} {ten} {thousand} bytes");
    assert!(one < ten && ten < thousand);
    assert!(thousand < 1000 * 40, "{thousand}");
}

/// A promoted replica and a restarted master know every live lease: the
/// one slot stays with its holder (a second RL.ACQUIRE is refused), the
/// holder can release it there, and no id is ever given again, for a live
/// key or for one that was gone and made again.
#[test]
fn a_promoted_replica_or_a_restarted_master_never_gives_a_slot_twice_nor_an_id_again() {
    let master = Server::start_with(&[
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ]);
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let held = ints(&mut m, &["RL.ACQUIRE", "one", "1", "300"]).unwrap()[5];
    let gone = ints(&mut m, &["RL.ACQUIRE", "gone", "1", "300"]).unwrap()[5];
    assert_eq!(int(&mut m, &["RL.RELEASE", "gone", &gone.to_string()]), 1);
    assert_eq!(int(&mut m, &["EXISTS", "gone"]), 0);
    wait_replicas(&mut m, 1);
    let check = |c: &mut redis::Connection, after: i64, role: &str| {
        let r = ints(c, &["RL.ACQUIRE", "one", "1", "300"]).unwrap();
        assert_eq!(r[..3], [0, 1, 0], "{role}: a second holder of the one slot");
        assert_eq!(
            int(c, &["RL.RENEW", "one", &held.to_string(), "300"]),
            1,
            "{role}"
        );
        let again = ints(c, &["RL.ACQUIRE", "gone", "1", "300"]).unwrap()[5];
        assert!(again > after, "{role}: id {again} after {after}");
        assert_eq!(int(c, &["RL.RELEASE", "gone", &again.to_string()]), 1);
        again
    };
    let mut r = replica.connect();
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    let promoted = check(&mut r, gone, "the promoted replica");
    assert_eq!(int(&mut r, &["RL.RELEASE", "one", &held.to_string()]), 1);
    let next = ints(&mut r, &["RL.ACQUIRE", "one", "1", "300"]).unwrap();
    assert!(next[0] == 1 && next[5] > held, "{next:?}");
    // The master, restarted from its AOF and reloaded from an RDB.
    let master = master.restart(false);
    let mut m = master.connect();
    let restarted = check(&mut m, promoted.max(gone), "the restarted master");
    ok(&mut m, &["DEBUG", "RELOAD"]);
    check(&mut m, restarted, "the reloaded master");
}
