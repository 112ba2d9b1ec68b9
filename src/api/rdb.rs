//! Reading and writing module data in an RDB, and commands into a
//! rewritten AOF.

use std::ffi::{c_char, CStr};
use std::marker::PhantomData;

use redis_module::raw;

use super::ffi::rm;
use super::strings::Name;

/// Writing to an RDB.
pub struct RdbOut<'a> {
    pub(super) io: *mut raw::RedisModuleIO,
    pub(super) _io: PhantomData<&'a ()>,
}

impl RdbOut<'_> {
    pub fn unsigned(&mut self, v: u64) {
        rm!(RedisModule_SaveUnsigned(self.io, v) else ());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        rm!(RedisModule_SaveStringBuffer(self.io, b.as_ptr().cast::<c_char>(), b.len()) else ());
    }
}

/// Reading from an RDB; every read checks for an IO error.
pub struct RdbIn<'a> {
    pub(super) io: *mut raw::RedisModuleIO,
    pub(super) _io: PhantomData<&'a ()>,
}

impl RdbIn<'_> {
    pub fn unsigned(&mut self) -> Option<u64> {
        let v = rm!(RedisModule_LoadUnsigned(self.io) else 0);
        (!io_error(self.io)).then_some(v)
    }
    pub fn bytes(&mut self) -> Option<Vec<u8>> {
        let mut len: usize = 0;
        let buf = rm!(RedisModule_LoadStringBuffer(self.io, &mut len) else std::ptr::null_mut());
        if buf.is_null() {
            return None;
        }
        let out = (!io_error(self.io)).then(|| {
            // SAFETY: Redis returned `len` bytes at `buf`, ours until freed below.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }.to_vec()
        });
        rm!(RedisModule_Free(buf.cast()) else ());
        out
    }
}

/// An AOF rewrite in progress.
pub struct Aof<'a> {
    pub(super) io: *mut raw::RedisModuleIO,
    pub(super) _io: PhantomData<&'a ()>,
}

impl Aof<'_> {
    /// Writes `cmd key payload` (one binary argument).
    pub fn emit(&mut self, cmd: &CStr, key: Name<'_>, payload: &[u8]) {
        rm!(RedisModule_EmitAOF(
            self.io,
            cmd.as_ptr(),
            c"sb".as_ptr(),
            key.ptr,
            payload.as_ptr().cast::<c_char>(),
            payload.len(),
        ) else ());
    }
}

pub(super) fn io_error(io: *mut raw::RedisModuleIO) -> bool {
    rm!(RedisModule_IsIOError(io) else 1) != 0
}
