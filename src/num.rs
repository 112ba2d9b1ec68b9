//! Exact parsing of the numbers users type: integers and decimals such as
//! `0.5`, `100`, `1e4` or `86400`.
//!
//! Decimals are kept as `digits x 10^exp` and never pass through a float, so
//! a rate of `0.1` per second is exactly one token per 10 s, and a window of
//! `0.25` is exactly 250 ms. Anything that is not a plain number (signs,
//! spaces, `nan`, `inf`, hex, trailing garbage) is rejected.

/// A non-negative decimal number, exactly `digits * 10^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    digits: u64,
    exp: i32,
}

/// How a ratio of two decimals compares with what fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaled {
    /// The value, rounded as asked.
    Value(u64),
    /// Below 1 after scaling (and not zero).
    TooSmall,
    /// Above `u64::MAX` after scaling.
    TooLarge,
}

const MAX_EXP: i32 = 400;

/// A strict unsigned integer: ASCII digits only, no sign, no spaces.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

impl Decimal {
    pub const fn from_int(v: u64) -> Self {
        Decimal { digits: v, exp: 0 }
    }

    /// `[digits][.digits][(e|E)[+|-]digits]`, at least one mantissa digit.
    pub fn parse(s: &[u8]) -> Option<Decimal> {
        let mut digits: u64 = 0;
        let mut exp: i32 = 0;
        let mut seen_digit = false;
        let mut i = 0;
        // Integer part.
        while let Some(&c) = s.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            seen_digit = true;
            digits = digits.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            i += 1;
        }
        // Fraction: trailing zeros past the precision of `digits` are dropped,
        // any other digit that does not fit rejects the number.
        if s.get(i) == Some(&b'.') {
            i += 1;
            while let Some(&c) = s.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                seen_digit = true;
                let d = u64::from(c - b'0');
                match digits.checked_mul(10).and_then(|v| v.checked_add(d)) {
                    Some(v) => {
                        digits = v;
                        exp -= 1;
                    }
                    None if d == 0 => {}
                    None => return None,
                }
                i += 1;
            }
        }
        if !seen_digit {
            return None;
        }
        if let Some(&(b'e' | b'E')) = s.get(i) {
            i += 1;
            let negative = match s.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let start = i;
            let mut e: i32 = 0;
            while let Some(&c) = s.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                e = e.checked_mul(10)?.checked_add(i32::from(c - b'0'))?;
                if e > MAX_EXP {
                    return None;
                }
                i += 1;
            }
            if i == start {
                return None;
            }
            exp = if negative { exp - e } else { exp + e };
        }
        if i != s.len() {
            return None;
        }
        Some(Decimal { digits, exp })
    }

    pub fn is_zero(&self) -> bool {
        self.digits == 0
    }

    /// `self * 10^scale / div`, rounded up. `div` must not be zero.
    pub fn ratio_ceil(&self, scale: i32, div: &Decimal) -> Scaled {
        self.ratio(scale, div, true)
    }

    /// `self * 10^scale` if that is a whole number, else `None`.
    pub fn scaled_exact(&self, scale: i32) -> Option<Scaled> {
        let one = Decimal::from_int(1);
        let up = self.ratio(scale, &one, true);
        let down = self.ratio(scale, &one, false);
        if up == down {
            Some(up)
        } else {
            None
        }
    }

    fn ratio(&self, scale: i32, div: &Decimal, round_up: bool) -> Scaled {
        if self.digits == 0 {
            return Scaled::Value(0);
        }
        // value = self.digits * 10^k / div.digits
        let k = i64::from(self.exp) + i64::from(scale) - i64::from(div.exp);
        if div.digits == 0 {
            return Scaled::TooLarge;
        }
        // Both mantissas are below 2^64 and 10^38 < 2^128 < 10^39: past
        // that, one side exceeds 2^128 and the quotient is surely out of
        // u64 range (or below 1).
        let (num, den) = match u32::try_from(k.unsigned_abs())
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(p) if k >= 0 => match u128::from(self.digits).checked_mul(p) {
                Some(n) => (n, u128::from(div.digits)),
                None => return Scaled::TooLarge,
            },
            Some(p) => match u128::from(div.digits).checked_mul(p) {
                Some(d) => (u128::from(self.digits), d),
                None => return Scaled::TooSmall,
            },
            None if k >= 0 => return Scaled::TooLarge,
            None => return Scaled::TooSmall,
        };
        // The common case fits 64 bits: a far cheaper division.
        let q = match (u64::try_from(num), u64::try_from(den)) {
            (Ok(n), Ok(d)) => u128::from(if round_up { n.div_ceil(d) } else { n / d }),
            _ if round_up => num.div_ceil(den),
            _ => num / den,
        };
        if num < den {
            // 0 < value < 1
            return if round_up {
                Scaled::TooSmall
            } else {
                Scaled::Value(0)
            };
        }
        match u64::try_from(q) {
            Ok(v) => Scaled::Value(v),
            Err(_) => Scaled::TooLarge,
        }
    }
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

    fn d(s: &str) -> Option<Decimal> {
        Decimal::parse(s.as_bytes())
    }

    #[test]
    fn integers_are_strict() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "18446744073709551616",
            "0x10",
            "1e3",
        ] {
            assert_eq!(parse_u64(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn decimals_parse_exactly() {
        assert_eq!(d("0.5"), Some(Decimal { digits: 5, exp: -1 }));
        assert_eq!(d("1e4"), Some(Decimal { digits: 1, exp: 4 }));
        assert_eq!(
            d("2.5E-3"),
            Some(Decimal {
                digits: 25,
                exp: -4
            })
        );
        assert_eq!(d(".5"), Some(Decimal { digits: 5, exp: -1 }));
        assert_eq!(d("5."), Some(Decimal { digits: 5, exp: 0 }));
        assert_eq!(
            d("1.000000000000000000000000000"),
            Some(Decimal {
                digits: 10_000_000_000_000_000_000,
                exp: -19
            })
        );
        for bad in [
            "",
            ".",
            "e5",
            "1e",
            "1e+",
            "nan",
            "inf",
            "-1",
            "+1",
            "1 ",
            " 1",
            "1x",
            "0x1",
            "1..2",
            "1e5.0",
            "99999999999999999999",
            "1e401",
            "1.5e-9999",
        ] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ratios_round_up_and_flag_range() {
        let one = Decimal::from_int(1);
        let three = Decimal::from_int(3);
        // 1 s / 3 = 333,333,333.33 ns -> 333,333,334
        assert_eq!(one.ratio_ceil(9, &three), Scaled::Value(333_333_334));
        assert_eq!(
            one.ratio_ceil(9, &d("0.5").unwrap()),
            Scaled::Value(2_000_000_000)
        );
        assert_eq!(
            one.ratio_ceil(9, &d("1e4").unwrap()),
            Scaled::Value(100_000)
        );
        assert_eq!(one.ratio_ceil(9, &d("1e10").unwrap()), Scaled::TooSmall);
        assert_eq!(one.ratio_ceil(9, &d("1e-11").unwrap()), Scaled::TooLarge);
        assert_eq!(one.ratio_ceil(9, &d("1e-300").unwrap()), Scaled::TooLarge);
        assert_eq!(one.ratio_ceil(9, &d("1e300").unwrap()), Scaled::TooSmall);
    }

    /// The plain reference: multiply by 10 one step at a time, in u128.
    fn reference(a: Decimal, scale: i32, b: Decimal) -> Scaled {
        let k = i64::from(a.exp) + i64::from(scale) - i64::from(b.exp);
        let (mut n, mut d) = (u128::from(a.digits), u128::from(b.digits));
        for _ in 0..k.max(0) {
            match n.checked_mul(10) {
                Some(v) => n = v,
                None => return Scaled::TooLarge,
            }
        }
        for _ in 0..(-k).max(0) {
            match d.checked_mul(10) {
                Some(v) => d = v,
                None => return Scaled::TooSmall,
            }
        }
        if n < d {
            return Scaled::TooSmall;
        }
        u64::try_from(n.div_ceil(d)).map_or(Scaled::TooLarge, Scaled::Value)
    }

    proptest::proptest! {
        #[test]
        fn ratio_matches_the_reference(
            ad in 1u64.., ae in -40i32..40, bd in 1u64.., be in -40i32..40, scale in 0i32..10,
        ) {
            let (a, b) = (Decimal { digits: ad, exp: ae }, Decimal { digits: bd, exp: be });
            proptest::prop_assert_eq!(a.ratio_ceil(scale, &b), reference(a, scale, b));
        }
    }

    #[test]
    fn scaled_exact_requires_whole_numbers() {
        assert_eq!(d("0.25").unwrap().scaled_exact(3), Some(Scaled::Value(250)));
        assert_eq!(
            d("86400").unwrap().scaled_exact(3),
            Some(Scaled::Value(86_400_000))
        );
        assert_eq!(d("0.0005").unwrap().scaled_exact(3), None);
        assert_eq!(d("1e30").unwrap().scaled_exact(3), Some(Scaled::TooLarge));
    }
}
