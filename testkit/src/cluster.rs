//! A real Redis Cluster on loopback: six nodes (three masters with one
//! replica each), the module loaded on every node, created with
//! `redis-cli --cluster create` (or `valkey-cli` when it sits beside the
//! server binary), and stopped when the handle drops.
//!
//! Every helper waits for what it claims: [`Cluster::start`] returns once
//! every node reports `cluster_state:ok`, all six agree on who serves which
//! slots and every replica is in sync; [`Cluster::failover`] returns once the
//! promoted replica is master in every node's view and the old master has
//! resynced from it.
//!
//! Environment, besides `RL_SERVER` and `RL_MODULE`: `RL_CLI` (the cli used
//! for `--cluster create`; default: `valkey-cli` or `redis-cli` beside the
//! server binary, else `redis-cli` from `PATH`).

use super::*;

use std::collections::BTreeMap;

/// Milliseconds without an answer before a node counts as failing. Nothing
/// here waits on it (creation and manual failover do not), so it is set
/// well above the stalls of a loaded 2-core machine: an automatic failover
/// in the middle of a test would move slots under it.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 5000;

/// The cluster bus listens on the node's port + 10000.
const BUS_OFFSET: u16 = 10000;

/// One master, the slot ranges it serves and its replicas, by port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Shard {
    pub ranges: Vec<(u16, u16)>,
    pub master: u16,
    pub replicas: Vec<u16>,
}

impl Shard {
    pub fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Who serves which slots, as one node sees it (shards sorted by slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub shards: Vec<Shard>,
}

/// Six nodes forming one cluster; every process stops on drop.
pub struct Cluster {
    pub nodes: Vec<Server>,
    topology: Topology,
}

/// A loopback port below 55535 whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let port = free_port();
        if port >= u16::MAX - BUS_OFFSET {
            continue;
        }
        // Both must be bindable now; the server binds them a moment later
        // (a lost race makes it exit, and the caller retries).
        if TcpListener::bind(("127.0.0.1", port + BUS_OFFSET)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// The cli that runs `--cluster create`.
pub fn cluster_cli() -> String {
    if let Ok(cli) = std::env::var("RL_CLI") {
        return cli;
    }
    let server = PathBuf::from(server_binary());
    if let Some(dir) = server.parent().filter(|d| !d.as_os_str().is_empty()) {
        for name in ["valkey-cli", "redis-cli"] {
            let p = dir.join(name);
            if p.exists() {
                return p.display().to_string();
            }
        }
    }
    "redis-cli".to_string()
}

impl Cluster {
    /// Three masters with one replica each, the module loaded everywhere.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// Extra `--option value` pairs for every node.
    pub fn start_with(extra: &[&str]) -> Cluster {
        Cluster::start_with_module_args(&[], extra)
    }

    /// Module arguments (after the module's path) and extra options, the
    /// same on every node.
    pub fn start_with_module_args(module_args: &[&str], extra: &[&str]) -> Cluster {
        let module = module_path();
        let nodes: Vec<Server> = (0..6)
            .map(|_| Cluster::start_node(&module, module_args, extra))
            .collect();
        let mut create = Command::new(cluster_cli());
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cluster_cli()));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("[OK] All 16384 slots covered"),
            "{} --cluster create failed ({}):\n{text}",
            cluster_cli(),
            out.status
        );
        let mut cluster = Cluster {
            nodes,
            topology: Topology { shards: vec![] },
        };
        cluster.wait_ready();
        cluster
    }

    fn start_node(module: &Path, module_args: &[&str], extra: &[&str]) -> Server {
        let dir = temp_dir();
        let mut args: Vec<String> = vec!["--loadmodule".into(), module.display().to_string()];
        args.extend(module_args.iter().map(|s| s.to_string()));
        args.extend([
            "--cluster-enabled".into(),
            "yes".into(),
            "--cluster-config-file".into(),
            dir.join("nodes.conf").display().to_string(),
            "--cluster-node-timeout".into(),
            CLUSTER_NODE_TIMEOUT_MS.to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = cluster_port();
            match Server::spawn(&dir, port, &args) {
                Ok(child) => {
                    return Server {
                        child: Some(child),
                        port,
                        dir,
                        extra: args,
                        keep_dir: false,
                    }
                }
                Err(e) => last_err = e,
            }
            // A failed start may have written a nodes.conf for that port.
            let _ = std::fs::remove_file(dir.join("nodes.conf"));
        }
        panic!(
            "could not start cluster node {}: {last_err}",
            server_binary()
        );
    }

    /// The topology every node agreed on when last checked.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn node(&self, port: u16) -> &Server {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Seed URLs for a cluster client.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url()).collect()
    }

    /// A cluster client connection: routes each command by its key and
    /// follows MOVED redirections (after a failover, too).
    pub fn client(&self) -> redis::cluster::ClusterConnection {
        redis::cluster::ClusterClientBuilder::new(self.urls())
            .retries(16)
            .connection_timeout(Duration::from_secs(5))
            .response_timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .get_connection()
            .unwrap()
    }

    /// The hash slot of `key`, as the server computes it.
    pub fn slot(&self, key: &str) -> u16 {
        let mut c = self.nodes[0].connect();
        int(&mut c, &["CLUSTER", "KEYSLOT", key]) as u16
    }

    /// The shard serving `key`'s slot.
    pub fn shard_of(&self, key: &str) -> &Shard {
        let slot = self.slot(key);
        self.topology
            .shards
            .iter()
            .find(|s| s.serves(slot))
            .unwrap_or_else(|| panic!("no shard serves slot {slot}"))
    }

    /// The master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> &Server {
        self.node(self.shard_of(key).master)
    }

    /// The (first) replica of the master serving `key`'s slot.
    pub fn replica_of(&self, key: &str) -> &Server {
        self.node(self.shard_of(key).replicas[0])
    }

    /// A plain connection to the master serving `key`'s slot.
    pub fn connect_master(&self, key: &str) -> redis::Connection {
        self.master_of(key).connect()
    }

    /// A plain connection to that slot's replica, in READONLY mode so that
    /// reads of the slot's keys are answered instead of redirected.
    pub fn connect_replica(&self, key: &str) -> redis::Connection {
        let mut c = self.replica_of(key).connect();
        ok(&mut c, &["READONLY"]);
        c
    }

    /// Every (master, replica) pair, each connected, the replica READONLY.
    pub fn connect_pairs(&self) -> Vec<(redis::Connection, redis::Connection)> {
        self.topology
            .shards
            .iter()
            .map(|s| {
                let m = self.node(s.master).connect();
                let mut r = self.node(s.replicas[0]).connect();
                ok(&mut r, &["READONLY"]);
                (m, r)
            })
            .collect()
    }

    /// Waits until every replica has applied all its master wrote so far.
    /// (Compares replication offsets: `WAIT` would have to run on the very
    /// connection that wrote, and the cluster client's are not at hand.)
    pub fn wait_replicated(&self) {
        for s in &self.topology.shards {
            for &r in &s.replicas {
                wait_caught_up(self.node(s.master), self.node(r));
            }
        }
    }

    /// Manual failover of `key`'s slot: `CLUSTER FAILOVER` on its replica,
    /// then waits until that replica is master in every node's view, the
    /// cluster is ok everywhere and the old master replicates from it.
    pub fn failover(&mut self, key: &str) {
        let old = self.shard_of(key).clone();
        let promoted = old.replicas[0];
        let mut r = self.node(promoted).connect();
        ok(&mut r, &["CLUSTER", "FAILOVER"]);
        let slot = self.slot(key);
        assert!(
            wait_until(60, || {
                let mut rc = self.node(promoted).connect();
                let role: Vec<Value> = redis::cmd("ROLE").query(&mut rc).unwrap();
                matches!(role.first(), Some(Value::BulkString(b)) if b == b"master")
            }),
            "node {promoted} did not become master; its log:\n{}",
            self.node(promoted).log()
        );
        self.wait_ready();
        let now = self.shard_of(key);
        assert_eq!(now.master, promoted, "slot {slot} is served by {now:?}");
        assert_eq!(now.replicas, vec![old.master], "{now:?}");
    }

    /// The cluster node id of the node on `port`.
    pub fn node_id(&self, port: u16) -> String {
        let mut c = self.node(port).connect();
        redis::cmd("CLUSTER").arg("MYID").query(&mut c).unwrap()
    }

    /// Valkey 9's atomic slot migration: `CLUSTER MIGRATESLOTS SLOTSRANGE
    /// a b ... NODE <id of to>` sent to the master serving the ranges (one
    /// master serves them all). Waits until that export job succeeded (a
    /// failed or cancelled one panics, with both nodes' logs) and every node
    /// agrees the ranges are `to`'s, its replica in sync.
    pub fn migrate_slots(&mut self, ranges: &[(u16, u16)], to: u16) {
        if let Err(e) = self.try_migrate_slots(ranges, to) {
            panic!("{e}");
        }
    }

    /// [`migrate_slots`](Self::migrate_slots), answering how a job that
    /// did not succeed ended (its state, its message, both nodes' logs)
    /// instead of panicking; the topology is then left as it is.
    pub fn try_migrate_slots(&mut self, ranges: &[(u16, u16)], to: u16) -> Result<(), String> {
        let from = self
            .topology
            .shards
            .iter()
            .find(|s| s.serves(ranges[0].0))
            .map(|s| s.master)
            .expect("a master serves the first range");
        let mut src = self.node(from).connect();
        let known: Vec<String> = slot_migrations(&mut src)
            .iter()
            .filter_map(|j| j.get("name").cloned())
            .collect();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("MIGRATESLOTS").arg("SLOTSRANGE");
        for (a, b) in ranges {
            cmd.arg(*a).arg(*b);
        }
        cmd.arg("NODE").arg(self.node_id(to));
        let reply: Result<String, _> = cmd.query(&mut src);
        assert_eq!(
            reply.as_deref().map_err(|e| error_text(e.clone())),
            Ok("OK"),
            "CLUSTER MIGRATESLOTS {ranges:?} from {from} to {to}"
        );
        let (mut state, mut message) = (String::new(), String::new());
        let done = wait_until(60, || {
            // The job this call started: the one export not seen before.
            let job = slot_migrations(&mut src).into_iter().find(|j| {
                j.get("operation").map(String::as_str) == Some("EXPORT")
                    && j.get("name").is_some_and(|n| !known.contains(n))
            });
            let field = |f: &str| {
                job.as_ref()
                    .and_then(|j| j.get(f).cloned())
                    .unwrap_or_default()
            };
            (state, message) = (field("state"), field("message"));
            matches!(state.as_str(), "success" | "failed" | "cancelled")
        });
        if !(done && state == "success") {
            return Err(format!(
                "the migration of {ranges:?} from {from} to {to} ended {state:?} ({message})\n--- {from} ---\n{}\n--- {to} ---\n{}",
                tail(&self.node(from).log(), 30),
                tail(&self.node(to).log(), 30)
            ));
        }
        assert!(
            wait_until(60, || {
                self.check_ready().is_ok_and(|t| {
                    let ok = ranges
                        .iter()
                        .all(|&(a, _)| t.shards.iter().any(|s| s.master == to && s.serves(a)));
                    if ok {
                        self.topology = t;
                    }
                    ok
                })
            }),
            "the nodes do not agree that {ranges:?} moved to {to}"
        );
        Ok(())
    }

    /// Waits (60 s at most) until every node says `cluster_state:ok`, all
    /// agree on one healthy topology of three shards with one replica each,
    /// and every replica's link is up with no sync in progress.
    pub fn wait_ready(&mut self) {
        let mut last = String::new();
        let ready = wait_until(60, || match self.check_ready() {
            Ok(t) => {
                self.topology = t;
                true
            }
            Err(e) => {
                last = e;
                false
            }
        });
        if !ready {
            let logs: Vec<String> = self
                .nodes
                .iter()
                .map(|n| format!("--- node {} ---\n{}", n.port, tail(&n.log(), 30)))
                .collect();
            panic!("cluster not ready: {last}\n{}", logs.join("\n"));
        }
    }

    fn check_ready(&self) -> Result<Topology, String> {
        let mut agreed: Option<Topology> = None;
        for n in &self.nodes {
            let client = redis::Client::open(n.url()).map_err(|e| e.to_string())?;
            let mut c = client
                .get_connection_with_timeout(Duration::from_secs(2))
                .map_err(|e| format!("node {}: {e}", n.port))?;
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            if !info.contains("cluster_state:ok") {
                return Err(format!("node {}: not ok:\n{info}", n.port));
            }
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query(&mut c)
                .map_err(|e| e.to_string())?;
            let t = topology_from_nodes(&text).map_err(|e| format!("node {}: {e}", n.port))?;
            match &agreed {
                None => agreed = Some(t),
                Some(a) if *a == t => {}
                Some(a) => return Err(format!("node {} sees {t:?}, another node {a:?}", n.port)),
            }
        }
        let t = agreed.ok_or("no nodes")?;
        let covered: u32 = t
            .shards
            .iter()
            .flat_map(|s| &s.ranges)
            .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
            .sum();
        if t.shards.len() != 3 || covered != 16384 {
            return Err(format!("not 3 shards covering 16384 slots: {t:?}"));
        }
        for s in &t.shards {
            if s.replicas.len() != 1 {
                return Err(format!("shard without exactly one replica: {s:?}"));
            }
            for &r in &s.replicas {
                let mut c = self.node(r).connect();
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query(&mut c)
                    .map_err(|e| e.to_string())?;
                let expect_master = format!("master_port:{}", s.master);
                if !(info.contains("master_link_status:up")
                    && info.contains("master_sync_in_progress:0")
                    && info.lines().any(|l| l.trim() == expect_master))
                {
                    return Err(format!("replica {r} not in sync:\n{info}"));
                }
            }
        }
        Ok(t)
    }
}

/// `CLUSTER GETSLOTMIGRATIONS` (Valkey 9): each job's fields.
pub fn slot_migrations(con: &mut redis::Connection) -> Vec<BTreeMap<String, String>> {
    let jobs: Vec<Vec<Value>> = redis::cmd("CLUSTER")
        .arg("GETSLOTMIGRATIONS")
        .query(con)
        .unwrap();
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).to_string(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    };
    jobs.iter()
        .map(|j| {
            j.chunks(2)
                .filter(|p| p.len() == 2)
                .map(|p| (text(&p[0]), text(&p[1])))
                .collect()
        })
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Parses `CLUSTER NODES` into a topology; refuses a view with a node that
/// is failing, handshaking or disconnected, or a master with no slots.
pub fn topology_from_nodes(text: &str) -> Result<Topology, String> {
    struct Line {
        id: String,
        port: u16,
        master: bool,
        master_id: Option<String>,
        ranges: Vec<(u16, u16)>,
    }
    let mut lines = vec![];
    for l in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            return Err(format!("short line: {l}"));
        }
        // 127.0.0.1:30001@40001[,hostname]
        let port = f[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| format!("bad address: {l}"))?;
        let flags: Vec<&str> = f[2].split(',').collect();
        if flags
            .iter()
            .any(|x| matches!(*x, "fail" | "fail?" | "handshake" | "noaddr"))
            || f[7] != "connected"
        {
            return Err(format!("unhealthy node: {l}"));
        }
        let mut ranges = vec![];
        for s in &f[8..] {
            if s.starts_with('[') {
                return Err(format!("slot in migration: {l}"));
            }
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a, b),
                None => (*s, *s),
            };
            match (a.parse(), b.parse()) {
                (Ok(a), Ok(b)) => ranges.push((a, b)),
                _ => return Err(format!("bad slot range {s}: {l}")),
            }
        }
        lines.push(Line {
            id: f[0].to_string(),
            port,
            master: flags.contains(&"master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            ranges,
        });
    }
    let mut shards: BTreeMap<String, Shard> = BTreeMap::new();
    for l in lines.iter().filter(|l| l.master) {
        if l.ranges.is_empty() {
            return Err(format!("master {} serves no slots", l.port));
        }
        let mut ranges = l.ranges.clone();
        ranges.sort();
        shards.insert(
            l.id.clone(),
            Shard {
                ranges,
                master: l.port,
                replicas: vec![],
            },
        );
    }
    for l in lines.iter().filter(|l| !l.master) {
        let m = l
            .master_id
            .as_ref()
            .and_then(|id| shards.get_mut(id))
            .ok_or_else(|| format!("replica {} of an unknown master", l.port))?;
        m.replicas.push(l.port);
    }
    let mut shards: Vec<Shard> = shards.into_values().collect();
    for s in &mut shards {
        s.replicas.sort();
    }
    shards.sort();
    Ok(Topology { shards })
}

/// Waits until `replica` has applied everything `master` wrote so far, by
/// replication offsets. Unlike [`wait_replicas`] (`WAIT`, which waits only
/// for the writes of the connection it runs on), it covers writes made on
/// any connection: other threads', a cluster client's.
pub fn wait_caught_up(master: &Server, replica: &Server) {
    let target = info_int(&mut master.connect(), "replication", "master_repl_offset");
    let mut rc = replica.connect();
    let mut at = 0;
    assert!(
        wait_until(30, || {
            at = info_int(&mut rc, "replication", "slave_repl_offset");
            at >= target
        }),
        "replica {} stuck at offset {at}, master {} at {target}; replica log:\n{}",
        replica.port,
        master.port,
        tail(&replica.log(), 30)
    );
}

/// An integer field of an INFO section (0 when absent).
pub fn info_int(con: &mut redis::Connection, section: &str, field: &str) -> i64 {
    let info: String = redis::cmd("INFO").arg(section).query(con).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or(0)
}

// ------------------------------------------------- any connection, cluster too

/// [`call`] on any connection (a cluster connection included).
pub fn call_on(con: &mut dyn redis::ConnectionLike, args: &[&str]) -> Result<Value, String> {
    let mut c = redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<Value>(con).map_err(error_text)
}

/// [`rl`] on any connection: a limiter command's five integers.
pub fn rl_on(con: &mut dyn redis::ConnectionLike, args: &[&str]) -> [i64; 5] {
    let v = ints_on(con, args);
    v.try_into()
        .unwrap_or_else(|v: Vec<i64>| panic!("expected 5 integers from {args:?}, got {v:?}"))
}

/// A reply that must be an array of integers (a decision of any length).
pub fn ints_on(con: &mut dyn redis::ConnectionLike, args: &[&str]) -> Vec<i64> {
    match call_on(con, args) {
        Ok(Value::Array(items)) => items
            .iter()
            .map(|x| match x {
                Value::Int(i) => *i,
                other => panic!("non-integer in reply to {args:?}: {other:?}"),
            })
            .collect(),
        other => panic!("unexpected reply to {args:?}: {other:?}"),
    }
}

/// [`err`] on any connection.
pub fn err_on(con: &mut dyn redis::ConnectionLike, args: &[&str]) -> String {
    match call_on(con, args) {
        Err(e) => e,
        Ok(v) => panic!("{args:?} should fail, got {v:?}"),
    }
}
