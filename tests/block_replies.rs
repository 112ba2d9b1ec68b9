//! BLOCK: an admitted waiter is answered at once, never held back behind
//! other admissions (issue 20: replies were paced one per millisecond
//! server-wide, so a burst of one tenant's admissions delayed every other
//! tenant's replies past their deadlines, and the units were spent for
//! clients that had given up).
//!
//! The evidence is the server's own: `INFO clients ratelimit` is one
//! snapshot taken between two event-loop passes. A waiter the module has
//! admitted is no longer counted in `ratelimit_waiters`; Redis counts it in
//! `blocked_clients` until its reply is produced. Answered at once, both
//! counts agree in every snapshot; paced, they disagree for as long as the
//! pacing lasts (here at least 150 ms, one per admitted waiter). No timing
//! is assumed: a slow machine only takes fewer snapshots.
#![cfg(test)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use redis_ratelimit_testkit::*;

fn field(info: &str, name: &str) -> i64 {
    info.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .unwrap_or_else(|| panic!("no {name} in INFO"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn admitted_waiters_are_answered_at_once_not_paced() {
    const WAITERS: usize = 150;
    let s = Server::start_with(&["--maxclients", "1000"]);
    let mut c = s.connect();
    // Two tenants: one with many waiters, one with a single one; both
    // limits free up in the same second.
    let limit = WAITERS.to_string();
    for _ in 0..WAITERS {
        assert_eq!(rl(&mut c, &["RL.SLIDING", "tenant:a", &limit, "1"])[0], 1);
    }
    assert_eq!(rl(&mut c, &["RL.SLIDING", "tenant:b", "1", "1"])[0], 1);
    let mut threads = Vec::new();
    for i in 0..=WAITERS {
        let url = s.url();
        let limit = limit.clone();
        threads.push(thread::spawn(move || {
            let mut w = redis::Client::open(url).unwrap().get_connection().unwrap();
            w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            let args: Vec<&str> = if i == WAITERS {
                vec!["RL.SLIDING", "tenant:b", "1", "1", "BLOCK", "20000"]
            } else {
                vec!["RL.SLIDING", "tenant:a", &limit, "1", "BLOCK", "20000"]
            };
            rl(&mut w, &args)
        }));
    }
    // Every waiter in line before the limits free up.
    assert!(wait_until(10, || {
        let info: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
        field(&info, "ratelimit_waiters") == (WAITERS + 1) as i64
    }));
    let done = Arc::new(AtomicBool::new(false));
    let probe = {
        let mut p = s.connect();
        let done = done.clone();
        thread::spawn(move || {
            let mut snapshots = 0;
            let mut disagreements = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let info: String = redis::cmd("INFO")
                    .arg("clients")
                    .arg("ratelimit")
                    .query(&mut p)
                    .unwrap();
                let blocked = field(&info, "blocked_clients");
                let waiting = field(&info, "ratelimit_waiters");
                snapshots += 1;
                if blocked != waiting {
                    disagreements.push((blocked, waiting));
                }
            }
            (snapshots, disagreements)
        })
    };
    let replies: Vec<[i64; 5]> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    let (snapshots, disagreements) = probe.join().unwrap();
    assert!(replies.iter().all(|r| r[0] == 1), "{replies:?}");
    println!("{snapshots} snapshots, {} disagreeing", disagreements.len());
    assert!(
        disagreements.is_empty(),
        "admitted waiters still blocked (blocked_clients, ratelimit_waiters): {:?}",
        &disagreements[..disagreements.len().min(10)]
    );
    let info: String = redis::cmd("INFO").arg("ratelimit").query(&mut c).unwrap();
    assert_eq!(
        field(&info, "ratelimit_waits_admitted"),
        (WAITERS + 1) as i64
    );
}
