//! `cluster-node --id NAME [--servers URLS] [--prefix NAME] [--partitions P] [--replicas R]
//! [--lease-ttl-ms MS] [--workers N] [--log PATH] [--from-offset] [--panic-on KEY]
//! [--snapshot-ms MS] [--stall KEY:N:MS]`: runs one node of the keyed counter until Ctrl-C or SIGTERM (then hands
//! its partitions over at once), printing the partitions it owns whenever they change. A
//! partition it takes is replayed from its start (the counts live only in memory); with
//! `--from-offset`, from after the last committed offset instead; with `--snapshot-ms`, each
//! owned partition's counts are snapshotted that often, and a node taking a partition starts
//! from its last snapshot. With `--panic-on KEY` the handler panics on every event of `KEY`
//! (a bug, to watch those events go to the dead-letter stream `{prefix}_dead`); with
//! `--stall KEY:N:MS` it sleeps MS milliseconds on event `N` of `KEY` (a slow handler).

#![forbid(unsafe_code)]

use std::time::Duration;

use corelane::prelude::*;
use corelane::ShutdownSignals;
use corelane_cluster::Counter;
use corelane_nats::{Node, NodeConfig, Topology};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-node: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

/// The command line.
struct Args {
    id: String,
    servers: String,
    prefix: String,
    partitions: u32,
    replicas: usize,
    lease_ttl: Duration,
    workers: usize,
    log: Option<String>,
    from_offset: bool,
    panic_on: Option<String>,
    snapshot_every: Option<Duration>,
    stall: Option<(String, u64, Duration)>,
}

fn args() -> Result<Args, String> {
    let mut out = Args {
        id: String::new(),
        servers: "nats://127.0.0.1:4222".into(),
        prefix: "counts".into(),
        partitions: 8,
        replicas: 1,
        lease_ttl: Duration::from_secs(3),
        workers: 2,
        log: None,
        from_offset: false,
        panic_on: None,
        snapshot_every: None,
        stall: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--id" => out.id = value()?,
            "--servers" => out.servers = value()?,
            "--prefix" => out.prefix = value()?,
            "--partitions" => out.partitions = value()?.parse().map_err(|e| bad(&e))?,
            "--replicas" => out.replicas = value()?.parse().map_err(|e| bad(&e))?,
            "--lease-ttl-ms" => {
                out.lease_ttl = Duration::from_millis(value()?.parse().map_err(|e| bad(&e))?)
            }
            "--workers" => out.workers = value()?.parse().map_err(|e| bad(&e))?,
            "--log" => out.log = Some(value()?),
            "--from-offset" => out.from_offset = true,
            "--panic-on" => out.panic_on = Some(value()?),
            "--stall" => out.stall = Some(stall(&value()?).map_err(|e| bad(&e))?),
            "--snapshot-ms" => {
                let ms = value()?.parse().map_err(|e| bad(&e))?;
                out.snapshot_every = Some(Duration::from_millis(ms));
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if out.id.is_empty() {
        return Err("--id is required".into());
    }
    Ok(out)
}

/// Prints the partitions the node owns, its fenced commits, its snapshots and the snapshots it
/// could not store or read whenever they change, until Ctrl-C or SIGTERM.
fn report_until_signalled(node: &Node<Counter>, id: &str, mut signals: ShutdownSignals) {
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        signals.wait();
        let _ = done_tx.send(());
    });
    let (mut shown, mut fenced, mut snapshots, mut failures) = (None, 0, 0, 0);
    loop {
        let owned = node.owned();
        if shown.as_ref() != Some(&owned) {
            println!("{id} owns {owned:?}");
            shown = Some(owned);
        }
        if node.fenced() != fenced {
            fenced = node.fenced();
            println!("{id} fenced {fenced}");
        }
        if node.snapshots() != snapshots {
            snapshots = node.snapshots();
            println!("{id} snapshots {snapshots}");
        }
        if node.snapshot_failures() != failures {
            failures = node.snapshot_failures();
            println!("{id} snapshot failures {failures}");
        }
        if done.recv_timeout(Duration::from_millis(100)).is_ok() {
            return;
        }
    }
}

/// `KEY:N:MS`: the key, the event number and the pause of `--stall`.
fn stall(spec: &str) -> Result<(String, u64, Duration), String> {
    let usage = || format!("{spec:?} is not KEY:N:MS");
    let mut parts = spec.rsplitn(3, ':');
    let (Some(ms), Some(n), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage());
    };
    let n = n.parse().map_err(|_| usage())?;
    let ms = ms.parse().map_err(|_| usage())?;
    Ok((key.to_owned(), n, Duration::from_millis(ms)))
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let args = args()?;
    let signals = ShutdownSignals::register()?;
    let log = match &args.log {
        Some(path) => Some(std::sync::Arc::new(std::sync::Mutex::new(
            std::io::LineWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        ))),
        None => None,
    };
    let mut topology = Topology::new(&args.prefix, args.partitions)?
        .with_replicas(args.replicas)
        .with_lease_ttl(args.lease_ttl);
    if let Some(every) = args.snapshot_every {
        topology = topology.with_snapshot_interval(every);
    }
    let pool = Pool::builder()
        .workers(args.workers)
        .worker_config(|i| WorkerConfig::new().with_nth_core(i))
        .spawn(|_| Counter {
            log: log.clone(),
            panic_on: args.panic_on.clone(),
            stall: args.stall.clone(),
        })?;
    let node = Node::start(
        NodeConfig {
            id: args.id.clone(),
            servers: args.servers,
            topology,
            replay_from_start: !args.from_offset,
        },
        pool,
    )?;
    println!("{} started", args.id);
    report_until_signalled(&node, &args.id, signals);
    let pool = node.pool().clone();
    node.stop();
    println!("{} stopped: its partitions are released", args.id);
    pool.shutdown()?;
    Ok(())
}
