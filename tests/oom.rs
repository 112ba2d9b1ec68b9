//! Past `maxmemory` (policy `noeviction`): every limiter command is flagged
//! `deny-oom`, so Redis refuses it with its OOM error before the module
//! runs, whatever it would have done: an admission, and also a peek, a
//! denial, a dry run or a refund, which would write nothing, and a lease's
//! release or renewal. Nothing is
//! written or propagated; reads still work; once memory is back under the
//! limit the limiters decide from the state they had.
//!
//! (So an application sees errors, not denials, while Redis is out of
//! memory: its failure policy decides, as when Redis is down.)
#![cfg(test)]

use redis_ratelimit_testkit::*;

const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

#[test]
fn past_maxmemory_every_limiter_command_is_refused_and_writes_nothing() {
    let master = Server::start_with(&["--maxmemory-policy", "noeviction"]);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    let setup = [
        "RL.TOKENBUCKET tb 5 1 5",
        "RL.SLIDING sw 5 60 COST 2",
        "RL.GCRA g 5 1 1 COST 5",
        "RL.FIXED fw 5 HOUR COST 3",
        "CL.THROTTLE cl 4 1 10 2",
    ];
    for args in setup {
        let a: Vec<&str> = args.split(' ').collect();
        assert_eq!(
            rl(&mut c, &a)[0],
            i64::from(a[0] != "CL.THROTTLE"),
            "{args}"
        );
    }
    // A lease held, to give back while out of memory.
    let lease = match call(&mut c, &["RL.ACQUIRE", "ls", "2", "60"]) {
        Ok(Value::Array(v)) => match v[5] {
            Value::Int(id) => id.to_string(),
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let keys = ["tb", "sw", "g", "fw", "cl", "ls"];
    let peeks: Vec<[i64; 5]> = [
        "RL.TOKENBUCKET tb 5 1 0",
        "RL.SLIDING sw 5 60 COST 0",
        "RL.GCRA g 5 1 1 COST 0",
        "RL.FIXED fw 5 HOUR COST 0",
        "CL.THROTTLE cl 4 1 10 0",
    ]
    .iter()
    .map(|a| rl(&mut c, &a.split(' ').collect::<Vec<_>>()))
    .collect();

    // A limit far below what any server uses: every write is past it
    // (half of what is used would not do: buffers that count toward it
    // come and go).
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "1"]);
    wait_caught_up(&master, &replica);
    let state = |c: &mut redis::Connection| -> Vec<(Option<Vec<u8>>, i64)> {
        keys.iter()
            .map(|k| (bytes(c, &["DUMP", k]), int(c, &["PEXPIRETIME", k])))
            .collect()
    };
    let before = (written(&mut c), state(&mut c));
    let calls: &[&str] = &[
        // What would admit and write.
        "RL.SLIDING sw 5 60",
        "RL.SLIDING fresh 5 60",
        "RL.FIXED fw 5 HOUR",
        "RL.ALL LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}2 SLIDING 5 60",
        // What would write nothing.
        "RL.TOKENBUCKET tb 5 1 0",
        "RL.TOKENBUCKET tb 5 1 1",
        "RL.TOKENBUCKET tb 5 1 9",
        "RL.SLIDING sw 5 60 COST 1 DRYRUN",
        "RL.SLIDING missing 5 60 REFUND",
        "RL.GCRA g 5 1 1",
        "RL.FIXED fw 5 HOUR COST 0",
        "CL.THROTTLE cl 4 1 10 0",
        "CL.THROTTLE cl 4 1 10 9",
        "RL.ALL DRYRUN LIMIT {a}1 TOKENBUCKET 5 1 LIMIT {a}2 SLIDING 5 60",
        "RL.ACQUIRE ls 2 60",
        "RL.ACQUIRE ls 2 60 DRYRUN",
        // Even what gives units or slots back.
        "RL.SLIDING sw 5 60 REFUND",
        "RL.FIXED fw 5 HOUR COST 3 REFUND",
    ];
    for args in calls {
        let a: Vec<&str> = args.split(' ').collect();
        assert_eq!(err(&mut c, &a), OOM, "{args}");
    }
    // A lease cannot be renewed (it would hold memory longer), but it can
    // be given back (RL.RELEASE is not deny-oom: it only frees): after the
    // check below, which needs the state unchanged.
    assert_eq!(err(&mut c, &["RL.RENEW", "ls", &lease, "30"]), OOM);
    // An internal command too (refused as OOM before its own check).
    assert_eq!(err(&mut c, &["RL.SETSTATE", "x", "B12345678"]), OOM);
    assert_eq!(
        (written(&mut c), state(&mut c)),
        before,
        "a refused command wrote or propagated something"
    );
    // Reads are served.
    assert_eq!(
        int(&mut c, &["EXISTS", "tb", "sw", "g", "fw", "cl", "ls"]),
        6
    );
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
    // Giving a lease back only frees: it works past maxmemory, and the
    // key goes with its last lease.
    assert_eq!(int(&mut c, &["RL.RELEASE", "ls", &lease]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "ls"]), 0);

    // Back under the limit: the limiters decide from the state they had.
    ok(&mut c, &["CONFIG", "SET", "maxmemory", "0"]);
    let again: Vec<[i64; 5]> = [
        "RL.TOKENBUCKET tb 5 1 0",
        "RL.SLIDING sw 5 60 COST 0",
        "RL.GCRA g 5 1 1 COST 0",
        "RL.FIXED fw 5 HOUR COST 0",
        "CL.THROTTLE cl 4 1 10 0",
    ]
    .iter()
    .map(|a| rl(&mut c, &a.split(' ').collect::<Vec<_>>()))
    .collect();
    assert_eq!(again, peeks);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "sw", "5", "60"])[0..3],
        [1, 5, 2]
    );
    drop(c);
    wait_caught_up(&master, &replica);
    assert_eq!(
        assert_same_state(&mut master.connect(), &mut replica.connect()),
        keys.len() - 1
    );
}
