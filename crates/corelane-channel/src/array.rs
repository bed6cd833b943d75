//! Bounded array ring with per-slot stamps, the engine of the [`mpsc`](crate::mpsc) and
//! [`mpmc`](crate::mpmc) flavors.
//!
//! Algorithm: Dmitry Vyukov's bounded MPMC queue (1024cores.net, "Bounded MPMC queue"), the design
//! crossbeam-channel's array flavor also uses. Positions grow without bound (wrapping `usize`); the
//! slot for position `p` is `p & mask`, and its stamp says whose turn it is:
//! `stamp == 2p` free for the producer of `p`; `stamp == 2p + 1` holds the value of `p`;
//! after the value is taken, `stamp = 2(p + capacity)`, free for the producer one lap later.
//! (Vyukov's stamps are `p`, `p + 1`, `p + capacity`; doubling them keeps "full" and "free next
//! lap" distinct at capacity 1, the case crossbeam solves with its lap encoding.)
//! Producers claim positions by compare-and-swap on `tail`. With `MULTI_CONSUMER = false` (MPSC)
//! the single consumer owns `head` and pops with plain loads and stores, no CAS.
//!
//! A batch push claims `n` consecutive free positions with one CAS; a batch pop takes `n`
//! consecutive ready positions with one CAS (MPMC) or one store (MPSC).

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::chan::Ring;
use crate::sync::{spin_hint, AtomicUsize, Ordering, UnsafeCell};

/// One cell of the ring: a value and the stamp that says whose turn it is.
struct Stamped<T> {
    /// Written (Release) by the producer after writing `value` and by the consumer after taking
    /// it; read (Acquire) by both before touching `value`.
    stamp: AtomicUsize,
    value: UnsafeCell<MaybeUninit<T>>,
}

/// The ring. Producer rule: none (any number of threads may push). Consumer rule: one popping
/// thread at a time when `MULTI_CONSUMER` is false, none otherwise.
pub struct ArrayRing<T, const MULTI_CONSUMER: bool> {
    /// Next position to claim for a push. CAS'd by producers; read by `len`.
    tail: CachePadded<AtomicUsize>,
    /// Next position to pop. CAS'd by consumers (MPMC) or stored by the one consumer (MPSC); read
    /// by `len`.
    head: CachePadded<AtomicUsize>,
    slots: Box<[Stamped<T>]>,
    mask: usize,
}

impl<T, const MC: bool> std::fmt::Debug for ArrayRing<T, MC> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArrayRing")
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: values move between threads (hence `T: Send`). A slot's value is accessed only by the
// thread that won its position (by CAS, or by being the sole consumer), and the stamp
// Release/Acquire pairs hand the slot from producer to consumer and back.
unsafe impl<T: Send, const MC: bool> Sync for ArrayRing<T, MC> {}
// SAFETY: owning the ring owns its `T`s; sending it sends them.
unsafe impl<T: Send, const MC: bool> Send for ArrayRing<T, MC> {}

/// Signed distance from `b` to `a` on the wrapping position line.
#[inline(always)]
fn diff(a: usize, b: usize) -> isize {
    a.wrapping_sub(b) as isize
}

/// The stamp of position `pos`: free (`full = 0`) or holding its value (`full = 1`).
#[inline(always)]
fn stamp(pos: usize, full: usize) -> usize {
    (pos << 1) | full
}

impl<T, const MC: bool> ArrayRing<T, MC> {
    #[inline(always)]
    fn slot(&self, pos: usize) -> &Stamped<T> {
        // SAFETY: `slots.len()` is `mask + 1` (a power of two, set at construction and never
        // changed), so `pos & mask` is in bounds; this skips the bounds check on the hot path.
        unsafe { self.slots.get_unchecked(pos & self.mask) }
    }

    /// Counts consecutive positions from `start` (at most `max`) whose stamp is `stamp(pos, full)`.
    #[inline(always)]
    fn run_of(&self, start: usize, max: usize, full: usize) -> usize {
        let mut n = 0;
        // Acquire pairs with the Release stamp store that made each slot free/ready.
        while n < max
            && self
                .slot(start.wrapping_add(n))
                .stamp
                .load(Ordering::Acquire)
                == stamp(start.wrapping_add(n), full)
        {
            n += 1;
        }
        n
    }

    /// Claims up to `max` consecutive positions starting at `index`'s current value whose slots
    /// carry `stamp(pos, full)`, advancing `index` by CAS (or by a plain store when
    /// `exclusive`). Returns the first claimed position and the count (0 when none is available).
    #[inline(always)]
    fn claim(
        &self,
        index: &AtomicUsize,
        max: usize,
        full: usize,
        exclusive: bool,
    ) -> (usize, usize) {
        let mut pos = index.load(Ordering::Relaxed);
        loop {
            let n = self.run_of(pos, max, full);
            if n == 0 {
                let seen = self.slot(pos).stamp.load(Ordering::Acquire);
                if diff(seen, stamp(pos, full)) < 0 {
                    // The slot is a lap behind: full (for pushes) or empty (for pops).
                    return (pos, 0);
                }
                // Another thread claimed `pos` since we loaded the index; reload.
                spin_hint();
                pos = index.load(Ordering::Relaxed);
                continue;
            }
            if exclusive {
                // Relaxed: the sole owner of this index; the stamps carry the synchronization.
                index.store(pos.wrapping_add(n), Ordering::Relaxed);
                return (pos, n);
            }
            // Relaxed: the CAS only arbitrates ownership; the stamps carry the synchronization.
            match index.compare_exchange_weak(
                pos,
                pos.wrapping_add(n),
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return (pos, n),
                Err(current) => {
                    spin_hint();
                    pos = current;
                }
            }
        }
    }

    /// # Safety
    /// `pos` was claimed for a push by this thread.
    #[inline(always)]
    unsafe fn write(&self, pos: usize, value: T) {
        let slot = self.slot(pos);
        // SAFETY: the claim gives this thread exclusive access to the free slot.
        slot.value.with_mut(|p| unsafe { (*p).write(value) });
        // Release pairs with the consumer's Acquire stamp load in `run_of`/`claim`.
        slot.stamp.store(stamp(pos, 1), Ordering::Release);
    }

    /// # Safety
    /// `pos` was claimed for a pop by this thread.
    #[inline(always)]
    unsafe fn take(&self, pos: usize) -> T {
        let slot = self.slot(pos);
        // SAFETY: the claim gives this thread exclusive access to the ready slot.
        let value = slot.value.with(|p| unsafe { (*p).assume_init_read() });
        // Release pairs with the next lap's producer Acquire stamp load in `run_of`/`claim`.
        slot.stamp.store(
            stamp(pos.wrapping_add(self.slots.len()), 0),
            Ordering::Release,
        );
        value
    }
}

impl<T, const MC: bool> Ring<T> for ArrayRing<T, MC> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            tail: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(AtomicUsize::new(0)),
            slots: (0..capacity)
                .map(|i| Stamped {
                    stamp: AtomicUsize::new(stamp(i, 0)),
                    value: UnsafeCell::new(MaybeUninit::uninit()),
                })
                .collect(),
            mask: capacity - 1,
        }
    }

    #[inline]
    unsafe fn push(&self, value: T) -> Result<usize, T> {
        match self.claim(&self.tail, 1, 0, false) {
            (_, 0) => Err(value),
            (pos, _) => {
                // SAFETY: we claimed `pos`.
                unsafe { self.write(pos, value) };
                Ok(pos)
            }
        }
    }

    unsafe fn push_batch(&self, items: &mut Vec<T>) -> (usize, usize) {
        if items.is_empty() {
            return (0, 0);
        }
        let (pos, n) = self.claim(&self.tail, items.len(), 0, false);
        for (i, value) in items.drain(..n).enumerate() {
            // SAFETY: we claimed the n positions from `pos`.
            unsafe { self.write(pos.wrapping_add(i), value) };
        }
        (pos, n)
    }

    #[inline]
    unsafe fn pop(&self) -> Option<T> {
        match self.claim(&self.head, 1, 1, !MC) {
            (_, 0) => None,
            // SAFETY: we claimed `pos` (exclusively by CAS, or as the sole consumer).
            (pos, _) => Some(unsafe { self.take(pos) }),
        }
    }

    unsafe fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        let (pos, n) = self.claim(&self.head, max, 1, !MC);
        out.reserve(n);
        for i in 0..n {
            // SAFETY: we claimed the n positions from `pos`.
            out.push(unsafe { self.take(pos.wrapping_add(i)) });
        }
        n
    }

    unsafe fn drain(&self, f: &mut dyn FnMut(usize, T)) {
        // Only the positions claimed before the drain starts: a sender that claims one later has
        // its publication ordered after the close's barrier, so it sees the close (the signal's
        // sticky flag) and takes its value back itself. Draining it here instead would make
        // that send report success for a value the closer dropped. (The stamps carry the values;
        // the limit only has to be at or past every claim made before the close's barrier.)
        let limit = self.tail.load(Ordering::Acquire);
        loop {
            if diff(self.head.load(Ordering::Acquire), limit) >= 0 {
                return;
            }
            // Pops by the normal claim (CAS-safe against an evicting receiver clone in MPMC
            // mode); a position claimed but not yet written is waited for (its producer writes
            // it without blocking).
            match self.claim(&self.head, 1, 1, !MC) {
                (pos, 1) => {
                    // SAFETY: we claimed `pos` (by CAS, or as the sole consumer: the caller
                    // excludes every other popper in single-consumer mode).
                    let value = unsafe { self.take(pos) };
                    f(pos, value);
                }
                _ => crate::sync::yield_now(),
            }
        }
    }

    fn has_item(&self) -> bool {
        let head = self.head.load(Ordering::Relaxed);
        // Acquire pairs with the producer's Release stamp store in `write`.
        diff(
            self.slot(head).stamp.load(Ordering::Acquire),
            stamp(head, 1),
        ) >= 0
    }

    fn has_space(&self) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire pairs with the consumer's Release stamp store in `take`.
        diff(
            self.slot(tail).stamp.load(Ordering::Acquire),
            stamp(tail, 0),
        ) >= 0
    }

    fn len(&self) -> usize {
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        (diff(tail, head).max(0) as usize).min(self.slots.len())
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }
}

impl<T, const MC: bool> Drop for ArrayRing<T, MC> {
    fn drop(&mut self) {
        // `&mut self`: every claim has completed, so [head, tail) holds exactly the values.
        let tail = self.tail.load(Ordering::Relaxed);
        let mut pos = self.head.load(Ordering::Relaxed);
        while pos != tail {
            let slot = self.slot(pos);
            // SAFETY: exclusive access; the slot of every position in [head, tail) holds a value
            // (its producer finished before the last handle dropped), each dropped once.
            slot.value.with_mut(|p| unsafe { (*p).assume_init_drop() });
            pos = pos.wrapping_add(1);
        }
    }
}
