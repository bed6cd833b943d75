//! Cache hints for the SPSC ring: ask for a slot line before the access that needs it, so the
//! line's transfer from the peer core overlaps the work before that access.
//!
//! A receiving side prefetches for reading (`prefetcht0`): the line holds values the peer has
//! published. A sending side prefetches for writing (`prefetchw`, AMD's 3DNow! prefetch, on Intel
//! since Broadwell): the line holds slots the peer has freed, and taking it exclusive ahead of
//! the stores spares each store an ownership request. A plain read prefetch does not do that job
//! (measured: no gain on the sending side). `prefetchw` is used only where CPUID reports it
//! ([`WriteHint::detect`]); elsewhere a write hint does nothing.
//!
//! Hints never fault and change no program state. On other architectures, and under loom (whose
//! models need no cache), every hint is a no-op.

/// Asks the cache for the line holding `p`, to be read soon.
#[inline(always)]
pub(crate) fn prefetch_read(p: *const u8) {
    #[cfg(all(target_arch = "x86_64", not(corelane_loom)))]
    // SAFETY: a prefetch only hints the cache: it never faults, whatever `p` is, and changes no
    // program state.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(all(target_arch = "x86_64", not(corelane_loom))))]
    let _ = p;
}

/// CPUID leaf 0x8000_0001, ECX bit 8: PREFETCHW (3DNowPrefetch), valid when the highest extended
/// leaf (leaf 0x8000_0000, EAX) reaches it.
#[cfg(all(target_arch = "x86_64", not(corelane_loom)))]
#[allow(unused_unsafe)] // `__cpuid` is a safe fn on current toolchains, an unsafe one at our MSRV
fn has_prefetchw() -> bool {
    use core::arch::x86_64::__cpuid;
    // SAFETY: CPUID exists on every x86_64 CPU and only reads identification data.
    let max = unsafe { __cpuid(0x8000_0000) }.eax;
    // SAFETY: as above; leaf 0x8000_0001 exists (checked against `max`).
    max >= 0x8000_0001 && unsafe { __cpuid(0x8000_0001) }.ecx & (1 << 8) != 0
}

/// Whether this CPU has `prefetchw`, decided once ([`WriteHint::detect`]) and kept by a sending
/// side so its hot path tests a byte it owns.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WriteHint(bool);

impl WriteHint {
    /// Reads CPUID once per process (a CPUID costs a microsecond in a VM: a VM exit), then the
    /// cached answer.
    pub(crate) fn detect() -> Self {
        #[cfg(all(target_arch = "x86_64", not(corelane_loom)))]
        {
            // A cache of a CPU fact, outside every loom model (this code is compiled out there),
            // hence std's `OnceLock` rather than the `sync` facade.
            static HAS_PREFETCHW: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            Self(*HAS_PREFETCHW.get_or_init(has_prefetchw))
        }
        #[cfg(not(all(target_arch = "x86_64", not(corelane_loom))))]
        Self(false)
    }

    /// Asks the cache for the line holding `p`, exclusive, to be written soon; nothing if this
    /// CPU has no `prefetchw`.
    #[inline(always)]
    pub(crate) fn prefetch(self, p: *const u8) {
        #[cfg(all(target_arch = "x86_64", not(corelane_loom)))]
        if self.0 {
            // SAFETY: `prefetchw` exists on this CPU (CPUID said so in `detect`, the only maker of
            // a true `WriteHint`); like every prefetch it never faults, whatever `p` is, and
            // changes no program state (`readonly`: it writes no memory).
            unsafe {
                core::arch::asm!(
                    "prefetchw [{p}]",
                    p = in(reg) p,
                    options(nostack, preserves_flags, readonly)
                )
            };
        }
        #[cfg(not(all(target_arch = "x86_64", not(corelane_loom))))]
        let _ = (self, p);
    }
}
