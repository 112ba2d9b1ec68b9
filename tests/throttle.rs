//! CL.THROTTLE, the redis-cell drop-in, and RL.GCRA on a real server.
#![cfg(test)]

use redis_ratelimit_testkit::*;

#[test]
fn throttle_answers_like_redis_cell_readme() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "user123", "15", "30", "60", "1"]),
        [0, 16, 15, -1, 2]
    );
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "user123", "15", "30", "60"]),
        [0, 16, 14, -1, 4]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "user123"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
}

/// redis-cell's own rate_limit test table (limit 5 = max_burst 4, 1 per
/// second), replayed through the command: (at ms, quantity, limited,
/// remaining, retry_after s, reset_after s).
#[rustfmt::skip]
#[test]
fn throttle_replays_redis_cells_sequence() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    let rows: &[(u64, u64, i64, i64, i64, i64)] = &[
        (0,     6, 1, 5, -1, 0),   // larger than the maximum: never
        (0,     1, 0, 4, -1, 1),
        (0,     1, 0, 3, -1, 2),
        (0,     1, 0, 2, -1, 3),
        (0,     1, 0, 1, -1, 4),
        (0,     1, 0, 0, -1, 5),
        (0,     1, 1, 0, 1,  5),
        (3000,  1, 0, 2, -1, 3),
        (3100,  1, 0, 1, -1, 4),   // 3.9 s rounds up
        (4000,  1, 0, 1, -1, 4),
        (8000,  1, 0, 4, -1, 1),
        (9500,  1, 0, 4, -1, 1),
        (9500,  0, 0, 4, -1, 1),   // a peek
        (9500,  2, 0, 2, -1, 3),
        (9500,  5, 1, 2, 3,  3),
    ];
    for (i, &(at, q, limited, remaining, retry, reset)) in rows.iter().enumerate() {
        set_clock(&mut c, t + at * MS);
        let r = rl(&mut c, &["CL.THROTTLE", "foo", "4", "1", "1", &q.to_string()]);
        assert_eq!(r, [limited, 5, remaining, retry, reset], "row {i}");
    }
}

#[test]
fn throttle_takes_over_keys_redis_cell_left_behind() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // redis-cell keeps the theoretical arrival time in ns as a string: 3 s
    // ahead means 3 of 5 used (1 per second).
    ok(&mut c, &["SET", "cell", &(t + 3 * SEC).to_string()]);
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "cell", "4", "1", "1", "0"]),
        [0, 5, 2, -1, 3]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "cell"]),
        Ok(Value::SimpleString("string".into()))
    );
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "cell", "4", "1", "1", "2"]),
        [0, 5, 0, -1, 5]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "cell"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
    // Any other string is not limiter state.
    ok(&mut c, &["SET", "text", "hello"]);
    assert!(err(&mut c, &["CL.THROTTLE", "text", "4", "1", "1"]).starts_with("WRONGTYPE"));
    assert_eq!(bytes(&mut c, &["GET", "text"]), Some(b"hello".to_vec()));
}

/// CL.THROTTLE turns a key redis-cell left behind (a string) into an
/// rl-bucket and propagates the effect as RL.SETSTATE, which a replica and
/// an AOF replay apply to the key they hold, still the string: RL.SETSTATE
/// replaces it as the master did.
#[test]
fn a_redis_cell_key_taken_over_reaches_replicas_and_the_aof() {
    let master = Server::start_with(AOF_COMMANDS);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    ok(&mut c, &["SET", "cell", &(t + 3 * SEC).to_string()]);
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "cell", "4", "1", "1", "1"]),
        [0, 5, 1, -1, 4]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "cell"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
    drop(c);
    assert_eq!(assert_state_survives_everything(master, &replica), 1);
}

#[test]
fn throttle_validates_like_the_rest() {
    let s = Server::start();
    let mut c = s.connect();
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "1", "1"]),
        "ERR wrong number of arguments for 'CL.THROTTLE' command"
    );
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "1", "1", "1", "1", "1"]),
        "ERR wrong number of arguments for 'CL.THROTTLE' command"
    );
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "-1", "30", "60"]),
        "ERR max_burst must be an integer between 0 and 9223372036854775806"
    );
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "15", "0", "60"]),
        "ERR count_per_period must be an integer between 1 and 9223372036854775807"
    );
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "15", "30", "0"]),
        "ERR period must be an integer number of seconds between 1 and 9223372036854775807"
    );
    assert_eq!(
        err(&mut c, &["CL.THROTTLE", "k", "15", "30", "60", "x"]),
        "ERR quantity must be an integer between 0 and 9223372036854775807"
    );
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0);
}

#[test]
fn gcra_keeps_precision_at_high_rates_and_short_periods() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // 10,000 per second, bursts of 1: one every 100 us.
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "hf", "1", "10000", "1"]),
        [1, 1, 0, 0, 1]
    );
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "hf", "1", "10000", "1"]),
        [0, 1, 0, 1, 1]
    );
    set_clock(&mut c, t + 99_999);
    assert_eq!(rl(&mut c, &["RL.GCRA", "hf", "1", "10000", "1"])[0], 0);
    set_clock(&mut c, t + 100_000);
    assert_eq!(rl(&mut c, &["RL.GCRA", "hf", "1", "10000", "1"])[0], 1);
    // 30,000 per 3 seconds (sub-microsecond exactness: 100 us again), 50 per 0.25 s.
    set_clock(&mut c, t);
    for i in 0..5 {
        assert_eq!(
            rl(&mut c, &["RL.GCRA", "p", "5", "50", "0.25", "COST", "1"])[2],
            4 - i
        );
    }
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "p", "5", "50", "0.25"]),
        [0, 5, 0, 5, 25]
    );
    assert_eq!(
        rl(&mut c, &["RL.GCRA", "p", "5", "50", "0.25", "COST", "6"]),
        [0, 5, 0, -1, 25]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "p"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
}

#[test]
fn gcra_and_tokenbucket_share_state_semantics() {
    // RL.GCRA k burst rate period is RL.TOKENBUCKET k burst rate cost PERIOD period.
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let g = rl(&mut c, &["RL.GCRA", "g", "10", "5", "60", "COST", "3"]);
    let b = rl(
        &mut c,
        &["RL.TOKENBUCKET", "b", "10", "5", "3", "PERIOD", "60"],
    );
    assert_eq!(g, b);
    assert_eq!(bytes(&mut c, &["DUMP", "g"]), bytes(&mut c, &["DUMP", "b"]));
}
