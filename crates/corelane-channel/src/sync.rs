//! The one place every synchronization primitive of this crate comes from.
//!
//! Under `--cfg corelane_loom` the atomics, `Arc`, `Mutex`, `Condvar` and `UnsafeCell` are loom's, so
//! the loom models in `tests/loom.rs` explore every interleaving of the real ring code. Otherwise
//! they are `std`'s. No other module may import `std::sync` or `core::sync::atomic` directly
//! (one exception: `hint`'s cache of a CPUID answer, which is compiled out under loom).
//!
//! It also holds the asymmetric fence pair used by the wake-up protocol (see [`light_barrier`]).

#[cfg(corelane_loom)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};
#[cfg(not(corelane_loom))]
pub(crate) use std::sync::{
    atomic::{fence, AtomicBool, AtomicU32, AtomicUsize, Ordering},
    Arc, Condvar, Mutex, MutexGuard,
};

/// `UnsafeCell` with loom's closure API, so loom can track every access to a slot.
///
/// Outside loom it is `repr(transparent)`: a slice of them has the layout of a slice of `T`,
/// which the SPSC ring's batch copies rely on.
#[derive(Debug)]
#[cfg_attr(not(corelane_loom), repr(transparent))]
pub(crate) struct UnsafeCell<T>(
    #[cfg(corelane_loom)] loom::cell::UnsafeCell<T>,
    #[cfg(not(corelane_loom))] core::cell::UnsafeCell<T>,
);

impl<T> UnsafeCell<T> {
    pub(crate) fn new(value: T) -> Self {
        #[cfg(corelane_loom)]
        return Self(loom::cell::UnsafeCell::new(value));
        #[cfg(not(corelane_loom))]
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a raw pointer for reading.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        #[cfg(corelane_loom)]
        return self.0.with(f);
        #[cfg(not(corelane_loom))]
        f(self.0.get())
    }

    /// Runs `f` with a raw pointer for writing.
    #[inline(always)]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        #[cfg(corelane_loom)]
        return self.0.with_mut(f);
        #[cfg(not(corelane_loom))]
        f(self.0.get())
    }
}

/// One iteration of a busy wait. Under loom it yields, so the model checker can schedule the peer.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(corelane_loom)]
    loom::thread::yield_now();
    #[cfg(not(corelane_loom))]
    core::hint::spin_loop();
}

/// Gives the rest of this time slice to another thread.
pub(crate) fn yield_now() {
    #[cfg(corelane_loom)]
    loom::thread::yield_now();
    #[cfg(not(corelane_loom))]
    std::thread::yield_now();
}

/// The cheap half of the asymmetric fence pair, run by a side after it publishes (a send after its
/// tail store, a receive after its head store) and before it reads the peer's sleeper state: a
/// compiler fence, so the load stays after the publication in program order.
///
/// Paired with [`heavy_barrier`], run by a side that has raised a sleeper count (or a signal's
/// sticky flag) and is about to re-check the channel. Together they give the StoreLoad ordering
/// of two SeqCst fences (Dekker): either the publisher sees the sleeper and wakes it, or the
/// sleeper sees the publication and does not park. On Linux the heavy side is
/// `membarrier(PRIVATE_EXPEDITED)`, which runs a full barrier on every running thread of the
/// process, so this side needs no `mfence`. Where that is not available
/// ([`asymmetric_barriers`] is false) the compiler fence is not enough on its own: the publisher
/// must run `fence(SeqCst)` and load again before trusting what it read. A
/// [`Signal`](crate::wait::Signal) records which case holds in its state word, so its hot path
/// tests one word either way.
#[inline(always)]
pub(crate) fn light_barrier() {
    core::sync::atomic::compiler_fence(Ordering::SeqCst);
}

/// Whether [`light_barrier`] alone pairs with [`heavy_barrier`] (membarrier is in use). Decided
/// by [`init_barriers`], which must have run first. Always false under loom.
pub(crate) fn asymmetric_barriers() -> bool {
    #[cfg(all(target_os = "linux", not(corelane_loom)))]
    return membarrier::expedited();
    #[cfg(not(all(target_os = "linux", not(corelane_loom))))]
    false
}

/// The expensive half of the asymmetric fence pair; see [`light_barrier`].
pub(crate) fn heavy_barrier() {
    #[cfg(all(target_os = "linux", not(corelane_loom)))]
    if membarrier::expedited() {
        membarrier::run();
        return;
    }
    fence(Ordering::SeqCst);
}

/// Decides, once per process and before any channel exists, which fence pair is in use.
/// Every channel constructor calls this, so the decision happens-before any use of a channel.
pub(crate) fn init_barriers() {
    #[cfg(all(target_os = "linux", not(corelane_loom)))]
    membarrier::init();
}

#[cfg(all(target_os = "linux", not(corelane_loom)))]
mod membarrier {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Once;

    // Command numbers from <linux/membarrier.h>.
    const CMD_QUERY: libc::c_long = 0;
    const CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
    const CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

    /// Written once inside `INIT`; read (Relaxed) by every barrier afterwards. `Once` orders the
    /// write before every constructor that returns, and handing a channel to another thread orders
    /// it before that thread's reads.
    static EXPEDITED: AtomicBool = AtomicBool::new(false);
    static INIT: Once = Once::new();

    pub(super) fn init() {
        INIT.call_once(|| {
            // SAFETY: membarrier takes two integer arguments and touches no memory of ours.
            let mask = unsafe { libc::syscall(libc::SYS_membarrier, CMD_QUERY, 0) };
            if mask < 0 || mask & (CMD_PRIVATE_EXPEDITED | CMD_REGISTER_PRIVATE_EXPEDITED) == 0 {
                return;
            }
            // SAFETY: as above; registration only changes kernel-side process state.
            let registered =
                unsafe { libc::syscall(libc::SYS_membarrier, CMD_REGISTER_PRIVATE_EXPEDITED, 0) };
            EXPEDITED.store(registered == 0, Ordering::Relaxed);
        });
    }

    #[inline(always)]
    pub(super) fn expedited() -> bool {
        EXPEDITED.load(Ordering::Relaxed)
    }

    pub(super) fn run() {
        // SAFETY: as above. After a successful registration the kernel guarantees this command
        // succeeds; a failure would break the wake-up protocol, so it is fatal rather than ignored.
        let rc = unsafe { libc::syscall(libc::SYS_membarrier, CMD_PRIVATE_EXPEDITED, 0) };
        assert_eq!(
            rc, 0,
            "membarrier(PRIVATE_EXPEDITED) failed after registration"
        );
    }
}
