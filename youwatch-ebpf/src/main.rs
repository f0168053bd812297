//! YouWatch kernel programs. Built for `bpfel-unknown-none` by `youwatch-agent/build.rs`
//! (or `cargo xtask build-ebpf`) and embedded in the agent binary.
#![no_std]
#![no_main]

mod cwd;
mod enforce;
mod exec;
mod guard;
mod kernel;
mod lsm;
mod maps;
mod process;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
