//! The guard around every `extern "C"` function Redis calls: a panic
//! becomes a harmless answer and a line in the server's log, because a
//! panic that reached Redis would abort the server for every user.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::ffi::rm;

/// Runs `f`; a panic becomes `default`, and a warning in the server's log
/// (where, and what). Nothing unwinds into Redis.
pub fn guard<T>(default: T, f: impl FnOnce() -> T) -> T {
    guard_named(|| "a callback".to_string(), default, f)
}

/// [`guard`], naming what ran (a command's name) in the log line.
pub fn guard_named<T>(what: impl FnOnce() -> String, default: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => {
            let (location, message) = panic_hook::last();
            let what = what();
            log_warning(&format!(
                "ratelimit: a panic in {what} at {location}: {message}; \
                 it was answered with an error and nothing was written. \
                 Please report it (docs/SECURITY.md)."
            ));
            default
        }
    }
}

/// Writes a warning to the server's log, outside any command.
pub fn log_warning(msg: &str) {
    if let Ok(m) = CString::new(msg.replace('\0', " ")) {
        rm!(RedisModule_Log(std::ptr::null_mut(), c"warning".as_ptr(), c"%s".as_ptr(), m.as_ptr()) else ());
    }
}

/// Where the last panic on this thread happened, for the log line the
/// guard writes (a panic hook records it; the payload alone has no place).
pub(super) mod panic_hook {
    use std::cell::RefCell;
    use std::sync::Once;

    thread_local! {
        static LAST: RefCell<Option<(String, String)>> = const { RefCell::new(None) };
    }

    static INSTALL: Once = Once::new();

    /// Installs the hook once per process; whatever hook was there before
    /// (another module's, or Rust's default) still runs after ours.
    pub fn install() {
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let location = info
                    .location()
                    .map_or_else(|| "an unknown place".to_string(), |l| l.to_string());
                let payload = info.payload();
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no message".to_string());
                LAST.with(|l| *l.borrow_mut() = Some((location, message)));
                previous(info);
            }));
        });
    }

    /// The last panic's location and message on this thread.
    pub fn last() -> (String, String) {
        LAST.with(|l| l.borrow_mut().take())
            .unwrap_or_else(|| ("an unknown place".to_string(), "no message".to_string()))
    }
}
