//! Named policies: a limit's definition kept in the server under a name,
//! with two rules of its own: SHADOW (decide and record as if enforced,
//! answer allowed) and LOCKOUT (a denial locks the key out for a while).
//!
//! A definition is exactly what follows the key in the algorithm's own
//! command, cost left out, read by the same [`Syntax`]: `SLIDING 100 60`,
//! `FIXED 500 DAY TZ America/New_York`, `TOKENBUCKET 10 1 PERIOD 60`,
//! `CONCURRENCY 3 30`, then `[SHADOW] [LOCKOUT seconds]`.

use crate::algo::calendar::Unit;
use crate::bounds::{MAX_POLICY_NAME, MAX_POLICY_WORD, MAX_POLICY_WORDS};
use crate::error::{self, CmdError};
use crate::grammar::{algorithm, is, Algorithm, ArgKind, Cursor, Settings, Syntax, Value, Words};
use crate::limit::{Rules, Spec};
use crate::num::Decimal;
use crate::time::Nanos;

/// A policy's definition, read and checked.
#[derive(Debug, Clone)]
pub struct Definition {
    pub syntax: &'static Syntax,
    pub spec: Spec,
    pub rules: Rules,
    /// The definition in its canonical form: keywords in capitals, numbers
    /// as plain decimals (`060` is `60`, `1e4` is `10000`), a zone's name
    /// as given. What RL.POLICY GET answers, what persistence stores and
    /// what replicas are sent: at most [`MAX_POLICY_WORDS`] words of at
    /// most [`MAX_POLICY_WORD`] bytes.
    pub words: Vec<Vec<u8>>,
}

/// A name for INFO, logs and headers: 1 to 64 of `A-Z a-z 0-9 _ - .`
/// (no `:`, which would end an INFO field's name).
pub fn valid_name(name: &[u8]) -> bool {
    (1..=MAX_POLICY_NAME).contains(&name.len())
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(b))
}

/// Reads a definition from word `start` to the end.
pub fn read_definition<'a, W: Words<'a> + ?Sized>(
    words: &W,
    start: usize,
    settings: Settings,
) -> Result<Definition, CmdError> {
    if words.count().saturating_sub(start) > MAX_POLICY_WORDS {
        return Err(error::POLICY_TOO_LONG);
    }
    let keyword = words.word(start).ok_or(error::POLICY_ALGORITHM)?;
    let syntax = algorithm(keyword).ok_or(error::POLICY_ALGORITHM)?;
    // The grammar reads the canonical words: a number typed with a
    // thousand leading zeros (kept so by an RDB written before numbers
    // were bounded) reads as the plain one, and reading them gives the
    // same limit.
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut i = start;
    while let Some(w) = words.word(i) {
        out.push(canonical(syntax, w));
        i += 1;
    }
    let canonical_words: Vec<&[u8]> = out.iter().map(Vec::as_slice).collect();
    let mut c = Cursor::at(&canonical_words[..], 1);
    let mut rules = Rules::default();
    let mut shadow = false;
    let spec = syntax.read(
        &mut c,
        settings,
        None,
        |_| false,
        |w, c| {
            if is(w, SHADOW) && !shadow {
                shadow = true;
                return Ok(true);
            }
            if is(w, LOCKOUT) && rules.lockout.is_none() {
                let value = c.next_or(error::LOCKOUT)?;
                rules.lockout = match ArgKind::Lease.read(value) {
                    Some(Value::Int(ns)) => Some(Nanos::new(ns)),
                    _ => return Err(error::LOCKOUT),
                };
                return Ok(true);
            }
            Ok(false)
        },
    )?;
    rules.shadow = shadow;
    rules.policy = true;
    if rules.lockout.is_some() && syntax.algorithm == Algorithm::Concurrency {
        return Err(error::LOCKOUT_LEASES);
    }
    if out.iter().any(|w| w.len() > MAX_POLICY_WORD) {
        return Err(error::POLICY_TOO_LONG);
    }
    Ok(Definition {
        syntax,
        spec,
        rules,
        words: out,
    })
}

/// The keyword SHADOW, a rule of a policy.
pub const SHADOW: &str = "SHADOW";
/// The keyword LOCKOUT, a rule of a policy.
pub const LOCKOUT: &str = "LOCKOUT";

/// A definition's word as it is kept: keywords and calendar units in
/// capitals, numbers as plain decimals, anything else (a zone's name) as
/// given. Reading the canonical words gives the same limit.
fn canonical(syntax: &Syntax, w: &[u8]) -> Vec<u8> {
    let keyword = std::iter::once(syntax.keyword)
        .chain(syntax.options.iter().filter_map(|o| o.token))
        .chain([SHADOW, LOCKOUT])
        .find(|k| is(w, k));
    if let Some(k) = keyword {
        return k.as_bytes().to_vec();
    }
    if Unit::parse(w).is_some() {
        return w.to_ascii_uppercase();
    }
    match Decimal::parse_long(w) {
        Some(d) => d.to_string().into_bytes(),
        None => w.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(s: &str) -> Result<Definition, CmdError> {
        let w: Vec<&[u8]> = s.split(' ').map(str::as_bytes).collect();
        read_definition(&w[..], 0, Settings::default())
    }

    #[test]
    fn definitions_are_what_follows_the_key_plus_rules() {
        let d = def("sliding 100 60 shadow lockout 2.5").unwrap();
        assert!(matches!(d.spec, Spec::Window(w) if w.limit == 100));
        assert_eq!(
            d.rules,
            Rules {
                shadow: true,
                lockout: Some(Nanos::from_millis(2500)),
                policy: true,
            }
        );
        let words: Vec<String> = d
            .words
            .iter()
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(words, ["SLIDING", "100", "60", "SHADOW", "LOCKOUT", "2.5"]);
        let d = def("FIXED 500 day tz America/New_York").unwrap();
        assert_eq!(d.words[2], b"DAY");
        assert_eq!(d.words[3], b"TZ");
        assert_eq!(d.words[4], b"America/New_York");
        // Numbers are kept in their plain form, however they were typed:
        // a definition's size is bounded by what it means, not by its text.
        let zeros = format!("SLIDING 10 {}60 LOCKOUT 2.50", "0".repeat(100_000));
        let d = def(&zeros).unwrap();
        assert_eq!(d.words, [&b"SLIDING"[..], b"10", b"60", b"LOCKOUT", b"2.5"]);
        let d = def("TOKENBUCKET 010000 0.5e1 PERIOD 060").unwrap();
        assert_eq!(
            d.words,
            [&b"TOKENBUCKET"[..], b"10000", b"5", b"PERIOD", b"60"]
        );
        let long_zone = format!("FIXED 5 DAY TZ {}", "A".repeat(65));
        assert_eq!(def(&long_zone).unwrap_err(), error::TZ_UNKNOWN);
        let many = format!("SLIDING 10 60{}", " SHADOW".repeat(14));
        assert_eq!(def(&many).unwrap_err(), error::POLICY_TOO_LONG);
        assert!(def("CONCURRENCY 3 30").is_ok());
        assert_eq!(def("LEAKY 1 1").unwrap_err(), error::POLICY_ALGORITHM);
        assert_eq!(def("SLIDING 0 60").unwrap_err(), error::LIMIT);
        assert_eq!(def("SLIDING 10 60 COST 2").unwrap_err(), error::SYNTAX);
        assert_eq!(def("SLIDING 10 60 LOCKOUT 0").unwrap_err(), error::LOCKOUT);
        assert_eq!(
            def("SLIDING 10 60 SHADOW SHADOW").unwrap_err(),
            error::SYNTAX
        );
        assert_eq!(
            def("CONCURRENCY 3 30 LOCKOUT 5").unwrap_err(),
            error::LOCKOUT_LEASES
        );
        assert!(
            valid_name(b"api.v1-day_2")
                && !valid_name(b"")
                && !valid_name(b"a b")
                && !valid_name(b"a:b")
        );
        assert!(!valid_name(&[b'a'; 65]));
    }
}
