//! Module configuration: `CONFIG GET/SET ratelimit.<name>`, also settable at
//! load time as a `ratelimit.<name> <value>` line in redis.conf (after the
//! `loadmodule` line) or with `MODULE LOADEX <path> CONFIG ratelimit.<name> <value>`.
//!
//! - `sliding-max-entries` (default 100000, 1 to 100000000): the entries a
//!   sliding-window log keeps before it merges new admissions into its newest
//!   entry. It bounds memory per key (1 to 5 bytes an entry); below it the
//!   window is exact, above it the window can only admit less, never more.
//! - `max-waiters` (default 10000, 0 to 10000000): clients waiting in line
//!   (BLOCK) at once, over all keys. Each costs the server 35 to 47 KB
//!   (Redis keeps a reply buffer per blocked client); past it, a BLOCK call
//!   answers at once as if it had not asked to wait. 0 turns waiting off.
//! - `max-policies` (default 1000, 0 to 1000000): named policies (RL.POLICY
//!   SET). Each costs about 520 bytes (measured, tests/policy.rs); past
//!   it, SET of a new name is refused. What a master or an AOF sends is
//!   taken regardless.
//! - `max-limits` (default 32, 1 to 1000): limits one RL.ALL or RL.TAKEALL
//!   call may name; a call with more is refused before any key is read, so
//!   a call costs at most this many limits' work.
//! - `max-leases` (default 10000, 1 to 1000000): the largest CONCURRENCY
//!   limit a command or RL.POLICY SET may name, so the live leases of one key
//!   (16 bytes each, O(leases) per call and per load) stay within it. What
//!   an RDB, an AOF or a master holds loads up to the 1000000 bound.

use std::sync::atomic::{AtomicU32, Ordering};

use redis_ratelimit_core::bounds::{
    MAX_LEASES_DEFAULT, MAX_LEASES_MAX, MAX_LIMITS_DEFAULT, MAX_LIMITS_MAX,
};
use redis_ratelimit_core::grammar::{Settings, SLIDING_MAX_ENTRIES_DEFAULT};

use crate::api::{self, Ctx, NumericConfig};

const SLIDING_MAX_ENTRIES_MAX: u32 = 100_000_000;

static SLIDING_MAX_ENTRIES: AtomicU32 = AtomicU32::new(SLIDING_MAX_ENTRIES_DEFAULT);

const MAX_WAITERS_DEFAULT: u32 = 10_000;
const MAX_WAITERS_MAX: u32 = 10_000_000;
static MAX_WAITERS: AtomicU32 = AtomicU32::new(MAX_WAITERS_DEFAULT);

const MAX_POLICIES_DEFAULT: u32 = 1000;
pub const MAX_POLICIES_MAX: u32 = 1_000_000;
static MAX_POLICIES: AtomicU32 = AtomicU32::new(MAX_POLICIES_DEFAULT);

static MAX_LIMITS: AtomicU32 = AtomicU32::new(MAX_LIMITS_DEFAULT);
static MAX_LEASES: AtomicU32 = AtomicU32::new(MAX_LEASES_DEFAULT);

/// Named policies RL.POLICY SET may define.
pub fn max_policies() -> usize {
    MAX_POLICIES.load(Ordering::Relaxed) as usize
}

/// Clients that may wait in line at once.
#[inline]
pub fn max_waiters() -> usize {
    MAX_WAITERS.load(Ordering::Relaxed) as usize
}

/// What limits take from the configuration, as of now.
#[inline]
pub fn settings() -> Settings {
    Settings {
        sliding_max_entries: SLIDING_MAX_ENTRIES.load(Ordering::Relaxed),
        max_limits: MAX_LIMITS.load(Ordering::Relaxed),
        max_leases: MAX_LEASES.load(Ordering::Relaxed),
    }
}

/// A `u32` setting with its bounds, read and written as Redis configs are.
macro_rules! u32_config {
    ($ty:ident, $name:literal, $cell:ident, $default:expr, $min:expr, $max:expr) => {
        struct $ty;

        impl NumericConfig for $ty {
            const NAME: &'static std::ffi::CStr = $name;
            const DEFAULT: i64 = $default as i64;
            const MIN: i64 = $min as i64;
            const MAX: i64 = $max as i64;
            fn get() -> i64 {
                i64::from($cell.load(Ordering::Relaxed))
            }
            fn set(v: i64) -> bool {
                match u32::try_from(v) {
                    Ok(v) if i64::from(v) >= Self::MIN && i64::from(v) <= Self::MAX => {
                        $cell.store(v, Ordering::Relaxed);
                        true
                    }
                    _ => false,
                }
            }
        }
    };
}

u32_config!(
    MaxLimits,
    c"max-limits",
    MAX_LIMITS,
    MAX_LIMITS_DEFAULT,
    1,
    MAX_LIMITS_MAX
);
u32_config!(
    MaxLeases,
    c"max-leases",
    MAX_LEASES,
    MAX_LEASES_DEFAULT,
    1,
    MAX_LEASES_MAX
);

u32_config!(
    SlidingMaxEntries,
    c"sliding-max-entries",
    SLIDING_MAX_ENTRIES,
    SLIDING_MAX_ENTRIES_DEFAULT,
    1,
    SLIDING_MAX_ENTRIES_MAX
);
u32_config!(
    MaxWaiters,
    c"max-waiters",
    MAX_WAITERS,
    MAX_WAITERS_DEFAULT,
    0,
    MAX_WAITERS_MAX
);
u32_config!(
    MaxPolicies,
    c"max-policies",
    MAX_POLICIES,
    MAX_POLICIES_DEFAULT,
    0,
    MAX_POLICIES_MAX
);

/// Registers the configuration and applies values given at load time.
pub fn register(ctx: &Ctx<'_>) -> Result<(), &'static str> {
    if !api::register_numeric_config::<SlidingMaxEntries>(ctx) {
        return Err("cannot register sliding-max-entries");
    }
    if !api::register_numeric_config::<MaxWaiters>(ctx) {
        return Err("cannot register max-waiters");
    }
    if !api::register_numeric_config::<MaxPolicies>(ctx) {
        return Err("cannot register max-policies");
    }
    if !api::register_numeric_config::<MaxLimits>(ctx) {
        return Err("cannot register max-limits");
    }
    if !api::register_numeric_config::<MaxLeases>(ctx) {
        return Err("cannot register max-leases");
    }
    if !ctx.load_configs() {
        return Err("bad configuration value at load time");
    }
    Ok(())
}
