//! Module timers: a callback from the event loop after some milliseconds.

use std::ffi::c_void;

use redis_module::raw;

use super::context::Ctx;
use super::ffi::{rm, RawCtx, ERR};
use super::guard::guard;

/// A module timer (its id is its expiry: reused once it fired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerId(u64);

/// What a timer does when it fires; `data` is what it was created with.
pub trait TimerCallback: 'static {
    fn fire(ctx: &Ctx<'_>, data: u64);
}

extern "C" fn timer_fire<T: TimerCallback>(ctx: RawCtx, data: *mut c_void) {
    guard((), || T::fire(&Ctx::new(ctx), data as usize as u64));
}

impl Ctx<'_> {
    /// Calls `T::fire(data)` in `ms` milliseconds, from the event loop.
    pub fn create_timer<T: TimerCallback>(&self, ms: u64, data: u64) -> TimerId {
        let period = raw::mstime_t::try_from(ms).unwrap_or(raw::mstime_t::MAX);
        TimerId(
            rm!(RedisModule_CreateTimer(self.raw, period, Some(timer_fire::<T>), data as usize as *mut c_void) else 0),
        )
    }

    /// Stops a timer that has not fired. Never stop one that fired: its id
    /// may belong to a newer timer.
    pub fn stop_timer(&self, id: TimerId) {
        rm!(RedisModule_StopTimer(self.raw, id.0, std::ptr::null_mut()) else ERR);
    }
}
