//! Replication of effects: a replica (even one whose clock is an hour off)
//! holds byte-identical state, with identical absolute expiries.
#![cfg(test)]

use redis_ratelimit_testkit::*;

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
    replicated_mix(&mut m, 400);
    wait_replicas(&mut m, 1);
    let compared = assert_same_state(&mut m, &mut r);
    assert!(compared >= 10, "{compared}");
}

#[test]
fn a_replica_that_syncs_later_gets_the_same_bytes() {
    let master = Server::start();
    let mut m = master.connect();
    replicated_mix(&mut m, 200);
    let replica = start_replica(&master, &[]);
    let mut r = replica.connect();
    replicated_mix(&mut m, 50);
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
