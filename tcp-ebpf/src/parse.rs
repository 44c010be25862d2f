//! Header parsing: Ethernet (+ up to two VLAN tags), IPv4/IPv6, the fixed TCP header.

use aya_ebpf::programs::XdpContext;
use tcp_common::Counter;

use crate::packet::{be16_at, ptr_at, u8_at};

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPV4_MIN_HLEN: usize = 20;
const IPV6_HLEN: usize = 40;
const TCP_MIN_HLEN: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// Where the headers of a TCP segment are and what its flags are.
pub struct Segment {
    pub family: Family,
    pub l3_off: usize,
    pub l4_off: usize,
    /// TCP header length from the data offset, in bytes (20..=60).
    pub tcp_hlen: usize,
    pub dst_port: u16,
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
    let (family, l4_off) = match ethertype {
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
            (Family::V4, l3_off + ihl)
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
            (Family::V6, l3_off + IPV6_HLEN)
        }
        _ => return Err(NotTcp::Pass(Counter::NonIp)),
    };

    let tcp =
        ptr_at::<[u8; TCP_MIN_HLEN]>(ctx, l4_off).ok_or(NotTcp::Drop(Counter::DropTruncated))?;
    // SAFETY: ptr_at checked the 20 bytes.
    let (dst_port, doff, flags) = unsafe {
        (
            u16::from_be_bytes([(*tcp)[2], (*tcp)[3]]),
            (*tcp)[12],
            (*tcp)[13],
        )
    };
    let tcp_hlen = (doff >> 4) as usize * 4;
    if tcp_hlen < TCP_MIN_HLEN {
        return Err(NotTcp::Drop(Counter::DropBadDataOffset));
    }
    // A data offset pointing past the frame is as bad as one below 5.
    u8_at(ctx, l4_off + tcp_hlen - 1).ok_or(NotTcp::Drop(Counter::DropBadDataOffset))?;

    Ok(Segment {
        family,
        l3_off,
        l4_off,
        tcp_hlen,
        dst_port,
        flags,
    })
}

/// IPv6 extension headers (RFC 8200 §4 and the IANA list) that may precede TCP.
#[inline(always)]
fn is_ipv6_ext_header(next: u8) -> bool {
    matches!(
        next,
        0 | 43 | 44 | 50 | 51 | 60 | 135 | 139 | 140 | 253 | 254
    )
}
