//! The module's `INFO` section.

use std::ffi::{c_int, CString};
use std::marker::PhantomData;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, ERR, OK};
use super::guard::guard;

/// An INFO section being filled.
pub struct Info<'a> {
    ctx: *mut raw::RedisModuleInfoCtx,
    _call: PhantomData<&'a ()>,
}

impl Info<'_> {
    /// Starts the module's section (named after the module).
    pub fn section(&mut self) {
        rm!(RedisModule_InfoAddSection(self.ctx, c"".as_ptr()) else 0);
    }

    /// A text field (INFO's `key:value` line).
    pub fn text(&mut self, name: &str, value: &str) {
        if let (Ok(n), Ok(v)) = (CString::new(name), CString::new(value)) {
            rm!(RedisModule_InfoAddFieldCString(self.ctx, n.as_ptr(), v.as_ptr()) else 0);
        }
    }

    /// A numeric field; the name is made of ASCII letters, digits and `_`.
    pub fn field(&mut self, name: &str, value: u64) {
        if let Ok(n) = CString::new(name) {
            rm!(RedisModule_InfoAddFieldULongLong(self.ctx, n.as_ptr(), value) else 0);
        }
    }
}

/// What fills the module's INFO section.
pub trait InfoSource: 'static {
    fn fill(info: &mut Info<'_>);
}

extern "C" fn info_entry<S: InfoSource>(
    ctx: *mut raw::RedisModuleInfoCtx,
    _for_crash_report: c_int,
) {
    guard((), || {
        let mut info = Info {
            ctx,
            _call: PhantomData,
        };
        S::fill(&mut info);
    })
}

pub fn register_info<S: InfoSource>(ctx: &Ctx<'_>) -> bool {
    rm!(RedisModule_RegisterInfoFunc(ctx.raw, Some(info_entry::<S>)) else ERR) == OK
}
