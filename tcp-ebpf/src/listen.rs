//! Which destinations are protected, and the flow key of a segment.

use aya_ebpf::programs::XdpContext;
use tcp_common::{
    bpf_mem::{ld32, ld64},
    maps::{
        FAMILY_V4, FlowKey, LISTEN_SERVING, ListenKey, PROTECTION_NONE, PROTECTION_RETIRED,
        PROTECTION_SERVING, port_bits, port_retired_bit,
    },
};

use crate::{LISTEN, PORTS, packet, parse::Segment};

/// Whether `dst:port` is protected (`PROTECTION_*`): one array lookup for the port (which
/// is all a serving wildcard needs), a `LISTEN` lookup only for ports with exact addresses.
/// A retired destination (removed by a reload) still has its flows served.
#[inline(always)]
pub fn protection(ctx: &XdpContext, seg: &Segment) -> u8 {
    let Some(&bits) = PORTS.get(u32::from(seg.dst_port)) else {
        return PROTECTION_NONE;
    };
    let (any, exact) = port_bits(seg.family);
    let wildcard = if bits & any == 0 {
        PROTECTION_NONE
    } else if bits & port_retired_bit(seg.family) != 0 {
        PROTECTION_RETIRED
    } else {
        return PROTECTION_SERVING;
    };
    if bits & exact == 0 {
        return wildcard;
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
                return PROTECTION_NONE;
            };
            *a = ld32::<16>(ip) as u32;
        } else {
            let Some(ip) = packet::at::<40>(ctx, seg.l3_off) else {
                return PROTECTION_NONE;
            };
            *a = ld32::<24>(ip) as u32;
            *a.add(1) = ld32::<28>(ip) as u32;
            *a.add(2) = ld32::<32>(ip) as u32;
            *a.add(3) = ld32::<36>(ip) as u32;
        }
        match LISTEN.get(key) {
            Some(&LISTEN_SERVING) => PROTECTION_SERVING,
            Some(_) => PROTECTION_RETIRED,
            None => wildcard,
        }
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
