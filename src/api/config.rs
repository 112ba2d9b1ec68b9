//! Numeric module configuration (`CONFIG GET/SET ratelimit.<name>`).

use std::ffi::{c_char, c_int, c_longlong, c_uint, c_void, CStr};

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, ERR, OK};
use super::guard::guard;

/// A numeric module configuration (`CONFIG GET/SET ratelimit.<name>`).
pub trait NumericConfig: 'static {
    const NAME: &'static CStr;
    const DEFAULT: i64;
    const MIN: i64;
    const MAX: i64;
    fn get() -> i64;
    /// False refuses the value (Redis has already checked the range).
    fn set(v: i64) -> bool;
}

extern "C" fn config_get<C: NumericConfig>(
    _name: *const c_char,
    _privdata: *mut c_void,
) -> c_longlong {
    guard(C::DEFAULT, C::get)
}

extern "C" fn config_set<C: NumericConfig>(
    _name: *const c_char,
    value: c_longlong,
    _privdata: *mut c_void,
    _err: *mut *mut raw::RedisModuleString,
) -> c_int {
    guard(ERR, || if C::set(value) { OK } else { ERR })
}

pub fn register_numeric_config<C: NumericConfig>(ctx: &Ctx<'_>) -> bool {
    rm!(RedisModule_RegisterNumericConfig(
        ctx.raw,
        C::NAME.as_ptr(),
        C::DEFAULT,
        raw::REDISMODULE_CONFIG_DEFAULT as c_uint,
        C::MIN,
        C::MAX,
        Some(config_get::<C>),
        Some(config_set::<C>),
        None,
        std::ptr::null_mut(),
    ) else ERR)
        == OK
}

impl Ctx<'_> {
    /// Loads configuration values given at load time (after registering).
    pub fn load_configs(&self) -> bool {
        rm!(RedisModule_LoadConfigs(self.raw) else ERR) == OK
    }
}
