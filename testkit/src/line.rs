//! Evidence about waiting in line (BLOCK) that a loaded machine cannot
//! fake: a probe that looks at the server about once a millisecond, each
//! look one pipeline `TIME`, `INFO ratelimit`, [`CLIENT LIST`], `TIME`.
//!
//! What a look proves, on the server's clock:
//! - someone waited in line at an instant no earlier than its first `TIME`
//!   (`INFO` ran after it, in the same pipeline: no timer runs between
//!   the commands of one pipeline);
//! - each client `CLIENT LIST` shows blocked had sent its blocking call by
//!   its second `TIME`;
//! - the next look is sent only once this one's reply has arrived, and the
//!   server writes replies after it has run its timers: between a look and
//!   the next, the server ran a whole round of its event loop, module
//!   timers included ([`waiting_rounds`]).
//!
//! A stall of the machine (the server, the probe or the workers waiting
//! for a CPU) only takes looks away: it can hide a fault, never make one
//! up. Tests count what the looks covered, so a run that proves nothing
//! fails instead of passing.

use super::*;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

/// One look at the server (instants in Unix ns, the server's clock).
#[derive(Debug, Clone)]
pub struct Look {
    /// `TIME` just before.
    pub before: u64,
    /// `ratelimit_waiters`: clients in line (not counting those admitted
    /// whose reply is still on its way).
    pub waiters: i64,
    /// The names of the clients blocked (waiting in line, or admitted and
    /// not answered yet), if the probe lists clients.
    pub blocked: Vec<String>,
    /// `TIME` just after (rounded up to the next microsecond).
    pub after: u64,
}

/// A thread taking [`Look`]s at a server until stopped.
pub struct Probe {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Vec<Look>>,
}

impl Probe {
    /// Starts looking at `server`; with `clients`, each look lists the
    /// blocked clients too (`CLIENT LIST`, for the order of arrivals).
    pub fn start(server: &Server, clients: bool) -> Probe {
        let mut con = server.connect();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut looks = vec![];
            while !flag.load(Ordering::Relaxed) {
                looks.push(look(&mut con, clients));
                std::thread::sleep(Duration::from_micros(700));
            }
            looks
        });
        Probe { stop, handle }
    }

    /// Stops the probe; its looks, in order.
    pub fn stop(self) -> Vec<Look> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

/// One look, now.
pub fn look(con: &mut redis::Connection, clients: bool) -> Look {
    let mut p = redis::pipe();
    p.cmd("TIME").cmd("INFO").arg("ratelimit");
    if clients {
        p.cmd("CLIENT").arg("LIST");
    }
    p.cmd("TIME");
    let v: Vec<Value> = p.query(con).unwrap();
    let time = |v: &Value| -> u64 {
        let (s, us): (u64, u64) = redis::FromRedisValue::from_redis_value_ref(v).unwrap();
        s * SEC + us * 1000
    };
    let text = |v: &Value| -> String { redis::FromRedisValue::from_redis_value_ref(v).unwrap() };
    let info = text(&v[1]);
    let waiters = info
        .lines()
        .find_map(|l| l.strip_prefix("ratelimit_waiters:"))
        .map(|w| w.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no ratelimit_waiters in {info}"));
    let blocked = if clients {
        blocked_clients(&text(&v[2]))
    } else {
        vec![]
    };
    Look {
        before: time(&v[0]),
        waiters,
        blocked,
        after: time(&v[v.len() - 1]) + 999,
    }
}

/// The names of the blocked clients (flag `b`) in a `CLIENT LIST` reply.
pub fn blocked_clients(list: &str) -> Vec<String> {
    list.lines()
        .filter(|l| {
            l.split(' ')
                .any(|f| f.strip_prefix("flags=").is_some_and(|x| x.contains('b')))
        })
        .filter_map(|l| {
            l.split(' ')
                .find_map(|f| f.strip_prefix("name="))
                .filter(|n| !n.is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// Rounds of the server's event loop that certainly ran while someone
/// waited: `(a, b)` when someone waited in line at an instant no earlier
/// than `a`, and the server then ran its timers before `b` (the next
/// look's first `TIME`). A timer due before `a` (by more than the timers'
/// own granularity, a millisecond or two) has fired by `b`.
pub fn waiting_rounds(looks: &[Look]) -> Vec<(u64, u64)> {
    looks
        .windows(2)
        .filter(|w| w[0].waiters > 0)
        .map(|w| (w[0].before, w[1].before))
        .collect()
}

/// How late a module timer may fire on a machine that is running: the
/// module arms it for the instant rounded up to a millisecond, and Redis
/// fires module timers from a millisecond event that may run up to a
/// millisecond after it; the rest is margin.
pub const TIMER_SLACK_NS: u64 = 5 * MS;

/// For each client name, when each of its blocking calls was certainly
/// sent: the `after` of the first look that showed it blocked, taken as
/// belonging to the latest call sent before that look (`sent[name]`: each
/// call's first possible instant, ascending). Calls never seen blocked get
/// `None`.
pub fn sighted(looks: &[Look], name: &str, sent: &[u64]) -> Vec<Option<u64>> {
    let mut out = vec![None; sent.len()];
    for l in looks.iter().filter(|l| l.blocked.iter().any(|b| b == name)) {
        // The call it was blocked in: the last one sent before the look's
        // CLIENT LIST ran (at or before `after`), and certainly before its
        // `before` if sent earlier than that.
        let Some(i) = sent.iter().rposition(|&s| s <= l.before) else {
            continue;
        };
        // A call sent between the look's two TIMEs could be the one seen
        // or the one before it: no evidence.
        if sent.get(i + 1).is_some_and(|&next| next <= l.after) {
            continue;
        }
        if out[i].is_none() {
            out[i] = Some(l.after);
        }
    }
    out
}

/// The share of `[from, to)` covered by [`waiting_rounds`] no longer than
/// `max`: how much of a run the looks could have caught a late admission
/// in (a stall of the machine makes a long round, or none).
pub fn covered(looks: &[Look], from: u64, to: u64, max: u64) -> f64 {
    if to <= from {
        return 0.0;
    }
    let mut sum = 0;
    for (a, b) in waiting_rounds(looks) {
        if b - a > max {
            continue;
        }
        let (a, b) = (a.max(from), b.min(to));
        if b > a {
            sum += b - a;
        }
    }
    sum as f64 / (to - from) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look(before: u64, waiters: i64, blocked: &[&str], after: u64) -> Look {
        Look {
            before,
            waiters,
            blocked: blocked.iter().map(|s| s.to_string()).collect(),
            after,
        }
    }

    #[test]
    fn blocked_clients_are_read_from_client_list() {
        let list = "id=3 addr=127.0.0.1:1 laddr=x fd=8 name=w0 age=0 idle=0 flags=b db=0 cmd=rl.all\n\
                    id=4 addr=127.0.0.1:2 laddr=x fd=9 name=w1 age=0 idle=0 flags=N db=0 cmd=time\n\
                    id=5 addr=127.0.0.1:3 laddr=x fd=10 name= age=0 idle=0 flags=b db=0 cmd=rl.all\n";
        assert_eq!(blocked_clients(list), ["w0"]);
    }

    #[test]
    fn rounds_are_the_spans_after_a_look_that_saw_waiters() {
        let looks = [
            look(10, 0, &[], 11),
            look(20, 2, &[], 21),
            look(30, 1, &[], 31),
            look(40, 0, &[], 41),
        ];
        assert_eq!(waiting_rounds(&looks), [(20, 30), (30, 40)]);
        // Rounds longer than `max` (a stall) cover nothing.
        assert_eq!(covered(&looks, 0, 100, 10), 0.2);
        assert_eq!(covered(&looks, 0, 100, 9), 0.0);
        assert_eq!(covered(&looks, 25, 35, 10), 1.0);
    }

    #[test]
    fn a_call_is_sighted_by_the_first_look_that_certainly_saw_it_blocked() {
        // Calls sent at 10, 50, 90; the client blocked in the first at the
        // look of 20..21, in the second at 60..61; a look whose span holds
        // a send (85..95) cannot tell which call it saw.
        let looks = [
            look(5, 0, &["w"], 6),
            look(20, 1, &["w"], 21),
            look(30, 1, &["w"], 31),
            look(60, 1, &["w", "x"], 61),
            look(85, 1, &["w"], 95),
        ];
        assert_eq!(
            sighted(&looks, "w", &[10, 50, 90]),
            [Some(21), Some(61), None]
        );
        assert_eq!(sighted(&looks, "x", &[55]), [Some(61)]);
        assert_eq!(sighted(&looks, "y", &[1]), [None]);
    }
}
