//! Channel benchmarks: corelane beside crossbeam-channel, flume, kanal and rtrb, threads pinned,
//! one contender at a time (criterion). The workloads live in `corelane_benches::channels`; the
//! `ratios` bench runs the same ones interleaved round by round for the ratios we claim.
//! Run: `cargo bench -p corelane-benches --bench channel`.
#![allow(missing_docs)] // criterion_group! generates undocumented functions

use std::hint::black_box;
use std::time::Duration;

use corelane::channel::{spsc, WaitStrategy};
use corelane_benches::atomic_ping_pong;
use corelane_benches::channels::{
    fan_in, many, ping_pong, stream, stream_batched, Crossbeam, Flume, Kanal, Mpmc, Mpsc, Rtrb,
    Spsc, SpscTryLoop, N, ROUND_TRIPS,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

type Group<'a> = criterion::BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// Benchmarks `run` (one fresh run per iteration) under `id` in group `g`.
fn timed(g: &mut Group<'_>, id: impl Into<String>, run: impl Fn() -> Duration) {
    g.bench_function(id.into(), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| run()).sum())
    });
}

fn group<'a>(c: &'a mut Criterion, name: &str, elements: u64) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(elements));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g
}

fn spsc_throughput(c: &mut Criterion) {
    let mut g = group(c, "spsc_stream_u64_cap1024", N);
    let default = WaitStrategy::default();
    timed(&mut g, "corelane_spsc", || stream(Spsc(default)));
    timed(&mut g, "corelane_spsc_batch64", stream_batched);
    timed(&mut g, "corelane_spsc_try_loop", || stream(SpscTryLoop));
    timed(&mut g, "rtrb", || stream(Rtrb));
    timed(&mut g, "crossbeam_bounded", || stream(Crossbeam));
    timed(&mut g, "flume_bounded", || stream(Flume));
    timed(&mut g, "kanal_bounded", || stream(Kanal));
    g.finish();
}

fn mpsc_throughput(c: &mut Criterion) {
    let mut g = group(c, "mpsc_2p1c_u64_cap1024", N);
    timed(&mut g, "corelane_mpsc", || {
        fan_in(Mpsc(WaitStrategy::default()), 2)
    });
    timed(&mut g, "crossbeam_bounded", || fan_in(Crossbeam, 2));
    timed(&mut g, "flume_bounded", || fan_in(Flume, 2));
    timed(&mut g, "kanal_bounded", || fan_in(Kanal, 2));
    g.finish();
}

fn mpmc_throughput(c: &mut Criterion) {
    let mut g = group(c, "mpmc_2p2c_u64_cap1024", N);
    timed(&mut g, "corelane_mpmc", || {
        many(Mpmc(WaitStrategy::default()), 2, 2)
    });
    timed(&mut g, "crossbeam_bounded", || many(Crossbeam, 2, 2));
    timed(&mut g, "flume_bounded", || many(Flume, 2, 2));
    timed(&mut g, "kanal_bounded", || many(Kanal, 2, 2));
    g.finish();
}

fn round_trip(c: &mut Criterion) {
    let mut g = group(c, "ping_pong_round_trip", ROUND_TRIPS);
    timed(&mut g, "raw_atomic_floor", || atomic_ping_pong(ROUND_TRIPS));
    for wait in [
        WaitStrategy::Spin,
        WaitStrategy::SpinThenPark,
        WaitStrategy::Park,
    ] {
        timed(&mut g, format!("corelane_spsc/{wait:?}"), || {
            ping_pong(Spsc(wait))
        });
    }
    timed(&mut g, "rtrb_spin", || ping_pong(Rtrb));
    timed(&mut g, "crossbeam_bounded", || ping_pong(Crossbeam));
    timed(&mut g, "flume_bounded", || ping_pong(Flume));
    timed(&mut g, "kanal_bounded", || ping_pong(Kanal));
    g.finish();
}

/// The life of a reply channel on one thread: create, send one value, drop the sender, receive,
/// drop the receiver (what an `ask` pays besides the two cross-core hops).
fn reply_lifecycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("reply_channel_lifecycle");
    g.throughput(Throughput::Elements(1));
    g.bench_function("corelane_oneshot", |b| {
        b.iter(|| {
            let (tx, rx) = corelane::channel::oneshot::channel::<u64>();
            tx.send(black_box(1)).unwrap();
            rx.recv().unwrap()
        })
    });
    // The bounded rings, each used as a one-value channel the same way.
    macro_rules! ring {
        ($label:expr, $make:expr) => {
            g.bench_function($label, |b| {
                b.iter(|| {
                    let (tx, rx) = $make;
                    tx.try_send(black_box(1)).unwrap();
                    drop(tx);
                    rx.recv().unwrap()
                })
            });
        };
    }
    ring!("corelane_spsc_1", spsc::channel::<u64>(1));
    ring!("crossbeam_bounded_1", crossbeam_channel::bounded::<u64>(1));
    ring!("flume_bounded_1", flume::bounded::<u64>(1));
    g.finish();
}

criterion_group!(
    benches,
    spsc_throughput,
    mpsc_throughput,
    mpmc_throughput,
    round_trip,
    reply_lifecycle
);
criterion_main!(benches);
