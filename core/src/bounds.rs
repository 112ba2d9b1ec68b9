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

/// The longest policy name (its characters: [`crate::policy::valid_name`]).
pub const MAX_POLICY_NAME: usize = 64;

/// The longest BLOCK: 31 days, in milliseconds (0 waits without limit).
pub const MAX_BLOCK_MS: u64 = 31 * 24 * 3600 * 1000;

/// The longest lease: 10 years, in nanoseconds.
pub const MAX_LEASE_NS: u64 = 10 * YEAR_SECS * 1_000_000_000;

/// Limits one RL.ALL or RL.TAKEALL call may name: the default of the
/// module's `ratelimit.max-limits`, and the most it may be set to. A call
/// with more is refused before any key is read, so one call's cost is
/// bounded by the setting, never by what the caller sends.
pub const MAX_LIMITS_DEFAULT: u32 = 32;
pub const MAX_LIMITS_MAX: u32 = 1000;

/// Live leases one key may hold: the default of `ratelimit.max-leases`
/// (the largest CONCURRENCY limit a command or a policy may name), and the
/// most it may be set to, which is also what a key's state may hold when
/// it is decoded (RDB, RESTORE, replication): a lease key costs at most
/// 16 bytes a lease and O(leases) per call.
pub const MAX_LEASES_DEFAULT: u32 = 10_000;
pub const MAX_LEASES_MAX: u32 = 1_000_000;

/// A key a reservation (RL.ALL ... ESTIMATE) reserves on: at most this
/// many bytes, kept in the reservation's record for the lease's life.
pub const MAX_RESERVED_KEY: usize = 512;

/// A policy definition: at most this many words, each at most this many
/// bytes once written in its canonical form (what GET answers and what
/// persistence and replication carry; the longest real one is about 8
/// words of under 40 bytes).
pub const MAX_POLICY_WORDS: usize = 16;
pub const MAX_POLICY_WORD: usize = 64;

/// The longest decimal argument (a rate, a window, a lease length), in
/// bytes: what a policy word may hold. Reading one costs time linear in
/// its length, so a 500 MB argument of zeros would hold the server for
/// most of a second; integers are at most 20 bytes
/// ([`crate::num::parse_u64`]).
pub const MAX_DECIMAL_LEN: usize = MAX_POLICY_WORD;

/// The longest LOCKOUT: 10 years, in nanoseconds.
pub const MAX_LOCKOUT_NS: u64 = MAX_LEASE_NS;

/// How far ahead of this server's clock a state handed to RESTORE may
/// reach beyond what a command could have written (clock skew between the
/// server that dumped it and this one): one day.
pub const RESTORE_SKEW: Nanos = Nanos::from_secs(24 * 3600);
