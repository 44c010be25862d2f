//! Internet checksum (RFC 1071) sums over frame bytes, in native byte order.
//!
//! The one's-complement sum is byte-order independent (RFC 1071 §2(B)): words loaded as they
//! lie in memory sum to the byte-swapped sum, and the folded result stored the same way is
//! the right checksum. So nothing is swapped, and a verified sum folds to 0xffff.

use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use tcp_common::{
    bpf_mem::{ld8, ld16, ld32},
    maps::FAMILY_V4,
};

use crate::{SCRATCH, SCRATCH_LEN, packet, parse::Segment};

/// Folds a sum of 32-bit words to 16 bits, with end-around carries (not complemented).
#[inline(always)]
pub fn fold(mut s: u64) -> u64 {
    s = (s & 0xffff_ffff) + (s >> 32);
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    (s & 0xffff) + (s >> 16)
}

/// The checksum to store for a sum: folded and complemented.
#[inline(always)]
pub fn checksum(s: u64) -> u64 {
    !fold(s) & 0xffff
}

/// Sum of `len` (< 64) bytes at `off`, read straight from the frame: at most six bounds
/// checks, one load per word.
#[inline(always)]
fn sum_short(ctx: &XdpContext, off: usize, len: usize) -> Option<u64> {
    let mut acc = 0u64;
    let mut pos = off;
    // SAFETY (every block): `packet::at` checked the bytes read.
    if len & 32 != 0 {
        let p = packet::at::<32>(ctx, pos)?;
        acc += unsafe {
            ld32::<0>(p)
                + ld32::<4>(p)
                + ld32::<8>(p)
                + ld32::<12>(p)
                + ld32::<16>(p)
                + ld32::<20>(p)
                + ld32::<24>(p)
                + ld32::<28>(p)
        };
        pos += 32;
    }
    if len & 16 != 0 {
        let p = packet::at::<16>(ctx, pos)?;
        acc += unsafe { ld32::<0>(p) + ld32::<4>(p) + ld32::<8>(p) + ld32::<12>(p) };
        pos += 16;
    }
    if len & 8 != 0 {
        let p = packet::at::<8>(ctx, pos)?;
        acc += unsafe { ld32::<0>(p) + ld32::<4>(p) };
        pos += 8;
    }
    if len & 4 != 0 {
        let p = packet::at::<4>(ctx, pos)?;
        acc += unsafe { ld32::<0>(p) };
        pos += 4;
    }
    if len & 2 != 0 {
        let p = packet::at::<2>(ctx, pos)?;
        acc += unsafe { ld16::<0>(p) };
        pos += 2;
    }
    if len & 1 != 0 {
        // The odd last byte is the high half of a word padded with zero (RFC 9293 §3.1):
        // in native (little-endian) order, just the byte.
        let p = packet::at::<1>(ctx, pos)?;
        acc += unsafe { ld8::<0>(p) };
    }
    Some(acc)
}

const BLOCK: usize = 64;

#[repr(C)]
struct BlockSum {
    acc: u64,
}

/// `bpf_loop` callback: adds block `i` of the scratch copy.
extern "C" fn sum_block(i: u32, state: *mut core::ffi::c_void) -> i64 {
    let Some(buf) = SCRATCH.get_ptr(0) else {
        return 1;
    };
    let p = (buf as *const u8).wrapping_add((i as usize & (SCRATCH_LEN / BLOCK - 1)) * BLOCK);
    // SAFETY: the block lies inside the scratch value (SCRATCH_LEN + BLOCK bytes); `state`
    // is the caller's BlockSum.
    unsafe {
        let s = ld32::<0>(p)
            + ld32::<4>(p)
            + ld32::<8>(p)
            + ld32::<12>(p)
            + ld32::<16>(p)
            + ld32::<20>(p)
            + ld32::<24>(p)
            + ld32::<28>(p)
            + ld32::<32>(p)
            + ld32::<36>(p)
            + ld32::<40>(p)
            + ld32::<44>(p)
            + ld32::<48>(p)
            + ld32::<52>(p)
            + ld32::<56>(p)
            + ld32::<60>(p);
        (*(state as *mut BlockSum)).acc += s;
    }
    0
}

/// Sum of `len` (64..=SCRATCH_LEN) bytes at `off`: one copy into this CPU's scratch buffer,
/// zero-padded to whole blocks, then one `bpf_loop` callback per 64-byte block (verified
/// once, whatever the length). Only segments with payload come here.
#[inline(always)]
fn sum_long(ctx: &XdpContext, off: usize, len: usize) -> Option<u64> {
    if len > SCRATCH_LEN {
        return None;
    }
    let buf = SCRATCH.get_ptr_mut(0)? as *mut u8;
    // SAFETY: the buffer holds SCRATCH_LEN + BLOCK bytes; len ≤ SCRATCH_LEN.
    unsafe {
        if bpf_xdp_load_bytes(ctx.ctx, off as u32, buf.cast(), len as u32) != 0 {
            return None;
        }
        let tail = buf.add(len);
        use tcp_common::bpf_mem::st64;
        st64::<0>(tail, 0);
        st64::<8>(tail, 0);
        st64::<16>(tail, 0);
        st64::<24>(tail, 0);
        st64::<32>(tail, 0);
        st64::<40>(tail, 0);
        st64::<48>(tail, 0);
        st64::<56>(tail, 0);
        let mut state = BlockSum { acc: 0 };
        bpf_loop(
            len.div_ceil(BLOCK) as u32,
            sum_block as *mut core::ffi::c_void,
            (&mut state as *mut BlockSum).cast(),
            0,
        );
        Some(state.acc)
    }
}

/// One's-complement sum (unfolded) of `len` bytes of the frame at `off`; None if they are
/// not all in the frame or the segment is longer than any frame this program sees.
#[inline(always)]
pub fn sum(ctx: &XdpContext, off: usize, len: usize) -> Option<u64> {
    if len < BLOCK {
        sum_short(ctx, off, len)
    } else {
        sum_long(ctx, off, len)
    }
}

/// The pseudo-header's sum for `tcp_len` bytes of TCP (RFC 9293 §3.1, RFC 8200 §8.1). Its
/// addresses sum the same in either direction, so a reply uses it too.
#[inline(always)]
pub fn pseudo_header(ctx: &XdpContext, seg: &Segment, tcp_len: usize) -> Option<u64> {
    if seg.family == FAMILY_V4 {
        let ip = packet::at::<20>(ctx, seg.l3_off)?;
        // SAFETY: 20 bytes checked; the addresses are at 12..20.
        let addrs = unsafe { ld32::<12>(ip) + ld32::<16>(ip) };
        Some(addrs + u64::from(u16::from_ne_bytes([0, 6])) + u64::from((tcp_len as u16).to_be()))
    } else {
        let ip = packet::at::<40>(ctx, seg.l3_off)?;
        // SAFETY: 40 bytes checked; the addresses are at 8..40.
        let addrs = unsafe {
            ld32::<8>(ip)
                + ld32::<12>(ip)
                + ld32::<16>(ip)
                + ld32::<20>(ip)
                + ld32::<24>(ip)
                + ld32::<28>(ip)
                + ld32::<32>(ip)
                + ld32::<36>(ip)
        };
        Some(
            addrs
                + u64::from((tcp_len as u32).to_be())
                + u64::from(u32::from_ne_bytes([0, 0, 0, 6])),
        )
    }
}

/// Whether the segment's TCP checksum verifies (RFC 9293 §3.1).
#[inline(always)]
pub fn tcp_ok(ctx: &XdpContext, seg: &Segment) -> bool {
    match (
        pseudo_header(ctx, seg, seg.tcp_len),
        sum(ctx, seg.l4_off, seg.tcp_len),
    ) {
        (Some(p), Some(s)) => fold(p + s) == 0xffff,
        _ => false,
    }
}

/// Whether the IPv4 header checksum verifies (RFC 791); IPv6 has none.
#[inline(always)]
pub fn ipv4_header_ok(ctx: &XdpContext, seg: &Segment) -> bool {
    seg.family != FAMILY_V4
        || sum_short(ctx, seg.l3_off, seg.ip_hlen & 63).is_some_and(|s| fold(s) == 0xffff)
}
