//! Exact parsing of the numbers users type: integers and decimals such as
//! `0.5`, `100`, `1e4` or `86400`.
//!
//! Decimals are kept as `digits x 10^exp` and never pass through a float, so
//! a rate of `0.1` per second is exactly one token per 10 s, and a window of
//! `0.25` is exactly 250 ms. Anything that is not a plain number (signs,
//! spaces, `nan`, `inf`, hex, trailing garbage) is rejected. The module
//! parses its arguments with [`Decimal::parse`] and the client builds and
//! prints its rates with the same type, so both read a number the same way.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A non-negative decimal number, exactly `digits * 10^exp`. Equal values
/// compare (and hash) equal whatever their digits: `1.50` is `1.5`.
///
/// Build one from an integer (`Decimal::from(10)`), from its parts
/// (`Decimal::new(5, 1)` is `0.5`), from text (`"0.5".parse()`, also
/// `"1e4"` and `"2.5E-3"`), or from an `f64` (`Decimal::try_from(0.5)`,
/// which takes the shortest decimal that reads back as the same `f64`).
/// It always prints as plain digits: `Decimal::from(10_000)` and
/// `"1e4".parse()` both print `10000`.
#[derive(Clone, Copy, Default)]
pub struct Decimal {
    digits: u64,
    exp: i32,
}

/// Text (or parts, or a float) that is not a decimal [`Decimal`] can hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecimalError {
    pub input: String,
}

impl fmt::Display for DecimalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a plain non-negative decimal (such as 0.5, 100 or 1e4)",
            self.input
        )
    }
}

impl std::error::Error for DecimalError {}

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

/// 10^k for every k a u128 holds (10^38 < 2^128 < 10^39).
#[allow(clippy::indexing_slicing)]
const POW10: [u128; 39] = {
    let mut t = [1u128; 39];
    let mut k = 1;
    while k < t.len() {
        t[k] = t[k - 1] * 10;
        k += 1;
    }
    t
};

/// 10^k, if a u128 holds it.
#[inline]
fn pow10(k: u64) -> Option<u128> {
    usize::try_from(k).ok().and_then(|k| POW10.get(k).copied())
}

/// The largest exponent a typed number may carry (`1e400`, `1e-400`).
const MAX_EXP: i32 = 400;

/// A strict unsigned integer: ASCII digits only, no sign, no spaces.
#[inline]
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
    pub const ZERO: Decimal = Decimal { digits: 0, exp: 0 };

    /// A whole number.
    pub const fn from_int(v: u64) -> Self {
        Decimal { digits: v, exp: 0 }.normalized()
    }

    /// A whole number (the client's name for [`Decimal::from_int`]).
    pub const fn from_u64(v: u64) -> Self {
        Decimal::from_int(v)
    }

    /// `mantissa / 10^scale`, for `scale` up to 400.
    pub fn new(mantissa: u64, scale: u32) -> Result<Decimal, DecimalError> {
        match i32::try_from(scale) {
            Ok(s) if s <= MAX_EXP => Ok(Decimal {
                digits: mantissa,
                exp: -s,
            }
            .normalized()),
            _ => Err(DecimalError {
                input: format!("{mantissa}e-{scale}"),
            }),
        }
    }

    /// Trailing zero digits moved into the exponent; zero is `0e0`.
    #[inline]
    const fn normalized(mut self) -> Decimal {
        if self.digits == 0 {
            return Decimal::ZERO;
        }
        while self.digits % 10 == 0 {
            self.digits /= 10;
            self.exp += 1;
        }
        self
    }

    /// A duration as exact decimal seconds (`1.5 s` is `1.5`), if its
    /// nanoseconds fit in 64 bits (about 584 years).
    pub fn from_duration_secs(d: Duration) -> Option<Decimal> {
        if let Ok(ns) = u64::try_from(d.as_nanos()) {
            return Some(
                Decimal {
                    digits: ns,
                    exp: -9,
                }
                .normalized(),
            );
        }
        // Longer: exact with fewer decimals, if the nanoseconds allow.
        let nanos = u64::from(d.subsec_nanos());
        (0..=9u32).find_map(|decimals| {
            let unit = 10u64.pow(9 - decimals);
            if nanos % unit != 0 {
                return None;
            }
            let digits = d
                .as_secs()
                .checked_mul(10u64.pow(decimals))?
                .checked_add(nanos / unit)?;
            Some(
                Decimal {
                    digits,
                    exp: -(decimals as i32),
                }
                .normalized(),
            )
        })
    }

    /// `[digits][.digits][(e|E)[+|-]digits]`, at least one mantissa digit,
    /// at most [`MAX_DECIMAL_LEN`](crate::bounds::MAX_DECIMAL_LEN) bytes.
    #[inline]
    pub fn parse(s: &[u8]) -> Option<Decimal> {
        if s.len() > crate::bounds::MAX_DECIMAL_LEN {
            return None;
        }
        Decimal::parse_long(s)
    }

    /// [`Decimal::parse`] of any length, in time linear in it: for the
    /// words of a policy definition a server already holds (an RDB written
    /// before the bound kept what a client typed), read once at load.
    pub fn parse_long(s: &[u8]) -> Option<Decimal> {
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

    /// `self * 10^scale` if that is a whole number, else `None`: the ratio
    /// to 1 when it rounds the same up and down.
    pub fn scaled_exact(&self, scale: i32) -> Option<Scaled> {
        if self.digits == 0 {
            return Some(Scaled::Value(0));
        }
        let k = i64::from(self.exp) + i64::from(scale);
        let digits = u128::from(self.digits);
        Some(match pow10(k.unsigned_abs()) {
            Some(p) if k >= 0 => match digits.checked_mul(p).map(u64::try_from) {
                Some(Ok(v)) => Scaled::Value(v),
                _ => Scaled::TooLarge,
            },
            // Whole; else below 1 (digits < p) or with a fraction.
            Some(p) if digits % p == 0 => Scaled::Value(u64::try_from(digits / p).ok()?),
            Some(_) => return None,
            None if k >= 0 => Scaled::TooLarge,
            // So small that even its ceiling is refused.
            None => Scaled::TooSmall,
        })
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
        let (num, den) = match pow10(k.unsigned_abs()) {
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

impl PartialEq for Decimal {
    fn eq(&self, other: &Decimal) -> bool {
        let (a, b) = (self.normalized(), other.normalized());
        a.digits == b.digits && a.exp == b.exp
    }
}

impl Eq for Decimal {}

impl std::hash::Hash for Decimal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let n = self.normalized();
        n.digits.hash(state);
        n.exp.hash(state);
    }
}

impl From<u64> for Decimal {
    fn from(v: u64) -> Decimal {
        Decimal::from_int(v)
    }
}

impl fmt::Display for Decimal {
    /// Plain digits with at most one `.` (`0.25`, `86400`), a form every
    /// version of the module reads; a whole number past 64 bits keeps its
    /// exponent (`1e20`), so what is printed always reads back as itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.normalized();
        let digits = n.digits.to_string();
        if n.exp >= 0 {
            let whole = u32::try_from(n.exp)
                .ok()
                .and_then(|e| 10u64.checked_pow(e))
                .and_then(|p| n.digits.checked_mul(p));
            return match whole {
                Some(v) => write!(f, "{v}"),
                None => write!(f, "{digits}e{}", n.exp),
            };
        }
        let scale = n.exp.unsigned_abs() as usize;
        if digits.len() <= scale {
            f.write_str("0.")?;
            for _ in digits.len()..scale {
                f.write_str("0")?;
            }
            return f.write_str(&digits);
        }
        let (int, frac) = digits.split_at(digits.len() - scale);
        write!(f, "{int}.{frac}")
    }
}

impl fmt::Debug for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal({self})")
    }
}

impl FromStr for Decimal {
    type Err = DecimalError;

    /// `[digits][.digits][(e|E)[+|-]digits]` with at least one mantissa
    /// digit: the grammar the module reads. No signs, spaces, `nan`, `inf`.
    fn from_str(s: &str) -> Result<Decimal, DecimalError> {
        Decimal::parse(s.as_bytes()).ok_or_else(|| DecimalError {
            input: s.to_string(),
        })
    }
}

impl TryFrom<f64> for Decimal {
    type Error = DecimalError;

    /// The shortest decimal that reads back as the same `f64` (`0.1` is
    /// `0.1`, not `0.1000000000000000055511151231257827`). Negative and
    /// non-finite values, and values past 64 bits of digits, are refused.
    fn try_from(v: f64) -> Result<Decimal, DecimalError> {
        let err = || DecimalError {
            input: v.to_string(),
        };
        if !v.is_finite() || v < 0.0 {
            return Err(err());
        }
        if v == 0.0 {
            return Ok(Decimal::ZERO);
        }
        // `Display` for f64 prints the shortest round-trip form and never
        // uses an exponent.
        v.to_string().parse().map_err(|_| err())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Option<Decimal> {
        Decimal::parse(s.as_bytes())
    }

    #[test]
    fn decimals_are_at_most_64_bytes() {
        // Found by the abuse suite: a decimal of 100 MB of zeros was read
        // whole, holding the server about 150 ms (RL.RENEW's lease, from
        // an application account).
        let zeros = |n: usize, tail: &str| format!("{}{tail}", "0".repeat(n));
        assert_eq!(d(&zeros(62, "60")), d("60"));
        assert_eq!(d(&zeros(63, "60")), None);
        assert_eq!(d(&format!("60.{}", "0".repeat(61))), d("60"));
        assert_eq!(d(&format!("60.{}", "0".repeat(62))), None);
        assert_eq!(d(&zeros(100 << 20, "1")), None);
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
        // Normalized: trailing zeros never make a different value.
        assert_eq!(
            d("1.000000000000000000000000000"),
            Some(Decimal { digits: 1, exp: 0 })
        );
        assert_eq!(d("1500"), Some(Decimal { digits: 15, exp: 2 }));
        assert_eq!(d("0.0"), Some(Decimal::ZERO));
        assert_eq!(d("1e20"), Some(Decimal { digits: 1, exp: 20 }));
        assert_eq!(
            d("1e-31"),
            Some(Decimal {
                digits: 1,
                exp: -31
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

        /// scaled_exact is the ratio to 1 when it rounds the same both ways:
        /// any decimal, and ones just off a whole number (`a * 10^j + r`,
        /// scaled by `10^-j`).
        #[test]
        fn scaled_exact_is_the_ratio_that_rounds_alike(
            (digits, exp, scale) in proptest::prop_oneof![
                (proptest::num::u64::ANY, -45i32..45, -3i32..12),
                proptest::strategy::Strategy::prop_map((0u64..1000, 0u32..8, 0u64..3, -2i32..3), |(a, j, r, e)| {
                    (a * 10u64.pow(j) + r, e, -(j as i32) - e)
                }),
            ],
        ) {
            let a = Decimal { digits, exp };
            let one = Decimal::from_int(1);
            let (up, down) = (a.ratio(scale, &one, true), a.ratio(scale, &one, false));
            proptest::prop_assert_eq!(a.scaled_exact(scale), (up == down).then_some(up));
        }
    }

    proptest::proptest! {
        /// What a decimal prints, the module reads back as the same value.
        #[test]
        fn display_reads_back_as_itself(digits in proptest::num::u64::ANY, exp in -60i32..60) {
            let d = Decimal { digits, exp }.normalized();
            proptest::prop_assert_eq!(Decimal::parse(d.to_string().as_bytes()), Some(d));
        }
    }

    #[rustfmt::skip]
    const RENDER: &[(&str, &str)] = &[
        ("0.5", "0.5"),
        (".5", "0.5"),
        ("5.", "5"),
        ("100", "100"),
        ("1e4", "10000"),
        ("1E4", "10000"),
        ("2.5E-3", "0.0025"),
        ("0.000001", "0.000001"),
        ("1.500", "1.5"),
        ("0", "0"),
        ("0.0", "0"),
        ("000.25", "0.25"),
        ("18446744073709551615", "18446744073709551615"),
        ("1844674407370955161.5", "1844674407370955161.5"),
        ("0.30000000000000000000", "0.3"),
        ("1e-30", "0.000000000000000000000000000001"),
        ("1e+2", "100"),
        ("1e20", "1e20"),
        ("25e19", "25e19"),
    ];

    #[test]
    fn parses_and_renders_plain_digits() {
        for (input, want) in RENDER {
            assert_eq!(
                d(input).map(|v| v.to_string()).as_deref(),
                Some(*want),
                "{input}"
            );
        }
    }

    #[test]
    fn floats_take_their_shortest_form() {
        let f = |v: f64| Decimal::try_from(v).map(|d| d.to_string());
        assert_eq!(f(0.5).as_deref(), Ok("0.5"));
        assert_eq!(f(0.1).as_deref(), Ok("0.1"));
        assert_eq!(f(0.3).as_deref(), Ok("0.3"));
        assert_eq!(f(1e4).as_deref(), Ok("10000"));
        assert_eq!(f(1e-7).as_deref(), Ok("0.0000001"));
        assert_eq!(Decimal::try_from(-0.0), Ok(Decimal::ZERO));
        // The sum is a different f64 than 0.3, and is sent as that number.
        assert_eq!(f(0.1 + 0.2).as_deref(), Ok("0.30000000000000004"));
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e21] {
            assert!(Decimal::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_and_durations() {
        assert_eq!(Decimal::new(5, 1), Ok(Decimal { digits: 5, exp: -1 }));
        assert_eq!(Decimal::new(50, 2), Ok(Decimal { digits: 5, exp: -1 }));
        assert_eq!(
            Decimal::new(25, 3).map(|d| d.to_string()).as_deref(),
            Ok("0.025")
        );
        assert_eq!(Decimal::new(1, 31).ok(), d("1e-31"));
        assert!(Decimal::new(1, 401).is_err());
        let secs =
            |ms| Decimal::from_duration_secs(Duration::from_millis(ms)).map(|d| d.to_string());
        assert_eq!(secs(250).as_deref(), Some("0.25"));
        assert_eq!(secs(60_000).as_deref(), Some("60"));
        assert_eq!(secs(1).as_deref(), Some("0.001"));
        let long = Duration::from_secs(600 * 365 * 86_400);
        assert_eq!(
            Decimal::from_duration_secs(long)
                .map(|d| d.to_string())
                .as_deref(),
            Some("18921600000")
        );
        assert_eq!(
            Decimal::from_duration_secs(Duration::from_nanos(1))
                .map(|d| d.to_string())
                .as_deref(),
            Some("0.000000001")
        );
        assert_eq!(format!("{:?}", Decimal::new(5, 1)), "Ok(Decimal(0.5))");
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
