//! Replication of effects: a replica (even one whose clock is an hour off)
//! holds byte-identical state, with identical absolute expiries.
#![cfg(test)]

use redis_ratelimit_testkit::*;

fn traffic(c: &mut redis::Connection, rounds: u64) {
    for i in 0..rounds {
        rl(
            c,
            &[
                "RL.TOKENBUCKET",
                &format!("b:{}", i % 7),
                "5",
                "0.5",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["RL.TOKENBUCKET", "b:hot", "3", "1", "1"]);
        rl(
            c,
            &[
                "RL.SLIDING",
                &format!("w:{}", i % 5),
                "20",
                "20",
                "COST",
                &(i % 4).to_string(),
            ],
        );
        rl(c, &["RL.SLIDING", "w:hot", "4", "0.05"]);
        rl(
            c,
            &[
                "RL.GCRA",
                &format!("g:{}", i % 3),
                "10",
                "1",
                "2",
                "COST",
                &(i % 3).to_string(),
            ],
        );
        rl(
            c,
            &[
                "RL.FIXED",
                &format!("f:{}", i % 3),
                "50",
                "HOUR",
                "COST",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["CL.THROTTLE", "cell", "15", "30", "60"]);
        call(
            c,
            &[
                "RL.ALL", "LIMIT", "{a}:1", "SLIDING", "9", "30", "LIMIT", "{a}:2", "GCRA", "5",
                "1", "3",
            ],
        )
        .unwrap();
        if i % 7 == 0 {
            rl(
                c,
                &[
                    "RL.SLIDING",
                    &format!("w:{}", i % 5),
                    "20",
                    "20",
                    "COST",
                    "2",
                    "REFUND",
                ],
            );
            rl(
                c,
                &[
                    "RL.TOKENBUCKET",
                    &format!("b:{}", i % 7),
                    "5",
                    "0.5",
                    "1",
                    "REFUND",
                ],
            );
        }
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(7));
        }
    }
}

#[test]
fn a_replica_holds_byte_identical_state() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    // The replica's clock is an hour ahead: a command replicated verbatim
    // would decide differently there.
    let ahead = clock_start(&mut r);
    set_clock(&mut r, ahead);
    traffic(&mut m, 400);
    wait_replicas(&mut m, 1);
    let compared = assert_same_state(&mut m, &mut r);
    assert!(compared >= 10, "{compared}");
}

#[test]
fn a_replica_that_syncs_later_gets_the_same_bytes() {
    let master = Server::start();
    let mut m = master.connect();
    traffic(&mut m, 200);
    let replica = start_replica(&master, &[]);
    let mut r = replica.connect();
    traffic(&mut m, 50);
    wait_replicas(&mut m, 1);
    assert!(assert_same_state(&mut m, &mut r) >= 10);
}

#[test]
fn a_promoted_replica_keeps_enforcing() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    assert_eq!(
        rl(&mut m, &["RL.TOKENBUCKET", "p", "2", "0.001", "2"])[0],
        1
    );
    assert_eq!(
        rl(&mut m, &["RL.SLIDING", "q", "2", "3600", "COST", "2"])[0],
        1
    );
    wait_replicas(&mut m, 1);
    drop(m);
    drop(master);
    let mut r = replica.connect();
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    assert_eq!(
        rl(&mut r, &["RL.TOKENBUCKET", "p", "2", "0.001", "1"])[0],
        0
    );
    assert_eq!(rl(&mut r, &["RL.SLIDING", "q", "2", "3600"])[0], 0);
}

#[test]
fn replicas_refuse_limiter_writes_from_clients() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut r = replica.connect();
    let e = err(&mut r, &["RL.TOKENBUCKET", "x", "1", "1", "1"]);
    assert!(e.starts_with("READONLY"), "{e}");
}
