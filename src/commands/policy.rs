//! RL.POLICY SET/GET/DEL/LIST: limits kept in the server under a name
//! (see `policies`; RL.TAKE and RL.ALL's `POLICY name` clauses apply them).

use redis_ratelimit_core::bounds::MAX_POLICY_WORD;
use std::ffi::CString;

use redis_ratelimit_core::error::{CmdError, INTERNAL, POLICY_TOO_LONG, SYNTAX};
use redis_ratelimit_core::grammar::Words;

use super::row::Cmd;
use crate::api::{Argv, Ctx};
use crate::{config, policies};

/// The name (word 2) of an RL.POLICY subcommand (the row's arity
/// guarantees one).
fn name<'a>(argv: &Argv<'a>) -> Result<&'a [u8], CmdError> {
    argv.word(2).ok_or(SYNTAX)
}

/// RL.POLICY SET name <ALGORITHM> args... [SHADOW] [LOCKOUT seconds]
pub fn set(ctx: &Ctx<'_>, argv: Argv<'_>, cmd: Cmd) -> Result<(), CmdError> {
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
    let (command, sub) = cmd.row.parent().ok_or(INTERNAL)?;
    let command = CString::new(command).map_err(|_| INTERNAL)?;
    let mut out: Vec<&[u8]> = vec![sub, name];
    out.extend(def.words.iter().map(Vec::as_slice));
    policies::set(name, def.clone(), from_client)?;
    ctx.replicate_words(&command, &out);
    ctx.reply_ok();
    Ok(())
}

/// RL.POLICY GET name: the definition, or nil.
pub fn get(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    match policies::find(name(&argv)?) {
        Ok(p) => ctx.reply_bulk(&policies::definition_text(&p.words)),
        Err(_) => ctx.reply_null(),
    }
    Ok(())
}

/// RL.POLICY DEL name: 1 if it was defined, else 0. Keys it limited keep
/// their state (and expire as usual).
pub fn del(ctx: &Ctx<'_>, argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    let deleted = policies::del(name(&argv)?);
    if deleted {
        ctx.replicate_verbatim();
    }
    ctx.reply_int(i64::from(deleted));
    Ok(())
}

/// RL.POLICY LIST: `[name, definition]` pairs, by name.
pub fn list(ctx: &Ctx<'_>, _argv: Argv<'_>, _cmd: Cmd) -> Result<(), CmdError> {
    let all = policies::list();
    ctx.reply_array(all.len());
    for (name, p) in all {
        ctx.reply_array(2);
        ctx.reply_bulk(&name);
        ctx.reply_bulk(&policies::definition_text(&p.words));
    }
    Ok(())
}
