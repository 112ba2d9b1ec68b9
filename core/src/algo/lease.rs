//! Concurrency leases: at most `limit` in flight, each slot held until it
//! is released or its lease ends.
//!
//! The state is the live leases, each an id and an absolute expiry, and
//! the last id given. Every decision first drops what has expired at `now`,
//! so a crashed holder's slot comes back by itself, with no client and no
//! polling. Ids grow with time (the next id is at least `now` in
//! nanoseconds), so an id is never given twice for a key, even after the
//! key was gone and made again: a late release of an old lease can never
//! free someone else's.
//!
//! Deciding never mutates: the functions return an [`Op`], which
//! [`Leases::apply`] performs, the same on a master and on every replica.

use super::{Answer, RetryAfter};
use crate::bounds::{MAX_INT, MAX_LEASES_MAX, MAX_LEASE_NS};
use crate::reserve::{Record, Reservation};
use crate::time::Nanos;

/// What a lease decision changes, replicated as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Take a slot: lease `id` until `expires`.
    Acquire { now: Nanos, id: u64, expires: Nanos },
    /// Free lease `id`.
    Release { now: Nanos, id: u64 },
    /// Lease `id` now ends at `expires`.
    Renew { now: Nanos, id: u64, expires: Nanos },
}

impl Op {
    pub fn now(&self) -> Nanos {
        match *self {
            Op::Acquire { now, .. } | Op::Release { now, .. } | Op::Renew { now, .. } => now,
        }
    }
}

/// The live leases of one key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leases {
    /// The last id given.
    last_id: u64,
    /// (id, expiry), in the order they were given.
    live: Vec<(u64, Nanos)>,
    /// The reservations among them (crate::reserve): (id, record), in id
    /// order; each id one of `live`'s. Gone with its lease.
    records: Vec<(u64, Record)>,
}

/// The encoding's version (first byte): 1 without reservations (as every
/// release before them wrote), 2 with.
const FORMAT_V1: u8 = 1;
const FORMAT_V2: u8 = 2;

impl Leases {
    /// Leases not yet expired at `now`.
    #[cfg(test)]
    fn live_at(&self, now: Nanos) -> usize {
        self.live.iter().filter(|(_, e)| *e > now).count()
    }

    /// All leases held, expired or not (until the next change drops them).
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// When the last lease ends (the key's expiry), if any.
    pub fn last_expiry(&self) -> Option<Nanos> {
        self.live.iter().map(|(_, e)| *e).max()
    }

    /// Heap bytes held, for MEMORY USAGE.
    pub fn heap_size(&self) -> usize {
        self.live.capacity() * std::mem::size_of::<(u64, Nanos)>()
            + self.records.capacity() * std::mem::size_of::<(u64, Record)>()
            + self
                .records
                .iter()
                .map(|(_, r)| r.heap_size())
                .sum::<usize>()
    }

    /// The record of lease `id`, if it is a reservation (live or not: ask
    /// [`Leases::holds`]).
    pub fn record(&self, id: u64) -> Option<&Record> {
        self.records
            .binary_search_by_key(&id, |(i, _)| *i)
            .ok()
            .and_then(|i| self.records.get(i))
            .map(|(_, r)| r)
    }

    /// Takes a slot as a reservation: the acquire, and its record.
    pub fn reserve(&mut self, r: &Reservation) {
        self.apply(&r.op);
        if let Op::Acquire { id, .. } = r.op {
            if self.live.iter().any(|(i, _)| *i == id) && self.record(id).is_none() {
                self.records.push((id, r.record.clone()));
                self.records.sort_unstable_by_key(|(i, _)| *i);
            }
        }
    }

    /// The state a reservation makes from nothing.
    pub fn from_reservation(r: &Reservation) -> Leases {
        let mut l = Leases::default();
        l.reserve(r);
        l
    }

    /// Could a command on a server whose clock reads `now` have written
    /// these leases? Expiries within the longest lease (plus `skew`), ids
    /// not ahead of the clock by more than `skew` (ids start at `now` in
    /// nanoseconds and grow by one per lease). RESTORE refuses anything
    /// else.
    pub fn plausible(&self, now: Nanos, skew: Nanos) -> bool {
        let horizon = now
            .saturating_add(Nanos::new(MAX_LEASE_NS))
            .saturating_add(skew);
        self.last_id <= now.saturating_add(skew).as_u64()
            && self.live.iter().all(|(_, e)| *e <= horizon)
    }

    /// Is lease `id` live at `now`?
    pub fn holds(&self, id: u64, now: Nanos) -> bool {
        self.live.iter().any(|(i, e)| *i == id && *e > now)
    }

    fn trim(&mut self, now: Nanos) {
        self.live.retain(|(_, e)| *e > now);
    }

    /// Performs a decided change: drops what expired at its instant, then
    /// applies it. Deterministic.
    pub fn apply(&mut self, op: &Op) {
        self.trim(op.now());
        match *op {
            Op::Acquire { id, expires, .. } => {
                self.last_id = self.last_id.max(id);
                self.live.push((id, expires));
            }
            Op::Release { id, .. } => self.live.retain(|(i, _)| *i != id),
            Op::Renew { id, expires, .. } => {
                for l in self.live.iter_mut().filter(|(i, _)| *i == id) {
                    l.1 = expires;
                }
            }
        }
        if !self.records.is_empty() {
            // A record goes with its lease (released, settled or expired).
            let live = &self.live;
            self.records
                .retain(|(id, _)| live.binary_search_by_key(id, |(i, _)| *i).is_ok());
        }
        if self.live.capacity() > 2 * self.live.len() + 8 {
            self.live.shrink_to_fit();
        }
    }

    /// The state an op makes from nothing (a replica that lacks the key).
    pub fn from_op(op: &Op) -> Leases {
        let mut l = Leases::default();
        l.apply(op);
        l
    }

    /// Version, last id, count, then (id, expiry ns) pairs, little-endian.
    /// With reservations (version 2), then the count of records (u64) and
    /// each one's lease id (u64) and [`Record::encode`].
    pub fn encode(&self, out: &mut Vec<u8>) {
        let version = if self.records.is_empty() {
            FORMAT_V1
        } else {
            FORMAT_V2
        };
        out.push(version);
        out.extend_from_slice(&self.last_id.to_le_bytes());
        out.extend_from_slice(&(self.live.len() as u64).to_le_bytes());
        for (id, e) in &self.live {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&e.as_u64().to_le_bytes());
        }
        if !self.records.is_empty() {
            out.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
            for (id, r) in &self.records {
                out.extend_from_slice(&id.to_le_bytes());
                r.encode(out);
            }
        }
    }

    pub fn encoded_len(&self) -> usize {
        let records = if self.records.is_empty() {
            0
        } else {
            8 + self
                .records
                .iter()
                .map(|(_, r)| 8 + r.encoded_len())
                .sum::<usize>()
        };
        17 + 16 * self.live.len() + records
    }

    /// Decodes and validates, in time linear in the leases: at most
    /// [`MAX_LEASES_MAX`] of them, ids positive, strictly increasing (the
    /// order they were given in) and at most the last id, which is at most
    /// `i64::MAX` (a reply field); expiries positive. Anything else is
    /// refused, so whatever loads is what [`acquire`] and [`Leases::apply`]
    /// could have made, and saves and loads again.
    pub fn decode(b: &[u8]) -> Option<Leases> {
        let u64_at = |at: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                b.get(at..at.checked_add(8)?)?.try_into().ok()?,
            ))
        };
        let version = *b.first()?;
        if version != FORMAT_V1 && version != FORMAT_V2 {
            return None;
        }
        let last_id = u64_at(1)?;
        let n = usize::try_from(u64_at(9)?).ok()?;
        let leases_end = n.checked_mul(16)?.checked_add(17)?;
        let sized = match version {
            FORMAT_V1 => b.len() == leases_end,
            _ => b.len() > leases_end,
        };
        if last_id > MAX_INT || n > MAX_LEASES_MAX as usize || !sized {
            return None;
        }
        let mut live = Vec::with_capacity(n);
        let mut previous = 0;
        for i in 0..n {
            let at = 17 + 16 * i;
            let (id, e) = (u64_at(at)?, u64_at(at + 8)?);
            if id <= previous || id > last_id || e == 0 {
                return None;
            }
            previous = id;
            live.push((id, Nanos::new(e)));
        }
        let records = match version {
            FORMAT_V1 => Vec::new(),
            _ => decode_records(b, leases_end, &live)?,
        };
        Some(Leases {
            last_id,
            live,
            records,
        })
    }
}

/// Version 2's records, from `start` to the end of `b`: at least one, each
/// a live lease's (ids increasing), each record valid
/// ([`Record::decode`]).
fn decode_records(b: &[u8], start: usize, live: &[(u64, Nanos)]) -> Option<Vec<(u64, Record)>> {
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            b.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let n = usize::try_from(u64_at(start)?).ok()?;
    if n == 0 || n > live.len() {
        return None;
    }
    let mut pos = start + 8;
    let mut records = Vec::with_capacity(n);
    let mut previous = 0;
    for _ in 0..n {
        let id = u64_at(pos)?;
        pos += 8;
        if id <= previous || live.binary_search_by_key(&id, |(i, _)| *i).is_err() {
            return None;
        }
        previous = id;
        records.push((id, Record::decode(b, &mut pos)?));
    }
    (pos == b.len()).then_some(records)
}

/// A lease limit: `limit` slots, each leased for `lease`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concurrency {
    pub limit: u64,
    pub lease: Nanos,
}

/// The decision on taking a slot at `now`, and the op that takes it.
/// The reply's fields: `remaining` free slots after this call;
/// `retry_after` when the earliest lease ends (a release may come
/// sooner), or, with more leases live than the limit (it was lowered),
/// when enough of them have ended for one slot to be free; `reset_after`
/// when all leases end.
pub fn acquire(state: Option<&Leases>, c: &Concurrency, now: Nanos) -> (Answer, Option<Op>) {
    let live = |e: &Nanos| *e > now;
    let (held, earliest, last, last_id) = match state {
        Some(s) => (
            s.live.iter().filter(|(_, e)| live(e)).count() as u64,
            s.live.iter().map(|(_, e)| *e).filter(live).min(),
            s.live.iter().map(|(_, e)| *e).filter(live).max(),
            s.last_id,
        ),
        None => (0, None, None, 0),
    };
    let until = |t: Option<Nanos>| t.map_or(Nanos::ZERO, |t| t.saturating_sub(now));
    // Ids grow with time: never one given before, even to a key that
    // expired in between. Past i64::MAX (a reply field) there is none to
    // give: the key takes no lease until its last one ends and it is gone.
    let next_id = last_id
        .checked_add(1)
        .map(|i| i.max(now.as_u64()))
        .filter(|i| *i <= MAX_INT);
    if let (true, Some(id)) = (held < c.limit, next_id) {
        let expires = now.saturating_add(c.lease);
        let d = Answer {
            allowed: true,
            limit: c.limit,
            remaining: c.limit - held - 1,
            retry_after: RetryAfter::Now,
            reset_after: until(last.max(Some(expires))),
        };
        return (d, Some(Op::Acquire { now, id, expires }));
    }
    // Over the limit: a slot is free once `held - limit + 1` leases ended.
    let earliest = match state {
        Some(s) if held > c.limit => {
            let mut ends: Vec<Nanos> = s.live.iter().map(|(_, e)| *e).filter(live).collect();
            // The (held - limit + 1)-th earliest end: index held - limit.
            let nth = usize::try_from(held - c.limit).unwrap_or(usize::MAX);
            if nth < ends.len() {
                let (_, t, _) = ends.select_nth_unstable(nth);
                Some(*t)
            } else {
                last
            }
        }
        _ => earliest,
    };
    let d = Answer {
        allowed: false,
        limit: c.limit,
        remaining: 0,
        // Out of ids: a fresh key starts again once every lease has ended.
        retry_after: match (next_id, earliest, last) {
            (Some(_), Some(t), _) | (None, _, Some(t)) => RetryAfter::After(t.saturating_sub(now)),
            _ => RetryAfter::Never,
        },
        reset_after: until(last),
    };
    (d, None)
}

/// Frees lease `id` if it is live at `now`.
pub fn release(state: Option<&Leases>, id: u64, now: Nanos) -> Option<Op> {
    state
        .filter(|s| s.holds(id, now))
        .map(|_| Op::Release { now, id })
}

/// Extends lease `id` to `now + lease` if it is live at `now`.
pub fn renew(state: Option<&Leases>, id: u64, lease: Nanos, now: Nanos) -> Option<Op> {
    state.filter(|s| s.holds(id, now)).map(|_| Op::Renew {
        now,
        id,
        expires: now.saturating_add(lease),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * SEC;

    fn at(s: f64) -> Nanos {
        Nanos::new(T0 + (s * SEC as f64) as u64)
    }

    #[test]
    fn slots_are_taken_released_renewed_and_come_back_at_expiry() {
        let c = Concurrency {
            limit: 2,
            lease: Nanos::from_secs(10),
        };
        let mut s = Leases::default();
        let (d, a) = acquire(Some(&s), &c, at(0.0));
        assert!(d.allowed && d.remaining == 1);
        let a = a.unwrap();
        s.apply(&a);
        let (d, b) = acquire(Some(&s), &c, at(1.0));
        assert!(d.allowed && d.remaining == 0);
        s.apply(&b.unwrap());
        let (d, none) = acquire(Some(&s), &c, at(2.0));
        assert!(!d.allowed && none.is_none());
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(8)));
        assert_eq!(d.reset_after, Nanos::from_secs(9));
        let Op::Acquire { id, .. } = a else { panic!() };
        // Renewing the first moves the earliest end to the second's.
        s.apply(&renew(Some(&s), id, Nanos::from_secs(20), at(2.0)).unwrap());
        let (d, _) = acquire(Some(&s), &c, at(3.0));
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(8)));
        // Released: free again; a second release finds nothing.
        s.apply(&release(Some(&s), id, at(3.0)).unwrap());
        assert!(release(Some(&s), id, at(3.0)).is_none());
        assert!(acquire(Some(&s), &c, at(3.0)).0.allowed);
        // The other expires by itself at 11 s.
        assert_eq!(s.live_at(at(11.0)), 0);
        assert!(renew(Some(&s), 12345, Nanos::from_secs(1), at(3.0)).is_none());
    }

    /// A limit lowered under live leases (5 live, limit 2): the retry is
    /// when the fourth of them ends (then 1 is live and a slot is free),
    /// not the first (then 4 are live, still over the limit).
    #[test]
    fn over_a_lowered_limit_the_retry_waits_for_enough_leases_to_end() {
        let five = Concurrency {
            limit: 5,
            lease: Nanos::from_secs(10),
        };
        let mut leases: Option<Leases> = None;
        for i in 0..5 {
            let (d, op) = acquire(leases.as_ref(), &five, at(f64::from(i)));
            assert!(d.allowed);
            let op = op.unwrap();
            match leases.as_mut() {
                Some(l) => l.apply(&op),
                None => leases = Some(Leases::from_op(&op)),
            }
        }
        let two = Concurrency { limit: 2, ..five };
        let now = at(5.0);
        let (d, _) = acquire(leases.as_ref(), &two, now);
        assert_eq!((d.allowed, d.remaining), (false, 0));
        // Leases end at 10, 11, 12, 13, 14 s: the fourth at 13 s.
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(8)));
        assert!(!acquire(leases.as_ref(), &two, at(12.999)).0.allowed);
        assert!(acquire(leases.as_ref(), &two, at(13.0)).0.allowed);
        // At the limit exactly: the earliest end, as before.
        let (d, _) = acquire(leases.as_ref(), &five, now);
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(5)));
    }

    #[test]
    fn ids_grow_with_time_and_never_repeat() {
        let c = Concurrency {
            limit: 10,
            lease: Nanos::from_secs(1),
        };
        let (_, op) = acquire(None, &c, at(0.0));
        let Some(Op::Acquire { id: first, .. }) = op else {
            panic!()
        };
        let mut s = Leases::from_op(&op.unwrap());
        let (_, op) = acquire(Some(&s), &c, at(0.0));
        let Some(Op::Acquire { id: second, .. }) = op else {
            panic!()
        };
        assert!(second > first);
        s.apply(&op.unwrap());
        // The key gone and made again later: later ids still.
        let (_, op) = acquire(None, &c, at(5.0));
        let Some(Op::Acquire { id: third, .. }) = op else {
            panic!()
        };
        assert!(third > second);
    }

    #[test]
    fn a_key_out_of_ids_gives_no_lease_and_never_repeats_one() {
        // A forged state whose last id is the largest a reply can carry:
        // acquiring used to hand out that id again (saturating), twice.
        let c = Concurrency {
            limit: 10,
            lease: Nanos::from_secs(5),
        };
        let mut b = vec![FORMAT_V1];
        b.extend_from_slice(&MAX_INT.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&MAX_INT.to_le_bytes());
        b.extend_from_slice(&at(30.0).as_u64().to_le_bytes());
        let s = Leases::decode(&b).expect("the largest id is valid");
        let (d, op) = acquire(Some(&s), &c, at(0.0));
        assert!(!d.allowed && op.is_none(), "{d:?} {op:?}");
        // It can take one again once the key is gone (when its lease ends).
        assert_eq!(d.retry_after, RetryAfter::After(Nanos::from_secs(30)));
        // Past i64::MAX the state is refused.
        b[1..9].copy_from_slice(&(MAX_INT + 1).to_le_bytes());
        assert!(Leases::decode(&b).is_none());
    }

    #[test]
    fn decode_takes_ids_in_the_order_they_were_given_only() {
        let pair = |id: u64| [id.to_le_bytes(), at(9.0).as_u64().to_le_bytes()].concat();
        let encoded = |ids: &[u64]| {
            let mut b = vec![FORMAT_V1];
            b.extend_from_slice(&10u64.to_le_bytes());
            b.extend_from_slice(&(ids.len() as u64).to_le_bytes());
            for id in ids {
                b.extend_from_slice(&pair(*id));
            }
            b
        };
        assert!(Leases::decode(&encoded(&[1, 2, 7])).is_some());
        assert!(Leases::decode(&encoded(&[2, 1])).is_none());
        assert!(Leases::decode(&encoded(&[2, 2])).is_none());
        assert!(Leases::decode(&encoded(&[3, 11])).is_none());
        // A million and one leases are refused by their count alone.
        let mut b = vec![FORMAT_V1];
        b.extend_from_slice(&10u64.to_le_bytes());
        b.extend_from_slice(&(u64::from(MAX_LEASES_MAX) + 1).to_le_bytes());
        assert!(Leases::decode(&b).is_none());
    }

    #[test]
    fn plausible_leases_are_what_a_clock_near_now_could_write() {
        let c = Concurrency {
            limit: 3,
            lease: Nanos::new(MAX_LEASE_NS),
        };
        let (_, op) = acquire(None, &c, at(0.0));
        let s = Leases::from_op(&op.unwrap());
        let skew = Nanos::from_secs(60);
        assert!(s.plausible(at(0.0), skew));
        // Dumped by a server a minute ahead: still within the skew.
        let before = |secs: u64| at(0.0).saturating_sub(Nanos::from_secs(secs));
        assert!(s.plausible(before(59), skew));
        assert!(!s.plausible(before(61), skew));
    }

    #[test]
    fn decode_refuses_what_encode_never_writes() {
        let mut s = Leases::default();
        let c = Concurrency {
            limit: 3,
            lease: Nanos::from_secs(5),
        };
        for i in 0..3 {
            let (_, op) = acquire(Some(&s), &c, at(f64::from(i)));
            s.apply(&op.unwrap());
        }
        let mut b = Vec::new();
        s.encode(&mut b);
        assert_eq!(b.len(), s.encoded_len());
        assert_eq!(Leases::decode(&b), Some(s.clone()));
        let mut bad_version = b.clone();
        bad_version[0] = 2;
        let mut short = b.clone();
        short.pop();
        let mut dup = b.clone();
        dup.copy_within(17..25, 33); // second id = first id
        let mut zero_exp = b.clone();
        zero_exp[25..33].fill(0);
        let mut past_last = b.clone();
        past_last[1..9].copy_from_slice(&1u64.to_le_bytes());
        for bad in [
            bad_version,
            short,
            dup,
            zero_exp,
            past_last,
            vec![],
            vec![1],
        ] {
            assert_eq!(Leases::decode(&bad), None, "{bad:?}");
        }
    }

    /// A step of the property test: time passes, then an op by a holder.
    #[derive(Debug, Clone)]
    enum Step {
        Acquire,
        Release(usize),
        Renew(usize, u64),
    }

    fn step() -> impl Strategy<Value = (u64, Step)> {
        (
            0u64..3 * SEC,
            prop_oneof![
                Just(Step::Acquire),
                (0usize..8).prop_map(Step::Release),
                (0usize..8, 1u64..5 * SEC).prop_map(|(i, l)| Step::Renew(i, l)),
            ],
        )
    }

    proptest! {
        /// Against a brute-force oracle holding every lease ever given
        /// (start, end, released): the decision, the free slots, the wait
        /// and the state all agree, and no instant ever has more than
        /// `limit` leases live.
        #[test]
        fn matches_a_brute_force_oracle(
            limit in 1u64..5,
            lease_ms in 1u64..4_000,
            steps in prop::collection::vec(step(), 1..120),
        ) {
            let c = Concurrency { limit, lease: Nanos::from_millis(lease_ms) };
            let mut s = Leases::default();
            // id -> (start, end)
            let mut oracle: Vec<(u64, u64, u64)> = Vec::new();
            let mut given: Vec<u64> = Vec::new();
            let mut now = T0;
            for (gap, st) in steps {
                now += gap;
                let t = Nanos::new(now);
                let live: Vec<&(u64, u64, u64)> = oracle.iter().filter(|(_, _, e)| *e > now).collect();
                match st {
                    Step::Acquire => {
                        let (d, op) = acquire(Some(&s), &c, t);
                        prop_assert_eq!(d.allowed, (live.len() as u64) < limit);
                        if d.allowed {
                            prop_assert_eq!(d.remaining, limit - live.len() as u64 - 1);
                            let Some(Op::Acquire { id, expires, .. }) = op else { panic!() };
                            prop_assert!(!given.contains(&id));
                            prop_assert_eq!(expires.as_u64(), now + lease_ms * 1_000_000);
                            given.push(id);
                            oracle.push((id, now, expires.as_u64()));
                            s.apply(&op.unwrap());
                        } else {
                            let earliest = live.iter().map(|l| l.2).min().unwrap();
                            prop_assert_eq!(d.retry_after, RetryAfter::After(Nanos::new(earliest - now)));
                            prop_assert!(op.is_none());
                        }
                    }
                    Step::Release(i) => {
                        let Some(&id) = given.get(i) else { continue };
                        let was_live = oracle.iter().any(|(x, _, e)| *x == id && *e > now);
                        let op = release(Some(&s), id, t);
                        prop_assert_eq!(op.is_some(), was_live);
                        if let Some(op) = op {
                            s.apply(&op);
                            for l in oracle.iter_mut().filter(|l| l.0 == id) {
                                l.2 = now;
                            }
                        }
                    }
                    Step::Renew(i, lease) => {
                        let Some(&id) = given.get(i) else { continue };
                        let was_live = oracle.iter().any(|(x, _, e)| *x == id && *e > now);
                        let op = renew(Some(&s), id, Nanos::new(lease), t);
                        prop_assert_eq!(op.is_some(), was_live);
                        if let Some(op) = op {
                            s.apply(&op);
                            for l in oracle.iter_mut().filter(|l| l.0 == id) {
                                l.2 = now + lease;
                            }
                        }
                    }
                }
                // The state holds exactly the oracle's live leases.
                let mut mine: Vec<(u64, u64)> = s.live.iter().filter(|(_, e)| e.as_u64() > now).map(|(i, e)| (*i, e.as_u64())).collect();
                let mut theirs: Vec<(u64, u64)> = oracle.iter().filter(|(_, _, e)| *e > now).map(|(i, _, e)| (*i, *e)).collect();
                mine.sort_unstable();
                theirs.sort_unstable();
                prop_assert_eq!(mine, theirs);
                // Never more than `limit` live at any instant so far.
                let mut edges: Vec<u64> = oracle.iter().map(|l| l.1).collect();
                edges.sort_unstable();
                for e in edges {
                    let at_e = oracle.iter().filter(|(_, st, en)| *st <= e && e < *en).count();
                    prop_assert!(at_e as u64 <= limit);
                }
                // The encoding round-trips.
                let mut b = Vec::new();
                s.encode(&mut b);
                prop_assert_eq!(Leases::decode(&b), Some(s.clone()));
            }
        }
    }
}
