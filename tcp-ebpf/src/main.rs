//! tcpfront's XDP program: parse, classify and count every frame at the NIC; answer SYNs to
//! protected ports with SYN cookies; hand cookie-validated flows to user space over AF_XDP.
// On the host (clippy, `cargo check --workspace`) this is an ordinary empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod cookie;
mod csum;
mod frontdoor;
mod options;
mod packet;
mod parse;
mod reply;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use tcp_common::{
    Counter, MAX_FLOWS, MAX_LISTEN, MAX_QUEUES, classify,
    maps::{CFG_ENABLED, CFG_SCRUB_ALL, Config, FlowKey, FlowValue, ListenKey},
};

use parse::NotTcp;

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);
#[map(name = "CONFIG")]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map(name = "LISTEN")]
static LISTEN: HashMap<ListenKey, u32> = HashMap::with_max_entries(MAX_LISTEN, 0);
#[map(name = "FLOWS")]
static FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::with_max_entries(MAX_FLOWS, 0);
#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

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
    let verdict = process(&ctx);
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
fn process(ctx: &XdpContext) -> u32 {
    let seg = match parse::parse(ctx) {
        Ok(seg) => seg,
        Err(NotTcp::Pass(reason)) => {
            count(reason);
            return xdp_action::XDP_PASS;
        }
        Err(NotTcp::Drop(reason)) => {
            // The kernel would drop these too; counting them here is the point.
            count(reason);
            debug!(ctx, "dropped a malformed frame ({})", reason.name());
            return xdp_action::XDP_DROP;
        }
    };
    count(Counter::Tcp);
    let class = classify::classify(seg.flags);
    count(class);
    count_flags(seg.flags);

    let config = CONFIG.get(0).copied().unwrap_or_default();
    if config.flags & CFG_ENABLED == 0 {
        return xdp_action::XDP_PASS;
    }
    let Some((src, dst)) = parse::addresses(ctx, &seg) else {
        count(Counter::DropTruncated);
        return xdp_action::XDP_DROP;
    };
    let protected = is_protected(seg.family, &dst, seg.dst_port);
    if classify::is_illegal(class) {
        if protected || config.flags & CFG_SCRUB_ALL != 0 {
            count(Counter::DropIllegalFlags);
            return xdp_action::XDP_DROP;
        }
        return xdp_action::XDP_PASS;
    }
    if !protected {
        return xdp_action::XDP_PASS;
    }
    let key = FlowKey {
        src,
        dst,
        src_port: seg.src_port,
        dst_port: seg.dst_port,
        family: seg.family,
        _pad: [0; 3],
    };
    frontdoor::handle(ctx, &seg, class, &config, &key)
}

/// Whether `dst:port` is a protected listen address (exact, or the family's wildcard).
#[inline(always)]
fn is_protected(family: u8, dst: &[u8; 16], port: u16) -> bool {
    let mut key = ListenKey {
        addr: *dst,
        port,
        family,
        _pad: 0,
    };
    // SAFETY: read-only lookups of plain data.
    if unsafe { LISTEN.get(key) }.is_some() {
        return true;
    }
    key.addr = [0; 16];
    unsafe { LISTEN.get(key) }.is_some()
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
