//! Strings Redis lends (a command's arguments, a key name in a callback)
//! and strings this module creates and frees.

use std::marker::PhantomData;
use std::ptr::NonNull;

use redis_module::raw;
use redis_ratelimit_core::grammar::Words;

use super::ffi::{rm, RawString};

/// A module string Redis lends for `'a` (a command argument, a key name
/// in a callback).
#[derive(Clone, Copy)]
pub struct Name<'a> {
    pub(super) ptr: RawString,
    _lent: PhantomData<&'a ()>,
}

impl<'a> Name<'a> {
    /// The string's bytes, valid as long as Redis lends the string.
    pub fn bytes(&self) -> &'a [u8] {
        let mut len: usize = 0;
        let ptr = rm!(RedisModule_StringPtrLen(self.ptr, &mut len) else std::ptr::null());
        if ptr.is_null() {
            return &[];
        }
        // SAFETY: Redis returns the string's buffer and length; the string
        // lives for 'a (an argument lives until its command returns, a key
        // name until its callback returns) and nothing here modifies it.
        unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) }
    }
}

/// A command's arguments, lent for the duration of the call.
#[derive(Clone, Copy)]
pub struct Argv<'a> {
    pub(super) args: &'a [RawString],
}

impl<'a> Argv<'a> {
    /// Argument `i` (0 is the command name).
    pub fn name(&self, i: usize) -> Option<Name<'a>> {
        self.args.get(i).map(|&ptr| Name {
            ptr,
            _lent: PhantomData,
        })
    }
}

impl<'a> Words<'a> for Argv<'a> {
    fn word(&self, i: usize) -> Option<&'a [u8]> {
        self.name(i).map(|n| n.bytes())
    }
    fn count(&self) -> usize {
        self.args.len()
    }
}

/// A module string created here, freed on drop.
pub struct OwnedString(pub(super) NonNull<raw::RedisModuleString>);

impl OwnedString {
    pub fn name(&self) -> Name<'_> {
        Name {
            ptr: self.0.as_ptr(),
            _lent: PhantomData,
        }
    }
}

impl Drop for OwnedString {
    fn drop(&mut self) {
        rm!(RedisModule_FreeString(std::ptr::null_mut(), self.0.as_ptr()) else ());
    }
}

pub(super) fn key_name<'a>(key: RawString) -> Name<'a> {
    Name {
        ptr: key,
        _lent: PhantomData,
    }
}
