//! `INFO ratelimit`: what each counted command did, and how many limiter
//! keys exist.
//!
//! Commands are counted by their row in the command table, under the name
//! the row gives. Counters are only touched on the server's main thread
//! (commands and INFO both run there), so they are plain relaxed loads and
//! stores, not atomic read-modify-writes. Key counts change when values are
//! created or freed, and Redis may free values on a background thread
//! (FLUSHALL ASYNC, lazy freeing), so those are true atomics.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::api::{Info, InfoSource};
use crate::commands::COMMANDS;

/// calls, allowed, denied, dry runs, refunds, errors.
const FIELDS: usize = 6;
const LABELS: [&str; FIELDS] = ["calls", "allowed", "denied", "dryruns", "refunds", "errors"];
/// Rows of the command table: every one can be counted.
const ROWS: usize = COMMANDS.len();

static COUNTERS: [[AtomicU64; FIELDS]; ROWS] =
    [const { [const { AtomicU64::new(0) }; FIELDS] }; ROWS];

#[inline]
fn bump(row: usize, field: usize) {
    if let Some(c) = COUNTERS.get(row).and_then(|r| r.get(field)) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// A call reached command `row` (counted before parsing).
#[inline]
pub fn call(row: usize) {
    bump(row, 0);
}

/// A decision was made: allowed or denied (dry runs and refunds apart).
#[inline]
pub fn decided(row: usize, allowed: bool, dry_run: bool, refund: bool) {
    if dry_run {
        bump(row, 3);
    } else if refund {
        bump(row, 4);
    } else {
        bump(row, if allowed { 1 } else { 2 });
    }
}

/// The call was answered with an error.
#[inline]
pub fn error(row: usize) {
    bump(row, 5);
}

/// Limiter keys alive, by module type.
pub static KEYS_BUCKET: AtomicI64 = AtomicI64::new(0);
pub static KEYS_WINDOW: AtomicI64 = AtomicI64::new(0);
pub static KEYS_FIXED: AtomicI64 = AtomicI64::new(0);
pub static KEYS_LEASES: AtomicI64 = AtomicI64::new(0);
pub static KEYS_LOCKOUT: AtomicI64 = AtomicI64::new(0);

/// The module's INFO section.
pub struct Stats;

impl InfoSource for Stats {
    fn fill(info: &mut Info<'_>) {
        info.section();
        for (row, counters) in COMMANDS.iter().zip(COUNTERS.iter()) {
            let Some(name) = row.counted else { continue };
            for (label, c) in LABELS.iter().zip(counters.iter()) {
                info.field(&format!("{name}_{label}"), c.load(Ordering::Relaxed));
            }
        }
        let keys = |c: &AtomicI64| u64::try_from(c.load(Ordering::Relaxed)).unwrap_or(0);
        info.field("keys_bucket", keys(&KEYS_BUCKET));
        info.field("keys_window", keys(&KEYS_WINDOW));
        info.field("keys_fixed", keys(&KEYS_FIXED));
        info.field("keys_leases", keys(&KEYS_LEASES));
        info.field("keys_lockout", keys(&KEYS_LOCKOUT));
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        info.field("waiters", crate::block::waiters() as u64);
        info.field("waits_started", n(&crate::block::WAITS));
        info.field("waits_admitted", n(&crate::block::ADMITTED));
        info.field("waits_timed_out", n(&crate::block::TIMED_OUT));
        info.field("waits_cancelled", n(&crate::block::CANCELLED));
        info.field("waits_refused", n(&crate::block::REFUSED));
        info.field("policies", crate::policies::count() as u64);
        crate::policies::info(info);
    }
}
