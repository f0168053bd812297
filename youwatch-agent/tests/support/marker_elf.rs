//! A program whose very first instruction shows whether it ran: a static x86-64 ELF of 34
//! bytes of code, no loader, no libc, whose entry point writes `X` to stdout and exits 0. If
//! nothing was written, not one instruction of it ran.

use std::{os::unix::fs::PermissionsExt, path::Path};

/// What the program writes.
pub const MARKER: &str = "X";

/// Whether this machine runs it (the code is x86-64).
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64")
}

/// Writes the program at `path`, executable.
pub fn write(path: &Path) {
    write_static(path, &CODE);
}

/// Writes a static x86-64 executable at `path` whose whole text is `code`.
pub fn write_static(path: &Path, code: &[u8]) {
    std::fs::write(path, static_elf(code))
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

const BASE: u64 = 0x40_0000;
const EHDR: usize = 64;
const PHDR: usize = 56;

#[rustfmt::skip]
const CODE: [u8; 34] = [
    0xb8, 0x01, 0x00, 0x00, 0x00,             // mov eax, 1 (write)
    0xbf, 0x01, 0x00, 0x00, 0x00,             // mov edi, 1 (stdout)
    0x48, 0x8d, 0x35, 0x10, 0x00, 0x00, 0x00, // lea rsi, [rip + 16] (the marker)
    0xba, 0x01, 0x00, 0x00, 0x00,             // mov edx, 1
    0x0f, 0x05,                               // syscall
    0xb8, 0x3c, 0x00, 0x00, 0x00,             // mov eax, 60 (exit)
    0x31, 0xff,                               // xor edi, edi
    0x0f, 0x05,                               // syscall
    b'X',
];

/// A static ELF executable: header, one loadable segment (the whole file), then `code`,
/// its entry point.
fn static_elf(code: &[u8]) -> Vec<u8> {
    let size = (EHDR + PHDR + code.len()) as u64;
    let mut elf = Vec::with_capacity(size as usize);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + (EHDR + PHDR) as u64).to_le_bytes()); // entry
    elf.extend_from_slice(&(EHDR as u64).to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [EHDR as u16, PHDR as u16, 1, 0, 0, 0] {
        elf.extend_from_slice(&half.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    elf.extend_from_slice(&5u32.to_le_bytes()); // R + X
    for word in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(code);
    elf
}
