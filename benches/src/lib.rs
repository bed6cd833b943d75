//! Shared helpers for the corelane benches: core pinning, the hardware-floor ping-pong, the
//! channel workloads ([`channels`]) and the interleaved comparison runner ([`interleave`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub mod channels;

/// Pins the calling thread to online core `index % cores` (best effort: returns whether it
/// worked). Uses the machine's online cores, not the caller's mask, so pinning one thread never
/// shrinks the set the next one chooses from.
pub fn pin(index: usize) -> bool {
    let cores = corelane::available_cores();
    match cores.get(index % cores.len().max(1)) {
        Some(&id) => core_affinity::set_for_current(core_affinity::CoreId { id }),
        None => false,
    }
}

/// Runs `consumer` pinned to core 1 and `producer` pinned to core 0, and returns the time from the
/// first of them starting to the last of them finishing.
pub fn pinned_pair<P, C>(producer: P, consumer: C) -> Duration
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() + Send + 'static,
{
    let consumer: Box<dyn FnOnce() + Send> = Box::new(consumer);
    let producer: Box<dyn FnOnce() + Send> = Box::new(producer);
    // Index 0 is pinned to core 0: the producer; the consumer goes to core 1.
    pinned_group_on(vec![(0, producer), (1, consumer)])
}

/// Runs `n` threads (pinned round-robin over the cores) each executing `f(i)` after a common start,
/// and returns the time from the first start to the last finish.
pub fn pinned_group<F>(fs: Vec<F>) -> Duration
where
    F: FnOnce() + Send + 'static,
{
    pinned_group_on(fs.into_iter().enumerate().collect())
}

/// Runs each `(core, f)` on its own thread pinned to `core`, all released by one barrier.
///
/// Each thread reads the clock itself, right after the barrier and right after its work: the
/// spawning thread may be descheduled for the whole run on a 2-core machine (it is a third thread),
/// so a clock read there would miss work that already happened.
fn pinned_group_on<F>(fs: Vec<(usize, F)>) -> Duration
where
    F: FnOnce() + Send + 'static,
{
    let barrier = Arc::new(std::sync::Barrier::new(fs.len()));
    let spans: Vec<(Instant, Instant)> = fs
        .into_iter()
        .map(|(core, f)| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                pin(core);
                b.wait();
                let start = Instant::now();
                f();
                (start, Instant::now())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let first = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let last = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    last - first
}

/// The hardware floor: `rounds` round trips of two pinned threads over two atomics on cache
/// lines of their own, one per direction (ping stores `i` to the first and waits for it on the
/// second; pong waits on the first and echoes on the second), as a channel pair's hops would
/// be, without any queue around them. The waits are bare load loops (no `pause`, whose
/// ~40-cycle-plus latency would be part of the figure). Returns the total time.
pub fn atomic_ping_pong(rounds: u64) -> Duration {
    let lines = Arc::new([
        crossbeam_utils::CachePadded::new(AtomicU64::new(u64::MAX)),
        crossbeam_utils::CachePadded::new(AtomicU64::new(u64::MAX)),
    ]);
    let l = lines.clone();
    pinned_pair(
        move || {
            for i in 0..rounds {
                l[0].store(i, Ordering::Release);
                while l[1].load(Ordering::Acquire) != i {}
            }
        },
        move || {
            for i in 0..rounds {
                while lines[0].load(Ordering::Acquire) != i {}
                lines[1].store(i, Ordering::Release);
            }
        },
    )
}

/// Runs every contender once per round for `rounds` rounds and returns each contender's times,
/// in round order. Every round compares contenders measured within the same second or so: on a
/// shared VM whose speed drifts by 2x over minutes, per-round ratios are steady where
/// back-to-back blocks of one contender at a time are not. Each round runs the contenders in a
/// fresh pseudo-random order (a fixed seed, so every run of a bench uses the same orders): what
/// a run leaves behind (a peer that parked its threads lets the host idle or move the vCPUs, and
/// the next run starts slow) must not always land on the same contender, as it does when a fixed
/// cyclic order only rotates its starting point.
pub fn interleave(rounds: usize, contenders: &[&dyn Fn() -> Duration]) -> Vec<Vec<Duration>> {
    let mut times = vec![Vec::with_capacity(rounds); contenders.len()];
    let mut order: Vec<usize> = (0..contenders.len()).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..rounds {
        // Fisher-Yates over an xorshift64 stream.
        for k in (1..order.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            order.swap(k, (state % (k as u64 + 1)) as usize);
        }
        for &i in &order {
            times[i].push(contenders[i]());
        }
    }
    times
}

/// The median of `v` (the upper one for an even length).
///
/// # Panics
/// If `v` is empty or holds a NaN.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}
