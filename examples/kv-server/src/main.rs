//! `kv-server [--addr HOST:PORT] [--shards N] [--max-bulk BYTES] [--no-pin]
//! [--metrics-addr HOST:PORT]`: serves RESP2 until Ctrl-C or SIGTERM, then shuts down gracefully
//! and prints the shard pool's report. With `--metrics-addr`, `GET /metrics` there answers the
//! shard pool's metrics in the Prometheus text format.

#![forbid(unsafe_code)]

use corelane_kv::{Config, Server};

/// Keys and values are allocated on the network thread and freed on a shard's (and replies the
/// other way round); glibc's malloc serves such cross-thread frees through arena locks, which
/// took a fifth of the server's CPU in a profile. mimalloc frees them into the owning thread's
/// heap without a lock.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kv-server: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut cfg = Config::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        // A bad value names its flag: `--shards: invalid digit found in string`.
        let bad = |e: &dyn std::fmt::Display| format!("{arg}: {e}");
        match arg.as_str() {
            "--addr" => cfg.addr = value()?.parse().map_err(|e| bad(&e))?,
            "--shards" => cfg.shards = value()?.parse().map_err(|e| bad(&e))?,
            "--max-bulk" => cfg.max_bulk = value()?.parse().map_err(|e| bad(&e))?,
            "--no-pin" => cfg.pin = false,
            "--metrics-addr" => cfg.metrics_addr = Some(value()?.parse().map_err(|e| bad(&e))?),
            "-h" | "--help" => {
                println!(
                    "kv-server [--addr HOST:PORT] [--shards N] [--max-bulk BYTES] [--no-pin] \
                     [--metrics-addr HOST:PORT]"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    // The signal runtime and its handlers take their descriptors before the server accepts
    // anything: clients that use up the process's descriptors must not make them fail.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut term = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    })?;
    let server = Server::start(cfg)?;
    println!("corelane-kv listening on {}", server.local_addr());
    if let Some(metrics) = server.metrics_addr() {
        println!("metrics on http://{metrics}/metrics");
    }
    rt.block_on(async {
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    println!("shutting down: finishing in-flight requests");
    let report = server.shutdown()?;
    for w in &report.workers {
        println!(
            "shard {}: processed {}, unprocessed {}, outcome {:?}",
            w.index,
            w.counters.processed,
            w.unprocessed.len(),
            w.outcome
        );
    }
    println!(
        "total processed {}, clean {}",
        report.processed(),
        report.is_clean()
    );
    Ok(())
}
