//! The release module (what `make run` loads): it loads, answers, and
//! carries none of the test hooks.
#![cfg(test)]

use redis_ratelimit_testkit::*;

#[test]
fn release_module_loads_without_test_hooks() {
    let path = workspace_root().join("target/release/libredis_ratelimit.so");
    if !path.exists() {
        eprintln!(
            "skipped: {} not built (make test builds it)",
            path.display()
        );
        return;
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
