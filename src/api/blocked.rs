//! Blocked clients: a command makes its client wait, and a later callback
//! (a timer) releases it with the outcome its reply is made from.

use std::ffi::{c_int, c_void};
use std::ptr::NonNull;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, RawString, ERR, OK};
use super::guard::guard;

/// A client made to wait by [`Ctx::block_client`]: it holds its reply
/// until [`unblock`] is called, exactly once, with this handle.
pub struct BlockedClient(NonNull<raw::RedisModuleBlockedClient>);

/// Which blocked client a callback is about (the handle's address, valid
/// until the client is unblocked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlockedId(usize);

impl BlockedClient {
    pub fn id(&self) -> BlockedId {
        BlockedId(self.0.as_ptr() as usize)
    }
}

/// What happens to the clients a command made wait.
pub trait BlockCallbacks: 'static {
    /// What [`unblock`] hands over for the reply.
    type Outcome: 'static;
    /// The client was unblocked with `outcome`: reply to it (the context
    /// reaches the client; nothing else may be done here).
    fn reply(ctx: &Ctx<'_>, outcome: &Self::Outcome);
    /// `CLIENT UNBLOCK id [TIMEOUT]`: reply to the client through `ctx`,
    /// and let go of its handle with `unblock(bc, None)`.
    fn unblocked(ctx: &Ctx<'_>, id: BlockedId);
    /// The client is gone (closed, killed, `CLIENT UNBLOCK .. ERROR`, the
    /// server became a replica): forget it and `unblock(bc, None)` unless
    /// that was already done.
    fn disconnected(ctx: &Ctx<'_>, id: BlockedId);
}

/// Releases a waiting client: with an outcome, its reply callback answers
/// from it; without, it gets no reply (it timed out or went away).
pub fn unblock<B: BlockCallbacks>(bc: BlockedClient, outcome: Option<Box<B::Outcome>>) {
    let p = outcome.map_or(std::ptr::null_mut(), |o| Box::into_raw(o).cast::<c_void>());
    if rm!(RedisModule_UnblockClient(bc.0.as_ptr(), p) else ERR) != OK && !p.is_null() {
        // SAFETY: Redis did not take the outcome; it is ours again.
        drop(unsafe { Box::from_raw(p.cast::<B::Outcome>()) });
    }
}

extern "C" fn blocked_reply<B: BlockCallbacks>(
    ctx: RawCtx,
    _argv: *mut RawString,
    _argc: c_int,
) -> c_int {
    guard(OK, || {
        let p = rm!(RedisModule_GetBlockedClientPrivateData(ctx) else std::ptr::null_mut());
        // SAFETY: the only privdata ever handed to UnblockClient is a
        // Box<B::Outcome> (see `unblock`); it is freed by `blocked_free`.
        if let Some(outcome) = unsafe { p.cast::<B::Outcome>().as_ref() } {
            B::reply(&Ctx::new(ctx), outcome);
        }
        OK
    })
}

extern "C" fn blocked_timeout<B: BlockCallbacks>(
    ctx: RawCtx,
    _argv: *mut RawString,
    _argc: c_int,
) -> c_int {
    guard(OK, || {
        let bc = rm!(RedisModule_GetBlockedClientHandle(ctx) else std::ptr::null_mut());
        B::unblocked(&Ctx::new(ctx), BlockedId(bc as usize));
        OK
    })
}

extern "C" fn blocked_disconnect<B: BlockCallbacks>(
    ctx: RawCtx,
    bc: *mut raw::RedisModuleBlockedClient,
) {
    guard((), || {
        B::disconnected(&Ctx::new(ctx), BlockedId(bc as usize))
    });
}

extern "C" fn blocked_free<B: BlockCallbacks>(_ctx: RawCtx, privdata: *mut c_void) {
    guard((), || {
        if !privdata.is_null() {
            // SAFETY: a Box<B::Outcome> from `unblock`, freed once, here.
            drop(unsafe { Box::from_raw(privdata.cast::<B::Outcome>()) });
        }
    });
}

impl Ctx<'_> {
    /// Makes this command's client wait until [`unblock`]: no reply now.
    /// `None` where the server refuses (its own reply, if any, was sent).
    pub fn block_client<B: BlockCallbacks>(&self) -> Option<BlockedClient> {
        let bc = rm!(RedisModule_BlockClient(
            self.raw,
            Some(blocked_reply::<B>),
            Some(blocked_timeout::<B>),
            Some(blocked_free::<B>),
            0,
        ) else std::ptr::null_mut());
        let bc = NonNull::new(bc)?;
        rm!(RedisModule_SetDisconnectCallback(bc.as_ptr(), Some(blocked_disconnect::<B>)) else ());
        Some(BlockedClient(bc))
    }
}
