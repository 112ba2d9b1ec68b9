//! Traffic that leaves varied limiter state behind, shared by the
//! persistence, replication and crash-recovery tests: whatever it leaves
//! must survive a reload, reach a replica byte for byte, or be counted
//! after a crash.

use super::*;

/// A mix of states: full and partial buckets, logs with run-length counts,
/// a log whose oldest entries were trimmed, refunds (the persistence
/// tests). On the module's test clock an hour ahead of the server's: even
/// the 30 ms window's key outlives the restarts that follow.
pub fn varied_states(c: &mut redis::Connection) {
    let t = clock_start(c);
    for i in 0..20u64 {
        set_clock(c, t + i * 7 * MS);
        rl(
            c,
            &[
                "RL.TOKENBUCKET",
                &format!("b:{}", i % 5),
                "10",
                "2",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["RL.TOKENBUCKET", "b:fast", "1000", "1e4", "7"]);
        rl(
            c,
            &[
                "RL.SLIDING",
                &format!("w:{}", i % 4),
                "50",
                "300",
                "COST",
                &(1 + i % 3).to_string(),
            ],
        );
        rl(c, &["RL.SLIDING", "w:trimmed", "5", "0.03"]);
        rl(
            c,
            &[
                "RL.GCRA",
                &format!("g:{}", i % 3),
                "20",
                "5",
                "60",
                "COST",
                &(1 + i % 2).to_string(),
            ],
        );
        rl(
            c,
            &[
                "RL.FIXED",
                &format!("f:{}", i % 3),
                "100",
                "DAY",
                "TZ",
                "America/New_York",
                "COST",
                &(i % 4).to_string(),
            ],
        );
        rl(c, &["CL.THROTTLE", "cell", "15", "30", "60"]);
        call(
            c,
            &[
                "RL.ALL", "LIMIT", "all:a", "SLIDING", "9", "300", "LIMIT", "all:b", "FIXED", "30",
                "HOUR",
            ],
        )
        .unwrap();
        if i % 5 == 0 {
            rl(
                c,
                &[
                    "RL.SLIDING",
                    &format!("w:{}", i % 4),
                    "50",
                    "300",
                    "COST",
                    "1",
                    "REFUND",
                ],
            );
            rl(
                c,
                &[
                    "RL.FIXED",
                    &format!("f:{}", i % 3),
                    "100",
                    "DAY",
                    "TZ",
                    "America/New_York",
                    "REFUND",
                ],
            );
        }
    }
    real_clock(c);
}

/// `rounds` of every limiter on real time: hot keys denied, cold keys
/// admitted, refunds, keys with short windows that expire along the way,
/// and a pause now and then (the replication tests).
pub fn replicated_mix(c: &mut redis::Connection, rounds: u64) {
    for i in 0..rounds {
        rl(
            c,
            &[
                "RL.TOKENBUCKET",
                &format!("b:{}", i % 7),
                "5",
                "0.5",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["RL.TOKENBUCKET", "b:hot", "3", "1", "1"]);
        rl(
            c,
            &[
                "RL.SLIDING",
                &format!("w:{}", i % 5),
                "20",
                "20",
                "COST",
                &(i % 4).to_string(),
            ],
        );
        rl(c, &["RL.SLIDING", "w:hot", "4", "0.05"]);
        rl(
            c,
            &[
                "RL.GCRA",
                &format!("g:{}", i % 3),
                "10",
                "1",
                "2",
                "COST",
                &(i % 3).to_string(),
            ],
        );
        rl(
            c,
            &[
                "RL.FIXED",
                &format!("f:{}", i % 3),
                "50",
                "HOUR",
                "COST",
                &(i % 3).to_string(),
            ],
        );
        rl(c, &["CL.THROTTLE", "cell", "15", "30", "60"]);
        call(
            c,
            &[
                "RL.ALL", "LIMIT", "{a}:1", "SLIDING", "9", "30", "LIMIT", "{a}:2", "GCRA", "5",
                "1", "3",
            ],
        )
        .unwrap();
        if i % 7 == 0 {
            rl(
                c,
                &[
                    "RL.SLIDING",
                    &format!("w:{}", i % 5),
                    "20",
                    "20",
                    "COST",
                    "2",
                    "REFUND",
                ],
            );
            rl(
                c,
                &[
                    "RL.TOKENBUCKET",
                    &format!("b:{}", i % 7),
                    "5",
                    "0.5",
                    "1",
                    "REFUND",
                ],
            );
        }
        if i % 50 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(7));
        }
    }
}

/// An admission of `cost` units on `key`, its limiter by the key's prefix
/// (`b:` token bucket, `w:` sliding window, `g:` GCRA, else fixed window),
/// each of `limit` units and slow enough that, within a test, the units
/// consumed are exactly the units admitted (the crash-recovery tests).
pub fn admission(key: &str, limit: i64, cost: i64) -> redis::Cmd {
    let mut c;
    match &key[..2] {
        "b:" => {
            c = redis::cmd("RL.TOKENBUCKET");
            c.arg(key).arg(limit).arg("0.0001").arg(cost);
        }
        "w:" => {
            c = redis::cmd("RL.SLIDING");
            c.arg(key).arg(limit).arg(86400).arg("COST").arg(cost);
        }
        "g:" => {
            c = redis::cmd("RL.GCRA");
            c.arg(key)
                .arg(limit)
                .arg(1)
                .arg(10000)
                .arg("COST")
                .arg(cost);
        }
        _ => {
            c = redis::cmd("RL.FIXED");
            c.arg(key).arg(limit).arg(365 * 86400).arg("COST").arg(cost);
        }
    }
    c
}

/// One random command of the mix: limiters of every kind with varied
/// parameters (windows short enough to expire mid-test, too), peeks, dry
/// runs and refunds, and now and then a DEL or a short PEXPIRE racing the
/// limiters.
pub fn mixed_command(r: &mut Rng) -> Vec<String> {
    let n = r.below(80);
    let cost = r.below(4).to_string();
    let mut v: Vec<String> = match r.below(9) {
        0 | 1 => {
            let mut v: Vec<String> = vec![
                "RL.TOKENBUCKET".into(),
                format!("tb:{n}"),
                r.pick(&["3", "10", "100"]).into(),
                r.pick(&["0.01", "0.5", "1000"]).into(),
                cost,
            ];
            if r.one_in(3) {
                v.extend(["PERIOD".into(), r.pick(&["1", "60", "0.1"]).into()]);
            }
            v
        }
        2 | 3 => vec![
            "RL.SLIDING".into(),
            format!("sw:{n}"),
            r.pick(&["3", "10", "100"]).into(),
            r.pick(&["0.05", "60", "3600"]).into(),
            "COST".into(),
            cost,
        ],
        4 => vec![
            "RL.GCRA".into(),
            format!("gc:{n}"),
            r.pick(&["3", "10"]).into(),
            r.pick(&["1", "50"]).into(),
            r.pick(&["1", "60"]).into(),
            "COST".into(),
            cost,
        ],
        5 => {
            let mut v: Vec<String> = vec![
                "RL.FIXED".into(),
                format!("fw:{n}"),
                r.pick(&["3", "10"]).into(),
            ];
            if r.one_in(2) {
                v.push(r.pick(&["0.1", "1", "60"]).into());
            } else {
                v.push(r.pick(&["MINUTE", "HOUR", "DAY", "MONTH"]).into());
                if r.one_in(2) {
                    v.extend(["TZ".into(), "America/New_York".into()]);
                }
            }
            v.extend(["COST".into(), cost]);
            v
        }
        6 => vec![
            "CL.THROTTLE".into(),
            format!("cl:{n}"),
            "5".into(),
            "10".into(),
            "1".into(),
            cost,
        ],
        7 => {
            let key = match r.below(3) {
                0 => format!("tb:{n}"),
                1 => format!("sw:{n}"),
                _ => format!("{{u{n}}}:a"),
            };
            if r.one_in(2) {
                vec!["DEL".into(), key]
            } else {
                vec!["PEXPIRE".into(), key, r.pick(&["30", "1500"]).into()]
            }
        }
        _ => vec![
            "RL.ALL".into(),
            "LIMIT".into(),
            format!("{{u{n}}}:a"),
            "TOKENBUCKET".into(),
            "10".into(),
            "5".into(),
            "LIMIT".into(),
            format!("{{u{n}}}:b"),
            "SLIDING".into(),
            "20".into(),
            r.pick(&["0.05", "60"]).into(),
            "COST".into(),
            cost,
        ],
    };
    if v[0].starts_with("RL.") && r.one_in(8) {
        v.push(r.pick(&["DRYRUN", "REFUND"]).into());
    }
    v
}
