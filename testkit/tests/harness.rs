//! The harness tested on real servers: what every other test relies on.
//! A server starts on loopback with the module, and is gone (process,
//! port, directory) when dropped; the fake clock refuses instants Redis
//! would expire at once; the comparisons fail when they should; the
//! probes see writes; the DUMP builder reproduces real DUMPs.
#![cfg(test)]

use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use redis_ratelimit_testkit::dump::{restore, Dump};
use redis_ratelimit_testkit::*;

fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn process_exists(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn a_server_runs_the_module_on_loopback_and_is_gone_when_dropped() {
    let s = Server::start();
    let (port, dir, pid) = (s.port, s.dir.clone(), s.pid().unwrap());
    let mut c = s.connect();
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "k", "10", "1", "1"]),
        [1, 10, 9, 0, 1000]
    );
    let info: String = redis::cmd("CONFIG")
        .arg("GET")
        .arg("bind")
        .query::<Vec<String>>(&mut c)
        .unwrap()
        .join(" ");
    assert!(info.ends_with("127.0.0.1"), "{info}");
    assert!(dir.join("server.log").exists());
    drop(c);
    drop(s);
    // The process itself (not a wrapper around it) is gone, so is its port
    // and its directory.
    assert!(!process_exists(pid), "server {pid} still runs");
    assert!(!listening(port), "port {port} still answers");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn killed_servers_keep_their_files_and_restart_from_them() {
    let s = Server::start_with(&["--appendonly", "yes", "--appendfsync", "always"]);
    let mut c = s.connect();
    rl(&mut c, &["RL.SLIDING", "w", "10", "60"]);
    let before = state_of(&mut c);
    drop(c);
    let pid = s.pid().unwrap();
    let dir = s.kill();
    assert!(!process_exists(pid));
    let s = Server::start_in(dir.clone(), &["--appendonly", "yes"]);
    assert_eq!(state_of(&mut s.connect()), before);
    // restart(): the same options, in the same directory.
    let mut s = s.restart(false);
    assert_eq!(state_of(&mut s.connect()), before);
    assert!(s.alive());
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_fake_clock_stays_ahead_of_the_servers() {
    let s = Server::start();
    let mut c = s.connect();
    let (t0, reply, t1) = bracketed(&mut c, &["RL.SLIDING", "w", "10", "60"]);
    assert!(t0 <= t1 && reply[0] == 1);
    let now = server_now_ns(&mut c);
    assert!(now >= t0);
    let start = clock_start(&mut c);
    assert_eq!(start % SEC, 0);
    assert!(start >= now + 3600 * SEC - SEC && start <= now + 3600 * SEC + 5 * SEC);
    set_clock(&mut c, start);
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "f", "10", "60"]),
        [1, 10, 9, 0, 60_000]
    );
    assert_eq!(
        int(&mut c, &["PEXPIRETIME", "f"]) as u64,
        (start + 60 * SEC) / MS
    );
    // An instant less than FAKE_MARGIN_NS ahead is refused, loudly.
    for behind in [now - 86_400 * SEC, now, now + FAKE_MARGIN_NS - 60 * SEC] {
        let r = catch_unwind(AssertUnwindSafe(|| set_clock(&mut c, behind)));
        assert!(r.is_err(), "set_clock accepted {}", rfc3339(behind));
    }
    real_clock(&mut c);
}

#[test]
fn state_comparisons_fail_when_states_differ() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    rl(&mut m, &["RL.TOKENBUCKET", "b", "10", "0.001", "1"]);
    rl(&mut m, &["RL.SLIDING", "w", "10", "3600"]);
    wait_caught_up(&master, &replica);
    let mut r = replica.connect();
    assert_eq!(assert_same_state(&mut m, &mut r), 2);
    // A key only on one side, different bytes, a different expiry: each fails.
    let differ = |m: &mut redis::Connection, r: &mut redis::Connection| {
        catch_unwind(AssertUnwindSafe(|| assert_same_state(m, r))).is_err()
    };
    ok(&mut r, &["REPLICAOF", "NO", "ONE"]);
    ok(&mut r, &["SET", "extra", "x"]);
    assert!(differ(&mut m, &mut r));
    int(&mut r, &["DEL", "extra"]);
    assert_eq!(assert_same_state(&mut m, &mut r), 2);
    rl(&mut m, &["RL.SLIDING", "w", "10", "3600"]);
    assert!(differ(&mut m, &mut r));
    rl(&mut r, &["RL.SLIDING", "w", "10", "3600"]);
    int(&mut r, &["PEXPIRE", "b", "999999999"]);
    assert!(differ(&mut m, &mut r));
    // Keys about to expire (within 2 s) are left out on both sides.
    int(&mut r, &["DEL", "b", "w"]);
    int(&mut m, &["PEXPIRE", "b", "1500"]);
    int(&mut m, &["PEXPIRE", "w", "1500"]);
    assert_eq!(assert_same_state(&mut m, &mut r), 0);
}

#[test]
fn written_sees_writes_and_propagation_and_nothing_else() {
    let mut opts = AOF_COMMANDS.to_vec();
    opts.extend_from_slice(NO_PINGS);
    let master = Server::start_with(&opts);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    let w0 = written(&mut c);
    call(&mut c, &["GET", "nothing"]).unwrap();
    rl(&mut c, &["RL.TOKENBUCKET", "p", "5", "0.001", "0"]);
    assert_eq!(written(&mut c), w0);
    rl(&mut c, &["RL.TOKENBUCKET", "p", "5", "0.001", "1"]);
    let w1 = written(&mut c);
    assert!(
        w1.dirty > w0.dirty && w1.repl_offset > w0.repl_offset && w1.aof_bytes > w0.aof_bytes,
        "{w0:?} -> {w1:?}"
    );
    wait_caught_up(&master, &replica);
    assert_eq!(assert_same_state(&mut c, &mut replica.connect()), 1);
}

#[test]
fn the_dump_builder_takes_real_dumps_apart_and_back() {
    let s = Server::start();
    let mut c = s.connect();
    rl(&mut c, &["RL.TOKENBUCKET", "b", "10", "1", "3"]);
    rl(&mut c, &["RL.SLIDING", "w", "10", "60", "COST", "2"]);
    rl(&mut c, &["RL.FIXED", "f", "10", "60"]);
    for key in ["b", "w", "f"] {
        let raw = bytes(&mut c, &["DUMP", key]).unwrap();
        let d = Dump::parse(&raw);
        assert_eq!(d.payload(), raw, "{key}");
        // Rebuilt with a changed body, Redis takes it (valid CRC64) and
        // the module refuses what it cannot read.
        let mut bad = d.clone();
        bad.body = vec![0xff, 0];
        let e = restore(&mut c, "copy", 0, &bad.payload()).unwrap_err();
        assert!(
            e.starts_with("ERR ") && e != redis_ratelimit_testkit::dump::BAD_PAYLOAD,
            "{key}: {e}"
        );
        assert_eq!(restore(&mut c, "copy", 0, &raw), Ok(Value::Okay));
        assert_eq!(bytes(&mut c, &["DUMP", "copy"]), Some(raw));
    }
}

#[test]
fn the_cluster_cli_is_the_one_beside_the_server() {
    // RL_CLI wins; else a cli in the server binary's directory; else PATH.
    let cli = cluster_cli();
    if std::env::var("RL_CLI").is_err() {
        let server = std::path::PathBuf::from(server_binary());
        match server.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if dir.join("redis-cli").exists() || dir.join("valkey-cli").exists() => {
                assert!(cli.starts_with(&dir.display().to_string()), "{cli}");
            }
            _ => assert_eq!(cli, "redis-cli"),
        }
    }
    let out = std::process::Command::new(&cli)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{cli} --version");
}
