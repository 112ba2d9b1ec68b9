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

/// The commands in RESP bytes (an AOF), each as its arguments; stops at
/// the first thing that is not a whole command (a truncated tail).
pub fn resp_commands(b: &[u8]) -> Vec<Vec<Vec<u8>>> {
    fn int_line(b: &[u8], at: &mut usize, prefix: u8) -> Option<usize> {
        if *b.get(*at)? != prefix {
            return None;
        }
        let end = *at + b.get(*at..)?.windows(2).position(|w| w == b"\r\n")?;
        let n = std::str::from_utf8(b.get(*at + 1..end)?)
            .ok()?
            .parse()
            .ok()?;
        *at = end + 2;
        Some(n)
    }
    let mut out = vec![];
    let mut at = 0;
    'commands: while let Some(n) = int_line(b, &mut at, b'*') {
        let mut argv = vec![];
        for _ in 0..n {
            let Some(len) = int_line(b, &mut at, b'$') else {
                break 'commands;
            };
            let Some(arg) = b.get(at..at + len) else {
                break 'commands;
            };
            argv.push(arg.to_vec());
            at += len + 2;
        }
        out.push(argv);
    }
    out
}

/// Every command in the AOF files of the server whose directory is `dir`
/// (Redis 7's multi-part AOF: base, then increments, in file-name order).
pub fn aof_commands(dir: &std::path::Path) -> Vec<Vec<Vec<u8>>> {
    let d = dir.join("appendonlydir");
    let mut files: Vec<_> = std::fs::read_dir(&d)
        .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".aof"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| resp_commands(&std::fs::read(f).unwrap()))
        .collect()
}
