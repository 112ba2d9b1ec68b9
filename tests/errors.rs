//! Bad input on a real server: the exact error text, and nothing written.
#![cfg(test)]

use redis_ratelimit_testkit::*;

const ARITY_TB: &str = "ERR wrong number of arguments for 'RL.TOKENBUCKET' command";
const ARITY_SW: &str = "ERR wrong number of arguments for 'RL.SLIDING' command";

#[rustfmt::skip]
const CASES: &[(&[&str], &str)] = &[
    // arity
    (&["RL.TOKENBUCKET"], ARITY_TB),
    (&["RL.TOKENBUCKET", "k"], ARITY_TB),
    (&["RL.TOKENBUCKET", "k", "10", "1"], ARITY_TB),
    (&["RL.SLIDING", "k", "10"], ARITY_SW),
    // capacity
    (&["RL.TOKENBUCKET", "k", "0", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "-1", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "1.5", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "10x", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "9223372036854775808", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "99999999999999999999999", "1", "1"], "ERR capacity must be an integer between 1 and 9223372036854775807"),
    // rate
    (&["RL.TOKENBUCKET", "k", "10", "0", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "-1", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "nan", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "inf", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "1e999", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "1.5.", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.TOKENBUCKET", "k", "10", "2e9", "1"], "ERR rate must be at most one token per nanosecond of PERIOD"),
    (&["RL.TOKENBUCKET", "k", "10", "1e-20", "1"], "ERR capacity / rate must refill within 100 years"),
    (&["RL.TOKENBUCKET", "k", "9223372036854775807", "1", "1"], "ERR capacity / rate must refill within 100 years"),
    // cost
    (&["RL.TOKENBUCKET", "k", "10", "1", "-1"], "ERR cost must be an integer between 0 and 9223372036854775807"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1.0"], "ERR cost must be an integer between 0 and 9223372036854775807"),
    // options
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "PERIOD"], "ERR syntax error"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "PERIOD", "0"], "ERR PERIOD must be a positive number of seconds"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "PERIOD", "-5"], "ERR PERIOD must be a positive number of seconds"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "PERIOD", "60", "PERIOD", "60"], "ERR syntax error"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "BURST", "60"], "ERR syntax error"),
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "extra"], "ERR syntax error"),
    // sliding
    (&["RL.SLIDING", "k", "0", "60"], "ERR limit must be an integer between 1 and 9223372036854775807"),
    (&["RL.SLIDING", "k", "ten", "60"], "ERR limit must be an integer between 1 and 9223372036854775807"),
    (&["RL.SLIDING", "k", "10", "0"], "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.SLIDING", "k", "10", "0.0005"], "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.SLIDING", "k", "10", "-60"], "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.SLIDING", "k", "10", "1e10"], "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.SLIDING", "k", "10", "60s"], "ERR window must be a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.SLIDING", "k", "10", "60", "COST"], "ERR syntax error"),
    (&["RL.SLIDING", "k", "10", "60", "COST", "-1"], "ERR COST must be an integer between 0 and 9223372036854775807"),
    (&["RL.SLIDING", "k", "10", "60", "COST", "1", "COST", "1"], "ERR syntax error"),
    (&["RL.SLIDING", "k", "10", "60", "WEIGHT", "1"], "ERR syntax error"),
    // gcra
    (&["RL.GCRA", "k", "5", "1"], "ERR wrong number of arguments for 'RL.GCRA' command"),
    (&["RL.GCRA", "k", "0", "1", "1"], "ERR burst must be an integer between 1 and 9223372036854775807"),
    (&["RL.GCRA", "k", "5", "0", "1"], "ERR rate must be a positive number (such as 0.5, 100 or 1e4)"),
    (&["RL.GCRA", "k", "5", "1", "0"], "ERR period must be a positive number of seconds"),
    (&["RL.GCRA", "k", "5", "1", "inf"], "ERR period must be a positive number of seconds"),
    (&["RL.GCRA", "k", "5", "1e10", "1"], "ERR rate must be at most one per nanosecond of period"),
    (&["RL.GCRA", "k", "5", "1", "1e20"], "ERR burst / rate must refill within 100 years"),
    (&["RL.GCRA", "k", "5", "1", "1", "COST"], "ERR syntax error"),
    (&["RL.GCRA", "k", "5", "1", "1", "COST", "x"], "ERR COST must be an integer between 0 and 9223372036854775807"),
    (&["RL.GCRA", "k", "5", "1", "1", "PERIOD", "1"], "ERR syntax error"),
    // fixed
    (&["RL.FIXED", "k", "5"], "ERR wrong number of arguments for 'RL.FIXED' command"),
    (&["RL.FIXED", "k", "0", "60"], "ERR limit must be an integer between 1 and 9223372036854775807"),
    (&["RL.FIXED", "k", "5", "FORTNIGHT"], "ERR window must be MINUTE, HOUR, DAY, WEEK, MONTH or a positive number of seconds with at most 3 decimals, at most 10 years"),
    (&["RL.FIXED", "k", "5", "DAY", "TZ", "Nowhere/Land"], "ERR TZ must be an IANA time zone name such as America/New_York"),
    (&["RL.FIXED", "k", "5", "DAY", "TZ", "Europe/Nowhere\u{e9}"], "ERR TZ must be an IANA time zone name such as America/New_York"),
    (&["RL.FIXED", "k", "5", "10", "TZ", "UTC"], "ERR TZ needs a calendar window: MINUTE, HOUR, DAY, WEEK or MONTH"),
    (&["RL.FIXED", "k", "5", "DAY", "COST", "1", "COST", "1"], "ERR syntax error"),
    // flags
    (&["RL.TOKENBUCKET", "k", "10", "1", "1", "DRYRUN", "DRYRUN"], "ERR syntax error"),
    (&["RL.SLIDING", "k", "10", "60", "REFUND", "REFUND"], "ERR syntax error"),
    // CL.THROTTLE
    (&["CL.THROTTLE", "k", "15", "30"], "ERR wrong number of arguments for 'CL.THROTTLE' command"),
    (&["CL.THROTTLE", "k", "15", "30", "60", "1", "1"], "ERR wrong number of arguments for 'CL.THROTTLE' command"),
    (&["CL.THROTTLE", "k", "15", "30", "60", "-1"], "ERR quantity must be an integer between 0 and 9223372036854775807"),
    (&["CL.THROTTLE", "k", "9223372036854775807", "1", "1"], "ERR max_burst must be an integer between 0 and 9223372036854775806"),
    (&["CL.THROTTLE", "k", "1", "1", "9223372036854775807"], "ERR (max_burst + 1) * period / count_per_period must be at most 100 years"),
    // RL.ALL
    (&["RL.ALL", "LIMIT", "k", "SLIDING"], "ERR wrong number of arguments for 'RL.ALL' command"),
    (&["RL.ALL", "LIMIT", "k", "SLIDING", "5", "60", "LIMIT"], "ERR syntax error"),
    (&["RL.ALL", "LIMIT", "k", "SLIDING", "5", "60", "LIMIT", "j"], "ERR each limit is a key, then TOKENBUCKET, SLIDING, GCRA, FIXED, CONCURRENCY or POLICY"),
    // the internal effect commands refuse ordinary clients, whatever they carry
    // (tests/internal.rs: what they validate, from a master and from an AOF)
    (&["RL.SETSTATE", "k", "garbage"], "ERR RL.SETSTATE is internal: it only applies what a master sends or an AOF holds"),
    (&["RL.SETSTATE", "k", "B\x01\0\0\0\0\0\0\0"], "ERR RL.SETSTATE is internal: it only applies what a master sends or an AOF holds"),
    (&["RL.SETSTATE", "k", "bucket", "1"], "ERR wrong number of arguments for 'RL.SETSTATE' command"),
    (&["RL.WINDOWADD", "k", "1"], "ERR RL.WINDOWADD is internal: it only applies what a master sends or an AOF holds"),
    (&["RL.WINDOWADD", "k", "1", "1000", "1", "1", "0"], "ERR wrong number of arguments for 'RL.WINDOWADD' command"),
    (&["RL.WINDOWREFUND", "k", "x"], "ERR RL.WINDOWREFUND is internal: it only applies what a master sends or an AOF holds"),
];

#[test]
fn every_bad_input_gets_its_error_and_writes_nothing() {
    let s = Server::start();
    let mut c = s.connect();
    let before = dirty(&mut c);
    for (args, expected) in CASES {
        assert_eq!(&err(&mut c, args), expected, "{args:?}");
        assert_eq!(int(&mut c, &["EXISTS", "k"]), 0, "{args:?} created the key");
    }
    assert_eq!(dirty(&mut c), before);
    // Errors are counted under the ERR code in INFO errorstats.
    let stats: String = redis::cmd("INFO").arg("errorstats").query(&mut c).unwrap();
    assert!(stats.contains("errorstat_ERR:"), "{stats}");
    assert!(
        !stats
            .lines()
            .any(|l| l.starts_with("errorstat_") && !l.starts_with("errorstat_ERR:")),
        "{stats}"
    );
}

#[test]
fn errors_on_an_existing_key_leave_it_as_it_was() {
    let s = Server::start();
    let mut c = s.connect();
    rl(&mut c, &["RL.TOKENBUCKET", "k", "10", "1", "3"]);
    let dump = bytes(&mut c, &["DUMP", "k"]);
    let before = dirty(&mut c);
    for (args, _) in CASES
        .iter()
        .filter(|(a, _)| a.len() > 2 && a[0] == "RL.TOKENBUCKET")
    {
        let _ = err(&mut c, args);
    }
    assert_eq!(bytes(&mut c, &["DUMP", "k"]), dump);
    assert_eq!(dirty(&mut c), before);
}

#[test]
fn a_panic_inside_a_handler_is_an_error_not_a_crash() {
    let mut s = Server::start();
    let mut c = s.connect();
    assert_eq!(err(&mut c, &["RL.TEST.PANIC"]), "ERR internal error");
    assert!(s.alive());
    assert_eq!(
        call(&mut c, &["PING"]),
        Ok(Value::SimpleString("PONG".into()))
    );
    assert_eq!(rl(&mut c, &["RL.TOKENBUCKET", "k", "1", "1", "1"])[0], 1);
    // The operator learns of it: a warning in the server's log naming the
    // command, the place and the message.
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("ratelimit: a panic in"))
        .unwrap_or_else(|| panic!("no panic logged:\n{log}"));
    assert!(line.contains(" # "), "not at warning level: {line}");
    assert!(
        line.contains("a panic in RL.TEST.PANIC at src/commands/testing.rs:")
            && line.contains("a deliberate panic inside a handler"),
        "{line}"
    );
}
