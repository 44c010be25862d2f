//! Turning the received segment, in place, into our answer to it (a SYN-ACK or a RST) for
//! XDP_TX: swap MACs, addresses and ports, rebuild IP and TCP headers, fix checksums.
//!
//! Everything the answer needs from the segment is read first, then the frame is resized to
//! exactly the answer's headers, then every header is written with word stores and summed
//! as it is written.

use aya_ebpf::{
    helpers::generated::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use tcp_common::{
    bpf_mem::{ld16, ld32, ld64, st16, st32, st64},
    maps::FAMILY_V4,
};

use crate::{
    csum, packet,
    parse::{IPV4_MIN_HLEN, IPV6_HLEN, Segment},
};

const TTL: u8 = 64;

/// The TCP header to send.
pub struct TcpOut {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    /// Option words in host order (`0x0204_05b4` is MSS 1460); the first `n_opts` are sent.
    pub opts: [u32; 5],
    pub n_opts: usize,
}

pub struct ResizeFailed;

/// What the answer needs from the segment, read before the frame is resized: MACs, the
/// addresses (IPv4 in `addr[0]` and `addr[1]`), the ports, as they lie in memory.
struct Received {
    macs: (u64, u64, u64, u64),
    addr: [u64; 4],
    ports: u64,
}

#[inline(always)]
fn read(ctx: &XdpContext, seg: &Segment) -> Option<Received> {
    let eth = packet::at::<12>(ctx, 0)?;
    let t = packet::at::<4>(ctx, seg.l4_off)?;
    // SAFETY: every load is inside bytes checked by `packet::at`.
    unsafe {
        let macs = (
            ld32::<0>(eth),
            ld16::<4>(eth),
            ld16::<6>(eth),
            ld32::<8>(eth),
        );
        let addr = if seg.family == FAMILY_V4 {
            let ip = packet::at::<IPV4_MIN_HLEN>(ctx, seg.l3_off)?;
            [ld32::<12>(ip), ld32::<16>(ip), 0, 0]
        } else {
            let ip = packet::at::<IPV6_HLEN>(ctx, seg.l3_off)?;
            [
                ld64::<8>(ip),
                ld64::<16>(ip),
                ld64::<24>(ip),
                ld64::<32>(ip),
            ]
        };
        Some(Received {
            macs,
            addr,
            ports: ld32::<0>(t),
        })
    }
}

/// Makes the frame exactly `want` bytes long: cut at the tail (payload, Ethernet padding),
/// or grow at the tail where the driver left room, else at the head (frames built from an
/// skb, as on veth, often have no tailroom), moving the link-layer header along.
#[inline(always)]
fn resize(ctx: &XdpContext, want: usize) -> Result<(), ResizeFailed> {
    let have = packet::len(ctx);
    if want == have {
        return Ok(());
    }
    let delta = want as i64 - have as i64;
    // SAFETY: helper calls on our own context; every pointer is re-derived afterwards.
    unsafe {
        if bpf_xdp_adjust_tail(ctx.ctx, delta as i32) == 0 {
            return Ok(());
        }
        if delta < 0 {
            return Err(ResizeFailed);
        }
        // Ethernet and up to two tags fit in 24 bytes; everything after is rewritten.
        let p = packet::at::<24>(ctx, 0).ok_or(ResizeFailed)?;
        let (a, b, c) = (ld64::<0>(p), ld64::<8>(p), ld64::<16>(p));
        if bpf_xdp_adjust_head(ctx.ctx, -(delta as i32)) != 0 {
            return Err(ResizeFailed);
        }
        let p = packet::at::<24>(ctx, 0).ok_or(ResizeFailed)?;
        st64::<0>(p, a);
        st64::<8>(p, b);
        st64::<16>(p, c);
    }
    Ok(())
}

/// Rewrites the frame into the answer `out`. The IPv4 header must have no options
/// (`ip_hlen == 20`), so that the TCP header stays where it is.
#[inline(always)]
pub fn write(ctx: &XdpContext, seg: &Segment, out: &TcpOut) -> Result<(), ResizeFailed> {
    let r = read(ctx, seg).ok_or(ResizeFailed)?;
    let tcp_hlen = 20 + 4 * out.n_opts;
    resize(ctx, seg.l4_off + tcp_hlen)?;

    let eth = packet::at::<12>(ctx, 0).ok_or(ResizeFailed)?;
    let (d0, d4, s0, s2) = r.macs;
    // SAFETY (all stores below): into bytes checked by `packet::at` after the resize.
    unsafe {
        st16::<0>(eth, s0);
        st32::<2>(eth, s2);
        st32::<6>(eth, d0);
        st16::<10>(eth, d4);
    }

    // The reply goes from the segment's destination to its source; the pseudo-header's
    // address sum is the same either way.
    let [a0, a1, a2, a3] = r.addr;
    let pseudo_addrs;
    if seg.family == FAMILY_V4 {
        let ip = packet::at::<IPV4_MIN_HLEN>(ctx, seg.l3_off).ok_or(ResizeFailed)?;
        let total = ((IPV4_MIN_HLEN + tcp_hlen) as u16).to_be_bytes();
        let w0 = u64::from(u32::from_ne_bytes([0x45, 0, total[0], total[1]]));
        let w1 = u64::from(u32::from_ne_bytes([0, 0, 0x40, 0])); // DF
        let w2 = u64::from(u32::from_ne_bytes([TTL, 6, 0, 0]));
        unsafe {
            st32::<0>(ip, w0);
            st32::<4>(ip, w1);
            st32::<8>(ip, w2);
            st32::<12>(ip, a1);
            st32::<16>(ip, a0);
            st16::<10>(ip, csum::checksum(w0 + w1 + w2 + a0 + a1));
        }
        pseudo_addrs = a0 + a1 + u64::from(u16::from_ne_bytes([0, 6]));
    } else {
        let ip = packet::at::<IPV6_HLEN>(ctx, seg.l3_off).ok_or(ResizeFailed)?;
        let len = (tcp_hlen as u16).to_be_bytes();
        unsafe {
            st32::<0>(ip, u64::from(u32::from_ne_bytes([0x60, 0, 0, 0])));
            st32::<4>(ip, u64::from(u32::from_ne_bytes([len[0], len[1], 6, TTL])));
            st64::<8>(ip, a2);
            st64::<16>(ip, a3);
            st64::<24>(ip, a0);
            st64::<32>(ip, a1);
        }
        let halves = |x: u64| (x & 0xffff_ffff) + (x >> 32);
        pseudo_addrs = halves(a0)
            + halves(a1)
            + halves(a2)
            + halves(a3)
            + u64::from(u32::from_ne_bytes([0, 0, 0, 6]));
    }
    // RFC 9293 §3.1: the pseudo-header's TCP length (IPv6 puts it in 32 bits; the sum of the
    // 16-bit value is the same).
    let pseudo = pseudo_addrs + u64::from((tcp_hlen as u16).to_be());
    // Ports swapped: the two 16-bit halves of the word trade places.
    let ports = u64::from((r.ports as u32).rotate_left(16));
    match out.n_opts {
        0 => write_tcp::<20>(ctx, seg, out, ports, pseudo),
        1 => write_tcp::<24>(ctx, seg, out, ports, pseudo),
        2 => write_tcp::<28>(ctx, seg, out, ports, pseudo),
        3 => write_tcp::<32>(ctx, seg, out, ports, pseudo),
        4 => write_tcp::<36>(ctx, seg, out, ports, pseudo),
        _ => write_tcp::<40>(ctx, seg, out, ports, pseudo),
    }
}

/// The TCP header of `HLEN` bytes with its checksum.
#[inline(always)]
fn write_tcp<const HLEN: usize>(
    ctx: &XdpContext,
    seg: &Segment,
    out: &TcpOut,
    ports: u64,
    pseudo: u64,
) -> Result<(), ResizeFailed> {
    let t = packet::at::<HLEN>(ctx, seg.l4_off).ok_or(ResizeFailed)?;
    let seq = u64::from(out.seq.to_be());
    let ack = u64::from(out.ack.to_be());
    let win = out.window.to_be_bytes();
    let w3 = u64::from(u32::from_ne_bytes([
        ((HLEN / 4) as u8) << 4,
        out.flags,
        win[0],
        win[1],
    ]));
    let mut sum = pseudo + ports + seq + ack + w3;
    // SAFETY: HLEN bytes checked at `t`.
    unsafe {
        st32::<0>(t, ports);
        st32::<4>(t, seq);
        st32::<8>(t, ack);
        st32::<12>(t, w3);
        st32::<16>(t, 0); // checksum (below) and urgent pointer
        let mut i = 0;
        while i < (HLEN - 20) / 4 {
            let w = u64::from(out.opts[i].to_be());
            st32::<0>(t.add(20 + 4 * i), w);
            sum += w;
            i += 1;
        }
        st16::<16>(t, csum::checksum(sum));
    }
    Ok(())
}
