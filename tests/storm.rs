//! An argument storm: 100,000 random and mutated argument vectors, for every
//! command of the spec (landed or not, internal ones included), against one
//! live server with a replica. Every reply is an `ERR `/`WRONGTYPE ` error
//! or a well-formed decision; the internal commands refuse every ordinary
//! client with their own error; whatever must write nothing writes nothing
//! (errors, denials, peeks, dry runs, refunds to missing keys): the keys'
//! bytes and expiries, INFO's dirty counter, the replication offset and the
//! AOF stay as they were; the server stays up. Then every state the storm
//! left behind must be identical on the replica, after an AOF replay, after
//! an AOF rewrite and after DEBUG RELOAD.
//!
//! The limiters' calls come from the shared grammar (`redis_ratelimit_core::
//! grammar`): each algorithm's [`Syntax`] (positional arguments, options
//! and their [`ArgKind`]s) and the [`REQUEST_OPTIONS`], so a new algorithm,
//! option or request option is stormed without editing this file. The same
//! grammar reads back every vector the module decided on, to know whether
//! it had to write nothing. A request option named BLOCK (a denied call
//! waits inside the server) goes only into calls the storm leaves as they
//! are, with a timeout of 1 ms (or a value it refuses): on the storm's
//! frozen test clock a denial waits its whole timeout, and a mutation
//! could make that timeout 0, without limit.
//!
//! The internal commands' arguments (binary payloads whose format is the
//! module's own) are taken from what the module really propagates: a
//! warm-up of valid limiter calls, read back from the AOF, seeds them.
//!
//! Reproduce a failure with what it prints: `RL_STORM_SEED=<seed>` and
//! `RL_STORM_CLOCK=<ns>` (the module's clock at the start; it must be ahead
//! of the server's, so an old one needs the server's clock set back, e.g.
//! with libfaketime). `RL_STORM_VECTORS` changes the count (default 100,000).
#![cfg(test)]

use redis_ratelimit_core::error::CmdError;
use redis_ratelimit_core::grammar::{
    all_key_positions, check_request, is, read_all, read_command, read_take, read_throttle,
    ArgKind, ClauseLimit, PolicyLookup, RequestOption, Settings, Syntax, ALGORITHMS,
    REQUEST_OPTIONS,
};
use redis_ratelimit_core::limit::Spec;
use redis_ratelimit_core::policy::read_definition;
use redis_ratelimit_testkit::*;

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The internal commands: they apply effects (replication, AOF) and refuse
/// ordinary clients. Other internal commands the module registers are
/// found by their docs' summary ("Internal: ...").
const INTERNAL: &[&str] = &["RL.SETSTATE", "RL.WINDOWADD", "RL.WINDOWREFUND", "RL.LEASE"];

/// Lease commands that answer 1 (changed) or 0 (nothing to change).
const ANSWERS_BIT: &[&str] = &["RL.RELEASE", "RL.RENEW"];

/// The commands that decide: every algorithm's own, CL.THROTTLE and RL.ALL.
fn deciding() -> Vec<String> {
    ALGORITHMS
        .iter()
        .map(|s| s.command.to_string())
        .chain(["CL.THROTTLE", "RL.ALL", "RL.TAKE"].map(String::from))
        .collect()
}

/// The named policies the storm defines (one per algorithm, one of them
/// in SHADOW, one with a LOCKOUT per rate-limiting algorithm), by name,
/// with their limits and whether they lock out: RL.TAKE and RL.ALL's
/// `POLICY` clauses name them. A denial under a LOCKOUT policy may write
/// one thing: the lock on a key that was not locked (see [`check`]).
type Policies = BTreeMap<String, (Spec, bool)>;

thread_local! {
    static POLICIES: std::cell::RefCell<Policies> = Default::default();
}

fn policy_locks(name: &[u8]) -> bool {
    let name = String::from_utf8_lossy(name).into_owned();
    POLICIES.with_borrow(|p| p.get(&name).is_some_and(|(_, locks)| *locks))
}

/// May this denial start a lock: a call that takes (not a dry run, not a
/// refund, not a peek) under a LOCKOUT policy, in RL.TAKE or an RL.ALL
/// clause.
fn may_lock(role: Role, v: &[Vec<u8>]) -> bool {
    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
    let words = &words[..];
    let locks = |i: usize| policy_locks(words.get(i).copied().unwrap_or_default());
    match role {
        Role::Take => read_take(words)
            .is_ok_and(|req| !req.dry_run && !req.refund && req.cost.unwrap_or(1) > 0 && locks(2)),
        Role::All => {
            // Each clause's policy resolves to its limit and whether it locks.
            let lookup = PolicyLookup {
                resolve: |name: &[u8]| {
                    policy_spec(name)
                        .map(|s| (s, policy_locks(name)))
                        .ok_or(redis_ratelimit_core::error::SYNTAX)
                },
                spec: |p: &(Spec, bool)| &p.0,
            };
            read_all(words, Settings::default(), lookup).is_ok_and(|a| {
                !a.request.dry_run
                    && !a.request.refund
                    && a.clauses.iter().any(|c| match &c.limit {
                        ClauseLimit::Policy((_, locks)) => {
                            c.cost.or(a.request.cost).unwrap_or(1) > 0 && *locks
                        }
                        _ => false,
                    })
            })
        }
        _ => false,
    }
}

fn policy_spec(name: &[u8]) -> Option<Spec> {
    let name = String::from_utf8_lossy(name).into_owned();
    POLICIES.with_borrow(|p| p.get(&name).map(|(spec, _)| spec.clone()))
}

fn policy_names() -> Vec<String> {
    POLICIES.with_borrow(|p| p.keys().cloned().collect())
}

/// What a command is to the storm, by upper-case name.
#[derive(Clone, Copy)]
enum Role {
    Limiter(&'static Syntax),
    Throttle,
    All,
    /// RL.TAKE key policy [request options].
    Take,
    /// RL.RELEASE, RL.RENEW: 1, or 0 and nothing written.
    Bit,
    Internal,
    /// A module command the storm knows nothing of: any reply, but an
    /// error writes nothing.
    Other,
}

fn role(name: &str, internal: &[String]) -> Role {
    if let Some(s) = ALGORITHMS.iter().find(|s| s.command == name) {
        Role::Limiter(s)
    } else if name == "CL.THROTTLE" {
        Role::Throttle
    } else if name == "RL.ALL" {
        Role::All
    } else if name == "RL.TAKE" {
        Role::Take
    } else if ANSWERS_BIT.contains(&name) {
        Role::Bit
    } else if internal.iter().any(|n| n == name) {
        Role::Internal
    } else {
        Role::Other
    }
}

/// A request option that makes a denied call wait inside the server
/// (BLOCK timeout_ms; 0 waits without limit). The storm's test clock is
/// frozen, so a waiting denial waits its whole timeout: BLOCK goes only
/// into calls the storm does not mutate (a mutation could make its
/// timeout 0), with a timeout of 1 ms or a value it refuses.
fn blocks(o: &RequestOption) -> bool {
    is(o.keyword.as_bytes(), "BLOCK")
}

/// Every keyword of the grammar (options, request options, algorithms)
/// and RL.ALL's LIMIT, for mutations; BLOCK never.
fn keywords() -> Vec<String> {
    let mut k: Vec<String> = vec!["LIMIT".into(), "PXAT".into(), "POLICY".into()];
    for s in ALGORITHMS {
        k.push(s.keyword.into());
        k.extend(s.options.iter().filter_map(|o| o.token).map(String::from));
    }
    k.extend(
        REQUEST_OPTIONS
            .iter()
            .filter(|o| !blocks(o))
            .map(|o| o.keyword.to_string()),
    );
    k.sort();
    k.dedup();
    k
}

/// The keys the storm compares around a call: the first argument, or
/// every key of RL.ALL (by the grammar's key positions), at most six.
fn touched_keys(v: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
    let mut keys: Vec<Vec<u8>> = if v[0].eq_ignore_ascii_case(b"RL.ALL") {
        all_key_positions(&words[..])
            .into_iter()
            .filter_map(|i| v.get(i).cloned())
            .collect()
    } else {
        v.get(1).cloned().into_iter().collect()
    };
    keys.sort();
    keys.dedup();
    keys.truncate(6);
    if keys.is_empty() {
        keys.push(b"k0".to_vec());
    }
    keys
}

/// Keys the storm returns to, so state builds up and types collide.
const KEYS: &[&str] = &[
    "k0", "k1", "k2", "k3", "k4", "k5", "{t}:a", "{t}:b", "{t}:c", "s:str", "s:list",
];

/// Tokens that break parsers: numbers at and past every edge, not-numbers,
/// words that look like keywords (the grammar's own keywords are added
/// by [`keywords`]).
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
    "PXAT",
    "bucket",
    "window",
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

/// A valid value of `kind`, mostly small so that state builds up: limits
/// (integers from 1) of a few units, costs (integers from 0) of fewer,
/// rates and windows from a millisecond to a day, calendar units in any
/// case, zones with odd offsets and daylight saving.
fn valid_value(r: &mut Rng, kind: ArgKind) -> String {
    #[allow(unreachable_patterns)]
    match kind {
        ArgKind::Int { min: 0 } => match r.below(8) {
            0 => "0".into(),
            1 => int_str(r),
            _ => (1 + r.below(3)).to_string(),
        },
        ArgKind::Int { min } => match r.below(12) {
            0 => int_str(r),
            _ => r.pick(&["1", "2", "3", "5", "10", "100", "1000"]).into(),
        }
        .parse::<u64>()
        .map_or_else(|_| min.to_string(), |v| v.max(min).to_string()),
        ArgKind::Positive => r
            .pick(&[
                "0.001", "0.5", "1", "2", "10", "100", "1e4", "1e-3", "1.5", "3.25", "60",
            ])
            .into(),
        ArgKind::Window => r
            .pick(&["0.001", "0.25", "0.5", "1", "1.5", "60", "3600", "86400"])
            .into(),
        ArgKind::FixedWindow => {
            if r.one_in(2) {
                let unit = r.pick(&["MINUTE", "HOUR", "DAY", "WEEK", "MONTH"]);
                random_case(r, unit)
            } else {
                valid_value(r, ArgKind::Window)
            }
        }
        ArgKind::Timeout => "1".into(),
        ArgKind::Lease => r
            .pick(&["0.000000001", "0.001", "0.05", "1", "1.5", "60", "3600"])
            .into(),
        ArgKind::Zone => r
            .pick(&[
                "UTC",
                "America/New_York",
                "Europe/Berlin",
                "Asia/Kolkata",
                "Australia/Lord_Howe",
                "Pacific/Chatham",
                "Etc/GMT+12",
            ])
            .into(),
        // A kind added to the grammar later: something, valid or not.
        _ => String::from_utf8_lossy(&random_token(r)).into_owned(),
    }
}

/// A value `kind` refuses.
fn invalid_value(r: &mut Rng, kind: ArgKind) -> String {
    #[allow(unreachable_patterns)]
    match kind {
        ArgKind::Int { min } => {
            let below = min.checked_sub(1).map(|m| m.to_string());
            let mut bad = vec!["-1", "9223372036854775808", "1.5", "1e3", "x", ""];
            if let Some(b) = &below {
                bad.push(b);
            }
            r.pick(&bad).into()
        }
        ArgKind::Positive => r
            .pick(&["0", "-1", "nan", "inf", "1e999", "1/2", ""])
            .into(),
        ArgKind::Window => r.pick(&["0", "0.0005", "1e10", "-60", "60s", "nan"]).into(),
        ArgKind::FixedWindow => r.pick(&["YEAR", "0", "0.0001", "days", ""]).into(),
        ArgKind::Zone => r.pick(&["Nope/Nowhere", "", "America/New_Yorkk"]).into(),
        ArgKind::Timeout => r.pick(&["-1", "x", "1.5"]).into(),
        ArgKind::Lease => r
            .pick(&["0", "-1", "1e-10", "0.0000000001", "315360001", "nan"])
            .into(),
        _ => String::from_utf8_lossy(&random_token(r)).into_owned(),
    }
}

/// A value of `kind`: valid, one time in `odds` not.
fn value(r: &mut Rng, kind: ArgKind, odds: u64) -> String {
    if r.one_in(odds) {
        invalid_value(r, kind)
    } else {
        valid_value(r, kind)
    }
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

/// An algorithm's positional arguments (and its positional cost), then
/// groups of its options and of the request options in any order, each
/// maybe: `with_cost` says whether the request option COST is theirs.
fn limit_args(
    r: &mut Rng,
    s: &Syntax,
    v: &mut Vec<Vec<u8>>,
    request: bool,
    with_cost: bool,
    block: bool,
) {
    for p in s.params {
        push(v, value(r, p.kind, 40));
    }
    if s.cost_positional && request {
        push(v, value(r, ArgKind::Int { min: 0 }, 40));
    }
    let mut groups: Vec<Vec<String>> = vec![];
    for o in s.options {
        if let (Some(token), true) = (o.token, r.one_in(3)) {
            groups.push(vec![random_case(r, token), value(r, o.kind, 40)]);
        }
    }
    if request {
        // A lease (a syntax without costs) takes neither COST nor REFUND.
        groups.extend(request_options(
            r,
            with_cost && !s.cost_positional && s.costs,
            s.costs,
            block,
        ));
    }
    shuffle(r, &mut groups);
    for g in groups {
        for w in g {
            push(v, w);
        }
    }
}

/// The request options, each maybe: flags one time in six (REFUND when
/// `with_refund`), options with a value (COST when `with_cost`) one in two.
fn request_options(
    r: &mut Rng,
    with_cost: bool,
    with_refund: bool,
    block: bool,
) -> Vec<Vec<String>> {
    let mut groups = vec![];
    for o in REQUEST_OPTIONS {
        if blocks(o) {
            if block && r.one_in(4) {
                let timeout = r.pick(&["1", "1", "1", "1", "-1", "x", "1.5"]);
                groups.push(vec![random_case(r, o.keyword), timeout.to_string()]);
            }
            continue;
        }
        match &o.value {
            None if (with_refund || o.keyword != "REFUND") && r.one_in(6) => {
                groups.push(vec![random_case(r, o.keyword)])
            }
            Some(p) if (with_cost || o.keyword != "COST") && r.one_in(2) => {
                groups.push(vec![random_case(r, o.keyword), value(r, p.kind, 40)])
            }
            _ => {}
        }
    }
    groups
}

fn shuffle<T>(r: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        let j = r.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// A call of `name` as the grammar writes it (the arguments' values
/// valid, but rarely).
fn generated(r: &mut Rng, name: &str, role: Role, seeds: &Seeds, block: bool) -> Vec<Vec<u8>> {
    let mut v = vec![];
    push(&mut v, random_case(r, name));
    match role {
        Role::Limiter(s) => {
            v.push(key(r, &s.keyword.to_ascii_lowercase()));
            limit_args(r, s, &mut v, true, true, block);
        }
        Role::Throttle => {
            v.push(key(r, "cell"));
            push(&mut v, r.below(20).to_string());
            push(&mut v, (1 + r.below(100)).to_string());
            push(&mut v, (1 + r.below(120)).to_string());
            if r.one_in(2) {
                push(&mut v, r.below(4).to_string());
            }
        }
        Role::All => {
            // Either form: the first-key form has no options before its
            // first key and no LIMIT before it.
            let first_key = r.one_in(2);
            if !first_key {
                for g in request_options(r, true, true, block) {
                    for w in g {
                        push(&mut v, w);
                    }
                }
            }
            for i in 0..1 + r.below(3) {
                if !(first_key && i == 0) {
                    push(&mut v, "LIMIT");
                }
                let policies = policy_names();
                if r.one_in(4) && !policies.is_empty() {
                    // A clause naming a policy (its key of the policy's kind).
                    let name = r.pick_ref(&policies).clone();
                    v.push(key(r, &format!("{{all}}{name}{i}")));
                    push(&mut v, random_case(r, "POLICY"));
                    push(&mut v, name);
                    if r.one_in(4) {
                        push(&mut v, "COST");
                        push(&mut v, value(r, ArgKind::Int { min: 0 }, 40));
                    }
                    continue;
                }
                let s = *r.pick_ref(ALGORITHMS);
                v.push(key(
                    r,
                    &format!("{{all}}{}{i}", s.keyword.to_ascii_lowercase()),
                ));
                push(&mut v, random_case(r, s.keyword));
                // A clause: its own options, its own COST, the command's flags.
                limit_args(r, s, &mut v, true, true, block);
            }
        }
        Role::Take => {
            let policies = policy_names();
            let name = if policies.is_empty() || r.one_in(20) {
                String::from_utf8_lossy(&random_token(r)).into_owned()
            } else {
                r.pick_ref(&policies).clone()
            };
            v.push(key(r, &format!("take.{name}")));
            let costs = policy_spec(name.as_bytes()).is_none_or(|s| takes_units(&s));
            push(&mut v, name);
            let mut groups = request_options(r, costs, costs, block);
            shuffle(r, &mut groups);
            for g in groups {
                for w in g {
                    push(&mut v, w);
                }
            }
        }
        Role::Bit => {
            // A lease id (rarely a live one) and, to renew, a lease.
            v.push(key(r, "concurrency"));
            push(&mut v, int_str(r));
            if name == "RL.RENEW" {
                push(&mut v, value(r, ArgKind::Lease, 40));
            }
        }
        Role::Internal | Role::Other => match seeds.get(name) {
            // An internal command as the module really sent it, sometimes
            // on another key (of another type, too).
            Some(calls) if !calls.is_empty() => {
                v = r.pick_ref(calls).clone();
                if r.one_in(3) && v.len() > 1 {
                    let tag = r.pick(&["tokenbucket", "sliding", "fixed", "gcra", "cell"]);
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

/// Does the grammar read these arguments without an error?
fn reads(role: Role, v: &[Vec<u8>]) -> Result<(), CmdError> {
    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
    let words = &words[..];
    match role {
        Role::Limiter(s) => read_command(s, words, Settings::default()).map(|_| ()),
        Role::All => read_all(words, Settings::default(), known_policies()).map(|_| ()),
        Role::Throttle => read_throttle(words).map(|_| ()),
        Role::Take => read_take(words).and_then(|req| {
            let spec = policy_spec(words.get(2).copied().unwrap_or_default())
                .ok_or(redis_ratelimit_core::error::SYNTAX)?;
            check_request(&spec, &req)
        }),
        Role::Bit | Role::Internal | Role::Other => Ok(()),
    }
}

/// The test's policies, as RL.ALL's POLICY clauses resolve them.
fn known_policies<'a>() -> PolicyLookup<impl FnMut(&'a [u8]) -> Result<Spec, CmdError>, Spec> {
    PolicyLookup {
        resolve: |name: &'a [u8]| policy_spec(name).ok_or(redis_ratelimit_core::error::SYNTAX),
        spec: |s| s,
    }
}

/// An RL.ALL clause's limit: its own, or its policy's.
fn clause_spec(limit: &ClauseLimit<Spec>) -> Result<Spec, String> {
    Ok(limit.spec(|s| s).clone())
}

/// A well-formed call of `name`: generated until the grammar reads it (a
/// few tries: a TZ on a window of seconds, say, is refused).
fn valid(r: &mut Rng, name: &str, role: Role, seeds: &Seeds, block: bool) -> Vec<Vec<u8>> {
    let mut v = generated(r, name, role, seeds, block);
    for _ in 0..4 {
        if reads(role, &v).is_ok() {
            break;
        }
        v = generated(r, name, role, seeds, block);
    }
    v
}

fn refused(e: CmdError) -> String {
    format!("the module decided, its grammar refuses: {}", e.text())
}

/// Does a clause's limit take units (every algorithm but a lease, which
/// takes a slot whatever the cost)?
fn takes_units(spec: &Spec) -> bool {
    !matches!(spec, Spec::Concurrency(_))
}

/// The calls of a decision that must write nothing: a dry run, a cost of
/// zero everywhere (and no lease to take), a refund whose keys were all
/// missing. (A denial must not write either; the reply says that.) Err:
/// the grammar refuses what the module decided on.
fn writes_nothing(role: Role, v: &[Vec<u8>], all_missing: bool) -> Result<bool, String> {
    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
    let words = &words[..];
    Ok(match role {
        Role::Limiter(s) => {
            let (spec, req) = read_command(s, words, Settings::default()).map_err(refused)?;
            req.dry_run
                || (takes_units(&spec) && req.cost.unwrap_or(1) == 0)
                || (req.refund && all_missing)
        }
        Role::All => {
            let a = read_all(words, Settings::default(), known_policies()).map_err(refused)?;
            let mut nothing_taken = true;
            for c in &a.clauses {
                let spec = clause_spec(&c.limit)?;
                nothing_taken &= takes_units(&spec) && c.cost.or(a.request.cost).unwrap_or(1) == 0;
            }
            a.request.dry_run || nothing_taken || (a.request.refund && all_missing)
        }
        Role::Take => {
            let req = read_take(words).map_err(refused)?;
            let spec = policy_spec(words.get(2).copied().unwrap_or_default())
                .ok_or("the module decided on an unknown policy")?;
            req.dry_run
                || (takes_units(&spec) && req.cost.unwrap_or(1) == 0)
                || (req.refund && all_missing)
        }
        Role::Throttle => read_throttle(words).map_err(refused)?.1 == 0,
        Role::Bit | Role::Internal | Role::Other => false,
    })
}

/// How many integers a decision has: five, and a lease's id when one is
/// taken (RL.ACQUIRE, an RL.ALL with a lease clause); RL.ALL adds the
/// binding limit's position.
fn decision_len(role: Role, v: &[Vec<u8>]) -> Result<usize, String> {
    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
    let words = &words[..];
    Ok(match role {
        Role::Limiter(s) => {
            let (spec, _) = read_command(s, words, Settings::default()).map_err(refused)?;
            5 + usize::from(!takes_units(&spec))
        }
        Role::All => {
            let a = read_all(words, Settings::default(), known_policies()).map_err(refused)?;
            let mut lease = false;
            for c in &a.clauses {
                lease |= !takes_units(&clause_spec(&c.limit)?);
            }
            6 + usize::from(lease)
        }
        Role::Take => {
            let spec = policy_spec(words.get(2).copied().unwrap_or_default())
                .ok_or("the module decided on an unknown policy")?;
            5 + usize::from(!takes_units(&spec))
        }
        _ => 5,
    })
}

/// Real calls of the internal commands, by upper-case name.
type Seeds = std::collections::HashMap<String, Vec<Vec<Vec<u8>>>>;

/// Every call of an internal command in the server's AOF files.
fn harvest_internal_calls(server: &Server, internal: &[String]) -> Seeds {
    let mut seeds = Seeds::new();
    let dir = server.dir.join("appendonlydir");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for argv in resp_commands(&bytes) {
            let name = String::from_utf8_lossy(&argv[0]).to_ascii_uppercase();
            if internal.contains(&name) {
                let calls = seeds.entry(name).or_default();
                if calls.len() < 2000 {
                    calls.push(argv);
                }
            }
        }
    }
    seeds
}

fn random_token(r: &mut Rng) -> Vec<u8> {
    match r.below(5) {
        0 => r.bytes(10),
        1 => int_str(r).into_bytes(),
        _ => r.pick(HOSTILE).as_bytes().to_vec(),
    }
}

/// One to three mutations of a valid call.
fn mutate(r: &mut Rng, v: &mut Vec<Vec<u8>>, names: &[String], keywords: &[String]) {
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
                let kw = r.pick_ref(keywords).clone();
                v.insert(i.min(v.len()), random_case(r, &kw).into_bytes());
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

fn info_field(v: &Value, field: &str) -> i64 {
    let text = match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        Value::VerbatimString { text, .. } => text.clone(),
        other => panic!("INFO answered {other:?}"),
    };
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// What moves when the server writes or propagates, from one INFO reply.
fn written_of(v: &Value) -> Written {
    Written {
        dirty: info_field(v, "rdb_changes_since_last_save"),
        repl_offset: info_field(v, "master_repl_offset"),
        aof_bytes: info_field(v, "aof_current_size") + info_field(v, "aof_buffer_length"),
    }
}

#[derive(Default, Debug)]
struct Tally {
    decisions: u64,
    allowed: u64,
    /// Allowed decisions that had to write nothing (and did not).
    allowed_no_write: u64,
    /// Decisions of calls with BLOCK (denied ones waited 1 ms first).
    with_block: u64,
    errors: u64,
    wrongtype: u64,
    unknown_command: u64,
    arity: u64,
    internal_refused: u64,
    /// Denials that started a LOCKOUT policy's lock.
    locks: u64,
}

/// The error an internal command answers an ordinary client, in the
/// core's words.
fn internal_error(name: &str) -> String {
    thread_local! {
        static TEXTS: std::cell::RefCell<BTreeMap<String, String>> = Default::default();
    }
    TEXTS.with_borrow_mut(|texts| {
        texts
            .entry(name.to_string())
            .or_insert_with(|| {
                // The error names the command by a 'static C string.
                let name = Box::leak(CString::new(name).unwrap().into_boxed_c_str());
                CmdError::InternalCommand(name).text()
            })
            .clone()
    })
}

/// The keys a call touched: (DUMP, PEXPIRETIME) of each, before and after.
/// Each touched key's DUMP, PEXPIRETIME and, where a denial may lock
/// ([`may_lock`]), TYPE (else nil).
type KeyStates = Vec<(Value, Value, Value)>;

/// Checks one reply, given the touched keys' states before and after and
/// what the server had written before and after.
fn check(
    v: &[Vec<u8>],
    role: Role,
    reply: &Value,
    keys: (&KeyStates, &KeyStates),
    written: (Written, Written),
    t: &mut Tally,
) -> Result<(), String> {
    let name = String::from_utf8_lossy(&v[0]).to_ascii_uppercase();
    let unchanged = |what: &str| -> Result<(), String> {
        if written.0 != written.1 {
            return Err(format!(
                "{what} wrote or propagated something: {:?} -> {:?}",
                written.0, written.1
            ));
        }
        if keys.0 != keys.1 {
            return Err(format!(
                "{what} changed a key or its expiry: {:?} -> {:?}",
                keys.0, keys.1
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
            // An internal command refuses every ordinary client, whatever
            // it carries (after Redis's own arity check; unless the module
            // does not have it yet).
            if matches!(role, Role::Internal)
                && !text.starts_with("ERR wrong number of arguments")
                && !text.starts_with("ERR unknown command")
            {
                let want = internal_error(&name);
                if text != want {
                    return Err(format!(
                        "an internal command answered {text:?}, not {want:?}"
                    ));
                }
                t.internal_refused += 1;
            }
            unchanged(&format!("the error {text:?}"))
        }
        _ if matches!(role, Role::Internal) => Err(format!(
            "an internal command ran for an ordinary client: {reply:?}"
        )),
        Value::Array(items)
            if matches!(
                role,
                Role::Limiter(_) | Role::Throttle | Role::All | Role::Take
            ) =>
        {
            let d: Vec<i64> = items
                .iter()
                .map(|x| match x {
                    Value::Int(i) => Ok(*i),
                    other => Err(format!("non-integer {other:?} in a decision")),
                })
                .collect::<Result<_, _>>()?;
            let all = matches!(role, Role::All);
            let want = decision_len(role, v)?;
            if d.len() != want {
                return Err(format!(
                    "decision of {} integers, not {want}: {d:?}",
                    d.len()
                ));
            }
            t.decisions += 1;
            if v.iter().any(|a| a.eq_ignore_ascii_case(b"BLOCK")) {
                t.with_block += 1;
            }
            let bad = |why: &str| Err(format!("{why}: {d:?}"));
            let (flag, limit, remaining, retry, reset) = (d[0], d[1], d[2], d[3], d[4]);
            if !(0..=1).contains(&flag)
                || limit < 1
                || !(0..=limit).contains(&remaining)
                || reset < 0
            {
                return bad("malformed decision");
            }
            let denied = if matches!(role, Role::Throttle) {
                // [limited, max_burst + 1, remaining, retry_after_s (-1 when allowed), reset_after_s]
                if flag == 0 && retry != -1 || flag == 1 && retry < -1 {
                    return bad("retry_after does not match limited");
                }
                flag == 1
            } else {
                if flag == 1 && retry != 0 || flag == 0 && retry != -1 && retry <= 0 {
                    return bad("retry_after does not match allowed");
                }
                if !all && retry > reset {
                    return bad("retry_after beyond reset_after");
                }
                if all {
                    // Its clauses, in either form (the grammar's key positions).
                    let words: Vec<&[u8]> = v.iter().map(|a| a.as_slice()).collect();
                    let limits = all_key_positions(&words[..]).len();
                    if d[5] < 1 || d[5] as usize > limits {
                        return bad("binding index out of range");
                    }
                }
                flag == 0
            };
            let all_missing = keys.0.iter().all(|(dump, ..)| *dump == Value::Nil);
            if denied && may_lock(role, v) && written.0 != written.1 {
                // The one write a denial may make: a LOCKOUT policy's lock
                // (on a key not locked, or whose lock had ended: a key that
                // is still locked denies and writes nothing, as no_write.rs
                // checks).
                let locked = |t: &Value| matches!(t, Value::SimpleString(s) if s == "rl-locked");
                for (b, a) in keys.0.iter().zip(keys.1) {
                    if b != a && !locked(&a.2) {
                        return bad(&format!(
                            "a denial changed {b:?} into {a:?}, not into a lock"
                        ));
                    }
                }
                if keys.0.iter().zip(keys.1).all(|(b, a)| b == a) {
                    return bad("a denial wrote, and no key was locked");
                }
                t.locks += 1;
            } else if denied {
                unchanged("a denied request")?;
            } else {
                t.allowed += 1;
                if writes_nothing(role, v, all_missing)? {
                    t.allowed_no_write += 1;
                    unchanged("a peek, dry run or refund with nothing to give back")?;
                }
            }
            Ok(())
        }
        Value::Int(b) if matches!(role, Role::Bit) => match b {
            0 => unchanged("a lease change with nothing to change"),
            1 => {
                t.allowed += 1;
                Ok(())
            }
            _ => Err(format!("{name} answered {b}, not 0 or 1")),
        },
        _ if matches!(role, Role::Other) => Ok(()),
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
    let mut r = Rng::new(seed);

    // No PINGs to the replica: the replication offset moves only when
    // something is propagated.
    let mut opts = AOF_COMMANDS.to_vec();
    opts.extend_from_slice(NO_PINGS);
    let master = Server::start_with(&opts);
    let replica = start_replica(&master, &[]);
    let mut c = master.connect();
    // A storm that hangs (a call that blocks) fails instead.
    c.set_read_timeout(Some(Duration::from_secs(120))).unwrap();

    // The module's clock: an hour ahead of the server's, or as given.
    let start = std::env::var("RL_STORM_CLOCK")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| clock_start(&mut c));
    eprintln!(
        "storm seed {seed}, clock {start} ({}): rerun with RL_STORM_SEED={seed} RL_STORM_CLOCK={start}; {total} vectors",
        rfc3339(start)
    );
    set_clock(&mut c, start);

    // Every module command (test hooks aside) and every spec command.
    let mut names: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("ratelimit")
        .query(&mut c)
        .unwrap();
    // Subcommands (`RL.POLICY|SET`) are called through their container.
    names.retain(|n| !n.to_ascii_uppercase().starts_with("RL.TEST.") && !n.contains('|'));
    let registered: Vec<String> = names.iter().map(|n| n.to_ascii_uppercase()).collect();
    // Internal: the known ones, and any whose docs say so.
    let mut internal: Vec<String> = INTERNAL.iter().map(|s| s.to_string()).collect();
    for n in &registered {
        let docs = format!("{:?}", call(&mut c, &["COMMAND", "DOCS", n]).unwrap());
        if docs.contains("Internal:") && !internal.contains(n) {
            internal.push(n.clone());
        }
    }
    for n in deciding().iter().chain(&internal) {
        if !names.iter().any(|x| x.eq_ignore_ascii_case(n)) {
            names.push(n.to_string());
        }
    }
    names.sort_by_key(|n| n.to_ascii_uppercase());
    names.dedup_by_key(|n| n.to_ascii_uppercase());
    let roles: BTreeMap<String, Role> = names
        .iter()
        .map(|n| {
            (
                n.to_ascii_uppercase(),
                role(&n.to_ascii_uppercase(), &internal),
            )
        })
        .collect();
    let keywords = keywords();
    eprintln!("commands stormed: {names:?}; internal: {internal:?}; keywords: {keywords:?}");

    // Named policies for RL.TAKE and RL.ALL: one per algorithm, from the
    // grammar, and one in SHADOW.
    for (i, s) in ALGORITHMS.iter().enumerate() {
        for (shadow, lockout) in [(false, false), (true, false), (false, true)] {
            if shadow && i != 0 || lockout && s.keyword.eq_ignore_ascii_case("CONCURRENCY") {
                continue;
            }
            let name = format!(
                "p.{}{}",
                s.keyword.to_ascii_lowercase(),
                if shadow {
                    ".shadow"
                } else if lockout {
                    ".lockout"
                } else {
                    ""
                }
            );
            let mut def = vec![s.keyword.as_bytes().to_vec()];
            let spec = loop {
                def.truncate(1);
                limit_args(&mut r, s, &mut def, false, false, false);
                if shadow {
                    def.push(b"SHADOW".to_vec());
                }
                if lockout {
                    def.push(b"LOCKOUT".to_vec());
                    def.push(format!("{}.5", 1 + r.below(3600)).into_bytes());
                }
                let words: Vec<&[u8]> = def.iter().map(Vec::as_slice).collect();
                if let Ok(d) = read_definition(&words[..], 0, Settings::default()) {
                    break d.spec;
                }
            };
            let mut cmd = redis::cmd("RL.POLICY");
            cmd.arg("SET").arg(&name);
            for w in &def {
                cmd.arg(w.as_slice());
            }
            let _: () = cmd.query(&mut c).unwrap();
            POLICIES.with_borrow_mut(|p| p.insert(name, (spec, lockout)));
        }
    }
    eprintln!("policies: {:?}", policies_of(&mut c));

    // Keys of other types, for the WRONGTYPE paths.
    ok(&mut c, &["SET", "s:str", "a plain string"]);
    int(&mut c, &["RPUSH", "s:list", "a", "b"]);

    // The warm-up: valid calls of every limiter, whose propagated effects
    // (read back from the AOF) seed the internal commands.
    let mut clock = start;
    let no_seeds = Seeds::new();
    for round in 0..40 {
        clock += r.below(SEC);
        let mut p = redis::pipe();
        p.ignore_errors();
        p.cmd("RL.TEST.CLOCK").arg("SET").arg(clock.to_string());
        for name in registered.iter().filter(|n| deciding().contains(n)) {
            for _ in 0..10 {
                let v = valid(&mut r, name, roles[name], &no_seeds, false);
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
    let seeds = harvest_internal_calls(&master, &internal);
    let counts: Vec<(&String, usize)> = seeds.iter().map(|(k, v)| (k, v.len())).collect();
    eprintln!("internal calls harvested from the AOF: {counts:?}");
    for name in registered.iter().filter(|n| internal.contains(n)) {
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
                // Mostly commands the server has, sometimes any of the spec;
                // internal commands less often (they only refuse).
                let pick = |r: &mut Rng| {
                    if r.one_in(4) {
                        r.pick_ref(&names).to_ascii_uppercase()
                    } else {
                        r.pick_ref(&registered).clone()
                    }
                };
                let mut name = pick(&mut r);
                if internal.contains(&name) && !r.one_in(4) {
                    name = pick(&mut r);
                }
                let mutated = !r.one_in(3);
                let mut v = valid(&mut r, &name, roles[&name], &seeds, !mutated);
                if mutated {
                    mutate(&mut r, &mut v, &names, &keywords);
                }
                let called = String::from_utf8_lossy(&v[0]).to_ascii_uppercase();
                if !registered.contains(&called) || called == "RL.POLICY" {
                    // Redis echoes an unknown command's arguments (and a
                    // container's unknown subcommand) in its error, and the
                    // client cannot parse a non-UTF-8 error.
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
        p.cmd("INFO").arg("persistence").arg("replication");
        let mut touched = vec![];
        for v in &vectors {
            let keys = touched_keys(v);
            // TYPE too where a denial may lock (see check).
            let name = String::from_utf8_lossy(&v[0]).to_ascii_uppercase();
            let lockable = may_lock(roles.get(&name).copied().unwrap_or(Role::Other), v);
            let state = |p: &mut redis::Pipeline| {
                for k in &keys {
                    p.cmd("DUMP").arg(k);
                    p.cmd("PEXPIRETIME").arg(k);
                    if lockable {
                        p.cmd("TYPE").arg(k);
                    }
                }
            };
            state(&mut p);
            let mut cmd = redis::cmd(std::str::from_utf8(&v[0]).unwrap_or("RL.?"));
            for a in &v[1..] {
                cmd.arg(a.as_slice());
            }
            p.add_command(cmd);
            state(&mut p);
            p.cmd("INFO").arg("persistence").arg("replication");
            touched.push((keys.len(), 2 + usize::from(lockable)));
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
        let mut written = written_of(&replies[1]);
        let mut at = 2;
        for (i, (v, &(k, per))) in vectors.iter().zip(&touched).enumerate() {
            let states = |from: usize| -> KeyStates {
                (0..k)
                    .map(|j| {
                        let r = |n: usize| replies[from + per * j + n].clone();
                        (r(0), r(1), if per == 3 { r(2) } else { Value::Nil })
                    })
                    .collect()
            };
            let before = states(at);
            let reply = &replies[at + per * k];
            let after = states(at + per * k + 1);
            let now = written_of(&replies[at + 2 * per * k + 1]);
            let name = String::from_utf8_lossy(&v[0]).to_ascii_uppercase();
            let role = roles.get(&name).copied().unwrap_or(Role::Other);
            if let Err(why) = check(
                v,
                role,
                reply,
                (&before, &after),
                (written, now),
                &mut tally,
            ) {
                panic!(
                    "seed {seed}, clock {start}, vector {}: {why}\n  {}",
                    done + i as u64,
                    show(v)
                );
            }
            written = now;
            at += 2 * per * k + 2;
        }
        done += n;
    }
    // Every instant the module was given stayed ahead of Redis's real
    // clock: nothing the storm wrote expired while it ran.
    let real = server_now_ns(&mut c);
    assert!(
        real + FAKE_MARGIN_NS <= floor,
        "the storm's faked instants (from {}) fell behind the server's clock ({})",
        rfc3339(floor),
        rfc3339(real)
    );
    real_clock(&mut c);
    eprintln!("{done} vectors in {:?}: {tally:?}", started.elapsed());
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
    // Every path was reached: decisions, no-write ones among them, errors
    // of each kind, internal commands refused.
    assert!(tally.decisions >= total / 10, "{tally:?}");
    if REQUEST_OPTIONS.iter().any(blocks) {
        assert!(tally.with_block > 0, "{tally:?}");
    }
    assert!(
        tally.allowed > 0
            && tally.allowed_no_write > 0
            && tally.wrongtype > 0
            && tally.arity > 0
            && tally.internal_refused > 0
            && tally.locks > 0,
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

fn policies_of(c: &mut redis::Connection) -> Vec<(String, String)> {
    redis::cmd("RL.POLICY").arg("LIST").query(c).unwrap()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
