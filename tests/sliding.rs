//! RL.SLIDING on a real server: reply fields, exactness at the window edge,
//! TTL, peek, memory per key.
#![cfg(test)]

use redis_ratelimit_testkit::*;

#[test]
fn ten_per_minute_lets_ten_through_in_any_minute() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let k = &["RL.SLIDING", "api:7", "10", "60"];
    for left in (0..10).rev() {
        assert_eq!(rl(&mut c, k), [1, 10, left, 0, 60_000]);
    }
    assert_eq!(rl(&mut c, k), [0, 10, 0, 60_000, 60_000]);
    // The fixed-window flaw would let 10 more through at the next minute.
    set_clock(&mut c, t + 21 * SEC);
    assert_eq!(rl(&mut c, k), [0, 10, 0, 39_000, 39_000]);
    set_clock(&mut c, t + 60 * SEC - 1_000);
    assert_eq!(rl(&mut c, k), [0, 10, 0, 1, 1]);
    set_clock(&mut c, t + 60 * SEC);
    assert_eq!(rl(&mut c, k), [1, 10, 9, 0, 60_000]);
}

#[test]
fn cost_peek_and_never() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "0"]),
        [1, 5, 5, 0, 0]
    );
    assert_eq!(int(&mut c, &["EXISTS", "c"]), 0);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "3"]),
        [1, 5, 2, 0, 1000]
    );
    set_clock(&mut c, t + 250 * MS);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "cost", "2"]),
        [1, 5, 0, 0, 1000]
    );
    set_clock(&mut c, t + 500 * MS);
    // 4 units must leave: the 3 at t (500 ms away) and then the 2 at t+250.
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "4"]),
        [0, 5, 0, 750, 750]
    );
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "6"]),
        [0, 5, 0, -1, 750]
    );
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "0"]),
        [1, 5, 0, 0, 750]
    );
    set_clock(&mut c, t + 1_250 * MS);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "c", "5", "1", "COST", "4"]),
        [1, 5, 1, 0, 1000]
    );
}

#[test]
fn sub_second_windows_are_exact_to_the_microsecond() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c) + 300; // not on a microsecond boundary
    set_clock(&mut c, t);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "f", "1", "0.25"]),
        [1, 1, 0, 0, 250]
    );
    set_clock(&mut c, t + 700_000); // 0.7 ms later
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "f", "1", "0.25"]),
        [0, 1, 0, 250, 250]
    );
    set_clock(&mut c, t + 250 * MS - 1_000);
    assert_eq!(rl(&mut c, &["RL.SLIDING", "f", "1", "0.25"])[0], 0);
    set_clock(&mut c, t + 250 * MS);
    assert_eq!(rl(&mut c, &["RL.SLIDING", "f", "1", "0.25"])[0], 1);
}

#[test]
fn ttl_is_when_the_window_empties() {
    let s = Server::start();
    let mut c = s.connect();
    let (t0, r, t1) = bracketed(&mut c, &["RL.SLIDING", "t", "10", "5"]);
    assert_eq!(r, [1, 10, 9, 0, 5000]);
    // The admission's instant (between the server's TIME before and after
    // the call) plus the 5 s window, rounded up to a millisecond.
    let expiry = int(&mut c, &["PEXPIRETIME", "t"]) as u64;
    let (earliest, latest) = ((t0 + 5 * SEC).div_ceil(MS), (t1 + 5 * SEC).div_ceil(MS));
    assert!(
        (earliest..=latest).contains(&expiry),
        "expires at {expiry} ms, not in [{earliest}, {latest}]"
    );
    // And on the test clock, exactly (the log keeps microseconds).
    let t = clock_start(&mut c) + 700_001;
    set_clock(&mut c, t);
    rl(&mut c, &["RL.SLIDING", "exact", "10", "5"]);
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", "exact"]) as u64,
        (t / 1000 * 1000 + 5 * SEC).div_ceil(MS)
    );
    real_clock(&mut c);
    assert_eq!(
        call(&mut c, &["TYPE", "t"]),
        Ok(Value::SimpleString("rl-window".into()))
    );
    rl(&mut c, &["RL.SLIDING", "gone", "10", "0.05"]);
    assert!(wait_until(2, || int(&mut c, &["EXISTS", "gone"]) == 0));
}

#[test]
fn denial_and_peek_write_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    rl(&mut c, &["RL.SLIDING", "d", "2", "60", "COST", "2"]);
    let before = dirty(&mut c);
    let dump = bytes(&mut c, &["DUMP", "d"]);
    assert_eq!(rl(&mut c, &["RL.SLIDING", "d", "2", "60"])[0], 0);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "d", "2", "60", "COST", "0"])[0],
        1
    );
    assert_eq!(dirty(&mut c), before);
    assert_eq!(bytes(&mut c, &["DUMP", "d"]), dump);
}

/// Bytes per key, as docs/COMMANDS.md states them: MEMORY USAGE of a log
/// filled to its limit, admissions spread over the window.
#[test]
fn memory_per_key_stays_compact() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    for (limit, bound) in [(100u64, 600i64), (10_000, 60_000)] {
        let key = format!("mem:{limit}");
        let step = 60 * SEC / limit;
        for i in 0..limit {
            set_clock(&mut c, t + i * step);
            let r = rl(&mut c, &["RL.SLIDING", &key, &limit.to_string(), "60"]);
            assert_eq!(r[0], 1);
        }
        let usage = int(&mut c, &["MEMORY", "USAGE", &key]);
        println!("RL.SLIDING limit {limit}, 60 s window, filled: MEMORY USAGE {usage} bytes");
        assert!(usage <= bound, "limit {limit}: {usage} bytes");
    }
}
