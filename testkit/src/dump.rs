//! The DUMP payload of a module-typed key, taken apart and put back
//! together with a recomputed CRC64, and mutations of it that reach the
//! module's `rdb_load` (Redis refuses a payload whose RDB version or
//! checksum is wrong before the module sees it). Used by the RESTORE fuzz
//! and the persistence tests.
//!
//! A DUMP is: `RDB_TYPE_MODULE_2`, the module id as a 64-bit RDB length,
//! the module data (opcode, value; ...; `OP_EOF`), the RDB version (two
//! bytes, little endian) and the CRC-64/Jones of everything before it
//! (eight bytes, little endian).

use super::{error_text, Rng, Value};

/// Redis's CRC-64/Jones: reflected polynomial 0xad93d23594c935a9, initial
/// value 0, no final xor; the DUMP footer holds it little endian.
pub fn crc64(data: &[u8]) -> u64 {
    const POLY: u64 = 0x95ac_9329_ac4b_c9b5; // 0xad93d23594c935a9 reflected
    let mut crc = 0u64;
    for &b in data {
        crc ^= u64::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// RDB_TYPE_MODULE_2, and the module value opcodes it carries.
pub const RDB_TYPE_MODULE_2: u8 = 7;
pub const OP_EOF: u8 = 0;
pub const OP_SINT: u8 = 1;
pub const OP_UINT: u8 = 2;
pub const OP_FLOAT: u8 = 3;
pub const OP_DOUBLE: u8 = 4;
pub const OP_STRING: u8 = 5;

/// A DUMP taken apart: module id, module data, RDB version.
#[derive(Clone)]
pub struct Dump {
    /// The module type's id: its name and encoding version.
    pub module_id: u64,
    /// The module data: opcodes and values, ending with `OP_EOF`.
    pub body: Vec<u8>,
    /// The RDB version the payload claims (little endian).
    pub version: [u8; 2],
}

impl Dump {
    /// Takes apart a DUMP of a module-typed key (its CRC64 checked).
    pub fn parse(d: &[u8]) -> Dump {
        let n = d.len();
        assert!(n > 20, "{d:?}");
        let (payload, crc) = d.split_at(n - 8);
        assert_eq!(
            crc64(payload).to_le_bytes(),
            crc,
            "our CRC64 disagrees with the server's"
        );
        assert_eq!(d[0], RDB_TYPE_MODULE_2, "{d:?}");
        assert_eq!(d[1], 0x81, "module id as a 64-bit length: {d:?}");
        Dump {
            module_id: u64::from_be_bytes(d[2..10].try_into().unwrap()),
            body: d[10..n - 10].to_vec(),
            version: [d[n - 10], d[n - 9]],
        }
    }

    /// Type byte, module id, body, version, CRC64 of all before it.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = vec![RDB_TYPE_MODULE_2, 0x81];
        p.extend_from_slice(&self.module_id.to_be_bytes());
        p.extend_from_slice(&self.body);
        p.extend_from_slice(&self.version);
        let crc = crc64(&p);
        p.extend_from_slice(&crc.to_le_bytes());
        p
    }
}

/// An RDB length: 6-bit, 14-bit, 32-bit or 64-bit form.
pub fn rdb_len(out: &mut Vec<u8>, v: u64) {
    if v < 1 << 6 {
        out.push(v as u8);
    } else if v < 1 << 14 {
        out.push(0x40 | (v >> 8) as u8);
        out.push(v as u8);
    } else if v <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(v as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// An RDB string: plain, or one of the special encodings Redis also
/// accepts where a string is expected (integers, LZF).
pub fn rdb_string(r: &mut Rng, out: &mut Vec<u8>, s: &[u8]) {
    match r.below(12) {
        0 => {
            // An integer-encoded string (8, 16 or 32 bits).
            let enc = r.below(3) as u8;
            out.push(0xc0 | enc);
            out.extend((0..1 << enc).map(|_| r.next_u64() as u8));
        }
        1 => {
            // "LZF": lengths and bytes that may or may not decompress.
            out.push(0xc3);
            rdb_len(out, r.below(64));
            rdb_len(out, r.below(64));
            out.extend(r.bytes(32));
        }
        2 => {
            // A length that lies.
            rdb_len(out, s.len() as u64 + r.below(4) + 1);
            out.extend_from_slice(s);
        }
        _ => {
            rdb_len(out, s.len() as u64);
            out.extend_from_slice(s);
        }
    }
}

pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A sliding-window log encoding: usually well formed, with extreme
/// instants, deltas and counts.
pub fn window_log(r: &mut Rng, now_us: u64) -> Vec<u8> {
    let mut out = vec![if r.one_in(20) { r.next_u64() as u8 } else { 1 }];
    let first = match r.below(8) {
        0 => r.next_u64(),
        1 => (1 << 55) - r.below(3),
        2 => r.below(3),
        _ => now_us - r.below(100_000_000),
    };
    out.extend_from_slice(&first.to_le_bytes());
    for i in 0..r.below(8) {
        let delta = match (i, r.below(8)) {
            (0, _) => 0,
            (_, 0) => r.next_u64() >> r.below(64),
            (_, 1) => 0,
            _ => 1 + r.below(5_000_000),
        };
        let count = match r.below(8) {
            0 => r.next_u64() >> r.below(64),
            1 => u64::MAX - r.below(2),
            2..=3 => 2 + r.below(1000),
            _ => 1,
        };
        if count == 1 {
            varint(&mut out, delta << 1);
        } else {
            varint(&mut out, (delta << 1) | 1);
            varint(&mut out, count);
        }
    }
    if r.one_in(10) {
        out.extend(r.bytes(4));
    }
    out
}

/// Module data built from hostile values, in any order of opcodes.
pub fn rebuilt_body(r: &mut Rng, now_us: u64) -> Vec<u8> {
    let mut b = vec![];
    for _ in 0..1 + r.below(2) {
        match r.below(8) {
            0..=2 => {
                b.push(OP_UINT);
                let v = match r.below(8) {
                    0 => 0,
                    1 => 1,
                    2 => u64::MAX,
                    3 => 1 << 63,
                    4 => r.next_u64(),
                    5 => 1 << r.below(64),
                    _ => now_us * 1000 + r.below(1 << 40),
                };
                rdb_len(&mut b, v);
            }
            3..=5 => {
                b.push(OP_STRING);
                let log = window_log(r, now_us);
                rdb_string(r, &mut b, &log);
            }
            6 => {
                b.push(r.pick(&[OP_SINT, OP_FLOAT, OP_DOUBLE, OP_EOF, 6, 0x81]));
                b.extend(r.bytes(9));
            }
            _ => {}
        }
    }
    if !r.one_in(8) {
        b.push(OP_EOF);
    }
    b
}

/// One corrupted variant of `orig` (`others`: the other types' DUMPs),
/// and what was done to it.
pub fn variant(r: &mut Rng, orig: &Dump, others: &[&Dump], now_us: u64) -> (Dump, &'static str) {
    let mut d = orig.clone();
    let n = d.body.len() as u64;
    let other_id = |r: &mut Rng| match others {
        [] => r.next_u64(),
        _ => r.pick(others).module_id,
    };
    let short_string = orig.body[0] == OP_STRING
        && orig.body[1] < 64
        && usize::from(orig.body[1]) == orig.body.len() - 3;
    let what = match r.below(12) {
        0 => {
            for _ in 0..1 + r.below(3) {
                let i = r.below(n) as usize;
                d.body[i] ^= 1 << r.below(8);
            }
            "bit flips"
        }
        1 => {
            let i = r.below(n) as usize;
            d.body[i] = r.next_u64() as u8;
            "byte overwritten"
        }
        2 => {
            d.body.truncate(r.below(n) as usize);
            "truncated"
        }
        3 => {
            // More module data before the EOF marker.
            d.body.pop();
            d.body.extend(r.bytes(16));
            d.body.push(OP_EOF);
            "extended before EOF"
        }
        4 => {
            let i = r.below(n + 1) as usize;
            d.body.insert(i, r.next_u64() as u8);
            "byte inserted"
        }
        5 => {
            d.body.remove(r.below(n) as usize);
            "byte removed"
        }
        6..=8 => {
            d.body = rebuilt_body(r, now_us);
            "rebuilt from hostile values"
        }
        9 if short_string && r.one_in(2) => {
            // The string with bytes appended, its length fixed up.
            let mut log = orig.body[2..orig.body.len() - 1].to_vec();
            log.extend(r.bytes(6));
            let mut b = vec![OP_STRING];
            rdb_len(&mut b, log.len() as u64);
            b.extend(log);
            b.push(OP_EOF);
            d.body = b;
            "string extended"
        }
        9 => {
            // Another type's id on this type's data, or an unknown type.
            d.module_id = if r.one_in(2) {
                other_id(r)
            } else {
                r.next_u64()
            };
            "module id swapped"
        }
        10 => {
            // Encoding versions the module never wrote.
            d.module_id = d.module_id & !1023 | r.pick(&[0, 2, 3, 1023]);
            "encoding version changed"
        }
        _ => {
            if r.one_in(2) {
                d.module_id = other_id(r);
            }
            d.body = rebuilt_body(r, now_us);
            "rebuilt, any type"
        }
    };
    (d, what)
}

/// Module data holding one unsigned, as rl-bucket and rl-fixwin save
/// their value (a bucket's full-again instant in ns, a window's count).
pub fn inline_body(v: u64) -> Vec<u8> {
    let mut b = vec![OP_UINT];
    rdb_len(&mut b, v);
    b.push(OP_EOF);
    b
}

/// Module data holding one string, as rl-window, rl-leases and rl-locked
/// save their encoded value.
pub fn boxed_body(value: &[u8]) -> Vec<u8> {
    let mut b = vec![OP_STRING];
    rdb_len(&mut b, value.len() as u64);
    b.extend_from_slice(value);
    b.push(OP_EOF);
    b
}

/// The encodings of the boxed values, written here by hand (not by the
/// module's own encoder) so a test can forge any of them: lies included.
pub mod value {
    /// A lease key: version 1, the last id given, the count of leases
    /// (`count`: it may lie), then each lease's (id, expiry ns), all u64
    /// little endian.
    pub fn leases(last_id: u64, count: u64, live: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![1];
        b.extend_from_slice(&last_id.to_le_bytes());
        b.extend_from_slice(&count.to_le_bytes());
        for (id, e) in live {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&e.to_le_bytes());
        }
        b
    }

    /// A sliding-window log: version 1, the oldest entry's instant (us,
    /// u64 LE), then each entry as (delta us from the one before, count):
    /// a varint of `delta << 1`, or of `delta << 1 | 1` and the count when
    /// it is not 1.
    pub fn log(first_us: u64, entries: &[(u64, u64)]) -> Vec<u8> {
        let mut b = vec![1];
        b.extend_from_slice(&first_us.to_le_bytes());
        for &(delta, count) in entries {
            if count == 1 {
                super::varint(&mut b, delta << 1);
            } else {
                super::varint(&mut b, (delta << 1) | 1);
                super::varint(&mut b, count);
            }
        }
        b
    }

    /// What a lock holds under it.
    pub enum Inner<'a> {
        Empty,
        /// A bucket's full-again instant (ns).
        Bucket(u64),
        /// A fixed window's count and end (Unix ms).
        Fixed(u64, u64),
        /// An encoded log ([`log`]).
        Window(&'a [u8]),
        /// Encoded leases ([`leases`]).
        Leases(&'a [u8]),
        /// Any tag and bytes.
        Raw(u8, &'a [u8]),
    }

    /// A policy's lock: the instant it ends (ns, u64 LE), then the inner
    /// state's tag (`E`, `B`, `F`, `W`, `L`) and its bytes.
    pub fn lock(until_ns: u64, inner: Inner<'_>) -> Vec<u8> {
        let mut b = until_ns.to_le_bytes().to_vec();
        match inner {
            Inner::Empty => b.push(b'E'),
            Inner::Bucket(tat) => {
                b.push(b'B');
                b.extend_from_slice(&tat.to_le_bytes());
            }
            Inner::Fixed(count, end_ms) => {
                b.push(b'F');
                b.extend_from_slice(&count.to_le_bytes());
                b.extend_from_slice(&end_ms.to_le_bytes());
            }
            Inner::Window(log) => {
                b.push(b'W');
                b.extend_from_slice(log);
            }
            Inner::Leases(l) => {
                b.push(b'L');
                b.extend_from_slice(l);
            }
            Inner::Raw(tag, bytes) => {
                b.push(tag);
                b.extend_from_slice(bytes);
            }
        }
        b
    }
}

/// `RESTORE key ttl_ms payload REPLACE`: OK, or the server's error text.
pub fn restore(
    c: &mut redis::Connection,
    key: &str,
    ttl_ms: u64,
    payload: &[u8],
) -> Result<Value, String> {
    redis::cmd("RESTORE")
        .arg(key)
        .arg(ttl_ms)
        .arg(payload)
        .arg("REPLACE")
        .query::<Value>(c)
        .map_err(error_text)
}

/// The error Redis answers a payload whose version or CRC64 is wrong.
pub const BAD_PAYLOAD: &str = "ERR DUMP payload version or checksum are wrong";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_crc64_is_redis_crc64() {
        // The check value of CRC-64/Jones as Redis's own test (crc64.c) has it.
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn rdb_lengths_take_their_four_forms() {
        let enc = |v| {
            let mut out = vec![];
            rdb_len(&mut out, v);
            out
        };
        assert_eq!(enc(5), [5]);
        assert_eq!(enc(300), [0x41, 0x2c]);
        assert_eq!(enc(70_000), [0x80, 0, 1, 0x11, 0x70]);
        assert_eq!(enc(1 << 40), [0x81, 0, 0, 1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_dump_comes_apart_and_back_byte_for_byte() {
        let d = Dump {
            module_id: 0x1234_5678_9abc_d001,
            body: vec![OP_UINT, 42, OP_EOF],
            version: [11, 0],
        };
        let p = d.payload();
        assert_eq!(p.len(), 2 + 8 + 3 + 2 + 8);
        let back = Dump::parse(&p);
        assert_eq!(
            (back.module_id, &back.body, back.version),
            (d.module_id, &d.body, d.version)
        );
        // Every variant carries a valid footer.
        let mut r = Rng::new(7);
        for _ in 0..200 {
            let (v, _) = variant(&mut r, &d, &[], 1_700_000_000_000_000);
            let p = v.payload();
            let (payload, crc) = p.split_at(p.len() - 8);
            assert_eq!(crc64(payload).to_le_bytes(), crc);
        }
    }
}
