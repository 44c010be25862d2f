//! Minting and checking tcpfront's SYN cookies (layout and message in `tcp_common::cookie`):
//! one SipHash-2-4 over the 4-tuple, the client's ISN, the wall-clock minute and the option
//! bits, keyed from the `COOKIE` map.

use tcp_common::{
    bpf_mem::{ld32, ld64},
    cookie::{
        COOKIE_MAC_MASK, COOKIE_MAX_AGE_MINUTES, COOKIE_MSS_SHIFT, COOKIE_SACK_BIT,
        COOKIE_WSCALE_NONE, COOKIE_WSCALE_SHIFT, CookieKeys, MSG_LEN_V4, MSG_LEN_V6, NS_PER_MINUTE,
        cookie_bits, cookie_minute, last_word, siphash24,
    },
    maps::{COOKIE_MSS_V4, COOKIE_MSS_V6, FAMILY_V4, cookie_mss_index},
};

use aya_ebpf::programs::XdpContext;

use crate::{COOKIE, packet, parse::Segment};

/// What a checked cookie says about the handshake.
pub struct Handshake {
    pub mss: u16,
    /// The client's window scale, if it offered one.
    pub wscale: Option<u8>,
    pub sack: bool,
}

#[inline(always)]
fn keys() -> Option<&'static CookieKeys> {
    COOKIE.get(0)
}

/// Wall-clock minutes from the coarse monotonic clock.
#[inline(always)]
fn minute(keys: &CookieKeys, now_ns: u64) -> u64 {
    now_ns.wrapping_add(keys.clock_offset_ns) / NS_PER_MINUTE
}

#[inline(always)]
fn key(keys: &CookieKeys, minute: u64) -> Option<[u64; 2]> {
    keys.key.get(keys.slot_for(minute)?).copied()
}

/// The MAC over the segment's 4-tuple (as sent by the client), `isn`, the minute and `bits`.
#[inline(always)]
fn mac(
    ctx: &XdpContext,
    seg: &Segment,
    k: [u64; 2],
    isn: u32,
    minute: u64,
    bits: u32,
) -> Option<u32> {
    let ports = packet::at::<4>(ctx, seg.l4_off)?;
    // SAFETY: 4 bytes checked; the ports as they lie in the packet.
    let w_ports = unsafe { ld32::<0>(ports) } | u64::from(isn) << 32;
    let h = if seg.family == FAMILY_V4 {
        let ip = packet::at::<20>(ctx, seg.l3_off)?;
        // SAFETY: 20 bytes checked; source and destination address at 12..20.
        let addrs = unsafe { ld64::<12>(ip) };
        siphash24(k, &[addrs, w_ports], last_word(minute, bits, MSG_LEN_V4))
    } else {
        let ip = packet::at::<40>(ctx, seg.l3_off)?;
        // SAFETY: 40 bytes checked; source and destination address at 8..40.
        let a = unsafe {
            [
                ld64::<8>(ip),
                ld64::<16>(ip),
                ld64::<24>(ip),
                ld64::<32>(ip),
            ]
        };
        siphash24(
            k,
            &[a[0], a[1], a[2], a[3], w_ports],
            last_word(minute, bits, MSG_LEN_V6),
        )
    };
    Some(h as u32 & COOKIE_MAC_MASK)
}

#[inline(always)]
fn mss_table(family: u8) -> &'static [u16; 4] {
    if family == FAMILY_V4 {
        &COOKIE_MSS_V4
    } else {
        &COOKIE_MSS_V6
    }
}

/// The cookie for a SYN whose options said `mss` (0: none, RFC 9293 §3.7.1's 536),
/// `wscale` and `sack`: (cookie, the MSS it encodes).
#[inline(always)]
pub fn mint(
    ctx: &XdpContext,
    seg: &Segment,
    now_ns: u64,
    mss: u16,
    wscale: Option<u8>,
    sack: bool,
) -> Option<(u32, u16)> {
    let keys = keys()?;
    let minute = minute(keys, now_ns);
    let k = key(keys, minute)?;
    let idx = cookie_mss_index(seg.family, if mss == 0 { 536 } else { mss });
    let bits = cookie_bits(minute, idx, wscale, sack);
    let mac = mac(ctx, seg, k, seg.seq, minute, bits)?;
    Some((bits | mac, mss_table(seg.family)[(idx & 3) as usize]))
}

/// Whether the ACK's `ack - 1` is a cookie we minted for this 4-tuple and the client's ISN
/// (`seq - 1`), this minute or the one before; what it encodes if so.
#[inline(always)]
pub fn check(ctx: &XdpContext, seg: &Segment, now_ns: u64) -> Option<Handshake> {
    let keys = keys()?;
    let cookie = seg.ack.wrapping_sub(1);
    let (minted, age) = cookie_minute(cookie, minute(keys, now_ns));
    if age > COOKIE_MAX_AGE_MINUTES {
        return None;
    }
    let k = key(keys, minted)?;
    let bits = cookie & !COOKIE_MAC_MASK;
    if mac(ctx, seg, k, seg.seq.wrapping_sub(1), minted, bits)? != cookie & COOKIE_MAC_MASK {
        return None;
    }
    let ws = (cookie >> COOKIE_WSCALE_SHIFT) & 0xf;
    Some(Handshake {
        mss: mss_table(seg.family)[((cookie >> COOKIE_MSS_SHIFT) & 3) as usize],
        wscale: (ws != COOKIE_WSCALE_NONE).then_some(ws as u8),
        sack: cookie & COOKIE_SACK_BIT != 0,
    })
}
