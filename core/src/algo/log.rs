//! The compact log of a sliding window's admissions, and its codec.
//!
//! The log keeps one entry per admission instant, in microseconds, as
//! varint-encoded deltas from the previous entry with a run-length count:
//! one to five bytes an entry, proportional to the units still inside the
//! window, never more than one entry per admitted unit. Entries leave the
//! log when they leave the window ([`Update`] and [`Refund`] carry the
//! instant that decides). The same log and the same update give the same
//! bytes on a master and on every replica; [`Log::decode`] validates every
//! byte it is given (RDB, DUMP, replication) and refuses the rest.

use crate::bounds::{MAX_INSTANT_US, MAX_INT, MAX_SPAN_US};
use crate::time::Nanos;

/// Serialization format version (first byte of the encoding).
pub(crate) const FORMAT_V1: u8 = 1;

/// The change an allowed request makes, replicated as it is. Its instants
/// are kept as the log keeps them, in microseconds (the encoding), and read
/// as [`Nanos`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Update {
    /// The decision instant: entries with `t + span <= now` are dropped.
    pub(crate) now_us: u64,
    /// Window length the expiry is measured with.
    pub(crate) span_us: u64,
    /// The instant recorded for the new units (never before the newest entry).
    pub(crate) at_us: u64,
    pub(crate) units: u64,
    /// Merge into the newest entry even if `at_us` is later (the log is full).
    pub(crate) coalesce: bool,
}

/// A refund, replicated as it is: drop what expired by `now`, then take
/// `units` back from the newest entries; or, for a settlement (`from_us`
/// set), from the oldest entries at instants `>= from_us`: the units a
/// reservation made at that instant holds (its own entry, or the later one
/// a full log merged it into), never another admission's older ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    pub(crate) now_us: u64,
    pub(crate) span_us: u64,
    pub(crate) units: u64,
    pub(crate) from_us: Option<u64>,
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

impl Update {
    /// The decision instant.
    pub fn now(&self) -> Nanos {
        Nanos::from_micros(self.now_us)
    }

    /// The units it admits.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// The window's length.
    pub fn span(&self) -> Nanos {
        Nanos::from_micros(self.span_us)
    }

    /// The 33-byte encoding that replication and the AOF carry: the
    /// decision instant, the span, the recorded instant and the units (u64
    /// little-endian, microseconds), then 1 if it coalesces, else 0.
    pub fn encode(&self) -> [u8; 33] {
        let mut out = [0u8; 33];
        out[..8].copy_from_slice(&self.now_us.to_le_bytes());
        out[8..16].copy_from_slice(&self.span_us.to_le_bytes());
        out[16..24].copy_from_slice(&self.at_us.to_le_bytes());
        out[24..32].copy_from_slice(&self.units.to_le_bytes());
        out[32] = u8::from(self.coalesce);
        out
    }

    /// Reads what [`Update::encode`] wrote, within the bounds a command
    /// could have written; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Update> {
        if b.len() != 33 {
            return None;
        }
        Some(Update {
            now_us: u64_at(b, 0).filter(|v| *v <= MAX_INSTANT_US)?,
            span_us: u64_at(b, 8).filter(|v| (1..=MAX_SPAN_US).contains(v))?,
            at_us: u64_at(b, 16).filter(|v| *v <= MAX_INSTANT_US)?,
            // No limit exceeds i64::MAX, so no request carries more units.
            units: u64_at(b, 24).filter(|v| (1..=MAX_INT).contains(v))?,
            coalesce: match b.get(32)? {
                0 => false,
                1 => true,
                _ => return None,
            },
        })
    }
}

impl Refund {
    /// The decision instant.
    pub fn now(&self) -> Nanos {
        Nanos::from_micros(self.now_us)
    }

    /// The window's length.
    pub fn span(&self) -> Nanos {
        Nanos::from_micros(self.span_us)
    }

    /// The units it gives back (at most).
    pub fn units(&self) -> u64 {
        self.units
    }

    /// A settlement's: the instant from which its units are taken back.
    pub fn from(&self) -> Option<Nanos> {
        self.from_us.map(Nanos::from_micros)
    }

    /// The encoding: the decision instant, the span (microseconds) and the
    /// units, u64 little-endian (24 bytes); a settlement's adds the instant
    /// `from` (microseconds): 32 bytes. Both lengths are read back.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        for v in [self.now_us, self.span_us, self.units]
            .into_iter()
            .chain(self.from_us)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads what [`Refund::encode`] wrote; `None` for anything else.
    pub fn decode(b: &[u8]) -> Option<Refund> {
        let from_us = match b.len() {
            24 => None,
            32 => Some(u64_at(b, 24).filter(|v| *v <= MAX_INSTANT_US)?),
            _ => return None,
        };
        Some(Refund {
            now_us: u64_at(b, 0).filter(|v| *v <= MAX_INSTANT_US)?,
            span_us: u64_at(b, 8).filter(|v| (1..=MAX_SPAN_US).contains(v))?,
            units: u64_at(b, 16).filter(|v| *v > 0)?,
            from_us,
        })
    }
}

/// The admission log. An empty log is never stored: the key is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// Instant of the entry at `head`.
    pub(crate) first: u64,
    /// Instant of the newest entry.
    pub(crate) last: u64,
    /// Units in all entries.
    pub(crate) total: u64,
    pub(crate) entries: u32,
    /// Byte offset of the oldest entry; bytes before it are dead.
    pub(crate) head: u32,
    /// Byte offset of the newest entry.
    pub(crate) last_off: u32,
    /// Entries: varint(delta << 1 | has_count) [varint(count >= 2)].
    /// The oldest entry's delta is always 0.
    pub(crate) bytes: Vec<u8>,
}

/// What a scan from the oldest entry found out about expiry at an instant.
pub(crate) struct Expired {
    pub(crate) units: u64,
    pub(crate) entries: u32,
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

    /// Units still in the window when `u` applies: what [`Log::apply`]
    /// keeps before it adds the update's units (as the master counted them).
    pub fn total_before(&self, u: &Update) -> u64 {
        self.total
            .saturating_sub(self.expired_at(u.now_us, u.span_us).units)
    }

    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The newest instant.
    pub fn last(&self) -> Nanos {
        Nanos::from_micros(self.last)
    }

    /// Heap bytes held, for MEMORY USAGE.
    pub fn heap_size(&self) -> usize {
        self.bytes.capacity()
    }

    fn live_bytes(&self) -> &[u8] {
        self.bytes.get(self.head as usize..).unwrap_or(&[])
    }

    /// Visits entries oldest first as (instant, count) until `f` says stop.
    pub(crate) fn walk(&self, mut f: impl FnMut(u64, u64) -> bool) {
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

    pub(crate) fn expired_at(&self, now_us: u64, span_us: u64) -> Expired {
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
    pub(crate) fn entry_list(&self) -> Vec<(u64, u64)> {
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
        match r.from_us {
            None => {
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
            }
            Some(from) => {
                for e in list.iter_mut().filter(|e| e.0 >= from) {
                    let take = e.1.min(left);
                    e.1 -= take;
                    left -= take;
                    if left == 0 {
                        break;
                    }
                }
                list.retain(|e| e.1 > 0);
            }
        }
        self.rebuild(&list);
    }

    /// Units at instants `>= from_us` still in the window at `now_us`.
    pub(crate) fn units_from(&self, from_us: u64, now_us: u64, span_us: u64) -> u64 {
        let mut units = 0u64;
        self.walk(|t, count| {
            if t >= from_us && t.saturating_add(span_us) > now_us {
                units = units.saturating_add(count);
            }
            true
        });
        units
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
                .filter(|t| *t <= crate::bounds::MAX_INT)
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000 * 1_000_000;

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

    #[test]
    fn settlement_refunds_take_from_the_reservations_instant_on() {
        let mut log = Log::default();
        for (t, units) in [(T0, 3), (T0 + 10, 4), (T0 + 20, 5)] {
            log.apply(&Update {
                now_us: t,
                span_us: 1_000,
                at_us: t,
                units,
                coalesce: false,
            });
        }
        assert_eq!(log.units_from(T0 + 10, T0 + 20, 1_000), 9);
        assert_eq!(log.units_from(T0 + 10, T0 + 1_011, 1_000), 5);
        let r = Refund {
            now_us: T0 + 30,
            span_us: 1_000,
            units: 6,
            from_us: Some(T0 + 10),
        };
        // 32 bytes with the instant; the old 24 bytes still read.
        let bytes = r.encode();
        assert_eq!(bytes.len(), 32);
        assert_eq!(Refund::decode(&bytes), Some(r));
        let old = Refund { from_us: None, ..r };
        assert_eq!(old.encode().len(), 24);
        assert_eq!(Refund::decode(&old.encode()), Some(old));
        let mut far = bytes.clone();
        far[24..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Refund::decode(&far), None);
        for cut in [0, 23, 25, 31, 33] {
            let mut b = bytes.clone();
            b.resize(cut, 0);
            assert_eq!(Refund::decode(&b), None, "{cut} bytes");
        }
        // Oldest first from T0 + 10: the 4 there, then 2 of the 5; the
        // older 3 stay.
        let mut settled = log.clone();
        settled.apply_refund(&r);
        assert_eq!(settled.entry_list(), vec![(T0, 3), (T0 + 20, 3)]);
        // A plain refund takes the newest.
        log.apply_refund(&old);
        assert_eq!(log.entry_list(), vec![(T0, 3), (T0 + 10, 3)]);
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

    /// A change to an encoding, applied by [`mutate`].
    #[derive(Debug, Clone)]
    enum Mutation {
        Flip(usize, u8),
        Set(usize, u8),
        Truncate(usize),
        Insert(usize, u8),
        Remove(usize),
        Append(Vec<u8>),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::Flip(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Set(i, v)),
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Insert(i, v)),
            any::<usize>().prop_map(Mutation::Remove),
            prop::collection::vec(any::<u8>(), 1..6).prop_map(Mutation::Append),
        ]
    }

    /// Applies `m` to `b`; positions wrap around the length.
    fn mutate(b: &mut Vec<u8>, m: &Mutation) {
        let at = |i: usize, n: usize| if n == 0 { 0 } else { i % n };
        match m {
            Mutation::Flip(i, bit) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] ^= 1 << bit;
            }
            Mutation::Set(i, v) if !b.is_empty() => {
                let i = at(*i, b.len());
                b[i] = *v;
            }
            Mutation::Truncate(n) => b.truncate(at(*n, b.len())),
            Mutation::Insert(i, v) => b.insert(at(*i, b.len() + 1), *v),
            Mutation::Remove(i) if !b.is_empty() => {
                b.remove(at(*i, b.len()));
            }
            Mutation::Append(more) => b.extend_from_slice(more),
            _ => {}
        }
    }

    /// A real log: admissions at increasing instants (some sharing one),
    /// with counts from 1 to huge, some of them expired and trimmed.
    fn real_log() -> impl Strategy<Value = Log> {
        let step = (
            prop_oneof![Just(0u64), 1u64..1_000, 1u64..(1 << 40)],
            prop_oneof![Just(1u64), 1u64..1_000, Just(crate::bounds::MAX_INT / 16)],
        );
        (
            prop_oneof![Just(T0), 0u64..MAX_INSTANT_US / 2],
            prop::collection::vec(step, 1..12),
            prop_oneof![Just(u64::MAX), 1u64..(1 << 41)],
        )
            .prop_map(|(start, steps, span)| {
                let span = span.min(crate::bounds::MAX_SPAN_US);
                let mut log = Log::default();
                let mut t = start;
                for (gap, units) in steps {
                    t += gap;
                    log.apply(&Update {
                        now_us: t,
                        span_us: span,
                        at_us: t,
                        units,
                        coalesce: false,
                    });
                }
                log
            })
            .prop_filter("not empty", |l| !l.is_empty())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Decoding arbitrary bytes never panics.
        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = Log::decode(&bytes);
        }

        /// Structured inputs: real encodings (version byte, instant and
        /// entries all valid) with up to three mutations, so most inputs
        /// get past the version byte and the first instant into the
        /// entries. A real encoding decodes to its log; whatever decodes is
        /// canonical (it encodes back to the same bytes) and can be decided
        /// on, added to and refunded without panicking.
        #[test]
        fn decode_refuses_or_accepts_mutated_encodings(
            log in real_log(),
            mutations in prop::collection::vec(mutation(), 0..4),
            now in 0u64..MAX_INSTANT_US,
            span in 1u64..crate::bounds::MAX_SPAN_US,
        ) {
            let mut bytes = vec![];
            log.encode(&mut bytes);
            let back = Log::decode(&bytes).unwrap();
            prop_assert_eq!((back.first, back.last, back.total, back.entries), (log.first, log.last, log.total, log.entries));
            for m in &mutations {
                mutate(&mut bytes, m);
            }
            let Ok(mut got) = Log::decode(&bytes) else { return Ok(()) };
            let mut again = vec![];
            got.encode(&mut again);
            prop_assert_eq!(&again, &bytes);
            prop_assert!(got.total <= crate::bounds::MAX_INT && got.last <= MAX_INSTANT_US);
            let w = crate::algo::sliding::Window { limit: crate::bounds::MAX_INT, span: Nanos::from_micros(span), max_entries: 4 };
            let (_, u) = crate::algo::sliding::decide(Some(&got), &w, Nanos::from_micros(now), 3);
            let (_, r) = crate::algo::sliding::refund(Some(&got), &w, Nanos::from_micros(now), 2);
            if let Some(u) = u {
                let mut added = got.clone();
                added.apply(&u);
            }
            if let Some(r) = r {
                got.apply_refund(&r);
            }
        }
    }
}
