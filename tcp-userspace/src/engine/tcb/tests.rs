//! Crafted segments in, exact segments out (in the style of smoltcp's socket tests).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use super::*;
use crate::{
    engine::config::Keepalive,
    wire::tcp::{ACK, FIN, PSH, RST, SYN, TcpOptions, TcpRepr},
};

const LOCAL: &str = "10.0.0.1:80";
const REMOTE: &str = "10.0.0.2:49152";
const ISS: u32 = 1_000_000;
const IRS: u32 = 5_000;

fn addrs() -> (SocketAddr, SocketAddr) {
    (LOCAL.parse().unwrap(), REMOTE.parse().unwrap())
}

fn cfg() -> EngineConfig {
    EngineConfig {
        delayed_ack: None,
        timestamps: false,
        sack: false,
        msl: Duration::from_secs(1),
        keepalive: Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            count: 3,
        }),
        max_retransmits: 3,
        ..EngineConfig::default()
    }
}

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A segment from the peer.
fn seg(flags: u8, seq: u32, ack: u32, payload: &[u8]) -> TcpRepr {
    TcpRepr {
        src_port: 49152,
        dst_port: 80,
        seq,
        ack,
        flags,
        window: 64000,
        payload: payload.to_vec(),
        ..TcpRepr::default()
    }
}

fn syn() -> TcpRepr {
    let mut s = seg(SYN, IRS, 0, b"");
    s.options.mss = Some(1400);
    s
}

/// Exactly one segment was sent; returns it.
fn sent_one(tcb: &mut Tcb) -> TcpRepr {
    let out = tcb.take_outgoing();
    assert_eq!(out.len(), 1, "expected one segment, got {out:#?}");
    out.into_iter().next().unwrap()
}

fn sent_none(tcb: &mut Tcb) {
    let out = tcb.take_outgoing();
    assert!(out.is_empty(), "expected nothing, got {out:#?}");
}

/// Asserts the fields that matter of an outgoing segment.
#[track_caller]
fn assert_seg(s: &TcpRepr, flags: u8, seq: u32, ack: u32, payload: &[u8]) {
    assert_eq!(s.flags, flags, "flags of {s:#?}");
    assert_eq!(s.seq, seq, "seq of {s:#?}");
    if flags & ACK != 0 {
        assert_eq!(s.ack, ack, "ack of {s:#?}");
    }
    assert_eq!(s.payload, payload, "payload of {s:#?}");
    assert_eq!((s.src_port, s.dst_port), (80, 49152));
}

/// A passively opened connection in ESTABLISHED, outputs drained.
fn established() -> Tcb {
    let (l, r) = addrs();
    let mut tcb = Tcb::accept(&cfg(), l, r, ISS, &syn(), t(0));
    let synack = sent_one(&mut tcb);
    assert_seg(&synack, SYN | ACK, ISS, IRS + 1, b"");
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    assert_eq!(tcb.state(), State::Established);
    sent_none(&mut tcb);
    tcb.take_events();
    tcb
}

#[test]
fn passive_open_three_way_handshake() {
    let (l, r) = addrs();
    let mut tcb = Tcb::accept(&cfg(), l, r, ISS, &syn(), t(0));
    assert_eq!(tcb.state(), State::SynReceived);
    let synack = sent_one(&mut tcb);
    assert_seg(&synack, SYN | ACK, ISS, IRS + 1, b"");
    assert_eq!(synack.options.mss, Some(1460));
    assert_eq!(
        synack.options.wscale, None,
        "no scaling offered to a SYN without it"
    );
    // A retransmitted SYN gets the SYN-ACK again.
    tcb.on_segment(&syn(), t(5));
    assert_seg(&sent_one(&mut tcb), SYN | ACK, ISS, IRS + 1, b"");
    // A wrong ACK gets a RST <SEQ=SEG.ACK>.
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 7, b""), t(6));
    assert_seg(&sent_one(&mut tcb), RST, ISS + 7, 0, b"");
    assert_eq!(tcb.state(), State::SynReceived);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    assert_eq!(tcb.state(), State::Established);
    assert_eq!(tcb.take_events(), vec![Event::Connected]);
    assert_eq!(tcb.mss(), 1400);
}

#[test]
fn active_open_three_way_handshake() {
    let (l, r) = addrs();
    let mut tcb = Tcb::connect(&cfg(), l, r, ISS, t(0));
    assert_eq!(tcb.state(), State::SynSent);
    let s = sent_one(&mut tcb);
    assert_seg(&s, SYN, ISS, 0, b"");
    assert_eq!(s.options.wscale, Some(cfg().wscale));
    let mut synack = seg(SYN | ACK, IRS, ISS + 1, b"");
    synack.options.wscale = Some(3);
    synack.window = 1000;
    tcb.on_segment(&synack, t(20));
    assert_eq!(tcb.state(), State::Established);
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 1, b"");
    assert_eq!(tcb.wscale(), (3, cfg().wscale));
    assert_eq!(tcb.snd_wnd(), 1000, "the SYN-ACK's window is not scaled");
    assert!(tcb.srtt().is_some(), "the handshake gives an RTT sample");
    // Later windows are scaled by the peer's shift.
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(30));
    assert_eq!(tcb.snd_wnd(), 64000 << 3);
}

#[test]
fn active_open_refused_by_rst() {
    let (l, r) = addrs();
    let mut tcb = Tcb::connect(&cfg(), l, r, ISS, t(0));
    sent_one(&mut tcb);
    // An ACK for something we never sent: RST, stay in SYN-SENT.
    tcb.on_segment(&seg(ACK, 9, ISS + 5, b""), t(1));
    assert_seg(&sent_one(&mut tcb), RST, ISS + 5, 0, b"");
    assert_eq!(tcb.state(), State::SynSent);
    tcb.on_segment(&seg(RST | ACK, 0, ISS + 1, b""), t(2));
    assert_eq!(tcb.state(), State::Closed);
    assert!(
        tcb.take_events()
            .contains(&Event::Reset(ResetReason::Refused))
    );
}

#[test]
fn simultaneous_open() {
    let (l, r) = addrs();
    let mut tcb = Tcb::connect(&cfg(), l, r, ISS, t(0));
    sent_one(&mut tcb);
    // The peer's SYN crosses ours.
    tcb.on_segment(&syn(), t(1));
    assert_eq!(tcb.state(), State::SynReceived);
    assert_seg(&sent_one(&mut tcb), SYN | ACK, ISS, IRS + 1, b"");
    // Its SYN-ACK arrives.
    tcb.on_segment(&seg(SYN | ACK, IRS, ISS + 1, b""), t(2));
    assert_eq!(tcb.state(), State::Established);
    assert!(tcb.take_events().contains(&Event::Connected));
}

#[test]
fn data_both_ways_and_ack_ranges() {
    let mut tcb = established();
    tcb.on_segment(&seg(ACK | PSH, IRS + 1, ISS + 1, b"hello"), t(20));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 6, b"");
    let mut buf = [0u8; 16];
    assert_eq!(tcb.recv(&mut buf, t(21)), 5);
    assert_eq!(&buf[..5], b"hello");

    assert_eq!(tcb.send(b"world", t(22)), 5);
    assert_seg(&sent_one(&mut tcb), ACK | PSH, ISS + 1, IRS + 6, b"world");
    // An ACK beyond what we sent: ACK back, drop (RFC 5961 §5.2).
    tcb.on_segment(&seg(ACK, IRS + 6, ISS + 100, b""), t(23));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 6, IRS + 6, b"");
    assert_eq!(tcb.snd_una(), ISS + 1);
    tcb.on_segment(&seg(ACK, IRS + 6, ISS + 6, b""), t(24));
    assert_eq!(tcb.snd_una(), ISS + 6);
    sent_none(&mut tcb);
}

#[test]
fn mss_segmentation() {
    let mut tcb = established();
    let data = vec![7u8; 3000];
    assert_eq!(tcb.send(&data, t(20)), 3000);
    let out = tcb.take_outgoing();
    let sizes: Vec<usize> = out.iter().map(|s| s.payload.len()).collect();
    assert_eq!(sizes, vec![1400, 1400, 200]);
    assert_eq!(out[2].flags, ACK | PSH);
    assert_eq!(out[1].seq, ISS + 1 + 1400);
}

/// Writes `n` bytes through the relay's interface (`send_spare` + `send_commit`), saying
/// whether more follows at once.
fn relay_write(tcb: &mut Tcb, n: usize, more: bool, now: Instant) {
    let (a, b) = tcb.send_spare(n);
    assert!(a.len() + b.len() >= n, "room for {n}");
    let first = a.len().min(n);
    a[..first].fill(3);
    b[..n - first].fill(3);
    tcb.send_commit(n, more, now);
}

#[test]
fn a_short_tail_waits_for_more_while_data_is_in_flight_unless_pushed() {
    // RFC 9293 §3.8.6.2.1: a relayed stream topped up by an ACK's worth at a time would
    // otherwise leave a runt after every top-up.
    let mut tcb = established();
    relay_write(&mut tcb, 3000, true, t(20));
    let sizes: Vec<usize> = tcb
        .take_outgoing()
        .iter()
        .map(|s| s.payload.len())
        .collect();
    assert_eq!(sizes, vec![1400, 1400], "the 200-byte tail waits for more");
    // More comes: it joins the tail in a full segment.
    relay_write(&mut tcb, 1300, true, t(21));
    let sizes: Vec<usize> = tcb
        .take_outgoing()
        .iter()
        .map(|s| s.payload.len())
        .collect();
    assert_eq!(sizes, vec![1400], "200 + 1200 of the new bytes; 100 wait");
    // Nothing more for now (the upstream would block): the rest goes at once.
    tcb.send_push(t(22));
    let s = sent_one(&mut tcb);
    assert_eq!((s.payload.len(), s.seq), (100, ISS + 1 + 4200));
    sent_none(&mut tcb);
    // Nothing in flight: a short write goes even with more announced (no ACK would come
    // to send it later).
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1 + 4300, b""), t(30));
    tcb.take_outgoing();
    relay_write(&mut tcb, 10, true, t(31));
    assert_eq!(sent_one(&mut tcb).payload.len(), 10);
    // A pushed short write with data in flight goes too (no Nagle by default).
    relay_write(&mut tcb, 20, false, t(32));
    assert_eq!(sent_one(&mut tcb).payload.len(), 20);
}

#[test]
fn out_of_order_segments_are_reassembled_with_sack() {
    let (l, r) = addrs();
    let config = EngineConfig {
        sack: true,
        ..cfg()
    };
    let mut s = syn();
    s.options.sack_permitted = true;
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    assert!(sent_one(&mut tcb).options.sack_permitted);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(1));

    tcb.on_segment(&seg(ACK, IRS + 6, ISS + 1, b"world"), t(2));
    let dup = sent_one(&mut tcb);
    assert_seg(&dup, ACK, ISS + 1, IRS + 1, b"");
    assert_eq!(dup.options.sack[0], Some((IRS + 6, IRS + 11)));
    assert_eq!(tcb.recv_available(), 0);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b"hello"), t(3));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 11, b"");
    let mut buf = [0u8; 10];
    assert_eq!(tcb.recv(&mut buf, t(4)), 10);
    assert_eq!(&buf, b"helloworld");
}

#[test]
fn graceful_close_initiated_locally() {
    let mut tcb = established();
    tcb.close(t(20));
    assert_eq!(tcb.state(), State::FinWait1);
    assert_seg(&sent_one(&mut tcb), ACK | FIN, ISS + 1, IRS + 1, b"");
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 2, b""), t(21));
    assert_eq!(tcb.state(), State::FinWait2);
    sent_none(&mut tcb);
    // Half-close: the peer may still send data, and we still take it.
    tcb.on_segment(&seg(ACK | PSH, IRS + 1, ISS + 2, b"late"), t(22));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 2, IRS + 5, b"");
    assert_eq!(tcb.recv_available(), 4);
    tcb.on_segment(&seg(ACK | FIN, IRS + 5, ISS + 2, b""), t(23));
    assert_eq!(tcb.state(), State::TimeWait);
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 2, IRS + 6, b"");
    assert_eq!(tcb.time_wait_left(t(23)), Some(Duration::from_secs(2)));
    tcb.on_timer(t(2022));
    assert_eq!(tcb.state(), State::TimeWait);
    tcb.on_timer(t(2023));
    assert_eq!(tcb.state(), State::Closed);
    assert!(tcb.take_events().contains(&Event::Closed));
}

#[test]
fn graceful_close_initiated_by_the_peer_with_half_close() {
    let mut tcb = established();
    tcb.on_segment(&seg(ACK | FIN, IRS + 1, ISS + 1, b""), t(20));
    assert_eq!(tcb.state(), State::CloseWait);
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 2, b"");
    assert!(tcb.take_events().contains(&Event::PeerClosed));
    assert!(tcb.recv_finished());
    // CLOSE-WAIT still sends.
    tcb.send(b"response", t(21));
    assert_seg(
        &sent_one(&mut tcb),
        ACK | PSH,
        ISS + 1,
        IRS + 2,
        b"response",
    );
    tcb.close(t(22));
    assert_eq!(tcb.state(), State::LastAck);
    assert_seg(&sent_one(&mut tcb), ACK | FIN, ISS + 9, IRS + 2, b"");
    tcb.on_segment(&seg(ACK, IRS + 2, ISS + 10, b""), t(23));
    assert_eq!(
        tcb.state(),
        State::Closed,
        "the passive closer has no TIME-WAIT"
    );
}

#[test]
fn simultaneous_close() {
    let mut tcb = established();
    tcb.close(t(20));
    assert_seg(&sent_one(&mut tcb), ACK | FIN, ISS + 1, IRS + 1, b"");
    // The peer's FIN crosses ours (it does not acknowledge ours yet).
    tcb.on_segment(&seg(ACK | FIN, IRS + 1, ISS + 1, b""), t(21));
    assert_eq!(tcb.state(), State::Closing);
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 2, IRS + 2, b"");
    tcb.on_segment(&seg(ACK, IRS + 2, ISS + 2, b""), t(22));
    assert_eq!(tcb.state(), State::TimeWait);
}

/// A connection in TIME-WAIT entered at t = 30 ms.
fn time_wait() -> Tcb {
    let mut tcb = established();
    tcb.close(t(20));
    sent_one(&mut tcb);
    tcb.on_segment(&seg(ACK | FIN, IRS + 1, ISS + 2, b""), t(30));
    assert_eq!(tcb.state(), State::TimeWait);
    sent_one(&mut tcb);
    tcb
}

#[test]
fn time_wait_acks_a_retransmitted_fin_and_restarts() {
    let mut tcb = time_wait();
    tcb.on_segment(&seg(ACK | FIN, IRS + 1, ISS + 2, b""), t(1000));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 2, IRS + 2, b"");
    assert_eq!(tcb.time_wait_left(t(1000)), Some(Duration::from_secs(2)));
    tcb.on_timer(t(2500));
    assert_eq!(tcb.state(), State::TimeWait, "the timer was restarted");
    tcb.on_timer(t(3000));
    assert_eq!(tcb.state(), State::Closed);
}

#[test]
fn time_wait_absorbs_late_segments_and_ignores_rst() {
    let mut tcb = time_wait();
    // A late duplicate of old data: acknowledged, nothing else.
    tcb.on_segment(&seg(ACK | PSH, IRS - 10, ISS + 2, b"old"), t(100));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 2, IRS + 2, b"");
    assert_eq!(tcb.state(), State::TimeWait);
    // RFC 1337: no assassination.
    tcb.on_segment(&seg(RST, IRS + 2, 0, b""), t(101));
    assert_eq!(tcb.state(), State::TimeWait);
    sent_none(&mut tcb);
}

#[test]
fn rst_validation_rfc5961() {
    let mut tcb = established();
    // In the window but not exact: challenge ACK.
    tcb.on_segment(&seg(RST, IRS + 100, 0, b""), t(20));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 1, b"");
    assert_eq!(tcb.state(), State::Established);
    // Outside the window: silently dropped.
    tcb.on_segment(&seg(RST, IRS + 10_000_000, 0, b""), t(21));
    sent_none(&mut tcb);
    // A SYN on an established connection: challenge ACK.
    tcb.on_segment(&seg(SYN, IRS + 50, 0, b""), t(22));
    assert_seg(&sent_one(&mut tcb), ACK, ISS + 1, IRS + 1, b"");
    assert_eq!(tcb.state(), State::Established);
    // Exact: reset.
    tcb.on_segment(&seg(RST, IRS + 1, 0, b""), t(23));
    assert_eq!(tcb.state(), State::Closed);
    assert!(
        tcb.take_events()
            .contains(&Event::Reset(ResetReason::PeerReset))
    );
}

#[test]
fn abort_sends_rst_and_discards_buffers() {
    let mut tcb = established();
    tcb.on_segment(&seg(ACK | PSH, IRS + 1, ISS + 1, b"unread"), t(20));
    sent_one(&mut tcb);
    tcb.abort(t(21));
    assert_seg(&sent_one(&mut tcb), RST, ISS + 1, 0, b"");
    assert_eq!(tcb.state(), State::Closed);
    assert_eq!(tcb.recv_available(), 0);
    let ev = tcb.take_events();
    assert!(ev.contains(&Event::Reset(ResetReason::Aborted)) && ev.contains(&Event::Closed));
}

#[test]
fn retransmission_with_backoff_then_reset() {
    let mut tcb = established();
    tcb.send(b"data", t(100));
    assert_seg(&sent_one(&mut tcb), ACK | PSH, ISS + 1, IRS + 1, b"data");
    let rto = tcb.rto();
    let mut now = t(100) + rto;
    for i in 0..3 {
        tcb.on_timer(now);
        let s = sent_one(&mut tcb);
        assert_eq!(
            (s.seq, &s.payload[..]),
            (ISS + 1, &b"data"[..]),
            "retransmission {i}"
        );
        assert_eq!(tcb.rto(), rto * (1 << (i + 1)), "exponential backoff");
        now = now + tcb.rto();
    }
    tcb.on_timer(now);
    assert_seg(&sent_one(&mut tcb), RST, ISS + 5, 0, b"");
    assert_eq!(tcb.state(), State::Closed);
    assert!(
        tcb.take_events()
            .contains(&Event::Reset(ResetReason::RetransmitLimit))
    );
}

#[test]
fn fast_retransmit_after_three_duplicate_acks() {
    let mut tcb = established();
    tcb.send(&[1u8; 5 * 1400], t(100));
    assert_eq!(tcb.take_outgoing().len(), 5);
    for _ in 0..2 {
        tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(110));
        sent_none(&mut tcb);
    }
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(111));
    let r = sent_one(&mut tcb);
    assert_eq!((r.seq, r.payload.len()), (ISS + 1, 1400));
    assert_eq!(tcb.stats.retransmits, 1);
    // A partial ACK (NewReno) retransmits the next hole at once.
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1 + 1400, b""), t(120));
    let r = sent_one(&mut tcb);
    assert_eq!(r.seq, ISS + 1 + 1400);
}

/// RFC 6675: a receiver that coalesced the segments after a hole (GRO) sends one duplicate
/// ACK whose SACK block covers three segments: that is enough to retransmit the hole at once.
#[test]
fn one_sacked_duplicate_ack_covering_three_segments_retransmits() {
    let (l, r) = addrs();
    let config = EngineConfig {
        sack: true,
        ..cfg()
    };
    let mut s = syn();
    s.options.sack_permitted = true;
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    tcb.take_outgoing();
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    tcb.take_outgoing();
    tcb.send(&[1u8; 5 * 1400], t(100));
    assert_eq!(tcb.take_outgoing().len(), 5);
    // Segment 1 lost; 2..=4 arrived and were merged into one ACK.
    let mut dup = seg(ACK, IRS + 1, ISS + 1, b"");
    dup.options.sack[0] = Some((ISS + 1 + 1400, ISS + 1 + 4 * 1400));
    tcb.on_segment(&dup, t(110));
    let r = sent_one(&mut tcb);
    assert_eq!((r.seq, r.payload.len()), (ISS + 1, 1400));
    // Two segments' worth is not enough (it could be reordering).
    let mut tcb = Tcb::accept(&config, l, r_addr(), ISS, &s, t(0));
    tcb.take_outgoing();
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    tcb.send(&[1u8; 5 * 1400], t(100));
    tcb.take_outgoing();
    let mut dup = seg(ACK, IRS + 1, ISS + 1, b"");
    dup.options.sack[0] = Some((ISS + 1 + 1400, ISS + 1 + 3 * 1400));
    tcb.on_segment(&dup, t(110));
    sent_none(&mut tcb);
}

fn r_addr() -> SocketAddr {
    addrs().1
}

#[test]
fn zero_window_is_probed() {
    let mut tcb = established();
    let mut closed = seg(ACK, IRS + 1, ISS + 1, b"");
    closed.window = 0;
    tcb.on_segment(&closed, t(100));
    tcb.send(b"abc", t(101));
    sent_none(&mut tcb);
    let at = tcb.next_deadline().expect("persist timer");
    tcb.on_timer(at);
    let probe = sent_one(&mut tcb);
    assert_eq!((probe.seq, &probe.payload[..]), (ISS + 1, &b"a"[..]));
    // The window opens: data flows.
    tcb.on_segment(
        &seg(ACK, IRS + 1, ISS + 1, b""),
        at + Duration::from_millis(5),
    );
    assert_seg(&sent_one(&mut tcb), ACK | PSH, ISS + 1, IRS + 1, b"abc");
}

#[test]
fn keepalive_declares_a_silent_peer_dead() {
    let mut tcb = established();
    let mut now = t(10) + Duration::from_secs(10);
    assert_eq!(tcb.next_deadline(), Some(now));
    for _ in 0..3 {
        tcb.on_timer(now);
        assert_seg(&sent_one(&mut tcb), ACK, ISS, IRS + 1, b"");
        now = now + Duration::from_secs(1);
    }
    tcb.on_timer(now);
    assert_seg(&sent_one(&mut tcb), RST, ISS + 1, 0, b"");
    assert!(
        tcb.take_events()
            .contains(&Event::Reset(ResetReason::KeepaliveTimeout))
    );
}

#[test]
fn keepalive_answered_keeps_the_connection() {
    let mut tcb = established();
    let now = t(10) + Duration::from_secs(10);
    tcb.on_timer(now);
    sent_one(&mut tcb);
    tcb.on_segment(
        &seg(ACK, IRS + 1, ISS + 1, b""),
        now + Duration::from_millis(1),
    );
    assert_eq!(
        tcb.next_deadline(),
        Some(now + Duration::from_millis(1) + Duration::from_secs(10))
    );
    assert_eq!(tcb.state(), State::Established);
}

#[test]
fn paws_drops_old_timestamps() {
    let (l, r) = addrs();
    let config = EngineConfig {
        timestamps: true,
        ..cfg()
    };
    let mut s = syn();
    s.options.timestamps = Some((1000, 0));
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    let synack = sent_one(&mut tcb);
    assert_eq!(synack.options.timestamps.map(|t| t.1), Some(1000));
    let mut ack = seg(ACK, IRS + 1, ISS + 1, b"");
    ack.options.timestamps = Some((1001, synack.options.timestamps.unwrap().0));
    tcb.on_segment(&ack, t(5));
    assert_eq!(tcb.state(), State::Established);
    let mut old = seg(ACK | PSH, IRS + 1, ISS + 1, b"stale");
    old.options.timestamps = Some((900, 0));
    tcb.on_segment(&old, t(6));
    sent_one(&mut tcb);
    assert_eq!(tcb.recv_available(), 0, "PAWS must drop the old segment");
}

#[test]
fn established_from_a_cookie_handshake() {
    let (l, r) = addrs();
    let h = CookieHandshake {
        client_isn: IRS,
        server_isn: ISS,
        mss: 1460,
        wscale: Some((7, 7)),
        sack: true,
        timestamps: Some((77, 4242)),
    };
    let mut ack = seg(ACK, IRS + 1, ISS + 1, b"");
    ack.window = 502;
    ack.options = TcpOptions {
        timestamps: Some((78, 4242)),
        ..TcpOptions::default()
    };
    let config = EngineConfig {
        timestamps: true,
        sack: true,
        ..cfg()
    };
    let mut tcb = Tcb::from_cookie(&config, l, r, &h, &ack, t(0));
    assert_eq!(tcb.state(), State::Established);
    assert_eq!(tcb.snd_wnd(), 502 << 7);
    tcb.on_segment(&ack, t(0));
    sent_none(&mut tcb);
    let mut data = seg(ACK | PSH, IRS + 1, ISS + 1, b"GET /");
    data.options.timestamps = Some((79, 4242));
    tcb.on_segment(&data, t(1));
    let a = sent_one(&mut tcb);
    assert_seg(&a, ACK, ISS + 1, IRS + 6, b"");
    let (tsval, tsecr) = a.options.timestamps.expect("timestamps");
    assert_eq!(tsecr, 79);
    assert!(
        tsval.wrapping_sub(4242) < 1000,
        "our TSval continues the SYN-ACK's clock"
    );
}

/// An established connection with SACK that sent `segments` full segments of 1400 bytes.
fn sack_connection_that_sent(segments: usize) -> Tcb {
    sack_connection_with(
        EngineConfig {
            sack: true,
            ..cfg()
        },
        segments,
    )
}

fn sack_connection_with(config: EngineConfig, segments: usize) -> Tcb {
    let (l, r) = addrs();
    let mut s = syn();
    s.options.sack_permitted = true;
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    sent_one(&mut tcb);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(1));
    tcb.send(&vec![9u8; segments * 1400], t(2));
    assert_eq!(tcb.take_outgoing().len(), segments);
    tcb
}

#[test]
fn retransmission_after_timeout_skips_sacked_data() {
    // (The timer here is the retransmission timer's: no tail loss probe first.)
    let config = EngineConfig {
        sack: true,
        tail_loss_probe: false,
        ..cfg()
    };
    let mut tcb = sack_connection_with(config, 4);
    // Of the four segments 0..=3 the peer reports holding segment 1 only.
    let mut a = seg(ACK, IRS + 1, ISS + 1, b"");
    a.options.sack[0] = Some((ISS + 1 + 1400, ISS + 1 + 2800));
    tcb.on_segment(&a, t(3));
    let at = tcb.next_deadline().unwrap();
    tcb.on_timer(at);
    let first = sent_one(&mut tcb);
    assert_eq!(first.seq, ISS + 1);
    // The ACK of the first opens the window: the SACKed second segment is skipped.
    tcb.on_segment(
        &seg(ACK, IRS + 1, ISS + 1 + 1400, b""),
        at + Duration::from_millis(10),
    );
    let out = tcb.take_outgoing();
    let seqs: Vec<u32> = out.iter().map(|s| s.seq).collect();
    // Slow start allows two segments and the SACKed segment 1 is not in flight: segments 2
    // and 3 go, not segment 1.
    assert_eq!(seqs, vec![ISS + 1 + 2800, ISS + 1 + 4200], "{out:#?}");
}

/// A peer that sends as fast as our window lets it, up to `rate` bytes per round trip of
/// 10 ms, for `rounds` round trips, while the application reads everything at once; returns
/// the window we advertised after each round.
fn window_limited_upload(tcb: &mut Tcb, rate: usize, rounds: u64) -> Vec<usize> {
    let mut seq = IRS + 1;
    let payload = [7u8; 1400];
    let mut windows = Vec::new();
    for round in 0..rounds {
        let now = 10 + round * 10;
        let mut budget = tcb.rcv_wnd().min(rate);
        while budget >= payload.len() {
            tcb.on_segment(&seg(ACK, seq, ISS + 1, &payload), t(now));
            seq = seq.wrapping_add(payload.len() as u32);
            budget -= payload.len();
            // The relay writes it upstream at once.
            let n = tcb.recv_available();
            tcb.recv_consume(n, t(now));
        }
        tcb.take_outgoing();
        windows.push(tcb.rcv_wnd());
    }
    windows
}

#[test]
fn the_receive_window_grows_with_what_arrives_per_round_trip() {
    let mut tcb = established();
    assert_eq!(tcb.rcv_wnd(), 256 << 10);
    // 4 MB per 10 ms round trip (3.2 Gbit/s): the window must pass that product.
    let windows = window_limited_upload(&mut tcb, 4 << 20, 20);
    assert!(
        windows.windows(2).all(|w| w[1] >= w[0]),
        "never shrinks: {windows:?}"
    );
    let last = *windows.last().unwrap();
    assert!(
        last >= 4 << 20,
        "window {last} after 20 round trips: {windows:?}"
    );
    assert!(last <= tcb.cfg.recv_buffer_max);
    // At rest (everything read) nothing stays allocated, however large the window.
    assert_eq!(tcb.buffer_memory(), 0);
}

#[test]
fn the_receive_window_stops_growing_once_ahead_of_a_steady_sender() {
    let mut tcb = established();
    // 100 KB per round trip.
    let windows = window_limited_upload(&mut tcb, 100_000, 30);
    let settled = windows[10];
    assert!(windows[10..].iter().all(|&w| w == settled), "{windows:?}");
    assert!(settled <= 16 * 100_000, "{windows:?}");
}

#[test]
fn buffers_grow_within_the_global_budget_and_give_it_back() {
    let budget = Arc::new(crate::engine::budget::BufferBudget::new(1 << 20));
    let cfg = EngineConfig {
        buffer_budget: budget.clone(),
        ..cfg()
    };
    let (l, r) = addrs();
    let mut tcb = Tcb::accept(&cfg, l, r, ISS, &syn(), t(0));
    tcb.take_outgoing();
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    let windows = window_limited_upload(&mut tcb, 8 << 20, 20);
    let last = *windows.last().unwrap();
    assert_eq!(
        last,
        (256 << 10) + (1 << 20),
        "grew by the whole budget and no more"
    );
    assert_eq!(budget.used(), 1 << 20);
    // A second connection finds the budget spent: it keeps its start size.
    let mut other = Tcb::accept(&cfg, l, "10.0.0.3:1".parse().unwrap(), ISS, &syn(), t(0));
    other.take_outgoing();
    other.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    let w = window_limited_upload(&mut other, 8 << 20, 20);
    assert_eq!(*w.last().unwrap(), 256 << 10);
    // The first one ends: its share returns.
    tcb.abort(t(500));
    assert_eq!(budget.used(), 0);
    drop(tcb);
    assert_eq!(budget.used(), 0);
}

#[test]
fn the_send_buffer_follows_the_congestion_window() {
    // (Unpaced: the test hands every round's ACKs over at one instant.)
    let (l, r) = addrs();
    let config = EngineConfig {
        pacing: false,
        ..cfg()
    };
    let mut tcb = Tcb::accept(&config, l, r, ISS, &syn(), t(0));
    tcb.take_outgoing();
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    // The peer's window is large (scale 7: 64000 << 7 ≈ 8 MB).
    tcb.snd_wscale = 7;
    let chunk = vec![1u8; 64 << 10];
    let mut ack = ISS + 1;
    let mut max_seen = 0;
    for round in 0..12u64 {
        let now = 20 + round * 10;
        // The relay fills whatever room the send buffer has.
        while tcb.send_capacity() > 0 {
            let n = tcb.send(&chunk[..chunk.len().min(tcb.send_capacity())], t(now));
            if n == 0 {
                break;
            }
        }
        let sent: Vec<_> = tcb.take_outgoing();
        // One ACK per two segments, as a receiver sends them.
        for pair in sent.chunks(2) {
            let end = pair
                .last()
                .map_or(ack, |s| s.seq.wrapping_add(s.payload.len() as u32));
            ack = ack.max(end);
            tcb.on_segment(&seg(ACK, IRS + 1, ack, b""), t(now + 10));
        }
        max_seen = max_seen.max(tcb.snd_buf.max());
        assert!(
            tcb.snd_buf.max() >= (2 * tcb.cwnd()).min(tcb.cfg.send_buffer_max),
            "send buffer {} behind cwnd {}",
            tcb.snd_buf.max(),
            tcb.cwnd()
        );
    }
    assert!(
        tcb.cwnd() > 1 << 20,
        "slow start went on: cwnd {}",
        tcb.cwnd()
    );
    assert!(
        max_seen >= 2 << 20,
        "send buffer {max_seen} with cwnd {}",
        tcb.cwnd()
    );
}

/// RFC 6675: two segments of one window lost; the first duplicate ACKs' SACK blocks show
/// both holes, and both are retransmitted at once (NewReno would send the second only after
/// the partial ACK, a round trip later), each once.
#[test]
fn sack_recovery_retransmits_every_lost_hole_in_one_round_trip() {
    let (mut tcb, at) = ten_segments_in_flight();
    // Segments 1 and 4 lost: the receiver holds 0, 2-3 and 5-9.
    let mut dup = seg(ACK, IRS + 1, at(1), b"");
    dup.options.sack[0] = Some((at(5), at(10)));
    dup.options.sack[1] = Some((at(2), at(4)));
    tcb.on_segment(&dup, t(110));
    let rtx: Vec<u32> = tcb.take_outgoing().iter().map(|s| s.seq).collect();
    assert_eq!(rtx, vec![at(1), at(4)], "both holes at once");
    // More duplicates change nothing: each hole goes once per recovery.
    tcb.on_segment(&dup, t(111));
    sent_none(&mut tcb);
    // The first retransmission arrives: a partial ACK; the second is already on its way.
    let mut partial = seg(ACK, IRS + 1, at(4), b"");
    partial.options.sack[0] = Some((at(5), at(10)));
    tcb.on_segment(&partial, t(120));
    sent_none(&mut tcb);
    tcb.on_segment(&seg(ACK, IRS + 1, at(10), b""), t(121));
    assert!(
        tcb.recover.is_none(),
        "recovery ends with everything acknowledged"
    );
    assert_eq!(tcb.stats.retransmits, 2);
}

/// Pacing: with an RTT of 10 ms, what leaves at once is bounded by the burst allowance; the
/// rest follows on the pacing timer, at about twice cwnd per RTT in slow start, and nothing is
/// held back for good.
#[test]
fn data_is_paced_by_the_timer_not_sent_in_one_burst() {
    let mut tcb = established();
    assert_eq!(tcb.srtt(), Some(Duration::from_millis(10)));
    tcb.snd_wscale = 7;
    // Grow the window: a few rounds of full ACKs.
    let mut ack = ISS + 1;
    let mut now = 20;
    let mut sent_total = 0usize;
    let mut paced_rounds = 0;
    for _ in 0..6 {
        tcb.send(&vec![1u8; 400_000], t(now));
        // Drive the pacing timer through the round, 1 ms at a time.
        let mut in_round = Vec::new();
        for ms in 0..10 {
            tcb.on_timer(t(now + ms));
            in_round.push(tcb.take_outgoing());
        }
        let burst_now = in_round[0].len();
        let later: usize = in_round[1..].iter().map(Vec::len).sum();
        let cwnd_segments = tcb.cwnd() / 1400;
        if cwnd_segments > 40 {
            assert!(
                burst_now < cwnd_segments,
                "a window of {cwnd_segments} left in one burst of {burst_now}"
            );
            assert!(later > 0, "the rest followed on the timer");
            paced_rounds += 1;
        }
        for seg in in_round.iter().flatten() {
            sent_total += seg.payload.len();
            ack = ack.max(seg.seq.wrapping_add(seg.payload.len() as u32));
        }
        now += 10;
        // ACKs every other segment's worth.
        let mut a = tcb.snd_una;
        while a < SeqNum(ack) {
            a = (a + 2800usize).min(SeqNum(ack));
            tcb.on_segment(&seg(ACK, IRS + 1, a.0, b""), t(now));
        }
    }
    assert!(
        paced_rounds >= 2,
        "only {paced_rounds} rounds had a window to pace"
    );
    assert!(
        sent_total > 500_000,
        "slow start went on paced: {sent_total} bytes"
    );
    // Nothing stalls: with data waiting and room in the window, a timer is always set.
    if tcb.send_queued() > tcb.snd_max - tcb.snd_una {
        assert!(tcb.next_deadline().is_some());
    }
}

#[test]
fn after_a_timeout_old_sacks_do_not_cut_the_window_again() {
    let mut tcb = sack_connection_that_sent(10);
    // Segments 0 and 1 are lost, 2..=9 arrive: fast recovery starts.
    let mut a = seg(ACK, IRS + 1, ISS + 1, b"");
    a.options.sack[0] = Some((ISS + 1 + 2 * 1400, ISS + 1 + 10 * 1400));
    tcb.on_segment(&a, t(3));
    tcb.take_outgoing();
    // The retransmissions are lost as well: the timer fires, one segment goes.
    let at = tcb.next_deadline().unwrap();
    tcb.on_timer(at);
    assert_eq!(sent_one(&mut tcb).seq, ISS + 1);
    assert_eq!(tcb.cwnd(), 1400);
    // Its ACK still carries the old SACK block (8 segments above SND.UNA): that is the
    // loss already dealt with, not a new one. Slow start goes on and segment 1 follows.
    let mut a = seg(ACK, IRS + 1, ISS + 1 + 1400, b"");
    a.options.sack[0] = Some((ISS + 1 + 2 * 1400, ISS + 1 + 10 * 1400));
    tcb.on_segment(&a, at + Duration::from_millis(10));
    assert_eq!(tcb.cwnd(), 2 * 1400, "the window was cut again");
    let out = tcb.take_outgoing();
    assert_eq!(out.first().map(|s| s.seq), Some(ISS + 1 + 1400), "{out:#?}");
}

/// A SACK connection established at 10 ms (an RTT of 10 ms measured on the handshake).
fn sack_established_after_10ms() -> Tcb {
    let (l, r) = addrs();
    let config = EngineConfig {
        sack: true,
        ..cfg()
    };
    let mut s = syn();
    s.options.sack_permitted = true;
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    tcb.take_outgoing();
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(10));
    tcb.take_outgoing();
    tcb
}

/// A SACK connection that sent ten segments of 1400 bytes at 100 ms, with an RTT of 10 ms
/// measured on the first; returns it and the sequence number of segment `i`.
fn ten_segments_in_flight() -> (Tcb, impl Fn(u32) -> u32) {
    let mut tcb = sack_established_after_10ms();
    tcb.send(&[1u8; 10 * 1400], t(100));
    assert_eq!(tcb.take_outgoing().len(), 10);
    (tcb, |i: u32| ISS + 1 + i * 1400)
}

/// RFC 8985 §7: the last four segments of a flight are lost. No SACK can come, but two
/// SRTTs after the last ACK a probe (the last segment again) goes; its SACK shows the
/// three below it lost, and they are retransmitted within two round trips, long before
/// the 200 ms RTO: one for the one segment the probe's SACK reported delivered, two more
/// when that one is acknowledged (PRR, RFC 9937 §6: packet conservation, plus one on a
/// safe ACK).
#[test]
fn a_lost_tail_is_found_by_a_probe_not_a_timeout() {
    let (mut tcb, at) = ten_segments_in_flight();
    tcb.on_segment(&seg(ACK, IRS + 1, at(6), b""), t(110));
    tcb.take_outgoing(); // (slow start sends nothing new: the application sent no more)
    let probe_at = tcb.next_deadline().unwrap();
    assert!(
        probe_at <= t(110) + Duration::from_millis(25),
        "the probe is due two SRTTs (~20 ms) after the ACK, not at {probe_at:?}"
    );
    tcb.on_timer(probe_at);
    let probe = sent_one(&mut tcb);
    assert_eq!(
        (probe.seq, probe.payload.len()),
        (at(9), 1400),
        "{probe:#?}"
    );
    assert_eq!(tcb.stats.tail_loss_probes, 1);
    // The receiver SACKs the probe: segments 6, 7 and 8 are missing.
    let mut sack = seg(ACK, IRS + 1, at(6), b"");
    sack.options.sack[0] = Some((at(9), at(10)));
    tcb.on_segment(&sack, probe_at + Duration::from_millis(10));
    let rtx: Vec<u32> = tcb.take_outgoing().iter().map(|s| s.seq).collect();
    assert_eq!(rtx, vec![at(6)]);
    let mut ack = seg(ACK, IRS + 1, at(7), b"");
    ack.options.sack[0] = Some((at(9), at(10)));
    tcb.on_segment(&ack, probe_at + Duration::from_millis(20));
    let rtx: Vec<u32> = tcb.take_outgoing().iter().map(|s| s.seq).collect();
    assert_eq!(rtx, vec![at(7), at(8)]);
    tcb.on_segment(
        &seg(ACK, IRS + 1, at(10), b""),
        probe_at + Duration::from_millis(20),
    );
    assert_eq!(tcb.snd_una(), at(10));
    assert!(tcb.recover.is_none());
    assert_eq!(tcb.stats.timeouts, 0);
    assert_eq!(tcb.stats.retransmits, 4, "the probe and the three holes");
    // A loss is a loss: the window was reduced as in fast recovery.
    assert!(tcb.cc.ssthresh() < usize::MAX);
}

/// The probe (the last segment again) repairs the only loss: the ACK passes the probe's end
/// without a DSACK, so the window is reduced as fast recovery would have.
#[test]
fn a_probe_that_repairs_a_loss_reduces_the_window() {
    let (mut tcb, at) = ten_segments_in_flight();
    tcb.on_segment(&seg(ACK, IRS + 1, at(8), b""), t(110));
    tcb.take_outgoing();
    let probe_at = tcb.next_deadline().unwrap();
    tcb.on_timer(probe_at);
    assert_eq!(sent_one(&mut tcb).seq, at(9));
    // Segment 9 was lost and the probe filled the hole.
    tcb.on_segment(
        &seg(ACK, IRS + 1, at(10), b""),
        probe_at + Duration::from_millis(10),
    );
    assert_eq!(
        tcb.cc.ssthresh(),
        usize::MAX,
        "one ACK at the probe's end decides nothing"
    );
    // The next data's ACK goes past the probe, with no DSACK ever having come: a loss.
    tcb.send(&[2u8; 1400], probe_at + Duration::from_millis(20));
    assert_eq!(sent_one(&mut tcb).seq, at(10));
    tcb.on_segment(
        &seg(ACK, IRS + 1, at(11), b""),
        probe_at + Duration::from_millis(30),
    );
    assert_eq!(tcb.stats.tail_losses_repaired, 1);
    assert!(tcb.cc.ssthresh() < usize::MAX);
    assert_eq!(tcb.stats.timeouts, 0);
}

/// Nothing was lost, only the ACKs were late: the receiver reports the probe as a duplicate
/// (DSACK, RFC 2883) and the window stays.
#[test]
fn a_probe_reported_as_a_duplicate_changes_nothing() {
    let (mut tcb, at) = ten_segments_in_flight();
    tcb.on_segment(&seg(ACK, IRS + 1, at(8), b""), t(110));
    tcb.take_outgoing();
    let probe_at = tcb.next_deadline().unwrap();
    tcb.on_timer(probe_at);
    assert_eq!(sent_one(&mut tcb).seq, at(9));
    let mut dsack = seg(ACK, IRS + 1, at(10), b"");
    dsack.options.sack[0] = Some((at(9), at(10)));
    tcb.on_segment(&dsack, probe_at + Duration::from_millis(10));
    tcb.send(&[2u8; 1400], probe_at + Duration::from_millis(20));
    assert_eq!(sent_one(&mut tcb).seq, at(10));
    tcb.on_segment(
        &seg(ACK, IRS + 1, at(11), b""),
        probe_at + Duration::from_millis(30),
    );
    assert_eq!(tcb.stats.tail_losses_repaired, 0);
    assert_eq!(tcb.cc.ssthresh(), usize::MAX, "still in slow start");
}

/// With new data waiting (held back by the congestion window, with room in the peer's) the
/// probe carries new data rather than a retransmission, and no window reduction follows.
#[test]
fn a_probe_sends_new_data_when_there_is_some() {
    let mut tcb = sack_established_after_10ms();
    let at = |i: u32| ISS + 1 + i * 1400;
    // Twenty segments: the initial window takes what it takes; no ACK comes back.
    tcb.send(&[1u8; 20 * 1400], t(100));
    let first = tcb.take_outgoing();
    let end = first
        .last()
        .map(|s| s.seq + s.payload.len() as u32)
        .unwrap();
    assert!(end < at(19), "the initial window holds data back");
    let probe_at = tcb.next_deadline().unwrap();
    assert!(
        probe_at < t(100) + Duration::from_millis(200),
        "{probe_at:?}"
    );
    tcb.on_timer(probe_at);
    let probe = sent_one(&mut tcb);
    assert_eq!(probe.seq, end, "new data, not a retransmission");
    let probe_end = probe.seq + probe.payload.len() as u32;
    assert_eq!(tcb.stats.retransmits, 0);
    // Everything arrived: the ACKs were only slow. The rest follows, no reduction.
    tcb.on_segment(
        &seg(ACK, IRS + 1, probe_end, b""),
        probe_at + Duration::from_millis(10),
    );
    let rest = tcb.take_outgoing();
    assert_eq!(rest.first().map(|s| s.seq), Some(probe_end));
    assert_eq!(tcb.cc.ssthresh(), usize::MAX, "no loss, no reduction");
    tcb.on_segment(
        &seg(ACK, IRS + 1, at(20), b""),
        probe_at + Duration::from_millis(20),
    );
    assert_eq!(tcb.take_outgoing().len(), 0);
    assert_eq!(tcb.tlp_at, None, "nothing outstanding, nothing to probe");
}

/// Fast recovery that began with our FIN in flight: when the ACKs show the data complete
/// but not the FIN, the FIN is the hole and goes again at once (before, SACK recovery only
/// resent data and the FIN waited for the retransmission timer). The ACK that completes
/// the data echoes the retransmission's timestamp: that copy arrived, so the FIN, sent
/// before it, is lost (without timestamps a late original could have completed the data,
/// and the FIN is left to the probe or the timer).
#[test]
fn a_fin_lost_in_recovery_is_resent_without_the_timer() {
    let config = EngineConfig {
        sack: true,
        timestamps: true,
        tail_loss_probe: false,
        pacing: false,
        ..cfg()
    };
    let (l, r) = addrs();
    let mut s = syn();
    s.options.sack_permitted = true;
    s.options.timestamps = Some((1000, 0));
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    let tsval = |s: &TcpRepr| s.options.timestamps.map_or(0, |t| t.0);
    let synack = sent_one(&mut tcb);
    let ack = |n: u32, echo: u32| {
        let mut a = seg(ACK, IRS + 1, n, b"");
        a.options.timestamps = Some((2000, echo));
        a
    };
    tcb.on_segment(&ack(ISS + 1, tsval(&synack)), t(1));
    let mss = 1400 - 12; // the timestamp option takes 12 bytes of each segment
    let at = |i: u32| ISS + 1 + i * mss;
    tcb.send(&vec![9u8; 10 * mss as usize], t(2));
    let data = tcb.take_outgoing();
    assert_eq!(data.len(), 10);
    tcb.close(t(3));
    let fin = sent_one(&mut tcb);
    assert_eq!((fin.flags & FIN, fin.seq), (FIN, at(10)));
    // Segment 2 and the FIN are lost.
    let mut a = ack(at(2), tsval(&data[1]));
    a.options.sack[0] = Some((at(3), at(10)));
    tcb.on_segment(&a, t(10));
    let rtx = sent_one(&mut tcb);
    assert_eq!(rtx.seq, at(2));
    tcb.on_segment(&ack(at(10), tsval(&rtx)), t(20));
    let again = sent_one(&mut tcb);
    assert_eq!((again.flags & FIN, again.seq), (FIN, at(10)), "{again:#?}");
    assert_eq!(tcb.stats.timeouts, 0);
}

/// A response and the upstream's close in one batch leave as one segment with FIN (as
/// Linux adds a FIN to the last queued skb); once the segment was handed out, the FIN goes
/// alone.
#[test]
fn a_fin_rides_on_the_last_queued_data_segment() {
    let mut tcb = established();
    tcb.send(b"response", t(20));
    tcb.close(t(20));
    let s = sent_one(&mut tcb);
    assert_seg(&s, ACK | PSH | FIN, ISS + 1, IRS + 1, b"response");
    assert_eq!(tcb.state(), State::FinWait1);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1 + 9, b""), t(30));
    assert_eq!(tcb.state(), State::FinWait2);

    let mut tcb = established();
    tcb.send(b"response", t(20));
    assert_eq!(sent_one(&mut tcb).flags & FIN, 0);
    tcb.close(t(21));
    assert_seg(&sent_one(&mut tcb), ACK | FIN, ISS + 1 + 8, IRS + 1, b"");
}

/// A SACK connection (no pacing, no probes) with at least `n` segments of 1400 bytes in
/// flight and more waiting, brought there by slow start (every segment acknowledged on its
/// own, 10 ms later); returns it, the sequence number of the last flight's segment `i`, and
/// how many segments that flight has.
fn sack_flight(n: usize) -> (Tcb, impl Fn(u32) -> u32, u32) {
    let config = EngineConfig {
        sack: true,
        pacing: false,
        tail_loss_probe: false,
        ..cfg()
    };
    // The peer scales its window (64000 << 7): only the congestion window limits.
    let (l, r) = addrs();
    let mut s = syn();
    s.options.sack_permitted = true;
    s.options.wscale = Some(7);
    let mut tcb = Tcb::accept(&config, l, r, ISS, &s, t(0));
    sent_one(&mut tcb);
    tcb.on_segment(&seg(ACK, IRS + 1, ISS + 1, b""), t(1));
    tcb.send(&vec![9u8; 10 * 1400], t(2));
    assert_eq!(tcb.take_outgoing().len(), 10);
    let mut first = ISS + 1;
    let mut now = 2;
    let mut flight = 10;
    loop {
        now += 10;
        for i in 0..flight {
            let ack = first + (i as u32 + 1) * 1400;
            tcb.on_segment(&seg(ACK, IRS + 1, ack, b""), t(now));
        }
        assert_eq!(tcb.take_outgoing().len(), 0, "no data was waiting");
        first += flight as u32 * 1400;
        flight = tcb.cc.window() / 1400;
        if flight >= n {
            // More data than the window takes: recovery has new data to send.
            tcb.send(&vec![7u8; 2 * flight * 1400], t(now));
            let sent = tcb.take_outgoing().len() as u32;
            assert!(sent as usize >= n);
            return (tcb, move |i: u32| first + i * 1400, sent);
        }
        tcb.send(&vec![7u8; flight * 1400], t(now));
        assert_eq!(tcb.take_outgoing().len(), flight);
    }
}

/// RFC 9937: one segment of a flight of 40 or more is lost and every later one is SACKed, an
/// ACK each. (The first two duplicate ACKs send new data, RFC 3042's limited transmit.)
/// The fast retransmission goes with the third duplicate ACK, and from then on
/// new segments leave at ssthresh/RecoverFS of the ACKs, never two at once and never more
/// than two ACKs apart, so the flight ends recovery at ssthresh. (RFC 6675 alone sent
/// nothing, the retransmission included, until pipe fell to ssthresh, a third of the ACKs
/// later.)
#[test]
fn proportional_rate_reduction_spreads_the_reduction_over_the_round_trip() {
    let (mut tcb, at, flight) = sack_flight(40);
    let mut sent_per_ack = Vec::new();
    let mut first_sent = None;
    for k in 1..flight {
        let mut a = seg(ACK, IRS + 1, at(0), b"");
        a.options.sack[0] = Some((at(1), at(k + 1)));
        tcb.on_segment(&a, t(1000 + k as u64));
        let out = tcb.take_outgoing();
        if let Some(s) = out.iter().find(|s| s.seq == at(0)) {
            assert!(first_sent.is_none(), "retransmitted twice");
            first_sent = Some((k, s.seq));
        }
        if tcb.recover.is_some() {
            sent_per_ack.push(out.len());
        }
    }
    assert_eq!(
        first_sent,
        Some((3, at(0))),
        "the retransmission, on the third dupack"
    );
    let ssthresh = tcb.cc.ssthresh() / 1400;
    let sent: usize = sent_per_ack.iter().sum();
    assert!(
        sent.abs_diff(ssthresh) <= 1,
        "{sent} segments sent in recovery, ssthresh {ssthresh}: {sent_per_ack:?}"
    );
    assert!(sent_per_ack.iter().all(|&n| n <= 1), "{sent_per_ack:?}");
    let longest_silence = sent_per_ack
        .split(|&n| n > 0)
        .map(<[usize]>::len)
        .max()
        .unwrap_or(0);
    assert!(longest_silence <= 2, "{sent_per_ack:?}");
    // The retransmission arrives, and all sent since: recovery ends.
    let all = tcb.snd_max.0;
    tcb.on_segment(&seg(ACK, IRS + 1, all, b""), t(1100));
    assert!(tcb.recover.is_none());
    assert_eq!(tcb.stats.timeouts, 0);
}

/// RFC 3708: segment 2 of ten was only late (reordered): three duplicate ACKs start fast
/// recovery and its retransmission, the original arrives, then the retransmission, which
/// the receiver reports as a duplicate (DSACK). Every retransmission of the recovery was
/// needless, so the window and ssthresh come back and recovery ends. With a real loss (no
/// DSACK) the reduction stays.
#[test]
fn a_reduction_for_reordering_is_undone_by_the_dsack_of_its_retransmission() {
    for reordered in [true, false] {
        let config = EngineConfig {
            sack: true,
            tail_loss_probe: false,
            pacing: false,
            ..cfg()
        };
        let mut tcb = sack_connection_with(config, 10);
        let at = |i: u32| ISS + 1 + i * 1400;
        let (window, ssthresh) = (tcb.cc.window(), tcb.cc.ssthresh());
        for k in 4..=6 {
            let mut a = seg(ACK, IRS + 1, at(2), b"");
            a.options.sack[0] = Some((at(3), at(k)));
            tcb.on_segment(&a, t(10 + u64::from(k)));
        }
        assert!(tcb.recover.is_some(), "three duplicate ACKs");
        assert!(tcb.cc.ssthresh() < ssthresh, "the window was reduced");
        let out = tcb.take_outgoing();
        assert!(
            out.iter().any(|s| s.seq == at(2)),
            "the fast retransmission"
        );
        // The original (or, lost, the retransmission) fills the hole.
        let mut a = seg(ACK, IRS + 1, at(6), b"");
        tcb.on_segment(&a, t(20));
        if reordered {
            // The retransmission arrives as well: a duplicate, reported below the ACK.
            a.options.sack[0] = Some((at(2), at(3)));
            tcb.on_segment(&a, t(21));
            assert_eq!(tcb.stats.undone_reductions, 1);
            assert_eq!(tcb.cc.ssthresh(), ssthresh, "slow start again, as before");
            assert!(tcb.cc.window() >= window);
            assert!(tcb.recover.is_none(), "recovery ends: nothing was lost");
        } else {
            tcb.on_segment(&seg(ACK, IRS + 1, at(10), b""), t(30));
            assert_eq!(tcb.stats.undone_reductions, 0);
            assert!(tcb.cc.ssthresh() < ssthresh, "a loss: the reduction stays");
        }
    }
}
