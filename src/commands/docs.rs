//! What `COMMAND INFO` and `COMMAND DOCS` say about each command, derived
//! from its table row and, for limiters, from the same [`Syntax`] the
//! handler reads: the docs cannot list an argument the command does not
//! take.

use std::ffi::{CStr, CString};

use redis_ratelimit_core::grammar::{
    ArgKind, Param, Syntax, ALGORITHMS, COST, LIMIT_CLAUSE, POLICY_CLAUSE, REQUEST_OPTIONS,
};
use redis_ratelimit_core::policy::{LOCKOUT, SHADOW};

use super::row::{Args, Body, Command, Keys};
use crate::api::{self, Ctx, DocArg, DocInfo, DocType, KeySpec};

/// This crate's version (Cargo.toml): `COMMAND DOCS` shows it as every
/// command's `since`.
#[allow(clippy::panic)]
const VERSION: &CStr =
    match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(v) => v,
        Err(_) => panic!("the crate version holds a NUL byte"),
    };

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

/// `[COST n] [DRYRUN] [REFUND] LIMIT key <algorithm> ... [COST n] ...`
/// (RL.ALL), or with `POLICY name` as the only limit (RL.TAKEALL).
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
    let clause = vec![
        arg("key", DocType::Key),
        DocArg {
            subargs: algorithms,
            ..arg("algorithm", DocType::OneOf)
        },
        DocArg {
            token: Some(cstring(COST)),
            optional: true,
            ..arg("cost", DocType::Int)
        },
    ];
    let mut out = request_options(true);
    out.push(DocArg {
        token: Some(cstring(LIMIT_CLAUSE)),
        multiple: true,
        subargs: clause,
        ..arg("limit", DocType::Block)
    });
    out
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

/// Sets every command's documentation. Servers without the API keep the
/// legacy key positions given at registration.
pub fn register(ctx: &Ctx<'_>, commands: &[Command]) -> Result<(), String> {
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
            (Args::Syntax, Body::Handler(_) | Body::Container) => Vec::new(),
        };
        let keys = match row.keys {
            Keys::First => Some((u64::from(row.key_flags), KeySpec::Index(1))),
            Keys::AfterEachLimit => Some((u64::from(row.key_flags), KeySpec::AfterKeyword(&limit))),
            Keys::Range { last } => Some((u64::from(row.key_flags), KeySpec::Range(1, last))),
            Keys::None => None,
        };
        let info = DocInfo {
            summary: row.summary,
            complexity: row.complexity,
            since: VERSION,
            arity: row.arity(),
            keys,
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
