//! A 3-master, 3-replica Redis Cluster on loopback, the module loaded on
//! every node, killed on drop. Nodes are testkit `Server`s; this adds only
//! the cluster wiring (`redis-cli --cluster create`, waiting for
//! `cluster_state:ok`). Local to the client tests until testkit has its own
//! cluster harness: the API (`Cluster::start()`, `urls()`) is meant to be
//! swapped for it.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_ratelimit_testkit::Server;

pub struct Cluster {
    /// Six nodes; the first three were given the slots (masters).
    pub nodes: Vec<Server>,
}

/// A free loopback port for a node's cluster bus (its default, port +
/// 10000, may be past 65535 for a high port).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn cli() -> String {
    std::env::var("RL_CLI").unwrap_or_else(|_| "redis-cli".to_string())
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<Server> = (0..6)
            .map(|_| {
                let bus = free_port().to_string();
                Server::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-port",
                    &bus,
                    "--cluster-node-timeout",
                    "5000",
                ])
            })
            .collect();
        let mut create = Command::new(cli());
        create.args(["--cluster", "create"]);
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("All 16384 slots covered"),
            "cluster create failed ({}):\n{text}",
            out.status
        );
        let cluster = Cluster { nodes };
        cluster.wait_ok();
        cluster
    }

    /// Every node says `cluster_state:ok` and knows all six nodes.
    fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for n in &self.nodes {
            let mut con = n.connect();
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut con)
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:6") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {} not ready:\n{info}",
                    n.port
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// A plain connection to any node (for CLUSTER KEYSLOT and the like).
    pub fn any(&self) -> redis::Connection {
        self.nodes[0].connect()
    }
}
