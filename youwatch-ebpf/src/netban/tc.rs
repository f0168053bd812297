//! The TC classifier on ingress (TCX link or clsact filter, direct action).

use aya_ebpf::{bindings::TC_ACT_SHOT, macros::classifier, programs::TcContext};

use crate::{
    packet::{PULL_LEN, Parsed, parse},
    verdict::{Verdict, decide},
};

/// Continue: the next TCX program or tc filter decides, else the packet passes. Returning
/// TC_ACT_OK instead would end a TCX chain and skip the programs after ours (a CNI's).
const TC_ACT_UNSPEC: i32 = -1;

#[classifier]
pub fn netban_tc(ctx: TcContext) -> i32 {
    // SAFETY: the context of a classifier is a valid __sk_buff.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let mut parsed = parse(ctx.data(), ctx.data_end());
    if matches!(parsed, Parsed::Short) {
        // Headers outside the linear area: make them readable once, then look again.
        let len = if ctx.len() < PULL_LEN { ctx.len() } else { PULL_LEN };
        if ctx.pull_data(len).is_ok() {
            parsed = parse(ctx.data(), ctx.data_end());
        }
    }
    match parsed {
        Parsed::Ip(packet) if decide(&packet, ifindex) == Verdict::Drop => TC_ACT_SHOT,
        _ => TC_ACT_UNSPEC,
    }
}
