//! State survives DEBUG RELOAD, a restart from RDB and a restart from AOF
//! (replayed commands and rewritten files) byte for byte, expiry included.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// A mix of states: full and partial buckets, logs with run-length counts,
/// a log whose oldest entries were trimmed.
fn make_traffic(c: &mut redis::Connection) {
    // An hour ahead of the real clock: even the 30 ms window's key outlives
    // the restarts below.
    let t = clock_start(c);
    for i in 0..20u64 {
        set_clock(c, t + i * 7 * MS);
        rl(
            c,
            &[
                "RL.TOKENBUCKET",
                &format!("b:{}", i % 5),
                "10",
                "2",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["RL.TOKENBUCKET", "b:fast", "1000", "1e4", "7"]);
        rl(
            c,
            &[
                "RL.SLIDING",
                &format!("w:{}", i % 4),
                "50",
                "300",
                "COST",
                &(1 + i % 3).to_string(),
            ],
        );
        rl(c, &["RL.SLIDING", "w:trimmed", "5", "0.03"]);
        rl(
            c,
            &[
                "RL.GCRA",
                &format!("g:{}", i % 3),
                "20",
                "5",
                "60",
                "COST",
                &(1 + i % 2).to_string(),
            ],
        );
        rl(
            c,
            &[
                "RL.FIXED",
                &format!("f:{}", i % 3),
                "100",
                "DAY",
                "TZ",
                "America/New_York",
                "COST",
                &(i % 4).to_string(),
            ],
        );
        rl(c, &["CL.THROTTLE", "cell", "15", "30", "60"]);
        call(
            c,
            &[
                "RL.ALL", "LIMIT", "all:a", "SLIDING", "9", "300", "LIMIT", "all:b", "FIXED", "30",
                "HOUR",
            ],
        )
        .unwrap();
        if i % 5 == 0 {
            rl(
                c,
                &[
                    "RL.SLIDING",
                    &format!("w:{}", i % 4),
                    "50",
                    "300",
                    "COST",
                    "1",
                    "REFUND",
                ],
            );
            rl(
                c,
                &[
                    "RL.FIXED",
                    &format!("f:{}", i % 3),
                    "100",
                    "DAY",
                    "TZ",
                    "America/New_York",
                    "REFUND",
                ],
            );
        }
    }
    real_clock(c);
}

fn assert_same(
    before: &[(String, Option<Vec<u8>>, i64)],
    after: &[(String, Option<Vec<u8>>, i64)],
) {
    assert!(!before.is_empty());
    assert_eq!(before.len(), after.len(), "key sets differ");
    for (b, a) in before.iter().zip(after) {
        assert_eq!(b, a, "key {} changed", b.0);
    }
}

#[test]
fn debug_reload_gives_back_the_same_state() {
    let s = Server::start();
    let mut c = s.connect();
    make_traffic(&mut c);
    let before = state_of(&mut c);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    assert_same(&before, &state_of(&mut c));
}

#[test]
fn restart_from_rdb_gives_back_the_same_state() {
    let s = Server::start();
    let mut c = s.connect();
    make_traffic(&mut c);
    let before = state_of(&mut c);
    let s = s.restart(true);
    let mut c = s.connect();
    assert_same(&before, &state_of(&mut c));
    // And the limiter keeps deciding from it.
    let r = rl(&mut c, &["RL.TOKENBUCKET", "b:fast", "1000", "1e4", "0"]);
    assert!(r[2] < 1000, "{r:?}");
}

#[test]
fn restart_from_replayed_aof_commands_gives_back_the_same_state() {
    // Without the RDB preamble the AOF is the propagated RL.SETSTATE and
    // RL.WINDOWADD commands, replayed on load.
    let s = Server::start_with(&[
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ]);
    let mut c = s.connect();
    make_traffic(&mut c);
    let before = state_of(&mut c);
    let s = s.restart(false);
    let mut c = s.connect();
    assert_same(&before, &state_of(&mut c));
}

#[test]
fn restart_from_a_rewritten_aof_gives_back_the_same_state() {
    for preamble in ["no", "yes"] {
        let s = Server::start_with(&["--appendonly", "yes", "--aof-use-rdb-preamble", preamble]);
        let mut c = s.connect();
        make_traffic(&mut c);
        let before = state_of(&mut c);
        call(&mut c, &["BGREWRITEAOF"]).unwrap();
        assert!(wait_until(20, || {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
            info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
                && info.contains("aof_last_bgrewrite_status:ok")
        }));
        let s = s.restart(false);
        let mut c = s.connect();
        assert_same(&before, &state_of(&mut c));
    }
}

#[test]
fn restore_refuses_corrupted_payloads() {
    let s = Server::start();
    let mut c = s.connect();
    make_traffic(&mut c);
    for key in ["b:1", "w:1"] {
        let dump = bytes(&mut c, &["DUMP", key]).unwrap();
        // Flip each byte in turn; RESTORE must refuse or restore something
        // valid, never crash.
        for i in 0..dump.len() {
            let mut bad = dump.clone();
            bad[i] ^= 0x5a;
            let mut cmd = redis::cmd("RESTORE");
            cmd.arg("copy").arg(0).arg(bad).arg("REPLACE");
            let _ = cmd.query::<Value>(&mut c);
        }
        // Truncations, too.
        for n in 0..dump.len() {
            let mut cmd = redis::cmd("RESTORE");
            cmd.arg("copy").arg(0).arg(&dump[..n]).arg("REPLACE");
            assert!(cmd.query::<Value>(&mut c).is_err());
        }
    }
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
}
