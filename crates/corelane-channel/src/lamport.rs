//! The ring of the [`spsc`](crate::spsc) flavor: Lamport's bounded ring buffer with cached
//! opposite indices and prefetching (the algorithm is described in the flavor's module docs).

use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::chan::Ring;
use crate::hint::{self, WriteHint};
use crate::sync::{AtomicUsize, Ordering, UnsafeCell};

/// How many cache lines ahead of its position each side asks for the slot line it will touch
/// (`hint`): far enough that the line's transfer from the peer's core (hundreds of nanoseconds
/// where the two cores are far apart) is done when the side gets there. 2, 4, 6, 8 and 12 were
/// measured; 8 was best or level with the best whether the cores were near or far
/// (the A/B table is in `git show 849ac22:docs/benchmarks.md`).
const PREFETCH_LINES: usize = 8;

/// The cache line size the prefetch distance is counted in.
const CACHE_LINE: usize = 64;

/// The producer's private cache line: read and written only by the producer, so its hot-path
/// reads never miss on a line the consumer is polling.
#[derive(Debug)]
struct ProducerLocal {
    /// The producer's copy of `tail` (equal to it whenever the producer is not mid-push).
    tail: UnsafeCell<usize>,
    /// The producer's last view of `head`.
    head_cache: UnsafeCell<usize>,
    /// Whether the producer can prefetch slot lines for writing; set at construction.
    write_hint: WriteHint,
}

/// The consumer's private cache line: read and written only by the consumer.
#[derive(Debug)]
struct ConsumerLocal {
    /// The consumer's copy of `head`.
    head: UnsafeCell<usize>,
    /// The consumer's last view of `tail`.
    tail_cache: UnsafeCell<usize>,
}

/// Lamport ring. Producer rule: one pushing thread at a time. Consumer rule: one popping thread.
///
/// Four cache lines: the two published indices, each alone on its line (written by its owner,
/// polled by the peer), and each side's private copies, which the peer never touches.
pub struct SpscRing<T> {
    /// Next position to write. Stored (Release) by the producer after writing the slot; loaded
    /// (Acquire) by the consumer, which then reads the slot.
    tail: CachePadded<AtomicUsize>,
    /// Next position to read. Stored (Release) by the consumer after moving the value out; loaded
    /// (Acquire) by the producer, which may then overwrite the slot.
    head: CachePadded<AtomicUsize>,
    producer: CachePadded<ProducerLocal>,
    consumer: CachePadded<ConsumerLocal>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

impl<T> std::fmt::Debug for SpscRing<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpscRing")
            .field("capacity", &self.slots.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: the ring moves `T`s between threads (hence `T: Send`). Shared access is sound because each
// slot is touched by one side at a time: the producer only writes slots in [tail, head + cap), the
// consumer only reads slots in [head, tail), and the index Release/Acquire pairs hand a slot over.
// The index caches are touched only by their owning side, and the endpoints admit one of each.
unsafe impl<T: Send> Sync for SpscRing<T> {}
// SAFETY: owning the ring owns its `T`s; sending it sends them.
unsafe impl<T: Send> Send for SpscRing<T> {}

impl<T> SpscRing<T> {
    #[inline(always)]
    fn slot(&self, pos: usize) -> &UnsafeCell<MaybeUninit<T>> {
        // SAFETY: `slots.len()` is `mask + 1` (a power of two, set at construction and never
        // changed), so `pos & mask` is in bounds; this skips the bounds check on the hot path.
        unsafe { self.slots.get_unchecked(pos & self.mask) }
    }

    /// Moves the first `n` values of `items` into the slots from position `pos` on (wrapping at
    /// the end of the array), in order, and removes them from `items`. Outside loom this is at
    /// most two `memcpy`s; under loom, one tracked write per slot.
    ///
    /// # Safety
    /// Producer rule; the `n` slots from `pos` are free; `n <= items.len()`.
    #[inline]
    unsafe fn move_in(&self, pos: usize, items: &mut Vec<T>, n: usize) {
        #[cfg(not(corelane_loom))]
        {
            let len = items.len();
            let start = pos & self.mask;
            let first = n.min(self.slots.len() - start);
            // `UnsafeCell` (ours and core's) and `MaybeUninit` are `repr(transparent)`, so the
            // slot array is laid out as `[T]`; the pointer comes from the whole slice, and every
            // byte written is inside an `UnsafeCell`.
            let base = self.slots.as_ptr() as *mut T;
            let src = items.as_mut_ptr();
            // SAFETY: `start + first <= slots.len()` and `n - first <= start` (the wrapped part
            // ends before `start`), so both copies stay inside the array, on free slots that only
            // this producer touches; `src` holds `len >= n` initialized values. The moved values
            // are then cut from `items` without being dropped (the tail shifts down).
            unsafe {
                std::ptr::copy_nonoverlapping(src, base.add(start), first);
                std::ptr::copy_nonoverlapping(src.add(first), base, n - first);
                std::ptr::copy(src.add(n), src, len - n);
                items.set_len(len - n);
            }
        }
        #[cfg(corelane_loom)]
        for (i, value) in items.drain(..n).enumerate() {
            // SAFETY: the n slots from `pos` are free and only the producer writes them.
            self.slot(pos.wrapping_add(i))
                .with_mut(|p| unsafe { (*p).write(value) });
        }
    }

    /// Appends the `n` values in the slots from position `pos` on to `out`, in order (moving
    /// them out: the slots are free afterwards). Outside loom, at most two `memcpy`s.
    ///
    /// # Safety
    /// Consumer rule; the `n` slots from `pos` hold published values.
    #[inline]
    unsafe fn move_out(&self, pos: usize, out: &mut Vec<T>, n: usize) {
        out.reserve(n);
        #[cfg(not(corelane_loom))]
        {
            let len = out.len();
            let start = pos & self.mask;
            let first = n.min(self.slots.len() - start);
            // As in `move_in`: the slot array has the layout of `[T]`.
            let base = self.slots.as_ptr() as *const T;
            let dst = out.as_mut_ptr();
            // SAFETY: both copies stay inside the array (as in `move_in`) and read initialized
            // values only this consumer touches; `out` has room for `n` more (reserved above);
            // the values are moved, and the slots are treated as uninitialized from here on.
            unsafe {
                std::ptr::copy_nonoverlapping(base.add(start), dst.add(len), first);
                std::ptr::copy_nonoverlapping(base, dst.add(len + first), n - first);
                out.set_len(len + n);
            }
        }
        #[cfg(corelane_loom)]
        for i in 0..n {
            // SAFETY: the n slots from `pos` hold published values; each is moved out once.
            out.push(
                self.slot(pos.wrapping_add(i))
                    .with(|p| unsafe { (*p).assume_init_read() }),
            );
        }
    }

    /// Free slots as the producer sees them, refreshing its head cache if fewer than `want`.
    ///
    /// # Safety
    /// Producer rule.
    #[inline(always)]
    unsafe fn free_slots(&self, tail: usize, want: usize) -> usize {
        let cap = self.slots.len();
        // SAFETY: only the producer touches `head_cache` (producer rule).
        let mut head = self.producer.head_cache.with(|p| unsafe { *p });
        if cap - tail.wrapping_sub(head) < want {
            // Acquire pairs with the consumer's Release store of `head` in `pop*`: the consumer's
            // move out of those slots happens-before we overwrite them.
            let fresh = self.head.load(Ordering::Acquire);
            if fresh != head {
                head = fresh;
                // SAFETY: producer rule, as above.
                self.producer.head_cache.with_mut(|p| unsafe { *p = head });
            }
        }
        cap - tail.wrapping_sub(head)
    }

    /// Values ready as the consumer sees them, refreshing its tail cache if fewer than `want`.
    ///
    /// # Safety
    /// Consumer rule.
    #[inline(always)]
    unsafe fn ready_slots(&self, head: usize, want: usize) -> usize {
        // SAFETY: only the consumer touches `tail_cache` (consumer rule).
        let mut tail = self.consumer.tail_cache.with(|p| unsafe { *p });
        if tail.wrapping_sub(head) < want {
            // Acquire pairs with the producer's Release store of `tail` in `push*`: its writes of
            // those slots happen-before our reads.
            let fresh = self.tail.load(Ordering::Acquire);
            if fresh != tail {
                tail = fresh;
                // SAFETY: consumer rule, as above.
                self.consumer.tail_cache.with_mut(|p| unsafe { *p = tail });
            }
        }
        tail.wrapping_sub(head)
    }

    /// The slot [`PREFETCH_LINES`] lines' worth of slots past position `pos`, if a side at `pos`
    /// should ask for its line now: once per line's worth of slots (when that position is a
    /// multiple of the slots a line holds), and only if a line's worth of slots from it on are
    /// among the `available` slots from `pos` that are this side's to touch (published values
    /// for the consumer, freed slots for the producer): a hint must not pull a line the peer is
    /// still working on. `None` for zero-sized `T` (no memory to ask for).
    #[inline(always)]
    fn line_ahead(&self, pos: usize, available: usize) -> Option<*const u8> {
        let size = std::mem::size_of::<T>();
        if size == 0 {
            return None;
        }
        let per_line = (CACHE_LINE / size).max(1);
        let ahead = PREFETCH_LINES * per_line;
        let next = pos.wrapping_add(ahead);
        (next % per_line == 0 && available >= ahead + per_line)
            .then(|| self.slot(next) as *const UnsafeCell<MaybeUninit<T>> as *const u8)
    }

    /// Makes the slots before `tail` visible to the consumer.
    ///
    /// # Safety
    /// Producer rule; the slots before `tail` are written.
    #[inline(always)]
    unsafe fn publish_tail(&self, tail: usize) {
        // SAFETY: only the producer touches its local line (producer rule).
        self.producer.tail.with_mut(|p| unsafe { *p = tail });
        // Release pairs with the consumer's Acquire load of `tail` in `ready_slots` and `drain`.
        self.tail.store(tail, Ordering::Release);
    }

    /// Hands the slots before `head` back to the producer.
    ///
    /// # Safety
    /// Consumer rule; the values before `head` are moved out.
    #[inline(always)]
    unsafe fn publish_head(&self, head: usize) {
        // SAFETY: only the consumer touches its local line (consumer rule).
        self.consumer.head.with_mut(|p| unsafe { *p = head });
        // Release pairs with the producer's Acquire load of `head` in `free_slots`.
        self.head.store(head, Ordering::Release);
    }
}

impl<T> Ring<T> for SpscRing<T> {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            tail: CachePadded::new(AtomicUsize::new(0)),
            head: CachePadded::new(AtomicUsize::new(0)),
            producer: CachePadded::new(ProducerLocal {
                tail: UnsafeCell::new(0),
                head_cache: UnsafeCell::new(0),
                write_hint: WriteHint::detect(),
            }),
            consumer: CachePadded::new(ConsumerLocal {
                head: UnsafeCell::new(0),
                tail_cache: UnsafeCell::new(0),
            }),
            slots: (0..capacity)
                .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
                .collect(),
            mask: capacity - 1,
        }
    }

    #[inline]
    unsafe fn push(&self, value: T) -> Result<usize, T> {
        // SAFETY: only the producer touches its local line (producer rule).
        let tail = self.producer.tail.with(|p| unsafe { *p });
        // SAFETY: forwarded producer rule.
        let free = unsafe { self.free_slots(tail, 1) };
        if free == 0 {
            return Err(value);
        }
        if let Some(line) = self.line_ahead(tail, free) {
            // The consumer read that line last, so it sits in the consumer's cache.
            self.producer.write_hint.prefetch(line);
        }
        // SAFETY: the slot at `tail` is free (free_slots > 0) and only the producer writes it.
        self.slot(tail).with_mut(|p| unsafe { (*p).write(value) });
        // SAFETY: producer rule, as above.
        unsafe { self.publish_tail(tail.wrapping_add(1)) };
        Ok(tail)
    }

    unsafe fn push_batch(&self, items: &mut Vec<T>) -> (usize, usize) {
        // SAFETY: only the producer touches its local line (producer rule).
        let tail = self.producer.tail.with(|p| unsafe { *p });
        // SAFETY: forwarded producer rule.
        let n = unsafe { self.free_slots(tail, items.len()) }.min(items.len());
        // SAFETY: the n slots from `tail` are free and only the producer writes them.
        unsafe { self.move_in(tail, items, n) };
        if n > 0 {
            // SAFETY: producer rule, as above.
            unsafe { self.publish_tail(tail.wrapping_add(n)) };
        }
        (tail, n)
    }

    #[inline]
    unsafe fn pop(&self) -> Option<T> {
        // SAFETY: only the consumer touches its local line (consumer rule).
        let head = self.consumer.head.with(|p| unsafe { *p });
        // SAFETY: forwarded consumer rule.
        let ready = unsafe { self.ready_slots(head, 1) };
        if ready == 0 {
            return None;
        }
        if let Some(line) = self.line_ahead(head, ready) {
            // The producer wrote that line moments ago, so it sits in the producer's cache.
            hint::prefetch_read(line);
        }
        // SAFETY: the slot at `head` holds a value published by the producer (ready_slots > 0);
        // we move it out and then release the slot.
        let value = self.slot(head).with(|p| unsafe { (*p).assume_init_read() });
        // SAFETY: consumer rule, as above.
        unsafe { self.publish_head(head.wrapping_add(1)) };
        Some(value)
    }

    unsafe fn pop_batch(&self, out: &mut Vec<T>, max: usize) -> usize {
        // SAFETY: only the consumer touches its local line (consumer rule).
        let head = self.consumer.head.with(|p| unsafe { *p });
        // SAFETY: forwarded consumer rule.
        let n = unsafe { self.ready_slots(head, max) }.min(max);
        // SAFETY: the n slots from `head` hold published values, and only the consumer reads them.
        unsafe { self.move_out(head, out, n) };
        if n > 0 {
            // SAFETY: consumer rule, as above.
            unsafe { self.publish_head(head.wrapping_add(n)) };
        }
        n
    }

    unsafe fn drain(&self, f: &mut dyn FnMut(usize, T)) {
        // SAFETY: the caller excludes every other popper, so this thread acts as the consumer.
        let head = self.consumer.head.with(|p| unsafe { *p });
        // Acquire pairs with the producer's Release store of `tail`: every published slot is
        // visible. (SPSC claims and publishes in one store, so nothing is half-written.)
        let tail = self.tail.load(Ordering::Acquire);
        let mut pos = head;
        while pos != tail {
            // SAFETY: [head, tail) hold published values; the caller excludes every other popper.
            let value = self.slot(pos).with(|p| unsafe { (*p).assume_init_read() });
            // Publish progress before `f`, so a panic in `f` cannot cause a double drop.
            // SAFETY: consumer rule, as above.
            unsafe { self.publish_head(pos.wrapping_add(1)) };
            f(pos, value);
            pos = pos.wrapping_add(1);
        }
    }

    fn has_item(&self) -> bool {
        self.tail.load(Ordering::Acquire) != self.head.load(Ordering::Acquire)
    }

    fn has_space(&self) -> bool {
        self.len() < self.slots.len()
    }

    fn len(&self) -> usize {
        // Load head first: tail only grows, so tail - head cannot underflow.
        let head = self.head.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.slots.len())
    }

    fn capacity(&self) -> usize {
        self.slots.len()
    }
}

impl<T> Drop for SpscRing<T> {
    fn drop(&mut self) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        let mut pos = head;
        while pos != tail {
            // SAFETY: `&mut self`: no other access; slots in [head, tail) hold initialized values,
            // each dropped once.
            self.slot(pos)
                .with_mut(|p| unsafe { (*p).assume_init_drop() });
            pos = pos.wrapping_add(1);
        }
    }
}
