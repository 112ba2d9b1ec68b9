//! What `INFO ratelimit` counts: each command's calls and decisions, and
//! the limiter keys alive.
//!
//! A command's counters are in its own table row ([`Report`]), which the
//! handler hands to the engine and the waiting line with the keyspace event
//! its writes raise: nothing here knows the table, so a row can never go
//! uncounted. Counters are only touched on the server's main thread
//! (commands and INFO both run there), so they are plain relaxed loads and
//! stores, not atomic read-modify-writes. Key counts change when values are
//! created or freed, and Redis may free values on a background thread
//! (FLUSHALL ASYNC, lazy freeing), so those are true atomics.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// What INFO shows for each counted command, in [`Report::values`] order.
pub const LABELS: [&str; 6] = ["calls", "allowed", "denied", "dryruns", "refunds", "errors"];

const CALLS: usize = 0;
const ALLOWED: usize = 1;
const DENIED: usize = 2;
const DRY_RUNS: usize = 3;
const REFUNDS: usize = 4;
const ERRORS: usize = 5;

/// What a command reports as it runs: its decisions, counted for INFO,
/// and the keyspace notification its writes raise (class `d`, module).
#[derive(Debug)]
pub struct Report {
    pub event: &'static CStr,
    counters: [AtomicU64; LABELS.len()],
}

impl Report {
    pub const fn new(event: &'static CStr) -> Report {
        Report {
            event,
            counters: [const { AtomicU64::new(0) }; LABELS.len()],
        }
    }

    #[inline]
    fn bump(&self, field: usize) {
        if let Some(c) = self.counters.get(field) {
            bump(c);
        }
    }

    /// A call reached the command (counted before parsing).
    #[inline]
    pub fn call(&self) {
        self.bump(CALLS);
    }

    /// A decision was made: allowed or denied (dry runs and refunds apart).
    #[inline]
    pub fn decided(&self, allowed: bool, dry_run: bool, refund: bool) {
        self.bump(if dry_run {
            DRY_RUNS
        } else if refund {
            REFUNDS
        } else if allowed {
            ALLOWED
        } else {
            DENIED
        });
    }

    /// The call was answered with an error.
    #[inline]
    pub fn error(&self) {
        self.bump(ERRORS);
    }

    /// The counters, in [`LABELS`] order.
    pub fn values(&self) -> [u64; LABELS.len()] {
        self.counters.each_ref().map(|c| c.load(Ordering::Relaxed))
    }
}

/// Adds one to a counter only the main thread changes (see above): a
/// relaxed load and store, no atomic read-modify-write.
#[inline]
pub fn bump(c: &AtomicU64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Limiter keys alive, by module type.
pub static KEYS_BUCKET: AtomicI64 = AtomicI64::new(0);
pub static KEYS_WINDOW: AtomicI64 = AtomicI64::new(0);
pub static KEYS_FIXED: AtomicI64 = AtomicI64::new(0);
pub static KEYS_LEASES: AtomicI64 = AtomicI64::new(0);
pub static KEYS_LOCKOUT: AtomicI64 = AtomicI64::new(0);

/// The key counts INFO shows: `keys_<name>`.
pub fn keys() -> [(&'static str, u64); 5] {
    let n = |c: &AtomicI64| u64::try_from(c.load(Ordering::Relaxed)).unwrap_or(0);
    [
        ("bucket", n(&KEYS_BUCKET)),
        ("window", n(&KEYS_WINDOW)),
        ("fixed", n(&KEYS_FIXED)),
        ("leases", n(&KEYS_LEASES)),
        ("lockout", n(&KEYS_LOCKOUT)),
    ]
}
