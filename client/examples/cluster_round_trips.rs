//! Round trips per decision from this crate on a Redis Cluster, counted by
//! the servers: `make test-clients` runs it (scripts/test_clients.py) beside
//! the Python and Node.js clients and puts its lines in one table.
//!
//! `RL_CLUSTER_NODES=redis://127.0.0.1:7000,... cargo run --example cluster_round_trips`
//!
//! For RL.SLIDING, RL.ALL and RL.TAKE on a [`ClusterRouted`] connection, in
//! steady state (after a warm-up that lets the connection learn the slots):
//! every request the nodes saw for a command (`INFO commandstats`: the calls
//! it ran and the ones it rejected with MOVED or ASK; `COMMAND GETKEYS`
//! calls) over the decisions made. Prints one `round-trips: ...` line per
//! command and exits 1 unless each is 1.00.

use std::error::Error;
use std::time::Duration;

use redis_ratelimit_client::{
    redis, All, AsyncRateLimitCommands, CalendarUnit, ClusterRouted, FixedWindow, SlidingWindow,
};

const WARM_UP: usize = 20;
const DECISIONS: usize = 100;

/// What the nodes saw of one command, summed.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    calls: i64,
    rejected: i64,
    getkeys: i64,
    moved: i64,
    ask: i64,
}

/// `field=N` in the INFO line named `line` (any case: INFO writes a
/// module's command as registered, `cmdstat_RL.ALL`).
fn field(info: &str, line: &str, field: &str) -> i64 {
    let Some(rest) = info.lines().find_map(|l| {
        let (name, rest) = l.split_once(':')?;
        name.eq_ignore_ascii_case(line).then_some(rest)
    }) else {
        return 0;
    };
    rest.split(',')
        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn counts(nodes: &[String], command: &str) -> Result<Counts, Box<dyn Error>> {
    let name = format!("cmdstat_{command}");
    let mut c = Counts::default();
    for url in nodes {
        let mut con = redis::Client::open(url.as_str())?.get_connection()?;
        let stats: String = redis::cmd("INFO").arg("commandstats").query(&mut con)?;
        let errors: String = redis::cmd("INFO").arg("errorstats").query(&mut con)?;
        c.calls += field(&stats, &name, "calls");
        c.rejected += field(&stats, &name, "rejected_calls");
        c.getkeys += field(&stats, "cmdstat_command|getkeys", "calls");
        c.moved += field(&errors, "errorstat_MOVED", "count");
        c.ask += field(&errors, "errorstat_ASK", "count");
    }
    Ok(c)
}

/// Prints the line the table is made of; the round trips per decision.
fn report(command: &str, before: Counts, after: Counts, how: &str) -> f64 {
    let requests = (after.calls - before.calls)
        + (after.rejected - before.rejected)
        + (after.getkeys - before.getkeys);
    let per = requests as f64 / DECISIONS as f64;
    println!(
        "round-trips: client='redis-ratelimit-client (ClusterRouted)' command={command} \
         decisions={DECISIONS} requests={requests} moved={} ask={} getkeys={} \
         per_decision={per:.2} expect=1 how='{how}'",
        after.moved - before.moved,
        after.ask - before.ask,
        after.getkeys - before.getkeys,
    );
    if after.calls - before.calls != DECISIONS as i64 {
        println!("not ok - {command}: calls ran differ from the decisions made");
        return f64::NAN;
    }
    per
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let nodes: Vec<String> = std::env::var("RL_CLUSTER_NODES")?
        .split(',')
        .map(String::from)
        .collect();
    let client = redis::cluster::ClusterClient::new(nodes.clone())?;
    let mut con = ClusterRouted::new(client.get_async_connection().await?);
    // RL.TAKE's policy, on every primary (policies are per server).
    for url in &nodes {
        let mut c = redis::Client::open(url.as_str())?.get_connection()?;
        redis::cmd("RL.POLICY")
            .arg(&["SET", "rt-crate", "SLIDING", "1000", "60"][..])
            .query::<()>(&mut c)?;
    }
    let minute = SlidingWindow::new(1000, Duration::from_secs(60))?;
    let day = FixedWindow::calendar(5000, CalendarUnit::Day)?;
    let mut ok = true;
    for command in ["RL.SLIDING", "RL.ALL", "RL.TAKE"] {
        let mut before = Counts::default();
        for i in 0..WARM_UP + DECISIONS {
            if i == WARM_UP {
                before = counts(&nodes, command)?;
            }
            let key = format!("{{rt-crate:{i}}}");
            match command {
                "RL.SLIDING" => {
                    con.sliding(key.as_str(), &minute, 1).await?;
                }
                "RL.ALL" => {
                    let all =
                        All::new(format!("{key}:m"), minute).and(format!("{key}:d"), day.clone());
                    con.all(&all).await?;
                }
                _ => {
                    con.take(key.as_str(), "rt-crate", 1).await?;
                }
            }
        }
        let after = counts(&nodes, command)?;
        let how = match command {
            "RL.ALL" => "con.all(&All::new(..).and(..)) on ClusterRouted",
            "RL.SLIDING" => "con.sliding(key, ..)",
            _ => "con.take(key, policy, ..)",
        };
        let per = report(command, before, after, how);
        ok &= per == 1.0;
    }
    if ok {
        println!("ok - redis-ratelimit-client: one round trip per decision");
        Ok(())
    } else {
        println!("not ok - redis-ratelimit-client: more than one round trip per decision");
        std::process::exit(1);
    }
}
