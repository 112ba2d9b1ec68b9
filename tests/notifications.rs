//! Keyspace notifications: every write raises its command's event (the
//! `event` of its row in src/commands/mod.rs), in the module class `d`,
//! on every key it writes, and only when something was written: peeks,
//! dry runs, denials and refunds with nothing to give back raise nothing.
//!
//! Notifications are read in order on a subscribed connection; after each
//! step a sentinel `SET` is made, and everything that arrived before the
//! sentinel's own event belongs to the step.
#![cfg(test)]

use std::time::Duration;

use redis_ratelimit_testkit::*;

/// A connection subscribed to every keyspace and keyevent channel of db 0
/// (the subscription made and read by hand: it lasts as long as the
/// connection).
fn listen(server: &Server) -> redis::Connection {
    let mut c = server.connect();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let sub = redis::cmd("PSUBSCRIBE")
        .arg("__key*@0__:*")
        .get_packed_command();
    c.send_packed_command(&sub).unwrap();
    let confirmed = c.recv_response().unwrap();
    assert!(
        format!("{confirmed:?}").contains("psubscribe"),
        "{confirmed:?}"
    );
    c
}

/// The next message's (channel, payload).
fn next_message(c: &mut redis::Connection) -> (String, String) {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => panic!("{other:?}"),
    };
    match c.recv_response().expect("a notification") {
        Value::Array(v) | Value::Push { data: v, .. } if v.len() == 4 => (text(&v[2]), text(&v[3])),
        other => panic!("not a pmessage: {other:?}"),
    }
}

/// (channel, payload) of the notifications raised since the last call,
/// up to the sentinel key's `set` event, which `writer` makes now.
fn step(
    listener: &mut redis::Connection,
    writer: &mut redis::Connection,
    n: &mut u32,
) -> Vec<(String, String)> {
    *n += 1;
    let sentinel = format!("sentinel:{n}");
    ok(writer, &["SET", &sentinel, "x"]);
    let mut out = vec![];
    loop {
        let (channel, payload) = next_message(listener);
        if channel == "__keyevent@0__:set" && payload == sentinel {
            return out;
        }
        if !channel.ends_with(&sentinel) && !payload.starts_with("sentinel:") {
            out.push((channel, payload));
        }
    }
}

/// The two notifications of `event` on `key`: key-space, then key-event.
fn raised(event: &str, key: &str) -> Vec<(String, String)> {
    vec![
        (format!("__keyspace@0__:{key}"), event.to_string()),
        (format!("__keyevent@0__:{event}"), key.to_string()),
    ]
}

fn run(c: &mut redis::Connection, args: &str) {
    let a: Vec<&str> = args.split_whitespace().collect();
    call(c, &a).unwrap_or_else(|e| panic!("{args}: {e}"));
}

#[test]
fn every_write_raises_its_commands_event_and_nothing_else_does() {
    let s = Server::start_with(&["--notify-keyspace-events", "KEA"]);
    let mut c = s.connect();
    let mut l = listen(&s);
    let mut n = 0;
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    assert_eq!(step(&mut l, &mut c, &mut n), vec![]);
    // (the call, the events it raises: (event, key) in order)
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("RL.TOKENBUCKET tb 5 1 2", &[("rl.tokenbucket", "tb")]),
        (
            "RL.TOKENBUCKET tb 5 1 1 REFUND",
            &[("rl.tokenbucket", "tb")],
        ),
        // A refund that empties the bucket deletes the key: the same event.
        (
            "RL.TOKENBUCKET tb 5 1 9 REFUND",
            &[("rl.tokenbucket", "tb")],
        ),
        ("RL.SLIDING sw 5 60 COST 2", &[("rl.sliding", "sw")]),
        ("RL.SLIDING sw 5 60 REFUND", &[("rl.sliding", "sw")]),
        ("RL.SLIDING sw 5 60 COST 9 REFUND", &[("rl.sliding", "sw")]),
        ("RL.GCRA g 5 1 1 COST 2", &[("rl.gcra", "g")]),
        ("RL.FIXED fw 5 HOUR COST 2", &[("rl.fixed", "fw")]),
        ("RL.FIXED fw 5 HOUR REFUND", &[("rl.fixed", "fw")]),
        ("RL.FIXED fw 5 HOUR COST 9 REFUND", &[("rl.fixed", "fw")]),
        ("CL.THROTTLE cl 4 1 10 2", &[("cl.throttle", "cl")]),
        (
            "RL.ALL LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}2 SLIDING 5 60 LIMIT {a}3 FIXED 5 HOUR",
            &[("rl.all", "{a}1"), ("rl.all", "{a}2"), ("rl.all", "{a}3")],
        ),
        // Nothing written, nothing raised: peeks, dry runs, denials,
        // refunds with nothing to give back, on missing and existing keys.
        ("RL.TOKENBUCKET tb 5 1 0", &[]),
        ("RL.TOKENBUCKET tb 5 1 1 DRYRUN", &[]),
        ("RL.TOKENBUCKET tb 5 1 1 REFUND", &[]),
        ("RL.TOKENBUCKET tb 5 1 6", &[]),
        ("RL.SLIDING sw 5 60 COST 0", &[]),
        ("RL.SLIDING sw2 1 60", &[("rl.sliding", "sw2")]),
        ("RL.SLIDING sw2 1 60", &[]),
        ("RL.GCRA g 5 1 1 COST 4", &[]),
        ("RL.FIXED fw 5 HOUR COST 0 DRYRUN", &[]),
        ("CL.THROTTLE cl 4 1 10 0", &[]),
        ("CL.THROTTLE cl 4 1 10 9", &[]),
        (
            "RL.ALL DRYRUN LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}2 SLIDING 5 60",
            &[],
        ),
        (
            "RL.ALL LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}4 SLIDING 1 60 COST 2",
            &[],
        ),
        (
            "RL.ALL COST 0 LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}5 GCRA 5 1 1",
            &[],
        ),
    ];
    for (args, events) in cases {
        run(&mut c, args);
        let want: Vec<(String, String)> = events.iter().flat_map(|(e, k)| raised(e, k)).collect();
        assert_eq!(step(&mut l, &mut c, &mut n), want, "{args}");
    }
    // Leases: taken, renewed, released (the last one: the key goes), and
    // nothing for a dry run, a full limit, an unknown lease.
    let lease = |c: &mut redis::Connection, args: &str| -> i64 {
        match call(c, &args.split(' ').collect::<Vec<_>>()) {
            Ok(Value::Array(v)) => match v[5] {
                Value::Int(id) => id,
                ref other => panic!("{other:?}"),
            },
            other => panic!("{args}: {other:?}"),
        }
    };
    let id = lease(&mut c, "RL.ACQUIRE l 1 60");
    assert_eq!(step(&mut l, &mut c, &mut n), raised("rl.acquire", "l"));
    assert_eq!(lease(&mut c, "RL.ACQUIRE l 1 60"), 0);
    assert_eq!(lease(&mut c, "RL.ACQUIRE l2 1 60 DRYRUN"), 0);
    assert_eq!(int(&mut c, &["RL.RENEW", "l", "12345", "30"]), 0);
    assert_eq!(int(&mut c, &["RL.RELEASE", "l", "12345"]), 0);
    assert_eq!(step(&mut l, &mut c, &mut n), vec![]);
    assert_eq!(int(&mut c, &["RL.RENEW", "l", &id.to_string(), "30"]), 1);
    assert_eq!(step(&mut l, &mut c, &mut n), raised("rl.renew", "l"));
    assert_eq!(int(&mut c, &["RL.RELEASE", "l", &id.to_string()]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "l"]), 0);
    assert_eq!(step(&mut l, &mut c, &mut n), raised("rl.release", "l"));
}

#[test]
fn module_events_are_class_d() {
    let s = Server::start();
    let mut c = s.connect();
    let mut l = listen(&s);
    let mut n = 0;
    // Every class but d (and no expired/evicted, which are separate).
    ok(
        &mut c,
        &["CONFIG", "SET", "notify-keyspace-events", "KEg$lshzt"],
    );
    run(&mut c, "RL.TOKENBUCKET tb 5 1 1");
    run(&mut c, "RL.SLIDING sw 5 60");
    run(
        &mut c,
        "RL.ALL LIMIT {a}1 FIXED 5 HOUR LIMIT {a}2 GCRA 5 1 1",
    );
    assert_eq!(step(&mut l, &mut c, &mut n), vec![]);
    // Class d alone, key-event channel only.
    ok(&mut c, &["CONFIG", "SET", "notify-keyspace-events", "Ed$"]);
    run(&mut c, "RL.TOKENBUCKET tb 5 1 1");
    run(&mut c, "CL.THROTTLE cl 4 1 10 1");
    let sentinel_set = n + 1;
    let got = step(&mut l, &mut c, &mut n);
    assert_eq!(
        got,
        vec![
            (
                "__keyevent@0__:rl.tokenbucket".to_string(),
                "tb".to_string()
            ),
            ("__keyevent@0__:cl.throttle".to_string(), "cl".to_string()),
        ],
        "(sentinel {sentinel_set})"
    );
}

/// What a replica applies raises events too: the internal command's own
/// (RL.SETSTATE, RL.WINDOWADD, RL.WINDOWREFUND, RL.LEASE per the command
/// table),
/// or Redis's `del` for a state that went back to fresh.
#[test]
fn a_replica_raises_the_internal_commands_events() {
    let master = Server::start();
    let replica = start_replica(&master, &["--notify-keyspace-events", "KEA"]);
    let mut c = master.connect();
    let mut l = listen(&replica);
    let mut n = 0;
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("RL.TOKENBUCKET tb 5 1 2", &[("rl.setstate", "tb")]),
        ("RL.FIXED fw 5 HOUR", &[("rl.setstate", "fw")]),
        ("RL.SLIDING sw 5 60 COST 2", &[("rl.windowadd", "sw")]),
        ("RL.SLIDING sw 5 60 REFUND", &[("rl.windowrefund", "sw")]),
        ("RL.TOKENBUCKET tb 5 1 9 REFUND", &[("del", "tb")]),
        ("RL.ACQUIRE l 2 60", &[("rl.lease", "l")]),
        ("RL.TOKENBUCKET tb 5 1 0", &[]),
    ];
    for (args, events) in cases {
        run(&mut c, args);
        let want: Vec<(String, String)> = events.iter().flat_map(|(e, k)| raised(e, k)).collect();
        assert_eq!(step(&mut l, &mut c, &mut n), want, "{args}");
    }
}

/// An admission after waiting in line raises the event of the command
/// that waited, on every key it writes, as the command would have (it is
/// decided in the module's timer, not by a command); waiting raises
/// nothing. RL.TAKE raises `rl.take`, and so does the LOCKOUT a denial of
/// it starts; a denial on the locked key raises nothing.
#[test]
fn timer_admissions_rl_take_and_locks_raise_their_events() {
    let s = Server::start_with(&["--notify-keyspace-events", "KEA"]);
    let mut c = s.connect();
    let mut l = listen(&s);
    let mut n = 0;
    ok(
        &mut c,
        &[
            "RL.POLICY",
            "SET",
            "p",
            "SLIDING",
            "1",
            "3600",
            "LOCKOUT",
            "60",
        ],
    );
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("RL.TAKE t p", &[("rl.take", "t")]),
        // Denied: the lock starts, and is written.
        ("RL.TAKE t p", &[("rl.take", "t")]),
        // Denied by the lock: nothing.
        ("RL.TAKE t p", &[]),
        ("RL.TAKE t p COST 0", &[]),
    ];
    for (args, events) in cases {
        run(&mut c, args);
        let want: Vec<(String, String)> = events.iter().flat_map(|(e, k)| raised(e, k)).collect();
        assert_eq!(step(&mut l, &mut c, &mut n), want, "{args}");
    }
    // Each waiter, with what fills its limit first, what gives a unit
    // back, and the events of its admission.
    ok(&mut c, &["RL.POLICY", "SET", "q", "GCRA", "1", "1", "3600"]);
    /// (fill, wait, refund, the admission's (event, key)s)
    type Wait<'a> = (&'a str, &'a str, &'a str, &'a [(&'a str, &'a str)]);
    let waits: &[Wait] = &[
        (
            "RL.SLIDING w 1 3600",
            "RL.SLIDING w 1 3600 BLOCK 20000",
            "RL.SLIDING w 1 3600 REFUND",
            &[("rl.sliding", "w")],
        ),
        (
            "RL.ALL LIMIT {a}x SLIDING 1 3600",
            "RL.ALL LIMIT {a}x SLIDING 1 3600 LIMIT {a}y GCRA 5 1 60 BLOCK 20000",
            "RL.SLIDING {a}x 1 3600 REFUND",
            &[("rl.all", "{a}x"), ("rl.all", "{a}y")],
        ),
        (
            "RL.TAKE g q",
            "RL.TAKE g q BLOCK 20000",
            "RL.TAKE g q REFUND",
            &[("rl.take", "g")],
        ),
    ];
    for (fill, wait, refund, events) in waits {
        run(&mut c, fill);
        step(&mut l, &mut c, &mut n);
        let mut w = s.connect();
        let args: Vec<String> = wait.split(' ').map(str::to_string).collect();
        let h = std::thread::spawn(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            call(&mut w, &a)
        });
        assert!(wait_until(10, || info_int(
            &mut c,
            "ratelimit",
            "ratelimit_waiters"
        ) == 1));
        assert_eq!(step(&mut l, &mut c, &mut n), vec![], "waiting: {wait}");
        run(&mut c, refund);
        h.join().unwrap().unwrap();
        let refunded = refund.split(' ').nth(1).unwrap();
        let mut want = raised(
            &refund.split(' ').next().unwrap().to_ascii_lowercase(),
            refunded,
        );
        want.extend(events.iter().flat_map(|(e, k)| raised(e, k)));
        assert_eq!(step(&mut l, &mut c, &mut n), want, "{wait}");
    }
}
