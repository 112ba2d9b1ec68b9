//! Every error a command can answer, with its Redis error code first: the
//! module replies with them and the client crate reports them, word for word.

use std::ffi::CStr;

/// A command's error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmdError {
    /// Redis's standard "wrong number of arguments" error.
    WrongArity,
    /// A fixed message, starting with its error code.
    Msg(&'static CStr),
    /// An internal command called by an ordinary client: "ERR <name> is
    /// internal ..." (the module formats it).
    InternalCommand(&'static CStr),
    /// A request names a policy the server does not hold: "ERR no such
    /// policy '<name>'" (the name is valid, so at most 64 bytes).
    UnknownPolicy(PolicyName),
}

/// A policy name carried in an error, without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyName {
    bytes: [u8; crate::bounds::MAX_POLICY_NAME],
    len: u8,
}

impl PolicyName {
    /// The name, cut at 64 bytes.
    pub fn new(name: &[u8]) -> PolicyName {
        let mut bytes = [0u8; crate::bounds::MAX_POLICY_NAME];
        let n = name.len().min(bytes.len());
        if let (Some(to), Some(from)) = (bytes.get_mut(..n), name.get(..n)) {
            to.copy_from_slice(from);
        }
        PolicyName {
            bytes,
            len: u8::try_from(n).unwrap_or(0),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or(&[])
    }
}

impl CmdError {
    /// The message text (the code first), as a client sees it.
    pub fn text(&self) -> String {
        match self {
            CmdError::WrongArity => "ERR wrong number of arguments".to_string(),
            CmdError::Msg(m) => m.to_string_lossy().into_owned(),
            CmdError::InternalCommand(name) => format!(
                "ERR {} is internal: it only applies what a master sends or an AOF holds",
                name.to_string_lossy()
            ),
            CmdError::UnknownPolicy(name) => format!(
                "ERR no such policy '{}': RL.POLICY SET defines it",
                String::from_utf8_lossy(name.as_bytes())
            ),
        }
    }
}

macro_rules! errors {
    ($($name:ident = $text:literal;)*) => {
        $(pub const $name: CmdError = CmdError::Msg($text);)*
        /// Every message above, for the test that checks their codes.
        #[cfg(test)]
        const ALL: &[CmdError] = &[$($name),*];
    };
}

errors! {
    SYNTAX = c"ERR syntax error";
    WRONGTYPE = c"WRONGTYPE Operation against a key holding the wrong kind of value";
    INTERNAL = c"ERR internal error";

    CAPACITY = c"ERR capacity must be an integer between 1 and 9223372036854775807";
    RATE = c"ERR rate must be a positive number (such as 0.5, 100 or 1e4)";
    RATE_TOO_HIGH = c"ERR rate must be at most one token per nanosecond of PERIOD";
    BUCKET_TOO_LONG = c"ERR capacity / rate must refill within 100 years";
    COST = c"ERR cost must be an integer between 0 and 9223372036854775807";
    PERIOD = c"ERR PERIOD must be a positive number of seconds";

    LIMIT = c"ERR limit must be an integer between 1 and 9223372036854775807";
    WINDOW = c"ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years";
    COST_OPTION = c"ERR COST must be an integer between 0 and 9223372036854775807";
    BLOCK = c"ERR BLOCK must be a timeout in milliseconds between 0 and 2678400000 (0 waits without limit)";
    BLOCK_MODE = c"ERR BLOCK waits to take units: it cannot be used with DRYRUN or REFUND";
    TRYAGAIN = c"TRYAGAIN the key's slot moved while the request waited in line; nothing was taken";
    // The code Redis itself ends waits with when it becomes a replica:
    // Valkey 9 leaves BLOCK's waiters to the module, and clients retry
    // UNBLOCKED as they do on every other server.
    NOT_MASTER = c"UNBLOCKED this server became a replica while the request waited in line; nothing was taken";

    BURST = c"ERR burst must be an integer between 1 and 9223372036854775807";
    GCRA_PERIOD = c"ERR period must be a positive number of seconds";
    GCRA_RATE_TOO_HIGH = c"ERR rate must be at most one per nanosecond of period";
    GCRA_TOO_LONG = c"ERR burst / rate must refill within 100 years";

    FIXED_WINDOW = c"ERR window must be MINUTE, HOUR, DAY, WEEK, MONTH or a positive number of seconds with at most 3 decimals, at most 10 years";
    TZ_UNKNOWN = c"ERR TZ must be an IANA time zone name such as America/New_York";
    TZ_NEEDS_UNIT = c"ERR TZ needs a calendar window: MINUTE, HOUR, DAY, WEEK or MONTH";

    CELL_MAX_BURST = c"ERR max_burst must be an integer between 0 and 9223372036854775806";
    CELL_COUNT = c"ERR count_per_period must be an integer between 1 and 9223372036854775807";
    CELL_PERIOD = c"ERR period must be an integer number of seconds between 1 and 9223372036854775807";
    CELL_QUANTITY = c"ERR quantity must be an integer between 0 and 9223372036854775807";
    CELL_TOO_LONG = c"ERR (max_burst + 1) * period / count_per_period must be at most 100 years";
    GCRA_TOKENS_PER_PERIOD = c"ERR tokens_per_period must be an integer between 1 and 9223372036854775807";
    GCRA_CMD_PERIOD = c"ERR period must be a number of seconds of at least 1, with at most 6 decimals";
    GCRA_TOKENS = c"ERR TOKENS must be an integer between 0 and 9223372036854775807";
    GCRA_CMD_TOO_LONG = c"ERR (max_burst + 1) * period / tokens_per_period must be at most 100 years";

    ALGORITHM = c"ERR each limit is a key, then TOKENBUCKET, SLIDING, GCRA, FIXED, CONCURRENCY or POLICY";
    LEASE = c"ERR lease_seconds must be a positive number of seconds with at most 9 decimals, at most 10 years";
    LEASE_ID = c"ERR lease_id must be an integer between 1 and 9223372036854775807";
    ALL_ONE_CONCURRENCY = c"ERR RL.ALL takes at most one CONCURRENCY limit";
    CONCURRENCY_REFUND = c"ERR a CONCURRENCY limit takes no COST and no REFUND: RL.RELEASE gives a slot back";

    ESTIMATE = c"ERR ESTIMATE must be an integer between 0 and 9223372036854775807";
    ESTIMATE_NEEDS_LEASE = c"ERR ESTIMATE needs a CONCURRENCY limit in the same call: its lease is the reservation";
    ESTIMATE_CONCURRENCY = c"ERR a CONCURRENCY limit takes no ESTIMATE: its lease is the reservation";
    ESTIMATE_KEY = c"ERR a key reserved on (ESTIMATE) must be at most 512 bytes";
    SETTLE_KEYS = c"ERR the reservation was made on other keys: RL.SETTLE names every key it reserved on, once";
    ACTUAL = c"ERR ACTUAL must be an integer between 0 and 9223372036854775807";
    ESTIMATE_COST = c"ERR a clause takes COST or ESTIMATE, not both";
    ESTIMATE_REFUND = c"ERR ESTIMATE reserves units: RL.SETTLE gives back what was not used, not REFUND";
    ESTIMATE_BLOCK = c"ERR ESTIMATE reserves at once or not at all: it cannot be used with BLOCK";

    POLICY_NAME = c"ERR policy name must be 1 to 64 characters of A-Z a-z 0-9 _ - .";
    POLICY_ALGORITHM = c"ERR a policy is TOKENBUCKET, SLIDING, GCRA, FIXED or CONCURRENCY followed by that limit's arguments";
    POLICY_KIND = c"ERR a policy keeps its algorithm: RL.POLICY DEL it first to change it";
    POLICY_FULL = c"ERR too many policies: raise ratelimit.max-policies or RL.POLICY DEL some";
    LOCKOUT = c"ERR LOCKOUT must be a positive number of seconds with at most 9 decimals, at most 10 years";
    LOCKOUT_LEASES = c"ERR LOCKOUT needs a rate limit: a CONCURRENCY policy cannot lock out";
    ALL_DISTINCT = c"ERR RL.ALL needs a different key for each LIMIT";
    TOO_MANY_LIMITS = c"ERR too many limits in one call: at most ratelimit.max-limits (CONFIG GET ratelimit.max-limits)";
    POLICIES_ONLY = c"ERR RL.TAKEALL takes POLICY clauses only (LIMIT key POLICY name): a limit written inline needs RL.ALL";
    LEASE_LIMIT = c"ERR a CONCURRENCY limit must be at most ratelimit.max-leases slots (CONFIG GET ratelimit.max-leases)";
    POLICY_TOO_LONG = c"ERR a policy definition has at most 16 words of at most 64 bytes each";

    STATE_PAYLOAD = c"ERR state is not a valid limiter state";
    UPDATE = c"ERR not a valid window update";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_starts_with_its_code() {
        for &e in ALL {
            let CmdError::Msg(m) = e else { continue };
            let s = m.to_str().unwrap();
            assert!(
                s.starts_with("ERR ")
                    || s.starts_with("WRONGTYPE ")
                    || s.starts_with("TRYAGAIN ")
                    || s.starts_with("UNBLOCKED "),
                "{s}"
            );
        }
    }
}
