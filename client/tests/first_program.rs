#![cfg(test)]
//! The crate as a newcomer meets it. The README's `Cargo.toml` snippets
//! and programs, copied from the README itself (so they cannot drift),
//! go into fresh cargo projects (`cargo new`), which build offline against
//! this checkout (the snippet's `path = "../redis-ratelimit/client"`
//! resolves through a link to the workspace, and the workspace's
//! `Cargo.lock` picks crate versions already downloaded); the first
//! program then runs against a real server with the module and must print
//! what the README says. And every code example (crate docs, README,
//! `examples/`) reaches redis-rs through the crate's re-export: a fresh
//! project has no `redis` dependency of its own, and doctests, which see
//! every dependency of the crate, would not notice.

use std::path::{Path, PathBuf};
use std::process::Command;

use redis_ratelimit_testkit::{temp_dir, workspace_root, Server};

/// The fenced blocks of a markdown text: (info string, body).
fn fenced(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        let t = line.trim_start();
        match (&mut open, t.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => out.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    out
}

/// The text of a Rust file's doc comments (`///`, `//!`), markers removed.
fn doc_text(source: &str) -> String {
    let mut out = String::new();
    for line in source.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("///").or_else(|| t.strip_prefix("//!")) {
            out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            out.push('\n');
        }
    }
    out
}

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("client/README.md")).unwrap()
}

/// The README's (Cargo.toml snippet, program) pairs, in order.
fn readme_programs() -> Vec<(String, String)> {
    let blocks = fenced(&readme());
    let mut pairs = Vec::new();
    let mut toml = None;
    for (info, body) in blocks {
        if info == "toml" {
            toml = Some(body);
        } else if info.starts_with("rust") && body.contains("fn main") {
            if let Some(t) = toml.take() {
                pairs.push((t, body));
            }
        }
    }
    pairs
}

/// Does `code` name redis-rs as `redis::` without importing the crate's
/// re-export (`use redis_ratelimit_client::redis;` or `redis` in a
/// `use redis_ratelimit_client::{..}` list)?
fn bare_redis(code: &str) -> bool {
    let bytes = code.as_bytes();
    let uses_bare = code.match_indices("redis::").any(|(at, _)| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        !matches!(before, Some(b':' | b'_') | Some(b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'))
    });
    let imports = code
        .match_indices("use redis_ratelimit_client::")
        .any(|(at, m)| {
            let rest = &code[at + m.len()..];
            let item = &rest[..rest.find(';').unwrap_or(rest.len())];
            item.trim() == "redis"
                || (item.trim_start().starts_with('{')
                    && item
                        .split(|c: char| c == ',' || c == '{' || c == '}' || c.is_whitespace())
                        .any(|w| w == "redis"))
        });
    uses_bare && !imports
}

/// Rustdoc compiles a fence without a language, or with Rust's.
fn is_rust(info: &str) -> bool {
    let lang = info.split(',').next().unwrap_or("");
    lang.is_empty()
        || lang == "rust"
        || ["no_run", "ignore", "should_panic", "compile_fail"].contains(&lang)
}

/// A Rust example that `ignore` keeps from compiling, or that names
/// `redis::` without the re-export, is an offender.
fn check(offenders: &mut Vec<String>, at: String, info: &str, body: &str) {
    if info.split(',').any(|w| w == "ignore") {
        offenders.push(format!("{at}: `ignore` keeps it from being compiled"));
    }
    if bare_redis(body) {
        offenders.push(format!(
            "{at}: uses `redis::` without `use redis_ratelimit_client::redis;` \
             (a newcomer's project has no redis dependency of its own)"
        ));
    }
}

#[test]
fn every_example_compiles_and_reaches_redis_through_the_reexport() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    let mut sources: Vec<PathBuf> = Vec::new();
    for dir in ["client/src", "client/examples"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") {
                sources.push(p);
            }
        }
    }
    sources.sort();
    for p in &sources {
        let text = std::fs::read_to_string(p).unwrap();
        let name = p.strip_prefix(&root).unwrap().display().to_string();
        if name.starts_with("client/examples") && bare_redis(&text) {
            offenders.push(format!("{name}: uses `redis::` without the re-export"));
        }
        for (i, (info, body)) in fenced(&doc_text(&text)).into_iter().enumerate() {
            if is_rust(&info) {
                check(
                    &mut offenders,
                    format!("{name}, doc example {}", i + 1),
                    &info,
                    &body,
                );
            }
        }
    }
    for (i, (info, body)) in fenced(&readme()).into_iter().enumerate() {
        if is_rust(&info) {
            check(
                &mut offenders,
                format!("client/README.md, block {}", i + 1),
                &info,
                &body,
            );
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
    // The check sees what it must.
    assert!(bare_redis("let c = redis::Client::open(url)?;"));
    assert!(!bare_redis(
        "use redis_ratelimit_client::{redis, Limiter};\nlet c = redis::Client::open(url)?;"
    ));
    assert!(!bare_redis(
        "let c = redis_ratelimit_client::redis::Client::open(url)?;"
    ));
}

/// The crate docs show the README's Cargo.toml snippets, word for word.
#[test]
fn the_crate_docs_show_the_readmes_cargo_toml() {
    let lib = std::fs::read_to_string(workspace_root().join("client/src/lib.rs")).unwrap();
    let toml = |text: &str| -> Vec<String> {
        fenced(text)
            .into_iter()
            .filter(|(info, _)| info == "toml")
            .map(|(_, body)| body)
            .collect()
    };
    let readme = toml(&readme());
    assert!(!readme.is_empty(), "the README has no Cargo.toml snippet");
    assert_eq!(toml(&doc_text(&lib)), readme);
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // What `cargo test` sets for this crate must not leak into the project.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && k != "CARGO_HOME" {
            c.env_remove(k);
        }
    }
    c
}

/// A fresh project `name` in `dir` (next to a `redis-ratelimit` link to
/// this checkout) with the snippet as its dependencies and the program as
/// `src/main.rs`, built offline: the binary.
fn build(dir: &Path, name: &str, snippet: &str, program: &str) -> PathBuf {
    let status = cargo()
        .current_dir(dir)
        .args(["new", "--vcs", "none", "--quiet", name])
        .status()
        .unwrap();
    assert!(status.success(), "cargo new failed");
    let project = dir.join(name);
    let manifest = project.join("Cargo.toml");
    let generated = std::fs::read_to_string(&manifest).unwrap();
    // `cargo new` ends the manifest with an empty [dependencies]: the
    // snippet, which starts with its own, takes its place.
    let package = generated
        .trim_end()
        .strip_suffix("[dependencies]")
        .unwrap_or_else(|| panic!("unexpected manifest from cargo new:\n{generated}"));
    std::fs::write(&manifest, format!("{package}{snippet}")).unwrap();
    std::fs::write(project.join("src/main.rs"), program).unwrap();
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        project.join("Cargo.lock"),
    )
    .unwrap();
    let target = workspace_root().join("target/first-program");
    let build = |offline: bool| {
        let mut c = cargo();
        c.current_dir(&project)
            .env("CARGO_TARGET_DIR", &target)
            .args(["build", "--quiet"]);
        if offline {
            c.arg("--offline");
        }
        c.output().unwrap()
    };
    // Offline first: the workspace's crates are all downloaded. A snippet
    // may need more (axum's default features do): those come from
    // crates.io.
    let mut out = build(true);
    if !out.status.success() {
        out = build(false);
    }
    assert!(
        out.status.success(),
        "the README's program does not build in a fresh project:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug").join(name)
}

#[test]
fn the_readmes_programs_build_in_a_fresh_project_and_the_first_runs() {
    let programs = readme_programs();
    assert!(
        programs.len() >= 2,
        "the README should have a Cargo.toml snippet and a program, with and without the middleware"
    );
    let dir = temp_dir();
    #[cfg(unix)]
    std::os::unix::fs::symlink(workspace_root(), dir.join("redis-ratelimit")).unwrap();
    for (snippet, _) in &programs {
        assert!(
            snippet.contains("path = \"../redis-ratelimit/client\""),
            "{snippet}"
        );
    }
    let first = build(&dir, "first", &programs[0].0, &programs[0].1);
    let middleware = build(&dir, "with_middleware", &programs[1].0, &programs[1].1);
    assert!(middleware.exists());

    let server = Server::start();
    let out = Command::new(&first)
        .env("REDIS_URL", server.url())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    let expected: Vec<String> = (1..=5)
        .map(|i| format!("attempt {i}: allowed, {} left", 5 - i))
        .collect();
    assert_eq!(lines[..5], expected, "{text}");
    // The wait until the first attempt leaves the minute, rounded to the
    // second: 60s, or 59s on a machine slow enough to take half a second.
    assert!(
        lines[5] == "attempt 6: denied, retry in 60s"
            || lines[5] == "attempt 6: denied, retry in 59s",
        "{text}"
    );
    assert_eq!(lines.len(), 6, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
