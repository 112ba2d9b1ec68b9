//! How effects travel: each effect's internal command and its binary
//! payload, side by side (`RL.SETSTATE key <state>`, `RL.WINDOWADD key
//! <update>`, `RL.WINDOWREFUND key <refund>`, `RL.LEASE key <op>`, or a
//! plain `DEL`). The command table registers these names from here.
//!
//! One compact argument instead of several formatted ones: propagation is a
//! large share of a limiter command's cost, and every argument Redis builds,
//! copies and frees counts. Integers are little-endian; every decoder checks
//! lengths and ranges and refuses anything else.

use std::ffi::CStr;

use redis_ratelimit_core::algo::lease::{Leases, Op};
use redis_ratelimit_core::algo::sliding::Log;
use redis_ratelimit_core::bounds::MAX_INT;
use redis_ratelimit_core::limit::{Effect, Lock};
use redis_ratelimit_core::reserve::{Record, Reservation};
use redis_ratelimit_core::time::Nanos;

use crate::api::{Ctx, Name};

/// A whole state with its absolute expiry.
pub const SETSTATE: &CStr = c"RL.SETSTATE";
/// One admission into a sliding window.
pub const WINDOWADD: &CStr = c"RL.WINDOWADD";
/// A refund to a sliding window.
pub const WINDOWREFUND: &CStr = c"RL.WINDOWREFUND";
/// A lease taken, released or renewed.
pub const LEASE: &CStr = c"RL.LEASE";

const BUCKET: u8 = b'B';
const FIXED: u8 = b'F';
const WINDOW: u8 = b'W';
const LEASES: u8 = b'L';
const LOCKOUT: u8 = b'K';

/// Propagates an effect to replicas and the AOF: the command it travels
/// as and its payload, with absolute times. A lockout travels as the whole
/// lock as written and the key's expiry (`written` reads them).
#[inline]
pub fn replicate<'k>(
    ctx: &Ctx<'_>,
    key: Name<'_>,
    effect: &Effect,
    written: impl FnOnce() -> Option<(&'k Lock, u64)>,
) {
    match effect {
        Effect::None => {}
        Effect::Bucket(tat) => ctx.replicate_blob(SETSTATE, key, &bucket(tat.as_u64())),
        Effect::Fixed { counter, .. } => {
            ctx.replicate_blob(SETSTATE, key, &fixed(counter.count, counter.expiry_ms()));
        }
        Effect::WindowAdd(u) => ctx.replicate_blob(WINDOWADD, key, &u.encode()),
        Effect::WindowRefund(r) => ctx.replicate_blob(WINDOWREFUND, key, &r.encode()),
        Effect::Lease(op) => ctx.replicate_blob(LEASE, key, &lease_op(op)),
        Effect::Reserve(r) => ctx.replicate_blob(LEASE, key, &reservation(r)),
        // The whole lock as written, the limit's state inside it: rare,
        // and a replica then holds exactly what the master holds.
        Effect::Lockout { .. } => {
            if let Some((lock, expire_ms)) = written() {
                ctx.replicate_blob(SETSTATE, key, &lockout(expire_ms, lock));
            }
        }
        Effect::Clear => ctx.replicate_del(key),
    }
}

/// A whole limiter state with what its key's expiry should be, as
/// RL.SETSTATE carries it (and an AOF rewrite writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snapshot {
    /// The full-again instant (ns); the key expires then (rounded up to ms).
    Bucket { tat_ns: u64 },
    /// A count and its window's end (ms), which is the key's expiry; an end
    /// of 0 leaves the expiry to a following PEXPIREAT (AOF rewrite).
    Fixed { count: u64, end_ms: u64 },
    /// A log and the key's expiry (ms; 0 as for `Fixed`).
    Window { expire_ms: u64, log: Log },
    /// Live leases and the key's expiry (ms; 0 as for `Fixed`).
    Leases { expire_ms: u64, leases: Leases },
    /// A lock and the key's expiry (ms; 0 as for `Fixed`).
    Lockout { expire_ms: u64, lock: Lock },
}

impl Snapshot {
    /// The key's expiry this state names (Unix ms; 0 for none).
    pub fn expire_ms(&self) -> u64 {
        match self {
            Snapshot::Bucket { tat_ns } => Nanos::new(*tat_ns).ceil_millis(),
            Snapshot::Fixed { end_ms, .. } => *end_ms,
            Snapshot::Window { expire_ms, .. }
            | Snapshot::Leases { expire_ms, .. }
            | Snapshot::Lockout { expire_ms, .. } => *expire_ms,
        }
    }
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

pub fn bucket(tat_ns: u64) -> [u8; 9] {
    let mut out = [BUCKET; 9];
    out[1..].copy_from_slice(&tat_ns.to_le_bytes());
    out
}

pub fn fixed(count: u64, end_ms: u64) -> [u8; 17] {
    let mut out = [FIXED; 17];
    out[1..9].copy_from_slice(&count.to_le_bytes());
    out[9..].copy_from_slice(&end_ms.to_le_bytes());
    out
}

/// A state of variable length: its tag, the key's expiry, then the state
/// (`len` bytes, written by `encode`).
fn with_expiry(tag: u8, expire_ms: u64, len: usize, encode: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(9 + len);
    out.push(tag);
    out.extend_from_slice(&expire_ms.to_le_bytes());
    encode(&mut out);
    out
}

pub fn window(expire_ms: u64, log: &Log) -> Vec<u8> {
    with_expiry(WINDOW, expire_ms, log.encoded_len(), |out| log.encode(out))
}

pub fn lockout(expire_ms: u64, lock: &Lock) -> Vec<u8> {
    with_expiry(LOCKOUT, expire_ms, lock.encoded_len(), |out| {
        lock.encode(out)
    })
}

pub fn leases(expire_ms: u64, leases: &Leases) -> Vec<u8> {
    with_expiry(LEASES, expire_ms, leases.encoded_len(), |out| {
        leases.encode(out)
    })
}

/// A lease change: `A` acquire, `R` release, `N` renew, then the decision
/// instant, the lease id and (for A and N) its expiry, in nanoseconds.
pub fn lease_op(op: &Op) -> [u8; 25] {
    let (tag, now, id, expires) = match *op {
        Op::Acquire { now, id, expires } => (b'A', now, id, expires),
        Op::Release { now, id } => (b'R', now, id, Nanos::ZERO),
        Op::Renew { now, id, expires } => (b'N', now, id, expires),
    };
    let mut out = [0u8; 25];
    out[0] = tag;
    out[1..9].copy_from_slice(&now.as_u64().to_le_bytes());
    out[9..17].copy_from_slice(&id.to_le_bytes());
    out[17..].copy_from_slice(&expires.as_u64().to_le_bytes());
    out
}

/// A lease taken as a reservation: `V`, then what `A` carries (instant,
/// id, expiry), then the record ([`Record::encode`]). A server that
/// predates reservations refuses it: upgrade replicas first.
pub fn reservation(r: &Reservation) -> Vec<u8> {
    let mut out = Vec::with_capacity(25 + r.record.encoded_len());
    out.extend_from_slice(&lease_op(&r.op));
    if let Some(tag) = out.first_mut() {
        *tag = RESERVE;
    }
    r.record.encode(&mut out);
    out
}

const RESERVE: u8 = b'V';

/// What RL.LEASE carries: a lease op, or a reservation.
pub enum LeaseChange {
    Op(Op),
    Reserve(Box<Reservation>),
}

pub fn decode_lease_change(b: &[u8]) -> Option<LeaseChange> {
    if b.first() != Some(&RESERVE) {
        return decode_lease_op(b).map(LeaseChange::Op);
    }
    let mut head = [0u8; 25];
    head.copy_from_slice(b.get(..25)?);
    head[0] = b'A';
    let op = decode_lease_op(&head)?;
    let mut pos = 25;
    let record = Record::decode(b, &mut pos)?;
    let Op::Acquire { now, .. } = op else {
        return None;
    };
    (pos == b.len() && record.at == now)
        .then(|| LeaseChange::Reserve(Box::new(Reservation { op, record })))
}

pub fn decode_lease_op(b: &[u8]) -> Option<Op> {
    if b.len() != 25 {
        return None;
    }
    let now = Nanos::new(u64_at(b, 1)?);
    let id = u64_at(b, 9).filter(|v| (1..=MAX_INT).contains(v))?;
    let expires = Nanos::new(u64_at(b, 17)?);
    match b.first()? {
        b'A' if expires > now => Some(Op::Acquire { now, id, expires }),
        b'R' if expires == Nanos::ZERO => Some(Op::Release { now, id }),
        b'N' if expires > now => Some(Op::Renew { now, id, expires }),
        _ => None,
    }
}

pub fn decode_state(b: &[u8]) -> Option<Snapshot> {
    match (b.first()?, b.len()) {
        (&BUCKET, 9) => Some(Snapshot::Bucket {
            tat_ns: u64_at(b, 1).filter(|t| *t > 0)?,
        }),
        (&LOCKOUT, n) if n > 9 => Some(Snapshot::Lockout {
            expire_ms: u64_at(b, 1)?,
            lock: Lock::decode(b.get(9..)?)?,
        }),
        (&FIXED, 17) => Some(Snapshot::Fixed {
            count: u64_at(b, 1).filter(|c| *c > 0)?,
            end_ms: u64_at(b, 9)?,
        }),
        (&WINDOW, n) if n > 9 => Some(Snapshot::Window {
            expire_ms: u64_at(b, 1)?,
            log: Log::decode(b.get(9..)?).ok()?,
        }),
        (&LEASES, n) if n > 9 => Some(Snapshot::Leases {
            expire_ms: u64_at(b, 1)?,
            leases: Leases::decode(b.get(9..)?).filter(|l| !l.is_empty())?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redis_ratelimit_core::algo::fixed::Counter;
    use redis_ratelimit_core::algo::sliding::{Refund, Update};
    use redis_ratelimit_core::bounds::{MAX_INSTANT_US, MAX_SPAN_US};
    use redis_ratelimit_core::limit::State as LimitState;

    /// No limit exceeds i64::MAX, so no request carries more units.
    const MAX_UNITS: u64 = MAX_INT;

    /// An update's payload, field by field as the format lays it out
    /// (instants, span and units u64 little-endian, then the coalesce byte).
    fn update_bytes(now_us: u64, span_us: u64, at_us: u64, units: u64, coalesce: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(33);
        for v in [now_us, span_us, at_us, units] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.push(u8::from(coalesce));
        out
    }

    /// A refund's payload, field by field.
    fn refund_bytes(now_us: u64, span_us: u64, units: u64) -> Vec<u8> {
        [now_us, span_us, units]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }

    fn update_of(now_us: u64, span_us: u64, at_us: u64, units: u64) -> Update {
        Update::decode(&update_bytes(now_us, span_us, at_us, units, false)).unwrap()
    }

    #[test]
    fn states_round_trip() {
        assert_eq!(
            decode_state(&bucket(42)),
            Some(Snapshot::Bucket { tat_ns: 42 })
        );
        assert_eq!(
            decode_state(&fixed(3, 99)),
            Some(Snapshot::Fixed {
                count: 3,
                end_ms: 99
            })
        );
        let log = Log::from_update(&update_of(10, 5, 10, 2));
        assert_eq!(
            decode_state(&window(7, &log)),
            Some(Snapshot::Window { expire_ms: 7, log })
        );
    }

    /// The layout replicas and AOF files hold (rule 11): the tag, the
    /// key's expiry (u64 little-endian), then the state's own encoding.
    #[test]
    fn variable_states_are_a_tag_an_expiry_then_the_state() {
        let laid_out = |tag: u8, expire_ms: u64, state: Vec<u8>| {
            let mut b = vec![tag];
            b.extend_from_slice(&expire_ms.to_le_bytes());
            b.extend(state);
            b
        };
        let encoded = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            f(&mut out);
            out
        };
        let log = Log::from_update(&update_of(10, 5, 10, 2));
        let l = leases_of(1 << 40, &[(5, 1 << 30)]);
        let lock = Lock {
            until: Nanos::new(99),
            inner: LimitState::Bucket(Nanos::new(7)),
        };
        let expire = 0x0102_0304_0506_0708;
        assert_eq!(
            window(expire, &log),
            laid_out(b'W', expire, encoded(&|o| log.encode(o)))
        );
        assert_eq!(
            leases(expire, &l),
            laid_out(b'L', expire, encoded(&|o| l.encode(o)))
        );
        assert_eq!(
            lockout(expire, &lock),
            laid_out(b'K', expire, encoded(&|o| lock.encode(o)))
        );
    }

    #[test]
    fn malformed_states_are_refused() {
        for bad in [
            &[][..],
            b"B",
            &bucket(0)[..],
            &bucket(1)[..8],
            &fixed(0, 1)[..],
            &[b'X'; 9],
            &[b'W'; 9],
        ] {
            assert_eq!(decode_state(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn updates_and_refunds_round_trip_and_check_ranges() {
        let b = update_bytes(1, 2, 3, 4, true);
        assert_eq!(&Update::decode(&b).unwrap().encode()[..], &b[..]);
        assert_eq!(Update::decode(&update_bytes(1, 2, 3, 0, true)), None);
        assert_eq!(Update::decode(&update_bytes(1, 0, 3, 4, true)), None);
        let mut bad = b.clone();
        bad[32] = 2;
        assert_eq!(Update::decode(&bad), None);
        let r = refund_bytes(5, 6, 7);
        assert_eq!(&Refund::decode(&r).unwrap().encode()[..], &r[..]);
        assert_eq!(Refund::decode(&refund_bytes(5, 6, 0)), None);
    }

    /// A change to an encoding: flip a bit, overwrite, cut, insert,
    /// remove or append (positions wrap around the length).
    fn mutate(b: &mut Vec<u8>, (kind, i, v): (u8, usize, u8)) {
        let n = b.len();
        match kind % 6 {
            0 if n > 0 => b[i % n] ^= 1 << (v % 8),
            1 if n > 0 => b[i % n] = v,
            2 => b.truncate(i % (n + 1)),
            3 => b.insert(i % (n + 1), v),
            4 if n > 0 => {
                b.remove(i % n);
            }
            5 => b.push(v),
            _ => {}
        }
    }

    /// A real log of one to eight admissions.
    fn log_of(start: u64, gaps: &[(u64, u64)]) -> Log {
        let mut log = Log::default();
        let mut t = start;
        for &(gap, units) in gaps {
            t += gap;
            log.apply(&update_of(t, MAX_SPAN_US, t, units));
        }
        log
    }

    /// Real encodings of every payload: states of each kind, updates and
    /// refunds, with every field from its smallest to its largest value.
    fn encoding() -> impl Strategy<Value = Vec<u8>> {
        let instant = prop_oneof![Just(1u64), 1u64..MAX_INSTANT_US, Just(MAX_INSTANT_US)];
        let units = prop_oneof![Just(1u64), 1u64..1_000, Just(MAX_UNITS)];
        let span = prop_oneof![Just(1u64), 1u64..MAX_SPAN_US, Just(MAX_SPAN_US)];
        let gaps = prop::collection::vec((0u64..1_000_000, 1u64..1_000), 1..8);
        prop_oneof![
            (1u64..u64::MAX).prop_map(|t| bucket(t).to_vec()),
            (1u64..u64::MAX, any::<u64>()).prop_map(|(c, e)| fixed(c, e).to_vec()),
            (any::<u64>(), 0u64..MAX_INSTANT_US / 2, gaps)
                .prop_map(|(e, start, gaps)| window(e, &log_of(start, &gaps))),
            (
                instant.clone(),
                span.clone(),
                instant.clone(),
                units.clone(),
                any::<bool>()
            )
                .prop_map(|(now_us, span_us, at_us, units, coalesce)| {
                    update_bytes(now_us, span_us, at_us, units, coalesce)
                }),
            (instant, span, units)
                .prop_map(|(now_us, span_us, units)| refund_bytes(now_us, span_us, units)),
            (
                any::<u64>(),
                1u64..1 << 62,
                prop::collection::vec((1u64..1_000_000, 1u64..1 << 40), 1..6)
            )
                .prop_map(|(e, start, gaps)| leases(e, &leases_of(start, &gaps))),
            (
                any::<u64>(),
                1u64..u64::MAX,
                0u8..5,
                1u64..u64::MAX,
                any::<u64>(),
                0u64..MAX_INSTANT_US / 2
            )
                .prop_map(|(e, until, inner, a, b, start)| {
                    let inner = match inner {
                        0 => LimitState::Empty,
                        1 => LimitState::Bucket(Nanos::new(a)),
                        // A count as a limit allows: at most i64::MAX.
                        2 => LimitState::Fixed(Counter::from_key((a >> 1).max(1), b)),
                        3 => LimitState::Window(log_of(start, &[(1, 2), (3, 4)])),
                        _ => LimitState::Leases(leases_of(start.max(1), &[(5, 1 << 30)])),
                    };
                    lockout(
                        e,
                        &Lock {
                            until: Nanos::new(until),
                            inner,
                        },
                    )
                }),
            (0u8..3, 1u64..1 << 62, 1u64..MAX_UNITS, 1u64..1 << 40).prop_map(
                |(tag, now, id, lease)| {
                    let (now, expires) = (Nanos::new(now), Nanos::new(now + lease));
                    lease_op(&match tag {
                        0 => Op::Acquire { now, id, expires },
                        1 => Op::Release { now, id },
                        _ => Op::Renew { now, id, expires },
                    })
                    .to_vec()
                }
            ),
        ]
    }

    /// Real leases: acquired one after the other, `gap` ns apart, each for
    /// `lease` ns.
    fn leases_of(start: u64, gaps: &[(u64, u64)]) -> Leases {
        let mut l = Leases::default();
        let mut now = start;
        for (i, &(gap, lease)) in gaps.iter().enumerate() {
            now += gap;
            l.apply(&Op::Acquire {
                now: Nanos::new(now),
                id: now + i as u64,
                expires: Nanos::new(now + lease + (1 << 41)),
            });
        }
        l
    }

    /// A reservation travels as `V`, the acquire and the record; cut
    /// short, with bytes after it, or with a record decided at another
    /// instant than its lease, it is refused.
    #[test]
    fn a_reservation_round_trips_and_nothing_else_decodes() {
        use redis_ratelimit_core::reserve::{Hold, Record, Reservation};
        let now = Nanos::new(1_800_000_000_000_000_000);
        let r = Reservation {
            op: Op::Acquire {
                now,
                id: now.as_u64(),
                expires: now.saturating_add(Nanos::from_secs(30)),
            },
            record: Record {
                at: now,
                holds: vec![Hold {
                    key: b"tokens".to_vec(),
                    words: vec![b"SLIDING".to_vec(), b"100".to_vec(), b"60".to_vec()],
                    estimate: 10,
                    bucket_end: None,
                }],
            },
        };
        let b = reservation(&r);
        assert_eq!(b.len(), 25 + r.record.encoded_len());
        match decode_lease_change(&b) {
            Some(LeaseChange::Reserve(d)) => assert_eq!(*d, r),
            _ => panic!("not decoded"),
        }
        for n in 0..b.len() {
            assert!(decode_lease_change(&b[..n]).is_none(), "{n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode_lease_change(&longer).is_none());
        let mut other_at = r.clone();
        other_at.record.at = now.saturating_add(Nanos::new(1));
        assert!(decode_lease_change(&reservation(&other_at)).is_none());
        // The old payloads still decode as they did.
        assert!(matches!(
            decode_lease_change(&lease_op(&r.op)),
            Some(LeaseChange::Op(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn decoders_never_panic(b in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_state(&b);
            let _ = Update::decode(&b);
            let _ = Refund::decode(&b);
            let _ = decode_lease_op(&b);
            let _ = decode_lease_change(&b);
        }

        /// Structured inputs: real encodings with up to three mutations,
        /// so inputs pass the kind byte and the lengths and reach the range
        /// checks. Whatever a decoder accepts encodes back to the very same
        /// bytes (one encoding per value, as replicas and AOF replays need),
        /// and an unmutated encoding is always accepted.
        #[test]
        fn decoders_refuse_or_round_trip_mutated_encodings(
            mut b in encoding(),
            mutations in prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..4),
        ) {
            let untouched = mutations.is_empty();
            for m in mutations {
                mutate(&mut b, m);
            }
            let state = decode_state(&b);
            let upd = Update::decode(&b);
            let refd = Refund::decode(&b);
            let op = decode_lease_op(&b);
            if untouched {
                prop_assert!(state.is_some() || upd.is_some() || refd.is_some() || op.is_some());
            }
            if let Some(op) = op {
                prop_assert_eq!(&lease_op(&op)[..], &b[..]);
            }
            if let Some(s) = state {
                let again = match &s {
                    Snapshot::Bucket { tat_ns } => bucket(*tat_ns).to_vec(),
                    Snapshot::Fixed { count, end_ms } => fixed(*count, *end_ms).to_vec(),
                    Snapshot::Window { expire_ms, log } => window(*expire_ms, log),
                    Snapshot::Leases { expire_ms, leases: l } => leases(*expire_ms, l),
                    Snapshot::Lockout { expire_ms, lock } => lockout(*expire_ms, lock),
                };
                prop_assert_eq!(&again, &b);
            }
            if let Some(u) = upd {
                prop_assert_eq!(&u.encode()[..], &b[..]);
            }
            if let Some(r) = refd {
                prop_assert_eq!(&r.encode()[..], &b[..]);
            }
        }
    }
}
