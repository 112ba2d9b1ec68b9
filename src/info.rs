//! `INFO ratelimit`: each counted command's calls and decisions (from its
//! table row), the limiter keys alive, the waiting line, whose GCRA
//! command runs, and each named policy's counters. Read from the layers below; nothing reads back.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::api::{Info, InfoSource};
use crate::commands::{self, COMMANDS, REPORTS};
use crate::{block, policies, stats};

/// The module's INFO section.
pub struct Section;

impl InfoSource for Section {
    fn fill(info: &mut Info<'_>) {
        info.section();
        for (row, report) in COMMANDS.iter().zip(REPORTS.iter()) {
            let Some(name) = row.counted else { continue };
            for (label, n) in stats::LABELS.iter().zip(report.values()) {
                info.field(&format!("{name}_{label}"), n);
            }
        }
        for (kind, n) in stats::keys() {
            info.field(&format!("keys_{kind}"), n);
        }
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        info.field("waiters", block::waiters() as u64);
        info.field("waits_started", n(&block::WAITS));
        info.field("waits_admitted", n(&block::ADMITTED));
        info.field("waits_timed_out", n(&block::TIMED_OUT));
        info.field("waits_cancelled", n(&block::CANCELLED));
        info.field("waits_refused", n(&block::REFUSED));
        // Which GCRA runs: 1 this module's, 0 the server's own (`yields`).
        // A number, as every field of the section (parsers expect them).
        for (i, row) in COMMANDS.iter().enumerate().filter(|(_, r)| r.yields) {
            let name = row.name.to_string_lossy().to_ascii_lowercase();
            let ours = u64::from(commands::registered(i));
            info.field(&format!("{name}_registered"), ours);
        }
        info.field("policies", policies::count() as u64);
        policies::info(info);
    }
}
