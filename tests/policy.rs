//! Named policies on a real server: RL.POLICY SET/GET/DEL/LIST, RL.TAKE,
//! RL.ALL's `POLICY name` clauses, redefinition, SHADOW, LOCKOUT, the
//! per-policy INFO line, the cap, module arguments, persistence and
//! replication.
#![cfg(test)]

use redis::Value;
use redis_ratelimit_testkit::*;

fn policies(c: &mut redis::Connection) -> Vec<(String, String)> {
    redis::cmd("RL.POLICY").arg("LIST").query(c).unwrap()
}

fn get(c: &mut redis::Connection, name: &str) -> Option<String> {
    redis::cmd("RL.POLICY")
        .arg("GET")
        .arg(name)
        .query(c)
        .unwrap()
}

/// The INFO line of one policy, as its five counters.
fn counters(c: &mut redis::Connection, name: &str) -> Option<[u64; 5]> {
    let info: String = redis::cmd("INFO").arg("ratelimit").query(c).unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix(&format!("ratelimit_policy_{name}:")))?;
    let mut out = [0u64; 5];
    let labels = ["calls", "allowed", "denied", "shadow_denied", "lockouts"];
    for (i, part) in line.trim().split(',').enumerate() {
        let (k, v) = part.split_once('=').unwrap();
        assert_eq!(k, labels[i]);
        out[i] = v.parse().unwrap();
    }
    Some(out)
}

#[test]
fn set_get_del_list() {
    let s = Server::start();
    let mut c = s.connect();
    assert!(policies(&mut c).is_empty());
    ok(&mut c, &["RL.POLICY", "SET", "api", "sliding", "100", "60"]);
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "partner-day",
            "FIXED",
            "500",
            "day",
            "tz",
            "America/New_York",
        ],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "bucket",
            "TOKENBUCKET",
            "10",
            "1",
            "PERIOD",
            "60",
        ],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "gcra.v2",
            "GCRA",
            "5",
            "10",
            "1",
            "shadow",
            "lockout",
            "2.5",
        ],
    );
    ok(
        &mut c,
        &["RL.POLICY", "SET", "jobs", "CONCURRENCY", "3", "30"],
    );
    // Keywords and calendar units come back in capitals, numbers in their
    // plain form, a zone's name as given.
    assert_eq!(get(&mut c, "api").as_deref(), Some("SLIDING 100 60"));
    assert_eq!(
        get(&mut c, "partner-day").as_deref(),
        Some("FIXED 500 DAY TZ America/New_York")
    );
    assert_eq!(
        get(&mut c, "gcra.v2").as_deref(),
        Some("GCRA 5 10 1 SHADOW LOCKOUT 2.5")
    );
    assert_eq!(get(&mut c, "nope"), None);
    let names: Vec<String> = policies(&mut c).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["api", "bucket", "gcra.v2", "jobs", "partner-day"]);
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "api"]), 1);
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "api"]), 0);
    assert_eq!(get(&mut c, "api"), None);
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_policies"), 4);
    // Policies are not keys.
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
}

#[test]
fn bad_definitions_are_errors_that_leave_the_old_policy() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["RL.POLICY", "SET", "api", "SLIDING", "100", "60"]);
    let cases: &[(&[&str], &str)] = &[
        (&["api", "SLIDING", "0", "60"], "ERR limit must be"),
        (&["api", "SLIDING", "10"], "ERR window must be"),
        (
            &["api", "SLIDING", "10", "60", "COST", "2"],
            "ERR syntax error",
        ),
        (
            &["api", "SLIDING", "10", "60", "DRYRUN"],
            "ERR syntax error",
        ),
        (
            &["api", "SLIDING", "10", "60", "LOCKOUT", "0"],
            "ERR LOCKOUT must be",
        ),
        (
            &["api", "SLIDING", "10", "60", "LOCKOUT"],
            "ERR LOCKOUT must be",
        ),
        (
            &["api", "SLIDING", "10", "60", "SHADOW", "SHADOW"],
            "ERR syntax error",
        ),
        (
            &["api", "LEAKY", "10", "60"],
            "ERR a policy is TOKENBUCKET, SLIDING",
        ),
        (
            &["api", "FIXED", "10", "DAY", "TZ", "Mars/Olympus"],
            "ERR TZ must be",
        ),
        (
            &["api", "TOKENBUCKET", "10", "1"],
            "ERR a policy keeps its algorithm",
        ),
        (
            &["api", "CONCURRENCY", "3", "30"],
            "ERR a policy keeps its algorithm",
        ),
        (
            &["jobs", "CONCURRENCY", "3", "30", "LOCKOUT", "5"],
            "ERR LOCKOUT needs a rate limit",
        ),
        (&["a b", "SLIDING", "10", "60"], "ERR policy name must be"),
        (&["a:b", "SLIDING", "10", "60"], "ERR policy name must be"),
        (
            &[&"x".repeat(65), "SLIDING", "10", "60"],
            "ERR policy name must be",
        ),
    ];
    for (args, want) in cases {
        let mut full = vec!["RL.POLICY", "SET"];
        full.extend_from_slice(args);
        let e = err(&mut c, &full);
        assert!(e.starts_with(want), "{args:?}: {e}");
        assert_eq!(
            get(&mut c, "api").as_deref(),
            Some("SLIDING 100 60"),
            "{args:?}"
        );
    }
    assert_eq!(policies(&mut c).len(), 1);
    // Wrong arity and unknown subcommands.
    assert!(err(&mut c, &["RL.POLICY", "SET", "api"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["RL.POLICY", "GET"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["RL.POLICY", "LIST", "x"]).contains("wrong number of arguments"));
    assert!(err(&mut c, &["RL.POLICY", "PUT", "api"])
        .to_lowercase()
        .contains("unknown subcommand"));
    // GCRA and TOKENBUCKET keep the same state: one may replace the other.
    ok(&mut c, &["RL.POLICY", "SET", "b", "TOKENBUCKET", "10", "1"]);
    ok(&mut c, &["RL.POLICY", "SET", "b", "GCRA", "10", "1", "1"]);
    // Deleted, a name may take another algorithm.
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "api"]), 1);
    ok(&mut c, &["RL.POLICY", "SET", "api", "FIXED", "10", "60"]);
}

#[test]
fn unknown_policies_are_named_and_change_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    let d = dirty(&mut c);
    assert_eq!(
        err(&mut c, &["RL.TAKE", "k", "api"]),
        "ERR no such policy 'api': RL.POLICY SET defines it"
    );
    assert!(err(&mut c, &["RL.TAKE", "k", "a b"]).starts_with("ERR policy name must be"));
    ok(&mut c, &["RL.POLICY", "SET", "day", "FIXED", "5", "DAY"]);
    let d = d + 1;
    assert_eq!(
        err(
            &mut c,
            &["RL.ALL", "LIMIT", "a", "POLICY", "day", "LIMIT", "b", "POLICY", "week"]
        ),
        "ERR no such policy 'week': RL.POLICY SET defines it"
    );
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    assert_eq!(dirty(&mut c), d);
    // Request options are checked as for the algorithm's own command.
    assert!(err(&mut c, &["RL.TAKE", "k", "day", "COST", "-1"]).starts_with("ERR COST must be"));
    assert!(
        err(&mut c, &["RL.TAKE", "k", "day", "BLOCK", "10", "DRYRUN"])
            .starts_with("ERR BLOCK waits")
    );
    assert_eq!(
        err(&mut c, &["RL.TAKE", "k", "day", "LOUDLY"]),
        "ERR syntax error"
    );
    assert!(err(&mut c, &["RL.TAKE", "k"]).contains("wrong number of arguments"));
    ok(
        &mut c,
        &["RL.POLICY", "SET", "jobs", "CONCURRENCY", "2", "30"],
    );
    assert!(err(&mut c, &["RL.TAKE", "k", "jobs", "COST", "2"])
        .starts_with("ERR a CONCURRENCY limit takes no COST"));
    assert!(err(
        &mut c,
        &[
            "RL.ALL",
            "LIMIT",
            "a",
            "POLICY",
            "jobs",
            "LIMIT",
            "b",
            "CONCURRENCY",
            "1",
            "5"
        ]
    )
    .starts_with("ERR RL.ALL takes at most one CONCURRENCY"));
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
}

/// RL.TAKE answers exactly what the algorithm's own command answers, with
/// the same options, and leaves the same state.
#[test]
fn take_is_the_algorithms_own_command() {
    let s = Server::start();
    let mut c = s.connect();
    let t0 = clock_start(&mut c);
    let defs: &[(&str, &[&str])] = &[
        ("tb", &["TOKENBUCKET", "5", "2", "PERIOD", "3"]),
        ("sw", &["SLIDING", "4", "2.5"]),
        ("gc", &["GCRA", "3", "2", "1"]),
        ("fx", &["FIXED", "4", "HOUR", "TZ", "Asia/Kolkata"]),
        ("cc", &["CONCURRENCY", "2", "1.5"]),
    ];
    let commands = [
        "RL.TOKENBUCKET",
        "RL.SLIDING",
        "RL.GCRA",
        "RL.FIXED",
        "RL.ACQUIRE",
    ];
    let steps: &[(u64, &[&str])] = &[
        (0, &[]),
        (0, &["COST", "2"]),
        (10, &["DRYRUN"]),
        (20, &[]),
        (30, &["COST", "3"]),
        (400, &["REFUND"]),
        (700, &[]),
        (900, &["COST", "0"]),
        (2600, &[]),
        (4000, &["COST", "2"]),
    ];
    for ((name, def), command) in defs.iter().zip(commands) {
        let mut set = vec!["RL.POLICY", "SET", name];
        set.extend_from_slice(def);
        ok(&mut c, &set);
        let policy_key = format!("p:{name}");
        let own_key = format!("o:{name}");
        for (ms, opts) in steps {
            let leases = *name == "cc";
            if leases && opts.iter().any(|o| *o == "COST" || *o == "REFUND") {
                continue;
            }
            set_clock(&mut c, t0 + ms * MS);
            let mut take = vec!["RL.TAKE", policy_key.as_str(), name];
            take.extend_from_slice(opts);
            let mut own = vec![command, own_key.as_str()];
            if *name == "tb" {
                // RL.TOKENBUCKET key capacity rate [cost] [PERIOD p]: the
                // cost is positional.
                own.extend_from_slice(&def[1..3]);
                let cost = opts
                    .iter()
                    .position(|o| *o == "COST")
                    .map_or("1", |i| opts[i + 1]);
                own.push(cost);
                own.extend_from_slice(&def[3..]);
                let mut skip = false;
                for o in opts.iter() {
                    if skip {
                        skip = false;
                    } else if *o == "COST" {
                        skip = true;
                    } else {
                        own.push(o);
                    }
                }
            } else {
                own.extend_from_slice(&def[1..]);
                own.extend_from_slice(opts);
            }
            let a = ints_on(&mut c, &take);
            let b = ints_on(&mut c, &own);
            if leases {
                // Lease ids are the server's: compare the rest.
                assert_eq!(a[..5], b[..5], "{name} at {ms} ms {opts:?}");
                assert_eq!(a.len(), 6);
            } else {
                assert_eq!(a, b, "{name} at {ms} ms {opts:?}");
            }
        }
        if *name != "cc" {
            assert_eq!(
                bytes(&mut c, &["DUMP", &policy_key]),
                bytes(&mut c, &["DUMP", &own_key]),
                "{name}"
            );
            assert_eq!(
                int(&mut c, &["PEXPIRETIME", &policy_key]),
                int(&mut c, &["PEXPIRETIME", &own_key]),
                "{name}"
            );
        }
    }
}

/// A redefinition keeps each key's state and applies from the next call.
#[test]
fn redefinitions_keep_the_state() {
    let s = Server::start();
    let mut c = s.connect();
    let t0 = clock_start(&mut c);
    set_clock(&mut c, t0);

    // Sliding window: 8 of 10 taken; a limit of 5 denies until the window
    // has let enough of them go; a longer window keeps them longer.
    ok(&mut c, &["RL.POLICY", "SET", "sw", "SLIDING", "10", "60"]);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:sw", "sw", "COST", "8"])[2], 2);
    ok(&mut c, &["RL.POLICY", "SET", "sw", "SLIDING", "5", "60"]);
    let r = rl(&mut c, &["RL.TAKE", "k:sw", "sw"]);
    assert_eq!(
        (r[0], r[1], r[2], r[3]),
        (0, 5, 0, 60_000),
        "8 in the window, limit 5"
    );
    ok(&mut c, &["RL.POLICY", "SET", "sw", "SLIDING", "5", "120"]);
    set_clock(&mut c, t0 + 61 * SEC);
    let r = rl(&mut c, &["RL.TAKE", "k:sw", "sw"]);
    assert_eq!(
        (r[0], r[3]),
        (0, 59_000),
        "the 120 s window still holds them"
    );
    set_clock(&mut c, t0 + 120 * SEC);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:sw", "sw"])[0], 1);

    // Token bucket: a smaller capacity caps what is left; a larger one
    // starts from what was there (it does not fill up at once).
    set_clock(&mut c, t0);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "tb", "TOKENBUCKET", "10", "1"],
    );
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:tb", "tb", "COST", "4"])[2], 6);
    // 4 tokens missing from a bucket of 3: none left, 1 owed, refilled
    // at the rate from there.
    ok(&mut c, &["RL.POLICY", "SET", "tb", "TOKENBUCKET", "3", "1"]);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:tb", "tb", "COST", "0"])[2], 0);
    set_clock(&mut c, t0 + 2 * SEC);
    assert_eq!(
        rl(&mut c, &["RL.TAKE", "k:tb", "tb", "COST", "0"])[2],
        1,
        "2 missing of 3"
    );
    ok(
        &mut c,
        &["RL.POLICY", "SET", "tb", "TOKENBUCKET", "20", "1"],
    );
    assert_eq!(
        rl(&mut c, &["RL.TAKE", "k:tb", "tb", "COST", "0"])[2],
        18,
        "2 missing of 20"
    );

    // Fixed window: the count stays; the new limit applies to it.
    ok(&mut c, &["RL.POLICY", "SET", "fx", "FIXED", "10", "HOUR"]);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:fx", "fx", "COST", "7"])[2], 3);
    ok(&mut c, &["RL.POLICY", "SET", "fx", "FIXED", "5", "HOUR"]);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:fx", "fx"])[0], 0);
    ok(&mut c, &["RL.POLICY", "SET", "fx", "FIXED", "9", "HOUR"]);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k:fx", "fx"])[2], 1);
}

#[test]
fn shadow_answers_allowed_records_as_enforced_and_counts() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    ok(&mut c, &["RL.POLICY", "SET", "real", "SLIDING", "3", "60"]);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "dry", "SLIDING", "3", "60", "SHADOW"],
    );
    for i in 0..5 {
        let enforced = rl(&mut c, &["RL.TAKE", "k:real", "real"]);
        let shadow = rl(&mut c, &["RL.TAKE", "k:dry", "dry"]);
        assert_eq!(shadow[0], 1, "call {i}: a shadow policy answers allowed");
        assert_eq!(shadow[2], enforced[2], "call {i}: remaining as enforced");
        if enforced[0] == 0 {
            assert_eq!(shadow[3], 0, "allowed: no wait");
        }
    }
    // The state is exactly the enforced one.
    assert_eq!(
        bytes(&mut c, &["DUMP", "k:dry"]),
        bytes(&mut c, &["DUMP", "k:real"])
    );
    assert_eq!(counters(&mut c, "real"), Some([5, 3, 2, 0, 0]));
    assert_eq!(counters(&mut c, "dry"), Some([5, 3, 0, 2, 0]));
    // A shadow policy never waits: BLOCK answers at once.
    let r = rl(&mut c, &["RL.TAKE", "k:dry", "dry", "BLOCK", "5000"]);
    assert_eq!(r[0], 1);
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_waits_started"), 0);
    // In RL.ALL, a shadow clause's denial lets the others decide.
    let r = ints_on(
        &mut c,
        &[
            "RL.ALL", "LIMIT", "k:dry", "POLICY", "dry", "LIMIT", "k:x", "FIXED", "1", "60",
        ],
    );
    assert_eq!(r[0], 1);
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "k:x", "1", "60", "DRYRUN"])[0],
        0,
        "k:x consumed"
    );
}

/// LOCKOUT on the server's own clock: a denial locks the key; calls in
/// the lock are denied without consuming, retry_after at its end; after
/// it the limit carries on from its state.
#[test]
fn lockout_timing_on_the_server_clock() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["RL.TEST.CLOCK", "REAL"]);
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "pin",
            "TOKENBUCKET",
            "2",
            "20",
            "LOCKOUT",
            "1.5",
        ],
    );
    assert_eq!(rl(&mut c, &["RL.TAKE", "k", "pin"])[0], 1);
    assert_eq!(rl(&mut c, &["RL.TAKE", "k", "pin"])[0], 1);
    let before = server_now_ns(&mut c);
    let r = rl(&mut c, &["RL.TAKE", "k", "pin"]);
    let after = server_now_ns(&mut c);
    assert_eq!(r[0], 0);
    // The lock is 1500 ms; a token comes back in 50 ms: retry at the lock's end.
    assert!((1499..=1500).contains(&r[3]), "retry_after {}", r[3]);
    let lock_end_ms = {
        let t: Value = redis::cmd("TYPE").arg("k").query(&mut c).unwrap();
        assert_eq!(t, Value::SimpleString("rl-locked".into()));
        int(&mut c, &["PEXPIRETIME", "k"])
    };
    // The key lives until the lock ends (the bucket is full before then).
    let lo = ((before + 1500 * MS) / MS) as i64;
    let hi = ((after + 1500 * MS) / MS) as i64 + 1;
    assert!(
        (lo..=hi).contains(&lock_end_ms),
        "{lo} <= {lock_end_ms} <= {hi}"
    );
    // In the lock: denied, nothing consumed, retry_after counting down.
    let mut last = r[3];
    for _ in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let r = rl(&mut c, &["RL.TAKE", "k", "pin"]);
        assert_eq!((r[0], r[2]), (0, 0));
        assert!(r[3] < last && r[3] > 0, "{} then {}", last, r[3]);
        last = r[3];
    }
    assert_eq!(
        counters(&mut c, "pin").map(|x| x[4]),
        Some(1),
        "one lockout"
    );
    // Past the lock's end (by the reply's own retry_after): the bucket,
    // which refilled meanwhile, allows again.
    std::thread::sleep(std::time::Duration::from_millis(last as u64 + 20));
    let r = rl(&mut c, &["RL.TAKE", "k", "pin"]);
    assert_eq!((r[0], r[2]), (1, 1));
    let t: Value = redis::cmd("TYPE").arg("k").query(&mut c).unwrap();
    assert_eq!(t, Value::SimpleString("rl-bucket".into()));
}

/// With the test clock: a lock keeps a spent daily limit spent.
#[test]
fn a_lockout_never_refills_the_limit() {
    let s = Server::start();
    let mut c = s.connect();
    // Noon UTC, an hour ahead: keys outlive the test on Redis's clock.
    let t0 = (clock_start(&mut c) / (86_400 * SEC)) * 86_400 * SEC + 86_400 * SEC + 12 * 3600 * SEC;
    set_clock(&mut c, t0);
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "day",
            "FIXED",
            "3",
            "DAY",
            "LOCKOUT",
            "60",
        ],
    );
    for _ in 0..3 {
        assert_eq!(rl(&mut c, &["RL.TAKE", "u", "day"])[0], 1);
    }
    let r = rl(&mut c, &["RL.TAKE", "u", "day"]);
    // Locked for a minute, but the day ends in 12 h: the retry says so.
    assert_eq!((r[0], r[3]), (0, 12 * 3600 * 1000));
    set_clock(&mut c, t0 + 61 * SEC);
    let r = rl(&mut c, &["RL.TAKE", "u", "day"]);
    assert_eq!((r[0], r[2]), (0, 0), "still spent after the lock");
    assert_eq!(
        counters(&mut c, "day").map(|x| x[4]),
        Some(2),
        "locked again"
    );
    // Tomorrow: fresh, the key is the counter again.
    set_clock(&mut c, t0 + 12 * 3600 * SEC + SEC);
    let r = rl(&mut c, &["RL.TAKE", "u", "day"]);
    assert_eq!((r[0], r[2]), (1, 2));
    // A dry run or a peek never locks.
    for _ in 0..2 {
        assert_eq!(rl(&mut c, &["RL.TAKE", "u", "day"])[0], 1);
    }
    let r = rl(&mut c, &["RL.TAKE", "u", "day", "DRYRUN"]);
    assert_eq!(r[0], 0);
    let r = rl(&mut c, &["RL.TAKE", "u", "day", "COST", "0"]);
    assert_eq!(r[0], 1);
    let t: Value = redis::cmd("TYPE").arg("u").query(&mut c).unwrap();
    assert_eq!(t, Value::SimpleString("rl-fixwin".into()));
    // A locked key denies even a peek.
    assert_eq!(rl(&mut c, &["RL.TAKE", "u", "day"])[0], 0);
    assert_eq!(rl(&mut c, &["RL.TAKE", "u", "day", "COST", "0"])[0], 0);
    let t: Value = redis::cmd("TYPE").arg("u").query(&mut c).unwrap();
    assert_eq!(t, Value::SimpleString("rl-locked".into()));
}

#[test]
fn rl_all_mixes_policies_and_inline_limits_and_commits_lockouts() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "minute",
            "SLIDING",
            "2",
            "60",
            "LOCKOUT",
            "30",
        ],
    );
    let all = |c: &mut redis::Connection| {
        ints_on(
            c,
            &[
                "RL.ALL", "LIMIT", "m", "POLICY", "minute", "LIMIT", "d", "FIXED", "100", "DAY",
            ],
        )
    };
    assert_eq!(all(&mut c)[0], 1);
    assert_eq!(all(&mut c)[0], 1);
    let r = all(&mut c);
    assert_eq!(
        (r[0], r[3], r[5]),
        (0, 60_000, 1),
        "denied by the policy (limit 1)"
    );
    let t: Value = redis::cmd("TYPE").arg("m").query(&mut c).unwrap();
    assert_eq!(t, Value::SimpleString("rl-locked".into()));
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "d", "100", "DAY", "DRYRUN"])[2],
        97,
        "the denial took nothing from the day"
    );
    assert_eq!(counters(&mut c, "minute"), Some([3, 2, 1, 0, 1]));
    // The same policy in a plain RL.TAKE sees the lock.
    assert_eq!(rl(&mut c, &["RL.TAKE", "m", "minute"])[0], 0);
}

#[test]
fn the_cap_bounds_policies() {
    let s = Server::start_with(&["--ratelimit.max-policies", "2"]);
    let mut c = s.connect();
    ok(&mut c, &["RL.POLICY", "SET", "a", "SLIDING", "1", "1"]);
    ok(&mut c, &["RL.POLICY", "SET", "b", "SLIDING", "1", "1"]);
    assert!(err(&mut c, &["RL.POLICY", "SET", "c", "SLIDING", "1", "1"])
        .starts_with("ERR too many policies"));
    // Redefining is not adding.
    ok(&mut c, &["RL.POLICY", "SET", "b", "SLIDING", "2", "1"]);
    ok(&mut c, &["CONFIG", "SET", "ratelimit.max-policies", "3"]);
    ok(&mut c, &["RL.POLICY", "SET", "c", "SLIDING", "1", "1"]);
}

/// What a policy costs in memory: used_memory before and after 1000.
#[test]
fn memory_per_policy() {
    let s = Server::start_with(&["--ratelimit.max-policies", "100000"]);
    let mut c = s.connect();
    let used = |c: &mut redis::Connection| info_int(c, "memory", "used_memory");
    ok(
        &mut c,
        &["RL.POLICY", "SET", "warm", "SLIDING", "100", "60"],
    );
    let before = used(&mut c);
    for i in 0..1000 {
        let name = format!("tenant-{i:05}");
        ok(
            &mut c,
            &[
                "RL.POLICY",
                "SET",
                &name,
                "FIXED",
                "500",
                "DAY",
                "TZ",
                "America/New_York",
            ],
        );
    }
    let per = (used(&mut c) - before) / 1000;
    eprintln!("memory per policy: {per} bytes");
    assert!(per < 2048, "{per} bytes a policy");
}

#[test]
fn policies_survive_debug_reload_and_restarts() {
    let s = Server::start_with(&["--appendonly", "yes"]);
    let mut c = s.connect();
    ok(
        &mut c,
        &["RL.POLICY", "SET", "api", "SLIDING", "100", "60", "SHADOW"],
    );
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "day",
            "FIXED",
            "1",
            "DAY",
            "LOCKOUT",
            "600",
        ],
    );
    ok(&mut c, &["RL.POLICY", "SET", "gone", "GCRA", "1", "1", "1"]);
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "gone"]), 1);
    rl(&mut c, &["RL.TAKE", "u", "day"]);
    rl(&mut c, &["RL.TAKE", "u", "day"]);
    let want = policies(&mut c);
    let state = state_of(&mut c);
    assert_eq!(want.len(), 2);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    assert_eq!(policies(&mut c), want, "after DEBUG RELOAD");
    assert_eq!(state_of(&mut c), state);
    // AOF with an RDB preamble, rewritten.
    call(&mut c, &["BGREWRITEAOF"]).unwrap();
    assert!(wait_until(30, || info_int(
        &mut c,
        "persistence",
        "aof_rewrite_in_progress"
    ) == 0
        && info_int(&mut c, "persistence", "aof_rewrite_scheduled")
            == 0));
    drop(c);
    let s = s.restart(false);
    let mut c = s.connect();
    assert_eq!(policies(&mut c), want, "after an AOF restart");
    assert_eq!(state_of(&mut c), state);
    // An RDB restart.
    drop(c);
    let dir = s.shutdown(false);
    let s = Server::start_in(dir, &["--appendonly", "no"]);
    let mut c = s.connect();
    call(&mut c, &["SAVE"]).unwrap();
    drop(c);
    let dir = s.shutdown(false);
    let s = Server::start_in(dir, &[]);
    let mut c = s.connect();
    assert_eq!(policies(&mut c), want, "after an RDB restart");
}

#[test]
fn policies_replay_from_an_aof_of_commands() {
    let s = Server::start_with(AOF_COMMANDS);
    let mut c = s.connect();
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "api",
            "SLIDING",
            "2",
            "60",
            "LOCKOUT",
            "600",
        ],
    );
    ok(&mut c, &["RL.POLICY", "SET", "tmp", "GCRA", "1", "1", "1"]);
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "tmp"]), 1);
    for _ in 0..3 {
        rl(&mut c, &["RL.TAKE", "u", "api"]);
    }
    let want = policies(&mut c);
    let state = state_of(&mut c);
    drop(c);
    let s = s.restart(false);
    let mut c = s.connect();
    assert_eq!(policies(&mut c), want);
    assert_eq!(
        state_of(&mut c),
        state,
        "the lock replayed from RL.SETSTATE"
    );
    assert_eq!(rl(&mut c, &["RL.TAKE", "u", "api"])[0], 0);
}

#[test]
fn module_arguments_define_policies_at_every_start() {
    let module = module_path().display().to_string();
    let dir = temp_dir();
    let args = [
        "--loadmodule",
        &module,
        "POLICY",
        "api",
        "SLIDING",
        "100",
        "60",
        "POLICY",
        "day",
        "FIXED",
        "500",
        "DAY",
        "TZ",
        "America/New_York",
        "SHADOW",
    ];
    let s = Server::start_exact(dir.clone(), &args);
    let mut c = s.connect();
    assert_eq!(
        policies(&mut c),
        [
            ("api".to_string(), "SLIDING 100 60".to_string()),
            (
                "day".to_string(),
                "FIXED 500 DAY TZ America/New_York SHADOW".to_string()
            )
        ]
    );
    // Changed at runtime and saved; the arguments win at the next start,
    // and what only the RDB holds stays.
    ok(&mut c, &["RL.POLICY", "SET", "api", "SLIDING", "5", "60"]);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "extra", "GCRA", "1", "1", "1"],
    );
    call(&mut c, &["SAVE"]).unwrap();
    drop(c);
    let dir = s.shutdown(false);
    let s = Server::start_exact(dir, &args);
    let mut c = s.connect();
    assert_eq!(get(&mut c, "api").as_deref(), Some("SLIDING 100 60"));
    assert_eq!(get(&mut c, "extra").as_deref(), Some("GCRA 1 1 1"));
    drop(c);
    drop(s);
    // A bad argument refuses the load and says why.
    for bad in [
        &["POLICY", "api", "SLIDING", "0", "60"][..],
        &["POLICY", "api"][..],
        &["api", "SLIDING", "1", "1"][..],
        &[
            "POLICY", "a", "SLIDING", "1", "1", "POLICY", "a", "SLIDING", "1", "1",
        ][..],
    ] {
        let s = Server::start_exact(temp_dir(), &[]);
        let mut c = s.connect();
        let mut load = vec!["MODULE", "LOAD", module.as_str()];
        load.extend_from_slice(bad);
        let e = err(&mut c, &load);
        assert!(e.starts_with("ERR"), "{bad:?}: {e}");
        let log = s.log();
        assert!(
            log.lines()
                .any(|l| l.contains("ratelimit: ") && l.to_lowercase().contains("polic")),
            "{bad:?}: the log says why:\n{log}"
        );
        assert!(err(&mut c, &["RL.POLICY", "LIST"]).contains("unknown command"));
    }
}

#[test]
fn a_replica_holds_the_same_policies_and_state() {
    let m = Server::start_with(AOF_COMMANDS);
    let mut c = m.connect();
    // Before the replica: reaches it by the full sync's RDB.
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "api",
            "SLIDING",
            "2",
            "60",
            "LOCKOUT",
            "600",
        ],
    );
    ok(&mut c, &["RL.POLICY", "SET", "old", "GCRA", "1", "1", "1"]);
    let r = start_replica(&m, &[]);
    let mut rc = r.connect();
    // After: by the replication stream.
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "day",
            "FIXED",
            "3",
            "DAY",
            "TZ",
            "Europe/Paris",
            "LOCKOUT",
            "60",
        ],
    );
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "old"]), 1);
    for k in ["a", "b", "c"] {
        for _ in 0..4 {
            rl(&mut c, &["RL.TAKE", k, "api"]);
            rl(&mut c, &["RL.TAKE", &format!("{k}:day"), "day"]);
        }
    }
    wait_replicas(&mut c, 1);
    assert_eq!(policies(&mut rc), policies(&mut c));
    // A replica refuses writes from clients, policies included.
    assert!(err(&mut rc, &["RL.POLICY", "SET", "x", "SLIDING", "1", "1"]).starts_with("READONLY"));
    // Same locked keys, same bytes and expiries; and everything survives
    // an AOF replay, a rewrite and a reload.
    assert!(assert_state_survives_everything(m, &r) >= 6);
}

#[test]
fn take_waits_in_line_with_block() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["RL.TEST.CLOCK", "REAL"]);
    ok(
        &mut c,
        &["RL.POLICY", "SET", "slow", "TOKENBUCKET", "1", "5"],
    );
    assert_eq!(rl(&mut c, &["RL.TAKE", "k", "slow"])[0], 1);
    let t = std::time::Instant::now();
    let r = rl(&mut c, &["RL.TAKE", "k", "slow", "BLOCK", "2000"]);
    assert_eq!(r[0], 1, "admitted after waiting");
    assert!(t.elapsed() >= std::time::Duration::from_millis(150));
    assert_eq!(
        counters(&mut c, "slow").map(|x| [x[0], x[1], x[2]]),
        Some([2, 2, 0])
    );
    // A wait that times out counts as denied.
    let r = rl(&mut c, &["RL.TAKE", "k", "slow", "BLOCK", "10"]);
    assert_eq!(r[0], 0);
    assert_eq!(
        counters(&mut c, "slow").map(|x| [x[0], x[1], x[2]]),
        Some([3, 2, 1])
    );
}

#[test]
fn command_docs_and_info_describe_policies() {
    let s = Server::start();
    let mut c = s.connect();
    let docs: Value = redis::cmd("COMMAND")
        .arg("DOCS")
        .arg("RL.TAKE")
        .arg("RL.POLICY")
        .query(&mut c)
        .unwrap();
    let text = format!("{docs:?}");
    for word in [
        "RL.TAKE",
        "RL.POLICY|SET",
        "RL.POLICY|GET",
        "RL.POLICY|DEL",
        "RL.POLICY|LIST",
        "SHADOW",
        "LOCKOUT",
        "BLOCK",
    ] {
        assert!(text.contains(word), "COMMAND DOCS lacks {word}");
    }
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("RL.TAKE")
        .arg("k1")
        .arg("api")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["k1"]);
    let keys: Vec<String> = redis::cmd("COMMAND")
        .arg("GETKEYS")
        .arg("RL.ALL")
        .arg("LIMIT")
        .arg("a")
        .arg("POLICY")
        .arg("p")
        .arg("LIMIT")
        .arg("b")
        .arg("SLIDING")
        .arg("1")
        .arg("1")
        .query(&mut c)
        .unwrap();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_policies"), 0);
    ok(&mut c, &["RL.POLICY", "SET", "api", "SLIDING", "1", "60"]);
    rl(&mut c, &["RL.TAKE", "k", "api"]);
    rl(&mut c, &["RL.TAKE", "k", "api"]);
    rl(&mut c, &["RL.TAKE", "k", "api", "DRYRUN"]);
    assert_eq!(counters(&mut c, "api"), Some([3, 1, 1, 0, 0]));
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_take_calls"), 3);
}
