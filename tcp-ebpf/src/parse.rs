//! Header parsing: Ethernet (+ up to two VLAN tags), IPv4/IPv6, the fixed TCP header.

use aya_ebpf::programs::XdpContext;
use tcp_common::{
    Counter,
    maps::{FAMILY_V4, FAMILY_V6},
};

use crate::packet::{be16_at, ptr_at, u8_at};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
pub const IPV4_MIN_HLEN: usize = 20;
pub const IPV6_HLEN: usize = 40;
pub const TCP_MIN_HLEN: usize = 20;

/// Where the headers of a TCP segment are, and the fields every path needs.
pub struct Segment {
    /// `FAMILY_V4` or `FAMILY_V6`.
    pub family: u8,
    pub l3_off: usize,
    /// IPv4 header length (20..=60); 40 for IPv6.
    pub ip_hlen: usize,
    pub l4_off: usize,
    /// TCP header length from the data offset, in bytes (20..=60).
    pub tcp_hlen: usize,
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
}

/// Why a frame is not a TCP segment we look at.
pub enum NotTcp {
    /// Not ours to judge: pass it and count the reason.
    Pass(Counter),
    /// Malformed: drop it and count the reason.
    Drop(Counter),
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Segment, NotTcp> {
    let truncated = NotTcp::Drop(Counter::DropTruncated);
    let mut off = ETH_HLEN;
    let mut ethertype = be16_at(ctx, 12).ok_or(NotTcp::Pass(Counter::NonIp))?;
    let mut tagged = false;
    // At most two tags (802.1ad outer + 802.1Q inner); unrolled so the verifier sees no loop.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, off + 2).ok_or(NotTcp::Pass(Counter::NonIp))?;
        off += VLAN_HLEN;
        tagged = true;
    }
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16_at(ctx, off + 2).ok_or(NotTcp::Pass(Counter::NonIp))?;
        off += VLAN_HLEN;
    }
    if tagged {
        crate::count(Counter::Vlan);
    }

    let l3_off = off;
    let (family, ip_hlen) = match ethertype {
        ETH_P_IPV4 => {
            crate::count(Counter::Ipv4);
            // One bounds check for the whole fixed header keeps every field read below on the
            // same verified packet pointer.
            let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, l3_off).ok_or(truncated)?;
            // SAFETY: ptr_at checked the 20 bytes.
            let (ver_ihl, frag, proto) =
                unsafe { ((*ip)[0], u16::from_be_bytes([(*ip)[6], (*ip)[7]]), (*ip)[9]) };
            let ihl = (ver_ihl & 0x0f) as usize * 4;
            if ver_ihl >> 4 != 4 || ihl < IPV4_MIN_HLEN {
                return Err(NotTcp::Drop(Counter::DropBadIhl));
            }
            // The whole header, options included, must be in the frame.
            u8_at(ctx, l3_off + ihl - 1).ok_or(NotTcp::Drop(Counter::DropTruncated))?;
            if proto != IPPROTO_TCP {
                return Err(NotTcp::Pass(Counter::NonTcp));
            }
            // MF set or a non-zero offset: the kernel reassembles; we never parse fragments.
            if frag & 0x3fff != 0 {
                return Err(NotTcp::Pass(Counter::Ipv4Fragment));
            }
            (FAMILY_V4, ihl)
        }
        ETH_P_IPV6 => {
            crate::count(Counter::Ipv6);
            let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, l3_off).ok_or(truncated)?;
            // SAFETY: ptr_at checked the 40 bytes.
            let next = unsafe { (*ip)[6] };
            if next != IPPROTO_TCP {
                return Err(NotTcp::Pass(if is_ipv6_ext_header(next) {
                    Counter::Ipv6ExtHeader
                } else {
                    Counter::NonTcp
                }));
            }
            (FAMILY_V6, IPV6_HLEN)
        }
        _ => return Err(NotTcp::Pass(Counter::NonIp)),
    };
    let l4_off = l3_off + ip_hlen;

    let tcp =
        ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4_off).ok_or(NotTcp::Drop(Counter::DropTruncated))?;
    // SAFETY: ptr_at checked the 20 bytes.
    let t = unsafe { *tcp };
    let tcp_hlen = (t[12] >> 4) as usize * 4;
    if tcp_hlen < TCP_MIN_HLEN {
        return Err(NotTcp::Drop(Counter::DropBadDataOffset));
    }
    // A data offset pointing past the frame is as bad as one below 5.
    u8_at(ctx, l4_off + tcp_hlen - 1).ok_or(NotTcp::Drop(Counter::DropBadDataOffset))?;

    Ok(Segment {
        family,
        l3_off,
        ip_hlen,
        l4_off,
        tcp_hlen,
        src_port: u16::from_be_bytes([t[0], t[1]]),
        dst_port: u16::from_be_bytes([t[2], t[3]]),
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
        flags: t[13],
    })
}

/// Source and destination address of the segment (IPv4 in the first 4 bytes).
#[inline(always)]
pub fn addresses(ctx: &XdpContext, seg: &Segment) -> Option<([u8; 16], [u8; 16])> {
    let mut src = [0u8; 16];
    let mut dst = [0u8; 16];
    if seg.family == FAMILY_V4 {
        let ip = ptr_at::<[u8; IPV4_MIN_HLEN]>(ctx, seg.l3_off)?;
        // SAFETY: ptr_at checked the 20 bytes.
        let ip = unsafe { *ip };
        src[..4].copy_from_slice(&ip[12..16]);
        dst[..4].copy_from_slice(&ip[16..20]);
    } else {
        let ip = ptr_at::<[u8; IPV6_HLEN]>(ctx, seg.l3_off)?;
        // SAFETY: ptr_at checked the 40 bytes.
        let ip = unsafe { *ip };
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
    }
    Some((src, dst))
}

/// IPv6 extension headers (RFC 8200 §4 and the IANA list) that may precede TCP.
#[inline(always)]
fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}
