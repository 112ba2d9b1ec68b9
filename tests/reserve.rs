//! Reservations on a real server (issue 25): RL.ALL ... ESTIMATE n reserves
//! at admission, RL.SETTLE charges the actual cost, a reservation whose
//! caller died ends with its lease at its estimate; and lease state saved
//! before reservations existed loads with the same state.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// The fixture: an RDB and two DUMPs saved by the module before
/// reservations existed (main at f742a78, Redis 7.0.15): `leases:plain`,
/// three leases of a 5-slot key (about 10 years each, expiring in 2036);
/// `leases:locked`, a lock (until 2035) holding two leases (forged: no
/// command makes one, RESTORE took it).
const PLAIN_IDS: [u64; 3] = [
    1_796_660_902_872_485_524,
    1_796_660_902_877_179_998,
    1_796_660_902_880_964_697,
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures").join(name)).expect("fixture")
}

/// What a lease key holds, seen through commands that change nothing.
fn live_leases(c: &mut redis::Connection, key: &str, ids: &[u64]) -> Vec<i64> {
    ids.iter()
        .map(|id| int(c, &["RL.RENEW", key, &id.to_string(), "315000000"]))
        .collect()
}

#[test]
fn lease_state_saved_before_reservations_loads_with_the_same_state() {
    let dir = temp_dir();
    std::fs::write(dir.join("dump.rdb"), fixture("leases-v1.rdb")).unwrap();
    let s = Server::start_in(dir, &[]);
    let mut c = s.connect();
    assert_eq!(int(&mut c, &["DBSIZE"]), 2);
    // The RDB's keys and the same keys RESTOREd from the old DUMPs hold
    // the same state: they DUMP the same.
    for (key, dump) in [
        ("leases:plain", "leases-v1-plain.dump"),
        ("leases:locked", "leases-v1-locked.dump"),
    ] {
        let copy = format!("{key}:restored");
        dump::restore(&mut c, &copy, 0, &fixture(dump)).unwrap();
        let a = bytes(&mut c, &["DUMP", key]).unwrap();
        let b = bytes(&mut c, &["DUMP", &copy]).unwrap();
        assert_eq!(a, b, "{key}");
        // The value's bytes are the old ones; only the type's encoding
        // version (the module id's low 10 bits) went from 1 to 2.
        let (new, old) = (dump::Dump::parse(&a), dump::Dump::parse(&fixture(dump)));
        assert_eq!(new.body, old.body, "{key}");
        assert_eq!((old.module_id & 1023, new.module_id & 1023), (1, 2));
        assert_eq!(old.module_id >> 10, new.module_id >> 10);
    }
    assert!(int(&mut c, &["PEXPIRETIME", "leases:plain"]) > 2_000_000_000_000);
    // Three leases live, each known by its id; two slots free.
    let r = ints_on(&mut c, &["RL.ACQUIRE", "leases:plain", "5", "10", "DRYRUN"]);
    assert_eq!(&r[..3], &[1, 5, 1], "{r:?}");
    assert_eq!(live_leases(&mut c, "leases:plain", &PLAIN_IDS), [1, 1, 1]);
    assert_eq!(
        int(
            &mut c,
            &["RL.RELEASE", "leases:plain", &PLAIN_IDS[0].to_string()]
        ),
        1
    );
    assert_eq!(
        int(
            &mut c,
            &["RL.RELEASE", "leases:plain", &PLAIN_IDS[0].to_string()]
        ),
        0
    );
    // The lock still denies; DEBUG RELOAD (written by the new code) keeps
    // everything.
    let r = ints_on(&mut c, &["RL.ACQUIRE", "leases:locked", "5", "10"]);
    assert_eq!(r[0], 0, "{r:?}");
    let before = dump_all(&mut c);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    assert_eq!(dump_all(&mut c), before);
}

const SEC: u64 = 1_000_000_000;

fn id_of(reply: &[i64]) -> String {
    reply.last().expect("a lease id").to_string()
}

/// docs/COMMANDS.md's worked example: 100 units a minute, 10 reserved at
/// 0 s, settled at 1 s at 150 (50 beyond the limit); then a request of
/// one unit at 1 s on each algorithm, and the debt paid back by time.
#[test]
fn the_worked_example_of_debt_end_to_end() {
    let s = Server::start();
    let mut c = s.connect();
    // A whole minute, so the fixed window starts at 0 s.
    let t0 = (clock_start(&mut c) / (60 * SEC) + 1) * 60 * SEC;
    set_clock(&mut c, t0);
    let r = ints_on(
        &mut c,
        &[
            "RL.ALL",
            "LIMIT",
            "slots",
            "CONCURRENCY",
            "5",
            "30",
            "LIMIT",
            "tb",
            "TOKENBUCKET",
            "100",
            "100",
            "PERIOD",
            "60",
            "ESTIMATE",
            "10",
            "LIMIT",
            "gc",
            "GCRA",
            "100",
            "100",
            "60",
            "ESTIMATE",
            "10",
            "LIMIT",
            "sw",
            "SLIDING",
            "100",
            "60",
            "ESTIMATE",
            "10",
            "LIMIT",
            "fx",
            "FIXED",
            "100",
            "60",
            "ESTIMATE",
            "10",
        ],
    );
    assert_eq!(&r[..6], &[1, 5, 4, 0, 30000, 1], "{r:?}");
    let id = id_of(&r);
    set_clock(&mut c, t0 + SEC);
    let settled = ints_on(
        &mut c,
        &[
            "RL.SETTLE",
            "slots",
            "fx",
            "sw",
            "gc",
            "tb",
            "LEASE",
            &id,
            "ACTUAL",
            "150",
        ],
    );
    // The binding limit: the longest wait, the sliding window's (60 s; the
    // fixed window's 59 s and the bucket's 29.6 s come sooner), second of
    // the keys as RL.SETTLE named them.
    assert_eq!(settled, [1, 100, 0, 60000, 60000, 2], "{settled:?}");
    let one = |c: &mut redis::Connection, cmd: &[&str]| rl(c, cmd);
    assert_eq!(
        one(
            &mut c,
            &["RL.TOKENBUCKET", "tb", "100", "100", "1", "PERIOD", "60"]
        ),
        [0, 100, 0, 29600, 89000]
    );
    assert_eq!(
        one(&mut c, &["RL.GCRA", "gc", "100", "100", "60"]),
        [0, 100, 0, 29600, 89000]
    );
    assert_eq!(
        one(&mut c, &["RL.SLIDING", "sw", "100", "60"]),
        [0, 100, 0, 60000, 60000]
    );
    assert_eq!(
        one(&mut c, &["RL.FIXED", "fx", "100", "60"]),
        [0, 100, 0, 59000, 59000]
    );
    // The slot is free again: 5 of 5.
    let free = ints_on(&mut c, &["RL.ACQUIRE", "slots", "5", "30", "DRYRUN"]);
    assert_eq!(&free[..3], &[1, 5, 4], "{free:?}");
    // Paid back by time, exactly when the retries said.
    set_clock(&mut c, t0 + SEC + 29_600_000_000 - 1_000_000);
    assert_eq!(
        one(
            &mut c,
            &["RL.TOKENBUCKET", "tb", "100", "100", "1", "PERIOD", "60"]
        )[0],
        0
    );
    set_clock(&mut c, t0 + SEC + 29_600_000_000);
    assert_eq!(
        one(
            &mut c,
            &["RL.TOKENBUCKET", "tb", "100", "100", "1", "PERIOD", "60"]
        ),
        [1, 100, 0, 0, 60000]
    );
    set_clock(&mut c, t0 + 60 * SEC);
    assert_eq!(
        one(&mut c, &["RL.FIXED", "fx", "100", "60"]),
        [1, 100, 99, 0, 60000]
    );
    assert_eq!(
        one(&mut c, &["RL.SLIDING", "sw", "100", "60"])[..2],
        [0, 100]
    );
    set_clock(&mut c, t0 + 61 * SEC);
    assert_eq!(
        one(&mut c, &["RL.SLIDING", "sw", "100", "60"]),
        [1, 100, 99, 0, 60000]
    );
}

/// Less than the estimate: what was not used comes back (the state is
/// as if the actual cost had been charged).
#[test]
fn settling_below_the_estimate_gives_back_the_difference() {
    let s = Server::start();
    let mut c = s.connect();
    let t0 = (clock_start(&mut c) / (60 * SEC) + 1) * 60 * SEC;
    set_clock(&mut c, t0);
    let r = ints_on(
        &mut c,
        &[
            "RL.ALL",
            "LIMIT",
            "slots",
            "CONCURRENCY",
            "5",
            "30",
            "LIMIT",
            "tb",
            "TOKENBUCKET",
            "100",
            "100",
            "PERIOD",
            "60",
            "ESTIMATE",
            "50",
            "LIMIT",
            "sw",
            "SLIDING",
            "100",
            "60",
            "ESTIMATE",
            "50",
            "LIMIT",
            "fx",
            "FIXED",
            "100",
            "60",
            "ESTIMATE",
            "50",
        ],
    );
    assert_eq!(r[0], 1, "{r:?}");
    set_clock(&mut c, t0 + SEC);
    let settled = ints_on(
        &mut c,
        &[
            "RL.SETTLE",
            "slots",
            "tb",
            "sw",
            "fx",
            "LEASE",
            &id_of(&r),
            "ACTUAL",
            "5",
        ],
    );
    assert_eq!(&settled[..3], &[1, 100, 94], "{settled:?}");
    let peek = |c: &mut redis::Connection, cmd: &[&str]| rl(c, cmd)[2];
    // 5 taken at 0 s: the bucket has refilled 1 of them (0.6 s each); a
    // dry run of one more leaves 95.
    assert_eq!(
        peek(
            &mut c,
            &[
                "RL.TOKENBUCKET",
                "tb",
                "100",
                "100",
                "1",
                "PERIOD",
                "60",
                "DRYRUN"
            ]
        ),
        95
    );
    assert_eq!(
        peek(&mut c, &["RL.SLIDING", "sw", "100", "60", "DRYRUN"]),
        94
    );
    assert_eq!(peek(&mut c, &["RL.FIXED", "fx", "100", "60", "DRYRUN"]), 94);
}

/// Settled twice, an unknown handle, after expiry, after RL.RELEASE: 0,
/// and nothing is written (no key, no dirty count, no AOF entry).
#[test]
fn settling_what_is_not_live_answers_0_and_changes_nothing() {
    let s = Server::start_with(AOF_COMMANDS);
    let mut c = s.connect();
    let t0 = clock_start(&mut c);
    set_clock(&mut c, t0);
    let reserve = |c: &mut redis::Connection| {
        ints_on(
            c,
            &[
                "RL.ALL",
                "LIMIT",
                "slots",
                "CONCURRENCY",
                "5",
                "10",
                "LIMIT",
                "tb",
                "TOKENBUCKET",
                "100",
                "1",
                "ESTIMATE",
                "20",
            ],
        )
    };
    let settle = |c: &mut redis::Connection, id: &str, actual: &str| {
        ints_on(
            c,
            &["RL.SETTLE", "slots", "tb", "LEASE", id, "ACTUAL", actual],
        )
    };
    let a = id_of(&reserve(&mut c));
    assert_eq!(settle(&mut c, &a, "30")[0], 1);
    let unchanged = |c: &mut redis::Connection, f: &dyn Fn(&mut redis::Connection)| {
        let (before, d) = (dump_all(c), dirty(c));
        f(c);
        assert_eq!((dump_all(c), dirty(c)), (before, d));
    };
    // Twice, unknown.
    unchanged(&mut c, &|c| assert_eq!(settle(c, &a, "1000"), [0; 6]));
    unchanged(&mut c, &|c| assert_eq!(settle(c, "12345", "0"), [0; 6]));
    // Released: settled at its estimate, once.
    let b = id_of(&reserve(&mut c));
    assert_eq!(int(&mut c, &["RL.RELEASE", "slots", &b]), 1);
    unchanged(&mut c, &|c| assert_eq!(settle(c, &b, "0"), [0; 6]));
    // Expired (the caller died): the estimate stays charged.
    let e = id_of(&reserve(&mut c));
    let before = rl(&mut c, &["RL.TOKENBUCKET", "tb", "100", "1", "0"]);
    set_clock(&mut c, t0 + 10 * SEC);
    unchanged(&mut c, &|c| assert_eq!(settle(c, &e, "0"), [0; 6]));
    let after = rl(&mut c, &["RL.TOKENBUCKET", "tb", "100", "1", "0"]);
    assert_eq!(after[2], (before[2] + 10).min(100), "{before:?} {after:?}");
    // Keys other than the reservation's: an error, before any write.
    let f = id_of(&reserve(&mut c));
    for keys in [&["tb", "tb"][..], &["other"], &[], &["tb", "other"]] {
        let mut args = vec!["RL.SETTLE", "slots"];
        args.extend_from_slice(keys);
        args.extend_from_slice(&["LEASE", &f, "ACTUAL", "1"]);
        unchanged(&mut c, &|c| {
            let e = call(c, &args).unwrap_err();
            assert!(
                e.starts_with("ERR the reservation was made on other keys")
                    || (keys.is_empty() && e.starts_with("ERR wrong number")),
                "{keys:?}: {e}"
            );
        });
    }
    assert_eq!(settle(&mut c, &f, "1")[0], 1);
    // Its words: each argument named.
    for (args, want) in [
        (
            &["RL.SETTLE", "slots", "tb", "LEASE", "0", "ACTUAL", "1"][..],
            "ERR lease_id",
        ),
        (
            &["RL.SETTLE", "slots", "tb", "LEASE", "1", "ACTUAL", "-1"],
            "ERR ACTUAL must be",
        ),
        (
            &["RL.SETTLE", "slots", "tb", "LEASES", "1", "ACTUAL", "1"],
            "ERR syntax error",
        ),
        (
            &["RL.SETTLE", "slots", "LEASE", "1", "ACTUAL", "1"],
            "ERR wrong number",
        ),
    ] {
        assert!(
            err(&mut c, args).starts_with(want),
            "{args:?}: {}",
            err(&mut c, args)
        );
    }
    // Nothing of the calls answered 0 or an error reached the AOF.
    let settles = aof_commands(&s.dir)
        .iter()
        .filter(|cmd| cmd[0].eq_ignore_ascii_case(b"RL.LEASE") && cmd[2].first() == Some(&b'R'))
        .count();
    assert_eq!(
        settles, 3,
        "the releases: two settlements and one RL.RELEASE"
    );
}

/// Debt denies every request, DRYRUN included, with a retry that is
/// honest (waiting it gets in), through named policies too (RL.TAKEALL:
/// what an application account sends).
#[test]
fn debt_denies_through_policies_until_time_pays_it_back() {
    let s = Server::start();
    let mut c = s.connect();
    let t0 = (clock_start(&mut c) / (60 * SEC) + 1) * 60 * SEC;
    set_clock(&mut c, t0);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "inflight", "CONCURRENCY", "10", "30"],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "tpm",
            "TOKENBUCKET",
            "1000",
            "1000",
            "PERIOD",
            "60",
        ],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "tpd",
            "FIXED",
            "5000",
            "DAY",
            "TZ",
            "America/New_York",
        ],
    );
    ok(&mut c, &["RL.POLICY", "SET", "rpm", "SLIDING", "100", "60"]);
    let take = |c: &mut redis::Connection, est: &str| {
        ints_on(
            c,
            &[
                "RL.TAKEALL",
                "LIMIT",
                "k:slots",
                "POLICY",
                "inflight",
                "LIMIT",
                "k:tpm",
                "POLICY",
                "tpm",
                "ESTIMATE",
                est,
                "LIMIT",
                "k:tpd",
                "POLICY",
                "tpd",
                "ESTIMATE",
                est,
                "LIMIT",
                "k:rpm",
                "POLICY",
                "rpm",
            ],
        )
    };
    let r = take(&mut c, "0");
    assert_eq!(r[0], 1, "{r:?}");
    // 1500 tokens used: 500 beyond the minute's budget.
    let s1 = ints_on(
        &mut c,
        &[
            "RL.SETTLE",
            "k:slots",
            "k:tpm",
            "k:tpd",
            "LEASE",
            &id_of(&r),
            "ACTUAL",
            "1500",
        ],
    );
    assert_eq!(&s1[..3], &[1, 1000, 0], "{s1:?}");
    let denied = take(&mut c, "0");
    assert_eq!((denied[0], denied[2], denied[5]), (0, 0, 2), "{denied:?}");
    // 500 tokens of debt and one to take: 501 x 60 ms.
    assert_eq!(denied[3], 30_060, "{denied:?}");
    let dry = ints_on(
        &mut c,
        &["RL.TAKEALL", "DRYRUN", "LIMIT", "k:tpm", "POLICY", "tpm"],
    );
    assert_eq!(dry[0], 0, "{dry:?}");
    set_clock(&mut c, t0 + 30_060_000_000 - 1_000_000);
    assert_eq!(take(&mut c, "0")[0], 0);
    set_clock(&mut c, t0 + 30_060_000_000);
    let r = take(&mut c, "0");
    assert_eq!(r[0], 1, "{r:?}");
}

/// Many callers at once, random estimates and actual costs, one in five
/// never settling (killed): afterwards each limit has charged exactly the
/// actual costs of the settled reservations plus the estimates of the
/// expired ones, no slot is left held, and the replica, the AOF replay,
/// the rewritten AOF and an RDB reload all hold the same bytes.
#[test]
fn concurrent_reservations_charge_exactly_what_was_used_and_replicate() {
    let master = Server::start_with(AOF_COMMANDS);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    // An hour's fixed window holding every call; the module's clock fixed
    // (each replica and replay gets the instants with the effects).
    let hour = 3600 * SEC;
    let t0 = (clock_start(&mut c) / hour + 1) * hour;
    set_clock(&mut c, t0);
    const BIG: &str = "1000000000000000";
    let seed = Rng::seed_from_env("RESERVE_SEED");
    eprintln!("RESERVE_SEED={seed}");
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let mut c = master.connect();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ t);
                let (mut charged, mut made, mut abandoned) = (0u64, 0u64, 0u64);
                for _ in 0..60 {
                    let estimate = rng.below(100);
                    let e = estimate.to_string();
                    let r = ints_on(
                        &mut c,
                        &[
                            "RL.ALL",
                            "LIMIT",
                            "slots",
                            "CONCURRENCY",
                            "1000",
                            "5",
                            "LIMIT",
                            "fx",
                            "FIXED",
                            BIG,
                            "3600",
                            "ESTIMATE",
                            &e,
                            "LIMIT",
                            "sw",
                            "SLIDING",
                            BIG,
                            "3600",
                            "ESTIMATE",
                            &e,
                            "LIMIT",
                            "rpm",
                            "SLIDING",
                            BIG,
                            "60",
                        ],
                    );
                    assert_eq!(r[0], 1, "{r:?}");
                    made += 1;
                    if rng.one_in(5) {
                        // The caller died: its estimate stays charged.
                        charged += estimate;
                        abandoned += 1;
                        continue;
                    }
                    let actual = rng.below(200);
                    let s = ints_on(
                        &mut c,
                        &[
                            "RL.SETTLE",
                            "slots",
                            "sw",
                            "fx",
                            "LEASE",
                            &id_of(&r),
                            "ACTUAL",
                            &actual.to_string(),
                        ],
                    );
                    assert_eq!(s[0], 1, "{s:?}");
                    charged += actual;
                }
                (charged, made, abandoned)
            })
        })
        .collect();
    let (mut charged, mut made, mut abandoned) = (0, 0, 0);
    for t in threads {
        let (c, m, a) = t.join().unwrap();
        charged += c;
        made += m;
        abandoned += a;
    }
    // The abandoned leases are still held, then end at 5 s.
    let held = ints_on(&mut c, &["RL.ACQUIRE", "slots", "1000", "5", "DRYRUN"]);
    assert_eq!(held[2] as u64, 1000 - abandoned - 1, "{held:?}");
    set_clock(&mut c, t0 + 5 * SEC);
    let free = ints_on(&mut c, &["RL.ACQUIRE", "slots", "1000", "5", "DRYRUN"]);
    assert_eq!(free[2], 999, "no slot leaked: {free:?}");
    let big: u64 = BIG.parse().unwrap();
    let count = |c: &mut redis::Connection, cmd: &[&str]| big - rl(c, cmd)[2] as u64;
    assert_eq!(
        count(&mut c, &["RL.FIXED", "fx", BIG, "3600", "COST", "0"]),
        charged
    );
    assert_eq!(
        count(&mut c, &["RL.SLIDING", "sw", BIG, "3600", "COST", "0"]),
        charged
    );
    assert_eq!(
        count(&mut c, &["RL.SLIDING", "rpm", BIG, "60", "COST", "0"]),
        made
    );
    eprintln!("{made} reservations, {abandoned} abandoned, {charged} units charged");
    // The server's own record: one reservation (RL.LEASE V) per call.
    let reserved = aof_commands(&master.dir)
        .iter()
        .filter(|cmd| cmd[0].eq_ignore_ascii_case(b"RL.LEASE") && cmd[2].first() == Some(&b'V'))
        .count() as u64;
    assert_eq!(reserved, made);
    drop(c);
    assert!(assert_state_survives_everything(master, &replica) >= 3);
}

/// Callers whose usage often exceeds their estimate, on a limit small
/// enough to go into debt: from the AOF (the server's own record of every
/// change, in order), no reservation was ever admitted while the window
/// was in debt or could not hold `max(estimate, 1)` more, and the count
/// the window ends with is exactly what was charged.
#[test]
fn no_reservation_is_admitted_while_the_limit_is_in_debt_or_exhausted() {
    use redis_ratelimit_core::reserve::Record;
    let s = Server::start_with(AOF_COMMANDS);
    let mut c = s.connect();
    let hour = 3600 * SEC;
    let t0 = (clock_start(&mut c) / hour + 1) * hour;
    set_clock(&mut c, t0);
    const LIMIT: u64 = 1000;
    let seed = Rng::seed_from_env("RESERVE_SEED");
    eprintln!("RESERVE_SEED={seed}");
    let threads: Vec<_> = (0..6u64)
        .map(|t| {
            let mut c = s.connect();
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t << 8));
                let (mut charged, mut admitted, mut denied) = (0u64, 0u64, 0u64);
                for _ in 0..80 {
                    let estimate = rng.below(60);
                    let e = estimate.to_string();
                    let r = ints_on(
                        &mut c,
                        &[
                            "RL.ALL",
                            "LIMIT",
                            "slots",
                            "CONCURRENCY",
                            "50",
                            "5",
                            "LIMIT",
                            "fx",
                            "FIXED",
                            &LIMIT.to_string(),
                            "3600",
                            "ESTIMATE",
                            &e,
                        ],
                    );
                    if r[0] == 0 {
                        denied += 1;
                        continue;
                    }
                    admitted += 1;
                    if rng.one_in(5) {
                        charged += estimate;
                        continue;
                    }
                    let actual = rng.below(150);
                    let id = id_of(&r);
                    let settled = ints_on(
                        &mut c,
                        &[
                            "RL.SETTLE",
                            "slots",
                            "fx",
                            "LEASE",
                            &id,
                            "ACTUAL",
                            &actual.to_string(),
                        ],
                    );
                    assert_eq!(settled[0], 1, "{settled:?}");
                    charged += actual;
                }
                (charged, admitted, denied)
            })
        })
        .collect();
    let (mut charged, mut admitted, mut denied) = (0, 0, 0);
    for t in threads {
        let (c, a, d) = t.join().unwrap();
        charged += c;
        admitted += a;
        denied += d;
    }
    eprintln!("{admitted} admitted, {denied} denied, {charged} charged");
    assert!(denied > 0 && admitted > 0, "the limit was reached");
    // Replay the AOF: the window's count as each command left it.
    let mut count = 0u64;
    let mut checked = 0u64;
    let mut debt_seen = false;
    for cmd in aof_commands(&s.dir) {
        let name = String::from_utf8_lossy(&cmd[0]).to_ascii_uppercase();
        match (name.as_str(), cmd.get(1).map(|k| k.as_slice())) {
            ("RL.SETSTATE", Some(b"fx")) => {
                assert_eq!(cmd[2][0], b'F');
                count = u64::from_le_bytes(cmd[2][1..9].try_into().unwrap());
                debt_seen |= count > LIMIT;
            }
            ("DEL", Some(b"fx")) => count = 0,
            ("RL.LEASE", Some(b"slots")) if cmd[2][0] == b'V' => {
                let record = Record::decode(&cmd[2], &mut 25).expect("a record");
                let estimate = record.holds[0].estimate;
                assert!(
                    count + estimate.max(1) <= LIMIT,
                    "admitted {estimate} with {count} of {LIMIT} counted"
                );
                checked += 1;
            }
            _ => {}
        }
    }
    assert_eq!(checked, admitted);
    assert!(debt_seen, "some settlement went beyond the limit");
    assert_eq!(count, charged);
}

/// A key locked out by its policy stays locked through a settlement (its
/// own state settled under the lock), on the replica too.
#[test]
fn a_settlement_under_a_lockout_keeps_the_lock() {
    let master = Server::start_with(AOF_COMMANDS);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    let t0 = clock_start(&mut c);
    set_clock(&mut c, t0);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "slots", "CONCURRENCY", "5", "60"],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "tpm",
            "TOKENBUCKET",
            "100",
            "100",
            "PERIOD",
            "60",
            "LOCKOUT",
            "600",
        ],
    );
    let reserve = |c: &mut redis::Connection, est: &str| {
        ints_on(
            c,
            &[
                "RL.TAKEALL",
                "LIMIT",
                "s",
                "POLICY",
                "slots",
                "LIMIT",
                "t",
                "POLICY",
                "tpm",
                "ESTIMATE",
                est,
            ],
        )
    };
    let r = reserve(&mut c, "60");
    assert_eq!(r[0], 1);
    // Denied (60 more do not fit): the policy locks the key out.
    assert_eq!(reserve(&mut c, "60")[0], 0);
    assert_eq!(
        call(&mut c, &["TYPE", "t"]).unwrap(),
        Value::SimpleString("rl-locked".into())
    );
    let settled = ints_on(
        &mut c,
        &["RL.SETTLE", "s", "t", "LEASE", &id_of(&r), "ACTUAL", "10"],
    );
    assert_eq!(settled[0], 1, "{settled:?}");
    assert_eq!(
        call(&mut c, &["TYPE", "t"]).unwrap(),
        Value::SimpleString("rl-locked".into())
    );
    // Still denied until the lock ends, then the 50 given back are there.
    assert_eq!(reserve(&mut c, "1")[0], 0);
    set_clock(&mut c, t0 + 600 * SEC);
    let after = reserve(&mut c, "1");
    assert_eq!(after[..3], [1, 5, 4], "{after:?}");
    drop(c);
    assert!(assert_state_survives_everything(master, &replica) >= 1);
}

/// In a cluster: RL.SETTLE is routed by its key spec (the cluster client
/// finds the slot with no keys-position call), keys in two slots are
/// CROSSSLOT, and a reservation survives a failover: the promoted replica
/// settles it exactly as the old master would have.
#[test]
fn a_reservation_is_routed_in_a_cluster_and_survives_failover() {
    let mut cluster = Cluster::start();
    let mut cc = cluster.client();
    let reserve = |cc: &mut redis::cluster::ClusterConnection| {
        ints_on(
            cc,
            &[
                "RL.ALL",
                "LIMIT",
                "{k9}:inflight",
                "CONCURRENCY",
                "3",
                "600",
                "LIMIT",
                "{k9}:tpm",
                "SLIDING",
                "1000",
                "3600",
                "ESTIMATE",
                "100",
            ],
        )
    };
    let a = reserve(&mut cc);
    assert_eq!(a[0], 1, "{a:?}");
    let crossslot = err_on(
        &mut cc,
        &[
            "RL.SETTLE",
            "{k9}:inflight",
            "{other}:tpm",
            "LEASE",
            "1",
            "ACTUAL",
            "1",
        ],
    );
    assert!(crossslot.contains("CROSSSLOT"), "{crossslot}");
    cluster.wait_replicated();
    cluster.failover("{k9}:inflight");
    let mut cc = cluster.client();
    let s = ints_on(
        &mut cc,
        &[
            "RL.SETTLE",
            "{k9}:inflight",
            "{k9}:tpm",
            "LEASE",
            &id_of(&a),
            "ACTUAL",
            "250",
        ],
    );
    assert_eq!(s[..3], [1, 1000, 749], "{s:?}");
    let again = ints_on(
        &mut cc,
        &[
            "RL.SETTLE",
            "{k9}:inflight",
            "{k9}:tpm",
            "LEASE",
            &id_of(&a),
            "ACTUAL",
            "250",
        ],
    );
    assert_eq!(again, [0; 6]);
}

/// A reservation's record in a RESTOREd value is checked like the rest:
/// a real one restores and settles; one naming a key twice (which would
/// have RL.SETTLE open it twice) is refused and changes nothing.
#[test]
fn restored_records_are_checked_and_a_key_named_twice_is_refused() {
    use redis_ratelimit_core::algo::lease::{Leases, Op};
    use redis_ratelimit_core::reserve::{Hold, Record, Reservation};
    use redis_ratelimit_core::time::Nanos;
    let s = Server::start();
    let mut c = s.connect();
    // A real rl-leases DUMP, for its module id (rl-leases, version 2).
    let _ = ints_on(&mut c, &["RL.ACQUIRE", "probe", "1", "10"]);
    let probe = dump::Dump::parse(&bytes(&mut c, &["DUMP", "probe"]).unwrap());
    let now = Nanos::new(server_now_ns(&mut c));
    let hold = |key: &str| Hold {
        key: key.as_bytes().to_vec(),
        words: ["SLIDING", "10", "60"]
            .iter()
            .map(|w| w.as_bytes().to_vec())
            .collect(),
        estimate: 5,
        bucket_end: None,
    };
    let forged = |keys: &[&str]| {
        let r = Reservation {
            op: Op::Acquire {
                now,
                id: now.as_u64(),
                expires: now.saturating_add(Nanos::from_secs(60)),
            },
            record: Record {
                at: now,
                holds: keys.iter().map(|k| hold(k)).collect(),
            },
        };
        let mut value = Vec::new();
        Leases::from_reservation(&r).encode(&mut value);
        dump::Dump {
            body: dump::boxed_body(&value),
            ..probe.clone()
        }
        .payload()
    };
    let id = now.as_u64().to_string();
    let before = dump_all(&mut c);
    let e = dump::restore(&mut c, "anchor", 0, &forged(&["a", "a"])).unwrap_err();
    assert!(e.contains("Bad data format"), "{e}");
    assert_eq!(dump_all(&mut c), before);
    dump::restore(&mut c, "anchor", 0, &forged(&["a", "b"])).unwrap();
    let s = ints_on(
        &mut c,
        &["RL.SETTLE", "anchor", "b", "a", "LEASE", &id, "ACTUAL", "7"],
    );
    assert_eq!(s[0], 1, "{s:?}");
    // The 2 units beyond the estimate, charged on both (nothing was there).
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "a", "10", "60", "COST", "0"])[2],
        8
    );
}
