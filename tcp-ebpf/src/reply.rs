//! Turning the received segment, in place, into our answer to it (a SYN-ACK or a RST) for
//! XDP_TX: swap MACs, addresses and ports, rebuild IP and TCP headers, fix checksums.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use tcp_common::maps::FAMILY_V4;

use crate::{
    csum,
    packet::ptr_at,
    parse::{IPV4_MIN_HLEN, IPV6_HLEN, Segment},
};

const TTL: u8 = 64;
/// Ethernet header with two VLAN tags.
const L2_MAX: usize = 22;

/// What to send back.
pub struct Reply<const TCP_HLEN: usize> {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Options (TCP_HLEN - 20 bytes), already padded.
    pub options: [u8; 20],
}

pub struct ResizeFailed;

/// Rewrites the frame into `reply`. The IPv4 header must have no options (`ip_hlen == 20`),
/// so that the TCP header stays where it is.
#[inline(always)]
pub fn write<const TCP_HLEN: usize>(
    ctx: &XdpContext,
    seg: &Segment,
    src: &[u8; 16],
    dst: &[u8; 16],
    reply: &Reply<TCP_HLEN>,
) -> Result<(), ResizeFailed> {
    // The frame becomes exactly headers: drop any payload, or grow for our options.
    let want = seg.l4_off + TCP_HLEN;
    let have = ctx.data_end() - ctx.data();
    let delta = want as i64 - have as i64;
    if delta < 0 {
        // SAFETY: helper call on our own context; pointers are re-derived afterwards.
        if unsafe { bpf_xdp_adjust_tail(ctx.ctx, delta as i32) } != 0 {
            return Err(ResizeFailed);
        }
    } else if delta > 0 {
        // Grow at the head: drivers keep XDP_PACKET_HEADROOM there, while tailroom is often
        // missing (veth frames built from an skb). Every header is rewritten below anyway;
        // only the link-layer header (MACs and VLAN tags) must move with the frame start.
        let l2 = ptr_at::<[u8; L2_MAX]>(ctx, 0).ok_or(ResizeFailed)?;
        // SAFETY: ptr_at checked the bytes (a TCP frame is longer than L2_MAX).
        let saved = unsafe { *l2 };
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) } != 0 {
            return Err(ResizeFailed);
        }
        let l2 = ptr_at::<[u8; L2_MAX]>(ctx, 0).ok_or(ResizeFailed)?;
        // SAFETY: re-derived and checked after the adjustment.
        unsafe { *l2 = saved };
    }

    let eth = ptr_at::<[u8; 12]>(ctx, 0).ok_or(ResizeFailed)?;
    // SAFETY: ptr_at checked 12 bytes; swap destination and source MAC.
    unsafe {
        let mut macs = *eth;
        macs.rotate_left(6);
        *eth = macs;
    }

    // Pseudo-header sum (RFC 9293 §3.1): addresses, protocol, TCP length. The reply goes
    // from the segment's destination to its source.
    let mut pseudo = 6u32 + TCP_HLEN as u32;
    if seg.family == FAMILY_V4 {
        let mut ip = [0u8; IPV4_MIN_HLEN];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((IPV4_MIN_HLEN + TCP_HLEN) as u16).to_be_bytes());
        ip[6] = 0x40; // DF
        ip[8] = TTL;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&dst[..4]);
        ip[16..20].copy_from_slice(&src[..4]);
        let c = csum::finish(csum::add_bytes(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let p = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, seg.l3_off).ok_or(ResizeFailed)?;
        // SAFETY: ptr_at checked the 20 bytes.
        unsafe { *p = ip };
        let mut a = [0u8; 8];
        a[..4].copy_from_slice(&src[..4]);
        a[4..].copy_from_slice(&dst[..4]);
        pseudo = csum::add_bytes(&a, pseudo);
    } else {
        let mut ip = [0u8; IPV6_HLEN];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&(TCP_HLEN as u16).to_be_bytes());
        ip[6] = 6;
        ip[7] = TTL;
        ip[8..24].copy_from_slice(dst);
        ip[24..40].copy_from_slice(src);
        let p = ptr_at::<[u8; IPV6_HLEN]>(ctx, seg.l3_off).ok_or(ResizeFailed)?;
        // SAFETY: ptr_at checked the 40 bytes.
        unsafe { *p = ip };
        pseudo = csum::add_bytes(src, pseudo);
        pseudo = csum::add_bytes(dst, pseudo);
    }

    let mut th = [0u8; TCP_HLEN];
    th[0..2].copy_from_slice(&seg.dst_port.to_be_bytes());
    th[2..4].copy_from_slice(&seg.src_port.to_be_bytes());
    th[4..8].copy_from_slice(&reply.seq.to_be_bytes());
    th[8..12].copy_from_slice(&reply.ack.to_be_bytes());
    th[12] = ((TCP_HLEN / 4) as u8) << 4;
    th[13] = reply.flags;
    th[14..16].copy_from_slice(&reply.window.to_be_bytes());
    let mut i = 20;
    while i < TCP_HLEN {
        th[i] = reply.options[i - 20];
        i += 1;
    }
    let c = csum::finish(csum::add_bytes(&th, pseudo));
    th[16..18].copy_from_slice(&c.to_be_bytes());
    let p = ptr_at::<[u8; TCP_HLEN]>(ctx, seg.l4_off).ok_or(ResizeFailed)?;
    // SAFETY: ptr_at checked the header.
    unsafe { *p = th };
    Ok(())
}
