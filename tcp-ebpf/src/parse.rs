//! Header parsing: Ethernet (+ up to two VLAN tags), IPv4/IPv6, the fixed TCP header.
//!
//! Lengths come from the IP header, not from the frame: a frame may carry Ethernet padding
//! after the IP packet (a real wire pads to 60 bytes), which is not TCP data (RFC 791 total
//! length, RFC 8200 §3 payload length). An IP length longer than the frame is a truncated
//! frame.

use aya_ebpf::programs::XdpContext;
use tcp_common::{
    Counter,
    bpf_mem::{ld8, ld16, ld32},
    maps::{FAMILY_V4, FAMILY_V6},
};

use crate::{count::Counts, packet};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
/// Ethertypes as they lie in memory (network order), so a native load compares directly.
const ETH_P_IPV4: u64 = 0x0800u16.to_be() as u64;
const ETH_P_IPV6: u64 = 0x86ddu16.to_be() as u64;
const ETH_P_8021Q: u64 = 0x8100u16.to_be() as u64;
const ETH_P_8021AD: u64 = 0x88a8u16.to_be() as u64;
/// IPv4 MF flag and fragment offset, in memory order.
const IPV4_FRAG_MASK: u64 = 0x3fffu16.to_be() as u64;
const IPPROTO_TCP: u64 = 6;
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_MIN_HLEN: usize = 20;

/// Where the headers of a TCP segment are, and the fields every path needs.
#[derive(Clone, Copy)]
pub struct Segment {
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    pub l3_off: usize,
    /// IPv4 header length (20..=60); 40 for IPv6.
    pub ip_hlen: usize,
    pub l4_off: usize,
    /// TCP header length from the data offset, in bytes (20..=60).
    pub tcp_hlen: usize,
    /// TCP header and payload, from the IP length; at least `tcp_hlen`.
    pub tcp_len: usize,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// Why a frame is not a TCP segment we look at.
#[derive(Clone, Copy)]
pub enum NotTcp {
    /// Not ours to judge: pass it and count the reason.
    Pass(Counter),
    /// Malformed: drop it and count the reason.
    Drop(Counter),
}

#[inline(always)]
pub fn parse(ctx: &XdpContext, c: Counts) -> Result<Segment, NotTcp> {
    let truncated = NotTcp::Drop(Counter::DropTruncated);
    let eth = packet::at::<ETH_HLEN>(ctx, 0).ok_or(NotTcp::Pass(Counter::NonIp))?;
    // SAFETY: 14 bytes checked.
    let mut ethertype = unsafe { ld16::<12>(eth) };
    let mut l3_off = ETH_HLEN;
    // At most two tags (802.1ad outer + 802.1Q inner); unrolled so the verifier sees no loop.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let p =
            packet::at::<{ ETH_HLEN + VLAN_HLEN }>(ctx, 0).ok_or(NotTcp::Pass(Counter::NonIp))?;
        // SAFETY: 18 bytes checked.
        ethertype = unsafe { ld16::<16>(p) };
        l3_off += VLAN_HLEN;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let p = packet::at::<{ ETH_HLEN + 2 * VLAN_HLEN }>(ctx, 0)
                .ok_or(NotTcp::Pass(Counter::NonIp))?;
            // SAFETY: 22 bytes checked.
            ethertype = unsafe { ld16::<20>(p) };
            l3_off += VLAN_HLEN;
        }
        c.add(Counter::Vlan);
    }

    let frame_len = packet::len(ctx);
    let (family, ip_hlen, tcp_len) = if ethertype == ETH_P_IPV4 {
        c.add(Counter::Ipv4);
        let ip = packet::at::<IPV4_MIN_HLEN>(ctx, l3_off).ok_or(truncated)?;
        // SAFETY: 20 bytes checked.
        let (ver_ihl, proto, frag, total) = unsafe {
            (
                ld8::<0>(ip),
                ld8::<9>(ip),
                ld16::<6>(ip),
                u16::from_be(ld16::<2>(ip) as u16),
            )
        };
        let ihl = (ver_ihl & 0x0f) as usize * 4;
        if ver_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
            return Err(NotTcp::Drop(Counter::DropBadIhl));
        }
        // The whole header, options included, must be in the frame.
        packet::at::<1>(ctx, l3_off + ihl - 1).ok_or(NotTcp::Drop(Counter::DropTruncated))?;
        if proto != IPPROTO_TCP {
            return Err(NotTcp::Pass(Counter::NonTcp));
        }
        // MF set or a non-zero offset: the kernel reassembles; we never parse fragments.
        if frag & IPV4_FRAG_MASK != 0 {
            return Err(NotTcp::Pass(Counter::Ipv4Fragment));
        }
        let total = total as usize;
        if total < ihl + TCP_MIN_HLEN {
            return Err(NotTcp::Drop(Counter::DropBadIpLength));
        }
        if l3_off + total > frame_len {
            return Err(truncated);
        }
        (FAMILY_V4, ihl, total - ihl)
    } else if ethertype == ETH_P_IPV6 {
        c.add(Counter::Ipv6);
        let ip = packet::at::<IPV6_HLEN>(ctx, l3_off).ok_or(truncated)?;
        // SAFETY: 40 bytes checked.
        let (version, next, payload) = unsafe {
            (
                ld8::<0>(ip) >> 4,
                ld8::<6>(ip),
                u16::from_be(ld16::<4>(ip) as u16),
            )
        };
        if version != 6 {
            return Err(NotTcp::Drop(Counter::DropBadIhl));
        }
        if next != IPPROTO_TCP {
            return Err(NotTcp::Pass(if is_ipv6_ext_header(next) {
                Counter::Ipv6ExtHeader
            } else {
                Counter::NonTcp
            }));
        }
        let payload = payload as usize;
        // 0 would be a jumbogram (RFC 2675), which has a hop-by-hop header and so never
        // comes here; anything shorter than a TCP header is malformed.
        if payload < TCP_MIN_HLEN {
            return Err(NotTcp::Drop(Counter::DropBadIpLength));
        }
        if l3_off + IPV6_HLEN + payload > frame_len {
            return Err(truncated);
        }
        (FAMILY_V6, IPV6_HLEN, payload)
    } else {
        return Err(NotTcp::Pass(Counter::NonIp));
    };
    let l4_off = l3_off + ip_hlen;

    let t = packet::at::<TCP_MIN_HLEN>(ctx, l4_off).ok_or(truncated)?;
    // SAFETY: 20 bytes checked.
    let (doff, ports, seq, ack, flags) = unsafe {
        (
            ld8::<12>(t),
            ld32::<0>(t),
            ld32::<4>(t),
            ld32::<8>(t),
            ld8::<13>(t),
        )
    };
    let tcp_hlen = (doff >> 4) as usize * 4;
    // Below 5 words, or past the end of the IP payload (RFC 9293 §3.1).
    if tcp_hlen < TCP_MIN_HLEN || tcp_hlen > tcp_len {
        return Err(NotTcp::Drop(Counter::DropBadDataOffset));
    }
    let ports = ports as u32;
    Ok(Segment {
        family,
        l3_off,
        ip_hlen,
        l4_off,
        tcp_hlen,
        tcp_len,
        src_port: u16::from_be(ports as u16),
        dst_port: u16::from_be((ports >> 16) as u16),
        seq: u32::from_be(seq as u32),
        ack: u32::from_be(ack as u32),
        flags: flags as u8,
    })
}

/// IPv6 extension headers (RFC 8200 §4 and the IANA list) that may precede TCP.
#[inline(always)]
fn is_ipv6_ext_header(next: u64) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}
