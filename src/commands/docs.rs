//! What `COMMAND INFO` and `COMMAND DOCS` say about each command, derived
//! from its table row and, for limiters, from the same [`Syntax`] the
//! handler reads: the docs cannot list an argument the command does not
//! take.

use std::ffi::{CStr, CString};

use redis_ratelimit_core::grammar::{
    ArgKind, Param, Syntax, ALGORITHMS, COST, LIMIT_CLAUSE, POLICY_CLAUSE, REQUEST_OPTIONS, TOKENS,
};
use redis_ratelimit_core::policy::{LOCKOUT, SHADOW};

use super::row::{Args, Body, Command, Keys, INCOMPLETE};
use crate::api::{self, Ctx, DocArg, DocInfo, DocType, KeySpec};

/// This crate's version (Cargo.toml): `COMMAND DOCS` shows it as every
/// command's `since`.
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => c"",
    };

// Evaluated while building: a crate version holding a NUL fails the build.
const _: () = assert!(!VERSION.is_empty(), "the crate version holds a NUL byte");

fn cstring(s: &str) -> CString {
    CString::new(s).unwrap_or_default()
}

fn arg(name: &str, ty: DocType) -> DocArg {
    DocArg {
        name: cstring(name),
        ty,
        token: None,
        optional: false,
        multiple: false,
        subargs: Vec::new(),
        key_spec: 0,
    }
}

fn doc_type(kind: ArgKind) -> DocType {
    match kind {
        ArgKind::Int { .. } | ArgKind::Timeout => DocType::Int,
        ArgKind::Positive | ArgKind::Window | ArgKind::Lease => DocType::Double,
        ArgKind::FixedWindow | ArgKind::Zone => DocType::Str,
    }
}

fn param(p: &Param) -> DocArg {
    let mut a = arg(p.name, doc_type(p.kind));
    if let Some(t) = p.token {
        a.token = Some(cstring(t));
        a.optional = true;
    }
    a
}

/// The request options; COST among them unless `with_cost` is false.
fn request_options(with_cost: bool) -> Vec<DocArg> {
    REQUEST_OPTIONS
        .iter()
        .filter(|o| with_cost || o.keyword != COST)
        .map(|o| match &o.value {
            Some(v) => param(v),
            None => DocArg {
                token: Some(cstring(o.keyword)),
                optional: true,
                ..arg(&o.keyword.to_ascii_lowercase(), DocType::Token)
            },
        })
        .collect()
}

/// `key <params> [cost] [options] [COST n] [DRYRUN] [REFUND]`
fn limiter_args(s: &Syntax) -> Vec<DocArg> {
    let mut out = vec![arg("key", DocType::Key)];
    out.extend(s.params.iter().map(param));
    if s.cost_positional {
        out.push(arg("cost", DocType::Int));
    }
    out.extend(s.options.iter().map(param));
    out.extend(request_options(!s.cost_positional));
    out
}

/// Either form of RL.ALL (or, with `POLICY name` as the only limit,
/// RL.TAKEALL): `key <algorithm> ... [COST n] [LIMIT key ...] ...` (the
/// first-key form, its first key found by key spec 0), or `[COST n]
/// [DRYRUN] [REFUND] [BLOCK ms] LIMIT key <algorithm> ... [COST n] ...`
/// (the keyword form). Keys after LIMIT are found by key spec 1.
fn all_args(inline: bool) -> Vec<DocArg> {
    let mut algorithms: Vec<DocArg> = ALGORITHMS
        .iter()
        .filter(|_| inline)
        .map(|s| DocArg {
            token: Some(cstring(s.keyword)),
            subargs: s.params.iter().chain(s.options).map(param).collect(),
            ..arg(&s.keyword.to_ascii_lowercase(), DocType::Block)
        })
        .collect();
    algorithms.push(DocArg {
        token: Some(cstring(POLICY_CLAUSE)),
        ..arg("policy", DocType::Str)
    });
    let clause = |key_spec: i32| {
        vec![
            DocArg {
                key_spec,
                ..arg("key", DocType::Key)
            },
            DocArg {
                subargs: algorithms.clone(),
                ..arg("algorithm", DocType::OneOf)
            },
            DocArg {
                token: Some(cstring(COST)),
                optional: true,
                ..arg("cost", DocType::Int)
            },
        ]
    };
    let limits = |optional: bool| DocArg {
        token: Some(cstring(LIMIT_CLAUSE)),
        multiple: true,
        optional,
        subargs: clause(1),
        ..arg("limit", DocType::Block)
    };
    let mut first_key = clause(0);
    first_key.push(limits(true));
    first_key.extend(request_options(false));
    let mut keyword = request_options(true);
    keyword.push(limits(false));
    vec![DocArg {
        subargs: vec![
            DocArg {
                subargs: first_key,
                ..arg("first-key-form", DocType::Block)
            },
            DocArg {
                subargs: keyword,
                ..arg("keyword-form", DocType::Block)
            },
        ],
        ..arg("form", DocType::OneOf)
    }]
}

/// `name <algorithm> ... [SHADOW] [LOCKOUT seconds]`
fn policy_set_args() -> Vec<DocArg> {
    let algorithms = ALGORITHMS
        .iter()
        .map(|s| DocArg {
            token: Some(cstring(s.keyword)),
            subargs: s.params.iter().chain(s.options).map(param).collect(),
            ..arg(&s.keyword.to_ascii_lowercase(), DocType::Block)
        })
        .collect();
    vec![
        arg("name", DocType::Str),
        DocArg {
            subargs: algorithms,
            ..arg("algorithm", DocType::OneOf)
        },
        DocArg {
            token: Some(cstring(SHADOW)),
            optional: true,
            ..arg("shadow", DocType::Token)
        },
        DocArg {
            token: Some(cstring(LOCKOUT)),
            optional: true,
            ..arg("seconds", DocType::Double)
        },
    ]
}

/// `key policy [COST n] [DRYRUN] [REFUND] [BLOCK ms]`
fn take_args() -> Vec<DocArg> {
    let mut out = vec![arg("key", DocType::Key), arg("policy", DocType::Str)];
    out.extend(request_options(true));
    out
}

/// `key max_burst tokens_per_period period [TOKENS count]`
fn gcra_args() -> Vec<DocArg> {
    vec![
        arg("key", DocType::Key),
        arg("max_burst", DocType::Int),
        arg("tokens_per_period", DocType::Int),
        arg("period", DocType::Double),
        DocArg {
            token: Some(cstring(TOKENS)),
            optional: true,
            ..arg("count", DocType::Int)
        },
    ]
}

/// Sets every command's documentation. Servers without the API keep the
/// legacy key positions given at registration.
pub fn register<'c>(
    ctx: &Ctx<'_>,
    commands: impl Iterator<Item = &'c Command>,
) -> Result<(), String> {
    if !api::has_command_info() {
        return Ok(());
    }
    let limit = cstring(LIMIT_CLAUSE);
    for row in commands {
        let args = match (&row.args, &row.body) {
            (Args::Syntax, Body::Limiter(s)) => limiter_args(s),
            (Args::All, _) => all_args(true),
            (Args::TakeAll, _) => all_args(false),
            (Args::Listed(list), _) => list
                .iter()
                .map(|(name, ty, optional)| DocArg {
                    optional: *optional,
                    ..arg(&name.to_string_lossy(), *ty)
                })
                .collect(),
            (Args::PolicySet, _) => policy_set_args(),
            (Args::Take, _) => take_args(),
            (Args::Gcra, _) => gcra_args(),
            (Args::Syntax, Body::Handler(_) | Body::Container) => Vec::new(),
        };
        let flags = u64::from(row.key_flags);
        let keys = match row.keys {
            Keys::First => vec![(flags, KeySpec::Index(1))],
            // Spec 0 is the first-key form's first key, for clients that
            // route by it; spec 1, incomplete, makes Redis ask the module
            // (getkeys-api) for the keys of either form.
            Keys::AfterEachLimit => vec![
                (u64::from(row.key_flags & !INCOMPLETE), KeySpec::Index(1)),
                (flags, KeySpec::AfterKeyword(&limit)),
            ],
            Keys::Range { last } => vec![(flags, KeySpec::Range(1, last))],
            Keys::None => Vec::new(),
        };
        let info = DocInfo {
            summary: row.summary,
            complexity: row.complexity,
            since: VERSION,
            arity: row.arity(),
            keys: &keys,
            args: &args,
        };
        if !api::set_command_info(ctx, row.name, &info) {
            return Err(format!(
                "cannot set the docs of {}",
                row.name.to_string_lossy()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn commands_are_since_the_crates_version() {
        assert_eq!(
            super::VERSION.to_bytes(),
            env!("CARGO_PKG_VERSION").as_bytes()
        );
    }
}
