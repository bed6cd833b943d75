//! `cluster-send [--servers URLS] [--prefix NAME] [--partitions P] [--replicas R] [--keys K]
//! [--rounds N]`: publishes N events of each of K keys (`key-0` ..), reports the rate, then
//! asks the owners how many events of the first keys they applied (each ask reads its own
//! last write).

#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use corelane_cluster::Event;
use corelane_nats::{Client, Topology};

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cluster-send: {e}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (mut servers, mut prefix) = ("nats://127.0.0.1:4222".to_string(), "counts".to_string());
    let (mut partitions, mut replicas, mut keys, mut rounds) = (8u32, 1usize, 16u64, 100u64);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--servers" => servers = value,
            "--prefix" => prefix = value,
            "--partitions" => partitions = value.parse().map_err(|e| bad(&e))?,
            "--replicas" => replicas = value.parse().map_err(|e| bad(&e))?,
            "--keys" => keys = value.parse().map_err(|e| bad(&e))?,
            "--rounds" => rounds = value.parse().map_err(|e| bad(&e))?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let topology = Topology::new(&prefix, partitions)?.with_replicas(replicas);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let client = Client::connect(&servers, topology).await?;
        let started = Instant::now();
        let mut last = Vec::new();
        for n in 0..rounds {
            last.clear();
            for k in 0..keys {
                let event = Event {
                    key: format!("key-{k}"),
                    n,
                };
                last.push((
                    event.clone(),
                    client.send(event.key.as_bytes(), &event).await?,
                ));
            }
        }
        let took = started.elapsed();
        println!(
            "published {} events in {took:?} ({:.0}/s)",
            rounds * keys,
            (rounds * keys) as f64 / took.as_secs_f64()
        );
        for (event, published) in last.iter().take(4) {
            let applied: u64 = client
                .ask(
                    event.key.as_bytes(),
                    event,
                    Some(*published),
                    Duration::from_secs(10),
                )
                .await?;
            println!(
                "{}: applied {applied} by its owner (partition {})",
                event.key, published.partition
            );
        }
        Ok(())
    })
}
