//! Reads of kernel structs through offsets taken from BTF (see `youwatch_common::KernelOffsets`).

use aya_ebpf::helpers::{bpf_probe_read_kernel, bpf_probe_read_kernel_buf};

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read<T>(base: *const u8, offset: u32) -> Result<T, i32> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel tolerates any address; a bad one returns an error.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }
}

/// Reads a pointer field at `base + offset`.
#[inline(always)]
pub fn read_ptr(base: *const u8, offset: u32) -> Result<*const u8, i32> {
    read::<*const u8>(base, offset)
}

/// Copies `dst.len()` bytes from `base + offset` in kernel memory.
#[inline(always)]
pub fn read_bytes(base: *const u8, offset: u32, dst: &mut [u8]) -> Result<(), i32> {
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: as in `read`.
    unsafe { bpf_probe_read_kernel_buf(base.wrapping_add(offset as usize), dst) }
}

/// `new_encode_dev(MKDEV(major, minor))`, the encoding of `/proc/<pid>/stat`'s tty_nr.
#[inline(always)]
pub fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}
