//! One check for "whatever this master holds is sound": the replica holds
//! the same bytes, and the state survives an AOF replay, an AOF rewrite and
//! an RDB reload unchanged. Tests that leave odd states behind (a storm of
//! hostile arguments, restored payloads) end with it.

use super::*;

/// Options for a master that [`assert_state_survives_everything`] can
/// restart from its AOF: the file is the stream of propagated commands
/// (no RDB preamble), so a replay runs every RL.SETSTATE/RL.WINDOWADD.
pub const AOF_COMMANDS: &[&str] = &[
    "--appendonly",
    "yes",
    "--aof-use-rdb-preamble",
    "no",
    "--appendfsync",
    "no",
];

/// Asserts, for a master started with [`AOF_COMMANDS`] and its replica:
/// 1. once the replica caught up, both hold the same keys, bytes and
///    absolute expiries;
/// 2. the master restarted from its AOF (the replayed command stream) holds
///    the same again;
/// 3. so does the master restarted after BGREWRITEAOF (every value through
///    its `aof_rewrite` callback and back);
/// 4. and after DEBUG RELOAD (`rdb_save` and `rdb_load`).
///
/// The replica is detached first (REPLICAOF NO ONE) and kept as the
/// reference. Keys expiring within two seconds are ignored (see
/// [`assert_same_state`]). Returns the number of keys compared.
pub fn assert_state_survives_everything(master: Server, replica: &Server) -> usize {
    wait_caught_up(&master, replica);
    let mut c = master.connect();
    let mut rc = replica.connect();
    eprintln!("comparing the master with its replica");
    let keys = assert_same_state(&mut c, &mut rc);
    ok(&mut rc, &["REPLICAOF", "NO", "ONE"]);
    drop(c);

    let master = master.restart(false);
    let mut c = master.connect();
    eprintln!("comparing the master restarted from its AOF with the replica");
    assert_eq!(
        assert_same_state(&mut c, &mut rc),
        keys,
        "after an AOF replay"
    );

    call(&mut c, &["BGREWRITEAOF"]).unwrap();
    assert!(
        wait_until(60, || {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
            info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
                && info.contains("aof_last_bgrewrite_status:ok")
        }),
        "BGREWRITEAOF did not finish; log:\n{}",
        master.log()
    );
    drop(c);
    let master = master.restart(false);
    let mut c = master.connect();
    eprintln!("comparing the master restarted from its rewritten AOF with the replica");
    assert_eq!(
        assert_same_state(&mut c, &mut rc),
        keys,
        "after an AOF rewrite"
    );

    ok(&mut c, &["DEBUG", "RELOAD"]);
    eprintln!("comparing the master after DEBUG RELOAD with the replica");
    assert_eq!(
        assert_same_state(&mut c, &mut rc),
        keys,
        "after DEBUG RELOAD"
    );
    keys
}
