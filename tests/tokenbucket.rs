//! RL.TOKENBUCKET on a real server: every reply field, TTL, peek, denial,
//! WRONGTYPE, registration.
#![cfg(test)]

use redis_ratelimit_testkit::*;

#[test]
fn a_new_key_starts_full() {
    let s = Server::start();
    let mut c = s.connect();
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "user:42", "10", "1", "1"]),
        [1, 10, 9, 0, 1000]
    );
    assert_eq!(
        call(&mut c, &["TYPE", "user:42"]),
        Ok(Value::SimpleString("rl-bucket".into()))
    );
}

#[test]
fn fields_follow_continuous_refill() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let k = &["RL.TOKENBUCKET", "k", "10", "1", "1"];
    for left in (0..10).rev() {
        let r = rl(&mut c, k);
        assert_eq!(r[..4], [1, 10, left, 0]);
        assert_eq!(r[4], (10 - left) * 1000);
    }
    assert_eq!(rl(&mut c, k), [0, 10, 0, 1000, 10_000]);
    set_clock(&mut c, t + 500 * MS);
    assert_eq!(rl(&mut c, k), [0, 10, 0, 500, 9_500]);
    set_clock(&mut c, t + 999 * MS + 1);
    assert_eq!(rl(&mut c, k), [0, 10, 0, 1, 9_001]);
    set_clock(&mut c, t + SEC);
    assert_eq!(rl(&mut c, k), [1, 10, 0, 0, 10_000]);
    // Continuous: 2.5 s later 2.5 tokens have come back; 2 are whole.
    set_clock(&mut c, t + 3_500 * MS);
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "k", "10", "1", "0"]),
        [1, 10, 2, 0, 7_500]
    );
}

#[test]
fn period_scales_the_rate() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    // 10 per minute, bursts of 10: a token every 6 s.
    let k = &["RL.TOKENBUCKET", "m", "10", "10", "10", "PERIOD", "60"];
    assert_eq!(rl(&mut c, k), [1, 10, 0, 0, 60_000]);
    assert_eq!(
        rl(
            &mut c,
            &["RL.TOKENBUCKET", "m", "10", "10", "1", "period", "60"]
        ),
        [0, 10, 0, 6_000, 60_000]
    );
    // 0.5 per second: a token every 2 s.
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "h", "1", "0.5", "1"]),
        [1, 1, 0, 0, 2_000]
    );
    // 1e4 per second: 100 us a token; 3 tokens need 300 us -> 1 ms.
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "fast", "3", "1e4", "3"]),
        [1, 3, 0, 0, 1]
    );
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "fast", "3", "1e4", "1"]),
        [0, 3, 0, 1, 1]
    );
    set_clock(&mut c, t + 100_000);
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "fast", "3", "1e4", "1"]),
        [1, 3, 0, 0, 1]
    );
}

#[test]
fn ttl_equals_reset_after() {
    let s = Server::start();
    let mut c = s.connect();
    let (t0, r, t1) = bracketed(&mut c, &["RL.TOKENBUCKET", "ttl", "5", "1", "3"]);
    assert_eq!(r, [1, 5, 2, 0, 3000]);
    // The expiry is the decision instant (between the server's TIME before
    // and after the call) plus the 3 s to full, rounded up to a millisecond:
    // never earlier than the bucket is full again.
    let expiry = int(&mut c, &["PEXPIRETIME", "ttl"]) as u64;
    let (earliest, latest) = ((t0 + 3 * SEC).div_ceil(MS), (t1 + 3 * SEC).div_ceil(MS));
    assert!(
        (earliest..=latest).contains(&expiry),
        "expires at {expiry} ms, not in [{earliest}, {latest}]"
    );
    // And on the test clock, exactly.
    let t = clock_start(&mut c) + 700_001;
    set_clock(&mut c, t);
    rl(&mut c, &["RL.TOKENBUCKET", "exact", "5", "1", "3"]);
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", "exact"]) as u64,
        (t + 3 * SEC).div_ceil(MS)
    );
    real_clock(&mut c);
    // The key expires when the bucket is full again: then it is gone.
    let s2 = rl(&mut c, &["RL.TOKENBUCKET", "short", "1", "1000", "1"]);
    assert_eq!(s2[4], 1);
    assert!(wait_until(2, || int(&mut c, &["EXISTS", "short"]) == 0));
}

#[test]
fn peek_and_denial_write_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    let before = dirty(&mut c);
    // A peek on a missing key answers a full bucket and creates nothing.
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "p", "4", "1", "0"]),
        [1, 4, 4, 0, 0]
    );
    assert_eq!(int(&mut c, &["EXISTS", "p"]), 0);
    assert_eq!(dirty(&mut c), before);
    rl(&mut c, &["RL.TOKENBUCKET", "p", "4", "1", "4"]);
    let after_write = dirty(&mut c);
    assert_eq!(after_write, before + 1);
    let dump = bytes(&mut c, &["DUMP", "p"]);
    let expire = int(&mut c, &["PEXPIRETIME", "p"]);
    // Denied and peeked: same bytes, same expiry, nothing dirty.
    assert_eq!(rl(&mut c, &["RL.TOKENBUCKET", "p", "4", "1", "1"])[0], 0);
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "p", "4", "1", "0"])[0..3],
        [1, 4, 0]
    );
    assert_eq!(rl(&mut c, &["RL.TOKENBUCKET", "p", "4", "1", "5"])[3], -1);
    assert_eq!(bytes(&mut c, &["DUMP", "p"]), dump);
    assert_eq!(int(&mut c, &["PEXPIRETIME", "p"]), expire);
    assert_eq!(dirty(&mut c), after_write);
}

#[test]
fn denied_requests_do_not_break_watch() {
    let s = Server::start();
    let mut c = s.connect();
    let mut other = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    rl(&mut c, &["RL.TOKENBUCKET", "w", "1", "1", "1"]);
    ok(&mut c, &["WATCH", "w"]);
    // Another client is denied (and peeks): nothing changed, so WATCH holds.
    assert_eq!(
        rl(&mut other, &["RL.TOKENBUCKET", "w", "1", "1", "1"])[0],
        0
    );
    assert_eq!(
        rl(&mut other, &["RL.TOKENBUCKET", "w", "1", "1", "0"])[0],
        1
    );
    ok(&mut c, &["MULTI"]);
    call(&mut c, &["PING"]).unwrap();
    assert!(matches!(call(&mut c, &["EXEC"]), Ok(Value::Array(v)) if v.len() == 1));
    // An allowed request is a change: WATCH fails.
    ok(&mut c, &["WATCH", "w"]);
    set_clock(&mut c, t + 5 * SEC);
    assert_eq!(
        rl(&mut other, &["RL.TOKENBUCKET", "w", "1", "1", "1"])[0],
        1
    );
    ok(&mut c, &["MULTI"]);
    call(&mut c, &["PING"]).unwrap();
    assert_eq!(call(&mut c, &["EXEC"]), Ok(Value::Nil));
}

#[test]
fn other_types_are_refused_and_untouched() {
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["SET", "str", "hello"]);
    int(&mut c, &["INCR", "counter"]);
    int(&mut c, &["LPUSH", "list", "a"]);
    let wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value";
    for k in ["str", "counter", "list"] {
        assert_eq!(
            err(&mut c, &["RL.TOKENBUCKET", k, "10", "1", "1"]),
            wrongtype
        );
        assert_eq!(
            err(&mut c, &["RL.TOKENBUCKET", k, "10", "1", "0"]),
            wrongtype
        );
    }
    assert_eq!(bytes(&mut c, &["GET", "str"]), Some(b"hello".to_vec()));
    assert_eq!(bytes(&mut c, &["GET", "counter"]), Some(b"1".to_vec()));
    // A sliding window and a bucket do not share keys.
    rl(&mut c, &["RL.SLIDING", "win", "10", "60"]);
    assert_eq!(
        err(&mut c, &["RL.TOKENBUCKET", "win", "10", "1", "1"]),
        wrongtype
    );
    rl(&mut c, &["RL.TOKENBUCKET", "bkt", "10", "1", "1"]);
    assert_eq!(err(&mut c, &["RL.SLIDING", "bkt", "10", "60"]), wrongtype);
}

#[test]
fn registration_is_visible() {
    let s = Server::start();
    let mut c = s.connect();
    let modules = format!("{:?}", call(&mut c, &["MODULE", "LIST"]).unwrap());
    assert!(modules.contains("ratelimit"), "{modules}");
    for cmd in [
        vec![
            "COMMAND",
            "GETKEYS",
            "RL.TOKENBUCKET",
            "user:1",
            "10",
            "1",
            "1",
        ],
        vec![
            "COMMAND",
            "GETKEYS",
            "RL.SLIDING",
            "user:1",
            "10",
            "60",
            "COST",
            "2",
        ],
    ] {
        assert_eq!(
            call(&mut c, &cmd),
            Ok(Value::Array(vec![Value::BulkString(b"user:1".to_vec())]))
        );
    }
    let info = format!(
        "{:?}",
        call(&mut c, &["COMMAND", "INFO", "RL.TOKENBUCKET", "RL.SLIDING"]).unwrap()
    );
    for flag in ["write", "denyoom", "fast"] {
        assert!(info.contains(flag), "{flag} missing from {info}");
    }
}

#[test]
fn a_cost_above_capacity_can_never_pass() {
    let s = Server::start();
    let mut c = s.connect();
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "big", "10", "1", "11"]),
        [0, 10, 10, -1, 0]
    );
    assert_eq!(int(&mut c, &["EXISTS", "big"]), 0);
}

#[test]
fn a_clock_stepping_back_mints_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    // Two hours ahead: an hour back is still ahead of the server's clock.
    let t = clock_start(&mut c) + 3600 * SEC;
    set_clock(&mut c, t);
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "back", "3", "1", "3"])[0..3],
        [1, 3, 0]
    );
    set_clock(&mut c, t - 3600 * SEC);
    let r = rl(&mut c, &["RL.TOKENBUCKET", "back", "3", "1", "1"]);
    assert_eq!(r[0..3], [0, 3, 0]);
    assert!(r[3] > 3600 * 1000);
}
