//! Roles an operator grants, on every server the module supports: an
//! application account applies the operator's named policies only, a
//! trusted service account may also pass limits inline, and only an admin
//! account reads or changes policies (docs/SECURITY.md). Where modules may
//! add a category (Redis 7.4+, Valkey 8.0+) each role is one category;
//! everywhere, each role is a list of commands. Each role is checked
//! against every command the module has: allowed exactly when it is the
//! role's. `make test-matrix` runs this on each server.
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

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    App,
    Inline,
    Admin,
    Internal,
}
use Role::*;

/// Every command of the module, a call of it on keys under `rl:`, and its
/// role. The test checks this list against the server's own.
const COMMANDS: &[(&[&str], Role)] = &[
    (&["RL.TAKE", "rl:take", "api"], App),
    (
        &[
            "RL.TAKEALL",
            "LIMIT",
            "rl:{a}1",
            "POLICY",
            "api",
            "LIMIT",
            "rl:{a}2",
            "POLICY",
            "api",
        ],
        App,
    ),
    (&["RL.RELEASE", "rl:lease", "1"], App),
    (&["RL.RENEW", "rl:lease", "1", "10"], App),
    (
        &[
            "RL.SETTLE",
            "rl:{r}lease",
            "rl:{r}tokens",
            "LEASE",
            "1",
            "ACTUAL",
            "5",
        ],
        App,
    ),
    (&["RL.TOKENBUCKET", "rl:tb", "10", "1", "1"], Inline),
    (&["RL.SLIDING", "rl:sl", "10", "60"], Inline),
    (&["RL.GCRA", "rl:g", "1", "1", "1"], Inline),
    (&["RL.FIXED", "rl:f", "5", "DAY"], Inline),
    (&["RL.ACQUIRE", "rl:acq", "3", "30"], Inline),
    (
        &[
            "RL.ALL", "LIMIT", "rl:{u}a", "GCRA", "1", "1", "1", "LIMIT", "rl:{u}b", "FIXED", "5",
            "DAY",
        ],
        Inline,
    ),
    (&["CL.THROTTLE", "rl:t", "1", "1", "1"], Inline),
    (&["GCRA", "rl:gcra", "1", "1", "1"], Inline),
    (&["RL.POLICY", "GET", "api"], Admin),
    (&["RL.POLICY", "LIST"], Admin),
    (&["RL.POLICY", "SET", "other", "SLIDING", "10", "60"], Admin),
    (&["RL.POLICY", "DEL", "other"], Admin),
    (&["RL.SETSTATE", "rl:x", "x"], Internal),
    (&["RL.WINDOWADD", "rl:x", "x"], Internal),
    (&["RL.WINDOWREFUND", "rl:x", "x"], Internal),
    (&["RL.LEASE", "rl:x", "x"], Internal),
];

/// The roles as command lists (docs/SECURITY.md): what an operator grants
/// where the server has no category of ours (Redis 7.0, 7.2).
const APP_COMMANDS: &[&str] = &[
    "+rl.take",
    "+rl.takeall",
    "+rl.release",
    "+rl.renew",
    "+rl.settle",
];
const INLINE_COMMANDS: &[&str] = &[
    "+rl.tokenbucket",
    "+rl.sliding",
    "+rl.gcra",
    "+rl.fixed",
    "+rl.acquire",
    "+rl.all",
    "+cl.throttle",
    "+gcra",
];
const ADMIN_COMMANDS: &[&str] = &["+rl.policy"];

/// Connects as `user` (password `secret`).
fn login(s: &Server, user: &str) -> redis::Connection {
    let mut c = s.connect();
    ok(&mut c, &["AUTH", user, "secret"]);
    c
}

fn refused(r: &Result<redis::Value, String>) -> bool {
    matches!(r, Err(e) if e.starts_with("NOPERM"))
}

/// Creates `user` with `grants` on keys under `rl:`.
fn user(c: &mut redis::Connection, user: &str, grants: &[&str]) -> Result<(), String> {
    let mut args = vec!["ACL", "SETUSER", user, "on", ">secret", "~rl:*"];
    args.extend(grants);
    call(c, &args).map(|_| ())
}

/// A user holding `roles` may run exactly those roles' commands.
fn can_do_exactly(s: &Server, name: &str, roles: &[Role]) {
    let mut c = login(s, name);
    for (args, role) in COMMANDS {
        let r = call(&mut c, args);
        let expected = roles.contains(role);
        assert_eq!(!refused(&r), expected, "{name} {args:?}: {r:?}");
    }
    // Nothing else of the server's.
    assert!(refused(&call(&mut c, &["GET", "rl:take"])));
    assert!(refused(&call(&mut c, &["FLUSHALL"])));
}

#[test]
fn each_role_can_do_exactly_its_part() {
    let s = Server::start();
    let mut c = s.connect();
    let support = acl_support(&mut c);
    ok(&mut c, &["RL.POLICY", "SET", "api", "SLIDING", "10", "60"]);

    // The module's commands are exactly those listed here.
    let listed: Vec<String> = redis::cmd("COMMAND")
        .arg("LIST")
        .arg("FILTERBY")
        .arg("MODULE")
        .arg("ratelimit")
        .query(&mut c)
        .unwrap();
    let mut listed: Vec<String> = listed.into_iter().map(|n| n.to_lowercase()).collect();
    listed.sort();
    // Subcommands are listed as `parent|sub` (Redis 7.0 lists them too).
    let subcommands = listed.iter().any(|n| n.contains('|'));
    let mut ours: Vec<String> = COMMANDS
        .iter()
        .flat_map(|(a, _)| match a[0] {
            "RL.POLICY" if subcommands => {
                vec![
                    "rl.policy".to_string(),
                    format!("rl.policy|{}", a[1].to_lowercase()),
                ]
            }
            n => vec![n.to_lowercase()],
        })
        .collect();
    ours.sort();
    ours.dedup();
    let ours: Vec<String> = ours
        .into_iter()
        .filter(|n| !n.starts_with("rl.test."))
        .collect();
    listed.retain(|n| !n.starts_with("rl.test."));
    assert_eq!(listed, ours);

    // As command lists: every server.
    user(&mut c, "app", APP_COMMANDS).unwrap();
    let service: Vec<&str> = APP_COMMANDS
        .iter()
        .chain(INLINE_COMMANDS)
        .copied()
        .collect();
    user(&mut c, "service", &service).unwrap();
    user(&mut c, "admin", ADMIN_COMMANDS).unwrap();
    can_do_exactly(&s, "app", &[App]);
    can_do_exactly(&s, "service", &[App, Inline]);
    can_do_exactly(&s, "admin", &[Admin]);

    // As categories where the server lets a module add them.
    let app = user(&mut c, "app2", &["+@ratelimit"]);
    if support != Acl::AddOwn {
        assert!(
            app.unwrap_err().to_lowercase().contains("unknown"),
            "{support:?}"
        );
        return;
    }
    app.unwrap();
    user(&mut c, "service2", &["+@ratelimit", "+@ratelimit-inline"]).unwrap();
    user(&mut c, "admin2", &["+@ratelimit-admin"]).unwrap();
    can_do_exactly(&s, "app2", &[App]);
    can_do_exactly(&s, "service2", &[App, Inline]);
    can_do_exactly(&s, "admin2", &[Admin]);
    // Each category holds exactly its role's commands.
    for (category, role) in [
        ("ratelimit", App),
        ("ratelimit-inline", Inline),
        ("ratelimit-admin", Admin),
    ] {
        // Each of the module's commands by the categories COMMAND INFO
        // gives it (ACL CAT leaves module commands out on Redis 7.4 and
        // Valkey 8.0: acl.c skips CMD_MODULE there).
        let module: Vec<String> = redis::cmd("COMMAND")
            .arg("LIST")
            .arg("FILTERBY")
            .arg("MODULE")
            .arg("ratelimit")
            .query(&mut c)
            .unwrap();
        let wanted = format!("@{category}");
        let mut held: Vec<String> = module
            .into_iter()
            .map(|n| n.to_lowercase())
            .filter(|n| n != "rl.policy")
            .filter(|n| categories_of(&mut c, n).contains(&wanted))
            .collect();
        held.sort();
        let mut expected: Vec<String> = COMMANDS
            .iter()
            .filter(|(_, r)| *r == role)
            .map(|(a, _)| match a[0] {
                "RL.POLICY" => format!("rl.policy|{}", a[1].to_lowercase()),
                n => n.to_lowercase(),
            })
            .collect();
        expected.sort();
        assert_eq!(held, expected, "@{category}");
    }
}

/// A command's ACL categories as `COMMAND INFO` gives them (its seventh
/// field), `@` included.
fn categories_of(c: &mut redis::Connection, name: &str) -> Vec<String> {
    let info: Vec<Vec<redis::Value>> = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(c)
        .unwrap();
    let fields = info
        .first()
        .unwrap_or_else(|| panic!("no COMMAND INFO for {name}"));
    redis::from_redis_value(fields[6].clone()).unwrap()
}

#[test]
fn the_readme_app_account_cannot_change_the_rules() {
    // The recipe README.md gives an application, run against the attacks
    // issue 20 reported: every one is NOPERM, and the policy is untouched.
    let s = Server::start();
    let mut c = s.connect();
    ok(&mut c, &["RL.POLICY", "SET", "api", "SLIDING", "10", "60"]);
    let grant = if acl_support(&mut c) == Acl::AddOwn {
        vec!["+@ratelimit"]
    } else {
        APP_COMMANDS.to_vec()
    };
    user(&mut c, "app", &grant).unwrap();
    let mut app = login(&s, "app");
    for attack in [
        &[
            "RL.POLICY",
            "SET",
            "api",
            "SLIDING",
            "1000000",
            "1",
            "SHADOW",
        ][..],
        &["RL.POLICY", "DEL", "api"],
        &[
            "RL.POLICY",
            "SET",
            "api",
            "SLIDING",
            "10",
            "60",
            "LOCKOUT",
            "315360000",
        ],
        &["RL.SLIDING", "rl:shared", "1", "315360000", "BLOCK", "0"],
        &["RL.ALL", "LIMIT", "rl:shared", "SLIDING", "1", "315360000"],
        &["RL.POLICY", "LIST"],
    ] {
        assert!(refused(&call(&mut app, attack)), "{attack:?}");
    }
    let r = call(
        &mut app,
        &[
            "RL.TAKEALL",
            "LIMIT",
            "rl:shared",
            "SLIDING",
            "1",
            "315360000",
        ],
    );
    assert_eq!(
        r.unwrap_err(),
        "ERR RL.TAKEALL takes POLICY clauses only (LIMIT key POLICY name): a limit written inline needs RL.ALL"
    );
    assert_eq!(
        bytes(&mut c, &["RL.POLICY", "GET", "api"]).unwrap(),
        b"SLIDING 10 60"
    );
    assert_eq!(int(&mut c, &["EXISTS", "rl:shared"]), 0);
    // What the account is for works.
    let taken = call(&mut app, &["RL.TAKE", "rl:user1", "api"]).unwrap();
    assert_eq!(
        taken,
        redis::Value::Array(vec![
            redis::Value::Int(1),
            redis::Value::Int(10),
            redis::Value::Int(9),
            redis::Value::Int(0),
            redis::Value::Int(60000),
        ])
    );
}

#[test]
fn core_categories_cover_the_commands_where_modules_may_set_them() {
    let s = Server::start();
    let mut c = s.connect();
    let support = acl_support(&mut c);
    // @write covers them as it covers core write commands (7.2+).
    user(&mut c, "writer", &["+@write"]).unwrap();
    let mut writer = login(&s, "writer");
    let r = call(&mut writer, &["RL.SLIDING", "rl:k", "10", "60"]);
    assert_eq!(refused(&r), support == Acl::None, "{r:?}");
}
