//! What happens to a segment for a protected port: flows go to user space, SYNs get a cookie
//! SYN-ACK, cookie ACKs open a flow, everything else without a flow is dropped.

use aya_ebpf::{bindings::xdp_action, helpers::generated::bpf_ktime_get_ns, programs::XdpContext};
use tcp_common::{
    Counter,
    classify::{ACK, RST, SYN},
    maps::{
        CFG_DRAIN_DROP_SYNS, CFG_DRAINING, CFG_RST_INVALID_COOKIE, CFG_SYN_COOKIES, COOKIE_MSS_V4,
        COOKIE_MSS_V6, Config, FAMILY_V4, FAMILY_V6, FLOW_FROM_COOKIE, FLOW_SACK, FLOW_TIMESTAMPS,
        FLOW_WSCALE, FlowKey, FlowValue, TS_MSS_MASK, TS_MSS_SHIFT, TS_OPT_BITS, TS_SACK_BIT,
        TS_WSCALE_MASK, TS_WSCALE_NONE, cookie_mss_index,
    },
};

use crate::{
    FLOWS, XSKS, cookie, count, options,
    options::WSCALE_NONE,
    parse::{IPV4_MIN_HLEN, Segment},
    reply::{self, Reply},
};

const DEFAULT_WINDOW: u16 = 65535;
const DEFAULT_WSCALE: u8 = 7;

#[inline(always)]
pub fn handle(
    ctx: &XdpContext,
    seg: &Segment,
    class: Counter,
    config: &Config,
    key: &FlowKey,
) -> u32 {
    // SAFETY: read-only lookup of plain data.
    if unsafe { FLOWS.get(key) }.is_some() {
        return to_user_space(ctx);
    }
    if class == Counter::ClassSyn && config.flags & CFG_DRAINING != 0 {
        // Shutting down: a new connection would only be reset by the drain.
        count(Counter::SynWhileDraining);
        return if config.flags & CFG_DRAIN_DROP_SYNS != 0 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        };
    }
    if config.flags & CFG_SYN_COOKIES == 0 {
        // The engine does the handshake itself.
        if class == Counter::ClassSyn {
            count(Counter::SynRedirected);
        }
        return to_user_space(ctx);
    }
    match class {
        Counter::ClassSyn => syn_ack(ctx, seg, config, key),
        Counter::ClassAck | Counter::ClassFin => cookie_ack(ctx, seg, config, key),
        _ => {
            count(Counter::DropNoFlow);
            xdp_action::XDP_DROP
        }
    }
}

#[inline(always)]
fn to_user_space(ctx: &XdpContext) -> u32 {
    match XSKS.redirect(ctx.rx_queue_index(), 0) {
        Ok(action) => {
            count(Counter::FlowRedirected);
            action
        }
        Err(_) => {
            count(Counter::DropNoSocket);
            xdp_action::XDP_DROP
        }
    }
}

/// Answers a SYN with a cookie SYN-ACK (XDP_TX), keeping no state.
///
/// Not inlined: a BPF subprogram gets its own 512-byte stack frame for the header buffers.
#[inline(never)]
fn syn_ack(ctx: &XdpContext, seg: &Segment, config: &Config, key: &FlowKey) -> u32 {
    if seg.family == FAMILY_V4 && seg.ip_hlen != IPV4_MIN_HLEN {
        count(Counter::DropIpOptions);
        return xdp_action::XDP_DROP;
    }
    let Ok(opts) = options::parse(ctx, seg.l4_off, seg.tcp_hlen) else {
        count(Counter::DropBadOptions);
        return xdp_action::XDP_DROP;
    };
    let Ok((cookie, mss)) = cookie::generate(ctx, seg) else {
        count(Counter::DropBadOptions);
        return xdp_action::XDP_DROP;
    };
    let our_wscale = if config.wscale == 0 {
        DEFAULT_WSCALE
    } else {
        config.wscale
    };

    // Options, padded to 20 bytes: MSS | SACK-permitted | timestamps | window scale.
    let mut o = [1u8; 20]; // NOPs
    o[0] = 2;
    o[1] = 4;
    o[2..4].copy_from_slice(&mss.to_be_bytes());
    if opts.sack_ok {
        o[4] = 4;
        o[5] = 2;
    }
    if opts.timestamps {
        // RFC 7323 §3.2 TSval; its low bits carry the SYN's options back to us (Linux does
        // the same in cookie_init_timestamp), since we keep no state.
        // SAFETY: helper without arguments.
        let now_ms = (unsafe { bpf_ktime_get_ns() } / 1_000_000) as u32;
        let ws = if opts.wscale == WSCALE_NONE {
            TS_WSCALE_NONE
        } else {
            opts.wscale as u32 & TS_WSCALE_MASK
        };
        let mut bits = ws | (cookie_mss_index(seg.family, mss) << TS_MSS_SHIFT);
        if opts.sack_ok {
            bits |= TS_SACK_BIT;
        }
        let tsval = (now_ms & !((1u32 << TS_OPT_BITS) - 1)) | bits;
        o[6] = 8;
        o[7] = 10;
        o[8..12].copy_from_slice(&tsval.to_be_bytes());
        o[12..16].copy_from_slice(&opts.tsval.to_be_bytes());
    }
    if opts.wscale != WSCALE_NONE {
        // RFC 7323 §2.2: only offer scaling to a client that offered it.
        o[17] = 3;
        o[18] = 3;
        o[19] = our_wscale;
    }
    let window = if config.syn_ack_window == 0 {
        DEFAULT_WINDOW
    } else {
        config.syn_ack_window
    };
    let r: Reply<40> = Reply {
        seq: cookie,
        ack: seg.seq.wrapping_add(1),
        flags: SYN | ACK,
        window,
        options: o,
    };
    if reply::write(ctx, seg, &key.src, &key.dst, &r).is_err() {
        count(Counter::DropResize);
        return xdp_action::XDP_DROP;
    }
    count(Counter::SynAckSent);
    xdp_action::XDP_TX
}

/// An ACK for which no flow exists: valid cookie → new flow, handed to user space.
#[inline(never)]
fn cookie_ack(ctx: &XdpContext, seg: &Segment, config: &Config, key: &FlowKey) -> u32 {
    let valid = cookie::check(ctx, seg).unwrap_or(false);
    if !valid {
        count(Counter::CookieInvalid);
        if config.flags & CFG_RST_INVALID_COOKIE != 0
            && (seg.family != FAMILY_V4 || seg.ip_hlen == IPV4_MIN_HLEN)
        {
            // RFC 9293 §3.10.7.1: to an ACK, <SEQ=SEG.ACK><CTL=RST>.
            let r: Reply<20> = Reply {
                seq: seg.ack,
                ack: 0,
                flags: RST,
                window: 0,
                options: [0; 20],
            };
            if reply::write(ctx, seg, &key.src, &key.dst, &r).is_ok() {
                count(Counter::RstSent);
                return xdp_action::XDP_TX;
            }
        }
        count(Counter::DropCookieInvalid);
        return xdp_action::XDP_DROP;
    }
    count(Counter::CookieValid);

    let timestamps = options::aligned_timestamps(ctx, seg.l4_off, seg.tcp_hlen);
    let mut value = FlowValue {
        client_isn: seg.seq.wrapping_sub(1),
        server_isn: seg.ack.wrapping_sub(1),
        // SAFETY: helper without arguments.
        created_ns: unsafe { bpf_ktime_get_ns() },
        mss: if seg.family == FAMILY_V6 {
            COOKIE_MSS_V6[0]
        } else {
            COOKIE_MSS_V4[0]
        },
        flags: FLOW_FROM_COOKIE,
        ..FlowValue::default()
    };
    if let Some((tsval, tsecr)) = timestamps {
        // TSecr echoes the TSval of our SYN-ACK, whose low bits hold the SYN's options.
        let bits = tsecr;
        let idx = ((bits >> TS_MSS_SHIFT) & TS_MSS_MASK) as usize;
        value.mss = if seg.family == FAMILY_V6 {
            COOKIE_MSS_V6[idx & 3]
        } else {
            COOKIE_MSS_V4[idx & 3]
        };
        value.flags |= FLOW_TIMESTAMPS;
        value.ts_recent = tsval;
        value.ts_offset = tsecr;
        if bits & TS_SACK_BIT != 0 {
            value.flags |= FLOW_SACK;
        }
        let ws = bits & TS_WSCALE_MASK;
        if ws != TS_WSCALE_NONE {
            value.flags |= FLOW_WSCALE;
            value.client_wscale = ws as u8;
            value.server_wscale = if config.wscale == 0 {
                DEFAULT_WSCALE
            } else {
                config.wscale
            };
        }
    }
    if FLOWS.insert(key, value, 0).is_ok() {
        count(Counter::FlowInserted);
    }
    to_user_space(ctx)
}
