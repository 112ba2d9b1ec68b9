//! A client that PINGs a server every millisecond from its own thread and
//! keeps the slowest answer: how long the server's main thread was held
//! while something else ran (a hostile call, a load). A benchmark figure
//! to print, never a timed assertion: a loaded machine delays it too.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The PINGing thread; [`Pinger::stop`] ends it.
pub struct Pinger {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Latency>>,
}

/// What the PINGs saw.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    /// The slowest PING, from sending it to its answer.
    pub worst: Duration,
    pub pings: u64,
}

impl Pinger {
    /// Connects to `url` and PINGs until stopped; the first PING has been
    /// answered when this returns.
    pub fn start(url: &str) -> Pinger {
        let client = redis::Client::open(url).unwrap();
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        redis::cmd("PING").query::<String>(&mut con).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut l = Latency {
                worst: Duration::ZERO,
                pings: 0,
            };
            // At least one PING, however short what it measures.
            loop {
                let t = Instant::now();
                if redis::cmd("PING").query::<String>(&mut con).is_err() {
                    break;
                }
                l.worst = l.worst.max(t.elapsed());
                l.pings += 1;
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            l
        });
        Pinger {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the thread (after the PING it is waiting for) and answers
    /// what it saw.
    pub fn stop(mut self) -> Latency {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
