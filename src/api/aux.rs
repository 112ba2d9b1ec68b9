//! Module data saved in the RDB beside the keys, by a type no key holds.

use std::ffi::{c_int, CStr};
use std::marker::PhantomData;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{ERR, OK};
use super::guard::guard;
use super::rdb::{RdbIn, RdbOut};
use super::types::{empty_methods, TypeHandle};

/// Module data saved in the RDB beside the keys (policies), by a type no
/// key ever holds.
pub trait AuxMethods: 'static {
    fn handle() -> &'static TypeHandle;
    fn save(out: &mut RdbOut<'_>);
    /// Reads what `save` wrote; false refuses the RDB.
    fn load(input: &mut RdbIn<'_>, encver: i32) -> bool;
}

extern "C" fn aux_save<A: AuxMethods>(io: *mut raw::RedisModuleIO, _when: c_int) {
    guard((), || {
        A::save(&mut RdbOut {
            io,
            _io: PhantomData,
        });
    });
}

extern "C" fn aux_load<A: AuxMethods>(
    io: *mut raw::RedisModuleIO,
    encver: c_int,
    _when: c_int,
) -> c_int {
    guard(ERR, || {
        let ok = A::load(
            &mut RdbIn {
                io,
                _io: PhantomData,
            },
            encver,
        );
        if ok {
            OK
        } else {
            ERR
        }
    })
}

/// Registers a type that only carries module data in the RDB.
pub fn register_aux<A: AuxMethods>(ctx: &Ctx<'_>, name: &CStr, encver: i32) -> bool {
    let mut m = empty_methods();
    m.aux_load = Some(aux_load::<A>);
    m.aux_save = Some(aux_save::<A>);
    m.aux_save_triggers = raw::REDISMODULE_AUX_BEFORE_RDB as c_int;
    A::handle().create(ctx, name, encver, m)
}
