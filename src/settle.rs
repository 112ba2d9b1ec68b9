//! RL.SETTLE: a reservation (RL.ALL ... ESTIMATE n) settled with its
//! actual cost, in one atomic step: every limit it reserved on charged the
//! difference or given back what it still holds (core's `settle`, with the
//! limit as recorded), and its lease released. Replicated as effects, each
//! with absolute times, in the order written.
//!
//! Settled once: the record goes with the lease, so settling again, an
//! unknown handle, or one whose lease ended (the caller died: the estimate
//! stays charged) finds nothing, changes nothing and answers 0.

use redis_ratelimit_core::algo::lease::Op;
use redis_ratelimit_core::error::{CmdError, INTERNAL, SETTLE_KEYS};
use redis_ratelimit_core::limit::{
    decide_all, Action, Claim, Effect, Rules, Spec, StateKind, Stored,
};
use redis_ratelimit_core::reserve::Record;
use redis_ratelimit_core::settle::{settle as settle_one, Settled};
use redis_ratelimit_core::time::Nanos;

use crate::api::{Ctx, Key, Name};
use crate::reply::Reply;
use crate::stats::Report;
use crate::{block, clock, config, store};

/// Settles reservation `id` held in `anchor`'s leases, made on `keys`
/// (every one of them, any order), at `actual` units. Answers
/// `[settled, limit, remaining, retry_after_ms, reset_after_ms, index]`:
/// settled 1, then the binding limit among those settled as a request of
/// one unit would see it now; or all zeros when there was nothing to
/// settle.
pub fn settle(
    ctx: &Ctx<'_>,
    report: &'static Report,
    anchor: Name<'_>,
    keys: &[Name<'_>],
    id: u64,
    actual: u64,
) -> Result<(), CmdError> {
    let now = clock::now();
    let mut anchor_key = ctx.open_key(anchor).ok_or(INTERNAL)?;
    // The record is read in place (not copied): everything is decided
    // from it before the first write.
    let record: Option<&Record> = match store::load(&anchor_key, StateKind::Leases)? {
        Stored::Leases(l) if l.holds(id, now) => l.record(id),
        _ => None,
    };
    let Some(record) = record else {
        report.decided(false, false, false);
        ctx.reply_ints(&[0; 6]);
        return Ok(());
    };
    // The keys named are the record's, exactly: checked before any write
    // (the count first: a caller's long list costs no sort).
    if keys.len() != record.holds.len() {
        return Err(SETTLE_KEYS);
    }
    let mut named: Vec<&[u8]> = keys.iter().map(|k| k.bytes()).collect();
    let mut held: Vec<&[u8]> = record.holds.iter().map(|h| h.key.as_slice()).collect();
    named.sort_unstable();
    held.sort_unstable();
    // (A record names the anchor only if forged: each key is opened once.)
    if named != held || named.contains(&anchor.bytes()) {
        return Err(SETTLE_KEYS);
    }
    // Everything fallible first: each limit read back, its key opened and
    // loaded, its settlement decided.
    let settings = config::settings();
    // In the order the keys are named: the reply's index is among them.
    let mut each: Vec<(Name<'_>, Key<'_>, Spec, Settled)> = Vec::with_capacity(keys.len());
    for &name in keys {
        let hold = record
            .holds
            .iter()
            .find(|h| h.key.as_slice() == name.bytes())
            .ok_or(INTERNAL)?;
        let spec = hold.spec(settings)?;
        let key = ctx.open_key(name).ok_or(INTERNAL)?;
        let settled = {
            let stored = store::load(&key, spec.kind())?;
            settle_one(stored, &spec, &hold.held(record.at), actual, now)?
        };
        each.push((name, key, spec, settled));
    }
    for (name, key, _, settled) in &mut each {
        for effect in settled.effects() {
            store::commit(ctx, key, *name, effect, report.event);
        }
    }
    let release = Effect::Lease(Op::Release { now, id });
    store::commit(ctx, &mut anchor_key, anchor, &release, report.event);
    drop(anchor_key);
    report.decided(true, false, false);
    // What a one-unit request would see now, on the limits just settled
    // (before any waiter takes what came back).
    let reply = peek(&each, now);
    let returned: Vec<Name<'_>> = each
        .iter()
        .filter(|(_, _, _, s)| s.returned > 0)
        .map(|(name, ..)| *name)
        .collect();
    drop(each);
    // Units came back, a slot was freed: the first waiters may fit now.
    for name in returned {
        block::kick(ctx, name.bytes());
    }
    block::kick(ctx, anchor.bytes());
    match reply {
        Ok(fields) => ctx.reply_ints(&fields),
        Err(e) => ctx.reply_error(&e),
    }
    Ok(())
}

/// The reply's fields after a settlement: 1, then RL.ALL's answer to a
/// one-unit request on the settled limits (deciding writes nothing).
fn peek(each: &[(Name<'_>, Key<'_>, Spec, Settled)], now: Nanos) -> Result<[i64; 6], CmdError> {
    let claims = each
        .iter()
        .map(|(_, key, spec, _)| {
            Ok(Claim {
                stored: store::load(key, spec.kind())?,
                spec,
                rules: Rules::default(),
                cost: 1,
            })
        })
        .collect::<Result<Vec<_>, CmdError>>()?;
    let peek = decide_all(&claims, now, Action::Take)?;
    let all = Reply::all(false).fields(&peek.answer, peek.index, None);
    let mut fields = [1i64; 6];
    for (to, from) in fields.iter_mut().zip(all.as_slice()).skip(1) {
        *to = *from;
    }
    Ok(fields)
}
