//! Channel benchmarks: corelane beside crossbeam-channel, flume, kanal and rtrb, same run, threads
#![allow(missing_docs)] // criterion_group! generates undocumented functions
//! pinned. Run: `cargo bench -p corelane-benches --bench channel`.

use std::hint::black_box;
use std::time::Duration;

use corelane::channel::{spsc, Builder, WaitStrategy};
use corelane_benches::{atomic_ping_pong, pinned_group, pinned_pair};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const CAP: usize = 1024;
const N: u64 = 1_000_000;
const BATCH: usize = 64;

/// Busy-polling send/recv loops for the peers that only offer try operations or whose blocking
/// path is measured separately. Each returns when `N` messages have crossed.
macro_rules! stream {
    ($send:expr, $recv:expr) => {{
        #[allow(unused_mut)] // FnMut for rtrb, Fn for the others
        let (mut send, mut recv) = ($send, $recv);
        pinned_pair(
            move || {
                for i in 0..N {
                    send(i);
                }
            },
            move || {
                let mut sum = 0u64;
                for _ in 0..N {
                    sum = sum.wrapping_add(recv());
                }
                black_box(sum);
            },
        )
    }};
}

fn spsc_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("spsc_stream_u64_cap1024");
    g.throughput(Throughput::Elements(N));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("corelane_spsc", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = spsc::channel::<u64>(CAP);
                    stream!(move |v| tx.send(v).unwrap(), move || rx.recv().unwrap())
                })
                .sum()
        })
    });
    g.bench_function("corelane_spsc_batch64", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = spsc::channel::<u64>(CAP);
                    pinned_pair(
                        move || {
                            let mut buf = Vec::with_capacity(BATCH);
                            let mut i = 0;
                            while i < N {
                                buf.extend(i..(i + BATCH as u64).min(N));
                                i += buf.len() as u64;
                                tx.send_batch(&mut buf).unwrap();
                            }
                        },
                        move || {
                            let mut buf = Vec::with_capacity(BATCH);
                            let (mut got, mut sum) = (0u64, 0u64);
                            while got < N {
                                buf.clear();
                                got += rx.recv_batch(&mut buf, BATCH).unwrap() as u64;
                                sum = buf.iter().fold(sum, |s, v| s.wrapping_add(*v));
                            }
                            black_box(sum);
                        },
                    )
                })
                .sum()
        })
    });
    g.bench_function("corelane_spsc_try_loop", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = spsc::channel::<u64>(CAP);
                    stream!(
                        move |mut v| loop {
                            match tx.try_send(v) {
                                Ok(()) => break,
                                Err(e) => {
                                    v = e.into_inner();
                                    std::hint::spin_loop();
                                }
                            }
                        },
                        move || loop {
                            if let Ok(v) = rx.try_recv() {
                                break v;
                            }
                            std::hint::spin_loop();
                        }
                    )
                })
                .sum()
        })
    });
    g.bench_function("rtrb", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(CAP);
                    stream!(
                        move |mut v| loop {
                            match tx.push(v) {
                                Ok(()) => break,
                                Err(rtrb::PushError::Full(back)) => {
                                    v = back;
                                    std::hint::spin_loop();
                                }
                            }
                        },
                        move || loop {
                            if let Ok(v) = rx.pop() {
                                break v;
                            }
                            std::hint::spin_loop();
                        }
                    )
                })
                .sum()
        })
    });
    g.bench_function("crossbeam_bounded", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = crossbeam_channel::bounded::<u64>(CAP);
                    stream!(move |v| tx.send(v).unwrap(), move || rx.recv().unwrap())
                })
                .sum()
        })
    });
    g.bench_function("flume_bounded", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = flume::bounded::<u64>(CAP);
                    stream!(move |v| tx.send(v).unwrap(), move || rx.recv().unwrap())
                })
                .sum()
        })
    });
    g.bench_function("kanal_bounded", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (tx, rx) = kanal::bounded::<u64>(CAP);
                    stream!(move |v| tx.send(v).unwrap(), move || rx.recv().unwrap())
                })
                .sum()
        })
    });
    g.finish();
}

/// `producers` x `consumers` threads over one channel; N messages in total.
fn many(c: &mut Criterion, name: &str, producers: usize, consumers: usize) {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(N));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    let per = N / producers as u64;
    macro_rules! run {
        ($label:expr, $make:expr) => {
            g.bench_function($label, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            let (tx, rx) = $make;
                            let mut fs: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
                            for _ in 0..producers {
                                let tx = tx.clone();
                                fs.push(Box::new(move || {
                                    (0..per).for_each(|i| tx.send(i).unwrap())
                                }));
                            }
                            for _ in 0..consumers {
                                let rx = rx.clone();
                                fs.push(Box::new(move || {
                                    let mut sum = 0u64;
                                    while let Ok(v) = rx.recv() {
                                        sum = sum.wrapping_add(v);
                                    }
                                    black_box(sum);
                                }));
                            }
                            drop((tx, rx));
                            pinned_group(fs)
                        })
                        .sum()
                })
            });
        };
    }
    if consumers == 1 {
        g.bench_function("corelane_mpsc", |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (tx, rx) = corelane::channel::mpsc::channel::<u64>(CAP);
                        let mut fs: Vec<Box<dyn FnOnce() + Send>> = Vec::new();
                        for _ in 0..producers {
                            let tx = tx.clone();
                            fs.push(Box::new(move || (0..per).for_each(|i| tx.send(i).unwrap())));
                        }
                        drop(tx);
                        fs.push(Box::new(move || {
                            let mut sum = 0u64;
                            while let Ok(v) = rx.recv() {
                                sum = sum.wrapping_add(v);
                            }
                            black_box(sum);
                        }));
                        pinned_group(fs)
                    })
                    .sum()
            })
        });
    } else {
        run!(
            "corelane_mpmc",
            corelane::channel::mpmc::channel::<u64>(CAP)
        );
    }
    run!("crossbeam_bounded", crossbeam_channel::bounded::<u64>(CAP));
    run!("flume_bounded", flume::bounded::<u64>(CAP));
    run!("kanal_bounded", kanal::bounded::<u64>(CAP));
    g.finish();
}

fn mpsc_throughput(c: &mut Criterion) {
    many(c, "mpsc_2p1c_u64_cap1024", 2, 1);
}

fn mpmc_throughput(c: &mut Criterion) {
    many(c, "mpmc_2p2c_u64_cap1024", 2, 2);
}

const ROUNDS: u64 = 20_000;

/// Round trips: the ping thread sends i and waits for i back over a second channel.
macro_rules! ping_pong {
    ($g:expr, $label:expr, $make:expr) => {
        $g.bench_function($label, |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        let (tx_a, rx_a) = $make;
                        let (tx_b, rx_b) = $make;
                        pinned_pair(
                            move || {
                                for i in 0..ROUNDS {
                                    tx_a.send(i).unwrap();
                                    assert_eq!(rx_b.recv().unwrap(), i);
                                }
                            },
                            move || {
                                for _ in 0..ROUNDS {
                                    let v = rx_a.recv().unwrap();
                                    tx_b.send(v).unwrap();
                                }
                            },
                        )
                    })
                    .sum()
            })
        });
    };
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_round_trip");
    g.throughput(Throughput::Elements(ROUNDS));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("raw_atomic_floor", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| atomic_ping_pong(ROUNDS)).sum())
    });
    for wait in [
        WaitStrategy::Spin,
        WaitStrategy::SpinThenPark,
        WaitStrategy::Park,
    ] {
        ping_pong!(
            g,
            BenchmarkId::new("corelane_spsc", format!("{wait:?}")),
            Builder::new(1).wait_strategy(wait).spsc::<u64>().unwrap()
        );
    }
    g.bench_function("rtrb_spin", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (mut tx_a, mut rx_a) = rtrb::RingBuffer::<u64>::new(1);
                    let (mut tx_b, mut rx_b) = rtrb::RingBuffer::<u64>::new(1);
                    pinned_pair(
                        move || {
                            for i in 0..ROUNDS {
                                while tx_a.push(i).is_err() {
                                    std::hint::spin_loop();
                                }
                                loop {
                                    if let Ok(v) = rx_b.pop() {
                                        assert_eq!(v, i);
                                        break;
                                    }
                                    std::hint::spin_loop();
                                }
                            }
                        },
                        move || {
                            for _ in 0..ROUNDS {
                                let v = loop {
                                    if let Ok(v) = rx_a.pop() {
                                        break v;
                                    }
                                    std::hint::spin_loop();
                                };
                                while tx_b.push(v).is_err() {
                                    std::hint::spin_loop();
                                }
                            }
                        },
                    )
                })
                .sum()
        })
    });
    ping_pong!(g, "crossbeam_bounded", crossbeam_channel::bounded::<u64>(1));
    ping_pong!(g, "flume_bounded", flume::bounded::<u64>(1));
    ping_pong!(g, "kanal_bounded", kanal::bounded::<u64>(1));
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
