//! Every limiter's key expires exactly when it is fresh again: an expiry
//! that comes early is over-admission (Redis drops the state and the next
//! request starts from nothing), one that comes late keeps dead keys.
//!
//! On the module's test clock the expected instant is computed here from
//! the arguments alone (not from the reply) and compared with PEXPIRETIME,
//! to the millisecond: the fresh-again instant rounded up. Instants are off
//! the whole millisecond on purpose, so rounding down would show. On the
//! real clock the module decides at an instant this side can only bracket:
//! the server's TIME just before and just after the call, in one pipeline
//! (the same clock the module reads); the expiry must fall in that bracket
//! plus the exact span, no wider.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// Unix ms of a key's expiry.
fn expiry(c: &mut redis::Connection, key: &str) -> i64 {
    let e = int(c, &["PEXPIRETIME", key]);
    assert!(e > 0, "{key}: PEXPIRETIME {e}");
    e
}

/// An instant rounded up to the millisecond, as an expiry.
fn ceil_ms(ns: u64) -> i64 {
    ns.div_ceil(MS) as i64
}

/// A master with a replica: at the end, the replica holds the same
/// expiries (DUMP does not carry them; assert_same_state compares them).
fn pair() -> (Server, Server) {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    (master, replica)
}

fn same_on_replica(master: &Server, replica: &Server, keys: usize) {
    wait_caught_up(master, replica);
    let mut m = master.connect();
    assert_eq!(assert_same_state(&mut m, &mut replica.connect()), keys);
}

#[test]
fn token_bucket_and_gcra_keys_expire_when_full_again() {
    let (master, replica) = pair();
    let mut c = master.connect();
    let t = clock_start(&mut c) + 123_456_789;
    set_clock(&mut c, t);
    // 5 tokens, 1 a second: 2 taken, full again 2 s later.
    rl(&mut c, &["RL.TOKENBUCKET", "tb", "5", "1", "2"]);
    assert_eq!(expiry(&mut c, "tb"), ceil_ms(t + 2 * SEC));
    // 300 ms later 1 more: 1.7 s still to refill, then 1 s more.
    set_clock(&mut c, t + 300 * MS);
    rl(&mut c, &["RL.TOKENBUCKET", "tb", "5", "1", "1"]);
    assert_eq!(expiry(&mut c, "tb"), ceil_ms(t + 3 * SEC));
    // 2 given back: 2 s earlier.
    set_clock(&mut c, t + 500 * MS);
    rl(&mut c, &["RL.TOKENBUCKET", "tb", "5", "1", "2", "REFUND"]);
    assert_eq!(expiry(&mut c, "tb"), ceil_ms(t + SEC));
    // 10,000 a second: 2 tokens refill in 200 us, the key lives 1 ms.
    rl(&mut c, &["RL.TOKENBUCKET", "fast", "3", "1e4", "2"]);
    assert_eq!(expiry(&mut c, "fast"), ceil_ms(t + 500 * MS + 200_000));
    // 10 per minute in PERIOD form: one token every 6 s.
    rl(
        &mut c,
        &["RL.TOKENBUCKET", "per", "10", "10", "3", "PERIOD", "60"],
    );
    assert_eq!(expiry(&mut c, "per"), ceil_ms(t + 500 * MS + 18 * SEC));
    // GCRA: 5 per 60 s (12 s apart), bursts of 10; 3 taken.
    rl(&mut c, &["RL.GCRA", "g", "10", "5", "60", "COST", "3"]);
    assert_eq!(expiry(&mut c, "g"), ceil_ms(t + 500 * MS + 36 * SEC));
    // 7 more at the same instant: 84 s more.
    rl(&mut c, &["RL.GCRA", "g", "10", "5", "60", "COST", "7"]);
    assert_eq!(expiry(&mut c, "g"), ceil_ms(t + 500 * MS + 120 * SEC));
    same_on_replica(&master, &replica, 4);
}

#[test]
fn throttle_keys_expire_when_full_again() {
    let (master, replica) = pair();
    let mut c = master.connect();
    let t = clock_start(&mut c) + 987_654_321;
    set_clock(&mut c, t);
    // 30 per 60 s: one every 2 s; the reply rounds to seconds, the expiry
    // does not.
    assert_eq!(
        rl(&mut c, &["CL.THROTTLE", "cl", "15", "30", "60", "1"]),
        [0, 16, 15, -1, 2]
    );
    assert_eq!(expiry(&mut c, "cl"), ceil_ms(t + 2 * SEC));
    set_clock(&mut c, t + SEC);
    rl(&mut c, &["CL.THROTTLE", "cl", "15", "30", "60", "3"]);
    assert_eq!(expiry(&mut c, "cl"), ceil_ms(t + 8 * SEC));
    // 7 per 3 s: 428,571,428 ns apart (redis-cell truncates).
    rl(&mut c, &["CL.THROTTLE", "odd", "5", "7", "3", "2"]);
    assert_eq!(expiry(&mut c, "odd"), ceil_ms(t + SEC + 2 * 428_571_428));
    same_on_replica(&master, &replica, 2);
    // A redis-cell key (a string without expiry) taken over: the bucket
    // state gets the expiry it always should have had. (On a server of
    // its own: the takeover does not reach a replica, see
    // throttle.rs's a_redis_cell_key_taken_over_reaches_replicas_and_the_aof.)
    let s = Server::start();
    let mut c = s.connect();
    set_clock(&mut c, t);
    ok(&mut c, &["SET", "cell", &(t + 3 * SEC).to_string()]);
    assert_eq!(int(&mut c, &["PTTL", "cell"]), -1);
    rl(&mut c, &["CL.THROTTLE", "cell", "4", "1", "1", "2"]);
    assert_eq!(expiry(&mut c, "cell"), ceil_ms(t + 5 * SEC));
}

#[test]
fn sliding_window_keys_expire_when_the_newest_admission_leaves() {
    let (master, replica) = pair();
    let mut c = master.connect();
    // The log keeps microseconds: 400 ns past a microsecond, truncated.
    let t = clock_start(&mut c) + 345_678_400;
    let us = |ns: u64| ns / 1000 * 1000;
    set_clock(&mut c, t);
    rl(&mut c, &["RL.SLIDING", "sw", "5", "10"]);
    assert_eq!(expiry(&mut c, "sw"), ceil_ms(us(t) + 10 * SEC));
    let t2 = t + 2_500_007_000;
    set_clock(&mut c, t2);
    rl(&mut c, &["RL.SLIDING", "sw", "5", "10", "COST", "2"]);
    assert_eq!(expiry(&mut c, "sw"), ceil_ms(us(t2) + 10 * SEC));
    // A refund takes the newest units back: the window empties when the
    // first admission leaves it.
    set_clock(&mut c, t + 3 * SEC);
    rl(
        &mut c,
        &["RL.SLIDING", "sw", "5", "10", "COST", "2", "REFUND"],
    );
    assert_eq!(expiry(&mut c, "sw"), ceil_ms(us(t) + 10 * SEC));
    // The clock steps back 1 s: the admission is recorded at the newest
    // entry's instant, and the expiry does not move earlier.
    rl(&mut c, &["RL.SLIDING", "sw", "5", "10"]);
    let newest = us(t + 3 * SEC);
    assert_eq!(expiry(&mut c, "sw"), ceil_ms(newest + 10 * SEC));
    set_clock(&mut c, t + 2 * SEC);
    rl(&mut c, &["RL.SLIDING", "sw", "5", "10"]);
    assert_eq!(expiry(&mut c, "sw"), ceil_ms(newest + 10 * SEC));
    // Sub-second windows.
    rl(&mut c, &["RL.SLIDING", "short", "5", "0.25"]);
    assert_eq!(expiry(&mut c, "short"), ceil_ms(us(t + 2 * SEC) + 250 * MS));
    // Everything given back: the key goes.
    rl(&mut c, &["RL.SLIDING", "short", "5", "0.25", "REFUND"]);
    assert_eq!(int(&mut c, &["EXISTS", "short"]), 0);
    same_on_replica(&master, &replica, 1);
}

#[test]
fn fixed_window_keys_expire_at_the_window_end() {
    let (master, replica) = pair();
    let mut c = master.connect();
    // 10 s windows aligned to the epoch; 2.5 s and a bit into one.
    let w = clock_start(&mut c) / (10 * SEC) * (10 * SEC);
    let t = w + 2_500_000_123;
    set_clock(&mut c, t);
    rl(&mut c, &["RL.FIXED", "fw", "5", "10"]);
    assert_eq!(expiry(&mut c, "fw"), ceil_ms(w + 10 * SEC));
    // Later in the window, and after a refund: the same end.
    set_clock(&mut c, t + 5 * SEC);
    rl(&mut c, &["RL.FIXED", "fw", "5", "10", "COST", "3"]);
    rl(&mut c, &["RL.FIXED", "fw", "5", "10", "REFUND"]);
    assert_eq!(expiry(&mut c, "fw"), ceil_ms(w + 10 * SEC));
    // The next window: its own end.
    set_clock(&mut c, w + 10 * SEC);
    rl(&mut c, &["RL.FIXED", "fw", "5", "10"]);
    assert_eq!(expiry(&mut c, "fw"), ceil_ms(w + 20 * SEC));
    // Everything given back: the key goes.
    rl(&mut c, &["RL.FIXED", "fw", "5", "10", "REFUND"]);
    assert_eq!(int(&mut c, &["EXISTS", "fw"]), 0);
    // Calendar windows: the end of the UTC hour.
    rl(&mut c, &["RL.FIXED", "hour", "5", "HOUR"]);
    let hour = 3600 * SEC;
    assert_eq!(expiry(&mut c, "hour"), ceil_ms((w / hour + 1) * hour));
    same_on_replica(&master, &replica, 1);
}

#[test]
fn rl_all_gives_each_key_its_own_expiry() {
    let (master, replica) = pair();
    let mut c = master.connect();
    let t = clock_start(&mut c) + 111_222_333;
    set_clock(&mut c, t);
    let r = call(
        &mut c,
        &[
            "RL.ALL",
            "COST",
            "2",
            "LIMIT",
            "{a}tb",
            "TOKENBUCKET",
            "5",
            "1",
            "LIMIT",
            "{a}sw",
            "SLIDING",
            "5",
            "10",
            "LIMIT",
            "{a}fw",
            "FIXED",
            "5",
            "MINUTE",
            "LIMIT",
            "{a}g",
            "GCRA",
            "5",
            "1",
            "2",
            "COST",
            "1",
        ],
    )
    .unwrap();
    assert!(
        matches!(&r, Value::Array(v) if v[0] == Value::Int(1)),
        "{r:?}"
    );
    assert_eq!(expiry(&mut c, "{a}tb"), ceil_ms(t + 2 * SEC));
    assert_eq!(expiry(&mut c, "{a}sw"), ceil_ms(t / 1000 * 1000 + 10 * SEC));
    let minute = 60 * SEC;
    assert_eq!(expiry(&mut c, "{a}fw"), ceil_ms((t / minute + 1) * minute));
    // GCRA 1 per 2 s: its own cost of 1 is 2 s.
    assert_eq!(expiry(&mut c, "{a}g"), ceil_ms(t + 2 * SEC));
    same_on_replica(&master, &replica, 4);
}

#[test]
fn lease_keys_expire_when_their_last_lease_ends() {
    let (master, replica) = pair();
    let mut c = master.connect();
    let t = clock_start(&mut c) + 456_789_012;
    let id = |r: &Value| match r {
        Value::Array(v) => match v[5] {
            Value::Int(id) => id.to_string(),
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    set_clock(&mut c, t);
    let a = id(&call(&mut c, &["RL.ACQUIRE", "l", "3", "10"]).unwrap());
    assert_eq!(expiry(&mut c, "l"), ceil_ms(t + 10 * SEC));
    // A lease ending later moves the expiry; one ending sooner does not.
    set_clock(&mut c, t + SEC);
    let b = id(&call(&mut c, &["RL.ACQUIRE", "l", "3", "20.5"]).unwrap());
    call(&mut c, &["RL.ACQUIRE", "l", "3", "0.25"]).unwrap();
    assert_eq!(expiry(&mut c, "l"), ceil_ms(t + 21_500 * MS));
    // Renewed: the first now ends 30 s after the renewal.
    set_clock(&mut c, t + 2 * SEC);
    assert_eq!(int(&mut c, &["RL.RENEW", "l", &a, "30"]), 1);
    assert_eq!(expiry(&mut c, "l"), ceil_ms(t + 32 * SEC));
    // Released: the last lease left ends the key.
    set_clock(&mut c, t + 3 * SEC);
    assert_eq!(int(&mut c, &["RL.RELEASE", "l", &a]), 1);
    assert_eq!(expiry(&mut c, "l"), ceil_ms(t + 21_500 * MS));
    // A lease of a nanosecond more than a whole millisecond: rounded up.
    call(&mut c, &["RL.ACQUIRE", "ns", "1", "0.002000001"]).unwrap();
    assert_eq!(expiry(&mut c, "ns"), ceil_ms(t + 3 * SEC + 2 * MS + 1));
    same_on_replica(&master, &replica, 2);
    assert_eq!(int(&mut c, &["RL.RELEASE", "l", &b]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "l"]), 0);
}

/// On the server's real clock: for every algorithm, the expiry is the
/// decision instant plus the exact span to fresh, the decision instant
/// lying between the TIMEs read just before and just after.
#[test]
fn on_the_real_clock_expiries_are_the_decision_instant_plus_the_span() {
    let s = Server::start();
    let mut c = s.connect();
    let cases: &[(&[&str], u64)] = &[
        (&["RL.TOKENBUCKET", "tb", "5", "1", "3"], 3 * SEC),
        (&["RL.GCRA", "g", "10", "5", "60", "COST", "2"], 24 * SEC),
        (&["CL.THROTTLE", "cl", "15", "30", "60", "1"], 2 * SEC),
        (&["RL.SLIDING", "sw", "10", "5"], 5 * SEC),
        (&["RL.ACQUIRE", "l", "2", "7.5"], 7_500 * MS),
    ];
    for (args, span) in cases {
        let (t0, reply, t1) = bracketed(&mut c, args);
        let e = expiry(&mut c, args[1]);
        // The sliding log keeps microseconds (TIME has no more).
        assert!(
            (ceil_ms(t0 / 1000 * 1000 + span)..=ceil_ms(t1 + span)).contains(&e),
            "{args:?} {reply:?}: expires at {e} ms, decided within [{t0}, {t1}] ns"
        );
    }
    // A fixed window ends on its boundary whenever it was decided.
    let (t0, _, t1) = bracketed(&mut c, &["RL.FIXED", "fw", "5", "3600"]);
    let hour = 3600 * SEC;
    let e = expiry(&mut c, "fw");
    assert!(
        [
            ceil_ms((t0 / hour + 1) * hour),
            ceil_ms((t1 / hour + 1) * hour)
        ]
        .contains(&e),
        "{e}"
    );
    // Redis drops the key then: a 50 ms window's key is gone once the
    // server's clock passes its expiry.
    rl(&mut c, &["RL.SLIDING", "gone", "10", "0.05"]);
    let e = expiry(&mut c, "gone");
    assert!(wait_until(5, || server_now_ns(&mut c) / MS > e as u64 + 1));
    assert_eq!(int(&mut c, &["EXISTS", "gone"]), 0);
}
