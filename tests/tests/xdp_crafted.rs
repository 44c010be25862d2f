//! The XDP program on crafted frames (BPF_PROG_TEST_RUN): every flag class, every malformed
//! shape, the cookie SYN-ACK byte for byte, the cookie ACK check and the flow it creates.

use std::collections::BTreeMap;

use tcp_common::{
    classify::{ACK, CWR, ECE, FIN, PSH, RST, SYN, URG},
    cookie::{COOKIE_MSS_SHIFT, NS_PER_MINUTE, cookie_minute},
    maps::{
        COOKIE_MSS_V4, COOKIE_MSS_V6, FAMILY_V4, FAMILY_V6, FLOW_FROM_COOKIE, FLOW_SACK,
        FLOW_TIMESTAMPS, FLOW_WSCALE, cookie_mss_index,
    },
};
use tcpfront::{
    bpf::{
        config::FastPathSettings,
        cookie::{CookieInput, cookie, current_minute},
    },
    wire::{
        frame::TcpFrame,
        tcp::{TcpOptions, TcpRepr},
    },
};
mod common;

use common::xdp::{
    CLIENT_MAC, Harness, SERVER_MAC, XDP_DROP, XDP_PASS, XDP_TX, frame, linux_syn,
    refresh_checksums,
};

const V4_CLIENT: &str = "192.0.2.10";
const V4_SERVER: &str = "192.0.2.1";
const V6_CLIENT: &str = "2001:db8::10";
const V6_SERVER: &str = "2001:db8::1";

fn seg(sport: u16, dport: u16, flags: u8) -> TcpRepr {
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq: 1000,
        ack: if flags & ACK != 0 { 2000 } else { 0 },
        flags,
        window: 1000,
        ..TcpRepr::default()
    }
}

fn counts(pairs: &[(&'static str, u64)]) -> BTreeMap<&'static str, u64> {
    pairs.iter().copied().collect()
}

#[test]
fn every_flag_class_is_counted_once_and_passed_when_unprotected() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80"])?;
    let cases: &[(u8, &str, &[&str])] = &[
        (SYN, "class_syn", &[]),
        (SYN | ECE | CWR, "class_syn", &["flag_ece", "flag_cwr"]),
        (SYN | ACK, "class_syn_ack", &[]),
        (ACK, "class_ack", &[]),
        (ACK | PSH, "class_ack", &["flag_psh"]),
        (ACK | URG, "class_ack", &["flag_urg"]),
        (FIN | ACK, "class_fin", &[]),
        (RST, "class_rst", &[]),
        (RST | ACK, "class_rst", &[]),
        (PSH, "class_no_ack", &["flag_psh"]),
        (SYN | FIN, "class_syn_fin", &[]),
        (SYN | RST, "class_syn_rst", &[]),
        (FIN, "class_fin_no_ack", &[]),
        (0, "class_null", &[]),
        (FIN | PSH | URG, "class_xmas", &["flag_psh", "flag_urg"]),
    ];
    for &(flags, class, extra) in cases {
        for (src, dst) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
            let f = frame(src, dst, seg(4000, 8080, flags)).emit();
            let (verdict, _, delta) = h.run_counted(&f)?;
            assert_eq!(
                verdict, XDP_PASS,
                "flags {flags:#04x} to an unprotected port"
            );
            let mut want = counts(&[("frames", 1), ("tcp", 1), (class, 1), ("verdict_pass", 1)]);
            want.insert(if src == V4_CLIENT { "ipv4" } else { "ipv6" }, 1);
            for e in extra {
                want.insert(e, 1);
            }
            assert_eq!(delta, want, "flags {flags:#04x}");
        }
    }
    Ok(())
}

#[test]
fn illegal_combinations_to_a_protected_port_are_dropped() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    for flags in [
        SYN | FIN,
        SYN | RST,
        FIN,
        0,
        FIN | PSH | URG,
        SYN | FIN | PSH | URG | ACK,
    ] {
        for (src, dst) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
            let f = frame(src, dst, seg(4000, 80, flags)).emit();
            let (verdict, _, delta) = h.run_counted(&f)?;
            assert_eq!(verdict, XDP_DROP, "flags {flags:#04x}");
            assert_eq!(delta.get("drop_illegal_flags"), Some(&1), "{delta:?}");
            assert_eq!(delta.get("verdict_drop"), Some(&1));
        }
    }
    // --scrub-all extends that to every destination.
    let h = Harness::new(&FastPathSettings {
        scrub_all: true,
        ..FastPathSettings::default()
    })?;
    let f = frame(V4_CLIENT, V4_SERVER, seg(4000, 8080, SYN | FIN)).emit();
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_illegal_flags"), Some(&1));
    Ok(())
}

/// Offsets in a plain IPv4 frame.
const L3: usize = 14;
const L4: usize = 34;

#[test]
fn malformed_frames_are_dropped_and_counted_by_reason() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80"])?;
    let good = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, ACK)).emit();

    let mut bad_ihl = good.clone();
    bad_ihl[L3] = 0x44;
    let mut bad_version = good.clone();
    bad_version[L3] = 0x55;
    let truncated_ip = good[..L3 + 12].to_vec();
    let truncated_tcp = good[..L4 + 10].to_vec();
    let mut small_doff = good.clone();
    small_doff[L4 + 12] = 0x40;
    let mut doff_past_end = good.clone();
    doff_past_end[L4 + 12] = 0xf0;
    let mut ihl_past_end = good[..L3 + 20].to_vec();
    ihl_past_end[L3] = 0x4f;

    for (name, f, reason) in [
        ("IHL 4", bad_ihl, "drop_bad_ihl"),
        ("IP version 5", bad_version, "drop_bad_ihl"),
        ("truncated IPv4 header", truncated_ip, "drop_truncated"),
        ("IHL past the end", ihl_past_end, "drop_truncated"),
        ("truncated TCP header", truncated_tcp, "drop_truncated"),
        ("data offset 4", small_doff, "drop_bad_data_offset"),
        (
            "data offset past the end",
            doff_past_end,
            "drop_bad_data_offset",
        ),
    ] {
        let (verdict, _, delta) = h.run_counted(&f)?;
        assert_eq!(verdict, XDP_DROP, "{name}");
        assert_eq!(delta.get(reason), Some(&1), "{name}: {delta:?}");
        assert_eq!(delta.get("verdict_drop"), Some(&1), "{name}");
        assert_eq!(delta.get("tcp"), None, "{name} must not count as TCP");
    }
    Ok(())
}

#[test]
fn what_is_not_plain_tcp_passes_untouched() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    let good = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, SYN)).emit();

    let mut fragment = good.clone();
    fragment[L3 + 6] = 0x20; // MF
    let mut later_fragment = good.clone();
    later_fragment[L3 + 7] = 0x10; // offset 16
    let mut udp = good.clone();
    udp[L3 + 9] = 17;
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    let mut v6_ext = frame(V6_CLIENT, V6_SERVER, seg(4000, 80, SYN)).emit();
    v6_ext[14 + 6] = 0; // hop-by-hop options before TCP

    for (name, f, reason) in [
        ("IPv4 first fragment", fragment, "ipv4_fragment"),
        ("IPv4 later fragment", later_fragment, "ipv4_fragment"),
        ("UDP", udp, "non_tcp"),
        ("ARP", arp, "non_ip"),
        ("IPv6 extension header", v6_ext, "ipv6_ext_header"),
    ] {
        let (verdict, out, delta) = h.run_counted(&f)?;
        assert_eq!(verdict, XDP_PASS, "{name}");
        assert_eq!(out, f, "{name} must be untouched");
        assert_eq!(delta.get(reason), Some(&1), "{name}: {delta:?}");
    }
    Ok(())
}

#[test]
fn vlan_tagged_segments_are_parsed() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80"])?;
    let mut f = frame(V4_CLIENT, V4_SERVER, seg(4000, 8080, ACK));
    f.eth.vlans = [Some((0x88a8, 100)), Some((0x8100, 200))];
    let (verdict, _, delta) = h.run_counted(&f.emit())?;
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(delta.get("vlan_tagged"), Some(&1));
    assert_eq!(delta.get("class_ack"), Some(&1));

    // A SYN behind two tags to a protected port is answered with the tags kept.
    let mut syn = frame(V4_CLIENT, V4_SERVER, linux_syn(4000, 80, 77, 1));
    syn.eth.vlans = [Some((0x88a8, 100)), Some((0x8100, 200))];
    let (verdict, out, _) = h.run_counted(&syn.emit())?;
    assert_eq!(verdict, XDP_TX);
    let reply = TcpFrame::parse(&out)?;
    assert_eq!(reply.eth.vlans, syn.eth.vlans);
    assert_eq!(reply.tcp.flags, SYN | ACK);
    Ok(())
}

/// Sends a Linux-like SYN and checks the SYN-ACK; returns (syn, syn-ack).
fn syn_ack_round(h: &Harness, client: &str, server: &str) -> anyhow::Result<(TcpFrame, TcpFrame)> {
    let syn = frame(client, server, linux_syn(40000, 80, 0x1234_5678, 0xabcd));
    let (verdict, out, delta) = h.run_counted(&syn.emit())?;
    assert_eq!(verdict, XDP_TX, "{delta:?}");
    assert_eq!(delta.get("syn_ack_sent"), Some(&1));
    assert_eq!(delta.get("verdict_tx"), Some(&1));
    // TcpFrame::parse verifies the IPv4 header and TCP checksums.
    let r = TcpFrame::parse(&out)?;
    assert_eq!(
        out.len(),
        r.eth.header_len() + r.ip.header_len() + 40,
        "headers only"
    );
    assert_eq!((r.eth.src, r.eth.dst), (SERVER_MAC, CLIENT_MAC));
    assert_eq!((r.ip.src, r.ip.dst), (syn.ip.dst, syn.ip.src));
    assert_eq!((r.tcp.src_port, r.tcp.dst_port), (80, 40000));
    assert_eq!(r.tcp.flags, SYN | ACK);
    assert_eq!(r.tcp.ack, 0x1234_5679);
    assert_eq!(r.tcp.window, 65535);
    assert!(r.tcp.payload.is_empty());
    let o = r.tcp.options;
    let table = if r.ip.is_v4() {
        COOKIE_MSS_V4
    } else {
        COOKIE_MSS_V6
    };
    let mss = o.mss.expect("MSS option");
    let family = if r.ip.is_v4() { FAMILY_V4 } else { FAMILY_V6 };
    assert_eq!(mss, table[cookie_mss_index(family, 1460) as usize]);
    assert_eq!(o.wscale, Some(7));
    assert!(o.sack_permitted);
    let (_, tsecr) = o.timestamps.expect("timestamps");
    assert_eq!(tsecr, 0xabcd, "TSecr echoes the SYN's TSval");
    // The cookie is exactly what the independent implementation computes.
    let (minute, age) = cookie_minute(r.tcp.seq, current_minute());
    assert!(
        age <= 1,
        "minted this minute (or the last, across a boundary)"
    );
    let keys = &h.settings.cookie_keys;
    let want = cookie(
        keys.key[keys.slot_for(minute).expect("a key for the minute")],
        &CookieInput {
            client: std::net::SocketAddr::new(syn.ip.src, syn.tcp.src_port),
            server: std::net::SocketAddr::new(syn.ip.dst, syn.tcp.dst_port),
            client_isn: syn.tcp.seq,
            minute,
            mss_index: (r.tcp.seq >> COOKIE_MSS_SHIFT) & 3,
            wscale: Some(7),
            sack: true,
        },
    );
    assert_eq!(r.tcp.seq, want, "cookie");
    assert_eq!(table[((r.tcp.seq >> COOKIE_MSS_SHIFT) & 3) as usize], mss);
    Ok((syn, r))
}

/// The ACK completing the handshake; `forge` replaces the cookie by an unrelated value.
fn cookie_ack(syn: &TcpFrame, syn_ack: &TcpFrame, forge: bool) -> TcpFrame {
    let cookie = if forge {
        syn_ack.tcp.seq ^ 0x5a5a_5a5a
    } else {
        syn_ack.tcp.seq
    };
    let mut ack = syn.clone();
    ack.tcp = TcpRepr {
        src_port: syn.tcp.src_port,
        dst_port: syn.tcp.dst_port,
        seq: syn.tcp.seq.wrapping_add(1),
        ack: cookie.wrapping_add(1),
        flags: ACK,
        window: 502,
        options: TcpOptions {
            timestamps: Some((0xabce, syn_ack.tcp.options.timestamps.map_or(0, |t| t.0))),
            ..TcpOptions::default()
        },
        ..TcpRepr::default()
    };
    ack
}

#[test]
fn syn_to_a_protected_port_gets_a_cookie_syn_ack_and_its_ack_opens_a_flow() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    for (client, server, family) in [
        (V4_CLIENT, V4_SERVER, FAMILY_V4),
        (V6_CLIENT, V6_SERVER, FAMILY_V6),
    ] {
        let (syn, syn_ack) = syn_ack_round(&h, client, server)?;

        // A forged ACK (wrong cookie) is dropped and counted; no flow appears.
        let forged = cookie_ack(&syn, &syn_ack, true).emit();
        let (verdict, _, delta) = h.run_counted(&forged)?;
        assert_eq!(verdict, XDP_DROP);
        assert_eq!(delta.get("cookie_ack_invalid"), Some(&1), "{delta:?}");
        assert_eq!(delta.get("drop_cookie_invalid"), Some(&1));
        assert!(h.flows()?.iter().all(|(k, _)| k.family != family));

        // The right ACK passes the check and creates the flow (no AF_XDP socket is bound
        // under BPF_PROG_TEST_RUN, so the redirect itself is counted as dropped).
        let good = cookie_ack(&syn, &syn_ack, false).emit();
        let (_, _, delta) = h.run_counted(&good)?;
        assert_eq!(delta.get("cookie_ack_valid"), Some(&1), "{delta:?}");
        assert_eq!(delta.get("flow_inserted"), Some(&1));
        assert_eq!(delta.get("drop_no_socket"), Some(&1));
        let flows = h.flows()?;
        let (key, v) = flows
            .iter()
            .find(|(k, _)| k.family == family)
            .expect("flow");
        assert_eq!((key.src_port, key.dst_port), (40000, 80));
        assert_eq!(v.client_isn, 0x1234_5678);
        assert_eq!(v.server_isn, syn_ack.tcp.seq);
        assert_eq!(Some(v.mss), syn_ack.tcp.options.mss);
        assert_eq!(v.client_wscale, 7);
        assert_eq!(v.server_wscale, 7);
        assert_eq!(
            v.flags,
            FLOW_FROM_COOKIE | FLOW_SACK | FLOW_TIMESTAMPS | FLOW_WSCALE
        );
        assert_eq!(v.ts_recent, 0xabce);
        assert!(v.created_ns > 0);

        // Later segments of the flow go straight to user space, with no cookie check.
        let mut data = cookie_ack(&syn, &syn_ack, false);
        data.tcp.flags = ACK | PSH;
        data.tcp.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
        data.tcp.ack = syn_ack.tcp.seq.wrapping_add(1);
        let (_, _, delta) = h.run_counted(&data.emit())?;
        assert_eq!(delta.get("cookie_ack_valid"), None);
        assert_eq!(delta.get("drop_no_socket"), Some(&1), "{delta:?}");
    }
    Ok(())
}

/// The cookie ACK's options are held to the same rules as a SYN's: a flow is made only from
/// a segment user space would accept (found by `cargo xtask fuzz-xdp`).
#[test]
fn a_cookie_ack_with_malformed_options_makes_no_flow() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80"])?;
    let (syn, syn_ack) = syn_ack_round(&h, V4_CLIENT, V4_SERVER)?;
    // `NOP NOP TS`, its length byte (header byte 23) made 9; then 11 (past the header).
    for len in [9u8, 11] {
        let mut f = cookie_ack(&syn, &syn_ack, false).emit();
        assert_eq!(f[L4 + 22], 8, "the timestamps option where expected");
        f[L4 + 23] = len;
        refresh_checksums(&mut f);
        let (verdict, _, delta) = h.run_counted(&f)?;
        assert_eq!(verdict, XDP_DROP);
        assert_eq!(delta.get("drop_bad_options"), Some(&1), "{delta:?}");
        assert_eq!(delta.get("flow_inserted"), None);
    }
    assert!(h.flows()?.is_empty());
    // The same ACK with its options moved (`TS NOP NOP`) is walked generically and accepted.
    let mut f = cookie_ack(&syn, &syn_ack, false).emit();
    f[L4 + 20..L4 + 32].rotate_left(2);
    refresh_checksums(&mut f);
    let (_, _, delta) = h.run_counted(&f)?;
    assert_eq!(delta.get("flow_inserted"), Some(&1), "{delta:?}");
    let flows = h.flows()?;
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].1.ts_recent, 0xabce, "timestamps found by the walk");
    Ok(())
}

/// Mutated frames of every kind through the program, each answer and flow held to the
/// user-space parser, and each unmutated seed to what it must get (tests/xdp/src/fuzz.rs;
/// `cargo xtask fuzz-xdp` runs it for longer).
#[test]
fn fuzzed_frames_are_answered_only_as_user_space_parses_them() -> anyhow::Result<()> {
    let r = xdp_harness::fuzz::run(100_000, 0x5eed)?;
    assert!(
        r.mismatches.is_empty(),
        "{} mismatches, first: {:?}",
        r.mismatches.len(),
        r.mismatches.first()
    );
    // Every outcome was reached, so the oracle was exercised.
    assert!(
        r.answered > 10_000 && r.flows > 1_000 && r.dropped > 10_000,
        "{r:?}"
    );
    Ok(())
}

#[test]
fn syn_without_options_gets_mss_only_and_payload_is_cut() -> anyhow::Result<()> {
    let h = Harness::protecting(&["192.0.2.1:80"])?;
    let mut t = seg(5555, 80, SYN);
    t.payload = vec![0xaa; 100];
    let (verdict, out, _) = h.run_counted(&frame(V4_CLIENT, V4_SERVER, t).emit())?;
    assert_eq!(verdict, XDP_TX);
    let r = TcpFrame::parse(&out)?;
    assert!(r.tcp.payload.is_empty());
    // RFC 9293 §3.7.1: no MSS option means 536; the cookie encodes the nearest entry.
    assert_eq!(r.tcp.options.mss, Some(536));
    assert_eq!(
        r.tcp.options.wscale, None,
        "no scaling offered to a client that did not"
    );
    assert_eq!(r.tcp.options.timestamps, None);
    assert!(!r.tcp.options.sack_permitted);

    // The listen address is exact: another address of the same host is not protected.
    let (verdict, _, _) =
        h.run_counted(&frame(V4_CLIENT, "192.0.2.99", seg(5555, 80, SYN)).emit())?;
    assert_eq!(verdict, XDP_PASS);
    Ok(())
}

#[test]
fn bad_syn_options_are_dropped() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80"])?;
    let mut f = frame(V4_CLIENT, V4_SERVER, linux_syn(4000, 80, 1, 1)).emit();
    // Corrupt the MSS option's length (first option byte after the fixed header), with
    // checksums that verify, so that the options are what is wrong.
    f[L4 + 21] = 3;
    refresh_checksums(&mut f);
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_options"), Some(&1), "{delta:?}");

    // RFC 2018 §3: a SACK option is 2 + 8n bytes, n ≥ 1. Linux's layout with its
    // SACK-permitted option (bytes 24–25 of the header) turned into SACKs of bad lengths.
    for (kind, len) in [(5u8, 2u8), (5, 12)] {
        let mut f = frame(V4_CLIENT, V4_SERVER, linux_syn(4000, 80, 1, 1)).emit();
        f[L4 + 24..L4 + 26].copy_from_slice(&[kind, len]);
        refresh_checksums(&mut f);
        let (verdict, _, delta) = h.run_counted(&f)?;
        assert_eq!(verdict, XDP_DROP, "SACK length {len}");
        assert_eq!(delta.get("drop_bad_options"), Some(&1), "{delta:?}");
    }

    // A SYN carrying IPv4 options cannot be answered in place: dropped and counted.
    let mut syn = frame(V4_CLIENT, V4_SERVER, linux_syn(4000, 80, 1, 1));
    syn.ip.v4_options_len = 4;
    let (verdict, _, delta) = h.run_counted(&syn.emit())?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_ip_options"), Some(&1), "{delta:?}");
    Ok(())
}

#[test]
fn invalid_cookie_can_be_answered_with_rst() -> anyhow::Result<()> {
    let h = Harness::new(&FastPathSettings {
        listen: vec!["0.0.0.0:80".parse()?],
        rst_invalid_cookie: true,
        ..FastPathSettings::default()
    })?;
    let mut t = seg(4000, 80, ACK);
    t.seq = 111;
    t.ack = 222;
    let (verdict, out, delta) = h.run_counted(&frame(V4_CLIENT, V4_SERVER, t).emit())?;
    assert_eq!(verdict, XDP_TX);
    assert_eq!(delta.get("rst_sent"), Some(&1));
    let r = TcpFrame::parse(&out)?;
    // RFC 9293 §3.10.7.1: <SEQ=SEG.ACK><CTL=RST>.
    assert_eq!(r.tcp.flags, RST);
    assert_eq!(r.tcp.seq, 222);
    assert_eq!((r.tcp.src_port, r.tcp.dst_port), (80, 4000));
    Ok(())
}

#[test]
fn with_cookies_off_syns_go_to_user_space() -> anyhow::Result<()> {
    let h = Harness::new(&FastPathSettings {
        listen: vec!["0.0.0.0:80".parse()?],
        syn_cookies: false,
        ..FastPathSettings::default()
    })?;
    let (verdict, _, delta) =
        h.run_counted(&frame(V4_CLIENT, V4_SERVER, linux_syn(1, 80, 1, 1)).emit())?;
    assert_eq!(verdict, XDP_DROP, "no socket bound in a test run");
    assert_eq!(delta.get("syn_redirected"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("drop_no_socket"), Some(&1));
    assert_eq!(delta.get("syn_ack_sent"), None);
    Ok(())
}

/// RFC 9293 §3.1: a segment whose checksum does not verify is discarded, never answered and
/// never turned into a flow; RFC 791: likewise a bad IPv4 header checksum.
#[test]
fn bad_checksums_are_dropped_never_answered() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    for (client, server) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
        let good = frame(client, server, linux_syn(40000, 80, 7, 9)).emit();
        let l4 = if client == V4_CLIENT { L4 } else { 14 + 40 };
        // One bit off in the TCP header, in an option, and in the checksum field itself.
        for at in [l4 + 4, l4 + 30, l4 + 17] {
            let mut f = good.clone();
            f[at] ^= 0x01;
            let (verdict, _, delta) = h.run_counted(&f)?;
            assert_eq!(verdict, XDP_DROP, "{client}: bit flipped at {at}");
            assert_eq!(delta.get("drop_bad_checksum"), Some(&1), "{delta:?}");
            assert_eq!(delta.get("syn_ack_sent"), None);
        }
    }
    // A bad IPv4 header checksum.
    let mut f = frame(V4_CLIENT, V4_SERVER, linux_syn(40000, 80, 7, 9)).emit();
    f[L3 + 10] ^= 0x10;
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_ip_checksum"), Some(&1), "{delta:?}");

    // A cookie ACK that would be valid, with one bit of its payload flipped: no flow.
    let (syn, syn_ack) = syn_ack_round(&h, V4_CLIENT, V4_SERVER)?;
    let mut ack = cookie_ack(&syn, &syn_ack, false);
    ack.tcp.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
    let mut f = ack.emit();
    let last = f.len() - 1;
    f[last] ^= 0x20;
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_checksum"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("flow_inserted"), None);
    assert!(h.flows()?.is_empty());
    // The same ACK intact opens the flow: the long (payload) checksum path verifies too.
    let (_, _, delta) = h.run_counted(&ack.emit())?;
    assert_eq!(delta.get("flow_inserted"), Some(&1), "{delta:?}");
    Ok(())
}

/// The IP length says where the segment ends, not the frame: Ethernet padding is not TCP,
/// and a data offset past the IP payload is malformed (Linux trims to the IP length, then
/// drops it).
#[test]
fn the_ip_length_bounds_the_segment() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;

    // A SYN without options padded to Ethernet's 60-byte minimum, as a wire pads it: answered,
    // and the answer carries no padding.
    let mut f = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, SYN)).emit();
    assert_eq!(f.len(), 54);
    f.resize(60, 0);
    let (verdict, out, _) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_TX);
    let r = TcpFrame::parse(&out)?;
    assert_eq!(out.len(), 14 + 20 + 24, "MSS only, no padding");
    assert_eq!(r.tcp.flags, SYN | ACK);

    // Total length 40 with data offset 6 (24 bytes), padded to 60: the padding would read as
    // an option, but the header is longer than the packet.
    let mut f = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, SYN)).emit();
    f.resize(60, 0);
    f[L4 + 12] = 6 << 4;
    f[L4 + 20..L4 + 24].copy_from_slice(&[2, 4, 0x05, 0xb4]);
    refresh_checksums(&mut f);
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_data_offset"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("syn_ack_sent"), None);

    // Total length shorter than the headers it must hold.
    let mut f = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, SYN)).emit();
    f[L3 + 2..L3 + 4].copy_from_slice(&30u16.to_be_bytes());
    refresh_checksums(&mut f);
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_ip_length"), Some(&1), "{delta:?}");

    // Total length past the end of the frame.
    let mut f = frame(V4_CLIENT, V4_SERVER, seg(4000, 80, SYN)).emit();
    f[L3 + 2..L3 + 4].copy_from_slice(&100u16.to_be_bytes());
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_truncated"), Some(&1), "{delta:?}");

    // IPv6: a payload length shorter than the data offset, and one past the frame.
    let v6 = frame(V6_CLIENT, V6_SERVER, linux_syn(4000, 80, 1, 1)).emit();
    let mut f = v6.clone();
    f[14 + 4..14 + 6].copy_from_slice(&24u16.to_be_bytes());
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_bad_data_offset"), Some(&1), "{delta:?}");
    let mut f = v6.clone();
    f[14 + 4..14 + 6].copy_from_slice(&200u16.to_be_bytes());
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_truncated"), Some(&1), "{delta:?}");
    Ok(())
}

/// Shifts the program's wall clock so that it reads half past some minute, leaving 30 s of
/// margin on both sides for a test that steps through minutes.
fn centre_the_minute(h: &mut Harness) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64;
    let target = now - now % NS_PER_MINUTE + NS_PER_MINUTE / 2;
    let mut keys = h.settings.cookie_keys;
    keys.clock_offset_ns = keys.clock_offset_ns.wrapping_add(target.wrapping_sub(now));
    h.set_cookie_keys(keys)
}

/// Moves the program's clock by whole minutes.
fn advance_minutes(h: &mut Harness, minutes: i64) -> anyhow::Result<()> {
    let mut keys = h.settings.cookie_keys;
    keys.clock_offset_ns = keys
        .clock_offset_ns
        .wrapping_add((minutes * NS_PER_MINUTE as i64) as u64);
    h.set_cookie_keys(keys)
}

/// As net/ipv4/syncookies.c: a cookie is good in the minute it was minted and the next one,
/// and no longer; the clock is wall-clock minutes.
#[test]
fn cookies_expire_after_the_next_minute() -> anyhow::Result<()> {
    let mut h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    centre_the_minute(&mut h)?;
    for (client, server) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
        // Minted now, checked one minute later: accepted.
        let (syn, syn_ack) = syn_ack_round(&h, client, server)?;
        advance_minutes(&mut h, 1)?;
        let (_, _, delta) = h.run_counted(&cookie_ack(&syn, &syn_ack, false).emit())?;
        assert_eq!(
            delta.get("cookie_ack_valid"),
            Some(&1),
            "{client}: {delta:?}"
        );
        advance_minutes(&mut h, -1)?;

        // Another connection, checked two minutes later: expired.
        let mut syn = frame(client, server, linux_syn(40001, 80, 0x5555_0000, 0xabcd));
        let (_, out, _) = h.run_counted(&syn.emit())?;
        let syn_ack = TcpFrame::parse(&out)?;
        advance_minutes(&mut h, 2)?;
        let (verdict, _, delta) = h.run_counted(&cookie_ack(&syn, &syn_ack, false).emit())?;
        assert_eq!(verdict, XDP_DROP);
        assert_eq!(
            delta.get("cookie_ack_invalid"),
            Some(&1),
            "{client}: {delta:?}"
        );
        // ...and so is a cookie "from the future" (three minutes back in the clock).
        advance_minutes(&mut h, -5)?;
        syn.tcp.src_port = 40002;
        let (_, _, delta) = h.run_counted(&cookie_ack(&syn, &syn_ack, false).emit())?;
        assert_eq!(delta.get("cookie_ack_invalid"), Some(&1), "{delta:?}");
        advance_minutes(&mut h, 3)?;
    }
    Ok(())
}

/// Every MSS index of both families comes back from the cookie, and so do window scale and
/// SACK-permitted when the client sends no timestamps (where Linux loses them).
#[test]
fn the_cookie_carries_mss_window_scale_and_sack() -> anyhow::Result<()> {
    let h = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    let mut port = 41000;
    for (client, server, family, table) in [
        (V4_CLIENT, V4_SERVER, FAMILY_V4, COOKIE_MSS_V4),
        (V6_CLIENT, V6_SERVER, FAMILY_V6, COOKIE_MSS_V6),
    ] {
        for (idx, &mss) in table.iter().enumerate() {
            for (wscale, sack) in [(Some(5), true), (None, false), (Some(14), false)] {
                port += 1;
                let syn = frame(
                    client,
                    server,
                    TcpRepr {
                        src_port: port,
                        dst_port: 80,
                        seq: 0x0102_0304 ^ u32::from(port),
                        flags: SYN,
                        window: 65535,
                        options: TcpOptions {
                            mss: Some(mss),
                            wscale,
                            sack_permitted: sack,
                            ..TcpOptions::default()
                        },
                        ..TcpRepr::default()
                    },
                );
                let (verdict, out, _) = h.run_counted(&syn.emit())?;
                assert_eq!(verdict, XDP_TX);
                let syn_ack = TcpFrame::parse(&out)?;
                assert_eq!(syn_ack.tcp.options.mss, Some(mss), "{family} index {idx}");
                assert_eq!(syn_ack.tcp.options.timestamps, None);
                assert_eq!(syn_ack.tcp.options.wscale.is_some(), wscale.is_some());
                assert_eq!(syn_ack.tcp.options.sack_permitted, sack);
                let mut ack = cookie_ack(&syn, &syn_ack, false);
                ack.tcp.options = TcpOptions::default();
                let (_, _, delta) = h.run_counted(&ack.emit())?;
                assert_eq!(delta.get("flow_inserted"), Some(&1), "{delta:?}");
                let flows = h.flows()?;
                let (_, v) = flows
                    .iter()
                    .find(|(k, _)| k.src_port == port)
                    .expect("the flow");
                assert_eq!(v.mss, mss);
                assert_eq!(v.flags & FLOW_WSCALE != 0, wscale.is_some());
                if let Some(ws) = wscale {
                    assert_eq!(v.client_wscale, ws);
                }
                assert_eq!(v.flags & FLOW_SACK != 0, sack);
                assert_eq!(v.flags & FLOW_TIMESTAMPS, 0);
            }
        }
    }
    Ok(())
}

/// The keys `rotation` installs at wall-clock `minute`, with the clock offset that makes the
/// program count that minute (its middle) now.
fn keys_at_minute(
    rotation: &mut tcpfront::bpf::secret::Rotation,
    minute: u64,
) -> tcp_common::cookie::CookieKeys {
    let now = tcpfront::bpf::cookie::coarse_now_ns();
    let target = minute * NS_PER_MINUTE + NS_PER_MINUTE / 2;
    rotation.keys_at(minute, target.wrapping_sub(now))
}

fn secret_file(name: &str, byte: u8) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!("tcpfront-fleet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let p = dir.join(name);
    std::fs::write(&p, [byte; 32])?;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))?;
    Ok(p)
}

/// Two nodes of a fleet (two instances of the program) with the same secret file: a SYN-ACK
/// minted by one is accepted by the other, in the same epoch and in the next (one-minute
/// epochs here), and refused two epochs on; a node with another secret refuses it.
#[test]
fn nodes_sharing_a_secret_accept_each_others_cookies_across_one_rotation() -> anyhow::Result<()> {
    use tcpfront::bpf::secret::{Rotation, SecretSource};
    let shared = secret_file("shared", 0x42)?;
    let other = secret_file("other", 0x43)?;
    let rotation = |p: &std::path::Path| {
        Rotation::new(
            SecretSource::File(p.to_path_buf()),
            std::time::Duration::from_secs(60),
        )
    };
    let (mut r1, mut r2, mut r3) = (rotation(&shared)?, rotation(&shared)?, rotation(&other)?);
    let node = || Harness::protecting(&["0.0.0.0:80", "[::]:80"]);
    let (mut node1, mut node3) = (node()?, node()?);
    let m = tcpfront::bpf::cookie::current_minute();
    for (client, server) in [(V4_CLIENT, V4_SERVER), (V6_CLIENT, V6_SERVER)] {
        node1.set_cookie_keys(keys_at_minute(&mut r1, m))?;
        let (syn, syn_ack) = syn_ack_round(&node1, client, server)?;
        let ack = cookie_ack(&syn, &syn_ack, false).emit();
        for (minute, want_valid) in [(m, true), (m + 1, true), (m + 2, false)] {
            // A fresh node 2 each time: an accepted ACK leaves a flow behind.
            let mut node2 = node()?;
            node2.set_cookie_keys(keys_at_minute(&mut r2, minute))?;
            let (verdict, _, delta) = node2.run_counted(&ack)?;
            let valid = delta.get("cookie_ack_valid") == Some(&1);
            assert_eq!(
                valid,
                want_valid,
                "{client}: node 2 at minute +{} (epoch {}): {verdict} {delta:?}",
                minute - m,
                minute
            );
        }
        node3.set_cookie_keys(keys_at_minute(&mut r3, m))?;
        let (verdict, _, delta) = node3.run_counted(&ack)?;
        assert_eq!(
            verdict, XDP_DROP,
            "{client}: another secret accepted it: {delta:?}"
        );
        assert_eq!(delta.get("cookie_ack_invalid"), Some(&1));
    }
    let _ = std::fs::remove_dir_all(shared.parent().unwrap_or(&shared));
    Ok(())
}
