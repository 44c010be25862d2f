//! What happens to a segment for a protected port: flows go to user space, SYNs get a cookie
//! SYN-ACK, cookie ACKs open a flow, everything else without a flow goes on to the next node
//! of a fleet, or is dropped (or reset) where no node is left to ask.

use aya_ebpf::{
    bindings::xdp_action, helpers::generated::bpf_ktime_get_coarse_ns, programs::XdpContext,
};
use tcp_common::{
    Counter,
    bpf_mem::atomic_add64,
    classify::{ACK, RST, SYN},
    maps::{
        CFG_DRAIN_DROP_SYNS, CFG_DRAINING, CFG_RST_INVALID_COOKIE, CFG_SYN_COOKIES, Config,
        FAMILY_V4, FLOW_FROM_COOKIE, FLOW_SACK, FLOW_TIMESTAMPS, FLOW_WSCALE, FlowKey, FlowValue,
        flow_filter_place, flow_filter_slot,
    },
};

use crate::{
    FLOW_FILTER, FLOWS, XSKS, cookie,
    count::Counts,
    csum,
    fleet::{self, Arrival},
    listen,
    options::{self, WSCALE_NONE},
    parse::{IPV4_MIN_HLEN, Segment},
    reply::{self, TcpOut},
};

const DEFAULT_WINDOW: u16 = 65535;
const DEFAULT_WSCALE: u8 = 7;

#[inline(always)]
pub fn handle(
    ctx: &XdpContext,
    seg: &Segment,
    class: Counter,
    config: &Config,
    retired: bool,
    from: Arrival,
    c: Counts,
) -> u32 {
    let Some(words) = listen::flow_words(ctx, seg) else {
        c.add(Counter::DropTruncated);
        return xdp_action::XDP_DROP;
    };
    let (word, shift) = flow_filter_place(flow_filter_slot(&words, config.filter_seed));
    let key = listen::flow_key(words);
    // The filter answers "certainly no flow" for a new 4-tuple (every SYN of a flood)
    // without touching FLOWS; see `flow_filter_slot`.
    let maybe_flow = FLOW_FILTER
        .get(word)
        .is_some_and(|&n| (n >> shift) & 0xff != 0);
    // SAFETY: read-only lookup of plain data.
    if maybe_flow && unsafe { FLOWS.get(&key) }.is_some() {
        if from != Arrival::Direct {
            c.add(Counter::FleetClaimed);
        }
        return to_user_space(ctx, c);
    }
    if from != Arrival::Direct {
        // The node before had no flow for it and checked its cookie (the fleet shares the
        // secret); a node never hands on a SYN.
        if class == Counter::ClassSyn {
            c.add(Counter::DropNoFlow);
            return xdp_action::XDP_DROP;
        }
        return no_flow(ctx, seg, class, config, from, c);
    }
    if class == Counter::ClassSyn && (config.flags & CFG_DRAINING != 0 || retired) {
        // Shutting down, a new connection would only be reset by the drain; a destination a
        // reload removed takes no new connection (its open ones, above, finish).
        c.add(Counter::SynWhileDraining);
        return if config.flags & CFG_DRAIN_DROP_SYNS != 0 {
            xdp_action::XDP_DROP
        } else {
            xdp_action::XDP_PASS
        };
    }
    if config.flags & CFG_SYN_COOKIES == 0 {
        // The engine does the handshake itself.
        if class == Counter::ClassSyn {
            c.add(Counter::SynRedirected);
        }
        return to_user_space(ctx, c);
    }
    match class {
        Counter::ClassSyn => syn_ack(ctx, seg, config, c),
        Counter::ClassAck | Counter::ClassFin => {
            cookie_ack(ctx, seg, class, config, &key, (word, shift), c)
        }
        _ => no_flow(ctx, seg, class, config, from, c),
    }
}

/// A segment of no flow here that is no handshake either: the next node of the fleet may
/// have its flow; where none is left to ask, it is dropped, or an ACK is reset if so
/// configured.
#[inline(always)]
fn no_flow(
    ctx: &XdpContext,
    seg: &Segment,
    class: Counter,
    config: &Config,
    from: Arrival,
    c: Counts,
) -> u32 {
    if let Some(verdict) = fleet::hand_off(ctx, config, from, c) {
        return verdict;
    }
    if class != Counter::ClassAck && class != Counter::ClassFin {
        c.add(Counter::DropNoFlow);
        return xdp_action::XDP_DROP;
    }
    if config.flags & CFG_RST_INVALID_COOKIE != 0
        && (seg.family != FAMILY_V4 || seg.ip_hlen == IPV4_MIN_HLEN)
    {
        // RFC 9293 §3.10.7.1: to an ACK, <SEQ=SEG.ACK><CTL=RST>.
        let out = TcpOut {
            seq: seg.ack,
            ack: 0,
            flags: RST,
            window: 0,
            opts: [0; 5],
            n_opts: 0,
        };
        if reply::write(ctx, seg, &out).is_ok() {
            c.add(Counter::RstSent);
            return xdp_action::XDP_TX;
        }
    }
    c.add(Counter::DropCookieInvalid);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn to_user_space(ctx: &XdpContext, c: Counts) -> u32 {
    match XSKS.redirect(ctx.rx_queue_index(), 0) {
        Ok(action) => {
            c.add(Counter::FlowRedirected);
            action
        }
        Err(_) => {
            c.add(Counter::DropNoSocket);
            xdp_action::XDP_DROP
        }
    }
}

/// RFC 9293 §3.1: a segment whose checksum does not verify is discarded; so is an IPv4 packet
/// whose header checksum does not (RFC 791). Checked on everything answered or turned into
/// a flow; segments of flows are checked by user space.
#[inline(always)]
fn checksums_ok(ctx: &XdpContext, seg: &Segment, c: Counts) -> bool {
    if !csum::ipv4_header_ok(ctx, seg) {
        c.add(Counter::DropBadIpChecksum);
        return false;
    }
    if !csum::tcp_ok(ctx, seg) {
        c.add(Counter::DropBadChecksum);
        return false;
    }
    true
}

#[inline(always)]
fn our_wscale(config: &Config) -> u8 {
    if config.wscale == 0 {
        DEFAULT_WSCALE
    } else {
        config.wscale
    }
}

/// Answers a SYN with a cookie SYN-ACK (XDP_TX), keeping no state.
#[inline(always)]
fn syn_ack(ctx: &XdpContext, seg: &Segment, config: &Config, c: Counts) -> u32 {
    if seg.family == FAMILY_V4 && seg.ip_hlen != IPV4_MIN_HLEN {
        c.add(Counter::DropIpOptions);
        return xdp_action::XDP_DROP;
    }
    if !checksums_ok(ctx, seg, c) {
        return xdp_action::XDP_DROP;
    }
    let Ok(opts) = options::parse_syn(ctx, seg) else {
        c.add(Counter::DropBadOptions);
        return xdp_action::XDP_DROP;
    };
    // One clock read for the cookie's minute and the TSval: the coarse clock (updated every
    // jiffy) spares reading the TSC for every SYN.
    // SAFETY: helper without arguments.
    let now_ns = unsafe { bpf_ktime_get_coarse_ns() };
    let wscale = (opts.wscale != WSCALE_NONE).then_some(opts.wscale);
    // A fleet keeps room for the hand-off header in the client's largest frame.
    let cap = if seg.family == FAMILY_V4 {
        config.mss_cap_v4
    } else {
        config.mss_cap_v6
    };
    let client_mss = if cap != 0 && opts.mss > cap {
        cap
    } else {
        opts.mss
    };
    let Some((cookie, mss)) = cookie::mint(ctx, seg, now_ns, client_mss, wscale, opts.sack_ok)
    else {
        c.add(Counter::DropNoCookieKey);
        return xdp_action::XDP_DROP;
    };

    // Options as Linux lays them out: MSS | SACK-permitted + timestamps (or NOPs) | NOP,
    // window scale.
    let mut o = [0x0204_0000 | u32::from(mss), 0, 0, 0, 0];
    // RFC 7323 §2.2: only offer scaling to a client that offered it.
    let ws = wscale.map(|_| 0x0103_0300 | u32::from(our_wscale(config)));
    let n = if opts.timestamps {
        // RFC 7323 §3.2. The clock counts units of 2^20 ns (≈1.05 ms, within RFC 7323
        // §5.4's 1 ms..1 s), which spares a division; the engine continues it.
        o[1] = if opts.sack_ok {
            0x0402_080a
        } else {
            0x0101_080a
        };
        o[2] = (now_ns >> 20) as u32;
        o[3] = opts.tsval;
        if let Some(w) = ws {
            o[4] = w;
            5
        } else {
            4
        }
    } else if opts.sack_ok {
        o[1] = 0x0101_0402;
        if let Some(w) = ws {
            o[2] = w;
            3
        } else {
            2
        }
    } else if let Some(w) = ws {
        o[1] = w;
        2
    } else {
        1
    };
    let window = if config.syn_ack_window == 0 {
        DEFAULT_WINDOW
    } else {
        config.syn_ack_window
    };
    let out = TcpOut {
        seq: cookie,
        ack: seg.seq.wrapping_add(1),
        flags: SYN | ACK,
        window,
        opts: o,
        n_opts: n,
    };
    if reply::write(ctx, seg, &out).is_err() {
        c.add(Counter::DropResize);
        return xdp_action::XDP_DROP;
    }
    c.add(Counter::SynAckSent);
    xdp_action::XDP_TX
}

/// An ACK for which no flow exists: valid cookie → new flow, handed to user space.
#[inline(always)]
fn cookie_ack(
    ctx: &XdpContext,
    seg: &Segment,
    class: Counter,
    config: &Config,
    key: &FlowKey,
    (word, shift): (u32, u32),
    c: Counts,
) -> u32 {
    if !checksums_ok(ctx, seg, c) {
        return xdp_action::XDP_DROP;
    }
    // Only a well-formed segment becomes a flow or gets an answer (one walk serves both).
    let Ok(timestamps) = options::parse_ack(ctx, seg) else {
        c.add(Counter::DropBadOptions);
        return xdp_action::XDP_DROP;
    };
    // SAFETY: helper without arguments.
    let now_ns = unsafe { bpf_ktime_get_coarse_ns() };
    let Some(h) = cookie::check(ctx, seg, now_ns) else {
        c.add(Counter::CookieInvalid);
        return no_flow(ctx, seg, class, config, Arrival::Direct, c);
    };
    c.add(Counter::CookieValid);

    let mut value = FlowValue {
        client_isn: seg.seq.wrapping_sub(1),
        server_isn: seg.ack.wrapping_sub(1),
        created_ns: now_ns,
        mss: h.mss,
        flags: FLOW_FROM_COOKIE,
        // The queue the flow arrives on owns it (user space need not write the entry).
        state: (ctx.rx_queue_index() as u8).wrapping_add(1),
        ..FlowValue::default()
    };
    if h.sack {
        value.flags |= FLOW_SACK;
    }
    if let Some(ws) = h.wscale {
        value.flags |= FLOW_WSCALE;
        value.client_wscale = ws;
        value.server_wscale = our_wscale(config);
    }
    if let Some((tsval, tsecr)) = timestamps {
        // RFC 7323 §3.2: the client sends timestamps only if our SYN-ACK did, which it did
        // only if the SYN had them; TSecr echoes our SYN-ACK's TSval.
        value.flags |= FLOW_TIMESTAMPS;
        value.ts_recent = tsval;
        value.ts_offset = tsecr;
    }
    // Counted in the filter before the flow exists, so that no lookup misses it.
    let counter = FLOW_FILTER.get_ptr_mut(word);
    let one = 1u64 << shift;
    if let Some(n) = counter {
        // SAFETY: a live 8-aligned value of the global (not per-CPU) filter.
        unsafe { atomic_add64(n, one) };
    }
    if FLOWS.insert(key, value, 0).is_ok() {
        c.add(Counter::FlowInserted);
    } else if let Some(n) = counter {
        // SAFETY: as above; adding the two's complement takes the one away again.
        unsafe { atomic_add64(n, one.wrapping_neg()) };
    }
    to_user_space(ctx, c)
}
