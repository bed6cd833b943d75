//! The cluster tests' harness: a real 3-server NATS JetStream cluster on loopback, node
//! processes (`cluster-node`) started and signalled by the test, and the check of what they
//! applied.

#![allow(dead_code)] // each test file uses a part of it

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `n` distinct free loopback ports: all bound at once (so none is handed out twice), then
/// released for the servers to take.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("a bound port").port())
        .collect()
}

/// A scratch directory, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "corelane-{name}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(free_ports(1)[0])
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Signals process `pid` (`KILL`, `STOP`, `CONT`, `TERM`).
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// One nats-server of the cluster.
pub struct Server {
    pub name: String,
    pub port: u16,
    config: PathBuf,
    child: Option<Child>,
}

impl Server {
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it (again) from its configuration and store.
    pub fn start(&mut self) {
        self.kill();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A 3-server JetStream cluster on loopback, stopped (SIGKILL) on drop. One at a time per test
/// process: three servers and their nodes already fill a 2-core machine.
pub struct Cluster {
    pub servers: Vec<Server>,
    _dir: Scratch,
    _one_at_a_time: std::sync::MutexGuard<'static, ()>,
}

static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// Whether nats-server is installed; under CI its absence fails the test instead.
pub fn nats_server_available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("nats-server is not installed: .ci/run installs it with apt-get");
    }
    if !found {
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
    }
    found
}

impl Cluster {
    /// Starts three servers with JetStream, routed to each other.
    pub fn start() -> Self {
        let turn = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
        let dir = Scratch::new("nats");
        let names = ["n1", "n2", "n3"];
        let ports = free_ports(2 * names.len());
        let (client, cluster) = ports.split_at(names.len());
        let routes: Vec<String> = cluster
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut servers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let store = dir.0.join(name);
            let config = dir.0.join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\" }}\n\
                     cluster {{ name: corelane, listen: 127.0.0.1:{}, routes: [{}] }}\n",
                    client[i],
                    store.display(),
                    cluster[i],
                    routes.join(", ")
                ),
            )
            .expect("a server configuration");
            let mut server = Server {
                name: name.to_string(),
                port: client[i],
                config,
                child: None,
            };
            server.start();
            servers.push(server);
        }
        Self {
            servers,
            _dir: dir,
            _one_at_a_time: turn,
        }
    }

    /// Every server's URL, comma-separated (what clients and nodes connect to).
    pub fn urls(&self) -> String {
        self.servers
            .iter()
            .map(Server::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// A `cluster-node` process; its stdout lines are kept with the time they came.
pub struct NodeProc {
    pub id: String,
    child: Option<Child>,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
    pub log: PathBuf,
}

/// How to start node processes of one deployment.
#[derive(Clone)]
pub struct Deployment {
    pub servers: String,
    pub prefix: String,
    pub partitions: u32,
    pub replicas: usize,
    pub lease_ttl: Duration,
    pub logs: PathBuf,
    /// Whether nodes resume a partition after its committed offset (else they replay it).
    pub from_offset: bool,
    /// A key whose events make the nodes' handler panic.
    pub panic_on: Option<String>,
    /// How often nodes snapshot their partitions (never if `None`).
    pub snapshot_every: Option<Duration>,
    /// `--stall KEY:N:MS` for the nodes: a slow handler.
    pub stall: Option<String>,
}

impl Deployment {
    pub fn topology(&self) -> corelane_nats::Topology {
        let topology = corelane_nats::Topology::new(&self.prefix, self.partitions)
            .unwrap()
            .with_replicas(self.replicas)
            .with_lease_ttl(self.lease_ttl);
        match self.snapshot_every {
            Some(every) => topology.with_snapshot_interval(every),
            None => topology,
        }
    }

    pub fn node(&self, id: &str) -> NodeProc {
        let log = self.logs.join(format!("{id}.log"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_cluster-node"))
            .args([
                "--id",
                id,
                "--servers",
                &self.servers,
                "--prefix",
                &self.prefix,
            ])
            .args(["--partitions", &self.partitions.to_string()])
            .args(["--replicas", &self.replicas.to_string()])
            .args(["--lease-ttl-ms", &self.lease_ttl.as_millis().to_string()])
            .args(["--workers", "2", "--log"])
            .arg(&log)
            .args(self.from_offset.then_some("--from-offset"))
            .args(
                self.panic_on
                    .iter()
                    .flat_map(|key| ["--panic-on", key.as_str()]),
            )
            .args(
                self.stall
                    .iter()
                    .flat_map(|spec| ["--stall", spec.as_str()]),
            )
            .args(
                self.snapshot_every
                    .iter()
                    .flat_map(|every| ["--snapshot-ms".to_string(), every.as_millis().to_string()]),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cluster-node starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        NodeProc {
            id: id.to_string(),
            child: Some(child),
            lines,
            log,
        }
    }
}

impl NodeProc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether one of its lines so far starts with `prefix`.
    pub fn said(&self, prefix: &str) -> bool {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .any(|(_, line)| line.starts_with(prefix))
    }

    /// The partitions it said it owns last, and when.
    pub fn owned(&self) -> Option<(Instant, Vec<u32>)> {
        let prefix = format!("{} owns ", self.id);
        self.lines
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(at, line)| {
                let list = line.strip_prefix(&prefix)?;
                let parts = list
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(", ")
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().unwrap())
                    .collect();
                Some((*at, parts))
            })
    }

    /// Kills it with SIGKILL: no handover.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks it to stop (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until `done()` holds, polling; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the nodes together own every partition, each exactly once; returns when that
/// was first seen.
pub fn wait_for_full_ownership(nodes: &[&NodeProc], partitions: u32, limit: Duration) -> Instant {
    let mut at = Instant::now();
    wait_for("every partition owned once", limit, || {
        let mut all = Vec::new();
        for node in nodes {
            if let Some((_, owned)) = node.owned() {
                all.extend(owned);
            }
        }
        all.sort_unstable();
        at = Instant::now();
        all == (0..partitions).collect::<Vec<_>>()
    });
    at
}

/// What the nodes' logs say about the applied events.
#[derive(Debug, Default)]
pub struct Applied {
    /// Per key, every `n` applied (with repeats).
    pub per_key: BTreeMap<String, Vec<u64>>,
    /// Applied lines in all.
    pub lines: usize,
    /// Breaks of per-key order: within one node's run of a partition (one epoch), an event that
    /// is not the one after the previous.
    pub order_violations: Vec<String>,
}

impl Applied {
    /// Reads every node's log.
    pub fn read(logs: &[&Path]) -> Self {
        let mut out = Self::default();
        for log in logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let mut last: BTreeMap<(String, u64), u64> = BTreeMap::new();
            for line in text.lines() {
                let f: Vec<&str> = line.split(' ').collect();
                let [key, n, _partition, _seq, epoch] = f[..] else {
                    continue;
                };
                let (n, epoch): (u64, u64) = (n.parse().unwrap(), epoch.parse().unwrap());
                out.lines += 1;
                out.per_key.entry(key.to_string()).or_default().push(n);
                if let Some(prev) = last.insert((key.to_string(), epoch), n) {
                    if n != prev + 1 {
                        out.order_violations.push(format!(
                            "{}: key {key} epoch {epoch}: {prev} then {n}",
                            log.display()
                        ));
                    }
                }
            }
        }
        out
    }

    /// The keys' missing events, given that key `k` had events `0..sent[k]`.
    pub fn missing(&self, sent: &BTreeMap<String, u64>) -> Vec<String> {
        let mut missing = Vec::new();
        for (key, &count) in sent {
            let seen: BTreeSet<u64> = self
                .per_key
                .get(key)
                .map(|v| v.iter().copied().collect())
                .unwrap_or_default();
            for n in 0..count {
                if !seen.contains(&n) {
                    missing.push(format!("{key}#{n}"));
                }
            }
        }
        missing
    }

    /// Events applied more than once.
    pub fn duplicates(&self) -> usize {
        let distinct: usize = self
            .per_key
            .values()
            .map(|v| v.iter().collect::<BTreeSet<_>>().len())
            .sum();
        self.lines - distinct
    }
}
