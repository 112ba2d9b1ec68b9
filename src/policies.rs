//! Named policies kept in the server: RL.POLICY SET/GET/DEL/LIST define
//! them, RL.TAKE and RL.ALL's `POLICY name` clauses use them.
//!
//! A policy is a definition read by the same grammar as the algorithm's
//! own command ([`policy::read_definition`]), parsed once when it is set:
//! a request that names it costs a hash lookup. Counters per policy
//! (calls, allowed, denied, shadow-denied, lockouts) feed `INFO ratelimit`;
//! they carry over when a policy is redefined and go with RL.POLICY DEL.
//!
//! Where they live: RDB (an aux field beside the keys, so `DEBUG RELOAD`,
//! restarts, full syncs and the RDB preamble of a rewritten AOF carry
//! them), the replication stream and the AOF (RL.POLICY SET and DEL travel
//! verbatim), and the module's load arguments (`POLICY name definition`,
//! applied at every start, over what an RDB holds). Everything runs on the
//! server's main thread: the registry is thread-local.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::rc::Rc;

use redis_ratelimit_core::error::{self, CmdError, PolicyName};
use redis_ratelimit_core::grammar::Settings;
use redis_ratelimit_core::limit::{Rules, Spec, Verdict};
use redis_ratelimit_core::policy::{self, Definition};
use rustc_hash::FxHasher;

use crate::api::{AuxMethods, Ctx, Info, RdbIn, RdbOut, TypeHandle};
use crate::config;

/// What INFO counts for one policy name.
#[derive(Debug, Default)]
pub struct Counters {
    pub calls: Cell<u64>,
    pub allowed: Cell<u64>,
    pub denied: Cell<u64>,
    pub shadow_denied: Cell<u64>,
    pub lockouts: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get().wrapping_add(1));
}

impl Counters {
    /// A request decided under the policy. Only requests that take (not
    /// DRYRUN, not REFUND) count as allowed or denied.
    #[inline]
    pub fn decided(&self, verdict: Verdict, takes: bool, shadow: bool) {
        if !takes {
            return;
        }
        if !verdict.denied {
            bump(&self.allowed);
        } else if shadow {
            bump(&self.shadow_denied);
        } else {
            bump(&self.denied);
        }
        if verdict.locked {
            bump(&self.lockouts);
        }
    }

    /// A request that waited in line and was admitted, or was not.
    pub fn waited(&self, admitted: bool) {
        bump(if admitted {
            &self.allowed
        } else {
            &self.denied
        });
    }

    pub fn called(&self) {
        bump(&self.calls);
    }
}

/// A policy as requests use it.
#[derive(Debug)]
pub struct Policy {
    pub spec: Spec,
    pub rules: Rules,
    /// The definition's words, keywords in capitals (GET, LIST, RDB).
    pub words: Vec<Vec<u8>>,
    pub counters: Rc<Counters>,
}

type Map<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<FxHasher>>;

#[derive(Default)]
struct Registry {
    policies: Map<Rc<Policy>>,
    /// Definitions given as module arguments, applied again after an RDB
    /// replaces the set.
    from_args: Vec<(Vec<u8>, Vec<Vec<u8>>)>,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

fn with<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    REGISTRY.with(|r| f(&mut r.borrow_mut()))
}

/// The policy a request names; the error names it when there is none.
/// A name too long to be one is refused before it is hashed (a caller
/// could otherwise send hundreds of megabytes to hash).
#[inline(always)]
pub fn find(name: &[u8]) -> Result<Rc<Policy>, CmdError> {
    if name.len() > redis_ratelimit_core::bounds::MAX_POLICY_NAME {
        return Err(error::POLICY_NAME);
    }
    REGISTRY
        .with(|r| r.borrow().policies.get(name).cloned())
        .ok_or_else(|| unknown(name))
}

fn unknown(name: &[u8]) -> CmdError {
    if policy::valid_name(name) {
        CmdError::UnknownPolicy(PolicyName::new(name))
    } else {
        error::POLICY_NAME
    }
}

/// Reads and checks the definition `words` for `name`, as SET
/// would store it; changes nothing.
pub fn read(name: &[u8], words: &[&[u8]], settings: Settings) -> Result<Definition, CmdError> {
    if !policy::valid_name(name) {
        return Err(error::POLICY_NAME);
    }
    policy::read_definition(words, 0, settings)
}

/// Defines or redefines `name`. A redefinition keeps the algorithm's kind
/// of state (the keys it already holds stay readable); `capped` applies
/// `ratelimit.max-policies` (a replica or a load takes what it is sent).
pub fn set(name: &[u8], def: Definition, capped: bool) -> Result<(), CmdError> {
    with(|r| {
        let counters = match r.policies.get(name) {
            Some(old) if old.spec.kind() != def.spec.kind() => return Err(error::POLICY_KIND),
            Some(old) => old.counters.clone(),
            None if capped && r.policies.len() >= config::max_policies() => {
                return Err(error::POLICY_FULL)
            }
            None => Rc::default(),
        };
        let policy = Policy {
            spec: def.spec,
            rules: def.rules,
            words: def.words,
            counters,
        };
        r.policies.insert(name.into(), Rc::new(policy));
        Ok(())
    })
}

/// Removes `name`; true if it was defined.
pub fn del(name: &[u8]) -> bool {
    with(|r| r.policies.remove(name).is_some())
}

/// Every policy, by name.
pub fn list() -> Vec<(Vec<u8>, Rc<Policy>)> {
    let mut out: Vec<(Vec<u8>, Rc<Policy>)> = with(|r| {
        r.policies
            .iter()
            .map(|(k, v)| (k.to_vec(), v.clone()))
            .collect()
    });
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn count() -> usize {
    with(|r| r.policies.len())
}

// ---------------------------------------------------------------- module arguments

/// The module's load arguments: `POLICY name <definition>` groups, one
/// after the other (`loadmodule ratelimit.so POLICY api SLIDING 100 60
/// POLICY day FIXED 500 DAY TZ America/New_York`). Any error refuses the
/// load, naming the policy.
pub fn from_args(args: &[Vec<u8>]) -> Result<(), String> {
    let mut groups: Vec<&[Vec<u8>]> = Vec::new();
    let mut rest = args;
    while let Some(first) = rest.first() {
        if !first.eq_ignore_ascii_case(b"POLICY") {
            return Err(format!(
                "module arguments are POLICY name <definition> groups; got '{}'",
                String::from_utf8_lossy(first)
            ));
        }
        let end = rest
            .iter()
            .skip(1)
            .position(|w| w.eq_ignore_ascii_case(b"POLICY"))
            .map_or(rest.len(), |p| p + 1);
        groups.push(rest.get(1..end).unwrap_or(&[]));
        rest = rest.get(end..).unwrap_or(&[]);
    }
    let mut defined = Vec::new();
    for g in groups {
        let Some((name, def)) = g.split_first() else {
            return Err("POLICY needs a name and a definition".into());
        };
        let words: Vec<&[u8]> = def.iter().map(Vec::as_slice).collect();
        let d = read(name, &words, config::settings())
            .map_err(|e| format!("policy '{}': {}", String::from_utf8_lossy(name), e.text()))?;
        if defined.iter().any(|(n, _)| n == name) {
            return Err(format!(
                "policy '{}' is given twice",
                String::from_utf8_lossy(name)
            ));
        }
        defined.push((name.clone(), d.words.clone()));
        set(name, d, false).map_err(|e| e.text())?;
    }
    with(|r| r.from_args = defined);
    Ok(())
}

/// Puts the module arguments' policies back over the current set.
fn apply_args() {
    let args = with(|r| r.from_args.clone());
    for (name, words) in args {
        let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        if let Ok(d) = read(&name, &w, config::settings().loading()) {
            // A kind change from what the RDB held: the arguments win.
            with(|r| r.policies.remove(name.as_slice()));
            let _ = set(&name, d, false);
        }
    }
}

// ---------------------------------------------------------------- RDB

/// The aux type that carries the policies in an RDB. It names no key.
pub static AUX: TypeHandle = TypeHandle::new();

const AUX_VERSION: i32 = 1;

/// Registers the aux type (at load).
pub fn register(ctx: &Ctx<'_>) -> Result<(), &'static str> {
    if !crate::api::register_aux::<Aux>(ctx, c"rl-policy", AUX_VERSION) {
        return Err("cannot create type rl-policy");
    }
    Ok(())
}

struct Aux;

impl AuxMethods for Aux {
    fn handle() -> &'static TypeHandle {
        &AUX
    }

    /// The number of policies, then each one's name, word count and words.
    /// Written even when there are none, so a replica's full sync empties
    /// its set as the master's is.
    fn save(out: &mut RdbOut<'_>) {
        let all = list();
        out.unsigned(all.len() as u64);
        for (name, p) in all {
            out.bytes(&name);
            out.unsigned(p.words.len() as u64);
            for w in &p.words {
                out.bytes(w);
            }
        }
    }

    /// Replaces the set with the RDB's; every definition is read and
    /// checked again, and anything wrong refuses the RDB.
    fn load(input: &mut RdbIn<'_>, encver: i32) -> bool {
        if encver != AUX_VERSION {
            return false;
        }
        // No more than a master could hold (the widest max-policies).
        let Some(n) = input.unsigned().filter(|n| *n <= MAX_POLICIES_STORED) else {
            return false;
        };
        let mut read_all = Vec::new();
        for _ in 0..n {
            let Some(name) = input.bytes() else {
                return false;
            };
            let Some(count) = input.unsigned().filter(|c| *c <= MAX_WORDS) else {
                return false;
            };
            let mut words = Vec::new();
            for _ in 0..count {
                let Some(w) = input.bytes() else {
                    return false;
                };
                words.push(w);
            }
            let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
            let Ok(d) = read(&name, &w, config::settings().loading()) else {
                return false;
            };
            read_all.push((name, d));
        }
        with(|r| r.policies.clear());
        for (name, d) in read_all {
            if set(&name, d, false).is_err() {
                return false;
            }
        }
        apply_args();
        true
    }
}

/// No stored definition has more words than this (the longest is about 8;
/// SET refuses more than [`MAX_POLICY_WORDS`], and an RDB written before
/// that bound loads if its definitions read within it).
///
/// [`MAX_POLICY_WORDS`]: redis_ratelimit_core::bounds::MAX_POLICY_WORDS
const MAX_WORDS: u64 = 64;

/// The most policies an RDB may carry: the widest `ratelimit.max-policies`.
const MAX_POLICIES_STORED: u64 = crate::config::MAX_POLICIES_MAX as u64;

// ---------------------------------------------------------------- INFO

/// One line per policy: `ratelimit_policy_<name>:calls=..,allowed=..,...`.
pub fn info(info: &mut Info<'_>) {
    for (name, p) in list() {
        let name = String::from_utf8_lossy(&name);
        let c = &p.counters;
        info.text(
            &format!("policy_{name}"),
            &format!(
                "calls={},allowed={},denied={},shadow_denied={},lockouts={}",
                c.calls.get(),
                c.allowed.get(),
                c.denied.get(),
                c.shadow_denied.get(),
                c.lockouts.get()
            ),
        );
    }
}

/// The text of a policy's definition, words joined by spaces.
pub fn definition_text(words: &[Vec<u8>]) -> Vec<u8> {
    words.join(&b' ')
}
