//! The doorbell: a thread or a task waits on several sources; producers ring after publishing.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use corelane_channel::{Doorbell, WaitStrategy};

/// Counts wake-ups and unparks the polling thread.
struct Unpark {
    thread: std::thread::Thread,
    wakes: AtomicUsize,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::Relaxed);
        self.thread.unpark();
    }
}

/// Polls `fut` to completion on this thread, parking between polls (with a timeout, so a lost
/// wake-up fails the test instead of hanging it). Returns how many wake-ups it took.
fn block_on(fut: impl Future<Output = ()>) -> usize {
    let unpark = Arc::new(Unpark {
        thread: std::thread::current(),
        wakes: AtomicUsize::new(0),
    });
    let waker = Waker::from(unpark.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let deadline = Instant::now() + Duration::from_secs(10);
    while fut.as_mut().poll(&mut cx).is_pending() {
        assert!(Instant::now() < deadline, "a ring was lost");
        std::thread::park_timeout(Duration::from_secs(1));
    }
    unpark.wakes.load(Ordering::Relaxed)
}

#[test]
fn a_task_is_woken_by_every_ring_it_waits_for() {
    let bell = Arc::new(Doorbell::new());
    for round in 0..2000 {
        let flag = Arc::new(AtomicBool::new(false));
        let (b, f) = (bell.clone(), flag.clone());
        let ringer = std::thread::spawn(move || {
            if round % 2 == 0 {
                std::thread::yield_now();
            }
            f.store(true, Ordering::Release);
            b.ring();
        });
        let ready = || flag.load(Ordering::Acquire);
        block_on(bell.ready(&ready));
        assert!(flag.load(Ordering::Acquire));
        ringer.join().unwrap();
    }
}

#[test]
fn a_ready_source_resolves_at_once_without_registering() {
    let bell = Doorbell::new();
    assert_eq!(block_on(bell.ready(&|| true)), 0);
}

#[test]
fn a_dropped_wait_does_not_swallow_the_next_waiters_ring() {
    let bell = Arc::new(Doorbell::new());
    let flag = Arc::new(AtomicBool::new(false));
    {
        // Register, then give up before anything happens.
        let never = || false;
        let mut fut = pin!(bell.ready(&never));
        let mut cx = Context::from_waker(Waker::noop());
        assert_eq!(fut.as_mut().poll(&mut cx), Poll::Pending);
    }
    let (b, f) = (bell.clone(), flag.clone());
    let ringer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        f.store(true, Ordering::Release);
        b.ring();
    });
    // A parked thread now waits on the same bell; the ring must reach it.
    assert!(bell.wait(WaitStrategy::Park, None, &|| flag.load(Ordering::Acquire)));
    ringer.join().unwrap();
}

#[test]
fn a_parked_thread_and_a_task_are_both_woken() {
    let bell = Arc::new(Doorbell::new());
    let flag = Arc::new(AtomicBool::new(false));
    let (b, f) = (bell.clone(), flag.clone());
    let thread_waiter =
        std::thread::spawn(move || b.wait(WaitStrategy::Park, None, &|| f.load(Ordering::Acquire)));
    let (b, f) = (bell.clone(), flag.clone());
    let ringer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        f.store(true, Ordering::Release);
        b.ring();
    });
    let ready = || flag.load(Ordering::Acquire);
    block_on(bell.ready(&ready));
    assert!(thread_waiter.join().unwrap());
    ringer.join().unwrap();
}
