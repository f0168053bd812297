//! The XDP program: the same verdict before the kernel allocates an skb (cheapest drops;
//! one XDP program per interface).

use aya_ebpf::{
    bindings::xdp_action::{XDP_DROP, XDP_PASS},
    macros::xdp,
    programs::XdpContext,
};

use crate::{
    packet::{Parsed, parse},
    verdict::{Verdict, decide},
};

#[xdp]
pub fn netban_xdp(ctx: XdpContext) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    match parse(ctx.data(), ctx.data_end()) {
        Parsed::Ip(packet) if decide(&packet, ifindex) == Verdict::Drop => XDP_DROP,
        _ => XDP_PASS,
    }
}
