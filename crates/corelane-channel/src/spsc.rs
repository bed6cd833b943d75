//! Single-producer single-consumer channel.
//!
//! Algorithm: Lamport's bounded ring buffer (L. Lamport, "Specifying Concurrent Program Modules",
//! 1983) with cached opposite indices, as in rigtorp's SPSCQueue and the `rtrb` crate: the
//! producer owns `tail`, the consumer owns `head`, each on its own cache line, and each side keeps
//! a private copy of the other's index, reloading it (Acquire) only when the copy says full/empty.
//! A publish is one Release store; nothing is ever compare-and-swapped. Each side's private
//! copies (its own index and its cache of the peer's) sit on a third and fourth line that the
//! peer never touches, so the hot path never reads a line the peer is polling (rtrb keeps them
//! in its endpoints for the same reason). Each side asks for the slot line it will touch eight
//! lines ahead once that line is its own (x86_64): the consumer for reading once the line is
//! published, the producer for writing (`prefetchw`) once the consumer has freed it. So the
//! transfer of a line between the cores overlaps the messages before it instead of stalling one
//! of them, which is what rigtorp's and rtrb's rings pay per line.
//!
//! The endpoints encode the topology: [`Producer`] and [`Consumer`] are `Send` but neither `Sync`
//! nor `Clone`, so at most one thread pushes and one pops at any time:
//! ```compile_fail
//! let (tx, _rx) = corelane_channel::spsc::channel::<u8>(4);
//! let _second = tx.clone(); // no second producer
//! ```
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! let (tx, _rx) = corelane_channel::spsc::channel::<u8>(4);
//! shared(&tx); // no pushing through a shared reference from two threads
//! ```
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! let (_tx, rx) = corelane_channel::mpsc::channel::<u8>(4);
//! shared(&rx); // the MPSC receiver is single-consumer too
//! ```
//!
//! # Examples
//! ```
//! let (tx, rx) = corelane_channel::spsc::channel::<u64>(1024);
//! let consumer = std::thread::spawn(move || {
//!     let mut sum = 0;
//!     while let Ok(v) = rx.recv() {
//!         sum += v;
//!     }
//!     sum
//! });
//! for i in 0..10_000 {
//!     tx.send(i).unwrap();
//! }
//! drop(tx); // the consumer drains what is queued, then sees the disconnect
//! assert_eq!(consumer.join().unwrap(), (0..10_000).sum::<u64>());
//! ```

use std::cell::Cell;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::chan::{Chan, Ring};
use crate::endpoint::{close_api, debug_endpoint, receiver_api, sender_api};
use crate::hint::{self, WriteHint};
use crate::sync::{Arc, AtomicUsize, Ordering, UnsafeCell};
use crate::WaitStrategy;

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
pub(crate) struct SpscRing<T> {
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

/// Creates a channel of at least `capacity` slots (rounded up to a power of two) with the default
/// [`WaitStrategy::SpinThenPark`]. Use [`Builder`](crate::Builder) for another strategy or a typed
/// capacity error.
///
/// # Panics
/// If `capacity` is 0 or rounds up past [`MAX_CAPACITY`](crate::MAX_CAPACITY).
pub fn channel<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    crate::Builder::new(capacity)
        .spsc()
        .unwrap_or_else(|e| panic!("spsc::channel: {e}"))
}

pub(crate) fn with_wait<T>(capacity: usize, wait: WaitStrategy) -> (Producer<T>, Consumer<T>) {
    let chan = Arc::new(Chan::new(capacity, wait));
    (
        Producer {
            chan: chan.clone(),
            _not_sync: PhantomData,
        },
        Consumer {
            chan,
            _not_sync: PhantomData,
        },
    )
}

/// The sending end of an [`spsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub struct Producer<T> {
    chan: Arc<Chan<T, SpscRing<T>>>,
    /// Makes the type `!Sync`: two threads must never push through one `&Producer`.
    _not_sync: PhantomData<Cell<()>>,
}

/// The receiving end of an [`spsc`](self) channel. `Send`, not `Sync`, not `Clone`.
pub struct Consumer<T> {
    chan: Arc<Chan<T, SpscRing<T>>>,
    /// Makes the type `!Sync`: two threads must never pop through one `&Consumer`.
    _not_sync: PhantomData<Cell<()>>,
}

impl<T> Producer<T> {
    sender_api!();
}
impl<T> Consumer<T> {
    receiver_api!();
    close_api!();
}
debug_endpoint!(Producer);
debug_endpoint!(Consumer);

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.chan.drop_sender();
    }
}
impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.chan.drop_receiver();
    }
}
