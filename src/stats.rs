//! `INFO ratelimit`: what each command did, and how many limiter keys exist.
//!
//! Command counters are only touched on the server's main thread (commands
//! and INFO both run there), so they are plain relaxed loads and stores, not
//! atomic read-modify-writes. Key counts change when values are created or
//! freed, and Redis may free values on a background thread (FLUSHALL ASYNC,
//! lazy freeing), so those are true atomics.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use redis_module::raw;

use crate::api::rm;

/// The limiter commands, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    TokenBucket = 0,
    Sliding,
    Gcra,
    Fixed,
    All,
    Throttle,
}

const NAMES: [&CStr; 6] = [
    c"tokenbucket",
    c"sliding",
    c"gcra",
    c"fixed",
    c"all",
    c"throttle",
];

/// calls, allowed, denied, dry runs, refunds, errors.
const FIELDS: usize = 6;

struct Counters([[AtomicU64; FIELDS]; 6]);

static COUNTERS: Counters = Counters([const { [const { AtomicU64::new(0) }; FIELDS] }; 6]);

#[inline]
fn bump(cmd: Cmd, field: usize) {
    if let Some(c) = COUNTERS.0.get(cmd as usize).and_then(|row| row.get(field)) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }
}

/// A call reached the command (counted before parsing).
#[inline]
pub fn call(cmd: Cmd) {
    bump(cmd, 0);
}

/// A decision was made: allowed or denied (dry runs and refunds apart).
#[inline]
pub fn decided(cmd: Cmd, allowed: bool, dry_run: bool, refund: bool) {
    if dry_run {
        bump(cmd, 3);
    } else if refund {
        bump(cmd, 4);
    } else {
        bump(cmd, if allowed { 1 } else { 2 });
    }
}

/// The call was answered with an error.
#[inline]
pub fn error(cmd: Cmd) {
    bump(cmd, 5);
}

/// Limiter keys alive, by module type.
pub static KEYS_BUCKET: AtomicI64 = AtomicI64::new(0);
pub static KEYS_WINDOW: AtomicI64 = AtomicI64::new(0);
pub static KEYS_FIXED: AtomicI64 = AtomicI64::new(0);

/// The INFO callback (registered in `RedisModule_OnLoad`).
pub extern "C" fn info(ctx: *mut raw::RedisModuleInfoCtx, _for_crash_report: std::ffi::c_int) {
    rm!(RedisModule_InfoAddSection(ctx, c"".as_ptr()) else 0);
    let field = |name: &[u8], value: u64| {
        // Field names are short ASCII built here: at most 40 bytes plus NUL.
        let mut buf = [0u8; 48];
        let n = name.len().min(buf.len() - 1);
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), name.get(..n)) {
            dst.copy_from_slice(src);
        }
        rm!(RedisModule_InfoAddFieldULongLong(ctx, buf.as_ptr().cast::<c_char>(), value) else 0);
    };
    let labels: [&[u8]; FIELDS] = [
        b"calls", b"allowed", b"denied", b"dryruns", b"refunds", b"errors",
    ];
    for (name, row) in NAMES.iter().zip(COUNTERS.0.iter()) {
        for (label, c) in labels.iter().zip(row.iter()) {
            let mut n = Vec::with_capacity(40);
            n.extend_from_slice(name.to_bytes());
            n.push(b'_');
            n.extend_from_slice(label);
            field(&n, c.load(Ordering::Relaxed));
        }
    }
    let keys = |c: &AtomicI64| u64::try_from(c.load(Ordering::Relaxed)).unwrap_or(0);
    field(b"keys_bucket", keys(&KEYS_BUCKET));
    field(b"keys_window", keys(&KEYS_WINDOW));
    field(b"keys_fixed", keys(&KEYS_FIXED));
}
