//! tcpfront's XDP program: parse, classify and count every frame at the NIC.
// On the host (clippy, `cargo check --workspace`) this is an ordinary empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod packet;
mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use tcp_common::{Counter, classify};

use aya_log_ebpf::debug;
use parse::NotTcp;

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[inline(always)]
pub(crate) fn count(c: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(c.index()) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += 1 };
    }
}

#[xdp]
pub fn tcpfront(ctx: XdpContext) -> u32 {
    count(Counter::Frames);
    let verdict = match parse::parse(&ctx) {
        Ok(seg) => {
            count(Counter::Tcp);
            count(classify::classify(seg.flags));
            count_flags(seg.flags);
            xdp_action::XDP_PASS
        }
        Err(NotTcp::Pass(reason)) => {
            count(reason);
            xdp_action::XDP_PASS
        }
        Err(NotTcp::Drop(reason)) => {
            count(reason);
            debug!(&ctx, "dropped a malformed frame ({})", reason.name());
            xdp_action::XDP_DROP
        }
    };
    count(match verdict {
        xdp_action::XDP_PASS => Counter::VerdictPass,
        xdp_action::XDP_DROP => Counter::VerdictDrop,
        xdp_action::XDP_TX => Counter::VerdictTx,
        xdp_action::XDP_REDIRECT => Counter::VerdictRedirect,
        _ => Counter::VerdictAborted,
    });
    verdict
}

#[inline(always)]
fn count_flags(flags: u8) {
    if flags & classify::PSH != 0 {
        count(Counter::FlagPsh);
    }
    if flags & classify::URG != 0 {
        count(Counter::FlagUrg);
    }
    if flags & classify::ECE != 0 {
        count(Counter::FlagEce);
    }
    if flags & classify::CWR != 0 {
        count(Counter::FlagCwr);
    }
}

/// A pass-through program for the *peer* of a veth that carries tcpfront: veth only delivers
/// XDP_TX frames to a peer that has an XDP program attached.
#[xdp]
pub fn tcpfront_peer_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
