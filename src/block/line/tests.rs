//! The line's logic without a server: queues in arrival order, who is
//! first, what a newcomer, a leaver and a head are answered.

use super::*;
use redis_ratelimit_core::algo::bucket::Bucket;
use redis_ratelimit_core::algo::lease::{Concurrency, Leases, Op};
use redis_ratelimit_core::limit::{decide_all, Claim, Rules, Stored};

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

/// An answer of one limit of one token: allowed, with `remaining` left.
fn allowed(remaining: u64) -> Answer {
    Answer {
        allowed: true,
        limit: 1,
        remaining,
        retry_after: RetryAfter::Now,
        reset_after: Nanos::ZERO,
    }
}

#[test]
fn each_queue_is_first_come_first_served() {
    let (mut line, ids) = line_of(&[&["a"], &["a"], &["a"]]);
    let [w1, w2, w3] = ids[..] else { panic!() };
    assert!(w1 < w2 && w2 < w3, "ids grow with arrival");
    assert_eq!(line.first(0, b"a"), Some(w1));
    assert!(line.is_head(w1) && !line.is_head(w2) && !line.is_head(w3));
    // A late joiner goes to the end, behind everyone already waiting.
    let w4 = line.join(0, vec![need("a")], vec![spent()], T0, ());
    assert!(w4 > w3 && !line.is_head(w4));
    // Served in arrival order: whoever leaves, the next oldest is first.
    for (leaving, next) in [(w1, w2), (w2, w3), (w3, w4)] {
        assert_eq!(line.leave(leaving).unwrap().1, [next]);
        assert_eq!(line.first(0, b"a"), Some(next));
    }
}

#[test]
fn a_newcomer_never_jumps_the_line() {
    let (line, _) = line_of(&[&["a"]]);
    let one = one_a_second();
    // Its own limit would let it in now (its answer says allowed): it
    // is denied behind the one waiting, its wait counting that one's.
    let answers = line
        .ahead(0, [(&b"a"[..], &one, 1, allowed(0))], T0)
        .expect("someone waits on a");
    assert_eq!(answers.len(), 1);
    let a = answers[0];
    assert!(!a.allowed && a.remaining == 0);
    assert_eq!(a.retry_after, RetryAfter::After(s(2)));
    // RL.ALL over a and b: b's own answer stands, a's binds, and the
    // request is turned away with a's answer.
    let answers = line
        .ahead(
            0,
            [
                (&b"b"[..], &one, 1, allowed(0)),
                (&b"a"[..], &one, 1, allowed(0)),
            ],
            T0,
        )
        .unwrap();
    assert_eq!(answers[0], allowed(0));
    let (index, a) = refusal(&answers).unwrap();
    assert_eq!(index, 1);
    assert_eq!((a.allowed, a.retry_after), (false, RetryAfter::After(s(2))));
    // No one ahead: the line does not concern it. A peek (cost 0) takes
    // nothing, so it is not held back either; nor is another database.
    assert_eq!(line.ahead(0, [(&b"b"[..], &one, 1, allowed(0))], T0), None);
    assert_eq!(line.ahead(0, [(&b"a"[..], &one, 0, allowed(0))], T0), None);
    assert_eq!(line.ahead(1, [(&b"a"[..], &one, 1, allowed(0))], T0), None);
}

#[test]
fn a_turned_away_request_is_never_allowed_and_names_its_binding_limit() {
    let waiting = |secs| Answer {
        allowed: false,
        remaining: 0,
        retry_after: RetryAfter::After(s(secs)),
        ..allowed(0)
    };
    // The longest wait binds; even an all-allowed list answers denied.
    assert_eq!(
        refusal(&[waiting(1), waiting(3), allowed(1)]),
        Some((1, waiting(3)))
    );
    let (index, a) = refusal(&[allowed(3), allowed(1)]).unwrap();
    assert_eq!(index, 1);
    assert!(!a.allowed);
    assert_eq!(refusal(&[]), None);
}

/// Its limits decided together now, as the line decides an admission.
fn decided(stored: Stored<'_>, spec: &Spec, cost: u64, now: Nanos) -> Answer {
    let claim = Claim {
        stored,
        spec,
        rules: Rules::default(),
        cost,
    };
    decide_all(&[claim], now, Action::Take).unwrap().answer
}

#[test]
fn the_head_is_admitted_when_its_limits_allow_and_timed_otherwise() {
    let one = one_a_second();
    let tat = T0.saturating_add(s(1));
    // Spent: its timer is armed for when the token is back.
    let a = Admission::of(&decided(Stored::Bucket(tat), &one, 1, T0));
    assert_eq!(a, Admission::After(s(1)));
    assert_eq!(a.timer(), s(1));
    // Then it is let in.
    let a = Admission::of(&decided(Stored::Bucket(tat), &one, 1, tat));
    assert_eq!((a, a.timer()), (Admission::Now, Nanos::ZERO));
    // More than the limit ever allows (the key's limit changed under
    // it): no wait helps, its wait ends now with the denial.
    let a = Admission::of(&decided(Stored::Empty, &one, 2, T0));
    assert_eq!((a, a.timer()), (Admission::Never, Nanos::ZERO));
}

/// One slot, leased for ten seconds.
fn one_slot() -> Spec {
    Spec::Concurrency(Concurrency {
        limit: 1,
        lease: s(10),
    })
}

/// The one slot, held from `T0` until `T0 + 5 s`.
fn held() -> Leases {
    Leases::from_op(&Op::Acquire {
        now: T0,
        id: 1,
        expires: T0.saturating_add(s(5)),
    })
}

#[test]
fn lease_waiters_queue_for_slots_and_a_release_admits_the_head() {
    let slot = one_slot();
    let lease_need = |key: &str| Need {
        key: key.as_bytes().to_vec(),
        spec: slot.clone(),
        cost: 1,
    };
    let mut line = Line::default();
    let w1 = line.join(
        0,
        vec![lease_need("l")],
        vec![State::Leases(held())],
        T0,
        (),
    );
    let w2 = line.join(
        0,
        vec![lease_need("l")],
        vec![State::Leases(held())],
        T0,
        (),
    );
    // The first gets the slot when the lease ends (T0 + 5 s) and holds
    // it ten seconds, the second then (T0 + 15 s): a newcomer's slot
    // comes at T0 + 25 s.
    assert_eq!(
        line.behind(0, b"l", &slot, 1, T0),
        Some(RetryAfter::After(s(25)))
    );
    // The head's own admission: the slot is held five more seconds...
    let a = Admission::of(&decided(Stored::Leases(&held()), &slot, 1, T0));
    assert_eq!(a, Admission::After(s(5)));
    // ...until RL.RELEASE frees it: the release looks at the key's
    // head again, which now fits at once.
    assert_eq!(line.head_on(0, b"l"), Some(w1));
    let a = Admission::of(&decided(Stored::Empty, &slot, 1, T0));
    assert_eq!(a, Admission::Now);
    assert_eq!(line.leave(w1).unwrap().1, [w2]);
    assert_eq!(line.head_on(0, b"l"), Some(w2));
}

#[test]
fn units_coming_back_wake_a_head_only_where_it_is_first_everywhere() {
    // 1 needs a; 2 needs b and a (RL.ALL).
    let (mut line, ids) = line_of(&[&["a"], &["b", "a"]]);
    let [w1, w2] = ids[..] else { panic!() };
    assert_eq!(line.head_on(0, b"a"), Some(w1));
    // First on b, but behind 1 on a: a refund on b wakes no one.
    assert_eq!(line.first(0, b"b"), Some(w2));
    assert_eq!(line.head_on(0, b"b"), None);
    assert_eq!(line.head_on(0, b"c"), None);
    line.leave(w1).unwrap();
    assert_eq!(line.head_on(0, b"b"), Some(w2));
    assert_eq!(line.head_on(0, b"a"), Some(w2));
}

#[test]
fn a_waiter_whose_deadline_passes_leaves_its_place_to_the_next() {
    // 2 needs a and b, between 1 (on a) and 3 (on b).
    let (mut line, ids) = line_of(&[&["a"], &["a", "b"], &["b"]]);
    let [w1, w2, w3] = ids[..] else { panic!() };
    assert!(!line.is_head(w3));
    // 2's deadline: it leaves both queues; 3 is now first on b, and
    // named as such; 1, still first on a, is not named again.
    let (w, next) = line.leave(w2).unwrap();
    assert_eq!(next, [w3]);
    assert!(line.is_head(w1) && line.is_head(w3));
    assert_eq!(line.get(w2).map(|_| ()), None);
    // Its reply: denied, behind 1 still on a, on b free now (never
    // allowed: retry in a millisecond); a's wait binds. a's queue still
    // ends where 2 put it (T0 + 2 s: not projected again), so the wait
    // is overstated by 2's second, never understated.
    let (index, a) = line
        .denial(0, &w.needs, &[allowed(0), allowed(0)], T0)
        .unwrap();
    assert_eq!(index, 0);
    assert_eq!((a.allowed, a.retry_after), (false, RetryAfter::After(s(3))));
}
