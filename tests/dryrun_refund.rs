//! DRYRUN and REFUND on every limiter command.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// Each limiter as (name, command before the flags), with a cost of 2.
fn limiters() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        ("tokenbucket", vec!["RL.TOKENBUCKET", "k:tb", "5", "1", "2"]),
        (
            "gcra",
            vec!["RL.GCRA", "k:gcra", "5", "1", "1", "COST", "2"],
        ),
        (
            "sliding",
            vec!["RL.SLIDING", "k:sw", "5", "60", "COST", "2"],
        ),
        ("fixed", vec!["RL.FIXED", "k:fw", "5", "HOUR", "COST", "2"]),
    ]
}

fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    base.iter().chain(extra).copied().collect()
}

#[test]
fn dryrun_answers_like_the_real_call_and_changes_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    for (name, cmd) in limiters() {
        let key = cmd[1];
        // On a missing key: nothing is created.
        let dirty0 = dirty(&mut c);
        let dry = rl(&mut c, &with(&cmd, &["DRYRUN"]));
        assert_eq!(int(&mut c, &["EXISTS", key]), 0, "{name}");
        assert_eq!(dirty(&mut c), dirty0, "{name}");
        let real = rl(&mut c, &cmd);
        assert_eq!(dry, real, "{name}: a dry run answers what the call does");
        // On an existing key: same bytes, same expiry, nothing dirty.
        let dump = bytes(&mut c, &["DUMP", key]);
        let exp = int(&mut c, &["PEXPIRETIME", key]);
        let dirty1 = dirty(&mut c);
        let dry = rl(&mut c, &with(&cmd, &["dryrun"]));
        assert_eq!(bytes(&mut c, &["DUMP", key]), dump, "{name}");
        assert_eq!(int(&mut c, &["PEXPIRETIME", key]), exp, "{name}");
        assert_eq!(dirty(&mut c), dirty1, "{name}");
        assert_eq!(dry, rl(&mut c, &cmd), "{name}");
        // A dry run of a denied request is denied too.
        let denied = rl(&mut c, &with(&cmd, &["DRYRUN"]));
        assert_eq!(denied[0], 0, "{name}");
    }
}

#[test]
fn refunds_give_back_and_never_beyond_fresh() {
    let s = Server::start();
    let mut c = s.connect();
    let t = clock_start(&mut c);
    set_clock(&mut c, t);
    for (name, cmd) in limiters() {
        let key = cmd[1];
        // Nothing to give back to a missing key: nothing is created.
        assert_eq!(
            rl(&mut c, &with(&cmd, &["REFUND"]))[0..3],
            [1, 5, 5],
            "{name}"
        );
        assert_eq!(int(&mut c, &["EXISTS", key]), 0, "{name}");
        assert_eq!(rl(&mut c, &cmd)[2], 3, "{name}");
        assert_eq!(rl(&mut c, &cmd)[2], 1, "{name}");
        // Give back 2 (the work did not happen): 3 left again.
        let r = rl(&mut c, &with(&cmd, &["REFUND"]));
        assert_eq!(r[0..4], [1, 5, 3, 0], "{name}");
        assert!(r[4] > 0, "{name}");
        // A dry-run refund changes nothing.
        let dump = bytes(&mut c, &["DUMP", key]);
        assert_eq!(
            rl(&mut c, &with(&cmd, &["REFUND", "DRYRUN"]))[2],
            5,
            "{name}"
        );
        assert_eq!(bytes(&mut c, &["DUMP", key]), dump, "{name}");
        // Refunding more than was taken: fresh, never more (and the key goes).
        assert_eq!(
            rl(&mut c, &with(&cmd, &["REFUND"]))[0..3],
            [1, 5, 5],
            "{name}"
        );
        assert_eq!(
            rl(&mut c, &with(&cmd, &["REFUND"]))[0..3],
            [1, 5, 5],
            "{name}"
        );
        assert_eq!(int(&mut c, &["EXISTS", key]), 0, "{name}");
        // A negative amount is refused outright.
        let mut neg = cmd.clone();
        if let Some(p) = neg.iter().position(|a| *a == "2") {
            neg[p] = "-2";
        }
        assert!(
            err(&mut c, &with(&neg, &["REFUND"])).starts_with("ERR "),
            "{name}"
        );
    }
}

#[test]
fn flags_are_checked() {
    let s = Server::start();
    let mut c = s.connect();
    for (_, cmd) in limiters() {
        assert_eq!(
            err(&mut c, &with(&cmd, &["DRYRUN", "DRYRUN"])),
            "ERR syntax error"
        );
        assert_eq!(
            err(&mut c, &with(&cmd, &["REFUND", "REFUND"])),
            "ERR syntax error"
        );
        assert_eq!(err(&mut c, &with(&cmd, &["DRY"])), "ERR syntax error");
    }
}

#[test]
fn refunds_and_dry_runs_reach_a_replica_exactly() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    for round in 0..20 {
        for (_, cmd) in limiters() {
            rl(&mut m, &cmd);
            if round % 3 == 0 {
                rl(&mut m, &with(&cmd, &["REFUND"]));
            }
            rl(&mut m, &with(&cmd, &["DRYRUN"]));
        }
    }
    wait_replicas(&mut m, 1);
    assert!(assert_same_state(&mut m, &mut r) >= 3);
}
