//! INFO ratelimit, the module configuration, and what COMMAND INFO / DOCS
//! say about every command.
#![cfg(test)]

use redis_ratelimit_testkit::*;

fn info(c: &mut redis::Connection) -> std::collections::HashMap<String, u64> {
    let text: String = redis::cmd("INFO").arg("ratelimit").query(c).unwrap();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| {
            (
                k.trim_start_matches("ratelimit_").to_string(),
                v.trim().parse().unwrap(),
            )
        })
        .collect()
}

/// Values the server has taken out of the keyspace but not yet freed in
/// its background thread (`INFO memory`): the module counts a key until its
/// value is freed. `FLUSHALL ASYNC` frees that way on every server, and
/// Valkey 9.1's `DEBUG RELOAD` too (its `lazyfreed_objects` grows by the
/// old keys). The counter is raised before the command that queues the work
/// replies and lowered only after the values are freed.
fn lazyfree_pending(c: &mut redis::Connection) -> u64 {
    let text: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("lazyfree_pending_objects:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("INFO memory has lazyfree_pending_objects")
}

#[test]
fn info_counts_calls_decisions_errors_and_keys() {
    let s = Server::start();
    let mut c = s.connect();
    // On the test clock, at noon: the DAY and HOUR windows below do not
    // end (and their keys vanish from the counts) while the test runs.
    let day = 86_400 * SEC;
    let t = clock_start(&mut c) / day * day + day + day / 2;
    set_clock(&mut c, t);
    rl(&mut c, &["RL.TOKENBUCKET", "b", "1", "0.01", "1"]);
    rl(&mut c, &["RL.TOKENBUCKET", "b", "1", "0.01", "1"]);
    rl(&mut c, &["RL.TOKENBUCKET", "b", "1", "0.01", "1", "DRYRUN"]);
    rl(
        &mut c,
        &["RL.TOKENBUCKET", "b2", "5", "0.01", "1", "REFUND"],
    );
    err(&mut c, &["RL.TOKENBUCKET", "b", "x", "1", "1"]);
    err(&mut c, &["RL.TOKENBUCKET", "b"]); // arity: refused by Redis before the module
    rl(&mut c, &["RL.SLIDING", "w1", "5", "100"]);
    rl(&mut c, &["RL.SLIDING", "w2", "5", "100"]);
    rl(&mut c, &["RL.FIXED", "f", "5", "DAY"]);
    rl(&mut c, &["RL.GCRA", "g", "5", "1", "100"]);
    rl(&mut c, &["CL.THROTTLE", "t", "5", "1", "100"]);
    call(
        &mut c,
        &[
            "RL.ALL", "LIMIT", "a1", "SLIDING", "1", "100", "LIMIT", "a2", "FIXED", "1", "HOUR",
        ],
    )
    .unwrap();
    let i = info(&mut c);
    assert_eq!(
        (
            i["tokenbucket_calls"],
            i["tokenbucket_allowed"],
            i["tokenbucket_denied"],
            i["tokenbucket_dryruns"],
            i["tokenbucket_refunds"],
            i["tokenbucket_errors"]
        ),
        (5, 1, 1, 1, 1, 1)
    );
    assert_eq!((i["sliding_calls"], i["sliding_allowed"]), (2, 2));
    assert_eq!(
        (
            i["fixed_allowed"],
            i["gcra_allowed"],
            i["throttle_allowed"],
            i["all_allowed"]
        ),
        (1, 1, 1, 1)
    );
    // b, g, t are buckets; w1, w2, a1 windows; f, a2 fixed windows.
    assert_eq!(
        (i["keys_bucket"], i["keys_window"], i["keys_fixed"]),
        (3, 3, 2)
    );
    int(&mut c, &["DEL", "b", "w1"]);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    // The old dataset may still be freeing in the background (Valkey 9.1:
    // the counts read (4, 4, 4) then): once the server says nothing is left
    // to free, the counts are exact.
    assert!(wait_until(10, || lazyfree_pending(&mut c) == 0));
    let i = info(&mut c);
    assert_eq!(
        (i["keys_bucket"], i["keys_window"], i["keys_fixed"]),
        (2, 2, 2)
    );
    ok(&mut c, &["FLUSHALL", "ASYNC"]);
    assert!(wait_until(10, || lazyfree_pending(&mut c) == 0));
    let i = info(&mut c);
    assert_eq!(
        (i["keys_bucket"], i["keys_window"], i["keys_fixed"]),
        (0, 0, 0)
    );
}

#[test]
fn sliding_max_entries_is_a_range_checked_config() {
    let s = Server::start_with(&["--ratelimit.sliding-max-entries", "3"]);
    let mut c = s.connect();
    let get = |c: &mut redis::Connection| -> Vec<String> {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("ratelimit.sliding-max-entries")
            .query(c)
            .unwrap()
    };
    assert_eq!(
        get(&mut c),
        vec!["ratelimit.sliding-max-entries".to_string(), "3".to_string()]
    );
    let t = clock_start(&mut c);
    // Ten admissions at ten instants: kept as at most 3 entries.
    for i in 0..10 {
        set_clock(&mut c, t + i * MS);
        assert_eq!(rl(&mut c, &["RL.SLIDING", "capped", "100", "60"])[0], 1);
    }
    let capped = int(&mut c, &["MEMORY", "USAGE", "capped"]);
    // Merged units leave the window with the newest instant: later, never earlier.
    set_clock(&mut c, t + 60 * SEC + 3 * MS);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "capped", "100", "60", "COST", "0"])[2],
        100 - 8
    );
    let e = err(
        &mut c,
        &["CONFIG", "SET", "ratelimit.sliding-max-entries", "0"],
    );
    assert!(e.starts_with("ERR CONFIG SET failed"), "{e}");
    err(
        &mut c,
        &[
            "CONFIG",
            "SET",
            "ratelimit.sliding-max-entries",
            "100000001",
        ],
    );
    ok(
        &mut c,
        &["CONFIG", "SET", "ratelimit.sliding-max-entries", "1000"],
    );
    assert_eq!(get(&mut c)[1], "1000");
    for i in 0..10 {
        set_clock(&mut c, t + 100 * SEC + i * MS);
        rl(&mut c, &["RL.SLIDING", "exact", "100", "60"]);
    }
    assert!(int(&mut c, &["MEMORY", "USAGE", "exact"]) >= capped);
}

#[test]
fn command_info_and_docs_describe_every_command() {
    let s = Server::start();
    let mut c = s.connect();
    let commands = [
        ("RL.TOKENBUCKET", -5),
        ("RL.SLIDING", -4),
        ("RL.GCRA", -5),
        ("RL.FIXED", -4),
        ("CL.THROTTLE", -5),
        ("GCRA", -5),
        ("RL.ALL", -4),
        ("RL.TAKEALL", -4),
        ("RL.SETSTATE", 3),
        ("RL.WINDOWADD", 3),
        ("RL.WINDOWREFUND", 3),
    ];
    for (name, arity) in commands {
        let info = call(&mut c, &["COMMAND", "INFO", name]).unwrap();
        let Value::Array(outer) = info else { panic!() };
        let Value::Array(fields) = &outer[0] else {
            panic!("{name}: {outer:?}")
        };
        assert_eq!(fields[1], Value::Int(arity), "{name}");
        let text = format!("{fields:?}");
        for f in ["write", "denyoom"] {
            assert!(text.contains(f), "{name} lacks {f}: {text}");
        }
        assert!(
            text.contains("\"RW\"") || text.contains("\"OW\""),
            "{name} key spec flags: {text}"
        );
        let docs = format!("{:?}", call(&mut c, &["COMMAND", "DOCS", name]).unwrap());
        assert!(
            docs.contains("summary") && docs.contains("arguments") && docs.contains("complexity"),
            "{name}: {docs}"
        );
    }
    // Limiters are fast; the internal commands and RL.ALL are not.
    for name in [
        "RL.TOKENBUCKET",
        "RL.SLIDING",
        "RL.GCRA",
        "RL.FIXED",
        "CL.THROTTLE",
        "GCRA",
    ] {
        let info = format!("{:?}", call(&mut c, &["COMMAND", "INFO", name]).unwrap());
        assert!(info.contains("\"fast\""), "{name}");
    }
    // Redis checks the arity itself now.
    assert_eq!(
        err(&mut c, &["RL.GCRA", "k", "1", "1"]),
        "ERR wrong number of arguments for 'RL.GCRA' command"
    );
}
