//! Every command's name, written once: the module registers these, the
//! client sends them, the grammar names its commands with them.
//!
//! A [`Name`] holds its text with a trailing NUL, so one constant serves
//! as the `&str` a client sends and as the `&CStr` the module API takes.
//! A subcommand's name is `parent|sub`, as `COMMAND INFO` writes it.

use core::ffi::CStr;

/// A command's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Name {
    with_nul: &'static str,
}

impl Name {
    /// `with_nul` ends with its single NUL (the [`names!`] macro adds it).
    const fn new(with_nul: &'static str) -> Name {
        Name { with_nul }
    }

    /// The name as sent: `RL.TAKE`, `RL.POLICY|SET`.
    pub const fn as_str(&self) -> &'static str {
        let bytes = self.with_nul.as_bytes();
        let (text, _) = bytes.split_at(bytes.len().saturating_sub(1));
        match core::str::from_utf8(text) {
            Ok(s) => s,
            Err(_) => "",
        }
    }

    /// The name for the module API.
    pub const fn as_cstr(&self) -> &'static CStr {
        match CStr::from_bytes_with_nul(self.with_nul.as_bytes()) {
            Ok(c) => c,
            Err(_) => c"",
        }
    }

    /// A subcommand's parent and its own word (`RL.POLICY`, `SET`); the
    /// name alone for a command.
    pub fn parts(&self) -> (&'static str, Option<&'static str>) {
        match self.as_str().split_once('|') {
            Some((parent, sub)) => (parent, Some(sub)),
            None => (self.as_str(), None),
        }
    }
}

macro_rules! names {
    ($($(#[$doc:meta])* $id:ident = $text:literal;)*) => {
        $($(#[$doc])* pub const $id: Name = Name::new(concat!($text, "\0"));)*
    };
}

names! {
    /// A token bucket.
    TOKENBUCKET = "RL.TOKENBUCKET";
    /// An exact sliding window.
    SLIDING = "RL.SLIDING";
    /// The generic cell rate algorithm.
    GCRA = "RL.GCRA";
    /// A fixed or calendar window.
    FIXED = "RL.FIXED";
    /// A concurrency lease.
    ACQUIRE = "RL.ACQUIRE";
    /// A lease given back.
    RELEASE = "RL.RELEASE";
    /// A lease extended.
    RENEW = "RL.RENEW";
    /// Several limits, all or nothing.
    ALL = "RL.ALL";
    /// A reservation settled at its actual cost.
    SETTLE = "RL.SETTLE";
    /// redis-cell's command.
    THROTTLE = "CL.THROTTLE";
    /// The GCRA command announced for Redis 8.8 (registered where the
    /// server has none).
    GCRA_CMD = "GCRA";
    /// A named policy applied to a key.
    TAKE = "RL.TAKE";
    /// Several named policies, all or nothing.
    TAKEALL = "RL.TAKEALL";
    /// The policies' container command.
    POLICY = "RL.POLICY";
    /// Defines a policy.
    POLICY_SET = "RL.POLICY|SET";
    /// A policy's definition.
    POLICY_GET = "RL.POLICY|GET";
    /// Deletes a policy.
    POLICY_DEL = "RL.POLICY|DEL";
    /// Every policy's name.
    POLICY_LIST = "RL.POLICY|LIST";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_name_two_forms() {
        assert_eq!(TAKE.as_str(), "RL.TAKE");
        assert_eq!(TAKE.as_cstr(), c"RL.TAKE");
        assert_eq!(POLICY_SET.parts(), ("RL.POLICY", Some("SET")));
        assert_eq!(ALL.parts(), ("RL.ALL", None));
        assert_eq!(POLICY_SET.as_cstr().to_bytes(), b"RL.POLICY|SET");
    }
}
