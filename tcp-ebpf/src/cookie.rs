//! SYN cookies through the kernel's own helpers (Linux ≥ 6.0), which use the same secrets and
//! clock as the kernel's SYN cookies: cookies expire and cannot be forged without the secret.
//!
//! The helpers read the IP header (fixed size) and the TCP header (of its data-offset length)
//! from memory the verifier can bound: the frame itself where the length is one of the usual
//! constants, else a copy on the stack.

use core::mem::MaybeUninit;

use aya_ebpf::{
    bindings::{iphdr, ipv6hdr, tcphdr},
    helpers::generated::{
        bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6,
        bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};
use tcp_common::maps::FAMILY_V4;

use crate::{
    packet,
    parse::{IPV4_MIN_HLEN, IPV6_HLEN, Segment, TCP_MIN_HLEN},
};

pub struct CookieError;

/// The IP header for the helpers (the frame's own bytes).
#[inline(always)]
fn ip_header(ctx: &XdpContext, seg: &Segment) -> Result<*mut u8, CookieError> {
    if seg.family == FAMILY_V4 {
        packet::at::<IPV4_MIN_HLEN>(ctx, seg.l3_off)
    } else {
        packet::at::<IPV6_HLEN>(ctx, seg.l3_off)
    }
    .ok_or(CookieError)
}

#[inline(always)]
fn gen_raw(seg: &Segment, ip: *mut u8, th: *mut u8, th_len: u32) -> i64 {
    // SAFETY: `ip` holds the family's fixed header, `th` th_len bytes (checked by callers).
    unsafe {
        if seg.family == FAMILY_V4 {
            bpf_tcp_raw_gen_syncookie_ipv4(ip as *mut iphdr, th as *mut tcphdr, th_len)
        } else {
            bpf_tcp_raw_gen_syncookie_ipv6(ip as *mut ipv6hdr, th as *mut tcphdr, th_len)
        }
    }
}

/// Generates the cookie for a SYN: (cookie, MSS the cookie encodes).
#[inline(always)]
pub fn generate(ctx: &XdpContext, seg: &Segment) -> Result<(u32, u16), CookieError> {
    let ip = ip_header(ctx, seg)?;
    let r = match seg.tcp_hlen {
        // The frame's bytes, where the length is a constant the verifier can check.
        40 => gen_raw(
            seg,
            ip,
            packet::at::<40>(ctx, seg.l4_off).ok_or(CookieError)?,
            40,
        ),
        24 => gen_raw(
            seg,
            ip,
            packet::at::<24>(ctx, seg.l4_off).ok_or(CookieError)?,
            24,
        ),
        _ => {
            let hlen = seg.tcp_hlen & 0x3c; // 20..=60, a multiple of 4: bounded.
            if hlen < TCP_MIN_HLEN {
                return Err(CookieError);
            }
            let mut th = MaybeUninit::<[u8; 60]>::uninit();
            // SAFETY: th holds 60 ≥ hlen bytes, written by the helper before the read.
            unsafe {
                if bpf_xdp_load_bytes(
                    ctx.ctx,
                    seg.l4_off as u32,
                    th.as_mut_ptr().cast(),
                    hlen as u32,
                ) != 0
                {
                    return Err(CookieError);
                }
            }
            // Re-derived: the helper call above may not keep `ip` live in a register.
            let ip = ip_header(ctx, seg)?;
            gen_raw(seg, ip, th.as_mut_ptr().cast(), hlen as u32)
        }
    };
    if r < 0 {
        return Err(CookieError);
    }
    Ok((r as u32, (r >> 32) as u16))
}

/// Whether the ACK's `ack - 1` is a cookie we issued for this 4-tuple, recently enough.
#[inline(always)]
pub fn check(ctx: &XdpContext, seg: &Segment) -> Result<bool, CookieError> {
    let ip = ip_header(ctx, seg)?;
    let th = packet::at::<TCP_MIN_HLEN>(ctx, seg.l4_off).ok_or(CookieError)?;
    // SAFETY: both headers checked in the frame, at the helpers' fixed sizes.
    let r = unsafe {
        if seg.family == FAMILY_V4 {
            bpf_tcp_raw_check_syncookie_ipv4(ip as *mut iphdr, th as *mut tcphdr)
        } else {
            bpf_tcp_raw_check_syncookie_ipv6(ip as *mut ipv6hdr, th as *mut tcphdr)
        }
    };
    Ok(r == 0)
}
