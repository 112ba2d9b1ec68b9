//! README.md's taste, pasted in order into a fresh server, answers every
//! call as shown: the calls and the replies are read from README.md itself
//! (its "A taste" block), so they cannot drift apart.
//!
//! A line `$ redis-cli CMD args...   # comment` is a call; the lines
//! `N) (integer) V` after it are its reply, and a comment `reply: a b c`
//! gives one inline. A call shown with a reply must answer exactly that; one
//! shown without must answer something other than an error.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// One call of the taste and the reply shown for it, if any.
#[derive(Debug)]
struct Call {
    line: usize,
    args: Vec<String>,
    reply: Option<Vec<i64>>,
}

/// The calls of README.md's "A taste" block, in order.
fn taste() -> Vec<Call> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let lines: Vec<&str> = readme.lines().collect();
    let start = lines
        .iter()
        .position(|l| *l == "## A taste")
        .expect("README.md has a \"## A taste\" section");
    let open = start
        + lines[start..]
            .iter()
            .position(|l| l.starts_with("```"))
            .expect("a code block in A taste");
    let mut calls: Vec<Call> = Vec::new();
    for (i, l) in lines.iter().enumerate().skip(open + 1) {
        if l.starts_with("```") {
            return calls;
        }
        let (text, comment) = match l.find(" #") {
            Some(at) => (&l[..at], l[at + 2..].trim()),
            None => (*l, ""),
        };
        if let Some(cmd) = text.strip_prefix("$ redis-cli ") {
            let inline = comment.split_once("reply: ").map(|(_, r)| {
                r.split_whitespace()
                    .map(|w| w.parse().expect("an inline reply of integers"))
                    .collect()
            });
            calls.push(Call {
                line: i + 1,
                args: cmd.split_whitespace().map(String::from).collect(),
                reply: inline,
            });
        } else if let Some((_, v)) = text.split_once(") (integer) ") {
            let last = calls.last_mut().expect("a reply line after a call");
            let v: i64 = v.trim().parse().expect("an integer");
            last.reply.get_or_insert_with(Vec::new).push(v);
        } else if !text.trim().is_empty() {
            panic!("README.md:{}: neither a call nor a reply: {l}", i + 1);
        }
    }
    panic!("the A taste block never closes");
}

#[test]
fn the_readme_taste_answers_every_call_as_shown_in_order() {
    let calls = taste();
    assert!(calls.len() >= 10, "too few calls read: {calls:?}");
    assert!(
        calls.iter().filter(|c| c.reply.is_some()).count() >= 3,
        "too few replies read: {calls:?}"
    );
    let s = Server::start();
    let mut c = s.connect();
    for call in &calls {
        let args: Vec<&str> = call.args.iter().map(String::as_str).collect();
        let got = call_on(&mut c, &args);
        let shown = format!("README.md:{}: {}", call.line, call.args.join(" "));
        match (&got, &call.reply) {
            (Err(e), _) => panic!("{shown}: answered the error {e}"),
            (Ok(v), Some(want)) => {
                let ints: Vec<i64> = match v {
                    Value::Array(items) => items
                        .iter()
                        .map(|x| match x {
                            Value::Int(i) => *i,
                            other => panic!("{shown}: {other:?} in the reply"),
                        })
                        .collect(),
                    other => panic!("{shown}: answered {other:?}"),
                };
                assert_eq!(&ints, want, "{shown}: the reply shown");
            }
            (Ok(_), None) => {}
        }
    }
}
