//! Every path that must write nothing, for every command: peeks (COST 0,
//! CL.THROTTLE quantity 0), dry runs (allowed and denied), denials, costs
//! that can never fit, refunds with nothing to give back (a missing key,
//! a cost of 0, a dry run), and the same through RL.ALL and through named
//! policies (RL.TAKE: SHADOW denials, every call on a key a LOCKOUT
//! locked); RL.POLICY SET refused and RL.POLICY DEL of an unknown name.
//! "Nothing" means:
//! the key's bytes and absolute expiry unchanged (or the key still
//! missing), INFO's dirty counter unchanged, nothing propagated (the
//! replication offset of a master with a replica attached, and its AOF,
//! do not move), and a WATCH on the keys still holds.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// What a reply said, in the module's terms (CL.THROTTLE's first field is
/// inverted: 0 allowed).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Said {
    Allowed,
    Denied,
    /// Denied, and retry_after -1: the cost can never fit.
    Never,
    /// 0 from RL.RELEASE or RL.RENEW: no such live lease.
    Nothing,
}

fn said(args: &[String], reply: &[i64]) -> Said {
    if reply.len() == 1 {
        return if reply[0] == 1 {
            Said::Allowed
        } else {
            Said::Nothing
        };
    }
    let throttle = args[0] == "CL.THROTTLE";
    let allowed = if throttle {
        reply[0] == 0
    } else {
        reply[0] == 1
    };
    match (allowed, reply[3]) {
        (true, _) => Said::Allowed,
        (false, -1) => Said::Never,
        (false, _) => Said::Denied,
    }
}

/// One case: calls that set the keys up (they write), then the call that
/// must not write, and what it must answer.
struct Case {
    what: String,
    setup: Vec<Vec<String>>,
    call: Vec<String>,
    keys: Vec<String>,
    said: Said,
    /// The last setup step is a denial that starts a LOCKOUT (it writes).
    locks: bool,
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// The limiters: how a call with a cost is written (`K` the key, `C` the cost).
const LIMITERS: &[&str] = &[
    "RL.TOKENBUCKET K 5 1 C",
    "RL.TOKENBUCKET K 5 10 C PERIOD 60",
    "RL.SLIDING K 5 60 COST C",
    "RL.GCRA K 5 1 1 COST C",
    "RL.FIXED K 5 HOUR COST C",
    "RL.FIXED K 5 DAY COST C TZ America/New_York",
];

fn limiter(template: &str, key: &str, cost: u64, flags: &str) -> Vec<String> {
    let mut v: Vec<String> = template
        .split_whitespace()
        .map(|w| match w {
            "K" => key.to_string(),
            "C" => cost.to_string(),
            w => w.to_string(),
        })
        .collect();
    v.extend(words(flags));
    v
}

fn cases() -> Vec<Case> {
    let mut out = vec![];
    for (n, t) in LIMITERS.iter().enumerate() {
        let mut case = |what: &str, setup: &[(u64, &str)], cost: u64, flags: &str, said: Said| {
            let key = format!("{}:{n}:{}", t.split(' ').next().unwrap(), out.len());
            out.push(Case {
                what: format!("{t}: {what}"),
                setup: setup.iter().map(|(c, f)| limiter(t, &key, *c, f)).collect(),
                call: limiter(t, &key, cost, flags),
                keys: vec![key],
                said,
                locks: false,
            });
        };
        case("a peek on a missing key", &[], 0, "", Said::Allowed);
        case("a peek", &[(3, "")], 0, "", Said::Allowed);
        case(
            "a dry run on a missing key",
            &[],
            2,
            "DRYRUN",
            Said::Allowed,
        );
        case("a dry run", &[(2, "")], 2, "DRYRUN", Said::Allowed);
        case("a denied dry run", &[(5, "")], 1, "DRYRUN", Said::Denied);
        case("a denial", &[(4, "")], 2, "", Said::Denied);
        case("a cost that never fits", &[(1, "")], 6, "", Said::Never);
        case(
            "a cost that never fits, missing key",
            &[],
            6,
            "",
            Said::Never,
        );
        case("a refund to a missing key", &[], 2, "REFUND", Said::Allowed);
        case("a refund of 0", &[(2, "")], 0, "REFUND", Said::Allowed);
        case(
            "a dry-run refund",
            &[(2, "")],
            2,
            "REFUND DRYRUN",
            Said::Allowed,
        );
        case("a peek of an empty limit", &[(5, "")], 0, "", Said::Allowed);
    }
    let throttle = |key: &str, q: u64| words(&format!("CL.THROTTLE {key} 4 1 10 {q}"));
    for (what, setup, q, said) in [
        ("quantity 0 on a missing key", 0, 0, Said::Allowed),
        ("quantity 0", 3, 0, Said::Allowed),
        ("a denial", 5, 1, Said::Denied),
        ("a quantity that never fits", 1, 6, Said::Never),
    ] {
        let key = format!("cl:{}", out.len());
        out.push(Case {
            what: format!("CL.THROTTLE: {what}"),
            setup: (setup > 0)
                .then(|| throttle(&key, setup))
                .into_iter()
                .collect(),
            call: throttle(&key, q),
            keys: vec![key],
            said,
            locks: false,
        });
    }
    // Leases: a dry run, a full limit, a release or renewal of a lease
    // that is not live (they answer 0).
    let leases: &[(&str, &[&str], &str, Said)] = &[
        (
            "RL.ACQUIRE: a dry run on a missing key",
            &[],
            "RL.ACQUIRE K 2 60 DRYRUN",
            Said::Allowed,
        ),
        (
            "RL.ACQUIRE: a dry run",
            &["RL.ACQUIRE K 2 60"],
            "RL.ACQUIRE K 2 60 DRYRUN",
            Said::Allowed,
        ),
        (
            "RL.ACQUIRE: a full limit",
            &["RL.ACQUIRE K 1 60"],
            "RL.ACQUIRE K 1 60",
            Said::Denied,
        ),
        (
            "RL.ACQUIRE: a full limit, dry run",
            &["RL.ACQUIRE K 1 60"],
            "RL.ACQUIRE K 1 60 DRYRUN",
            Said::Denied,
        ),
        (
            "RL.RELEASE: an unknown lease",
            &["RL.ACQUIRE K 2 60"],
            "RL.RELEASE K 1",
            Said::Nothing,
        ),
        (
            "RL.RELEASE: a missing key",
            &[],
            "RL.RELEASE K 1",
            Said::Nothing,
        ),
        (
            "RL.RENEW: an unknown lease",
            &["RL.ACQUIRE K 2 60"],
            "RL.RENEW K 1 30",
            Said::Nothing,
        ),
        (
            "RL.RENEW: a missing key",
            &[],
            "RL.RENEW K 1 30",
            Said::Nothing,
        ),
    ];
    for (what, setup, call, said) in leases {
        let key = format!("lease:{}", out.len());
        let with_key = |a: &str| {
            a.replace('K', &key)
                .split(' ')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        out.push(Case {
            what: what.to_string(),
            setup: setup.iter().map(|a| with_key(a)).collect(),
            call: with_key(call),
            keys: vec![key.clone()],
            said: *said,
            locks: false,
        });
    }
    // RL.TAKE: the same paths through named policies (defined by the test
    // first, see POLICIES), SHADOW denials (answered allowed), and every
    // call on a key a LOCKOUT locked (a setup step: the denial that
    // starts the lock writes it).
    let take: &[(&str, &[&str], &str, Said)] = &[
        (
            "a peek on a missing key",
            &[],
            "RL.TAKE K nw.sw COST 0",
            Said::Allowed,
        ),
        (
            "a peek",
            &["RL.TAKE K nw.sw COST 3"],
            "RL.TAKE K nw.sw COST 0",
            Said::Allowed,
        ),
        (
            "a dry run",
            &["RL.TAKE K nw.sw"],
            "RL.TAKE K nw.sw DRYRUN",
            Said::Allowed,
        ),
        (
            "a denied dry run",
            &["RL.TAKE K nw.sw COST 5"],
            "RL.TAKE K nw.sw DRYRUN",
            Said::Denied,
        ),
        (
            "a denial",
            &["RL.TAKE K nw.sw COST 4"],
            "RL.TAKE K nw.sw COST 2",
            Said::Denied,
        ),
        (
            "a cost that never fits",
            &[],
            "RL.TAKE K nw.sw COST 6",
            Said::Never,
        ),
        (
            "a refund to a missing key",
            &[],
            "RL.TAKE K nw.sw REFUND",
            Said::Allowed,
        ),
        (
            "a refund of 0",
            &["RL.TAKE K nw.sw"],
            "RL.TAKE K nw.sw COST 0 REFUND",
            Said::Allowed,
        ),
        (
            "a shadow denial",
            &["RL.TAKE K nw.shadow COST 5"],
            "RL.TAKE K nw.shadow",
            Said::Allowed,
        ),
        (
            "a shadow dry run",
            &["RL.TAKE K nw.shadow COST 5"],
            "RL.TAKE K nw.shadow DRYRUN",
            Said::Allowed,
        ),
        (
            "a denial on a locked key",
            LOCKED,
            "RL.TAKE K nw.lock",
            Said::Denied,
        ),
        (
            "a peek on a locked key",
            LOCKED,
            "RL.TAKE K nw.lock COST 0",
            Said::Denied,
        ),
        (
            "a refund on a locked key",
            LOCKED,
            "RL.TAKE K nw.lock REFUND",
            Said::Denied,
        ),
        (
            "a dry run on a locked key",
            LOCKED,
            "RL.TAKE K nw.lock DRYRUN",
            Said::Denied,
        ),
        (
            "the algorithm's own command on a locked key",
            LOCKED,
            "RL.SLIDING K 5 60",
            Said::Denied,
        ),
        (
            "a denied dry run of a LOCKOUT policy",
            &["RL.TAKE K nw.lock COST 5"],
            "RL.TAKE K nw.lock DRYRUN",
            Said::Denied,
        ),
        (
            "a refund of a LOCKOUT policy on a missing key",
            &[],
            "RL.TAKE K nw.lock REFUND",
            Said::Allowed,
        ),
        // Over the limit (filled under a larger one): even a peek is
        // denied, and it must not lock.
        (
            "a peek over a LOCKOUT policy's limit",
            &["RL.SLIDING K 9 60 COST 9"],
            "RL.TAKE K nw.lock COST 0",
            Said::Denied,
        ),
    ];
    for (what, setup, call, said) in take {
        let key = format!("take:{}", out.len());
        let with_key = |a: &str| {
            a.split(' ')
                .map(|w| if w == "K" { key.clone() } else { w.to_string() })
                .collect::<Vec<_>>()
        };
        out.push(Case {
            what: format!("RL.TAKE: {what}"),
            setup: setup.iter().map(|a| with_key(a)).collect(),
            call: with_key(call),
            keys: vec![key.clone()],
            said: *said,
            locks: setup == &LOCKED,
        });
    }
    // A denial that waited in line (BLOCK) and timed out.
    for (n, t) in LIMITERS.iter().enumerate() {
        let key = format!("block:{n}:{}", out.len());
        out.push(Case {
            what: format!("{t}: a denial after waiting 20 ms"),
            setup: vec![limiter(t, &key, 4, "")],
            call: limiter(t, &key, 2, "BLOCK 20"),
            keys: vec![key],
            said: Said::Denied,
            locks: false,
        });
    }
    // RL.ALL with a lease clause: a dry run, and a denial by the rate limit.
    for (what, top, cost, said) in [
        ("a dry run", "DRYRUN", 0, Said::Allowed),
        ("a denial", "", 1, Said::Denied),
    ] {
        let tag = format!("all{}", out.len());
        let args = |top: &str, cost: u64| {
            words(&format!(
                "RL.ALL {top} LIMIT {{{tag}}}sw SLIDING 2 60 COST {cost} LIMIT {{{tag}}}l CONCURRENCY 3 60"
            ))
        };
        out.push(Case {
            what: format!("RL.ALL with a lease: {what}"),
            setup: vec![args("", 2)],
            call: args(top, cost),
            keys: vec![format!("{{{tag}}}sw"), format!("{{{tag}}}l")],
            said,
            locks: false,
        });
    }
    // RL.ALL over one limit of each algorithm.
    let all = |tag: &str, top: &str, costs: [u64; 4]| {
        words(&format!(
            "RL.ALL {top} LIMIT {{{tag}}}tb TOKENBUCKET 5 1 COST {} LIMIT {{{tag}}}sw SLIDING 5 60 COST {} \
             LIMIT {{{tag}}}g GCRA 5 1 1 COST {} LIMIT {{{tag}}}fw FIXED 5 HOUR COST {}",
            costs[0], costs[1], costs[2], costs[3]
        ))
    };
    let keys = |tag: &str| {
        ["tb", "sw", "g", "fw"]
            .map(|k| format!("{{{tag}}}{k}"))
            .to_vec()
    };
    for (what, setup, top, costs, said) in [
        (
            "a dry run on missing keys",
            None,
            "DRYRUN",
            [1, 2, 3, 4],
            Said::Allowed,
        ),
        (
            "a dry run",
            Some([1, 1, 1, 1]),
            "DRYRUN",
            [1, 2, 3, 4],
            Said::Allowed,
        ),
        (
            "a denied dry run",
            Some([1, 5, 1, 1]),
            "DRYRUN",
            [1, 1, 1, 1],
            Said::Denied,
        ),
        (
            "a denial by one limit",
            Some([1, 1, 5, 1]),
            "",
            [1, 1, 1, 1],
            Said::Denied,
        ),
        (
            "a denial by the last limit",
            Some([0, 0, 0, 5]),
            "",
            [1, 1, 1, 1],
            Said::Denied,
        ),
        (
            "a never-fitting cost in one limit",
            Some([1, 1, 1, 1]),
            "",
            [1, 6, 1, 1],
            Said::Never,
        ),
        (
            "costs of 0",
            Some([1, 2, 3, 4]),
            "",
            [0, 0, 0, 0],
            Said::Allowed,
        ),
        (
            "costs of 0 on missing keys",
            None,
            "",
            [0, 0, 0, 0],
            Said::Allowed,
        ),
        (
            "a refund to missing keys",
            None,
            "REFUND",
            [1, 2, 3, 4],
            Said::Allowed,
        ),
        (
            "a dry-run refund",
            Some([1, 2, 3, 4]),
            "REFUND DRYRUN",
            [1, 1, 1, 1],
            Said::Allowed,
        ),
        (
            "a denial that waited 20 ms",
            Some([1, 5, 1, 1]),
            "BLOCK 20",
            [1, 1, 1, 1],
            Said::Denied,
        ),
    ] {
        let tag = format!("all{}", out.len());
        out.push(Case {
            what: format!("RL.ALL: {what}"),
            setup: setup.map(|c| all(&tag, "", c)).into_iter().collect(),
            call: all(&tag, top, costs),
            keys: keys(&tag),
            said,
            locks: false,
        });
    }
    out
}

/// The policies the RL.TAKE cases name, defined before them.
const POLICIES: &[&str] = &[
    "RL.POLICY SET nw.sw SLIDING 5 60",
    "RL.POLICY SET nw.shadow SLIDING 5 60 SHADOW",
    "RL.POLICY SET nw.lock SLIDING 5 60 LOCKOUT 30",
];

/// A key locked by nw.lock: the limit spent, then a denial that locks.
const LOCKED: &[&str] = &["RL.TAKE K nw.lock COST 5", "RL.TAKE K nw.lock"];

/// Each key's DUMP and absolute expiry.
fn keys_state(c: &mut redis::Connection, keys: &[String]) -> Vec<(Option<Vec<u8>>, i64)> {
    keys.iter()
        .map(|k| (bytes(c, &["DUMP", k]), int(c, &["PEXPIRETIME", k])))
        .collect()
}

/// A reply as integers: a decision, or RL.RELEASE's and RL.RENEW's 1 or 0
/// (as one integer).
fn ints(c: &mut redis::Connection, args: &[String]) -> Vec<i64> {
    let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
    match call(c, &a) {
        Ok(Value::Int(i)) => vec![i],
        Ok(Value::Array(v)) => v
            .iter()
            .map(|x| match x {
                Value::Int(i) => *i,
                other => panic!("{args:?}: {other:?}"),
            })
            .collect(),
        other => panic!("{args:?}: {other:?}"),
    }
}

#[test]
fn no_write_paths_write_nothing_and_propagate_nothing() {
    let mut opts = AOF_COMMANDS.to_vec();
    opts.extend_from_slice(NO_PINGS);
    let master = Server::start_with(&opts);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    let mut watcher = master.connect();
    let t = clock_start(&mut c) + 250_000_123;
    set_clock(&mut c, t);
    for p in POLICIES {
        ok(&mut c, &p.split(' ').collect::<Vec<_>>());
    }
    let cases = cases();
    let mut existing = 0;
    for case in &cases {
        for s in &case.setup {
            let w = written(&mut c);
            let r = ints(&mut c, s);
            // Setup steps are allowed, but the denial that starts a lock.
            let expect = if case.locks && case.setup.last() == Some(s) {
                Said::Denied
            } else {
                Said::Allowed
            };
            assert_eq!(said(s, &r), expect, "{}: setup {s:?}", case.what);
            // The probe sees a write: every counter moves.
            let now = written(&mut c);
            assert!(
                now.dirty > w.dirty
                    && now.repl_offset > w.repl_offset
                    && now.aof_bytes > w.aof_bytes,
                "{}: setup {s:?}: {w:?} -> {now:?}",
                case.what
            );
        }
        let before_keys = keys_state(&mut c, &case.keys);
        existing += before_keys.iter().filter(|(d, _)| d.is_some()).count();
        let mut watch = redis::cmd("WATCH");
        for k in &case.keys {
            watch.arg(k);
        }
        let _: () = watch.query(&mut watcher).unwrap();
        let before = written(&mut c);
        let reply = ints(&mut c, &case.call);
        let after = written(&mut c);
        assert_eq!(
            said(&case.call, &reply),
            case.said,
            "{}: {:?} answered {reply:?}",
            case.what,
            case.call
        );
        assert_eq!(
            after, before,
            "{}: {:?} wrote or propagated something",
            case.what, case.call
        );
        assert_eq!(
            keys_state(&mut c, &case.keys),
            before_keys,
            "{}: {:?} changed a key or its expiry",
            case.what,
            case.call
        );
        // Nothing signalled the keys as modified: the transaction runs.
        ok(&mut watcher, &["MULTI"]);
        call(&mut watcher, &["PING"]).unwrap();
        assert!(
            matches!(call(&mut watcher, &["EXEC"]), Ok(Value::Array(_))),
            "{}: {:?} broke a WATCH on its keys",
            case.what,
            case.call
        );
    }
    eprintln!(
        "{} no-write calls ({existing} keys existed before them)",
        cases.len()
    );

    // RL.POLICY SET refused (a bad definition, a bad name, another kind of
    // algorithm, the cap) and RL.POLICY DEL of an unknown name: nothing
    // written or propagated, the set of policies unchanged.
    let list = |c: &mut redis::Connection| -> Vec<(String, String)> {
        redis::cmd("RL.POLICY").arg("LIST").query(c).unwrap()
    };
    let policies = list(&mut c);
    let before = written(&mut c);
    ok(&mut c, &["CONFIG", "SET", "ratelimit.max-policies", "3"]);
    for (args, e) in [
        (
            "RL.POLICY SET nw.sw SLIDING 0 60",
            "ERR limit must be an integer between 1 and 9223372036854775807",
        ),
        (
            "RL.POLICY SET nw/sw SLIDING 5 60",
            "ERR policy name must be 1 to 64 characters of A-Z a-z 0-9 _ - .",
        ),
        (
            "RL.POLICY SET nw.sw FIXED 5 60",
            "ERR a policy keeps its algorithm: RL.POLICY DEL it first to change it",
        ),
        (
            "RL.POLICY SET nw.more SLIDING 5 60",
            "ERR too many policies: raise ratelimit.max-policies or RL.POLICY DEL some",
        ),
    ] {
        assert_eq!(
            err(&mut c, &args.split(' ').collect::<Vec<_>>()),
            e,
            "{args}"
        );
    }
    assert_eq!(int(&mut c, &["RL.POLICY", "DEL", "nw.nothing"]), 0);
    assert_eq!(
        written(&mut c),
        before,
        "a refused RL.POLICY wrote something"
    );
    assert_eq!(list(&mut c), policies);
    ok(&mut c, &["CONFIG", "SET", "ratelimit.max-policies", "1000"]);

    // Three days later by the module's clock every limiter is fresh again,
    // while Redis (on its real clock) still holds the keys: a refund has
    // nothing to give back, a peek and a dry run nothing to change.
    let mut fresh = 0;
    for (n, template) in LIMITERS.iter().enumerate() {
        let key = format!("fresh:{n}");
        set_clock(&mut c, t);
        ints(&mut c, &limiter(template, &key, 2, ""));
        set_clock(&mut c, t + 3 * 86_400 * SEC);
        for flags in ["REFUND", "DRYRUN", "REFUND DRYRUN"] {
            let call = limiter(template, &key, 2, flags);
            let before = (
                written(&mut c),
                keys_state(&mut c, std::slice::from_ref(&key)),
            );
            assert!(before.1[0].0.is_some(), "{key} expired");
            let reply = ints(&mut c, &call);
            assert_eq!(said(&call, &reply), Said::Allowed, "{call:?}");
            // Fresh: the limit is all there (a dry run answers what
            // taking 2 would leave).
            let left = if flags == "DRYRUN" { 3 } else { 5 };
            assert_eq!(reply[2], left, "{call:?}: {reply:?}");
            assert_eq!(
                (
                    written(&mut c),
                    keys_state(&mut c, std::slice::from_ref(&key))
                ),
                before,
                "{call:?} on a fresh key wrote something"
            );
            fresh += 1;
        }
    }
    existing += LIMITERS.len();
    eprintln!("{fresh} calls on keys fresh again but not yet expired");
    assert!(existing >= cases.len() / 2, "{existing}");
    // What the setups wrote reached the replica exactly.
    drop(c);
    wait_caught_up(&master, &replica);
    let keys = assert_same_state(&mut master.connect(), &mut replica.connect());
    assert_eq!(keys, existing);
}
