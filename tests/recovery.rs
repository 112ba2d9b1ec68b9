//! Nothing admitted is forgotten, and replicas keep up under load:
//! - SIGKILL mid-load with `appendonly yes` + `appendfsync always` (also
//!   while an AOF rewrite runs): after a restart every acknowledged
//!   admission (token bucket, sliding window, GCRA and fixed window) is
//!   still counted, and at most the requests in flight at the kill are
//!   counted beyond them.
//! - SIGKILL after `SAVE` (RDB only): the restart gives back exactly the
//!   state at SAVE time.
//! - Several clients hammering a mix of commands on many keys: once the
//!   replica caught up (attached before or during the load), every key's
//!   DUMP and absolute expiry are equal on master and replica.
#![cfg(test)]

use redis_ratelimit_testkit::*;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Capacity of every bucket and limit of every window below. Buckets refill
/// one token per 10,000 s, sliding windows last a day, fixed windows a
/// (365-day) year: within a test, the units consumed are exactly the units
/// admitted.
const LIMIT: i64 = 40;
const KEYS: usize = 24;
const CLIENTS: usize = 4;
/// The largest cost a client sends: bounds what one unacknowledged request
/// can have consumed.
const MAX_COST: i64 = 2;

/// Key prefixes of the limiters under test: token bucket, sliding window,
/// GCRA and fixed window.
const LIMITERS: &[&str] = &["b", "w", "g", "f"];

fn keys_of(prefixes: &[&str], indexes: impl IntoIterator<Item = usize>) -> Vec<String> {
    indexes
        .into_iter()
        .flat_map(|i| prefixes.iter().map(move |p| format!("{p}:{i}")))
        .collect()
}

/// Units consumed in `key`, read with a peek (cost 0 writes nothing).
fn consumed(c: &mut redis::Connection, key: &str) -> i64 {
    let reply: Vec<i64> = admission(key, LIMIT, 0).query(c).unwrap();
    LIMIT - reply[2]
}

/// Clients sending admissions until told to stop or their server dies,
/// each recording the units of every allowed reply it received.
struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    clients: Vec<JoinHandle<HashMap<String, i64>>>,
}

impl Load {
    fn start(server: &Server, keys: Vec<String>, seed: u64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let clients = (0..CLIENTS)
            .map(|n| {
                let mut con = server.connect();
                let (stop, acked, keys) = (stop.clone(), acked.clone(), keys.clone());
                let mut rng = Rng::new(seed + n as u64);
                std::thread::spawn(move || {
                    let mut mine: HashMap<String, i64> = HashMap::new();
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let key = rng.pick_ref(&keys);
                        let cost = 1 + rng.below(MAX_COST as u64) as i64;
                        match admission(key, LIMIT, cost).query::<Vec<i64>>(&mut con) {
                            Ok(d) => {
                                if d[0] == 1 {
                                    *mine.entry(key.clone()).or_default() += cost;
                                    acked.fetch_add(cost as u64, Ordering::Relaxed);
                                }
                            }
                            // The server was killed: what this client saw acknowledged is final.
                            Err(e) if e.is_io_error() || e.is_connection_dropped() => break,
                            Err(e) => panic!("{key}: {e}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        Load {
            stop,
            acked,
            clients,
        }
    }

    /// Waits until `units` were acknowledged in all.
    fn wait_for(&self, units: u64) {
        assert!(
            wait_until(60, || self.acked.load(Ordering::Relaxed) >= units),
            "only {} units admitted",
            self.acked.load(Ordering::Relaxed)
        );
    }

    /// Stops the clients (if the server still runs) and sums what they saw.
    fn finish(self) -> HashMap<String, i64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all: HashMap<String, i64> = HashMap::new();
        for h in self.clients {
            for (k, v) in h.join().unwrap() {
                *all.entry(k).or_default() += v;
            }
        }
        all
    }
}

/// Every acknowledged unit is consumed after the restart; beyond them, at
/// most what the clients had in flight at the kill.
fn assert_nothing_admitted_is_forgotten(
    c: &mut redis::Connection,
    keys: &[String],
    acked: &HashMap<String, i64>,
) {
    let mut beyond = 0;
    for key in keys {
        let a = acked.get(key).copied().unwrap_or(0);
        let got = consumed(c, key);
        assert!(
            got >= a,
            "{key}: {a} units acknowledged before the kill, {got} consumed after the restart"
        );
        beyond += got - a;
    }
    assert!(
        beyond <= CLIENTS as i64 * MAX_COST,
        "{beyond} units consumed beyond the acknowledged ones: more than the requests in flight"
    );
}

/// The seed of a test's clients: `RL_RECOVERY_SEED`, or a fresh one, printed.
fn seed() -> u64 {
    let seed = Rng::seed_from_env("RL_RECOVERY_SEED");
    eprintln!("clients' seed {seed} (rerun with RL_RECOVERY_SEED={seed})");
    seed
}

/// Is an AOF rewrite running?
fn rewriting(c: &mut redis::Connection) -> bool {
    info_int(c, "persistence", "aof_rewrite_in_progress") == 1
}

fn crash_with_aof(rewrite_midway: bool) {
    let opts = ["--appendonly", "yes", "--appendfsync", "always"];
    let server = Server::start_with(&opts);
    let keys = keys_of(LIMITERS, 0..KEYS);
    let load = Load::start(&server, keys.clone(), seed());
    load.wait_for(200);
    let mut c = server.connect();
    if rewrite_midway {
        // A rewrite that takes long (200 ms a key, for tests): it is still
        // running when the server is killed.
        ok(&mut c, &["CONFIG", "SET", "rdb-key-save-delay", "200000"]);
        call(&mut c, &["BGREWRITEAOF"]).unwrap();
        assert!(
            wait_until(10, || rewriting(&mut c)),
            "the AOF rewrite did not start"
        );
    }
    // About a sixth of all capacity (4 limiters x 24 keys x 40): the kill
    // lands mid-load, far from any limit.
    load.wait_for(600);
    // The rewrite's child, to stop it too (it outlives a killed parent).
    let children = server.children();
    if rewrite_midway {
        assert!(
            rewriting(&mut c) && !children.is_empty(),
            "the AOF rewrite was over before the kill"
        );
    }
    drop(c);
    let dir = server.kill();
    for pid in children {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    let acked = load.finish();
    let total: i64 = acked.values().sum();
    eprintln!("{total} units acknowledged before the kill");

    let server = Server::start_in(dir, &opts);
    let mut c = server.connect();
    assert_nothing_admitted_is_forgotten(&mut c, &keys, &acked);
}

#[test]
fn after_a_sigkill_the_aof_still_holds_every_acknowledged_admission() {
    crash_with_aof(false);
}

#[test]
fn after_a_sigkill_during_an_aof_rewrite_every_acknowledged_admission_survives() {
    crash_with_aof(true);
}

#[test]
fn after_a_sigkill_the_rdb_gives_back_exactly_the_state_at_save() {
    let server = Server::start();
    let keys = keys_of(LIMITERS, 0..KEYS);
    let seed = seed();
    let load = Load::start(&server, keys.clone(), seed);
    load.wait_for(400);
    let saved = load.finish();
    let mut c = server.connect();
    ok(&mut c, &["SAVE"]);
    let at_save = state_of(&mut c);
    // A key exists once something was admitted in it.
    assert_eq!(at_save.len(), saved.len());

    // More traffic on half of the keys, killed mid-way: none of it was saved.
    let load = Load::start(&server, keys_of(LIMITERS, 0..KEYS / 2), seed + 1000);
    load.wait_for(150);
    drop(c);
    let dir = server.kill();
    let after = load.finish();
    assert!(after.values().sum::<i64>() >= 150);

    let server = Server::start_in(dir, &[]);
    let mut c = server.connect();
    assert_eq!(state_of(&mut c), at_save);
    for key in &keys {
        let a = saved.get(key).copied().unwrap_or(0);
        assert_eq!(consumed(&mut c, key), a, "{key}");
    }
}

// ------------------------------------------------------- replication under load

/// `clients` connections sending the mix until `stop`; returns the number
/// of commands answered.
fn hammer(server: &Server, clients: usize, stop: Arc<AtomicBool>) -> Vec<JoinHandle<u64>> {
    let seed = seed();
    (0..clients)
        .map(|n| {
            let mut c = server.connect();
            let stop = stop.clone();
            let mut r = Rng::new(seed + n as u64);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let v = mixed_command(&mut r);
                    let args: Vec<&str> = v.iter().map(|s| s.as_str()).collect();
                    match call(&mut c, &args) {
                        Ok(Value::Array(d)) if d.len() >= 5 => {}
                        Ok(Value::Int(_))
                            if !v[0].starts_with("RL.") && !v[0].starts_with("CL.") => {}
                        Err(e) if e.starts_with("WRONGTYPE ") => {}
                        other => panic!("{args:?}: {other:?}"),
                    }
                    sent += 1;
                }
                sent
            })
        })
        .collect()
}

fn stop_all(stop: &AtomicBool, handles: Vec<JoinHandle<u64>>) -> u64 {
    stop.store(true, Ordering::Relaxed);
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

#[test]
fn a_replica_is_byte_identical_after_many_clients_hammer_a_mix_of_commands() {
    let master = Server::start();
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = hammer(&master, 6, stop.clone());
    std::thread::sleep(Duration::from_secs(2));
    let sent = stop_all(&stop, handles);
    wait_caught_up(&master, &replica);
    let compared = assert_same_state(&mut m, &mut replica.connect());
    eprintln!("{sent} commands; {compared} keys identical");
    assert!(
        sent > 1000 && compared >= 60,
        "{sent} sent, {compared} compared"
    );
}

#[test]
fn a_replica_that_syncs_in_the_middle_of_the_load_is_byte_identical_once_caught_up() {
    let master = Server::start();
    let mut m = master.connect();
    let stop = Arc::new(AtomicBool::new(false));
    let handles = hammer(&master, 6, stop.clone());
    assert!(wait_until(30, || int(&mut m, &["DBSIZE"]) >= 50));
    // A full sync (RDB) while writes keep coming, then the backlog.
    let replica = start_replica(&master, &[]);
    std::thread::sleep(Duration::from_secs(1));
    let sent = stop_all(&stop, handles);
    wait_caught_up(&master, &replica);
    let compared = assert_same_state(&mut m, &mut replica.connect());
    eprintln!("{sent} commands; {compared} keys identical");
    assert!(compared >= 60, "{compared}");
}
