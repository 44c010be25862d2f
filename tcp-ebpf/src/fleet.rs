//! The fleet hand-off: a segment of a flow this node does not have goes on to the next node
//! of the ring, which may have it (stateless ECMP moves established flows between nodes
//! whenever one joins or leaves). Layout in `tcp_common::maps::FLEET_ETHERTYPE`; the idea is
//! Beamer's and GLB's "second chance", kept at layer 2 on the segment the nodes share.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::generated::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_head},
    programs::XdpContext,
};
use tcp_common::{
    Counter,
    bpf_mem::{ld8, ld16, ld32, st16, st32},
    maps::{Config, FLEET_ETHERTYPE, FLEET_HANDOFF_LEN, FLEET_KIND_HELLO},
};

use crate::{FLEET_NEXT, FLEET_NODES, FLEET_RING, count::Counts, packet};

/// The ethertype as it lies in memory.
const ETHERTYPE_MEM: u64 = FLEET_ETHERTYPE.to_be() as u64;
/// The hand-off frame's bytes up to and including the carried frame's ethertype.
const HANDOFF_ETH_LEN: usize = 14 + FLEET_HANDOFF_LEN;

/// Where a frame comes from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// From the router (or anyone but a fleet node).
    Direct,
    /// Handed over by another node, after visiting this many nodes.
    HandedOff(u8),
}

impl Arrival {
    #[inline(always)]
    fn visited(self) -> u8 {
        match self {
            Arrival::Direct => 0,
            Arrival::HandedOff(n) => n,
        }
    }
}

/// Recognises a hand-off frame and strips its header in place. `Err(verdict)`: not to be
/// processed further (not from a node of the fleet, or malformed).
#[inline(always)]
pub fn receive(ctx: &XdpContext, config: &Config, c: Counts) -> Result<Arrival, u32> {
    let Some(p) = packet::at::<14>(ctx, 0) else {
        return Ok(Arrival::Direct);
    };
    // SAFETY: 14 bytes checked.
    if unsafe { ld16::<12>(p) } != ETHERTYPE_MEM {
        return Ok(Arrival::Direct);
    }
    if config.fleet_size == 0 {
        c.add(Counter::DropFleetNotNode);
        return Err(xdp_action::XDP_DROP);
    }
    let Some(p) = packet::at::<HANDOFF_ETH_LEN>(ctx, 0) else {
        c.add(Counter::DropTruncated);
        return Err(xdp_action::XDP_DROP);
    };
    // SAFETY: 24 bytes checked; every load and store below is inside them.
    let visited = unsafe {
        let src = ld32::<6>(p) | ld16::<10>(p) << 32;
        // SAFETY: read-only lookup of plain data.
        let Some(&position) = FLEET_NODES.get(&src) else {
            c.add(Counter::DropFleetNotNode);
            return Err(xdp_action::XDP_DROP);
        };
        if ld8::<15>(p) as u8 == FLEET_KIND_HELLO {
            if let Some(node) = FLEET_RING.get_ptr_mut(position) {
                // A plain store: only the time of some recent hello matters.
                (*node).last_seen_ns = bpf_ktime_get_coarse_ns();
            }
            c.add(Counter::FleetHello);
            return Err(xdp_action::XDP_DROP);
        }
        let visited = ld16::<14>(p) as u8;
        // The frame as the router sent it, addressed to us: our MAC (its destination) right
        // before the router's MAC (already at 16..22), then the carried ethertype.
        st32::<10>(p, ld32::<0>(p));
        st16::<14>(p, ld16::<4>(p));
        visited
    };
    // SAFETY: shrinking the head of a frame we own; pointers are re-derived afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, FLEET_HANDOFF_LEN as i32) } != 0 {
        c.add(Counter::DropResize);
        return Err(xdp_action::XDP_DROP);
    }
    c.add(Counter::FleetReceived);
    Ok(Arrival::HandedOff(visited))
}

/// Hands the frame to the next live node of the ring, unless every other node has seen it
/// or none is alive (then `None`: the caller drops or resets it). The frame is untouched
/// until the head grows.
#[inline(always)]
pub fn hand_off(ctx: &XdpContext, config: &Config, from: Arrival, c: Counts) -> Option<u32> {
    let visited = from.visited();
    if u32::from(visited) + 1 >= u32::from(config.fleet_size) {
        if from != Arrival::Direct {
            c.add(Counter::FleetUnclaimed);
        }
        return None;
    }
    // User space keeps the first live node after this one here (`fleet::liveness`).
    let next = match FLEET_NEXT.get(0) {
        Some(n) if n.live != 0 => n.mac,
        _ => {
            c.add(Counter::FleetNoLiveNode);
            return None;
        }
    };
    let p = packet::at::<12>(ctx, 0)?;
    // SAFETY: 12 bytes checked: our MAC, the frame's destination.
    let (own_lo, own_hi) = unsafe { (ld32::<0>(p), ld16::<4>(p)) };
    // SAFETY: growing the head of a frame we own into its headroom.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(FLEET_HANDOFF_LEN as i32)) } != 0 {
        c.add(Counter::DropResize);
        return Some(xdp_action::XDP_DROP);
    }
    let Some(p) = packet::at::<HANDOFF_ETH_LEN>(ctx, 0) else {
        return Some(xdp_action::XDP_DROP);
    };
    // The old frame now starts at 10: its source MAC (the router's) is at 16..22 and its
    // ethertype at 22..24, where the header wants them; bytes 0..16 are written here.
    // SAFETY: 24 bytes checked.
    unsafe {
        st32::<0>(
            p,
            u64::from(u32::from_le_bytes([next[0], next[1], next[2], next[3]])),
        );
        st16::<4>(p, u64::from(u16::from_le_bytes([next[4], next[5]])));
        st32::<6>(p, own_lo);
        st16::<10>(p, own_hi);
        st16::<12>(p, ETHERTYPE_MEM);
        st16::<14>(p, u64::from(visited) + 1);
    }
    c.add(Counter::FleetHandedOff);
    Some(xdp_action::XDP_TX)
}
