//! The bounds every limit lives within, stated once for the module, the
//! client and the tests.

use crate::time::Nanos;

const YEAR_SECS: u64 = 365 * 24 * 3600;

/// The largest integer any argument or reply field holds: Redis integers
/// are signed 64-bit.
pub const MAX_INT: u64 = i64::MAX as u64;

/// The longest refill a bucket may have (limit x interval): 100 years.
pub const MAX_REFILL: Nanos = Nanos::from_secs(100 * YEAR_SECS);

/// The longest sliding or fixed window given as a length: 10 years, in
/// microseconds.
pub const MAX_SPAN_US: u64 = 10 * YEAR_SECS * 1_000_000;

/// Instants above this (about the year 3111) are refused when decoding
/// state: keeps every sum of an instant and a span far from overflow.
pub const MAX_INSTANT_US: u64 = 1 << 55;

/// Window lengths are whole milliseconds.
pub const WINDOW_DECIMALS: i32 = 3;

/// The longest BLOCK: 31 days, in milliseconds (0 waits without limit).
pub const MAX_BLOCK_MS: u64 = 31 * 24 * 3600 * 1000;

/// The longest lease: 10 years, in nanoseconds.
pub const MAX_LEASE_NS: u64 = 10 * YEAR_SECS * 1_000_000_000;
