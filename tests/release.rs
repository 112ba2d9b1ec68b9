//! The release module (what `make run` loads): it loads, answers, and
//! carries none of the test hooks. `make test` builds it first; run alone,
//! the test fails (never skips) when it is missing or older than the
//! module's sources, naming the command that builds it.
#![cfg(test)]

use std::path::Path;
use std::time::SystemTime;

use redis_ratelimit_testkit::*;

/// The newest modification time of the files under `path`.
fn newest(path: &Path) -> SystemTime {
    let meta = std::fs::metadata(path).unwrap();
    if !meta.is_dir() {
        return meta.modified().unwrap();
    }
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| newest(&e.unwrap().path()))
        .max()
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

#[test]
fn release_module_loads_without_test_hooks() {
    let root = workspace_root();
    let path = root.join("target/release/libredis_ratelimit.so");
    let build = "cargo build --release --lib (make test runs it first)";
    assert!(
        path.exists(),
        "{} is not built: run {build}",
        path.display()
    );
    let built = newest(&path);
    // The module's sources, which cargo rebuilds it for when they change
    // (not Cargo.lock: a change for another crate rebuilds nothing here).
    for source in ["src", "core/src"] {
        assert!(
            newest(&root.join(source)) <= built,
            "{} is older than {source}: run {build}",
            path.display()
        );
    }
    let s = Server::start_full(temp_dir(), path, &[]);
    let mut c = s.connect();
    assert_eq!(
        rl(&mut c, &["RL.TOKENBUCKET", "user:42", "10", "1", "1"]),
        [1, 10, 9, 0, 1000]
    );
    assert_eq!(
        rl(&mut c, &["RL.SLIDING", "user:42:w", "10", "60"]),
        [1, 10, 9, 0, 60_000]
    );
    for hook in ["RL.TEST.PANIC", "RL.TEST.CLOCK"] {
        let e = err(&mut c, &[hook]);
        assert!(e.starts_with("ERR unknown command"), "{hook}: {e}");
    }
}
