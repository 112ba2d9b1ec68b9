//! Reservations: what a lease holds when it is the handle of units
//! reserved at admission and settled later (RL.ALL ... ESTIMATE n, then
//! RL.SETTLE).
//!
//! A reservation is a CONCURRENCY lease with a [`Record`]: the instant it
//! was decided (`at`), and per limit it reserved on ([`Hold`]): the key,
//! the limit's definition in canonical words (as decided then: a policy's
//! definition, not its name, so a settlement chooses no limit), the
//! estimate charged, and where that charge ended in a bucket. The record
//! lives and dies with its lease: released or settled, it goes; expired
//! (the caller died), it goes with no write, and the estimate stays
//! charged ("settled at its estimate").
//!
//! Everything here is bounded as the commands bound it, and the decoder
//! checks the same bounds: at most [`MAX_LIMITS_MAX`] holds, a key of at
//! most [`MAX_RESERVED_KEY`] bytes, a definition of at most
//! [`MAX_POLICY_WORDS`] words of [`MAX_POLICY_WORD`] bytes that reads as a
//! rate limit, an estimate of at most i64::MAX.

use crate::algo::calendar::Calendar;
use crate::algo::lease::Op;
use crate::bounds::{MAX_INT, MAX_LIMITS_MAX, MAX_POLICY_WORD, MAX_POLICY_WORDS, MAX_RESERVED_KEY};
use crate::error::{self, CmdError};
use crate::grammar::{algorithm, read_definition, Settings};
use crate::limit::{Effect, Spec};
use crate::num::Decimal;
use crate::render::{Arg, LimitArgs};
use crate::settle::Held;
use crate::time::Nanos;

/// What a reservation holds on one limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The limit's key.
    pub key: Vec<u8>,
    /// The limit's definition, canonical ([`definition`]).
    pub words: Vec<Vec<u8>>,
    /// Units charged at the reservation.
    pub estimate: u64,
    /// A bucket's full-again instant as the charge wrote it
    /// ([`Held::bucket_end`]).
    pub bucket_end: Option<Nanos>,
}

impl Hold {
    /// The limit, read back from its words (`settings`: the server's).
    pub fn spec(&self, settings: Settings) -> Result<Spec, CmdError> {
        read_spec(&self.words, settings)
    }

    /// What the settlement rules need of it.
    pub fn held(&self, at: Nanos) -> Held {
        Held {
            at,
            estimate: self.estimate,
            bucket_end: self.bucket_end,
        }
    }
}

/// A reservation's record, kept in its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The reservation's decision instant (its lease's acquire instant).
    pub at: Nanos,
    pub holds: Vec<Hold>,
}

/// A lease taken as a reservation: the acquire, with its record. The
/// effect an RL.ALL with ESTIMATE clauses writes on its CONCURRENCY key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// An [`Op::Acquire`].
    pub op: Op,
    pub record: Record,
}

impl Reservation {
    /// The lease id (the handle).
    pub fn id(&self) -> u64 {
        match self.op {
            Op::Acquire { id, .. } | Op::Release { id, .. } | Op::Renew { id, .. } => id,
        }
    }
}

/// One clause of a reservation, as the engine knows it after deciding:
/// its key, its limit, its estimate, and the effect its charge writes.
pub struct Planned<'a> {
    pub key: &'a [u8],
    pub spec: &'a Spec,
    pub estimate: u64,
    pub effect: &'a Effect,
}

/// One limit of an admitted call that reserves: its key, its limit, its
/// estimate (`None`: an ordinary clause), and the effect deciding it wrote.
pub struct Admitted<'a> {
    pub key: &'a [u8],
    pub spec: &'a Spec,
    pub estimate: Option<u64>,
    pub effect: &'a Effect,
}

/// The writes of an admitted call that reserves, at `at`, one per limit:
/// an ESTIMATE clause was decided as a take of `max(n, 1)` (estimate 0:
/// "admit if any budget is left") and writes the take of `n` (nothing for
/// 0: its effect here must be the take of `n` for n > 0); the CONCURRENCY
/// clause's acquire becomes the reservation, with the record; the others
/// write what they decided. Without an acquire (nothing was taken: a
/// shadow policy's denial) the effects are the decided ones.
pub fn admitted(at: Nanos, limits: &[Admitted<'_>]) -> Result<Vec<Effect>, CmdError> {
    let effects: Vec<Effect> = limits
        .iter()
        .map(|l| match l.estimate {
            Some(0) => Effect::None,
            _ => l.effect.clone(),
        })
        .collect();
    let held: Vec<Planned<'_>> = limits
        .iter()
        .zip(&effects)
        .filter_map(|(l, effect)| {
            l.estimate.map(|estimate| Planned {
                key: l.key,
                spec: l.spec,
                estimate,
                effect,
            })
        })
        .collect();
    let mut record = Some(record(at, &held)?);
    drop(held);
    let out = effects
        .into_iter()
        .map(|e| match (e, record.take()) {
            (Effect::Lease(op @ Op::Acquire { .. }), Some(record)) => {
                Effect::Reserve(Box::new(Reservation { op, record }))
            }
            (e, r) => {
                record = r;
                e
            }
        })
        .collect();
    Ok(out)
}

/// The record of a reservation decided at `at`: each clause's hold. An
/// error (named) if a key or a definition is outside the bounds.
pub fn record(at: Nanos, planned: &[Planned<'_>]) -> Result<Record, CmdError> {
    let mut holds = Vec::with_capacity(planned.len());
    for p in planned {
        if p.key.len() > MAX_RESERVED_KEY {
            return Err(error::ESTIMATE_KEY);
        }
        let words = definition(p.spec).ok_or(error::ESTIMATE_CONCURRENCY)?;
        let held = Held::new(at, p.estimate, p.effect);
        holds.push(Hold {
            key: p.key.to_vec(),
            words,
            estimate: p.estimate,
            bucket_end: held.bucket_end,
        });
    }
    Ok(Record { at, holds })
}

/// A rate limit's definition in canonical words, which read back
/// ([`read_spec`]) as the same limit: a bucket (token bucket or GCRA, the
/// same arithmetic) as `TOKENBUCKET capacity 1 PERIOD interval`, a window
/// as `SLIDING limit seconds`, a fixed window as `FIXED limit seconds` or
/// `FIXED limit UNIT [TZ zone]`. `None` for a CONCURRENCY limit (no cost).
pub fn definition(spec: &Spec) -> Option<Vec<Vec<u8>>> {
    let args = match spec {
        Spec::Bucket(b) => LimitArgs::token_bucket(
            b.limit(),
            Decimal::new(1, 0).ok()?,
            Decimal::new(b.interval().as_u64(), 9).ok()?,
        ),
        Spec::Window(w) => {
            LimitArgs::sliding(w.limit, Decimal::new(w.span.as_micros() / 1000, 3).ok()?)
        }
        Spec::Fixed {
            limit,
            calendar: Calendar::Millis(ms),
        } => LimitArgs::fixed(*limit, Arg::Decimal(Decimal::new(*ms, 3).ok()?), None),
        Spec::Fixed {
            limit,
            calendar: Calendar::Unit(u, tz),
        } => {
            let zone = match tz {
                Some(tz) => Some(tz.iana_name()?),
                None => None,
            };
            return Some(LimitArgs::fixed(*limit, Arg::Unit(*u), zone).words());
        }
        Spec::Concurrency(_) => return None,
    };
    Some(args.words())
}

/// Reads a definition written by [`definition`]: a rate limit (not a
/// CONCURRENCY one), within the words' bounds.
pub fn read_spec(words: &[Vec<u8>], settings: Settings) -> Result<Spec, CmdError> {
    if words.len() > MAX_POLICY_WORDS || words.iter().any(|w| w.len() > MAX_POLICY_WORD) {
        return Err(error::POLICY_TOO_LONG);
    }
    let (first, rest) = words.split_first().ok_or(error::POLICY_ALGORITHM)?;
    let syntax = algorithm(first).ok_or(error::POLICY_ALGORITHM)?;
    let rest: Vec<&[u8]> = rest.iter().map(Vec::as_slice).collect();
    let spec = read_definition(syntax, &rest[..], settings)?;
    if matches!(spec, Spec::Concurrency(_)) {
        return Err(error::ESTIMATE_CONCURRENCY);
    }
    Ok(spec)
}

// ---------------------------------------------------------------- encoding

impl Record {
    /// `at` (u64 LE), the count of holds (u32 LE), then each hold: the key
    /// (u32 LE length, bytes), the count of words (u8), each word (u8
    /// length, bytes), the estimate (u64 LE) and the bucket end (u64 LE,
    /// 0 for none).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.at.as_u64().to_le_bytes());
        out.extend_from_slice(&(self.holds.len() as u32).to_le_bytes());
        for h in &self.holds {
            out.extend_from_slice(&(h.key.len() as u32).to_le_bytes());
            out.extend_from_slice(&h.key);
            out.push(h.words.len() as u8);
            for w in &h.words {
                out.push(w.len() as u8);
                out.extend_from_slice(w);
            }
            out.extend_from_slice(&h.estimate.to_le_bytes());
            let end = h.bucket_end.map_or(0, Nanos::as_u64);
            out.extend_from_slice(&end.to_le_bytes());
        }
    }

    pub fn encoded_len(&self) -> usize {
        12 + self
            .holds
            .iter()
            .map(|h| 4 + h.key.len() + 1 + h.words.iter().map(|w| 1 + w.len()).sum::<usize>() + 16)
            .sum::<usize>()
    }

    /// Heap bytes held, for MEMORY USAGE.
    pub fn heap_size(&self) -> usize {
        self.holds.capacity() * std::mem::size_of::<Hold>()
            + self
                .holds
                .iter()
                .map(|h| {
                    h.key.capacity()
                        + h.words.capacity() * std::mem::size_of::<Vec<u8>>()
                        + h.words.iter().map(Vec::capacity).sum::<usize>()
                })
                .sum::<usize>()
    }

    /// Reads what [`Record::encode`] wrote at `*pos`, advancing it;
    /// `None` for anything outside the bounds (see the module's text) or a
    /// definition that is not a rate limit's, or a key named twice.
    pub fn decode(b: &[u8], pos: &mut usize) -> Option<Record> {
        let mut r = Reader { b, pos: *pos };
        let at = Nanos::new(r.u64()?);
        let n = r.u32()?;
        if at == Nanos::ZERO || n == 0 || n > MAX_LIMITS_MAX {
            return None;
        }
        let mut holds = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key_len = r.u32()? as usize;
            if key_len > MAX_RESERVED_KEY {
                return None;
            }
            let key = r.take(key_len)?.to_vec();
            let count = usize::from(r.u8()?);
            if count > MAX_POLICY_WORDS {
                return None;
            }
            let mut words = Vec::with_capacity(count);
            for _ in 0..count {
                let len = usize::from(r.u8()?);
                words.push(r.take(len)?.to_vec());
            }
            read_spec(&words, Settings::default().loading()).ok()?;
            let estimate = r.u64()?;
            let end = r.u64()?;
            if estimate > MAX_INT {
                return None;
            }
            holds.push(Hold {
                key,
                words,
                estimate,
                bucket_end: (end != 0).then_some(Nanos::new(end)),
            });
        }
        // Distinct keys, as RL.ALL requires: a settlement opens each once.
        let mut keys: Vec<&[u8]> = holds.iter().map(|h| h.key.as_slice()).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w.first() == w.get(1)) {
            return None;
        }
        *pos = r.pos;
        Some(Record { at, holds })
    }
}

/// Little-endian fields from a byte string, bounds checked.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit from its definition (`SLIDING 100 60`).
    fn spec(def: &str) -> Spec {
        let w: Vec<&[u8]> = def.split(' ').map(str::as_bytes).collect();
        let syntax = algorithm(w[0]).unwrap();
        read_definition(syntax, &w[1..], Settings::default()).unwrap()
    }

    fn text(words: &[Vec<u8>]) -> String {
        let w: Vec<String> = words
            .iter()
            .map(|w| String::from_utf8(w.clone()).unwrap())
            .collect();
        w.join(" ")
    }

    /// Every rate limit's canonical words read back as the same limit.
    #[test]
    fn definitions_read_back_as_the_same_limit() {
        for (cmd, words) in [
            (
                "TOKENBUCKET 100 100 PERIOD 60",
                "TOKENBUCKET 100 1 PERIOD 0.6",
            ),
            ("TOKENBUCKET 10 3", "TOKENBUCKET 10 1 PERIOD 0.333333334"),
            ("GCRA 5 1 2", "TOKENBUCKET 5 1 PERIOD 2"),
            ("SLIDING 100 60", "SLIDING 100 60"),
            ("SLIDING 7 0.25", "SLIDING 7 0.25"),
            ("FIXED 100 60", "FIXED 100 60"),
            ("FIXED 3 1.5", "FIXED 3 1.5"),
            (
                "FIXED 500 DAY TZ America/New_York",
                "FIXED 500 DAY TZ America/New_York",
            ),
            ("FIXED 500 MONTH", "FIXED 500 MONTH"),
        ] {
            let s = spec(cmd);
            let w = definition(&s).unwrap();
            assert_eq!(text(&w), words, "{cmd}");
            assert_eq!(read_spec(&w, Settings::default()).unwrap(), s, "{cmd}");
        }
        assert_eq!(definition(&spec("CONCURRENCY 3 10")), None);
    }

    fn sample() -> Record {
        Record {
            at: Nanos::new(1_800_000_000_000_000_000),
            holds: vec![
                Hold {
                    key: b"tokens:min".to_vec(),
                    words: definition(&spec("SLIDING 100 60")).unwrap(),
                    estimate: 10,
                    bucket_end: None,
                },
                Hold {
                    key: b"tokens:day".to_vec(),
                    words: definition(&spec("TOKENBUCKET 1000 1000 PERIOD 86400")).unwrap(),
                    estimate: 0,
                    bucket_end: Some(Nanos::new(1_800_000_001_000_000_000)),
                },
            ],
        }
    }

    #[test]
    fn records_round_trip_and_decode_refuses_what_encode_never_writes() {
        let r = sample();
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(b.len(), r.encoded_len());
        let mut pos = 0;
        assert_eq!(Record::decode(&b, &mut pos), Some(r.clone()));
        assert_eq!(pos, b.len());
        // Every strict prefix is refused.
        for n in 0..b.len() {
            assert_eq!(Record::decode(&b[..n], &mut 0), None, "{n}");
        }
        let bad = |f: &dyn Fn(&mut Record)| {
            let mut r = sample();
            f(&mut r);
            let mut b = Vec::new();
            r.encode(&mut b);
            Record::decode(&b, &mut 0)
        };
        assert_eq!(bad(&|r| r.holds.clear()), None);
        assert_eq!(bad(&|r| r.holds[1].key = r.holds[0].key.clone()), None);
        assert_eq!(bad(&|r| r.at = Nanos::ZERO), None);
        assert_eq!(bad(&|r| r.holds[0].estimate = MAX_INT + 1), None);
        assert!(bad(&|r| r.holds[0].estimate = MAX_INT).is_some());
        assert_eq!(
            bad(&|r| r.holds[0].key = vec![b'k'; MAX_RESERVED_KEY + 1]),
            None
        );
        assert!(bad(&|r| r.holds[0].key = vec![b'k'; MAX_RESERVED_KEY]).is_some());
        assert_eq!(
            bad(&|r| r.holds[0].words =
                vec![b"CONCURRENCY".to_vec(), b"3".to_vec(), b"10".to_vec()]),
            None
        );
        assert_eq!(bad(&|r| r.holds[0].words[1] = b"x".to_vec()), None);
        assert_eq!(bad(&|r| r.holds[0].words.push(b"DRYRUN".to_vec())), None);
        assert_eq!(
            bad(&|r| r.holds[0].words = vec![b"SLIDING".to_vec(); 17]),
            None
        );
    }

    #[test]
    fn a_record_names_keys_within_the_bound_and_rate_limits_only() {
        let s = spec("SLIDING 10 60");
        let e = Effect::None;
        let at = Nanos::new(5);
        let long = vec![b'k'; MAX_RESERVED_KEY + 1];
        let ok = record(
            at,
            &[Planned {
                key: b"a",
                spec: &s,
                estimate: 3,
                effect: &e,
            }],
        )
        .unwrap();
        assert_eq!(ok.holds[0].held(at).estimate, 3);
        let err = record(
            at,
            &[Planned {
                key: &long,
                spec: &s,
                estimate: 3,
                effect: &e,
            }],
        );
        assert_eq!(err.unwrap_err(), error::ESTIMATE_KEY);
        let b = spec("TOKENBUCKET 10 1");
        let r = record(
            at,
            &[Planned {
                key: b"b",
                spec: &b,
                estimate: 3,
                effect: &Effect::Bucket(Nanos::new(77)),
            }],
        )
        .unwrap();
        assert_eq!(r.holds[0].bucket_end, Some(Nanos::new(77)));
    }

    /// A reservation lives in its lease: encoded as version 2 while it
    /// lasts, gone with the lease (released, or expired at the next
    /// change), and then the leases encode as version 1 again, byte for
    /// byte what they were before reservations existed.
    #[test]
    fn a_record_lives_and_dies_with_its_lease() {
        use crate::algo::lease::{acquire, release, Concurrency, Leases};
        let c = Concurrency {
            limit: 3,
            lease: Nanos::from_secs(10),
        };
        let t0 = Nanos::new(1_800_000_000_000_000_000);
        let (_, plain) = acquire(None, &c, t0);
        let mut l = Leases::from_op(&plain.unwrap());
        let mut v1 = Vec::new();
        l.encode(&mut v1);
        assert_eq!(v1[0], 1);
        let (_, op) = acquire(Some(&l), &c, t0);
        let op = op.unwrap();
        let r = Reservation {
            op,
            record: sample(),
        };
        l.reserve(&r);
        assert_eq!(l.record(r.id()), Some(&r.record));
        let mut v2 = Vec::new();
        l.encode(&mut v2);
        assert_eq!((v2[0], v2.len()), (2, l.encoded_len()));
        assert_eq!(Leases::decode(&v2), Some(l.clone()));
        // Every strict prefix is refused; so is a record of a lease not held.
        for n in 0..v2.len() {
            assert_eq!(Leases::decode(&v2[..n]), None, "{n}");
        }
        let mut other = v2.clone();
        let at = 17 + 16 * 2 + 8; // the first record's lease id
        other[at..at + 8].copy_from_slice(&12345u64.to_le_bytes());
        assert_eq!(Leases::decode(&other), None);
        // Released: the record goes, version 1 again.
        let mut released = l.clone();
        released.apply(&release(Some(&l), r.id(), t0).unwrap());
        assert_eq!(released.record(r.id()), None);
        let mut without = Leases::from_op(&plain.unwrap());
        without.apply(&op);
        without.apply(&release(Some(&without), r.id(), t0).unwrap());
        let (mut b, mut want) = (Vec::new(), Vec::new());
        released.encode(&mut b);
        without.encode(&mut want);
        assert_eq!((b[0], b), (1, want));
        // Expired: gone with the next change, with no write of its own.
        let later = t0.saturating_add(Nanos::from_secs(11));
        let (_, op) = acquire(Some(&l), &c, later);
        l.apply(&op.unwrap());
        assert_eq!(l.record(r.id()), None);
    }

    /// An admitted call's writes: the acquire becomes the reservation
    /// with one hold per ESTIMATE clause; estimate 0 writes nothing (it was
    /// decided as a take of 1); other clauses write what they decided.
    #[test]
    fn an_admitted_reservation_writes_the_estimates_and_the_record() {
        let slots = spec("CONCURRENCY 5 30");
        let tb = spec("TOKENBUCKET 100 1");
        let fx = spec("FIXED 100 60");
        let sw = spec("SLIDING 10 60");
        let at = Nanos::new(1_800_000_000_000_000_000);
        let acquire = Op::Acquire {
            now: at,
            id: at.as_u64(),
            expires: at.saturating_add(Nanos::from_secs(30)),
        };
        let lease = Effect::Lease(acquire);
        let bucket = Effect::Bucket(at.saturating_add(Nanos::from_secs(7)));
        let take_of_one = Effect::Clear;
        let other = Effect::Bucket(Nanos::new(3));
        let out = admitted(
            at,
            &[
                Admitted {
                    key: b"s",
                    spec: &slots,
                    estimate: None,
                    effect: &lease,
                },
                Admitted {
                    key: b"t",
                    spec: &tb,
                    estimate: Some(7),
                    effect: &bucket,
                },
                Admitted {
                    key: b"f",
                    spec: &fx,
                    estimate: Some(0),
                    effect: &take_of_one,
                },
                Admitted {
                    key: b"w",
                    spec: &sw,
                    estimate: None,
                    effect: &other,
                },
            ],
        )
        .unwrap();
        let Effect::Reserve(r) = &out[0] else {
            panic!("{:?}", out[0])
        };
        assert_eq!(r.op, acquire);
        assert_eq!(r.record.at, at);
        let holds: Vec<(&[u8], u64, Option<Nanos>)> = r
            .record
            .holds
            .iter()
            .map(|h| (h.key.as_slice(), h.estimate, h.bucket_end))
            .collect();
        assert_eq!(
            holds,
            [
                (&b"t"[..], 7, Some(at.saturating_add(Nanos::from_secs(7)))),
                (&b"f"[..], 0, None)
            ]
        );
        assert_eq!(out[1..], [bucket, Effect::None, other]);
        // Denied (no acquire): what was decided, no record.
        let none = admitted(
            at,
            &[Admitted {
                key: b"t",
                spec: &tb,
                estimate: Some(7),
                effect: &Effect::None,
            }],
        )
        .unwrap();
        assert_eq!(none, [Effect::None]);
    }
}
