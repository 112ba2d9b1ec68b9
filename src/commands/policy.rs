//! RL.POLICY SET/GET/DEL/LIST and RL.TAKE: limits kept in the server under
//! a name (see `policies`).

use redis_ratelimit_core::bounds::MAX_POLICY_WORD;
use redis_ratelimit_core::error::{CmdError, POLICY_TOO_LONG, SYNTAX};
use redis_ratelimit_core::grammar::{check_request, read_take, Words};

use super::Cmd;
use crate::api::{Argv, Ctx};
use crate::engine::{self, Shape};
use crate::policies;
use crate::{config, store};

/// RL.TAKE key policy [COST n] [DRYRUN] [REFUND] [BLOCK timeout_ms]
#[inline]
pub fn take(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
    let req = read_take(&argv)?;
    let policy = policies::find(argv.word(2).ok_or(SYNTAX)?)?;
    check_request(&policy.spec, &req)?;
    let key = argv.name(1).ok_or(SYNTAX)?;
    let shape = Shape {
        all: false,
        lease: policy.spec.kind() == redis_ratelimit_core::limit::StateKind::Leases,
    };
    let spec = &policy.spec;
    engine::one(
        ctx,
        cmd,
        key,
        spec,
        req,
        Some(&policy),
        store::load,
        |d, lease| {
            let (f, n) = engine::fields(shape, d, 0, lease);
            ctx.reply_ints(f.get(..n).unwrap_or(&[]));
        },
    )
}

/// The name (word 2) of an RL.POLICY subcommand.
fn name<'a>(argv: &Argv<'a>) -> Result<&'a [u8], CmdError> {
    argv.word(2).ok_or(CmdError::WrongArity)
}

/// RL.POLICY SET name <ALGORITHM> args... [SHADOW] [LOCKOUT seconds]
pub fn set(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() < 5 {
        return Err(CmdError::WrongArity);
    }
    let name = name(&argv)?;
    let words: Vec<&[u8]> = (3..argv.count()).filter_map(|i| argv.word(i)).collect();
    let flags = ctx.flags();
    // What a master sends or an AOF holds is taken whole: the caps are the
    // master's to enforce (and were, under its configuration then).
    let from_client = !(flags.loading() || flags.replicated());
    let settings = if from_client {
        if words.iter().any(|w| w.len() > MAX_POLICY_WORD) {
            return Err(POLICY_TOO_LONG);
        }
        config::settings()
    } else {
        config::settings().loading()
    };
    let def = policies::read(name, &words, settings)?;
    // Replicas and the AOF get the canonical words, never the text sent.
    let mut out: Vec<&[u8]> = vec![SET_WORD, name];
    out.extend(def.words.iter().map(Vec::as_slice));
    policies::set(name, def.clone(), from_client)?;
    ctx.replicate_words(c"RL.POLICY", &out);
    ctx.reply_ok();
    Ok(())
}

/// The subcommand's name as replicas receive it.
const SET_WORD: &[u8] = b"SET";

/// RL.POLICY GET name: the definition, or nil.
pub fn get(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() != 3 {
        return Err(CmdError::WrongArity);
    }
    match policies::find(name(&argv)?) {
        Ok(p) => ctx.reply_bulk(&policies::definition_text(&p.words)),
        Err(_) => ctx.reply_null(),
    }
    Ok(())
}

/// RL.POLICY DEL name: 1 if it was defined, else 0. Keys it limited keep
/// their state (and expire as usual).
pub fn del(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() != 3 {
        return Err(CmdError::WrongArity);
    }
    let deleted = policies::del(name(&argv)?);
    if deleted {
        ctx.replicate_verbatim();
    }
    ctx.reply_int(i64::from(deleted));
    Ok(())
}

/// RL.POLICY LIST: `[name, definition]` pairs, by name.
pub fn list(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    if argv.count() != 2 {
        return Err(CmdError::WrongArity);
    }
    let all = policies::list();
    ctx.reply_array(all.len());
    for (name, p) in all {
        ctx.reply_array(2);
        ctx.reply_bulk(&name);
        ctx.reply_bulk(&policies::definition_text(&p.words));
    }
    Ok(())
}
