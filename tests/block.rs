//! BLOCK on a real server: waiting in line, first come first served,
//! admitted by the server at the instant the limit allows; timeouts,
//! clients that leave, CLIENT UNBLOCK, MULTI/scripts/replicas that do not
//! wait, and admissions that replicate and persist like any other.
//!
//! Evidence comes from the server, never from this machine's clock or its
//! thread scheduling, so a loaded machine can hide a fault but never make
//! one up:
//! - every admission is propagated as an RL.WINDOWADD whose payload
//!   carries the instant it was decided on the server's clock; the tests
//!   read them back from the AOF (and a per-worker key tells whose it was);
//! - a probe ([`Probe`]) looks at the server about once a millisecond: who
//!   waits in line, who is blocked, on the server's clock (see testkit's
//!   `line.rs` for what a look proves);
//! - each call goes out in one pipeline after a `TIME`: it arrived no
//!   earlier than that instant.
#![cfg(test)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use redis_ratelimit_testkit::*;

/// The tests here measure timing on the server: one at a time, so they do
/// not take each other's CPU on a small machine.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The server's clock, in microseconds.
fn server_us(c: &mut redis::Connection) -> u64 {
    server_now_ns(c) / 1000
}

fn ints(c: &mut redis::Connection, args: &[&str]) -> Result<Vec<i64>, String> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<Vec<i64>>(c).map_err(error_text)
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

const AOF: &[&str] = &[
    "--appendonly",
    "yes",
    "--aof-use-rdb-preamble",
    "no",
    "--appendfsync",
    "always",
];

/// The decision instants (µs, server clock) of every RL.WINDOWADD on
/// `key` in the AOF of the server in `dir`, in order.
fn admissions(dir: &std::path::Path, key: &str) -> Vec<u64> {
    aof_commands(dir)
        .into_iter()
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.WINDOWADD") && a[1] == key.as_bytes())
        .map(|a| {
            let p = &a[2];
            let now = u64::from_le_bytes(p[0..8].try_into().unwrap());
            let units = u64::from_le_bytes(p[24..32].try_into().unwrap());
            assert_eq!(units, 1);
            now
        })
        .collect()
}

/// A line under load, as the server saw it.
struct Run {
    /// The workers' start and end, µs on the server's clock.
    start_us: u64,
    end_us: u64,
    /// Per worker: each call's earliest arrival (µs: the `TIME` just
    /// before it in its pipeline) and whether it was admitted.
    calls: Vec<Vec<(u64, bool)>>,
    /// The busy client's admissions (its calls never wait).
    busy_admitted: usize,
    looks: Vec<Look>,
}

/// Runs `workers` clients named `w0`, `w1`... that start together (a
/// barrier) and call `args(i)` with BLOCK, again the moment they are
/// answered, until `secs` after the start (server clock); `fill` calls
/// made first fill the limit. With `busy`, one more client calls it
/// without BLOCK in a loop: after each call's `INFO` in the same pipeline
/// (nothing runs in between), it must be denied while anyone waits.
fn run_workers(
    s: &Server,
    workers: usize,
    secs: u64,
    args: impl Fn(usize) -> Vec<String>,
    busy: Option<Vec<String>>,
) -> Run {
    let mut c = s.connect();
    let probe = Probe::start(s, true);
    let start_us = server_us(&mut c);
    let end_us = start_us + secs * 1_000_000;
    let barrier = Arc::new(Barrier::new(workers));
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let args = args(i);
            let mut con = s.connect();
            ok(&mut con, &["CLIENT", "SETNAME", &format!("w{i}")]);
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut calls = vec![];
                barrier.wait();
                loop {
                    let left_ms = end_us.saturating_sub(server_us(&mut con)) / 1000;
                    if left_ms == 0 {
                        return calls;
                    }
                    let mut cmd = redis::cmd(&args[0]);
                    for a in &args[1..] {
                        cmd.arg(a);
                    }
                    cmd.arg("BLOCK").arg(left_ms);
                    let ((sec, us), r): ((u64, u64), Vec<i64>) = redis::pipe()
                        .cmd("TIME")
                        .add_command(cmd)
                        .query(&mut con)
                        .unwrap();
                    calls.push((sec * 1_000_000 + us, r[0] == 1));
                }
            })
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let busy = busy.map(|args| {
        let mut con = s.connect();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut admitted = 0;
            while !stop.load(Ordering::Relaxed) {
                let mut cmd = redis::cmd(&args[0]);
                for a in &args[1..] {
                    cmd.arg(a);
                }
                let (info, r): (String, Vec<i64>) = redis::pipe()
                    .cmd("INFO")
                    .arg("ratelimit")
                    .add_command(cmd)
                    .query(&mut con)
                    .unwrap();
                let waiters: i64 = info
                    .lines()
                    .find_map(|l| l.strip_prefix("ratelimit_waiters:"))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                if r[0] == 1 {
                    assert_eq!(waiters, 0, "a call went ahead of {waiters} waiting: {r:?}");
                    admitted += 1;
                }
                thread::sleep(Duration::from_millis(1));
            }
            admitted
        })
    });
    let calls = handles.into_iter().map(|h| h.join().unwrap()).collect();
    stop.store(true, Ordering::Relaxed);
    let busy_admitted = busy.map_or(0, |h| h.join().unwrap());
    Run {
        start_us,
        end_us,
        calls,
        busy_admitted,
        looks: probe.stop(),
    }
}

/// Is a unit of a sliding window (`limit` per `span_us`, admissions `at`
/// in µs, sorted) free at every instant of `[a, b]`?
fn free_throughout(at: &[u64], limit: usize, span_us: u64, a: u64, b: u64) -> bool {
    let k = at.partition_point(|&t| t <= b);
    // Full at some instant of [a, b]: `limit` admissions, the last at or
    // before it, the first still inside the window then.
    !(limit - 1..k).any(|j| at[j + 1 - limit] + span_us > a.max(at[j]))
}

/// The timing checks of a line on a sliding window of `limit` per
/// `span_us` whose admissions (µs, from the AOF) are `at`: never more than
/// the limit in a window, and never a unit left free while someone waited
/// and the server ran its timers. `Err` when the looks covered too little
/// of the run to tell (a stalled machine): the caller runs again.
fn check_timing(at: &[u64], run: &Run, limit: usize, span_us: u64) -> Result<(), String> {
    // Never limit + 1 within the window.
    for (k, t) in at.iter().enumerate().skip(limit) {
        assert!(
            t - at[k - limit] >= span_us,
            "admission {k} at {t} is {} µs after admission {}",
            t - at[k - limit],
            k - limit
        );
    }
    // Admitted at the instant the limit allows: a round of the server's
    // event loop that ran while someone waited and a unit had been free
    // for longer than a timer's slack is a late admission. A stall only
    // removes rounds.
    let slack_us = TIMER_SLACK_NS / 1000;
    for (a, b) in waiting_rounds(&run.looks) {
        let (a, b) = (a / 1000, b / 1000);
        assert!(
            !free_throughout(at, limit, span_us, a - slack_us, b),
            "someone waited in line at {a} µs, a unit had been free since {} µs, the server \
             ran its timers before {b} µs, and nothing was admitted (admissions: {at:?})",
            a - slack_us
        );
    }
    let mut late: Vec<u64> = (limit..at.len())
        .map(|k| at[k] - (at[k - limit] + span_us))
        .collect();
    late.sort_unstable();
    let covered = covered(
        &run.looks,
        run.start_us * 1000,
        run.end_us * 1000,
        TIMER_SLACK_NS,
    );
    println!(
        "{} admissions; delay after the unit freed, µs: median {} p99 {} max {} (a delay \
         is the module's only if someone waited); the looks covered {:.0}% of the run",
        at.len(),
        late.get(late.len() / 2).unwrap_or(&0),
        late.get(late.len() * 99 / 100).unwrap_or(&0),
        late.last().unwrap_or(&0),
        covered * 100.0
    );
    if covered < 0.5 {
        return Err(format!(
            "the looks covered {:.0}% of the run: the machine stalled",
            covered * 100.0
        ));
    }
    Ok(())
}

/// Runs `attempt` up to three times while it says the machine stalled too
/// much to tell: a run that proves nothing is never a pass.
fn with_retries(mut attempt: impl FnMut() -> Result<(), String>) {
    for n in 1..=3 {
        match attempt() {
            Ok(()) => return,
            Err(e) => eprintln!("attempt {n}: {e}"),
        }
    }
    panic!("three runs in a row proved too little");
}

#[test]
fn eight_workers_share_five_per_two_seconds_at_the_instants_it_allows() {
    let _alone = alone();
    with_retries(|| {
        let s = Server::start_with(AOF);
        let mut c = s.connect();
        let args = ["RL.SLIDING", "partner", "5", "2"];
        for _ in 0..5 {
            assert_eq!(ints(&mut c, &args).unwrap()[0], 1);
        }
        let run = run_workers(&s, 8, 10, |_| strings(&args), None);
        let at = admissions(&s.dir, "partner");
        let replied: usize = run.calls.iter().flatten().filter(|c| c.1).count();
        assert_eq!(replied + 5, at.len(), "replies and AOF disagree");
        check_timing(&at, &run, 5, 2_000_000)
    });
}

/// First come, first served, checked on the server's own record: each
/// worker's admissions come from the AOF (a key of its own in its RL.ALL),
/// when each call certainly arrived from the probe's looks. Two calls whose
/// arrivals are certainly ordered (the first seen blocked before the
/// second was sent) must be admitted in that order. The workers all start
/// at once and call again the moment they are answered, so the test's own
/// thread scheduling decides who is first among calls that arrive close
/// together: those pairs are not judged. A busy client calling without
/// BLOCK in a loop never goes ahead of the line.
#[test]
fn rl_all_serves_first_come_first_and_a_busy_client_never_jumps_the_line() {
    let _alone = alone();
    let limit = |key: &str, spec: &str| format!("LIMIT {key} {spec}");
    let burst = limit("{p}:burst", "SLIDING 5 2");
    let day = limit("{p}:day", "FIXED 1000 DAY TZ America/New_York");
    let all = |own: &str| -> Vec<String> {
        format!("RL.ALL {burst} {day} {}", limit(own, "SLIDING 100000 3600"))
            .split(' ')
            .map(str::to_string)
            .collect()
    };
    with_retries(|| {
        let s = Server::start_with(AOF);
        let mut c = s.connect();
        // The limit filled at once; the day's end (server clock) from a
        // peek's reset_after.
        let fill = all("{p}:fill");
        let fill: Vec<&str> = fill.iter().map(String::as_str).collect();
        for _ in 0..5 {
            assert_eq!(ints(&mut c, &fill).unwrap()[0], 1);
        }
        let (f0, r, f1) = bracketed(&mut c, &DAY_PEEK);
        let day_end = (f0 + (r[4] as u64 - 1) * MS, f1 + r[4] as u64 * MS);
        let run = run_workers(
            &s,
            8,
            10,
            |i| all(&format!("{{p}}:w{i}")),
            Some(all("{p}:busy")),
        );
        let at = admissions(&s.dir, "{p}:burst");
        // Each worker's admissions, from its own key; as many as it was
        // answered admitted.
        let mine: Vec<Vec<u64>> = (0..run.calls.len())
            .map(|i| admissions(&s.dir, &format!("{{p}}:w{i}")))
            .collect();
        let counts: Vec<usize> = mine.iter().map(Vec::len).collect();
        for (i, calls) in run.calls.iter().enumerate() {
            let replied = calls.iter().filter(|c| c.1).count();
            assert_eq!(replied, counts[i], "worker {i}: replies and AOF disagree");
        }
        let busy = admissions(&s.dir, "{p}:busy").len();
        assert_eq!(busy, run.busy_admitted);
        assert_eq!(
            at.len(),
            5 + counts.iter().sum::<usize>() + busy,
            "the burst limit's admissions are the workers', the busy client's and the fill's"
        );
        println!("admissions per worker (AOF): {counts:?}; the busy client's: {busy}");
        check_fifo(&run, &mine)?;
        check_timing(&at, &run, 5, 2_000_000)?;
        check_day(&mut c, &at, day_end);
        Ok(())
    });
}

/// First come, first served on certainly ordered arrivals (see above).
fn check_fifo(run: &Run, admitted: &[Vec<u64>]) -> Result<(), String> {
    // Every admitted call: (worker, earliest arrival, latest arrival if
    // seen, admission), in µs.
    let mut calls = vec![];
    for (w, list) in run.calls.iter().enumerate() {
        let sent: Vec<u64> = list.iter().map(|c| c.0 * 1000).collect();
        let seen = sighted(&run.looks, &format!("w{w}"), &sent);
        let mut adm = admitted[w].iter();
        for ((sent, allowed), seen) in list.iter().zip(seen) {
            if *allowed {
                calls.push((w, *sent, seen.map(|s| s / 1000), *adm.next().unwrap()));
            }
        }
    }
    // Pairs where the second arrived while the first still waited: the
    // ones a line that is not first come, first served gets wrong.
    let mut judged = 0;
    for &(wa, _, seen_a, adm_a) in &calls {
        let Some(seen_a) = seen_a else { continue };
        for &(wb, sent_b, _, adm_b) in &calls {
            if wb == wa || seen_a >= sent_b || adm_a <= sent_b {
                continue;
            }
            judged += 1;
            assert!(
                adm_a <= adm_b,
                "w{wa} waited by {seen_a} µs, w{wb} arrived after {sent_b} µs, yet w{wb} was \
                 admitted at {adm_b} µs before w{wa} at {adm_a} µs"
            );
        }
    }
    println!("{judged} pairs of calls certainly in line one behind the other: served in order");
    if judged < 20 {
        return Err(format!(
            "only {judged} pairs of calls certainly in line one behind the other"
        ));
    }
    Ok(())
}

const DAY_PEEK: [&str; 8] = [
    "RL.FIXED",
    "{p}:day",
    "1000",
    "DAY",
    "TZ",
    "America/New_York",
    "COST",
    "0",
];

/// The daily limit took every admission of its day and nothing else:
/// admissions from the day's end (a range: `day_end`, from a reply's
/// reset_after in ms) count in the next day, if the run crossed midnight
/// in New York.
fn check_day(c: &mut redis::Connection, at: &[u64], day_end: (u64, u64)) {
    let (q0, day, q1) = bracketed(c, &DAY_PEEK);
    let used = 1000 - day[2] as usize;
    let (lo, hi) = (day_end.0 / 1000, day_end.1 / 1000);
    let expected = if q1 < day_end.0 {
        at.len()..=at.len()
    } else if q0 >= day_end.1 {
        at.iter().filter(|&&t| t >= hi).count()..=at.iter().filter(|&&t| t >= lo).count()
    } else {
        println!("the peek ran at midnight in New York: the daily count not checked");
        return;
    };
    assert!(
        expected.contains(&used),
        "the day counted {used}, admissions of its day: {expected:?}"
    );
}

/// Starts a client waiting on `args` (with BLOCK) in a thread.
fn waiting(s: &Server, args: &[&str]) -> thread::JoinHandle<Result<Vec<i64>, String>> {
    let mut con = s.connect();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        ints(&mut con, &a)
    })
}

fn info_field(c: &mut redis::Connection, name: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg("ratelimit").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("ratelimit_{name}:")))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// Waits until `n` clients wait in line.
fn until_waiters(c: &mut redis::Connection, n: i64) {
    assert!(
        wait_until(10, || info_field(c, "waiters") == n),
        "waiters: {}",
        info_field(c, "waiters")
    );
}

/// Milliseconds from `a` to `b` (ns), rounded up, as retry_after is.
fn ms_up(a: u64, b: u64) -> i64 {
    b.saturating_sub(a).div_ceil(MS) as i64
}

#[test]
fn a_wait_that_times_out_gets_the_denial_and_takes_nothing() {
    let _alone = alone();
    let s = Server::start();
    let mut c = s.connect();
    let (f0, r, f1) = bracketed(&mut c, &["RL.GCRA", "g", "1", "1", "60"]);
    assert_eq!(r[0], 1);
    let dump = bytes(&mut c, &["DUMP", "g"]);
    // The wait ends 200 ms after it began, by the server's clock; the
    // denial is as of then: 60 s after the first call, less the time since.
    let (w0, r, w1) = bracketed(&mut c, &["RL.GCRA", "g", "1", "1", "60", "BLOCK", "200"]);
    assert_eq!(r[0], 0, "{r:?}");
    assert!(
        w1 - w0 >= 199 * MS,
        "answered after {} µs",
        (w1 - w0) / 1000
    );
    let retry = ms_up(w1, f0 + 60 * SEC)..=ms_up(w0 + 200 * MS, f1 + 60 * SEC);
    assert!(retry.contains(&r[3]), "retry_after {r:?}, not in {retry:?}");
    assert_eq!(
        bytes(&mut c, &["DUMP", "g"]),
        dump,
        "a timed-out wait took units"
    );
    assert_eq!(info_field(&mut c, "waits_timed_out"), 1);
    assert_eq!(info_field(&mut c, "waiters"), 0);
    // A cost that can never fit does not wait at all.
    let r = ints(
        &mut c,
        &["RL.GCRA", "g", "1", "1", "60", "COST", "2", "BLOCK", "0"],
    )
    .unwrap();
    assert_eq!((r[0], r[3]), (0, -1));
}

/// The line moves by events only (a refund), never by this machine's
/// timing: the window is an hour long.
#[test]
fn clients_that_leave_the_line_take_nothing_and_the_next_is_served() {
    let _alone = alone();
    let s = Server::start();
    let mut c = s.connect();
    let limit = ["RL.SLIDING", "k", "1", "3600"];
    let wait = ["RL.SLIDING", "k", "1", "3600", "BLOCK", "0"];
    assert_eq!(ints(&mut c, &limit).unwrap()[0], 1);
    // First in line: a client that will be killed; second: one that closes
    // its connection; third: one that stays.
    let mut killed = s.connect();
    let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut killed).unwrap();
    let k = thread::spawn(move || ints(&mut killed, &wait));
    until_waiters(&mut c, 1);
    let closer = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    {
        use std::io::Write;
        let mut w = &closer;
        w.write_all(b"*6\r\n$10\r\nRL.SLIDING\r\n$1\r\nk\r\n$1\r\n1\r\n$4\r\n3600\r\n$5\r\nBLOCK\r\n$1\r\n0\r\n").unwrap();
    }
    until_waiters(&mut c, 2);
    let stays = waiting(&s, &wait);
    until_waiters(&mut c, 3);
    assert_eq!(int(&mut c, &["CLIENT", "KILL", "ID", &id.to_string()]), 1);
    drop(closer);
    assert!(k.join().unwrap().is_err());
    until_waiters(&mut c, 1);
    // The unit given back: the one that stayed is served at once.
    assert_eq!(
        ints(&mut c, &["RL.SLIDING", "k", "1", "3600", "REFUND"]).unwrap()[0],
        1
    );
    let r = stays.join().unwrap().unwrap();
    assert_eq!(r[..3], [1, 1, 0], "{r:?}");
    assert_eq!(info_field(&mut c, "waits_cancelled"), 2);
    assert_eq!(info_field(&mut c, "waits_admitted"), 1);
    // Exactly one unit in the window: the one that stayed.
    let peek = ints(&mut c, &["RL.SLIDING", "k", "2", "3600", "COST", "0"]).unwrap();
    assert_eq!(peek[..3], [1, 2, 1], "{peek:?}");
}

#[test]
fn client_unblock_ends_a_wait_with_the_denial_or_an_error() {
    let _alone = alone();
    let s = Server::start();
    let mut c = s.connect();
    assert_eq!(ints(&mut c, &["RL.FIXED", "f", "1", "3600"]).unwrap()[0], 1);
    for (how, expect_error) in [("TIMEOUT", false), ("ERROR", true)] {
        let mut w = s.connect();
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut w).unwrap();
        let h = thread::spawn(move || ints(&mut w, &["RL.FIXED", "f", "1", "3600", "BLOCK", "0"]));
        until_waiters(&mut c, 1);
        assert_eq!(int(&mut c, &["CLIENT", "UNBLOCK", &id.to_string(), how]), 1);
        let r = h.join().unwrap();
        if expect_error {
            let e = r.unwrap_err();
            assert!(e.starts_with("UNBLOCKED"), "{e}");
        } else {
            let r = r.unwrap();
            assert_eq!(r[0], 0);
            assert!(r[3] > 0);
        }
        until_waiters(&mut c, 0);
    }
    // INFO counts TIMEOUT as a deadline, ERROR as a client that left.
    assert_eq!(info_field(&mut c, "waits_timed_out"), 1);
    assert_eq!(info_field(&mut c, "waits_cancelled"), 1);
    // Nothing taken: the count is still 1.
    assert_eq!(
        ints(&mut c, &["RL.FIXED", "f", "1", "3600", "COST", "0"]).unwrap()[2],
        0
    );
}

/// A bucket of 2 tokens refilling one an hour: only refunds move the line,
/// so every value is exact.
#[test]
fn newcomers_never_jump_the_line_and_peeks_read_the_key_itself() {
    let _alone = alone();
    let s = Server::start();
    let mut c = s.connect();
    let hour = 3600 * SEC;
    let bucket = |cost: &'static str, flag: Option<&'static str>| -> Vec<&'static str> {
        let mut a = vec!["RL.TOKENBUCKET", "b", "2", "1", cost, "PERIOD", "3600"];
        a.extend(flag);
        a
    };
    let (f0, r, f1) = bracketed(&mut c, &bucket("2", None));
    assert_eq!(r[..3], [1, 2, 0]);
    let waits = |cost: &'static str| {
        let mut a = bucket(cost, Some("BLOCK"));
        a.push("0");
        waiting(&s, &a)
    };
    let first = waits("2");
    until_waiters(&mut c, 1);
    let second = waits("1");
    until_waiters(&mut c, 2);
    // A newcomer without BLOCK is denied, its wait counting the line: the
    // first waiter's 2 tokens come two hours after the first call, the
    // second's one more hour later, and the newcomer's one more.
    let (n0, r, n1) = bracketed(&mut c, &bucket("1", None));
    assert_eq!(r[..3], [0, 2, 0], "{r:?}");
    let retry = ms_up(n1, f0 + 4 * hour)..=ms_up(n0, f1 + 4 * hour);
    assert!(retry.contains(&r[3]), "retry_after {r:?}, not in {retry:?}");
    // One token back: not enough for the first in line (2), enough for
    // the second (1), who waits behind it all the same; so does a
    // newcomer, and a dry run answers as the same call would.
    let refund = bucket("1", Some("REFUND"));
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    assert_eq!(info_field(&mut c, "waiters"), 2);
    assert_eq!(ints(&mut c, &bucket("1", None)).unwrap()[..3], [0, 2, 0]);
    assert_eq!(
        ints(&mut c, &bucket("1", Some("DRYRUN"))).unwrap()[..3],
        [0, 2, 0]
    );
    // A peek reads the key itself, not the line: one token there.
    let peek = ints(&mut c, &bucket("0", None)).unwrap();
    assert_eq!(peek[..4], [1, 2, 1, 0], "{peek:?}");
    // The second token back: the first waiter, then (one more back) the
    // second, in order.
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    let r = first.join().unwrap().unwrap();
    assert_eq!(r[..4], [1, 2, 0, 0], "{r:?}");
    until_waiters(&mut c, 1);
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    let r = second.join().unwrap().unwrap();
    assert_eq!(r[..4], [1, 2, 0, 0], "{r:?}");
    assert_eq!(info_field(&mut c, "waiters"), 0);
    // The line is gone: a newcomer is served by the limit alone.
    assert_eq!(ints(&mut c, &refund).unwrap()[0], 1);
    assert_eq!(ints(&mut c, &bucket("1", None)).unwrap()[..3], [1, 2, 0]);
}

#[test]
fn transactions_scripts_and_replicas_answer_at_once() {
    let _alone = alone();
    let master = Server::start();
    let mut c = master.connect();
    assert_eq!(ints(&mut c, &["RL.SLIDING", "k", "1", "60"]).unwrap()[0], 1);
    let t0 = Instant::now();
    ok(&mut c, &["MULTI"]);
    call(&mut c, &["RL.SLIDING", "k", "1", "60", "BLOCK", "0"]).unwrap();
    let exec: Vec<Vec<i64>> = redis::cmd("EXEC").query(&mut c).unwrap();
    assert_eq!(exec[0][0], 0, "{exec:?}");
    let lua: Vec<i64> = redis::cmd("EVAL")
        .arg("return redis.call('RL.SLIDING', KEYS[1], '1', '60', 'BLOCK', '0')")
        .arg(1)
        .arg("k")
        .query(&mut c)
        .unwrap();
    assert_eq!(lua[0], 0);
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(info_field(&mut c, "waits_refused"), 2);
    // A writable replica decides on its own data, and never waits.
    let replica = start_replica(&master, &["--replica-read-only", "no"]);
    let mut r = replica.connect();
    wait_replicas(&mut c, 1);
    let t0 = Instant::now();
    let on_replica = ints(&mut r, &["RL.SLIDING", "k", "1", "60", "BLOCK", "0"]).unwrap();
    assert_eq!(on_replica[0], 0);
    assert!(t0.elapsed() < Duration::from_secs(5));
}

/// Admissions decided in the module's timer replicate and persist like a
/// command's. The states they write last from a minute to an hour, so
/// they outlive the restart and are compared, not dropped as expired.
#[test]
fn admissions_after_waiting_replicate_and_persist_byte_identical() {
    let _alone = alone();
    let master = Server::start_with(AOF);
    let replica = start_replica(&master, &[]);
    let mut m = master.connect();
    let mut r = replica.connect();
    // Each limit emptied, four clients in line, then one unit given back
    // at a time: each refund admits the next in line, from the module's
    // timer. Only events move the line: nothing here depends on timing.
    let singles: [(&[&str], &[&str], &[&str]); 4] = [
        (
            &["RL.GCRA", "{a}:g", "100", "1", "60", "COST", "100"],
            &["RL.GCRA", "{a}:g", "100", "1", "60", "BLOCK", "0"],
            &["RL.GCRA", "{a}:g", "100", "1", "60", "REFUND"],
        ),
        (
            &[
                "RL.TOKENBUCKET",
                "{a}:tb",
                "100",
                "1",
                "100",
                "PERIOD",
                "60",
            ],
            &[
                "RL.TOKENBUCKET",
                "{a}:tb",
                "100",
                "1",
                "1",
                "PERIOD",
                "60",
                "BLOCK",
                "0",
            ],
            &[
                "RL.TOKENBUCKET",
                "{a}:tb",
                "100",
                "1",
                "1",
                "PERIOD",
                "60",
                "REFUND",
            ],
        ),
        (
            &["RL.SLIDING", "{a}:sw", "2", "600", "COST", "2"],
            &["RL.SLIDING", "{a}:sw", "2", "600", "BLOCK", "0"],
            &["RL.SLIDING", "{a}:sw", "2", "600", "REFUND"],
        ),
        (
            &["RL.FIXED", "{a}:f", "2", "3600", "COST", "2"],
            &["RL.FIXED", "{a}:f", "2", "3600", "BLOCK", "0"],
            &["RL.FIXED", "{a}:f", "2", "3600", "REFUND"],
        ),
    ];
    let in_line = |m: &mut redis::Connection, wait: &[&str], n: usize| {
        (0..n)
            .map(|i| {
                let w = waiting(&master, wait);
                until_waiters(m, i as i64 + 1);
                w
            })
            .collect::<Vec<_>>()
    };
    let serve = |m: &mut redis::Connection,
                 refund: &[&str],
                 waiters: Vec<thread::JoinHandle<Result<Vec<i64>, String>>>| {
        let n = waiters.len();
        waiters
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                assert_eq!(ints(m, refund).unwrap()[0], 1, "{refund:?}");
                let r = w.join().unwrap().unwrap();
                assert_eq!(r[0], 1, "{r:?}");
                until_waiters(m, (n - i - 1) as i64);
                r
            })
            .collect::<Vec<_>>()
    };
    for (fill, wait, refund) in singles {
        assert_eq!(ints(&mut m, fill).unwrap()[0], 1);
        let waiters = in_line(&mut m, wait, 4);
        serve(&mut m, refund, waiters);
    }
    // Long-lived states written only by timer admissions: RL.ALL waits on
    // a gate and writes them all (a lease among them).
    let all = [
        "RL.ALL",
        "LIMIT",
        "{a}:gate",
        "SLIDING",
        "1",
        "3600",
        "LIMIT",
        "{a}:x",
        "SLIDING",
        "100",
        "600",
        "LIMIT",
        "{a}:y",
        "GCRA",
        "100",
        "1",
        "60",
        "LIMIT",
        "{a}:z",
        "FIXED",
        "100",
        "3600",
        "LIMIT",
        "{a}:c",
        "CONCURRENCY",
        "10",
        "600",
    ];
    assert_eq!(ints(&mut m, &all[..6]).unwrap()[0], 1);
    let mut blocked = all.to_vec();
    blocked.extend(["BLOCK", "0"]);
    let waiters = in_line(&mut m, &blocked, 3);
    let leases: Vec<i64> = serve(
        &mut m,
        &["RL.SLIDING", "{a}:gate", "1", "3600", "REFUND"],
        waiters,
    )
    .into_iter()
    .map(|r| {
        assert_eq!(r[..2], [1, 1], "{r:?}");
        r[6]
    })
    .collect();
    assert!(leases.iter().all(|&id| id > 0), "{leases:?}");
    assert_eq!(info_field(&mut m, "waits_admitted"), 19);
    assert_eq!(info_field(&mut m, "waits_started"), 19);
    // Every key a timer admission wrote expires exactly when its state is
    // fresh again, as the propagated effect says.
    let aof = aof_commands(&master.dir);
    let u64_at = |p: &[u8], i: usize| u64::from_le_bytes(p[i..i + 8].try_into().unwrap());
    let last = |cmd: &str, key: &str| -> Vec<u8> {
        aof.iter()
            .rev()
            .find(|a| a[0].eq_ignore_ascii_case(cmd.as_bytes()) && a[1] == key.as_bytes())
            .unwrap_or_else(|| panic!("no {cmd} on {key}"))[2]
            .clone()
    };
    let ms_ceil = |ns: u64| ns.div_ceil(MS) as i64;
    // A sliding window: its last admission plus the window.
    let x = last("RL.WINDOWADD", "{a}:x");
    let expect_x = ms_ceil((u64_at(&x, 16) + u64_at(&x, 8)) * 1000);
    // A bucket: its full-again instant; a fixed window: its end (ms).
    let bucket = |key: &str| {
        let p = last("RL.SETSTATE", key);
        assert_eq!(p[0], b'B', "{key}");
        ms_ceil(u64_at(&p, 1))
    };
    let z = last("RL.SETSTATE", "{a}:z");
    assert_eq!((z[0], u64_at(&z, 1)), (b'F', 3), "{z:?}");
    let expect_z = u64_at(&z, 9) as i64;
    // Leases: each lasts exactly 600 s from the admission that took it;
    // the key, until the last one ends.
    let ops: Vec<Vec<u8>> = aof
        .iter()
        .filter(|a| a[0].eq_ignore_ascii_case(b"RL.LEASE") && a[1] == b"{a}:c")
        .map(|a| a[2].clone())
        .collect();
    assert_eq!(ops.len(), 3);
    for op in &ops {
        assert_eq!(op[0], b'A');
        assert_eq!(u64_at(op, 17) - u64_at(op, 1), 600 * SEC, "{op:?}");
    }
    assert_eq!(
        ops.iter()
            .map(|op| u64_at(op, 9) as i64)
            .collect::<Vec<_>>(),
        leases,
        "the lease ids answered are the ones taken"
    );
    let expect_c = ms_ceil(ops.iter().map(|op| u64_at(op, 17)).max().unwrap());
    for (key, expect) in [
        ("{a}:x", expect_x),
        ("{a}:y", bucket("{a}:y")),
        ("{a}:z", expect_z),
        ("{a}:g", bucket("{a}:g")),
        ("{a}:tb", bucket("{a}:tb")),
        ("{a}:c", expect_c),
    ] {
        assert_eq!(int(&mut m, &["PEXPIRETIME", key]), expect, "{key}");
    }
    wait_replicas(&mut m, 1);
    let before = state_of(&mut m);
    assert_eq!(before, state_of(&mut r), "replica differs");
    let master = master.restart(false);
    let mut m = master.connect();
    let after = state_of(&mut m);
    let now_ms = (server_now_ns(&mut m) / MS) as i64;
    // Keys that expired while restarting are gone on both sides, as due;
    // the long-lived ones are all there.
    let lasting = |v: Vec<(String, Option<Vec<u8>>, i64)>| -> Vec<(String, Option<Vec<u8>>, i64)> {
        v.into_iter()
            .filter(|(_, _, e)| *e == -1 || *e > now_ms + 100)
            .collect()
    };
    let kept = lasting(before);
    let names: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    for k in [
        "{a}:g", "{a}:tb", "{a}:sw", "{a}:f", "{a}:x", "{a}:y", "{a}:z", "{a}:c",
    ] {
        assert!(
            names.contains(&k),
            "{k} missing before the restart: {names:?}"
        );
    }
    assert_eq!(kept, lasting(after), "AOF replay differs");
}

#[test]
fn bad_block_arguments_are_errors_that_change_nothing() {
    let _alone = alone();
    let s = Server::start();
    let mut c = s.connect();
    let block_err = "ERR BLOCK must be a timeout in milliseconds between 0 and 2678400000 (0 waits without limit)";
    for v in ["-1", "1.5", "abc", "2678400001", "99999999999999999999", ""] {
        assert_eq!(
            err(&mut c, &["RL.SLIDING", "k", "1", "60", "BLOCK", v]),
            block_err,
            "{v}"
        );
        assert_eq!(
            err(
                &mut c,
                &["RL.ALL", "BLOCK", v, "LIMIT", "k", "SLIDING", "1", "60"]
            ),
            block_err,
            "{v}"
        );
    }
    assert_eq!(
        err(&mut c, &["RL.SLIDING", "k", "1", "60", "BLOCK"]),
        "ERR syntax error"
    );
    assert_eq!(
        err(
            &mut c,
            &["RL.SLIDING", "k", "1", "60", "BLOCK", "1", "BLOCK", "1"]
        ),
        "ERR syntax error"
    );
    let mode_err = "ERR BLOCK waits to take units: it cannot be used with DRYRUN or REFUND";
    assert_eq!(
        err(
            &mut c,
            &["RL.SLIDING", "k", "1", "60", "BLOCK", "10", "DRYRUN"]
        ),
        mode_err
    );
    assert_eq!(
        err(
            &mut c,
            &[
                "RL.TOKENBUCKET",
                "k",
                "1",
                "1",
                "1",
                "REFUND",
                "BLOCK",
                "10"
            ]
        ),
        mode_err
    );
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    // CL.THROTTLE keeps redis-cell's grammar: no options.
    assert!(
        err(&mut c, &["CL.THROTTLE", "k", "1", "1", "1", "BLOCK", "10"])
            .starts_with("ERR wrong number")
    );
}
