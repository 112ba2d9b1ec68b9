//! ACL categories on every server the module supports. Where modules may
//! add a category (Redis 7.4+, Valkey 8.0+), `+@ratelimit` grants exactly
//! the rate limiters; where they may only set categories (7.2), the
//! commands are in `@write` like core write commands; on 7.0 neither, and
//! a user is given the commands by name. `make test-matrix` runs this on
//! each side.
#![cfg(test)]

use redis_ratelimit_testkit::*;

/// What the server lets a module do with ACL categories.
#[derive(Debug, PartialEq)]
enum Acl {
    None,
    SetOnly,
    AddOwn,
}

fn acl_support(c: &mut redis::Connection) -> Acl {
    let info: String = redis::cmd("INFO").arg("server").query(c).unwrap();
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    if field("valkey_version:").is_some() {
        return Acl::AddOwn; // Valkey 8.0 and later
    }
    let version = field("redis_version:").unwrap();
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap());
    match (parts.next().unwrap(), parts.next().unwrap()) {
        v if v >= (7, 4) => Acl::AddOwn,
        v if v >= (7, 2) => Acl::SetOnly,
        _ => Acl::None,
    }
}

/// Connects as `user` (password `secret`).
fn login(s: &Server, user: &str) -> redis::Connection {
    let mut c = s.connect();
    ok(&mut c, &["AUTH", user, "secret"]);
    c
}

fn allowed(c: &mut redis::Connection, args: &[&str]) {
    let r = call(c, args);
    assert!(
        !matches!(&r, Err(e) if e.starts_with("NOPERM")),
        "{args:?}: {r:?}"
    );
}

fn refused(c: &mut redis::Connection, args: &[&str]) {
    let e = call(c, args).unwrap_err();
    assert!(e.starts_with("NOPERM"), "{args:?}: {e}");
}

const ALL: &[&str] = &[
    "RL.ALL", "LIMIT", "{u}:a", "GCRA", "1", "1", "1", "LIMIT", "{u}:b", "FIXED", "5", "DAY",
];

#[test]
fn users_get_the_rate_limiters_the_way_the_server_allows() {
    let s = Server::start();
    let mut c = s.connect();
    let support = acl_support(&mut c);
    let grant = call(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "app",
            "on",
            ">secret",
            "~*",
            "+@ratelimit",
        ],
    );
    if support != Acl::AddOwn {
        assert!(
            grant.unwrap_err().to_lowercase().contains("unknown"),
            "{support:?}"
        );
    } else {
        grant.unwrap();
        let mut app = login(&s, "app");
        allowed(&mut app, &["RL.SLIDING", "k", "10", "60"]);
        allowed(&mut app, &["CL.THROTTLE", "t", "1", "1", "1"]);
        allowed(&mut app, ALL);
        refused(&mut app, &["GET", "k"]);
        refused(&mut app, &["FLUSHALL"]);
        // The internal commands are not among them.
        refused(&mut app, &["RL.SETSTATE", "k", "x"]);
    }
    // @write covers them as it covers core write commands (7.2+).
    ok(
        &mut c,
        &["ACL", "SETUSER", "writer", "on", ">secret", "~*", "+@write"],
    );
    let mut writer = login(&s, "writer");
    if support == Acl::None {
        refused(&mut writer, &["RL.SLIDING", "k", "10", "60"]);
    } else {
        allowed(&mut writer, &["RL.SLIDING", "k", "10", "60"]);
        allowed(&mut writer, ALL);
    }
    // Everywhere: the commands by name.
    ok(
        &mut c,
        &[
            "ACL",
            "SETUSER",
            "named",
            "on",
            ">secret",
            "~*",
            "+rl.sliding",
            "+rl.all",
        ],
    );
    let mut named = login(&s, "named");
    allowed(&mut named, &["RL.SLIDING", "k", "10", "60"]);
    allowed(&mut named, ALL);
    refused(&mut named, &["RL.GCRA", "g", "1", "1", "1"]);
}
