//! Corrupted RDB payloads that reach the module's `rdb_load`: DUMPs of
//! rl-bucket and rl-window keys with their module data mutated, truncated,
//! extended or rebuilt from hostile values, and a valid footer (RDB version
//! and CRC64) recomputed so Redis hands them to the module. Each RESTORE is
//! refused with an error or gives a key that every callback (save, digest,
//! copy, memory usage, free) and every limiter command handles; the server
//! stays up, and whatever was accepted replicates and reloads unchanged.
//!
//! Reproduce a failure with what it prints: `RL_FUZZ_SEED=<seed>` and
//! `RL_FUZZ_CLOCK=<ns>` (the module's clock; it must be ahead of the
//! server's, so an old one needs the server's clock set back, e.g. with
//! libfaketime).
#![cfg(test)]

use redis_ratelimit_testkit::dump::*;
use redis_ratelimit_testkit::*;

/// A limiter decision: integers, each within its range (CL.THROTTLE's
/// own shape for it; RL.ALL's index of the binding limit last).
fn assert_decision(args: &[String], v: &Value) {
    let d: Vec<i64> = match v {
        Value::Array(items) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) => *i,
                other => panic!("{args:?}: non-integer {other:?}"),
            })
            .collect(),
        other => panic!("{args:?}: not a decision: {other:?}"),
    };
    let all = args[0] == "RL.ALL";
    assert_eq!(d.len(), if all { 6 } else { 5 }, "{args:?}: {d:?}");
    let (flag, limit, remaining, retry, reset) = (d[0], d[1], d[2], d[3], d[4]);
    let shape = if args[0] == "CL.THROTTLE" {
        // [limited, max_burst + 1, remaining, retry_after_s (-1 when allowed), reset_after_s]
        flag == 0 && retry == -1 || flag == 1 && retry >= -1
    } else {
        (flag == 1 && retry == 0 || flag == 0 && (retry > 0 || retry == -1))
            && retry <= reset
            && (!all || d[5] == 1)
    };
    assert!(
        (0..=1).contains(&flag)
            && limit >= 1
            && (0..=limit).contains(&remaining)
            && reset >= 0
            && shape,
        "{args:?}: malformed decision {d:?}"
    );
}

/// A limiter family: the command that makes a key of its type, and calls
/// that must handle any state of that type (`K` stands for the key).
struct Family {
    command: &'static str,
    make: &'static [&'static str],
    calls: &'static [&'static [&'static str]],
    /// Its clause in RL.ALL.
    all: &'static [&'static str],
}

#[rustfmt::skip]
const FAMILIES: &[Family] = &[
    Family {
        command: "RL.TOKENBUCKET",
        make: &["RL.TOKENBUCKET", "K", "10", "1", "3"],
        calls: &[
            &["RL.TOKENBUCKET", "K", "5", "1", "0"],
            &["RL.TOKENBUCKET", "K", "5", "1", "1"],
            &["RL.TOKENBUCKET", "K", "1000000", "1e4", "7", "PERIOD", "0.001"],
            &["RL.TOKENBUCKET", "K", "3000000000000000000", "1e9", "9223372036854775807"],
            &["RL.TOKENBUCKET", "K", "5", "1", "2", "DRYRUN"],
            &["RL.TOKENBUCKET", "K", "5", "1", "9223372036854775807", "REFUND"],
        ],
        all: &["TOKENBUCKET", "5", "1"],
    },
    Family {
        command: "RL.SLIDING",
        make: &["RL.SLIDING", "K", "10", "60", "COST", "2"],
        calls: &[
            &["RL.SLIDING", "K", "5", "1", "COST", "0"],
            &["RL.SLIDING", "K", "5", "1"],
            &["RL.SLIDING", "K", "9223372036854775807", "315360000", "COST", "3"],
            &["RL.SLIDING", "K", "1", "0.001", "COST", "9223372036854775807"],
            &["RL.SLIDING", "K", "5", "60", "COST", "2", "DRYRUN"],
            &["RL.SLIDING", "K", "9223372036854775807", "315360000", "COST", "9223372036854775807", "REFUND"],
        ],
        all: &["SLIDING", "5", "1"],
    },
    Family {
        command: "RL.GCRA",
        make: &["RL.GCRA", "K", "10", "1", "1", "COST", "3"],
        calls: &[
            &["RL.GCRA", "K", "5", "1", "1", "COST", "0"],
            &["RL.GCRA", "K", "5", "1", "1"],
            &["RL.GCRA", "K", "1000000", "1e4", "1", "COST", "7"],
            &["RL.GCRA", "K", "1", "1", "1", "COST", "9223372036854775807"],
            &["RL.GCRA", "K", "5", "1", "1", "COST", "9223372036854775807", "REFUND"],
        ],
        all: &["GCRA", "5", "1", "1"],
    },
    Family {
        command: "RL.FIXED",
        make: &["RL.FIXED", "K", "10", "60", "COST", "2"],
        calls: &[
            &["RL.FIXED", "K", "5", "1", "COST", "0"],
            &["RL.FIXED", "K", "5", "60"],
            &["RL.FIXED", "K", "9223372036854775807", "MONTH", "COST", "3", "TZ", "America/New_York"],
            &["RL.FIXED", "K", "1", "0.001", "COST", "9223372036854775807"],
            &["RL.FIXED", "K", "5", "60", "COST", "9223372036854775807", "REFUND"],
        ],
        all: &["FIXED", "5", "60"],
    },
    Family {
        command: "CL.THROTTLE",
        make: &["CL.THROTTLE", "K", "9", "1", "1", "3"],
        calls: &[
            &["CL.THROTTLE", "K", "5", "1", "1", "0"],
            &["CL.THROTTLE", "K", "5", "1", "1"],
            &["CL.THROTTLE", "K", "1000", "1", "60", "7"],
        ],
        all: &[],
    },
];

fn with_key(args: &[&str], key: &str) -> Vec<String> {
    args.iter()
        .map(|a| {
            if *a == "K" {
                key.to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

/// One module type: a real DUMP of it and the families whose keys have it.
struct Kind {
    type_name: String,
    dump: Dump,
    families: Vec<&'static Family>,
}

#[test]
fn corrupted_restore_payloads_are_refused_or_handled_never_crash() {
    let seed = Rng::seed_from_env("RL_FUZZ_SEED");
    let mut r = Rng::new(seed);
    let mut master = Server::start_with(AOF_COMMANDS);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();

    // The module's clock an hour ahead: nothing the limiters write expires
    // (in real time) before the final comparison.
    let now = std::env::var("RL_FUZZ_CLOCK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| clock_start(&mut c));
    eprintln!(
        "fuzz seed {seed}, clock {now} ({}): rerun with RL_FUZZ_SEED={seed} RL_FUZZ_CLOCK={now}",
        rfc3339(now)
    );
    set_clock(&mut c, now);
    let now_us = now / 1000;

    // A real DUMP of every module type, from every family.
    let mut kinds: Vec<Kind> = vec![];
    for f in FAMILIES {
        let key = format!("orig:{}", f.command);
        // Two requests 5 ms apart: a sliding window's log gets two entries.
        call(
            &mut c,
            &with_key(f.make, &key)
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        set_clock(&mut c, now + 5 * MS);
        call(
            &mut c,
            &with_key(f.make, &key)
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>(),
        )
        .unwrap();
        set_clock(&mut c, now);
        let type_name: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        let raw = bytes(&mut c, &["DUMP", &key]).unwrap();
        let dump = Dump::parse(&raw);
        // Taken apart and put together again, byte for byte.
        assert_eq!(dump.payload(), raw, "{type_name}");
        match kinds.iter_mut().find(|k| k.type_name == type_name) {
            Some(k) => {
                assert_eq!(k.dump.module_id, dump.module_id);
                k.families.push(f);
            }
            None => kinds.push(Kind {
                type_name,
                dump,
                families: vec![f],
            }),
        }
    }
    let summary: Vec<String> = kinds
        .iter()
        .map(|k| {
            let fams: Vec<&str> = k.families.iter().map(|f| f.command).collect();
            format!(
                "{} ({} body bytes) <- {fams:?}",
                k.type_name,
                k.dump.body.len()
            )
        })
        .collect();
    eprintln!("module types: {summary:?}");
    assert!(kinds.len() >= 2, "{summary:?}");

    // A wrong CRC stops a payload before the module sees it: the variants
    // below all carry a recomputed one.
    let mut bad_crc = kinds[0].dump.payload();
    *bad_crc.last_mut().unwrap() ^= 1;
    assert_eq!(restore(&mut c, "x", 0, &bad_crc), Err(BAD_PAYLOAD.into()));

    let mut internal: Vec<String> = vec![];
    let variants = 6000u64;
    let (mut refused, mut accepted) = (0u64, 0u64);
    let mut by_kind: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for i in 0..variants {
        let kind = &kinds[i as usize % kinds.len()];
        let others: Vec<&Dump> = kinds
            .iter()
            .filter(|k| k.type_name != kind.type_name)
            .map(|k| &k.dump)
            .collect();
        let (d, what) = variant(&mut r, &kind.dump, &others, now_us);
        let key = format!("fz:{i}");
        let payload = d.payload();
        // Half without a TTL, half with one that outlives the test.
        let ttl = if r.one_in(2) { 0 } else { 7_200_000 };
        let context = || {
            format!(
                "seed {seed}, clock {now}, variant {i} of {} ({what}): RESTORE {key} {ttl} {payload:02x?} REPLACE",
                kind.type_name
            )
        };
        let entry = by_kind
            .entry(format!("{} {what}", kind.type_name))
            .or_default();
        match restore(&mut c, &key, ttl, &payload) {
            Err(e) => {
                assert!(
                    e.starts_with("ERR ") && e != BAD_PAYLOAD,
                    "{}: {e}",
                    context()
                );
                refused += 1;
                entry.0 += 1;
                assert!(master.alive(), "{}: the server died", context());
                continue;
            }
            Ok(Value::Okay) => {
                accepted += 1;
                entry.1 += 1;
            }
            Ok(other) => panic!("{}: {other:?}", context()),
        }
        // Accepted: every limiter of its type decides on it, the others
        // answer WRONGTYPE, and every callback handles it.
        let ty: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
        let owner = kinds
            .iter()
            .find(|k| k.type_name == ty)
            .unwrap_or_else(|| panic!("{}: restored as type {ty}", context()));
        for f in FAMILIES {
            let ours = owner.families.iter().any(|o| o.command == f.command);
            let mut calls: Vec<Vec<String>> = f.calls.iter().map(|a| with_key(a, &key)).collect();
            if !f.all.is_empty() {
                let mut all = vec!["RL.ALL".to_string(), "LIMIT".into(), key.clone()];
                all.extend(f.all.iter().map(|s| s.to_string()));
                calls.push(all);
            }
            if !ours {
                calls.truncate(1);
            }
            for args in &calls {
                let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
                match call(&mut c, &a) {
                    Ok(v) if ours => assert_decision(args, &v),
                    // A handler that panicked: a state rdb_load should have
                    // refused. Collected, to report every case at the end.
                    Err(e) if ours && e == "ERR internal error" => {
                        internal.push(format!("{}: {args:?}", context()));
                    }
                    Err(e) if ours => panic!("{}: {args:?} failed: {e}", context()),
                    other => assert_eq!(
                        other,
                        Err(
                            "WRONGTYPE Operation against a key holding the wrong kind of value"
                                .into()
                        ),
                        "{}: {args:?}",
                        context()
                    ),
                }
            }
        }
        // rdb_save of what rdb_load accepted loads again, to the same bytes.
        let again = bytes(&mut c, &["DUMP", &key]).unwrap();
        assert_eq!(
            restore(&mut c, "fz:roundtrip", 0, &again),
            Ok(Value::Okay),
            "{}",
            context()
        );
        assert_eq!(
            bytes(&mut c, &["DUMP", "fz:roundtrip"]),
            Some(again),
            "{}",
            context()
        );
        let mem = call(&mut c, &["MEMORY", "USAGE", &key]);
        assert!(
            matches!(mem, Ok(Value::Int(n)) if n > 0),
            "{}: {mem:?}",
            context()
        );
        let digest = call(&mut c, &["DEBUG", "DIGEST-VALUE", &key]);
        assert!(
            matches!(digest, Ok(Value::Array(_))),
            "{}: {digest:?}",
            context()
        );
        assert_eq!(int(&mut c, &["COPY", &key, "fz:copy", "REPLACE"]), 1);
        assert_eq!(
            bytes(&mut c, &["DUMP", "fz:copy"]),
            bytes(&mut c, &["DUMP", &key]),
            "{}",
            context()
        );
        assert_eq!(int(&mut c, &["DEL", "fz:copy", "fz:roundtrip"]), 2);
    }
    real_clock(&mut c);
    eprintln!("{variants} variants: {refused} refused, {accepted} accepted; (refused, accepted) by type and mutation:");
    for (k, v) in &by_kind {
        eprintln!("  {k}: {v:?}");
    }
    assert!(master.alive());
    assert!(
        internal.is_empty(),
        "{} limiter calls on accepted states answered ERR internal error (a state rdb_load should refuse), e.g.:\n{}",
        internal.len(),
        internal.iter().take(5).cloned().collect::<Vec<_>>().join("\n")
    );
    assert_eq!(refused + accepted, variants);
    // Both outcomes were reached, by many variants.
    assert!(
        refused >= variants / 4 && accepted >= variants / 10,
        "{by_kind:?}"
    );

    // Whatever was accepted replicates byte for byte and survives an AOF
    // replay (RL.SETSTATE accepts every state rdb_load accepts), an AOF
    // rewrite and an RDB reload.
    drop(c);
    let keys = assert_state_survives_everything(master, &replica);
    eprintln!("{keys} keys identical on the replica and after every reload");
    assert!(keys as u64 >= accepted, "{keys} < {accepted}");
}

/// Found by the fuzz above: a log whose one entry holds u64::MAX units (at
/// an instant at the decoder's upper bound) passed `rdb_load`, and a plain
/// RL.SLIDING on it then overflowed (`ERR internal error`). No real log
/// holds more than i64::MAX units: such a payload must be refused, or
/// decided on.
#[test]
fn a_restored_window_holding_more_units_than_any_limit_is_refused_or_decided() {
    let s = Server::start();
    let mut c = s.connect();
    rl(&mut c, &["RL.SLIDING", "w", "10", "60"]);
    let mut d = Dump::parse(&bytes(&mut c, &["DUMP", "w"]).unwrap());
    // Format 1, first instant 2^55 us, one entry: delta 0, count u64::MAX.
    let mut log = vec![1];
    log.extend_from_slice(&(1u64 << 55).to_le_bytes());
    log.push(1);
    varint(&mut log, u64::MAX);
    d.body = vec![OP_STRING];
    rdb_len(&mut d.body, log.len() as u64);
    d.body.extend(log);
    d.body.push(OP_EOF);
    match restore(&mut c, "huge", 0, &d.payload()) {
        Err(e) => assert_eq!(e, "ERR Bad data format"),
        Ok(_) => {
            for args in [
                vec!["RL.SLIDING", "huge", "5", "1"],
                vec![
                    "RL.SLIDING",
                    "huge",
                    "9223372036854775807",
                    "315360000",
                    "COST",
                    "3",
                ],
            ] {
                let owned: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                match call(&mut c, &args) {
                    Ok(v) => assert_decision(&owned, &v),
                    Err(e) => panic!("{args:?} on the restored log: {e}"),
                }
            }
        }
    }
}
