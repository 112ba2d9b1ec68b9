//! State survives DEBUG RELOAD, a restart from RDB and a restart from AOF
//! (replayed commands and rewritten files) byte for byte, expiry included.
#![cfg(test)]

use redis_ratelimit_testkit::dump::{restore, Dump, BAD_PAYLOAD};
use redis_ratelimit_testkit::*;

fn assert_same(
    before: &[(String, Option<Vec<u8>>, i64)],
    after: &[(String, Option<Vec<u8>>, i64)],
) {
    assert!(!before.is_empty());
    assert_eq!(before.len(), after.len(), "key sets differ");
    for (b, a) in before.iter().zip(after) {
        assert_eq!(b, a, "key {} changed", b.0);
    }
}

#[test]
fn debug_reload_gives_back_the_same_state() {
    let s = Server::start();
    let mut c = s.connect();
    varied_states(&mut c);
    let before = state_of(&mut c);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    assert_same(&before, &state_of(&mut c));
}

#[test]
fn restart_from_rdb_gives_back_the_same_state() {
    let s = Server::start();
    let mut c = s.connect();
    varied_states(&mut c);
    let before = state_of(&mut c);
    let s = s.restart(true);
    let mut c = s.connect();
    assert_same(&before, &state_of(&mut c));
    // And the limiter keeps deciding from it.
    let r = rl(&mut c, &["RL.TOKENBUCKET", "b:fast", "1000", "1e4", "0"]);
    assert!(r[2] < 1000, "{r:?}");
}

#[test]
fn restart_from_replayed_aof_commands_gives_back_the_same_state() {
    // Without the RDB preamble the AOF is the propagated RL.SETSTATE and
    // RL.WINDOWADD commands, replayed on load.
    let s = Server::start_with(&[
        "--appendonly",
        "yes",
        "--aof-use-rdb-preamble",
        "no",
        "--appendfsync",
        "always",
    ]);
    let mut c = s.connect();
    varied_states(&mut c);
    let before = state_of(&mut c);
    let s = s.restart(false);
    let mut c = s.connect();
    assert_same(&before, &state_of(&mut c));
}

#[test]
fn restart_from_a_rewritten_aof_gives_back_the_same_state() {
    for preamble in ["no", "yes"] {
        let s = Server::start_with(&["--appendonly", "yes", "--aof-use-rdb-preamble", preamble]);
        let mut c = s.connect();
        varied_states(&mut c);
        let before = state_of(&mut c);
        call(&mut c, &["BGREWRITEAOF"]).unwrap();
        assert!(wait_until(20, || {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut c).unwrap();
            info.contains("aof_rewrite_in_progress:0")
                && info.contains("aof_rewrite_scheduled:0")
                && info.contains("aof_last_bgrewrite_status:ok")
        }));
        let s = s.restart(false);
        let mut c = s.connect();
        assert_same(&before, &state_of(&mut c));
    }
}

/// Calls that must decide on any state of a module type (cost 0, 1 and a
/// refund), by the type's name.
fn calls_for(ty: &str, key: &str) -> Vec<Vec<String>> {
    let base: &[&str] = match ty {
        "rl-bucket" => &["RL.TOKENBUCKET", key, "10", "2"],
        "rl-window" => &["RL.SLIDING", key, "50", "300", "COST"],
        "rl-fixwin" => &["RL.FIXED", key, "100", "DAY", "COST"],
        "rl-leases" => {
            return [&["DRYRUN"][..], &[]]
                .iter()
                .map(|tail| {
                    ["RL.ACQUIRE", key, "5", "60"]
                        .iter()
                        .chain(tail.iter())
                        .map(|s| s.to_string())
                        .collect()
                })
                .collect();
        }
        // A lock holds some limit's state: a policy of each kind meets it
        // (the others answer WRONGTYPE).
        "rl-locked" => {
            return ["p.bucket", "p.window", "p.fixed", "p.leases"]
                .iter()
                .flat_map(|p| {
                    [
                        vec![
                            "RL.TAKE".to_string(),
                            key.to_string(),
                            p.to_string(),
                            "DRYRUN".into(),
                        ],
                        vec!["RL.TAKE".to_string(), key.to_string(), p.to_string()],
                    ]
                })
                .collect();
        }
        other => panic!("{key}: restored as {other}"),
    };
    ["0", "1", "1 REFUND"]
        .iter()
        .map(|tail| {
            base.iter()
                .map(|s| s.to_string())
                .chain(tail.split(' ').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn restore_refuses_corrupted_payloads() {
    let s = Server::start();
    let mut c = s.connect();
    varied_states(&mut c);
    // Leases, and locks over each kind of state (policies with LOCKOUT).
    ints_on(&mut c, &["RL.ACQUIRE", "l:1", "3", "60"]);
    ints_on(&mut c, &["RL.ACQUIRE", "l:1", "3", "90"]);
    for (name, def) in [
        ("p.bucket", "TOKENBUCKET 1 1 PERIOD 60 LOCKOUT 600"),
        ("p.window", "SLIDING 1 60 LOCKOUT 600"),
        ("p.fixed", "FIXED 1 DAY LOCKOUT 600"),
        ("p.leases", "CONCURRENCY 1 60"),
    ] {
        let mut args = vec!["RL.POLICY", "SET", name];
        args.extend(def.split(' '));
        ok(&mut c, &args);
    }
    for (key, policy) in [("k:b", "p.bucket"), ("k:w", "p.window"), ("k:f", "p.fixed")] {
        ints_on(&mut c, &["RL.TAKE", key, policy]);
        ints_on(&mut c, &["RL.TAKE", key, policy]);
        let t: String = redis::cmd("TYPE").arg(key).query(&mut c).unwrap();
        assert_eq!(t, "rl-locked", "{key}");
    }
    let (mut refused, mut accepted) = (0, 0);
    for key in ["b:1", "w:1", "f:1", "w:trimmed", "l:1", "k:b", "k:w", "k:f"] {
        let raw = bytes(&mut c, &["DUMP", key]).unwrap();
        // One wrong byte anywhere, the CRC64 left as it was: Redis refuses
        // the payload before the module sees it.
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x5a;
            assert_eq!(
                restore(&mut c, "copy", 0, &bad),
                Err(BAD_PAYLOAD.into()),
                "{key}: byte {i} flipped"
            );
        }
        for n in 0..raw.len() {
            assert_eq!(
                restore(&mut c, "copy", 0, &raw[..n]),
                Err(BAD_PAYLOAD.into()),
                "{key}: cut to {n} bytes"
            );
        }
        // The same with the CRC64 recomputed, so the payload reaches the
        // module's rdb_load: every byte of the module id and data flipped
        // in turn, and the data cut short. Each is refused with an error,
        // or restored as a state every limiter call of its type decides on
        // (never `ERR internal error`) and that dumps and restores again to
        // the same bytes.
        let dump = Dump::parse(&raw);
        let mut variants = vec![];
        for i in 0..8 {
            let mut d = dump.clone();
            d.module_id ^= 0x5a << (8 * i);
            variants.push((format!("module id byte {i} flipped"), d));
        }
        for i in 0..dump.body.len() {
            let mut d = dump.clone();
            d.body[i] ^= 0x5a;
            variants.push((format!("data byte {i} flipped"), d));
        }
        for n in 0..dump.body.len() {
            let mut d = dump.clone();
            d.body.truncate(n);
            variants.push((format!("data cut to {n} bytes"), d));
        }
        for (what, d) in variants {
            let context = format!("{key}: {what}");
            match restore(&mut c, "copy", 0, &d.payload()) {
                Err(e) => {
                    assert!(e.starts_with("ERR ") && e != BAD_PAYLOAD, "{context}: {e}");
                    refused += 1;
                }
                Ok(Value::Okay) => {
                    accepted += 1;
                    let ty: String = redis::cmd("TYPE").arg("copy").query(&mut c).unwrap();
                    let again = bytes(&mut c, &["DUMP", "copy"]).unwrap();
                    for args in calls_for(&ty, "copy") {
                        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                        match call(&mut c, &args) {
                            Ok(Value::Array(d)) if d.len() == 5 || d.len() == 6 => {}
                            Err(e) if ty == "rl-locked" && e.starts_with("WRONGTYPE ") => {}
                            other => panic!("{context}: {args:?} answered {other:?}"),
                        }
                    }
                    assert_eq!(
                        restore(&mut c, "again", 0, &again),
                        Ok(Value::Okay),
                        "{context}"
                    );
                    assert_eq!(bytes(&mut c, &["DUMP", "again"]), Some(again), "{context}");
                }
                other => panic!("{context}: {other:?}"),
            }
        }
    }
    eprintln!("{refused} refused, {accepted} accepted");
    // Both paths were reached.
    assert!(
        refused > 0 && accepted > 0,
        "{refused} refused, {accepted} accepted"
    );
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
}
