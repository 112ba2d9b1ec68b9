//! RL.ALL on a real server: all or nothing, every algorithm inside it,
//! GETKEYS, replicas.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// RL.ALL's six integers.
fn all(c: &mut redis::Connection, args: &[&str]) -> [i64; 6] {
    let mut cmd = vec!["RL.ALL"];
    cmd.extend_from_slice(args);
    match call(c, &cmd) {
        Ok(Value::Array(v)) => {
            let v: Vec<i64> = v
                .iter()
                .map(|x| {
                    if let Value::Int(i) = x {
                        *i
                    } else {
                        panic!("{x:?}")
                    }
                })
                .collect();
            v.try_into().unwrap()
        }
        other => panic!("{cmd:?}: {other:?}"),
    }
}

#[test]
fn ten_a_minute_and_five_hundred_a_day() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let args = [
        "LIMIT",
        "{u42}:min",
        "SLIDING",
        "10",
        "60",
        "LIMIT",
        "{u42}:day",
        "FIXED",
        "500",
        "DAY",
        "TZ",
        "America/New_York",
    ];
    for i in 0..10 {
        let r = all(&mut c, &args);
        assert_eq!(r[0..4], [1, 10, 9 - i, 0]);
        assert_eq!(r[5], 1, "the minute limit binds");
    }
    // The minute limit denies: the day limit spends nothing.
    let r = all(&mut c, &args);
    assert_eq!(r[0..4], [0, 10, 0, 60_000]);
    assert_eq!(r[5], 1);
    assert_eq!(
        rl(
            &mut c,
            &[
                "RL.FIXED",
                "{u42}:day",
                "500",
                "DAY",
                "TZ",
                "America/New_York",
                "COST",
                "0"
            ]
        )[2],
        490
    );
}

#[test]
fn all_or_nothing_under_mixed_outcomes() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // Exhaust the GCRA limit directly.
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "g", "2", "1", "10", "COST", "2"])[0],
        1
    );
    let before: Vec<_> = ["tb", "sw", "fw", "g"]
        .iter()
        .map(|k| bytes(&mut c, &["DUMP", k]))
        .collect();
    let args = [
        "COST",
        "1",
        "LIMIT",
        "tb",
        "TOKENBUCKET",
        "5",
        "1",
        "PERIOD",
        "10",
        "LIMIT",
        "sw",
        "SLIDING",
        "5",
        "10",
        "LIMIT",
        "fw",
        "FIXED",
        "5",
        "MINUTE",
        "LIMIT",
        "g",
        "GCRA",
        "2",
        "1",
        "10",
    ];
    let r = all(&mut c, &args);
    assert_eq!(r, [0, 2, 0, 10_000, 20_000, 4]);
    let after: Vec<_> = ["tb", "sw", "fw", "g"]
        .iter()
        .map(|k| bytes(&mut c, &["DUMP", k]))
        .collect();
    assert_eq!(before, after, "a denial anywhere changes nothing anywhere");
    // Later every limit allows, and every one consumes.
    set_clock(&mut c, t + 10 * SEC);
    let r = all(&mut c, &args);
    assert_eq!(r[0], 1);
    assert_eq!(
        rl(
            &mut c,
            &["RL.TOKENBUCKET", "tb", "5", "1", "0", "PERIOD", "10"]
        )[2],
        4
    );
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "sw", "5", "10", "COST", "0"])[2],
        4
    );
    assert_eq!(
        rl(&mut c, &["RL.FIXED", "fw", "5", "MINUTE", "COST", "0"])[2],
        4
    );
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "g", "2", "1", "10", "COST", "0"])[2],
        0
    );
}

#[test]
fn per_limit_costs_dry_runs_and_refunds() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let base = [
        "LIMIT",
        "a",
        "TOKENBUCKET",
        "10",
        "1",
        "COST",
        "4",
        "LIMIT",
        "b",
        "SLIDING",
        "10",
        "60",
    ];
    let mut dry = vec!["COST", "2", "DRYRUN"];
    dry.extend_from_slice(&base);
    let d = all(&mut c, &dry);
    assert_eq!(d, [1, 10, 6, 0, 4_000, 1]);
    assert_eq!(int(&mut c, &["EXISTS", "a", "b"]), 0);
    let mut real = vec!["COST", "2"];
    real.extend_from_slice(&base);
    assert_eq!(all(&mut c, &real), d);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "b", "10", "60", "COST", "0"])[2],
        8
    );
    let mut refund = vec!["COST", "2", "REFUND"];
    refund.extend_from_slice(&base);
    let r = all(&mut c, &refund);
    assert_eq!(r[0..3], [1, 10, 10]);
    assert_eq!(int(&mut c, &["EXISTS", "a", "b"]), 0, "both back to fresh");
}

#[test]
fn flags_may_close_the_command() {
    let s = Server::start();
    let mut c = s.connect();
    let r = all(
        &mut c,
        &[
            "LIMIT", "a", "SLIDING", "5", "60", "LIMIT", "b", "GCRA", "5", "1", "1", "COST", "2",
            "DRYRUN",
        ],
    );
    assert_eq!(r[0..3], [1, 5, 3]);
    assert_eq!(int(&mut c, &["EXISTS", "a", "b"]), 0);
    assert_eq!(
        err(
            &mut c,
            &["RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "DRYRUN", "DRYRUN"]
        ),
        "ERR syntax error"
    );
    let keys = call(
        &mut c,
        &[
            "COMMAND", "GETKEYS", "RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "DRYRUN", "LIMIT",
            "b", "GCRA", "5", "1", "1", "REFUND", "COST", "2",
        ],
    );
    assert_eq!(
        keys,
        Ok(Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"b".to_vec())
        ]))
    );
}

#[test]
fn getkeys_lists_every_key() {
    let s = Server::start();
    let mut c = s.connect();
    let r = call(
        &mut c,
        &[
            "COMMAND",
            "GETKEYS",
            "RL.ALL",
            "COST",
            "2",
            "DRYRUN",
            "LIMIT",
            "k1",
            "TOKENBUCKET",
            "5",
            "1",
            "PERIOD",
            "60",
            "COST",
            "1",
            "LIMIT",
            "LIMIT",
            "GCRA",
            "3",
            "1",
            "1",
            "LIMIT",
            "k3",
            "FIXED",
            "3",
            "DAY",
            "TZ",
            "UTC",
            "LIMIT",
            "k4",
            "SLIDING",
            "3",
            "1",
        ],
    );
    let keys = ["k1", "LIMIT", "k3", "k4"]
        .iter()
        .map(|k| Value::BulkString(k.as_bytes().to_vec()))
        .collect();
    assert_eq!(r, Ok(Value::Array(keys)));
}

#[test]
fn malformed_limits_reject_the_whole_command() {
    let s = Server::start();
    let mut c = s.connect();
    let before = dirty(&mut c);
    let cases: &[(&[&str], &str)] = &[
        (
            &["RL.ALL", "LIMIT", "a", "SLIDING"],
            "ERR wrong number of arguments for 'RL.ALL' command",
        ),
        (
            &["RL.ALL", "LIMIT", "a", "SLIDING", "5"],
            "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years",
        ),
        (
            &[
                "RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "LIMIT", "b", "LEAKY", "1", "1",
            ],
            "ERR each limit is a key, then TOKENBUCKET, SLIDING, GCRA, FIXED, CONCURRENCY or POLICY",
        ),
        (
            &[
                "RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "LIMIT", "b", "SLIDING", "0", "60",
            ],
            "ERR limit must be an integer between 1 and 9223372036854775807",
        ),
        (
            &[
                "RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "LIMIT", "a", "FIXED", "5", "60",
            ],
            "ERR RL.ALL needs a different key for each LIMIT",
        ),
        (
            &["RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "PERIOD", "5"],
            "ERR syntax error",
        ),
        (
            &["RL.ALL", "LIMIT", "a", "TOKENBUCKET", "5", "1", "TZ", "UTC"],
            "ERR syntax error",
        ),
        (
            &["RL.ALL", "COST", "-1", "LIMIT", "a", "SLIDING", "5", "60"],
            "ERR COST must be an integer between 0 and 9223372036854775807",
        ),
        (
            // The first-key form: NOPE is the first key, LIMIT no algorithm.
            &["RL.ALL", "NOPE", "LIMIT", "a", "SLIDING", "5", "60"],
            "ERR each limit is a key, then TOKENBUCKET, SLIDING, GCRA, FIXED, CONCURRENCY or POLICY",
        ),
        (
            &["RL.ALL", "LIMIT", "a", "SLIDING", "5", "60", "EXTRA"],
            "ERR syntax error",
        ),
        (
            &[
                "RL.ALL",
                "LIMIT",
                "a",
                "FIXED",
                "5",
                "60",
                "TZ",
                "Nowhere/Land",
            ],
            "ERR TZ must be an IANA time zone name such as America/New_York",
        ),
    ];
    for (args, expected) in cases {
        assert_eq!(&err(&mut c, args), expected, "{args:?}");
    }
    assert_eq!(int(&mut c, &["EXISTS", "a", "b"]), 0);
    assert_eq!(dirty(&mut c), before);
}

#[test]
fn a_replica_is_byte_identical_after_rl_all_traffic() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    // On the test clock, the middle of an hour: on the real clock, within
    // 2 s of the top of an hour the hour's fixed window expired during the
    // comparison (which ignores keys about to expire) and one key was missing.
    let hour = 3600 * SEC;
    let t = clock_start(&mut m) / hour * hour + hour + hour / 2;
    for i in 0..300 {
        set_clock(&mut m, t + i * 7 * MS);
        let cost = (i % 3).to_string();
        all(
            &mut m,
            &[
                "COST",
                &cost,
                "LIMIT",
                "{x}:tb",
                "TOKENBUCKET",
                "20",
                "2",
                "LIMIT",
                "{x}:sw",
                "SLIDING",
                "30",
                "20",
                "LIMIT",
                "{x}:fw",
                "FIXED",
                "40",
                "HOUR",
                "LIMIT",
                "{x}:g",
                "GCRA",
                "25",
                "1",
                "1",
            ],
        );
    }
    wait_replicas(&mut m, 1);
    assert_eq!(assert_same_state(&mut m, &mut r), 4);
}

/// RL.ALL's first-key form (its first argument is its first clause's key,
/// so clients that route by the first argument find the node) decides as
/// the keyword form does, and RL.TAKEALL takes it too.
#[test]
fn the_first_key_form_decides_as_the_keyword_form() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    ok(&mut c, &["RL.POLICY", "SET", "day", "FIXED", "3", "DAY"]);
    for i in 0..4 {
        let keyword = all(
            &mut c,
            &[
                "LIMIT", "k:m", "SLIDING", "2", "60", "LIMIT", "k:d", "POLICY", "day",
            ],
        );
        let first_key = all(
            &mut c,
            &["f:m", "SLIDING", "2", "60", "LIMIT", "f:d", "POLICY", "day"],
        );
        assert_eq!(keyword, first_key, "call {i}");
        let mut cmd = vec!["RL.TAKEALL", "t:d", "POLICY", "day", "COST", "1"];
        if i == 3 {
            cmd.push("DRYRUN");
        }
        let r = call(&mut c, &cmd);
        let Ok(Value::Array(r)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            r[0],
            Value::Int(i64::from(i < 3)),
            "RL.TAKEALL call {i}: {r:?}"
        );
    }
    // Request flags stand anywhere; a COST after the first key is its own.
    let r = all(
        &mut c,
        &[
            "g:a", "GCRA", "5", "1", "1", "COST", "2", "DRYRUN", "LIMIT", "g:b", "SLIDING", "5",
            "60",
        ],
    );
    assert_eq!(r[..3], [1, 5, 3]);
    assert_eq!(int(&mut c, &["EXISTS", "g:a", "g:b"]), 0);
    let keys = call(
        &mut c,
        &[
            "COMMAND", "GETKEYS", "RL.ALL", "g:a", "GCRA", "5", "1", "1", "LIMIT", "LIMIT",
            "SLIDING", "5", "60",
        ],
    );
    assert_eq!(
        keys,
        Ok(Value::Array(vec![
            Value::BulkString(b"g:a".to_vec()),
            Value::BulkString(b"LIMIT".to_vec())
        ]))
    );
    // The shortest call; one word fewer is refused by Redis itself.
    let r = call(&mut c, &["RL.TAKEALL", "short", "POLICY", "day"]);
    assert!(
        matches!(&r, Ok(Value::Array(v)) if v[0] == Value::Int(1)),
        "{r:?}"
    );
    assert_eq!(
        err(&mut c, &["RL.ALL", "a", "SLIDING"]),
        "ERR wrong number of arguments for 'RL.ALL' command"
    );
    // A first key named like a request option or LIMIT starts the keyword form.
    assert_eq!(
        err(&mut c, &["RL.ALL", "LIMIT", "SLIDING", "1", "60"]),
        "ERR each limit is a key, then TOKENBUCKET, SLIDING, GCRA, FIXED, CONCURRENCY or POLICY"
    );
    // COMMAND INFO: the legacy first key is word 1 (key spec 0), and the
    // keys stay movable (Redis asks the module for every key).
    let info = format!(
        "{:?}",
        call(&mut c, &["COMMAND", "INFO", "RL.ALL"]).unwrap()
    );
    assert!(info.contains("movablekeys"), "{info}");
    let Ok(Value::Array(outer)) = call(&mut c, &["COMMAND", "INFO", "RL.ALL"]) else {
        panic!()
    };
    let Value::Array(fields) = &outer[0] else {
        panic!()
    };
    assert_eq!(
        fields[3..6],
        [Value::Int(1), Value::Int(1), Value::Int(1)],
        "{info}"
    );
}
