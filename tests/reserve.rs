//! Reservations on a real server (issue 25): RL.ALL ... ESTIMATE n reserves
//! at admission, RL.SETTLE charges the actual cost, a reservation whose
//! caller died ends with its lease at its estimate; and lease state saved
//! before reservations existed loads with the same state.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// The fixture: an RDB and two DUMPs saved by the module before
/// reservations existed (main at f742a78, Redis 7.0.15): `leases:plain`,
/// three leases of a 5-slot key (about 10 years each, expiring in 2036);
/// `leases:locked`, a lock (until 2035) holding two leases (forged: no
/// command makes one, RESTORE took it).
const PLAIN_IDS: [u64; 3] = [
    1_796_660_902_872_485_524,
    1_796_660_902_877_179_998,
    1_796_660_902_880_964_697,
];

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("tests/fixtures").join(name)).expect("fixture")
}

/// What a lease key holds, seen through commands that change nothing.
fn live_leases(c: &mut redis::Connection, key: &str, ids: &[u64]) -> Vec<i64> {
    ids.iter()
        .map(|id| int(c, &["RL.RENEW", key, &id.to_string(), "315000000"]))
        .collect()
}

#[test]
fn lease_state_saved_before_reservations_loads_with_the_same_state() {
    let dir = temp_dir();
    std::fs::write(dir.join("dump.rdb"), fixture("leases-v1.rdb")).unwrap();
    let s = Server::start_in(dir, &[]);
    let mut c = s.connect();
    assert_eq!(int(&mut c, &["DBSIZE"]), 2);
    // The RDB's keys and the same keys RESTOREd from the old DUMPs hold
    // the same state: they DUMP the same.
    for (key, dump) in [
        ("leases:plain", "leases-v1-plain.dump"),
        ("leases:locked", "leases-v1-locked.dump"),
    ] {
        let copy = format!("{key}:restored");
        dump::restore(&mut c, &copy, 0, &fixture(dump)).unwrap();
        let a = bytes(&mut c, &["DUMP", key]).unwrap();
        let b = bytes(&mut c, &["DUMP", &copy]).unwrap();
        assert_eq!(a, b, "{key}");
        // The value's bytes are the old ones; only the type's encoding
        // version (the module id's low 10 bits) went from 1 to 2.
        let (new, old) = (dump::Dump::parse(&a), dump::Dump::parse(&fixture(dump)));
        assert_eq!(new.body, old.body, "{key}");
        assert_eq!((old.module_id & 1023, new.module_id & 1023), (1, 2));
        assert_eq!(old.module_id >> 10, new.module_id >> 10);
    }
    assert!(int(&mut c, &["PEXPIRETIME", "leases:plain"]) > 2_000_000_000_000);
    // Three leases live, each known by its id; two slots free.
    let r = ints_on(&mut c, &["RL.ACQUIRE", "leases:plain", "5", "10", "DRYRUN"]);
    assert_eq!(&r[..3], &[1, 5, 1], "{r:?}");
    assert_eq!(live_leases(&mut c, "leases:plain", &PLAIN_IDS), [1, 1, 1]);
    assert_eq!(int(&mut c, &["RL.RELEASE", "leases:plain", &PLAIN_IDS[0].to_string()]), 1);
    assert_eq!(int(&mut c, &["RL.RELEASE", "leases:plain", &PLAIN_IDS[0].to_string()]), 0);
    // The lock still denies; DEBUG RELOAD (written by the new code) keeps
    // everything.
    let r = ints_on(&mut c, &["RL.ACQUIRE", "leases:locked", "5", "10"]);
    assert_eq!(r[0], 0, "{r:?}");
    let before = dump_all(&mut c);
    ok(&mut c, &["DEBUG", "RELOAD"]);
    assert_eq!(dump_all(&mut c), before);
}
