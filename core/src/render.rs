//! The grammar written out: the words the module reads, from values.
//!
//! [`grammar`](crate::grammar) reads words into limits; this module writes
//! them, from the same tables (each algorithm's [`Syntax`], the request
//! options, the rules of a policy), so whoever renders a limit here sends
//! exactly what the module reads. One rendering of a limit ([`LimitArgs`])
//! serves its own command, an RL.ALL clause and a policy's definition; the
//! client checks its policies by reading these words back with the
//! module's grammar ([`LimitArgs::read`]). Numbers are written in the
//! canonical form a stored definition keeps (plain decimals, keywords in
//! capitals), so a definition rendered here is the one `RL.POLICY GET`
//! answers.
//!
//! Words go to a sink, `FnMut(&[u8])`: a command being built, a list.

use crate::algo::calendar::Unit;
use crate::error::CmdError;
use crate::grammar::{
    read_definition, RequestArgs, Settings, Syntax, BLOCK, CONCURRENCY, COST, DEFAULT_COST, DRYRUN,
    ESTIMATE, FIXED, GCRA, LIMIT_CLAUSE, MAX_OPTIONS, MAX_PARAMS, POLICY_CLAUSE, REFUND,
    SETTLE_ACTUAL, SETTLE_LEASE, SLIDING, TOKENBUCKET, TOKENBUCKET_PERIOD,
};
use crate::limit::Spec;
use crate::num::Decimal;
use crate::policy::{LOCKOUT, SHADOW};

/// One value, as it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Arg<'a> {
    /// Left out (an option not given).
    #[default]
    Absent,
    /// An integer.
    Int(u64),
    /// A decimal, in its plain form (`0.25`, `86400`).
    Decimal(Decimal),
    /// A calendar unit's keyword.
    Unit(Unit),
    /// A name, as given (a time zone).
    Text(&'a str),
}

impl Arg<'_> {
    fn write(&self, out: &mut impl FnMut(&[u8])) {
        match self {
            Arg::Absent => {}
            Arg::Int(v) => out(v.to_string().as_bytes()),
            Arg::Decimal(d) => out(d.to_string().as_bytes()),
            Arg::Unit(u) => out(u.keyword().as_bytes()),
            Arg::Text(t) => out(t.as_bytes()),
        }
    }
}

/// One limit as values, in its syntax's order: its positional arguments,
/// then its options (left out when absent, or when they hold the default).
#[derive(Debug, Clone, Copy)]
pub struct LimitArgs<'a> {
    pub syntax: &'static Syntax,
    params: [Arg<'a>; MAX_PARAMS],
    options: [Arg<'a>; MAX_OPTIONS],
}

impl<'a> LimitArgs<'a> {
    /// `TOKENBUCKET capacity rate [PERIOD seconds]` (PERIOD left out when
    /// it is the default, one second).
    pub fn token_bucket(capacity: u64, rate: Decimal, period: Decimal) -> Self {
        let period = if period == TOKENBUCKET_PERIOD {
            Arg::Absent
        } else {
            Arg::Decimal(period)
        };
        LimitArgs {
            syntax: &TOKENBUCKET,
            params: [Arg::Int(capacity), Arg::Decimal(rate), Arg::Absent],
            options: [period],
        }
    }

    /// `SLIDING limit window`
    pub fn sliding(limit: u64, window: Decimal) -> Self {
        LimitArgs {
            syntax: &SLIDING,
            params: [Arg::Int(limit), Arg::Decimal(window), Arg::Absent],
            options: [Arg::Absent],
        }
    }

    /// `GCRA burst rate period`
    pub fn gcra(burst: u64, rate: Decimal, period: Decimal) -> Self {
        LimitArgs {
            syntax: &GCRA,
            params: [Arg::Int(burst), Arg::Decimal(rate), Arg::Decimal(period)],
            options: [Arg::Absent],
        }
    }

    /// `FIXED limit window [TZ zone]`: the window is a length in seconds
    /// ([`Arg::Decimal`]) or a calendar unit ([`Arg::Unit`]).
    pub fn fixed(limit: u64, window: Arg<'a>, zone: Option<&'a str>) -> Self {
        LimitArgs {
            syntax: &FIXED,
            params: [Arg::Int(limit), window, Arg::Absent],
            options: [zone.map_or(Arg::Absent, Arg::Text)],
        }
    }

    /// `CONCURRENCY limit lease_seconds`
    pub fn concurrency(limit: u64, lease: Decimal) -> Self {
        LimitArgs {
            syntax: &CONCURRENCY,
            params: [Arg::Int(limit), Arg::Decimal(lease), Arg::Absent],
            options: [Arg::Absent],
        }
    }

    /// Its params, the cost where the syntax reads it as a positional
    /// argument, then its options.
    fn body(&self, cost: Option<u64>, out: &mut impl FnMut(&[u8])) {
        for (_, arg) in self.syntax.params.iter().zip(&self.params) {
            arg.write(out);
        }
        if let Some(cost) = cost {
            Arg::Int(cost).write(out);
        }
        for (param, arg) in self.syntax.options.iter().zip(&self.options) {
            if let (Some(token), false) = (param.token, *arg == Arg::Absent) {
                out(token.as_bytes());
                arg.write(out);
            }
        }
    }

    /// The definition: the algorithm's keyword, then what follows the key
    /// in its own command, cost left out. What an RL.ALL clause holds
    /// after its key, and a policy before its rules.
    pub fn definition(&self, out: &mut impl FnMut(&[u8])) {
        out(self.syntax.keyword.as_bytes());
        self.body(None, out);
    }

    /// What follows the key in the algorithm's own command
    /// ([`Syntax::command`]): params, options, then the request's.
    pub fn command(&self, request: &RequestArgs, out: &mut impl FnMut(&[u8])) {
        let cost = self
            .syntax
            .cost_positional
            .then(|| request.cost.unwrap_or(DEFAULT_COST));
        self.body(cost, out);
        request.render(!self.syntax.cost_positional, out);
    }

    /// The definition's words.
    pub fn words(&self) -> Vec<Vec<u8>> {
        let mut words = Vec::new();
        self.definition(&mut |w: &[u8]| words.push(w.to_vec()));
        words
    }

    /// The limit the module builds from these words (read by its own
    /// grammar), or the error it answers them.
    pub fn read(&self, settings: Settings) -> Result<Spec, CmdError> {
        let words = self.words();
        let w: Vec<&[u8]> = words.iter().skip(1).map(Vec::as_slice).collect();
        read_definition(self.syntax, &w[..], settings)
    }
}

impl RequestArgs {
    /// The request's options: `COST n` (with `cost`; a cost left out is
    /// [`DEFAULT_COST`]), `BLOCK ms`, `DRYRUN`, `REFUND`.
    pub fn render(&self, cost: bool, out: &mut impl FnMut(&[u8])) {
        if let (Some(n), true) = (self.cost, cost) {
            out(COST.as_bytes());
            Arg::Int(n).write(out);
        }
        if let Some(ms) = self.block {
            out(BLOCK.as_bytes());
            Arg::Int(ms).write(out);
        }
        if self.dry_run {
            out(DRYRUN.as_bytes());
        }
        if self.refund {
            out(REFUND.as_bytes());
        }
    }
}

/// What an RL.ALL clause limits by, as written.
#[derive(Debug, Clone, Copy)]
pub enum ClauseArgs<'a> {
    /// `<algorithm> args...`
    Inline(LimitArgs<'a>),
    /// `POLICY name`
    Policy(&'a str),
}

/// What an RL.ALL clause charges, after its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Charge {
    /// Nothing written: the call's cost.
    #[default]
    Call,
    /// `COST n`: the clause's own cost.
    Cost(u64),
    /// `ESTIMATE n`: a reservation of `n` units, settled later (RL.SETTLE).
    Estimate(u64),
}

impl From<Option<u64>> for Charge {
    /// A clause's own cost, if any.
    fn from(cost: Option<u64>) -> Charge {
        cost.map_or(Charge::Call, Charge::Cost)
    }
}

/// RL.ALL's arguments: the request's options, then a clause per limit,
/// `LIMIT key <limit> [COST n | ESTIMATE n]` (a clause's own cost, or its
/// estimate).
pub fn all<'a>(
    request: &RequestArgs,
    clauses: impl IntoIterator<Item = (&'a [u8], ClauseArgs<'a>, Charge)>,
    out: &mut impl FnMut(&[u8]),
) {
    request.render(true, out);
    for (key, limit, cost) in clauses {
        out(LIMIT_CLAUSE.as_bytes());
        out(key);
        match limit {
            ClauseArgs::Inline(args) => args.definition(out),
            ClauseArgs::Policy(name) => {
                out(POLICY_CLAUSE.as_bytes());
                out(name.as_bytes());
            }
        }
        let (word, n) = match cost {
            Charge::Call => continue,
            Charge::Cost(n) => (COST, n),
            Charge::Estimate(n) => (ESTIMATE, n),
        };
        out(word.as_bytes());
        Arg::Int(n).write(out);
    }
}

/// RL.SETTLE's arguments after its keys (`RL.SETTLE anchor key [key ...]
/// LEASE lease_id ACTUAL n`): the reservation's handle and the actual cost.
pub fn settle(lease_id: u64, actual: u64, out: &mut impl FnMut(&[u8])) {
    out(SETTLE_LEASE.as_bytes());
    Arg::Int(lease_id).write(out);
    out(SETTLE_ACTUAL.as_bytes());
    Arg::Int(actual).write(out);
}

/// A policy's definition, as `RL.POLICY SET name` takes it and `RL.POLICY
/// GET` answers it: the limit's definition, then `[SHADOW] [LOCKOUT
/// seconds]`.
pub fn policy_definition(
    limit: &LimitArgs<'_>,
    shadow: bool,
    lockout: Option<Decimal>,
    out: &mut impl FnMut(&[u8]),
) {
    limit.definition(out);
    if shadow {
        out(SHADOW.as_bytes());
    }
    if let Some(l) = lockout {
        out(LOCKOUT.as_bytes());
        Arg::Decimal(l).write(out);
    }
}

/// `CL.THROTTLE`'s arguments after the key (redis-cell's grammar):
/// `max_burst count_per_period period quantity`.
pub fn throttle(
    max_burst: u64,
    count_per_period: u64,
    period: Decimal,
    quantity: u64,
    out: &mut impl FnMut(&[u8]),
) {
    for arg in [
        Arg::Int(max_burst),
        Arg::Int(count_per_period),
        Arg::Decimal(period),
        Arg::Int(quantity),
    ] {
        arg.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::{read_all, read_command, read_throttle, PolicyLookup, ALGORITHMS};
    use crate::policy;

    fn text(render: impl FnOnce(&mut dyn FnMut(&[u8]))) -> String {
        let mut words: Vec<String> = Vec::new();
        render(&mut |w: &[u8]| words.push(String::from_utf8_lossy(w).into_owned()));
        words.join(" ")
    }

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn limits() -> Vec<LimitArgs<'static>> {
        vec![
            LimitArgs::token_bucket(10, dec("1"), dec("1")),
            LimitArgs::token_bucket(10, dec("0.5"), dec("60")),
            LimitArgs::sliding(100, dec("0.25")),
            LimitArgs::gcra(5, dec("2.5"), dec("0.1")),
            LimitArgs::fixed(10, Arg::Decimal(dec("60.5")), None),
            LimitArgs::fixed(500, Arg::Unit(Unit::Day), Some("America/New_York")),
            LimitArgs::concurrency(3, dec("30")),
        ]
    }

    #[test]
    fn definitions_are_written_as_stored() {
        let defs: Vec<String> = limits()
            .iter()
            .map(|l| text(|out| l.definition(&mut |w| out(w))))
            .collect();
        assert_eq!(
            defs,
            [
                "TOKENBUCKET 10 1",
                "TOKENBUCKET 10 0.5 PERIOD 60",
                "SLIDING 100 0.25",
                "GCRA 5 2.5 0.1",
                "FIXED 10 60.5",
                "FIXED 500 DAY TZ America/New_York",
                "CONCURRENCY 3 30",
            ]
        );
        // The words a stored policy keeps (its canonical form) are the
        // ones rendered here, and they read as the same limit.
        for l in limits() {
            let mut words = Vec::new();
            policy_definition(&l, true, Some(dec("2.5")), &mut |w| words.push(w.to_vec()));
            if l.syntax.algorithm == crate::grammar::Algorithm::Concurrency {
                words.truncate(words.len() - 2);
            }
            let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
            let stored = policy::read_definition(&w[..], 0, Settings::default()).unwrap();
            assert_eq!(stored.words, words);
            assert_eq!(
                format!("{:?}", stored.spec),
                format!("{:?}", l.read(Settings::default()).unwrap())
            );
        }
    }

    #[test]
    fn commands_read_back_as_rendered() {
        let requests = [
            RequestArgs::default(),
            RequestArgs {
                cost: Some(3),
                dry_run: true,
                ..RequestArgs::default()
            },
            RequestArgs {
                cost: Some(0),
                refund: true,
                ..RequestArgs::default()
            },
            RequestArgs {
                block: Some(50),
                ..RequestArgs::default()
            },
        ];
        for l in limits() {
            for req in requests {
                if !l.syntax.costs && (req.cost.is_some() || req.refund) {
                    continue;
                }
                let mut words = vec![l.syntax.command.as_bytes().to_vec(), b"k".to_vec()];
                l.command(&req, &mut |w| words.push(w.to_vec()));
                let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
                let (spec, read) = read_command(l.syntax, &w[..], Settings::default()).unwrap();
                let mut expected = req;
                if l.syntax.cost_positional {
                    expected.cost = Some(req.cost.unwrap_or(DEFAULT_COST));
                }
                assert_eq!(
                    read,
                    expected,
                    "{}",
                    text(|o| l.command(&req, &mut |w| o(w)))
                );
                assert_eq!(
                    format!("{spec:?}"),
                    format!("{:?}", l.read(Settings::default()).unwrap())
                );
            }
        }
        let bucket = LimitArgs::token_bucket(10, dec("1"), dec("60"));
        let dry = RequestArgs {
            dry_run: true,
            ..RequestArgs::default()
        };
        assert_eq!(
            text(|o| bucket.command(&dry, &mut |w| o(w))),
            "10 1 1 PERIOD 60 DRYRUN"
        );
        assert!(ALGORITHMS.iter().all(|s| s.options.len() <= MAX_OPTIONS));
    }

    #[test]
    fn all_and_throttle_read_back_as_rendered() {
        let ls = limits();
        let request = RequestArgs {
            cost: Some(2),
            dry_run: true,
            ..RequestArgs::default()
        };
        let keys: Vec<String> = (0..ls.len()).map(|i| format!("k{i}")).collect();
        let mut clauses: Vec<(&[u8], ClauseArgs<'_>, Charge)> = keys
            .iter()
            .zip(&ls)
            .map(|(k, l)| (k.as_bytes(), ClauseArgs::Inline(*l), Charge::Call))
            .collect();
        clauses.push((b"p", ClauseArgs::Policy("api"), Charge::Cost(0)));
        let mut words = vec![b"RL.ALL".to_vec()];
        all(&request, clauses, &mut |w| words.push(w.to_vec()));
        let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        let lookup = PolicyLookup {
            resolve: |_: &[u8]| LimitArgs::sliding(1, dec("1")).read(Settings::default()),
            spec: |s: &Spec| s,
        };
        let read = read_all(&w[..], Settings::default(), lookup).unwrap();
        assert_eq!(read.request, request);
        assert_eq!(read.clauses.len(), ls.len() + 1);
        assert_eq!(read.clauses.last().map(|c| c.cost), Some(Some(0)));

        let mut words = vec![b"CL.THROTTLE".to_vec(), b"k".to_vec()];
        throttle(15, 30, dec("60"), 1, &mut |w| words.push(w.to_vec()));
        let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        assert_eq!(read_throttle(&w[..]).unwrap().1, 1);
    }

    #[test]
    fn reservations_read_back_as_rendered() {
        let anchor = LimitArgs::concurrency(3, dec("30"));
        let tpm = LimitArgs::token_bucket(100, dec("100"), dec("60"));
        let clauses = [
            (&b"a"[..], ClauseArgs::Inline(anchor), Charge::Call),
            (&b"b"[..], ClauseArgs::Inline(tpm), Charge::Estimate(70)),
            (&b"c"[..], ClauseArgs::Policy("rpm"), Charge::Cost(1)),
        ];
        let mut words = vec![b"RL.ALL".to_vec()];
        all(&RequestArgs::default(), clauses, &mut |w| {
            words.push(w.to_vec())
        });
        let w: Vec<&[u8]> = words.iter().map(Vec::as_slice).collect();
        let lookup = PolicyLookup {
            resolve: |_: &[u8]| LimitArgs::sliding(1, dec("1")).read(Settings::default()),
            spec: |s: &Spec| s,
        };
        let read = read_all(&w[..], Settings::default(), lookup).unwrap();
        let got: Vec<(Option<u64>, Option<u64>)> =
            read.clauses.iter().map(|c| (c.cost, c.estimate)).collect();
        assert_eq!(got, [(None, None), (None, Some(70)), (Some(1), None)]);
        assert_eq!(text(|o| settle(7, 90, &mut |w| o(w))), "LEASE 7 ACTUAL 90");
    }
}
