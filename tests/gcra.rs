//! GCRA, the command announced for Redis 8.8 (`GCRA key max_burst
//! tokens_per_period period [TOKENS count]`), registered where the server
//! has none: redis.io's walkthrough, random sequences against CL.THROTTLE,
//! its own grammar (a decimal period, TOKENS), and a server whose own
//! command holds the name.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// redis.io's rate-limiting walkthrough: `GCRA api:user:1 3 5 10` five
/// times, then once more 2 s later, answers what `CL.THROTTLE api:user:1 3
/// 5 10` answers (on another key, at the same instants): a burst of 4, one
/// token every 2 s.
#[test]
fn the_redis_io_walkthrough_answers_as_cl_throttle() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    let want: [[i64; 5]; 6] = [
        [0, 4, 3, -1, 2],
        [0, 4, 2, -1, 4],
        [0, 4, 1, -1, 6],
        [0, 4, 0, -1, 8],
        [1, 4, 0, 2, 8],
        [0, 4, 0, -1, 8],
    ];
    for (i, w) in want.iter().enumerate() {
        set_clock(&mut c, t + if i == 5 { 2 * SEC } else { 0 });
        let gcra = rl(&mut c, &["GCRA", "api:user:1", "3", "5", "10"]);
        let cell = rl(&mut c, &["CL.THROTTLE", "api:user:2", "3", "5", "10"]);
        assert_eq!(gcra, *w, "call {}", i + 1);
        assert_eq!(gcra, cell, "call {}: GCRA and CL.THROTTLE", i + 1);
    }
    assert_eq!(
        call(&mut c, &["TYPE", "api:user:1"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
    assert_eq!(info_int(&mut c, "ratelimit", "ratelimit_gcra_cmd_calls"), 6);
    assert_eq!(
        info_int(&mut c, "ratelimit", "ratelimit_gcra_registered"),
        1
    );
}

/// Random sequences of calls and clock steps: GCRA and CL.THROTTLE, with
/// the same arguments on two keys, answer alike at every step and leave
/// the same expiry. (Their intervals agree where period / tokens_per_period is
/// a whole number of microseconds, as here; elsewhere GCRA rounds to the
/// nearest microsecond and CL.THROTTLE truncates to the nanosecond.)
#[test]
fn random_sequences_answer_as_cl_throttle() {
    let seed = Rng::seed_from_env("RL_GCRA_SEED");
    println!("RL_GCRA_SEED={seed}");
    let mut r = Rng::new(seed);
    let s = Server::start();
    let mut c = s.connect();
    let mut t = clock_start(&mut c);
    for round in 0..40 {
        let burst = r.below(8).to_string();
        let count = r.pick(&[1u64, 2, 4, 5, 8, 10, 16, 25]).to_string();
        let period = (1 + r.below(30)).to_string();
        let (g, k) = (format!("g{round}"), format!("k{round}"));
        for step in 0..30 {
            t += r.below(1500) * MS + r.below(1000) * 1000;
            set_clock(&mut c, t);
            let q = r.pick(&[0u64, 1, 1, 1, 2, 3, 9]).to_string();
            let mut gcra = vec!["GCRA", &g, &burst, &count, &period];
            if q != "1" || r.one_in(2) {
                gcra.extend(["TOKENS", &q]);
            }
            let a = rl(&mut c, &gcra);
            let b = rl(&mut c, &["CL.THROTTLE", &k, &burst, &count, &period, &q]);
            let at = format!("seed {seed}, round {round} step {step}: {gcra:?}");
            assert_eq!(a, b, "{at}");
            assert_eq!(
                int(&mut c, &["PEXPIRETIME", &g]),
                int(&mut c, &["PEXPIRETIME", &k]),
                "{at}: expiry"
            );
        }
    }
}

#[test]
fn gcra_reads_a_decimal_period_and_tokens_and_refuses_the_rest() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // 1 token every 1.5 s, a burst of 1: the second waits 1.5 s (2 in whole seconds).
    assert_eq!(
        rl(&mut c, &["GCRA", "f", "0", "1", "1.5"]),
        [0, 1, 0, -1, 2]
    );
    assert_eq!(rl(&mut c, &["GCRA", "f", "0", "1", "1.5"]), [1, 1, 0, 2, 2]);
    let at_ms = i64::try_from(t / MS).unwrap();
    assert_eq!(int(&mut c, &["PEXPIRETIME", "f"]), at_ms + 1500);
    // TOKENS: a cost; 0 a peek; above the burst, never (-1).
    assert_eq!(
        rl(&mut c, &["GCRA", "t", "4", "1", "1", "tokens", "3"]),
        [0, 5, 2, -1, 3]
    );
    assert_eq!(
        rl(&mut c, &["GCRA", "t", "4", "1", "1", "TOKENS", "0"]),
        [0, 5, 2, -1, 3]
    );
    assert_eq!(
        rl(&mut c, &["GCRA", "t", "4", "1", "1", "TOKENS", "6"]),
        [1, 5, 2, -1, 3]
    );
    let before = int(&mut c, &["DBSIZE"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["GCRA", "x", "1", "1", "0.5"],
            "ERR period must be a number of seconds of at least 1, with at most 6 decimals",
        ),
        (
            &["GCRA", "x", "1", "0", "1"],
            "ERR tokens_per_period must be an integer between 1 and 9223372036854775807",
        ),
        (
            &["GCRA", "x", "-1", "1", "1"],
            "ERR max_burst must be an integer between 0 and 9223372036854775806",
        ),
        (&["GCRA", "x", "1", "1", "1", "TOKENS"], "ERR syntax error"),
        (
            &["GCRA", "x", "1", "1", "1", "COST", "1"],
            "ERR syntax error",
        ),
        (
            &["GCRA", "x", "1", "1", "1", "TOKENS", "-1"],
            "ERR TOKENS must be an integer between 0 and 9223372036854775807",
        ),
        (
            &["GCRA", "x", "1", "1"],
            "ERR wrong number of arguments for 'GCRA' command",
        ),
        (
            &["GCRA", "x", "1", "1", "1", "TOKENS", "1", "x"],
            "ERR wrong number of arguments for 'GCRA' command",
        ),
    ];
    for (args, want) in cases {
        assert_eq!(err(&mut c, args), *want, "{args:?}");
    }
    assert_eq!(int(&mut c, &["DBSIZE"]), before);
    ok(&mut c, &["SET", "s", "a string"]);
    assert!(err(&mut c, &["GCRA", "s", "1", "1", "1"]).starts_with("WRONGTYPE"));
    // COMMAND DOCS lists TOKENS as an optional token.
    let docs = format!("{:?}", call(&mut c, &["COMMAND", "DOCS", "GCRA"]).unwrap());
    assert!(
        docs.contains("TOKENS") && docs.contains("tokens_per_period"),
        "{docs}"
    );
}

/// A server whose own command holds the name (here SET renamed GCRA, as a
/// server with a native GCRA would): the module loads, leaves it alone,
/// and INFO says so.
#[test]
fn a_server_with_its_own_gcra_keeps_it() {
    let s = Server::start_with(&["--rename-command", "SET", "GCRA"]);
    let mut c = s.connect();
    ok(&mut c, &["GCRA", "k", "v"]);
    assert_eq!(
        call(&mut c, &["GET", "k"]),
        Ok(Value::BulkString(b"v".to_vec()))
    );
    let info: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
    assert!(info.contains("ratelimit_gcra_registered:0"), "{info}");
    // The module's other commands are there.
    assert_eq!(rl(&mut c, &["CL.THROTTLE", "t", "1", "1", "1"])[0], 0);
}
