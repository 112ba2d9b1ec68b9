//! The line itself, apart from the server: each key's queue of waiters in
//! arrival order, where it ends up, who is first, and what a newcomer or a
//! leaver faces behind it. Plain data, and pure functions of the states
//! and the `now` the module hands in: tested without a server.
//!
//! Ids grow with arrival, and each waiter joins the queue of every key it
//! needs at once, so the oldest waiter is first in each of its queues:
//! RL.ALL waiters never deadlock, and the waiters that become first when
//! one leaves are considered oldest first.

use std::collections::{HashMap, VecDeque};

use redis_ratelimit_core::algo::all::binding;
use redis_ratelimit_core::algo::{Answer, RetryAfter};
use redis_ratelimit_core::limit::{evaluate, Action, Spec, State};
use redis_ratelimit_core::time::Nanos;

/// A retry after the queue ahead clears, when a key waits on the earliest
/// timer: never below a millisecond, so a client does not spin.
pub const MIN_RETRY: Nanos = Nanos::from_millis(1);

/// One limit a waiter needs.
#[derive(Debug, Clone)]
pub struct Need {
    pub key: Vec<u8>,
    pub spec: Spec,
    pub cost: u64,
}

/// One waiter: its database, the limits it needs, and what the module
/// keeps with it.
#[derive(Debug)]
pub struct Waiter<T> {
    pub db: i32,
    pub needs: Vec<Need>,
    pub data: T,
}

/// A key's queue: waiter ids in arrival order, and where the queue ends
/// up: the key's state once everyone in it is admitted, and when the last
/// one is (each at the first instant its limit allows it).
#[derive(Debug)]
struct Queue {
    fifo: VecDeque<u64>,
    tail_state: State,
    tail_at: Nanos,
}

/// Every waiter, and every key's queue, by database then key.
#[derive(Debug)]
pub struct Line<T> {
    next_id: u64,
    waiters: HashMap<u64, Waiter<T>>,
    queues: HashMap<i32, HashMap<Vec<u8>, Queue>>,
}

impl<T> Default for Line<T> {
    fn default() -> Self {
        Line {
            next_id: 0,
            waiters: HashMap::new(),
            queues: HashMap::new(),
        }
    }
}

impl<T> Line<T> {
    pub fn get(&self, id: u64) -> Option<&Waiter<T>> {
        self.waiters.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Waiter<T>> {
        self.waiters.get_mut(&id)
    }

    /// Every waiter's id.
    pub fn ids(&self) -> Vec<u64> {
        self.waiters.keys().copied().collect()
    }

    fn queue(&self, db: i32, key: &[u8]) -> Option<&Queue> {
        self.queues.get(&db).and_then(|m| m.get(key))
    }

    /// The first waiter on `key`.
    pub fn first(&self, db: i32, key: &[u8]) -> Option<u64> {
        self.queue(db, key).and_then(|q| q.fifo.front().copied())
    }

    /// The first waiter of every queue, in database `db` or in all.
    pub fn heads(&self, db: Option<i32>) -> Vec<u64> {
        self.queues
            .iter()
            .filter(|(d, _)| db.map_or(true, |x| x == **d))
            .flat_map(|(_, m)| m.values())
            .filter_map(|q| q.fifo.front().copied())
            .collect()
    }

    /// Is `id` first in the queue of every key it needs?
    pub fn is_head(&self, id: u64) -> bool {
        let Some(w) = self.waiters.get(&id) else {
            return false;
        };
        w.needs.iter().all(|n| self.first(w.db, &n.key) == Some(id))
    }

    /// The wait a newcomer on `key` faces behind its queue, if anyone waits
    /// on it: its own wait once everyone ahead is admitted.
    pub fn behind(
        &self,
        db: i32,
        key: &[u8],
        spec: &Spec,
        cost: u64,
        now: Nanos,
    ) -> Option<RetryAfter> {
        let q = self.queue(db, key)?;
        if q.fifo.is_empty() {
            return None;
        }
        let at = q.tail_at.max(now);
        let ahead = at.saturating_sub(now).max(MIN_RETRY);
        Some(
            match evaluate(q.tail_state.stored(), spec, at, cost, Action::Take) {
                Ok((a, _)) if a.allowed => RetryAfter::After(ahead),
                Ok((a, _)) => match a.retry_after {
                    RetryAfter::After(w) => RetryAfter::After(ahead.saturating_add(w)),
                    RetryAfter::Never => RetryAfter::Never,
                    RetryAfter::Now => RetryAfter::After(ahead),
                },
                Err(_) => RetryAfter::After(ahead),
            },
        )
    }

    /// Puts a waiter at the end of the queue of each key it needs (`states`:
    /// each key's state now, for a queue that starts with it) and returns
    /// its id.
    pub fn join(
        &mut self,
        db: i32,
        needs: Vec<Need>,
        states: Vec<State>,
        now: Nanos,
        data: T,
    ) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        for (need, state) in needs.iter().zip(states) {
            let q = self
                .queues
                .entry(db)
                .or_default()
                .entry(need.key.clone())
                .or_insert_with(|| Queue {
                    fifo: VecDeque::new(),
                    tail_state: state,
                    tail_at: now,
                });
            q.fifo.push_back(id);
            project(q, need, now);
        }
        self.waiters.insert(id, Waiter { db, needs, data });
        id
    }

    /// Takes a waiter out of every queue. Returns it, and the waiters that
    /// became first in one of its queues, oldest first.
    pub fn leave(&mut self, id: u64) -> Option<(Waiter<T>, Vec<u64>)> {
        let w = self.waiters.remove(&id)?;
        let mut next = Vec::new();
        let Some(keys) = self.queues.get_mut(&w.db) else {
            return Some((w, next));
        };
        for n in &w.needs {
            let Some(q) = keys.get_mut(n.key.as_slice()) else {
                continue;
            };
            let was_first = q.fifo.front() == Some(&id);
            q.fifo.retain(|x| *x != id);
            match q.fifo.front() {
                None => {
                    keys.remove(n.key.as_slice());
                }
                Some(&h) if was_first && !next.contains(&h) => next.push(h),
                Some(_) => {}
            }
        }
        if keys.is_empty() {
            self.queues.remove(&w.db);
        }
        next.sort_unstable();
        Some((w, next))
    }

    /// The answer of a waiter that leaves before it is admitted (taken out
    /// of the line already): each limit's answer now (`now_answers`, in
    /// the order of `needs`), behind whoever is still ahead on its key, and
    /// never allowed; the binding limit's position and answer.
    pub fn denial(
        &self,
        db: i32,
        needs: &[Need],
        now_answers: &[Answer],
        now: Nanos,
    ) -> Option<(usize, Answer)> {
        let answers: Vec<Answer> = needs
            .iter()
            .zip(now_answers)
            .map(
                |(n, a)| match self.behind(db, &n.key, &n.spec, n.cost, now) {
                    Some(retry) => queued(*a, retry),
                    None if a.allowed => queued(*a, RetryAfter::After(MIN_RETRY)),
                    None => *a,
                },
            )
            .collect();
        let index = binding(answers.iter())?;
        Some((index, *answers.get(index)?))
    }
}

/// A denial because others wait ahead: nothing can be taken now.
pub fn queued(a: Answer, retry: RetryAfter) -> Answer {
    Answer {
        allowed: false,
        remaining: 0,
        retry_after: retry,
        ..a
    }
}

/// Extends a queue's projection by one waiter's need: the first instant
/// its limit allows it after the one ahead, and the state it leaves.
fn project(q: &mut Queue, need: &Need, now: Nanos) {
    let mut at = q.tail_at.max(now);
    for _ in 0..2 {
        match evaluate(
            q.tail_state.stored(),
            &need.spec,
            at,
            need.cost,
            Action::Take,
        ) {
            Ok((a, effect)) if a.allowed => {
                q.tail_state.apply(&effect);
                q.tail_at = at;
                return;
            }
            Ok((a, _)) => match a.retry_after {
                RetryAfter::After(w) => at = at.saturating_add(w),
                _ => return,
            },
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ratelimit_core::algo::bucket::Bucket;

    const T0: Nanos = Nanos::from_secs(1_800_000_000);

    fn s(n: u64) -> Nanos {
        Nanos::from_secs(n)
    }

    /// One token, one a second.
    fn one_a_second() -> Spec {
        Spec::Bucket(Bucket::new(1, s(1)).unwrap())
    }

    fn need(key: &str) -> Need {
        Need {
            key: key.as_bytes().to_vec(),
            spec: one_a_second(),
            cost: 1,
        }
    }

    /// A bucket spent at `T0`: full again a second later.
    fn spent() -> State {
        State::Bucket(T0.saturating_add(s(1)))
    }

    /// Waiters joining at `T0`, each needing the keys given, every key spent.
    fn line_of(waiters: &[&[&str]]) -> (Line<()>, Vec<u64>) {
        let mut line = Line::default();
        let ids = waiters
            .iter()
            .map(|keys| {
                let needs = keys.iter().map(|k| need(k)).collect();
                let states = keys.iter().map(|_| spent()).collect();
                line.join(0, needs, states, T0, ())
            })
            .collect();
        (line, ids)
    }

    #[test]
    fn a_newcomer_waits_for_everyone_ahead_then_for_its_own_limit() {
        let (line, _) = line_of(&[&["a"], &["a"]]);
        // Projected: the first at T0 + 1 s, the second at T0 + 2 s; a
        // newcomer's token comes a second after that.
        let one = one_a_second();
        assert_eq!(
            line.behind(0, b"a", &one, 1, T0),
            Some(RetryAfter::After(s(3)))
        );
        assert_eq!(
            line.behind(0, b"a", &one, 1, T0.saturating_add(s(1))),
            Some(RetryAfter::After(s(2)))
        );
        // Asking more than the limit ever allows: never.
        assert_eq!(line.behind(0, b"a", &one, 2, T0), Some(RetryAfter::Never));
        // Another key, another database: no one ahead.
        assert_eq!(line.behind(0, b"b", &one, 1, T0), None);
        assert_eq!(line.behind(1, b"a", &one, 1, T0), None);
        // Once the line is due, the wait is never below a millisecond.
        let late = T0.saturating_add(s(10));
        let free = Spec::Bucket(Bucket::new(5, s(1)).unwrap());
        assert_eq!(
            line.behind(0, b"a", &free, 1, late),
            Some(RetryAfter::After(MIN_RETRY))
        );
    }

    #[test]
    fn a_waiter_of_several_keys_is_first_only_when_first_on_each() {
        // 1 needs a; 2 needs a and b; 3 needs b.
        let (mut line, ids) = line_of(&[&["a"], &["a", "b"], &["b"]]);
        let [w1, w2, w3] = ids[..] else { panic!() };
        assert!(line.is_head(w1));
        assert!(!line.is_head(w2), "first on b, second on a");
        assert!(!line.is_head(w3), "behind 2 on b, though 2 cannot go yet");
        assert_eq!(line.first(0, b"b"), Some(w2));
        let (_, next) = line.leave(w1).unwrap();
        assert_eq!(next, [w2]);
        assert!(line.is_head(w2) && !line.is_head(w3));
        let (_, next) = line.leave(w2).unwrap();
        assert_eq!(next, [w3]);
        assert!(line.is_head(w3));
    }

    #[test]
    fn those_who_become_first_are_named_once_oldest_first() {
        // 1 needs a and b; 2 and 3 both need b and a; 4 needs a.
        let (mut line, ids) = line_of(&[&["a", "b"], &["b", "a"], &["b"], &["a"]]);
        let (_, next) = line.leave(ids[0]).unwrap();
        assert_eq!(next, [ids[1]], "first on both keys, named once");
        let (_, next) = line.leave(ids[1]).unwrap();
        assert_eq!(next, [ids[2], ids[3]]);
        let mut heads = line.heads(Some(0));
        heads.sort_unstable();
        assert_eq!(heads, [ids[2], ids[3]]);
        assert!(line.heads(Some(1)).is_empty());
    }

    #[test]
    fn leaving_empties_the_queues_and_a_leaver_is_denied_behind_who_stays() {
        let (mut line, ids) = line_of(&[&["a"], &["a"]]);
        // The second leaves first: its answer counts the first still ahead,
        // even where its own limit would allow it now. The queue's end
        // stays where the leaver put it (it is not projected again): a
        // wait is overstated until the queue empties, never understated.
        let (w, next) = line.leave(ids[1]).unwrap();
        assert!(next.is_empty(), "it was not first");
        let now_allowed = Answer {
            allowed: true,
            limit: 1,
            remaining: 1,
            retry_after: RetryAfter::Now,
            reset_after: Nanos::ZERO,
        };
        let (index, a) = line.denial(0, &w.needs, &[now_allowed], T0).unwrap();
        assert_eq!(index, 0);
        assert!(!a.allowed && a.remaining == 0);
        assert_eq!(a.retry_after, RetryAfter::After(s(3)));
        // The last one leaves: nothing waits; a leaver allowed now is told
        // to retry in a millisecond, never allowed.
        let (w, next) = line.leave(ids[0]).unwrap();
        assert!(next.is_empty());
        assert_eq!(line.first(0, b"a"), None);
        assert!(line.heads(None).is_empty() && line.ids().is_empty());
        assert_eq!(line.behind(0, b"a", &one_a_second(), 1, T0), None);
        let (_, a) = line.denial(0, &w.needs, &[now_allowed], T0).unwrap();
        assert_eq!(
            (a.allowed, a.retry_after),
            (false, RetryAfter::After(MIN_RETRY))
        );
        assert!(line.leave(ids[0]).is_none());
    }
}
