//! The internal effect commands (RL.SETSTATE, RL.WINDOWADD,
//! RL.WINDOWREFUND) on a real server: an ordinary client cannot call them
//! (it could forge a limiter's state), while a real replica applies what
//! its master sends and a real AOF replays them, refusing bad payloads.
#![cfg(test)]

use std::io::Write as _;
use std::path::PathBuf;

use redis_ratelimit_testkit::*;

const INTERNAL: &str = "is internal: it only applies what a master sends or an AOF holds";

/// A bucket state full again at `tat_ns`, as RL.SETSTATE carries it.
fn bucket_state(tat_ns: u64) -> Vec<u8> {
    let mut b = vec![b'B'];
    b.extend_from_slice(&tat_ns.to_le_bytes());
    b
}

/// A sliding-window update admitting `units` at `now_us` in a window of `span_us`.
fn window_update(now_us: u64, span_us: u64, units: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(33);
    for v in [now_us, span_us, now_us, units] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.push(0);
    b
}

fn raw_call(c: &mut redis::Connection, args: &[&[u8]]) -> Result<Value, String> {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Value>(c).map_err(error_text)
}

#[test]
fn ordinary_clients_cannot_forge_state() {
    let s = Server::start();
    let mut c = s.connect();
    let future = server_now_ns(&mut c) + 3600 * SEC;
    let forged: [(&str, Vec<u8>); 3] = [
        ("RL.SETSTATE", bucket_state(future)),
        ("RL.WINDOWADD", window_update(future / 1000, 60_000_000, 5)),
        (
            "RL.WINDOWREFUND",
            window_update(future / 1000, 60_000_000, 5)[..24].to_vec(),
        ),
    ];
    let before = dirty(&mut c);
    for (name, payload) in &forged {
        let args: [&[u8]; 3] = [name.as_bytes(), b"k", payload];
        // Directly.
        let e = raw_call(&mut c, &args).unwrap_err();
        assert_eq!(e, format!("ERR {name} {INTERNAL}"));
        // Inside MULTI/EXEC.
        ok(&mut c, &["MULTI"]);
        let queued = raw_call(&mut c, &args);
        let exec = call(&mut c, &["EXEC"]);
        assert!(
            format!("{queued:?} {exec:?}").contains(INTERNAL),
            "{name} in MULTI: {queued:?} {exec:?}"
        );
        // From a script.
        let script = format!("return redis.call('{name}', KEYS[1], ARGV[1])");
        let mut eval = redis::cmd("EVAL");
        eval.arg(&script).arg(1).arg("k").arg(payload.as_slice());
        let e = eval.query::<Value>(&mut c).map_err(error_text).unwrap_err();
        assert!(e.contains(INTERNAL), "{name} from Lua: {e}");
        assert_eq!(int(&mut c, &["EXISTS", "k"]), 0, "{name} wrote the key");
    }
    assert_eq!(dirty(&mut c), before, "a refused call wrote something");
    // Counted as errors, under ERR.
    let stats: String = redis::cmd("INFO").arg("errorstats").query(&mut c).unwrap();
    assert!(stats.contains("errorstat_ERR:"), "{stats}");
}

/// `cmdstat_<name>` fields from INFO commandstats, as (calls, failed).
fn command_stats(c: &mut redis::Connection, name: &str) -> (i64, i64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query(c).unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
        .unwrap_or("");
    let field = |f: &str| -> i64 {
        line.split([':', ','])
            .find_map(|kv| kv.strip_prefix(&format!("{f}=")))
            .map_or(0, |v| v.parse().unwrap())
    };
    (
        field("calls"),
        field("failed_calls") + field("rejected_calls"),
    )
}

#[test]
fn a_replica_applies_what_its_master_sends() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    rl(
        &mut m,
        &["RL.TOKENBUCKET", "tb", "10", "1", "3", "PERIOD", "3600"],
    );
    rl(&mut m, &["RL.FIXED", "fx", "10", "3600"]);
    for _ in 0..3 {
        rl(&mut m, &["RL.SLIDING", "sw", "10", "60"]);
    }
    rl(
        &mut m,
        &["RL.SLIDING", "sw", "10", "60", "COST", "1", "REFUND"],
    );
    wait_replicas(&mut m, 1);
    assert_eq!(assert_same_state(&mut m, &mut r), 3);
    for name in ["RL.SETSTATE", "RL.WINDOWADD", "RL.WINDOWREFUND"] {
        let (calls, failed) = command_stats(&mut r, name);
        assert!(calls > 0, "the replica never ran {name}");
        assert_eq!(failed, 0, "the replica refused {name}");
    }
}

/// The AOF file commands are appended to (Redis 7's multi-part AOF).
fn incr_aof(dir: &std::path::Path) -> PathBuf {
    let d = dir.join("appendonlydir");
    std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .unwrap_or_else(|| panic!("no incremental AOF in {}", d.display()))
}

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[test]
fn an_aof_replays_them_and_refuses_bad_payloads() {
    let s = Server::start_with(&[
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ]);
    let mut c = s.connect();
    rl(&mut c, &["RL.TOKENBUCKET", "tb", "10", "1", "3"]);
    for _ in 0..3 {
        rl(&mut c, &["RL.SLIDING", "sw", "10", "60"]);
    }
    rl(&mut c, &["RL.SLIDING", "sw", "10", "60", "REFUND"]);
    let before = state_of(&mut c);
    // What a master or an older release could have written, and garbage.
    let tat = server_now_ns(&mut c) + 3600 * SEC;
    let mut extra = resp(&[b"RL.SETSTATE", b"from-aof", &bucket_state(tat)]);
    extra.extend(resp(&[b"RL.SETSTATE", b"forged", b"garbage"]));
    extra.extend(resp(&[b"RL.SETSTATE", b"zero", &bucket_state(0)]));
    extra.extend(resp(&[
        b"RL.WINDOWADD",
        b"bad-update",
        &window_update(1, 0, 1),
    ]));
    std::fs::OpenOptions::new()
        .append(true)
        .open(incr_aof(&s.dir))
        .unwrap()
        .write_all(&extra)
        .unwrap();
    let check = |c: &mut redis::Connection| {
        let after = state_of(c);
        for b in &before {
            assert!(after.contains(b), "{} changed: {after:?}", b.0);
        }
        assert_eq!(int(c, &["EXISTS", "forged", "zero", "bad-update"]), 0);
        assert_eq!(
            int(c, &["PEXPIRETIME", "from-aof"]),
            i64::try_from(tat.div_ceil(MS)).unwrap()
        );
    };
    // DEBUG LOADAOF empties the data set and replays the AOF.
    ok(&mut c, &["DEBUG", "LOADAOF"]);
    check(&mut c);
    // So does a restart.
    let mut s = s.restart(false);
    let mut c = s.connect();
    check(&mut c);
    assert!(s.alive());
}
