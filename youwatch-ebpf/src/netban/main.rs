//! YouWatch node ban: drops packets from banned source CIDRs on a node's ingress path, as a
//! TC classifier (TCX or clsact) or an XDP program. Its own object (`youwatch-netban`), so
//! the agent loads it only when the node ban is enabled and never with the exec sensor's maps.
#![no_std]
#![no_main]

mod maps;
mod packet;
mod tc;
mod verdict;
mod xdp;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
