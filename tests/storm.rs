//! An argument storm: 100,000 random and mutated argument vectors, for every
//! command of the spec (landed or not, internal ones included), against one
//! live server with a replica. Every reply is an `ERR `/`WRONGTYPE ` error
//! or a well-formed decision (or OK from an internal command); an error or a
//! denial writes nothing; the server stays up. Then every state the storm
//! left behind must be identical on the replica, after an AOF replay, after
//! an AOF rewrite and after DEBUG RELOAD.
//!
//! The internal commands' arguments (binary payloads whose format is the
//! module's own) are taken from what the module really propagates: a
//! warm-up of valid limiter calls, read back from the AOF, seeds them.
//!
//! Reproduce a failure with the seed it prints: `RL_STORM_SEED=<seed>`.
//! `RL_STORM_VECTORS` changes the count (default 100,000).
#![cfg(test)]

use redis_ratelimit_testkit::*;

use std::fmt::Write as _;
use std::time::Instant;

/// Every command of the spec, landed or not. Internal and test-only ones
/// the module registers beyond these are added from `COMMAND LIST`.
const SPEC_COMMANDS: &[&str] = &[
    "RL.TOKENBUCKET",
    "RL.SLIDING",
    "RL.GCRA",
    "RL.FIXED",
    "CL.THROTTLE",
    "RL.ALL",
    "RL.SETSTATE",
    "RL.WINDOWADD",
    "RL.ACQUIRE",
    "RL.RELEASE",
    "RL.RENEW",
    "RL.LEASE",
];

/// The spec's limiter commands: they answer decisions.
const DECIDING: &[&str] = &[
    "RL.TOKENBUCKET",
    "RL.SLIDING",
    "RL.GCRA",
    "RL.FIXED",
    "CL.THROTTLE",
    "RL.ALL",
    "RL.ACQUIRE",
];

/// Lease commands that answer 1 or 0.
const ANSWERS_BIT: &[&str] = &["RL.RELEASE", "RL.RENEW"];

/// Internal commands (every module command that does not decide, test
/// hooks aside): they answer OK.
fn answers_ok(name: &str) -> bool {
    !decides(name)
        && !ANSWERS_BIT.contains(&name)
        && (name.starts_with("RL.") || name.starts_with("CL."))
}

fn decides(name: &str) -> bool {
    DECIDING.contains(&name)
}

/// The key whose bytes are compared around a call: the first key.
fn touched_key(v: &[Vec<u8>]) -> &[u8] {
    let at = if v[0].eq_ignore_ascii_case(b"RL.ALL") {
        v.iter()
            .position(|a| a.eq_ignore_ascii_case(b"LIMIT"))
            .map(|i| i + 1)
    } else {
        Some(1)
    };
    at.and_then(|i| v.get(i))
        .map(|k| k.as_slice())
        .unwrap_or(b"k0")
}

/// Keys the storm returns to, so state builds up and types collide.
const KEYS: &[&str] = &[
    "k0", "k1", "k2", "k3", "k4", "k5", "{t}:a", "{t}:b", "{t}:c", "s:str", "s:list",
];

/// Tokens that break parsers: numbers at and past every edge, not-numbers,
/// keywords out of place.
const HOSTILE: &[&str] = &[
    "",
    "0",
    "-0",
    "1",
    "-1",
    "+1",
    "00",
    "01",
    "1.",
    ".5",
    "-.5",
    "0.0",
    "-0.0",
    "1e3",
    "1E3",
    "1e",
    "e5",
    "1e+3",
    "0x10",
    "nan",
    "NaN",
    "-nan",
    "inf",
    "-inf",
    "+inf",
    "Infinity",
    "1e308",
    "1e309",
    "-1e309",
    "1e-308",
    "4.9e-324",
    "1e-400",
    "2.2250738585072014e-308",
    "9223372036854775807",
    "9223372036854775806",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999999",
    "0.0001",
    "0.0005",
    "0.001",
    "0.0015",
    "1.0000",
    "315360000",
    "315360000.001",
    "315360001",
    " 1",
    "1 ",
    "1\0",
    "\0",
    "1,5",
    "1_000",
    "\u{0661}",
    "LIMIT",
    "COST",
    "PERIOD",
    "DRYRUN",
    "REFUND",
    "TZ",
    "PXAT",
    "bucket",
    "window",
    "TOKENBUCKET",
    "SLIDING",
    "GCRA",
    "FIXED",
    "MINUTE",
    "month",
    "Week",
    "UTC",
    "America/New_York",
    "Nope/Nowhere",
];

fn int_str(r: &mut Rng) -> String {
    match r.below(6) {
        0 => r.below(4).to_string(),
        1 => r.below(21).to_string(),
        2 => (1 + r.below(1000)).to_string(),
        3 => (1 + r.below(1_000_000_000)).to_string(),
        4 => r
            .pick(&[
                "9223372036854775807",
                "4611686018427387904",
                "1000000000000",
            ])
            .into(),
        _ => (1 + r.below(5)).to_string(),
    }
}

fn limit(r: &mut Rng) -> String {
    r.pick(&["1", "2", "3", "5", "10", "100", "1000"]).into()
}

fn cost(r: &mut Rng) -> String {
    match r.below(8) {
        0 => "0".into(),
        1 => int_str(r),
        _ => (1 + r.below(3)).to_string(),
    }
}

fn rate(r: &mut Rng) -> String {
    r.pick(&[
        "0.001", "0.5", "1", "2", "10", "100", "1e4", "1e-3", "1.5", "3.25",
    ])
    .into()
}

fn seconds(r: &mut Rng) -> String {
    r.pick(&["0.001", "0.25", "0.5", "1", "1.5", "60", "3600", "86400"])
        .into()
}

fn calendar(r: &mut Rng) -> String {
    let unit = r.pick(&["MINUTE", "HOUR", "DAY", "WEEK", "MONTH"]);
    random_case(r, unit)
}

fn random_case(r: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if r.one_in(2) {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

fn zone(r: &mut Rng) -> String {
    r.pick(&[
        "UTC",
        "America/New_York",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "Etc/GMT+12",
        "Nope/Nowhere",
    ])
    .into()
}

/// Mostly a key of the command's own kind (`tag`), so state builds up;
/// sometimes a shared one, so types collide; rarely an odd one.
fn key(r: &mut Rng, tag: &str) -> Vec<u8> {
    match r.below(20) {
        0 => vec![],
        1 => r.bytes(12),
        2 => format!("fresh:{}", r.below(100_000)).into_bytes(),
        3..=5 => r.pick(KEYS).as_bytes().to_vec(),
        _ => format!("{tag}:{}", r.below(4)).into_bytes(),
    }
}

fn push(v: &mut Vec<Vec<u8>>, s: impl AsRef<[u8]>) {
    v.push(s.as_ref().to_vec());
}

/// DRYRUN and REFUND, each maybe, in either order.
fn flags(r: &mut Rng, v: &mut Vec<Vec<u8>>) {
    let odds = 6;
    let mut f = vec![];
    if r.one_in(odds) {
        f.push(random_case(r, "DRYRUN"));
    }
    if r.one_in(odds) {
        f.push(random_case(r, "REFUND"));
    }
    if f.len() == 2 && r.one_in(2) {
        f.swap(0, 1);
    }
    for x in f {
        push(v, x);
    }
}

/// A key and a limiter spec inside RL.ALL.
fn all_spec(r: &mut Rng, v: &mut Vec<Vec<u8>>) {
    let kind = r.below(5);
    v.push(key(
        r,
        ["{all}tb", "{all}sw", "{all}gcra", "{all}fw", "{all}lease"][kind as usize],
    ));
    match kind {
        4 => {
            push(v, "CONCURRENCY");
            push(v, limit(r));
            push(v, seconds(r));
        }
        0 => {
            push(v, "TOKENBUCKET");
            push(v, limit(r));
            push(v, rate(r));
            if r.one_in(3) {
                push(v, "PERIOD");
                push(v, seconds(r));
            }
        }
        1 => {
            push(v, "SLIDING");
            push(v, limit(r));
            push(v, seconds(r));
        }
        2 => {
            push(v, "GCRA");
            push(v, limit(r));
            push(v, rate(r));
            push(v, seconds(r));
        }
        _ => {
            push(v, "FIXED");
            push(v, limit(r));
            if r.one_in(2) {
                push(v, calendar(r));
                if r.one_in(2) {
                    push(v, "TZ");
                    push(v, zone(r));
                }
            } else {
                push(v, seconds(r));
            }
        }
    }
}

/// Real calls of the internal commands, by upper-case name.
type Seeds = std::collections::HashMap<String, Vec<Vec<Vec<u8>>>>;

/// The commands of a RESP command stream (an AOF without RDB preamble),
/// up to the first thing that is not one.
fn parse_resp_commands(b: &[u8]) -> Vec<Vec<Vec<u8>>> {
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

/// Every call of an internal command in the server's AOF files.
fn harvest_internal_calls(server: &Server) -> Seeds {
    let mut seeds = Seeds::new();
    let dir = server.dir.join("appendonlydir");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for argv in parse_resp_commands(&bytes) {
            let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
            if answers_ok(&name) {
                let calls = seeds.entry(name).or_default();
                if calls.len() < 2000 {
                    calls.push(argv);
                }
            }
        }
    }
    seeds
}

/// A well-formed call of `name` per the spec's grammar.
fn valid(r: &mut Rng, name: &str, seeds: &Seeds) -> Vec<Vec<u8>> {
    let mut v = vec![];
    push(&mut v, random_case(r, name));
    match name {
        "RL.TOKENBUCKET" => {
            v.push(key(r, "tb"));
            push(&mut v, limit(r));
            push(&mut v, rate(r));
            push(&mut v, cost(r));
            if r.one_in(3) {
                push(&mut v, "PERIOD");
                push(&mut v, seconds(r));
            }
            flags(r, &mut v);
        }
        "RL.SLIDING" => {
            v.push(key(r, "sw"));
            push(&mut v, limit(r));
            push(&mut v, seconds(r));
            if r.one_in(2) {
                push(&mut v, "COST");
                push(&mut v, cost(r));
            }
            flags(r, &mut v);
        }
        "RL.GCRA" => {
            v.push(key(r, "gcra"));
            push(&mut v, limit(r));
            push(&mut v, rate(r));
            push(&mut v, seconds(r));
            if r.one_in(2) {
                push(&mut v, "COST");
                push(&mut v, cost(r));
            }
            flags(r, &mut v);
        }
        "RL.FIXED" => {
            v.push(key(r, "fw"));
            push(&mut v, limit(r));
            let cal = r.one_in(2);
            if cal {
                push(&mut v, calendar(r));
            } else {
                push(&mut v, seconds(r));
            }
            if r.one_in(2) {
                push(&mut v, "COST");
                push(&mut v, cost(r));
            }
            if cal && r.one_in(2) {
                push(&mut v, "TZ");
                push(&mut v, zone(r));
            }
            flags(r, &mut v);
        }
        "CL.THROTTLE" => {
            v.push(key(r, "cell"));
            push(&mut v, r.below(20).to_string());
            push(&mut v, (1 + r.below(100)).to_string());
            push(&mut v, (1 + r.below(120)).to_string());
            if r.one_in(2) {
                push(&mut v, r.below(4).to_string());
            }
        }
        "RL.ACQUIRE" => {
            v.push(key(r, "lease"));
            push(&mut v, limit(r));
            push(&mut v, seconds(r));
            if r.one_in(6) {
                push(&mut v, random_case(r, "DRYRUN"));
            }
        }
        "RL.RELEASE" | "RL.RENEW" => {
            v.push(key(r, "lease"));
            push(&mut v, int_str(r));
            if name == "RL.RENEW" {
                push(&mut v, seconds(r));
            }
        }
        "RL.ALL" => {
            if r.one_in(3) {
                push(&mut v, "COST");
                push(&mut v, cost(r));
            }
            flags(r, &mut v);
            for _ in 0..1 + r.below(3) {
                push(&mut v, "LIMIT");
                all_spec(r, &mut v);
                if r.one_in(4) {
                    push(&mut v, "COST");
                    push(&mut v, cost(r));
                }
            }
        }
        _ => match seeds.get(name) {
            // An internal command as the module really sent it, sometimes
            // on another key (of another type, too).
            Some(calls) if !calls.is_empty() => {
                v = r.pick_ref(calls).clone();
                if r.one_in(3) && v.len() > 1 {
                    let tag = r.pick(&["tb", "sw", "fw", "gcra", "cell"]);
                    v[1] = key(r, tag);
                }
            }
            // A command the spec only hints at: random arguments.
            _ => {
                for _ in 0..r.below(8) {
                    push(&mut v, random_token(r));
                }
            }
        },
    }
    v
}

fn random_token(r: &mut Rng) -> Vec<u8> {
    match r.below(5) {
        0 => r.bytes(10),
        1 => int_str(r).into_bytes(),
        _ => r.pick(HOSTILE).as_bytes().to_vec(),
    }
}

/// One to three mutations of a valid call.
fn mutate(r: &mut Rng, v: &mut Vec<Vec<u8>>, names: &[String]) {
    for _ in 0..1 + r.below(3) {
        let n = v.len() as u64;
        let i = 1 + r.below(n.max(2) - 1) as usize;
        match r.below(15) {
            0 | 1 if (i as u64) < n => v[i] = r.pick(HOSTILE).as_bytes().to_vec(),
            13 if (i as u64) < n && !v[i].is_empty() => {
                // Flip bits inside an argument (a binary payload, say).
                for _ in 0..1 + r.below(3) {
                    let j = r.below(v[i].len() as u64) as usize;
                    v[i][j] ^= 1 << r.below(8);
                }
            }
            14 if (i as u64) < n => {
                // Cut an argument short, or lengthen it.
                if r.one_in(2) {
                    let len = r.below(v[i].len() as u64 + 1) as usize;
                    v[i].truncate(len);
                } else {
                    let more = r.bytes(9);
                    v[i].extend(more);
                }
            }
            2 if (i as u64) < n => v[i] = r.bytes(16),
            3 if (i as u64) < n => {
                v.remove(i);
            }
            4 => v.truncate(r.below(n) as usize + 1),
            5 if (i as u64) < n => {
                let x = v[i].clone();
                v.insert(i, x);
            }
            6 => {
                let kw = r.pick(&["COST", "PERIOD", "DRYRUN", "REFUND", "TZ", "LIMIT", "PXAT"]);
                v.insert(i.min(v.len()), random_case(r, kw).into_bytes());
            }
            7 => {
                // Repeat a trailing option group.
                let from = v.len().saturating_sub(2).max(1);
                let tail: Vec<Vec<u8>> = v[from..].to_vec();
                v.extend(tail);
            }
            8 if v.len() > 2 => {
                let j = 1 + r.below(v.len() as u64 - 1) as usize;
                let k = 1 + r.below(v.len() as u64 - 1) as usize;
                v.swap(j, k);
            }
            9 => {
                for _ in 0..1 + r.below(4) {
                    v.push(random_token(r));
                }
            }
            10 => v[0] = r.pick_ref(names).as_bytes().to_vec(),
            11 if (i as u64) < n => {
                // Nudge a number past its edge.
                let s = String::from_utf8_lossy(&v[i]).to_string();
                v[i] = match r.below(5) {
                    0 => format!("-{s}"),
                    1 => format!("{s}0000000000000000000000"),
                    2 => format!("{s}.0"),
                    3 => format!("0{s}"),
                    _ => format!("{s}e-9"),
                }
                .into_bytes();
            }
            12 => {
                // A wild arity: nothing, or a very long vector.
                if r.one_in(2) {
                    v.truncate(1);
                } else {
                    for _ in 0..r.below(200) {
                        v.push(random_token(r));
                    }
                }
            }
            _ => {}
        }
    }
}

fn show(v: &[Vec<u8>]) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|a| {
            let mut s = String::from("\"");
            for &b in a {
                match b {
                    b'"' | b'\\' => write!(s, "\\{}", b as char).unwrap(),
                    0x20..=0x7e => s.push(b as char),
                    _ => write!(s, "\\x{b:02x}").unwrap(),
                }
            }
            s.push('"');
            s
        })
        .collect();
    parts.join(" ")
}

fn dirty_of(v: &Value) -> i64 {
    let text = match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("INFO answered {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix("rdb_changes_since_last_save:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap()
}

#[derive(Default, Debug)]
struct Tally {
    decisions: u64,
    allowed: u64,
    oks: u64,
    errors: u64,
    wrongtype: u64,
    unknown_command: u64,
    arity: u64,
}

/// Checks one reply; `dirty_moved` says whether anything was written.
fn check(
    v: &[Vec<u8>],
    reply: &Value,
    dump_before: &Value,
    dump_after: &Value,
    dirty_moved: bool,
    t: &mut Tally,
) -> Result<(), String> {
    let name = String::from_utf8_lossy(&v[0]).to_ascii_uppercase();
    let unchanged = |what: &str| -> Result<(), String> {
        if dirty_moved {
            return Err(format!("{what} changed the dataset (dirty moved)"));
        }
        if dump_before != dump_after {
            return Err(format!(
                "{what} changed its key: {dump_before:?} -> {dump_after:?}"
            ));
        }
        Ok(())
    };
    match reply {
        Value::ServerError(e) => {
            let text = format!("{} {}", e.code(), e.details().unwrap_or(""));
            t.errors += 1;
            if text.starts_with("WRONGTYPE ") {
                t.wrongtype += 1;
            } else if text.starts_with("ERR unknown command") {
                t.unknown_command += 1;
            } else if text.starts_with("ERR wrong number of arguments") {
                t.arity += 1;
            } else if !text.starts_with("ERR ") {
                return Err(format!("error without ERR/WRONGTYPE code: {text:?}"));
            }
            if text == "ERR internal error" {
                return Err("ERR internal error: a handler panicked".into());
            }
            unchanged(&format!("the error {text:?}"))
        }
        Value::Okay if answers_ok(&name) => {
            t.oks += 1;
            Ok(())
        }
        Value::SimpleString(s) if s == "OK" && answers_ok(&name) => {
            t.oks += 1;
            Ok(())
        }
        Value::Int(0) if ANSWERS_BIT.contains(&name.as_str()) => unchanged("a lease not live"),
        Value::Int(1) if ANSWERS_BIT.contains(&name.as_str()) => {
            t.allowed += 1;
            Ok(())
        }
        Value::Array(items) if decides(&name) => {
            let d: Vec<i64> = items
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Ok(*i),
                    other => Err(format!("non-integer {other:?} in a decision")),
                })
                .collect::<Result<_, _>>()?;
            let leased = v.iter().any(|a| a.eq_ignore_ascii_case(b"CONCURRENCY"));
            let want = match name.as_str() {
                "RL.ALL" if leased => 7,
                "RL.ALL" | "RL.ACQUIRE" => 6,
                _ => 5,
            };
            if d.len() != want {
                return Err(format!(
                    "decision of {} integers, not {want}: {d:?}",
                    d.len()
                ));
            }
            t.decisions += 1;
            let bad = |why: &str| Err(format!("{why}: {d:?}"));
            let (flag, limit, remaining, retry, reset) = (d[0], d[1], d[2], d[3], d[4]);
            if !(0..=1).contains(&flag)
                || limit < 1
                || !(0..=limit).contains(&remaining)
                || reset < 0
            {
                return bad("malformed decision");
            }
            let denied = if name == "CL.THROTTLE" {
                // [limited, max_burst + 1, remaining, retry_after_s (-1 when allowed), reset_after_s]
                if flag == 0 && retry != -1 || flag == 1 && retry < -1 {
                    return bad("retry_after does not match limited");
                }
                flag == 1
            } else {
                if flag == 1 && retry != 0 || flag == 0 && retry != -1 && retry <= 0 {
                    return bad("retry_after does not match allowed");
                }
                if name != "RL.ALL" && retry > reset {
                    return bad("retry_after beyond reset_after");
                }
                if name == "RL.ALL" {
                    let limits = v
                        .iter()
                        .filter(|a| a.eq_ignore_ascii_case(b"LIMIT"))
                        .count();
                    if d[5] < 1 || d[5] as usize > limits {
                        return bad("binding index out of range");
                    }
                }
                flag == 0
            };
            if denied {
                unchanged("a denied request")?;
            } else {
                t.allowed += 1;
            }
            Ok(())
        }
        other => Err(format!("unexpected reply {other:?}")),
    }
}

#[test]
fn an_argument_storm_gets_errors_or_decisions_and_errors_write_nothing() {
    let seed = Rng::seed_from_env("RL_STORM_SEED");
    let total: u64 = std::env::var("RL_STORM_VECTORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    eprintln!("storm seed {seed} (rerun with RL_STORM_SEED={seed}), {total} vectors");
    let mut r = Rng::new(seed);

    let master = Server::start_with(AOF_COMMANDS);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();

    // Every module command (test hooks aside) and every spec command.
    let mut names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("ratelimit")
        .query(&mut c)
        .unwrap();
    names.retain(|n| !n.to_ascii_uppercase().starts_with("RL.TEST."));
    let registered: Vec<String> = names.iter().map(|n| n.to_ascii_uppercase()).collect();
    for n in SPEC_COMMANDS {
        if !names.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    names.sort_by_key(|n| n.to_ascii_uppercase());
    names.dedup_by_key(|n| n.to_ascii_uppercase());
    eprintln!("commands stormed: {names:?}");

    // Keys of other types, for the WRONGTYPE paths.
    ok(&mut c, &["SET", "s:str", "a plain string"]);
    int(&mut c, &["RPUSH", "s:list", "a", "b"]);

    // The warm-up: valid calls of every limiter, whose propagated effects
    // (read back from the AOF) seed the internal commands.
    let mut clock = fake_start();
    let no_seeds = Seeds::new();
    for round in 0..40 {
        clock += r.below(SEC);
        let mut p = redis::pipe();
        p.ignore_errors();
        p.cmd("RL.TEST.CLOCK").arg("SET").arg(clock.to_string());
        for name in registered.iter().filter(|n| decides(n)) {
            for _ in 0..10 {
                let v = valid(&mut r, name, &no_seeds);
                let mut cmd = redis::cmd(name);
                for a in &v[1..] {
                    cmd.arg(a.as_slice());
                }
                p.add_command(cmd);
            }
        }
        let _: Vec<Value> = p
            .query(&mut c)
            .unwrap_or_else(|e| panic!("warm-up round {round}: {e}"));
    }
    let seeds = harvest_internal_calls(&master);
    let counts: Vec<(&String, usize)> = seeds.iter().map(|(k, v)| (k, v.len())).collect();
    eprintln!("internal calls harvested from the AOF: {counts:?}");
    for name in registered.iter().filter(|n| answers_ok(n)) {
        assert!(
            seeds.contains_key(name),
            "the warm-up never propagated {name}: {counts:?}"
        );
    }

    // The module's clock runs an hour ahead of Redis's: no key expires
    // (in real time) during the storm, so nothing changes by itself.
    let floor = clock;
    let started = Instant::now();
    let mut tally = Tally::default();
    let batch = 500u64;
    let mut done = 0u64;
    while done < total {
        clock = match r.below(20) {
            0 => (clock - r.below(SEC)).max(floor),
            1 => clock + r.below(3 * 86400) * SEC,
            _ => clock + r.below(2 * SEC),
        };
        let n = batch.min(total - done);
        let vectors: Vec<Vec<Vec<u8>>> = (0..n)
            .map(|_| {
                // Mostly commands the server has, sometimes any of the spec.
                let name = if r.one_in(4) {
                    r.pick_ref(&names).to_ascii_uppercase()
                } else {
                    r.pick_ref(&registered).clone()
                };
                let mut v = valid(&mut r, &name, &seeds);
                if !r.one_in(3) {
                    mutate(&mut r, &mut v, &names);
                }
                if !registered.contains(&String::from_utf8_lossy(&v[0]).to_ascii_uppercase()) {
                    // Redis echoes an unknown command's arguments in its
                    // error, and the client cannot parse a non-UTF-8 error.
                    for a in &mut v {
                        for b in a.iter_mut().filter(|b| !(0x20..0x7f).contains(*b)) {
                            *b = b'?';
                        }
                    }
                }
                v
            })
            .collect();
        let mut p = redis::pipe();
        p.ignore_errors();
        p.cmd("RL.TEST.CLOCK").arg("SET").arg(clock.to_string());
        p.cmd("INFO").arg("persistence");
        for v in &vectors {
            let k = touched_key(v);
            p.cmd("DUMP").arg(k);
            let mut cmd = redis::cmd(std::str::from_utf8(&v[0]).unwrap_or("RL.?"));
            for a in &v[1..] {
                cmd.arg(a.as_slice());
            }
            p.add_command(cmd);
            p.cmd("DUMP").arg(k);
            p.cmd("INFO").arg("persistence");
        }
        let replies: Vec<Value> = match p.query(&mut c) {
            Ok(r) => r,
            Err(e) => {
                let shown: Vec<String> = vectors.iter().map(|v| show(v)).collect();
                panic!(
                    "seed {seed}: the server stopped answering ({e}) in the batch after {done} vectors:\n{}\nserver log tail:\n{}",
                    shown.join("\n"),
                    tail(&master.log(), 60)
                );
            }
        };
        let mut dirty = dirty_of(&replies[1]);
        for (i, v) in vectors.iter().enumerate() {
            let at = 2 + 4 * i;
            let after = dirty_of(&replies[at + 3]);
            if let Err(why) = check(
                v,
                &replies[at + 1],
                &replies[at],
                &replies[at + 2],
                after != dirty,
                &mut tally,
            ) {
                panic!(
                    "seed {seed}, vector {}: {why}\n  {}",
                    done + i as u64,
                    show(v)
                );
            }
            dirty = after;
        }
        done += n;
    }
    ok(&mut c, &["RL.TEST.CLOCK", "REAL"]);
    eprintln!("{done} vectors in {:?}: {tally:?}", started.elapsed());
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
    // Every path was reached: decisions, errors of each kind.
    assert!(tally.decisions >= total / 10, "{tally:?}");
    assert!(
        tally.allowed > 0 && tally.wrongtype > 0 && tally.arity > 0,
        "{tally:?}"
    );
    assert_eq!(
        bytes(&mut c, &["GET", "s:str"]),
        Some(b"a plain string".to_vec())
    );
    assert_eq!(int(&mut c, &["LLEN", "s:list"]), 2);

    // What the storm left is replicated exactly and survives an AOF
    // replay, an AOF rewrite and an RDB reload.
    drop(c);
    let keys = assert_state_survives_everything(master, &replica);
    eprintln!("{keys} keys identical on the replica and after every reload");
    assert!(keys >= 100, "{keys}");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
