//! Shared helpers for the corelane benches: core pinning and the hardware-floor ping-pong.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// start of both to the end of both.
pub fn pinned_pair<P, C>(producer: P, consumer: C) -> Duration
where
    P: FnOnce() + Send + 'static,
    C: FnOnce() + Send + 'static,
{
    let barrier = Arc::new(std::sync::Barrier::new(3));
    let b = barrier.clone();
    let c = std::thread::spawn(move || {
        pin(1);
        b.wait();
        consumer();
    });
    let b = barrier.clone();
    let p = std::thread::spawn(move || {
        pin(0);
        b.wait();
        producer();
    });
    barrier.wait();
    let start = Instant::now();
    p.join().unwrap();
    c.join().unwrap();
    start.elapsed()
}

/// Runs `n` threads (pinned round-robin over the cores) each executing `f(i)` after a common start,
/// and returns the time until all finish.
pub fn pinned_group<F>(fs: Vec<F>) -> Duration
where
    F: FnOnce() + Send + 'static,
{
    let barrier = Arc::new(std::sync::Barrier::new(fs.len() + 1));
    let hs: Vec<_> = fs
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let b = barrier.clone();
            std::thread::spawn(move || {
                pin(i);
                b.wait();
                f();
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    hs.into_iter().for_each(|h| h.join().unwrap());
    start.elapsed()
}

/// The hardware floor: `rounds` round trips of two pinned threads bouncing one atomic counter
/// (even = ping's turn, odd = pong's). Returns the total time.
pub fn atomic_ping_pong(rounds: u64) -> Duration {
    let flag = Arc::new(AtomicU64::new(0));
    let f = flag.clone();
    pinned_pair(
        move || {
            for i in 0..rounds {
                f.store(2 * i + 1, Ordering::Release);
                while f.load(Ordering::Acquire) != 2 * i + 2 {
                    std::hint::spin_loop();
                }
            }
        },
        move || {
            for i in 0..rounds {
                while flag.load(Ordering::Acquire) != 2 * i + 1 {
                    std::hint::spin_loop();
                }
                flag.store(2 * i + 2, Ordering::Release);
            }
        },
    )
}
