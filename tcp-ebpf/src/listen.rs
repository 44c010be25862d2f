//! Which destinations are protected, and the flow key of a segment.

use aya_ebpf::programs::XdpContext;
use tcp_common::{
    bpf_mem::{ld32, ld64},
    maps::{FAMILY_V4, FlowKey, ListenKey, port_bits},
};

use crate::{LISTEN, PORTS, packet, parse::Segment};

/// Whether `dst:port` is protected: one array lookup for the port (which is all a wildcard
/// listen address needs), a `LISTEN` lookup only for ports with exact addresses.
#[inline(always)]
pub fn is_protected(ctx: &XdpContext, seg: &Segment) -> bool {
    let Some(&bits) = PORTS.get(u32::from(seg.dst_port)) else {
        return false;
    };
    let (any, exact) = port_bits(seg.family);
    if bits & any != 0 {
        return true;
    }
    if bits & exact == 0 {
        return false;
    }
    let mut key = ListenKey {
        addr: [0; 16],
        port: seg.dst_port,
        family: seg.family,
        _pad: 0,
    };
    let a = key.addr.as_mut_ptr() as *mut u32;
    // SAFETY: `key` is 4-aligned, so are its words; each load is checked by `packet::at`.
    unsafe {
        if seg.family == FAMILY_V4 {
            let Some(ip) = packet::at::<20>(ctx, seg.l3_off) else {
                return false;
            };
            *a = ld32::<16>(ip) as u32;
        } else {
            let Some(ip) = packet::at::<40>(ctx, seg.l3_off) else {
                return false;
            };
            *a = ld32::<24>(ip) as u32;
            *a.add(1) = ld32::<28>(ip) as u32;
            *a.add(2) = ld32::<32>(ip) as u32;
            *a.add(3) = ld32::<36>(ip) as u32;
        }
        LISTEN.get(key).is_some()
    }
}

/// The `FLOWS` key of the segment (client → tcpfront) as its five words (see
/// `FlowKey::words`): built field by field, LLVM would zero the padding with a call to
/// `memset`.
#[inline(always)]
pub fn flow_words(ctx: &XdpContext, seg: &Segment) -> Option<[u64; 5]> {
    // Ports (host order), family, zero padding: the key's last word, as it lies in memory.
    let tail =
        u64::from(seg.src_port) | u64::from(seg.dst_port) << 16 | u64::from(seg.family) << 32;
    // SAFETY: each load is checked by `packet::at`.
    let words: [u64; 5] = unsafe {
        if seg.family == FAMILY_V4 {
            let ip = packet::at::<20>(ctx, seg.l3_off)?;
            [ld32::<12>(ip), 0, ld32::<16>(ip), 0, tail]
        } else {
            let ip = packet::at::<40>(ctx, seg.l3_off)?;
            [
                ld64::<8>(ip),
                ld64::<16>(ip),
                ld64::<24>(ip),
                ld64::<32>(ip),
                tail,
            ]
        }
    };
    Some(words)
}

/// The key whose words these are.
#[inline(always)]
pub fn flow_key(words: [u64; 5]) -> FlowKey {
    // SAFETY: FlowKey is #[repr(C, align(8))] plain data of exactly these five words (tested
    // in tcp-common), little-endian like this program.
    unsafe { core::mem::transmute::<[u64; 5], FlowKey>(words) }
}
