//! Redis Cluster support. Single-key commands route by their first
//! argument, which redis-rs's cluster client already does. `RL.ALL` is
//! different: its first argument is a keyword (`LIMIT`, `COST`, ...), so the
//! cluster client would send it to the node owning the slot of `"LIMIT"`,
//! get `MOVED`, and rebuild its slot map on every call. [`ClusterRouted`]
//! sends it straight to the master of its first key's slot.

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};
use redis_ratelimit_core::grammar::all_key_positions;

use crate::commands::name;

/// The number of hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key: CRC16 (XMODEM) of its hash tag (the part between
/// the first `{` and the next `}`, if not empty) or of the whole key.
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|b| *b == b'{') else {
        return key;
    };
    let rest = key.get(open + 1..).unwrap_or_default();
    match rest.iter().position(|b| *b == b'}') {
        Some(0) | None => key,
        Some(close) => rest.get(..close).unwrap_or(key),
    }
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The first key of an `RL.ALL` command, where the module's grammar finds
/// it (`all_key_positions`, the one `COMMAND GETKEYS` answers from).
fn all_first_key(cmd: &Cmd) -> Option<Vec<u8>> {
    let args: Vec<&[u8]> = cmd
        .args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b,
            _ => &[],
        })
        .collect();
    if !args.first()?.eq_ignore_ascii_case(name::ALL.as_bytes()) {
        return None;
    }
    let first = *all_key_positions(&args[..]).first()?;
    args.get(first).map(|k| k.to_vec())
}

/// A cluster connection that routes `RL.ALL` by its keys; every other
/// command goes through unchanged. Cheap to clone, like the connection.
///
/// ```no_run
/// use redis_ratelimit_client::{redis, AsyncRateLimitCommands, ClusterRouted, All, SlidingWindow};
/// use std::time::Duration;
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let client = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000/"])?;
/// let mut con = ClusterRouted::new(client.get_async_connection().await?);
/// let all = All::new("{user42}:min", SlidingWindow::new(10, Duration::from_secs(60))?)
///     .and("{user42}:hour", SlidingWindow::new(100, Duration::from_secs(3600))?);
/// let d = con.all(&all).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClusterRouted {
    inner: ClusterConnection,
}

impl ClusterRouted {
    /// Wraps a cluster connection.
    pub fn new(inner: ClusterConnection) -> ClusterRouted {
        ClusterRouted { inner }
    }
    /// The cluster connection, unwrapped.
    pub fn into_inner(self) -> ClusterConnection {
        self.inner
    }
    /// The cluster connection, for what this wrapper does not do.
    pub fn inner_mut(&mut self) -> &mut ClusterConnection {
        &mut self.inner
    }
}

impl redis::aio::ConnectionLike for ClusterRouted {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match all_first_key(cmd) {
            Some(key) => {
                let route = Route::new(slot(&key), SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                let cmd = cmd.clone();
                Box::pin(async move { self.inner.route_command(cmd, routing).await })
            }
            None => self.inner.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.inner.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from CLUSTER KEYSLOT on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b""), 0);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"{user42}:min"), slot(b"{user42}:day"));
        // An empty tag hashes the whole key; only the first tag counts.
        assert_eq!(slot(b"{}x"), crc16(b"{}x") % SLOTS);
        assert_eq!(slot(b"a{b}{c}"), slot(b"b"));
        assert_eq!(slot(b"a{b"), crc16(b"a{b") % SLOTS);
    }

    #[test]
    fn finds_the_first_key_of_rl_all() {
        let mut c = redis::cmd("RL.ALL");
        c.arg("COST").arg(2).arg("DRYRUN").arg("LIMIT").arg("{u}:a");
        c.arg("SLIDING").arg(1).arg(1).arg("LIMIT").arg("{u}:b");
        assert_eq!(all_first_key(&c), Some(b"{u}:a".to_vec()));
        let mut lower = redis::cmd("rl.all");
        lower.arg("limit").arg("k");
        assert_eq!(all_first_key(&lower), Some(b"k".to_vec()));
        let mut other = redis::cmd("RL.SLIDING");
        other.arg("LIMIT").arg(1).arg(1);
        assert_eq!(all_first_key(&other), None);
        assert_eq!(all_first_key(&redis::cmd("RL.ALL")), None);
    }
}
