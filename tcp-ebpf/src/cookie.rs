//! SYN cookies through the kernel's own helpers (Linux ≥ 6.0), which use the same secrets and
//! clock as the kernel's SYN cookies: cookies expire and cannot be forged without the secret.
//!
//! The helpers want the IP and TCP headers as memory of a fixed/bounded size; copying them to
//! the stack first gives the verifier exactly that, whatever the frame's length.

use aya_ebpf::{
    bindings::{iphdr, ipv6hdr, tcphdr},
    helpers::generated::{
        bpf_tcp_raw_check_syncookie_ipv4, bpf_tcp_raw_check_syncookie_ipv6,
        bpf_tcp_raw_gen_syncookie_ipv4, bpf_tcp_raw_gen_syncookie_ipv6, bpf_xdp_load_bytes,
    },
    programs::XdpContext,
};
use tcp_common::maps::FAMILY_V4;

use crate::parse::{IPV4_MIN_HLEN, IPV6_HLEN, Segment, TCP_MIN_HLEN};

pub struct CookieError;

#[inline(always)]
fn load(ctx: &XdpContext, off: usize, buf: &mut [u8], len: usize) -> Result<(), CookieError> {
    // SAFETY: buf is at least len bytes (callers size it to the maximum).
    let rc =
        unsafe { bpf_xdp_load_bytes(ctx.ctx, off as u32, buf.as_mut_ptr().cast(), len as u32) };
    if rc != 0 { Err(CookieError) } else { Ok(()) }
}

/// Generates the cookie for a SYN: (cookie, MSS the cookie encodes).
#[inline(always)]
pub fn generate(ctx: &XdpContext, seg: &Segment) -> Result<(u32, u16), CookieError> {
    let mut ip = [0u8; IPV6_HLEN];
    let mut th = [0u8; 60];
    let hlen = seg.tcp_hlen & 0x3c; // 20..=60, a multiple of 4: bounded for the verifier.
    if hlen < TCP_MIN_HLEN {
        return Err(CookieError);
    }
    load(ctx, seg.l4_off, &mut th, hlen)?;
    // SAFETY: the helpers read the headers from our stack buffers, which are large enough.
    let r = unsafe {
        if seg.family == FAMILY_V4 {
            load(ctx, seg.l3_off, &mut ip, IPV4_MIN_HLEN)?;
            bpf_tcp_raw_gen_syncookie_ipv4(
                ip.as_mut_ptr() as *mut iphdr,
                th.as_mut_ptr() as *mut tcphdr,
                hlen as u32,
            )
        } else {
            load(ctx, seg.l3_off, &mut ip, IPV6_HLEN)?;
            bpf_tcp_raw_gen_syncookie_ipv6(
                ip.as_mut_ptr() as *mut ipv6hdr,
                th.as_mut_ptr() as *mut tcphdr,
                hlen as u32,
            )
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
    let mut ip = [0u8; IPV6_HLEN];
    let mut th = [0u8; TCP_MIN_HLEN];
    load(ctx, seg.l4_off, &mut th, TCP_MIN_HLEN)?;
    // SAFETY: as in `generate`.
    let r = unsafe {
        if seg.family == FAMILY_V4 {
            load(ctx, seg.l3_off, &mut ip, IPV4_MIN_HLEN)?;
            bpf_tcp_raw_check_syncookie_ipv4(
                ip.as_mut_ptr() as *mut iphdr,
                th.as_mut_ptr() as *mut tcphdr,
            )
        } else {
            load(ctx, seg.l3_off, &mut ip, IPV6_HLEN)?;
            bpf_tcp_raw_check_syncookie_ipv6(
                ip.as_mut_ptr() as *mut ipv6hdr,
                th.as_mut_ptr() as *mut tcphdr,
            )
        }
    };
    Ok(r == 0)
}
