//! Maps and read-only globals shared with user space (names in `youwatch_common::names`).

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use youwatch_common::{KernelOffsets, counter, limits};

/// Watched cgroup ids (normally pod-level cgroups). Value unused.
#[map]
pub static WATCHED: HashMap<u64, u8> = HashMap::with_max_entries(limits::MAX_WATCHED, 0);

/// Exec events for user space. User space may resize it before load.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(limits::DEFAULT_RING_BYTES, 0);

/// Entry 0 is 1 while the reader sleeps in poll(2) and needs a wake-up; written by user space.
#[map]
pub static READER: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU counters, indexed by `youwatch_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Struct field offsets from the running kernel's BTF, set by user space at load time.
// SAFETY: KernelOffsets is plain integers; all zeros is `ready == 0`, "not filled".
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = unsafe { core::mem::zeroed() };

/// The offsets as loaded. The volatile read keeps the compiler from folding the zeros above.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: OFFSETS is a plain static; user space rewrites it before the program loads.
    unsafe { core::ptr::read_volatile(&OFFSETS) }
}

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, not shared with another CPU; programs do not nest on one CPU
        // for the same tracepoint.
        unsafe { *slot += 1 };
    }
}
