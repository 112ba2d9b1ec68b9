//! The exact sliding window: a compact log of admissions.
//!
//! A request of `cost` units at `now` is allowed when the units admitted in
//! the last `span` (the half-open interval `(now - span, now]`) plus `cost`
//! stay within `limit`. So no interval of length `span` ever holds more than
//! `limit` admitted units: the fixed-window flaw (19 through in 21 s at
//! 10/min) cannot happen.
//!
//! The log keeps one entry per admission instant, in microseconds, as
//! varint-encoded deltas from the previous entry with a run-length count:
//! one to five bytes an entry, proportional to the units still inside the
//! window, never more than one entry per admitted unit. Past `max_entries`
//! a new admission is merged into the newest entry, whose instant moves
//! forward to now: its units then expire later than they would, so a full
//! log can only under-admit, never over-admit.
//!
//! Deciding never mutates: [`decide`] reads the log and returns an
//! [`Update`]; [`Log::apply`] performs it. The same `Update`, replicated,
//! gives a replica the same bytes.

use super::{Decision, RetryAfter};
use crate::time::Nanos;

/// The longest window: 10 years, in microseconds.
pub const MAX_SPAN_US: u64 = 10 * 365 * 24 * 3600 * 1_000_000;

/// Serialization format version (first byte of the encoding).
const FORMAT_V1: u8 = 1;

/// Instants above this are refused when decoding (year ~3000): keeps every
/// sum of an instant and a span far from overflow.
pub const MAX_INSTANT_US: u64 = 1 << 55;

/// The parameters of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: u64,
    /// Window length in microseconds, `1..=MAX_SPAN_US`.
    pub span_us: u64,
    /// Entries kept before new admissions are merged into the newest one.
    pub max_entries: u32,
}

/// The change an allowed request makes, replicated as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The decision instant: entries with `t + span <= now` are dropped.
    pub now_us: u64,
    /// Window length the expiry is measured with.
    pub span_us: u64,
    /// The instant recorded for the new units (never before the newest entry).
    pub at_us: u64,
    pub units: u64,
    /// Merge into the newest entry even if `at_us` is later (the log is full).
    pub coalesce: bool,
}

/// A refund, replicated as it is: drop what expired by `now_us`, then take
/// `units` back from the newest entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    pub now_us: u64,
    pub span_us: u64,
    pub units: u64,
}

/// The admission log. An empty log is never stored: the key is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// Instant of the entry at `head`.
    first: u64,
    /// Instant of the newest entry.
    last: u64,
    /// Units in all entries.
    total: u64,
    entries: u32,
    /// Byte offset of the oldest entry; bytes before it are dead.
    head: u32,
    /// Byte offset of the newest entry.
    last_off: u32,
    /// Entries: varint(delta << 1 | has_count) [varint(count >= 2)].
    /// The oldest entry's delta is always 0.
    bytes: Vec<u8>,
}

/// What a scan from the oldest entry found out about expiry at an instant.
struct Expired {
    units: u64,
    entries: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    Malformed,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a canonical varint at `*pos`, advancing it.
fn get_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        let low = u64::from(b & 0x7f);
        if shift == 63 && low > 1 {
            return None;
        }
        v |= low << shift;
        if b & 0x80 == 0 {
            // A multi-byte varint ending in a zero byte is not canonical.
            if shift > 0 && b == 0 {
                return None;
            }
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Reads one entry: (delta, count).
fn get_entry(bytes: &[u8], pos: &mut usize) -> Option<(u64, u64)> {
    let head = get_varint(bytes, pos)?;
    let count = if head & 1 == 1 {
        let c = get_varint(bytes, pos)?;
        if c < 2 {
            return None;
        }
        c
    } else {
        1
    };
    Some((head >> 1, count))
}

fn put_entry(out: &mut Vec<u8>, delta: u64, count: u64) {
    if count == 1 {
        put_varint(out, delta << 1);
    } else {
        put_varint(out, (delta << 1) | 1);
        put_varint(out, count);
    }
}

impl Log {
    /// Units in the log (live or not yet trimmed).
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The newest instant, in microseconds.
    pub fn last_us(&self) -> u64 {
        self.last
    }

    /// Heap bytes held, for MEMORY USAGE.
    pub fn heap_size(&self) -> usize {
        self.bytes.capacity()
    }

    fn live_bytes(&self) -> &[u8] {
        self.bytes.get(self.head as usize..).unwrap_or(&[])
    }

    /// Visits entries oldest first as (instant, count) until `f` says stop.
    fn walk(&self, mut f: impl FnMut(u64, u64) -> bool) {
        let bytes = &self.bytes;
        let mut pos = self.head as usize;
        let mut t = self.first;
        let mut first = true;
        while pos < bytes.len() {
            let Some((delta, count)) = get_entry(bytes, &mut pos) else {
                return;
            };
            if !first {
                t = t.saturating_add(delta);
            }
            first = false;
            if !f(t, count) {
                return;
            }
        }
    }

    fn expired_at(&self, now_us: u64, span_us: u64) -> Expired {
        let mut e = Expired {
            units: 0,
            entries: 0,
        };
        if self.entries == 0 || self.first.saturating_add(span_us) > now_us {
            return e;
        }
        self.walk(|t, count| {
            if t.saturating_add(span_us) > now_us {
                return false;
            }
            e.units = e.units.saturating_add(count);
            e.entries += 1;
            true
        });
        e
    }

    /// Applies an allowed request's update. Deterministic: the same log and
    /// update give the same bytes, on the master and on every replica.
    pub fn apply(&mut self, u: &Update) {
        self.trim(u.now_us, u.span_us);
        if u.units == 0 {
            return;
        }
        if self.entries == 0 {
            self.bytes.clear();
            put_entry(&mut self.bytes, 0, u.units);
            self.first = u.at_us;
            self.last = u.at_us;
            self.total = u.units;
            self.entries = 1;
            self.head = 0;
            self.last_off = 0;
            self.shrink();
            return;
        }
        let at = u.at_us.max(self.last);
        if at == self.last || u.coalesce {
            self.rewrite_last(at, u.units);
        } else {
            let delta = at - self.last;
            self.reserve(varint_len(delta << 1) + varint_len(u.units) + 1);
            self.last_off = self.bytes.len() as u32;
            put_entry(&mut self.bytes, delta, u.units);
            self.last = at;
            self.entries += 1;
        }
        self.total = self.total.saturating_add(u.units);
    }

    /// Adds `units` to the newest entry and moves it to `at` (>= its instant).
    fn rewrite_last(&mut self, at: u64, units: u64) {
        let off = self.last_off as usize;
        let mut pos = off;
        let (delta, count) = get_entry(&self.bytes, &mut pos).unwrap_or((0, 1));
        let new_delta = if off == self.head as usize {
            self.first = at;
            0
        } else {
            delta + (at - self.last)
        };
        self.bytes.truncate(off);
        let new_count = count.saturating_add(units);
        self.reserve(varint_len(new_delta << 1) + varint_len(new_count) + 1);
        put_entry(&mut self.bytes, new_delta, new_count);
        self.last = at;
    }

    /// Drops entries with `t + span <= now`; the new oldest entry's delta
    /// is rewritten to 0 in place (its varint's last byte becomes the entry
    /// start), so live bytes are always canonical.
    fn trim(&mut self, now_us: u64, span_us: u64) {
        if self.entries == 0 || self.first.saturating_add(span_us) > now_us {
            return;
        }
        let mut pos = self.head as usize;
        let mut t = self.first;
        let mut first = true;
        loop {
            let start = pos;
            let Some(head) = get_varint(&self.bytes, &mut pos) else {
                break;
            };
            if !first {
                t = t.saturating_add(head >> 1);
            }
            first = false;
            if t.saturating_add(span_us) > now_us {
                // `start..pos` holds this entry's header varint; keep only
                // its last byte, rewritten as delta 0 with the same flag.
                let new_head = pos - 1;
                if let Some(b) = self.bytes.get_mut(new_head) {
                    *b = (head & 1) as u8;
                }
                if start == self.last_off as usize {
                    self.last_off = new_head as u32;
                }
                self.head = new_head as u32;
                self.first = t;
                self.compact();
                return;
            }
            let count = if head & 1 == 1 {
                get_varint(&self.bytes, &mut pos).unwrap_or(1)
            } else {
                1
            };
            self.total = self.total.saturating_sub(count);
            self.entries = self.entries.saturating_sub(1);
            if pos >= self.bytes.len() {
                break;
            }
        }
        // Everything expired.
        self.bytes.clear();
        self.head = 0;
        self.last_off = 0;
        self.entries = 0;
        self.total = 0;
    }

    /// Reclaims dead bytes once they are at least half of the buffer.
    fn compact(&mut self) {
        let head = self.head as usize;
        if head >= 16 && head * 2 >= self.bytes.len() {
            self.bytes.drain(..head);
            self.last_off -= self.head;
            self.head = 0;
            self.shrink();
        }
    }

    fn shrink(&mut self) {
        let len = self.bytes.len();
        if self.bytes.capacity() > 64 && self.bytes.capacity() > 2 * len {
            self.bytes.shrink_to(len + len / 4);
        }
    }

    /// Grows by a quarter at a time: close to the allocator's size classes,
    /// so a log wastes little beyond its live bytes.
    fn reserve(&mut self, extra: usize) {
        let len = self.bytes.len();
        if self.bytes.capacity() - len < extra {
            let grow = extra.max(len / 4).max(8);
            self.bytes.reserve_exact(grow);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entries oldest first, as (instant, count).
    fn entry_list(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::with_capacity(self.entries as usize);
        self.walk(|t, c| {
            out.push((t, c));
            true
        });
        out
    }

    /// Replaces the contents with `list` (instants ascending, counts >= 1).
    fn rebuild(&mut self, list: &[(u64, u64)]) {
        self.bytes.clear();
        self.head = 0;
        self.last_off = 0;
        self.total = 0;
        self.entries = 0;
        let mut prev = None;
        for &(t, c) in list {
            self.last_off = self.bytes.len() as u32;
            put_entry(&mut self.bytes, prev.map_or(0, |p| t - p), c);
            if prev.is_none() {
                self.first = t;
            }
            prev = Some(t);
            self.last = t;
            self.total = self.total.saturating_add(c);
            self.entries += 1;
        }
        self.shrink();
    }

    /// Applies a refund (deterministic, like [`Log::apply`]). Afterwards the
    /// log may be empty: the key is then deleted.
    pub fn apply_refund(&mut self, r: &Refund) {
        self.trim(r.now_us, r.span_us);
        let mut list = self.entry_list();
        let mut left = r.units;
        while left > 0 {
            let Some(last) = list.last_mut() else { break };
            if last.1 > left {
                last.1 -= left;
                left = 0;
            } else {
                left -= last.1;
                list.pop();
            }
        }
        self.rebuild(&list);
    }

    /// The canonical encoding: version, oldest instant, live entry bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.first.to_le_bytes());
        out.extend_from_slice(self.live_bytes());
    }

    pub fn encoded_len(&self) -> usize {
        9 + self.live_bytes().len()
    }

    /// Decodes and validates an encoding; anything malformed is refused.
    pub fn decode(data: &[u8]) -> Result<Log, DecodeError> {
        let bad = DecodeError::Malformed;
        let (&version, rest) = data.split_first().ok_or(bad)?;
        if version != FORMAT_V1 {
            return Err(bad);
        }
        let first_bytes: [u8; 8] = rest.get(..8).ok_or(bad)?.try_into().map_err(|_| bad)?;
        let first = u64::from_le_bytes(first_bytes);
        let body = rest.get(8..).ok_or(bad)?;
        if body.is_empty() || first > MAX_INSTANT_US {
            return Err(bad);
        }
        let mut pos = 0;
        let mut t = first;
        let mut total: u64 = 0;
        let mut entries: u32 = 0;
        let mut last_off = 0;
        while pos < body.len() {
            let start = pos;
            let (delta, count) = get_entry(body, &mut pos).ok_or(bad)?;
            if entries == 0 {
                if delta != 0 {
                    return Err(bad);
                }
            } else {
                if delta == 0 {
                    // Same-instant admissions share one entry.
                    return Err(bad);
                }
                t = t
                    .checked_add(delta)
                    .filter(|t| *t <= MAX_INSTANT_US)
                    .ok_or(bad)?;
            }
            // No limit exceeds i64::MAX, so no real log holds more units.
            total = total
                .checked_add(count)
                .filter(|t| *t <= i64::MAX as u64)
                .ok_or(bad)?;
            entries = entries.checked_add(1).ok_or(bad)?;
            last_off = start;
        }
        Ok(Log {
            first,
            last: t,
            total,
            entries,
            head: 0,
            last_off: u32::try_from(last_off).map_err(|_| bad)?,
            bytes: body.to_vec(),
        })
    }

    /// A log holding just this update's units (a replica that lacks the key).
    pub fn from_update(u: &Update) -> Log {
        let mut log = Log::default();
        log.apply(u);
        log
    }
}

/// Decide on a request of `cost` units at `now_us` against `log` (`None`
/// for a fresh key). Returns the decision and, if allowed with a cost, the
/// update to apply and replicate.
pub fn decide(log: Option<&Log>, w: &Window, now_us: u64, cost: u64) -> (Decision, Option<Update>) {
    let span = w.span_us;
    let (live, live_entries, last) = match log {
        Some(l) => {
            let e = l.expired_at(now_us, span);
            (
                l.total.saturating_sub(e.units),
                l.entries - e.entries.min(l.entries),
                l.last,
            )
        }
        None => (0, 0, 0),
    };
    // Time until the newest live entry leaves the window.
    let reset_us = if live > 0 {
        last.saturating_add(span).saturating_sub(now_us)
    } else {
        0
    };
    let remaining_now = w.limit.saturating_sub(live);
    if cost > w.limit {
        let d = Decision {
            allowed: false,
            limit: w.limit,
            remaining: remaining_now,
            retry_after: RetryAfter::Never,
            reset_after: Nanos::from_micros(reset_us),
        };
        return (d, None);
    }
    if live.saturating_add(cost) <= w.limit {
        if cost == 0 {
            let d = Decision {
                allowed: true,
                limit: w.limit,
                remaining: remaining_now,
                retry_after: RetryAfter::Now,
                reset_after: Nanos::from_micros(reset_us),
            };
            return (d, None);
        }
        // A clock that stepped back records at the newest instant: entries
        // stay in order and old units only expire later.
        let at = if live > 0 { now_us.max(last) } else { now_us };
        let coalesce = live_entries >= w.max_entries.max(1) && at > last;
        let d = Decision {
            allowed: true,
            limit: w.limit,
            remaining: remaining_now - cost,
            retry_after: RetryAfter::Now,
            reset_after: Nanos::from_micros(at.saturating_add(span).saturating_sub(now_us)),
        };
        let u = Update {
            now_us,
            span_us: span,
            at_us: at,
            units: cost,
            coalesce,
        };
        return (d, Some(u));
    }
    // Denied: wait until the oldest live units that cover the excess expire.
    let excess = live.saturating_add(cost) - w.limit;
    let mut wait_us = 0;
    if let Some(l) = log {
        let mut covered = 0u64;
        l.walk(|t, count| {
            if t.saturating_add(span) <= now_us {
                return true;
            }
            covered = covered.saturating_add(count);
            if covered >= excess {
                wait_us = t.saturating_add(span) - now_us;
                return false;
            }
            true
        });
    }
    let d = Decision {
        allowed: false,
        limit: w.limit,
        remaining: remaining_now,
        retry_after: RetryAfter::After(Nanos::from_micros(wait_us)),
        reset_after: Nanos::from_micros(reset_us),
    };
    (d, None)
}

/// Gives `units` back to the window (the work did not happen), taking them
/// from the newest admissions; never beyond an empty window.
pub fn refund(
    log: Option<&Log>,
    w: &Window,
    now_us: u64,
    units: u64,
) -> (Decision, Option<Refund>) {
    let span = w.span_us;
    let mut list = log.map(|l| l.entry_list()).unwrap_or_default();
    list.retain(|&(t, _)| t.saturating_add(span) > now_us);
    let live: u64 = list.iter().map(|&(_, c)| c).sum();
    let mut left = units.min(live);
    let back = left;
    while left > 0 {
        let Some(last) = list.last_mut() else { break };
        let take = last.1.min(left);
        last.1 -= take;
        left -= take;
        if last.1 == 0 {
            list.pop();
        }
    }
    let reset_us = list
        .last()
        .map_or(0, |&(t, _)| t.saturating_add(span).saturating_sub(now_us));
    let d = Decision {
        allowed: true,
        limit: w.limit,
        remaining: w.limit.saturating_sub(live - back),
        retry_after: RetryAfter::Now,
        reset_after: Nanos::from_micros(reset_us),
    };
    let r = (back > 0).then_some(Refund {
        now_us,
        span_us: span,
        units,
    });
    (d, r)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000;
    const SEC: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * SEC;

    fn window(limit: u64, span_us: u64) -> Window {
        Window {
            limit,
            span_us,
            max_entries: u32::MAX,
        }
    }

    /// Rows of `(at_ms, cost, allowed, remaining, retry_ms, reset_ms)`.
    fn replay(w: Window, rows: &[(u64, u64, i64, i64, i64, i64)]) -> Option<Log> {
        let mut log: Option<Log> = None;
        for (i, &(at_ms, cost, allowed, remaining, retry, reset)) in rows.iter().enumerate() {
            let now = T0 + at_ms * MS;
            let (d, u) = decide(log.as_ref(), &w, now, cost);
            let f = d.reply_fields();
            assert_eq!(
                (f[0], f[1], f[2], f[3], f[4]),
                (allowed, w.limit as i64, remaining, retry, reset),
                "row {i}"
            );
            if let Some(u) = u {
                match log.as_mut() {
                    Some(l) => l.apply(&u),
                    None => log = Some(Log::from_update(&u)),
                }
            }
            if let Some(l) = &log {
                let mut enc = vec![];
                l.encode(&mut enc);
                assert_eq!(
                    Log::decode(&enc).map(|d| (d.first, d.last, d.total, d.entries)),
                    Ok((l.first, l.last, l.total, l.entries))
                );
            }
        }
        log
    }

    #[rustfmt::skip]
    #[test]
    fn ten_per_minute_never_lets_nineteen_through() {
        // The fixed-window flaw: 10 at 0:59 and 10 more at 1:00. Here the
        // second burst waits until the first leaves the window.
        replay(window(10, 60 * SEC), &[
            // at ms   cost ok rem retry   reset
            (59_000,   10,  1, 0,  0,      60_000),
            (60_000,   1,   0, 0,  59_000, 59_000),
            (80_000,   1,   0, 0,  39_000, 39_000),
            (118_999,  1,   0, 0,  1,      1),
            (119_000,  1,   1, 9,  0,      60_000),
            (119_000,  0,   1, 9,  0,      60_000),  // a peek
            (119_000,  11,  0, 9,  -1,     60_000),
        ]);
    }

    #[rustfmt::skip]
    #[test]
    fn retry_waits_for_enough_units_to_expire() {
        replay(window(5, SEC), &[
            (0,    2, 1, 3, 0,    1000),
            (100,  2, 1, 1, 0,    1000),
            (200,  1, 1, 0, 0,    1000),
            (300,  3, 0, 0, 800,  900),   // needs the 100 ms entry gone too
            (1000, 3, 0, 2, 100,  200),   // first entry left at 1000
            (1100, 3, 1, 1, 0,    1000),
        ]);
    }

    #[test]
    fn sub_millisecond_times_round_retry_up() {
        let w = window(1, 250 * MS);
        let (_, u) = decide(None, &w, T0 + 300, 1);
        let log = Log::from_update(&u.unwrap());
        let (d, _) = decide(Some(&log), &w, T0 + 1_000, 1);
        // 249.3 ms to wait -> 250 ms
        assert_eq!(d.reply_fields()[3], 250);
        assert!(decide(Some(&log), &w, T0 + 1_000 + 249_300, 1).0.allowed);
        assert!(!decide(Some(&log), &w, T0 + 1_000 + 249_299, 1).0.allowed);
    }

    #[test]
    fn full_log_merges_into_the_newest_entry() {
        let w = Window {
            limit: 100,
            span_us: 10 * SEC,
            max_entries: 3,
        };
        let mut log: Option<Log> = None;
        for i in 0..6u64 {
            let (d, u) = decide(log.as_ref(), &w, T0 + i * SEC, 1);
            assert!(d.allowed);
            let u = u.unwrap();
            assert_eq!(u.coalesce, i >= 3);
            match log.as_mut() {
                Some(l) => l.apply(&u),
                None => log = Some(Log::from_update(&u)),
            }
        }
        let log = log.unwrap();
        assert_eq!((log.entries, log.total, log.last), (3, 6, T0 + 5 * SEC));
        // The merged units expire with the newest instant: later, never earlier.
        let (d, _) = decide(Some(&log), &w, T0 + 12 * SEC, 0);
        assert_eq!(d.remaining, 100 - 4);
    }

    #[test]
    fn refunds_take_back_the_newest_units() {
        let w = window(10, 10 * SEC);
        let mut log = Log::from_update(&decide(None, &w, T0, 2).1.unwrap());
        log.apply(&decide(Some(&log), &w, T0 + SEC, 3).1.unwrap());
        let (d, r) = refund(Some(&log), &w, T0 + 2 * SEC, 4);
        // 1 unit left, from the oldest admission: the window empties at T0 + 10 s.
        assert_eq!(d.reply_fields(), [1, 10, 9, 0, 8_000]);
        log.apply_refund(&r.unwrap());
        assert_eq!((log.total, log.entries, log.last), (1, 1, T0));
        // Over-refunding empties the log, never below.
        let (d, r) = refund(Some(&log), &w, T0 + 2 * SEC, 50);
        assert_eq!(d.reply_fields(), [1, 10, 10, 0, 0]);
        log.apply_refund(&r.unwrap());
        assert!(log.is_empty());
        assert_eq!(refund(None, &w, T0, 1).1, None);
    }

    #[test]
    fn decode_rejects_malformed_bytes() {
        let cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![2],
            vec![FORMAT_V1, 1, 2, 3],
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec()].concat(), // no entries
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec(), vec![2]].concat(), // first delta != 0
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec(), vec![0, 0]].concat(), // delta 0 after first
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec(), vec![1, 1]].concat(), // count 1 flagged
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec(), vec![0x80]].concat(), // truncated varint
            [vec![FORMAT_V1], T0.to_le_bytes().to_vec(), vec![0x80, 0x00]].concat(), // non-canonical
            [vec![FORMAT_V1], u64::MAX.to_le_bytes().to_vec(), vec![0]].concat(), // absurd instant
        ];
        for c in cases {
            assert_eq!(Log::decode(&c), Err(DecodeError::Malformed), "{c:?}");
        }
    }

    /// Found by the RESTORE fuzz: a restored log with u64::MAX units made
    /// the next request overflow (an internal error, not a decision).
    #[test]
    fn absurd_unit_counts_are_refused_and_never_overflow() {
        let mut bytes = vec![FORMAT_V1];
        bytes.extend_from_slice(&(1u64 << 55).to_le_bytes());
        bytes.extend_from_slice(&[
            0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ]);
        assert_eq!(Log::decode(&bytes), Err(DecodeError::Malformed));
        // Even a log built past that bound decides without overflow.
        let mut log = Log::from_update(&Update {
            now_us: 1 << 55,
            span_us: 1,
            at_us: 1 << 55,
            units: u64::MAX,
            coalesce: false,
        });
        log.apply(&Update {
            now_us: 1 << 55,
            span_us: MAX_SPAN_US,
            at_us: 1 << 55,
            units: 5,
            coalesce: false,
        });
        let w = Window {
            limit: i64::MAX as u64,
            span_us: MAX_SPAN_US,
            max_entries: 10,
        };
        let (d, _) = decide(Some(&log), &w, 1 << 55, 3);
        assert!(!d.allowed);
        assert!(
            !decide(Some(&log), &Window { limit: 5, ..w }, 1 << 55, 1)
                .0
                .allowed
        );
    }

    #[test]
    fn decode_accepts_what_encode_writes() {
        let mut bytes = vec![FORMAT_V1];
        bytes.extend_from_slice(&T0.to_le_bytes());
        bytes.extend_from_slice(&[0, 4, 3, 7]);
        let log = Log::decode(&bytes).unwrap();
        assert_eq!(
            (log.first, log.last, log.total, log.entries),
            (T0, T0 + 3, 9, 3)
        );
        let mut again = vec![];
        log.encode(&mut again);
        assert_eq!(again, bytes);
    }

    /// Brute force: every admission ever made, as (instant, units).
    fn oracle_live(admitted: &[(u64, u64)], now: u64, span: u64) -> u64 {
        admitted
            .iter()
            .filter(|&&(t, _)| t + span > now)
            .map(|&(_, c)| c)
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// Decisions match the brute-force window count; no interval of
        /// length `span` ever holds more than `limit`; retry_after is exact;
        /// the encoding round-trips; an update replayed on a copy gives the
        /// same bytes.
        #[test]
        fn matches_brute_force_oracle(
            limit in 1u64..12,
            span_ms in prop_oneof![Just(1u64), 1u64..50, 50u64..5_000],
            steps in prop::collection::vec((prop_oneof![Just(0u64), 0u64..300, 0u64..3_000_000], 0u64..5), 1..80),
        ) {
            let w = window(limit, span_ms * MS);
            let span = w.span_us;
            let mut log: Option<Log> = None;
            let mut replica: Option<Log> = None;
            let mut admitted: Vec<(u64, u64)> = vec![];
            let mut now = T0;
            for (gap, cost) in steps {
                now += gap;
                let (d, u) = decide(log.as_ref(), &w, now, cost);
                let live = oracle_live(&admitted, now, span);
                prop_assert_eq!(d.allowed, cost <= limit && live + cost <= limit);
                prop_assert_eq!(d.remaining, limit.saturating_sub(live) - if d.allowed { cost } else { 0 });
                if !d.allowed && cost <= limit {
                    let ms = d.reply_fields()[3] as u64;
                    // Exact: allowed after ms, not after ms - 1 (no other traffic).
                    prop_assert!(oracle_live(&admitted, now + ms * MS, span) + cost <= limit);
                    prop_assert!(oracle_live(&admitted, now + (ms - 1) * MS, span) + cost > limit);
                }
                if let Some(u) = u {
                    prop_assert!(d.allowed && cost > 0);
                    admitted.push((u.at_us, cost));
                    for l in [&mut log, &mut replica] {
                        match l.as_mut() { Some(l) => l.apply(&u), None => *l = Some(Log::from_update(&u)) }
                    }
                } else {
                    prop_assert!(!d.allowed || cost == 0);
                }
                // Any window [a, a + span) holds at most `limit`.
                for &(a, _) in &admitted {
                    let inside: u64 = admitted.iter().filter(|&&(t, _)| t >= a && t < a + span).map(|&(_, c)| c).sum();
                    prop_assert!(inside <= limit);
                }
                if let (Some(l), Some(r)) = (&log, &replica) {
                    let (mut a, mut b) = (vec![], vec![]);
                    l.encode(&mut a);
                    r.encode(&mut b);
                    prop_assert_eq!(&a, &b);
                    let back = Log::decode(&a).unwrap();
                    prop_assert_eq!((back.first, back.last, back.total, back.entries), (l.first, l.last, l.total, l.entries));
                    prop_assert!(l.entries as u64 <= limit);
                }
            }
        }

        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Log::decode(&bytes);
        }
    }
}
