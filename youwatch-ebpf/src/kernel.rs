//! Reads of kernel structs through offsets taken from BTF (see `youwatch_common::KernelOffsets`).

use aya_ebpf::helpers::{
    bpf_probe_read_kernel, bpf_probe_read_kernel_buf, bpf_probe_read_user_buf,
};

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

/// Copies the user memory `start..end` into `dst` (at most `N` bytes, `N` a power of two).
/// Returns the bytes copied and whether the area was longer.
#[inline(always)]
pub fn copy_user_area<const N: usize>(
    start: u64,
    end: u64,
    dst: &mut [u8; N],
) -> Result<(u32, bool), i32> {
    if end <= start {
        return Ok((0, false));
    }
    let mut len = end - start;
    let cut = len > N as u64;
    if cut {
        len = N as u64;
    }
    // In 1..=N in a form the verifier can bound.
    let n = (((len - 1) & (N as u64 - 1)) + 1) as usize;
    // SAFETY: user memory of the current task; a fault returns an error.
    unsafe { bpf_probe_read_user_buf(start as *const u8, &mut dst[..n]) }?;
    Ok((n as u32, cut))
}
