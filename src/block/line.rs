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
use redis_ratelimit_core::few::Few;
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

    /// The first waiter on `key`, if it is first on every key it needs:
    /// the one to look at again when units come back on `key`.
    pub fn head_on(&self, db: i32, key: &[u8]) -> Option<u64> {
        self.first(db, key).filter(|h| self.is_head(*h))
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

    /// A newcomer seen from the end of the line: for each of its limits
    /// (`key`, `spec`, `cost`, and its own `answer` now), a denial behind
    /// the queue on a key where others wait and the limit takes units (a
    /// newcomer never jumps the line), else its own answer. `None` when no
    /// one waits ahead of it on any key it takes from.
    pub fn ahead<'a>(
        &self,
        db: i32,
        limits: impl IntoIterator<Item = (&'a [u8], &'a Spec, u64, Answer)>,
        now: Nanos,
    ) -> Option<Few<Answer>> {
        let mut waits_ahead = false;
        let answers = limits
            .into_iter()
            .map(|(key, spec, cost, answer)| {
                match self.behind(db, key, spec, cost, now).filter(|_| cost > 0) {
                    Some(retry) => {
                        waits_ahead = true;
                        queued(answer, retry)
                    }
                    None => answer,
                }
            })
            .collect();
        waits_ahead.then_some(answers)
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
        refusal(&answers)
    }
}

/// The answer of a request the line turns away, from its limits'
/// `answers`: the binding limit's position and answer, never allowed.
pub fn refusal(answers: &[Answer]) -> Option<(usize, Answer)> {
    let index = binding(answers.iter())?;
    let answer = answers.get(index)?;
    Some((
        index,
        Answer {
            allowed: false,
            ..*answer
        },
    ))
}

/// What a waiter's limits, decided together now, make of its wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Every limit allows: it is admitted now.
    Now,
    /// Denied, and allowed after this wait: its timer is armed for then.
    After(Nanos),
    /// Denied with no wait that helps (the key changed under it, say, to
    /// another limit): its wait ends with that denial.
    Never,
}

impl Admission {
    /// The answer of a waiter's limits decided together now.
    pub fn of(answer: &Answer) -> Admission {
        match (answer.allowed, answer.retry_after) {
            (true, _) => Admission::Now,
            (false, RetryAfter::After(w)) => Admission::After(w),
            (false, RetryAfter::Now | RetryAfter::Never) => Admission::Never,
        }
    }

    /// When to look at the waiter again: at once, unless a wait helps.
    pub fn timer(self) -> Nanos {
        match self {
            Admission::After(w) => w,
            Admission::Now | Admission::Never => Nanos::ZERO,
        }
    }
}

/// A denial because others wait ahead: nothing can be taken now.
fn queued(a: Answer, retry: RetryAfter) -> Answer {
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
mod tests;
