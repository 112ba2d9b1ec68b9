//! Exact decimals for rates and periods: `mantissa / 10^scale`, never a
//! float. The module reads `0.1` as exactly one tenth, so the client must
//! send exactly what the user meant: a rate built from `0.1 + 0.2` goes out
//! as `0.3`'s nearest `f64` written in its shortest form (`0.30000000000000004`
//! would be a different limiter), and a rate parsed from `"0.3"` goes out as
//! `0.3`. Rendering is plain ASCII digits with at most one `.`, a form
//! every version of the module accepts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::PolicyError;

/// The most decimals a [`Decimal`] keeps (`0.` followed by 30 digits).
pub(crate) const MAX_SCALE: u32 = 30;

/// A non-negative decimal number, exactly `mantissa / 10^scale`.
///
/// Build one from an integer (`Decimal::from(10)`), from its parts
/// (`Decimal::new(5, 1)` is `0.5`), from text (`"0.5".parse()`, also
/// `"1e4"` and `"2.5E-3"`), or from an `f64` (`Decimal::try_from(0.5)`,
/// which takes the shortest decimal that reads back as the same `f64`).
/// It always prints as plain digits: `Decimal::from(10_000)` and
/// `"1e4".parse()` both print `10000`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: u64,
    scale: u32,
}

impl Decimal {
    /// Zero.
    pub const ZERO: Decimal = Decimal {
        mantissa: 0,
        scale: 0,
    };

    /// A whole number.
    pub const fn from_u64(v: u64) -> Decimal {
        Decimal {
            mantissa: v,
            scale: 0,
        }
    }

    /// `mantissa / 10^scale`; `scale` at most 30.
    pub fn new(mantissa: u64, scale: u32) -> Result<Decimal, PolicyError> {
        if scale > MAX_SCALE {
            return Err(PolicyError::InvalidDecimal {
                input: format!("{mantissa}e-{scale}"),
            });
        }
        Ok(Decimal::normalized(mantissa, scale))
    }

    /// Trailing zeros of the fraction removed, so equal values compare equal.
    const fn normalized(mut mantissa: u64, mut scale: u32) -> Decimal {
        while scale > 0 && mantissa % 10 == 0 {
            mantissa /= 10;
            scale -= 1;
        }
        if mantissa == 0 {
            scale = 0;
        }
        Decimal { mantissa, scale }
    }

    /// The digits, without the decimal point.
    pub const fn mantissa(&self) -> u64 {
        self.mantissa
    }

    /// How many of the digits are decimals.
    pub const fn scale(&self) -> u32 {
        self.scale
    }

    pub const fn is_zero(&self) -> bool {
        self.mantissa == 0
    }

    /// A duration as exact decimal seconds (`1.5 s` -> `1.5`), if its
    /// nanoseconds fit in 64 bits (about 584 years).
    pub fn from_duration_secs(d: Duration) -> Option<Decimal> {
        let ns = u64::try_from(d.as_nanos()).ok()?;
        Some(Decimal::normalized(ns, 9))
    }

    /// `value * 10^9` as a fraction: numerator and denominator.
    fn nanos_fraction(&self) -> Option<(u128, u128)> {
        let den = 10u128.checked_pow(self.scale)?;
        Some((u128::from(self.mantissa) * 1_000_000_000, den))
    }

    /// `period / self` in nanoseconds, rounded up: the time one unit takes
    /// at a rate of `self` units per `period`. `None` if `self` is zero.
    /// Returns the exact ratio as `(ceil, below_one)`: `below_one` when the
    /// true value is under 1 ns (the module refuses such rates).
    pub(crate) fn interval_ns(&self, period: Duration) -> Option<(u128, bool)> {
        if self.mantissa == 0 {
            return None;
        }
        // period_ns / (mantissa / 10^scale) = period_ns * 10^scale / mantissa
        let scale = 10u128.checked_pow(self.scale)?;
        let num = match period.as_nanos().checked_mul(scale) {
            Some(n) => n,
            // Past u128: certainly longer than any limit we accept.
            None => return Some((u128::MAX, false)),
        };
        let m = u128::from(self.mantissa);
        Some((num.div_ceil(m), num < m))
    }

    /// As an `f64`, for display and approximate arithmetic only.
    pub fn to_f64(&self) -> f64 {
        match self.nanos_fraction() {
            Some((n, d)) => n as f64 / d as f64 / 1e9,
            None => 0.0,
        }
    }
}

impl Default for Decimal {
    fn default() -> Self {
        Decimal::ZERO
    }
}

impl From<u64> for Decimal {
    fn from(v: u64) -> Decimal {
        Decimal::from_u64(v)
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&digits);
        }
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
    type Err = PolicyError;

    /// `[digits][.digits][(e|E)[+|-]digits]` with at least one mantissa
    /// digit: the grammar the module reads. No signs, spaces, `nan`, `inf`.
    fn from_str(s: &str) -> Result<Decimal, PolicyError> {
        parse(s.as_bytes()).ok_or_else(|| PolicyError::InvalidDecimal {
            input: s.to_string(),
        })
    }
}

fn parse(s: &[u8]) -> Option<Decimal> {
    let mut mantissa: u64 = 0;
    let mut frac_digits: i64 = 0;
    let mut seen_digit = false;
    let mut i = 0;
    while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
        seen_digit = true;
        mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
        i += 1;
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
            seen_digit = true;
            let d = u64::from(c - b'0');
            match mantissa.checked_mul(10).and_then(|v| v.checked_add(d)) {
                Some(v) => {
                    mantissa = v;
                    frac_digits += 1;
                }
                // A trailing zero past 64 bits of precision changes nothing.
                None if d == 0 => {}
                None => return None,
            }
            i += 1;
        }
    }
    if !seen_digit {
        return None;
    }
    let mut exp: i64 = 0;
    if let Some(b'e' | b'E') = s.get(i) {
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
        while let Some(c) = s.get(i).filter(|c| c.is_ascii_digit()) {
            exp = exp.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
            if exp > 400 {
                return None;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        if negative {
            exp = -exp;
        }
    }
    if i != s.len() {
        return None;
    }
    let mut scale = frac_digits - exp;
    if mantissa == 0 {
        return Some(Decimal::ZERO);
    }
    while scale < 0 {
        mantissa = mantissa.checked_mul(10)?;
        scale += 1;
    }
    // Trailing zeros first, then the precision check.
    while scale > 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        scale -= 1;
    }
    let scale = u32::try_from(scale).ok().filter(|s| *s <= MAX_SCALE)?;
    Some(Decimal { mantissa, scale })
}

impl TryFrom<f64> for Decimal {
    type Error = PolicyError;

    /// The shortest decimal that reads back as the same `f64` (`0.1` is
    /// `0.1`, not `0.1000000000000000055511151231257827`). Negative,
    /// non-finite, and values that do not fit 64 bits of digits are refused.
    fn try_from(v: f64) -> Result<Decimal, PolicyError> {
        let err = || PolicyError::InvalidDecimal {
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
        parse(v.to_string().as_bytes()).ok_or_else(err)
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

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
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
    ];

    #[test]
    fn parses_and_renders_plain_digits() {
        for (input, want) in RENDER {
            assert_eq!(d(input).to_string(), *want, "{input}");
        }
    }

    #[test]
    fn refuses_what_the_module_refuses() {
        for bad in [
            "",
            ".",
            "-1",
            "+1",
            " 1",
            "1 ",
            "nan",
            "inf",
            "1e",
            "1e-",
            "0x10",
            "1.5.",
            "1,5",
            "18446744073709551616",
            "1e20",
            "1e-31",
            "1e999",
        ] {
            assert!(bad.parse::<Decimal>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn floats_take_their_shortest_form() {
        assert_eq!(Decimal::try_from(0.5).unwrap().to_string(), "0.5");
        assert_eq!(Decimal::try_from(0.1).unwrap().to_string(), "0.1");
        assert_eq!(Decimal::try_from(0.3).unwrap().to_string(), "0.3");
        assert_eq!(Decimal::try_from(1e4).unwrap().to_string(), "10000");
        assert_eq!(Decimal::try_from(1e-7).unwrap().to_string(), "0.0000001");
        assert_eq!(Decimal::try_from(-0.0).unwrap(), Decimal::ZERO);
        // The sum is a different f64 than 0.3, and is sent as that number.
        assert_eq!(
            Decimal::try_from(0.1 + 0.2).unwrap().to_string(),
            "0.30000000000000004"
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 1e21] {
            assert!(Decimal::try_from(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parts_and_durations() {
        assert_eq!(Decimal::new(5, 1).unwrap(), d("0.5"));
        assert_eq!(Decimal::new(50, 2).unwrap(), d("0.5"));
        assert_eq!(Decimal::new(25, 3).unwrap().to_string(), "0.025");
        assert!(Decimal::new(1, 31).is_err());
        let secs = |ms| Decimal::from_duration_secs(Duration::from_millis(ms)).unwrap();
        assert_eq!(secs(250).to_string(), "0.25");
        assert_eq!(secs(60_000).to_string(), "60");
        assert_eq!(secs(1).to_string(), "0.001");
        assert_eq!(
            Decimal::from_duration_secs(Duration::from_nanos(1))
                .unwrap()
                .to_string(),
            "0.000000001"
        );
        assert_eq!(format!("{:?}", d("0.5")), "Decimal(0.5)");
    }

    #[test]
    fn interval_is_rounded_up() {
        // 3 per second: 333,333,334 ns, as the module computes.
        let (ns, small) = d("3").interval_ns(Duration::from_secs(1)).unwrap();
        assert_eq!((ns, small), (333_333_334, false));
        let (ns, _) = d("0.5").interval_ns(Duration::from_secs(1)).unwrap();
        assert_eq!(ns, 2_000_000_000);
        let (_, small) = d("2e9").interval_ns(Duration::from_secs(1)).unwrap();
        assert!(small);
        assert!(Decimal::ZERO.interval_ns(Duration::from_secs(1)).is_none());
    }
}
