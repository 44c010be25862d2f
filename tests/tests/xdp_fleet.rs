//! The fleet hand-off in the XDP program, on crafted frames (BPF_PROG_TEST_RUN): a segment of
//! no local flow goes to the next node of the ring with the hand-off header; a node strips
//! the header and takes the segment if it has the flow, hands it on otherwise, and the last
//! node drops or resets it; only the fleet's nodes are listened to, and only those heard
//! lately are handed anything; the cookie's MSS leaves room for the header.

use tcp_common::{
    classify::{ACK, FIN, PSH, RST},
    map_names,
    maps::{FLEET_ETHERTYPE, FLEET_HANDOFF_LEN},
};
use tcpfront::{
    bpf::config::FastPathSettings,
    fleet::{FleetPlace, Mac, hello::hello_frame, liveness::Liveness},
    wire::{frame::TcpFrame, tcp::TcpRepr},
};
mod common;

use common::xdp::{CLIENT_MAC, Harness, SERVER_MAC, XDP_DROP, XDP_PASS, XDP_TX, frame, linux_syn};

const CLIENT: &str = "192.0.2.10";
const VIP: &str = "192.0.2.1";
const CLIENT6: &str = "2001:db8::10";
const VIP6: &str = "2001:db8::1";
/// The other nodes (SERVER_MAC is the node under test).
const NODE_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const NODE_C: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];

/// The node under test (SERVER_MAC) in a ring of `nodes`, protecting port 80 of both
/// families, with what the daemon's hello task does to its maps.
struct Node {
    h: Harness,
    liveness: Liveness,
}

impl std::ops::Deref for Node {
    type Target = Harness;
    fn deref(&self) -> &Harness {
        &self.h
    }
}

impl Node {
    /// Picks the next live node, as the daemon does after each hello tick.
    fn tick(&mut self) -> anyhow::Result<Option<Mac>> {
        Ok(self.liveness.refresh()?.0)
    }
}

/// A node that has just heard every other node's hello.
fn node(nodes: &[[u8; 6]], rst: bool) -> anyhow::Result<Node> {
    let macs: Vec<Mac> = nodes.iter().map(|m| Mac(*m)).collect();
    let place = FleetPlace::new(macs, Mac(SERVER_MAC), 1500)?;
    let mut h = Harness::new(&FastPathSettings {
        listen: vec!["0.0.0.0:80".parse()?, "[::]:80".parse()?],
        rst_invalid_cookie: rst,
        fleet: Some(place.clone()),
        ..FastPathSettings::default()
    })?;
    let liveness = Liveness::new(
        h.take_array(map_names::FLEET_RING)?,
        h.take_array(map_names::FLEET_NEXT)?,
        &place,
    )?;
    let mut n = Node { h, liveness };
    assert_eq!(n.tick()?, None, "nobody heard yet");
    for m in nodes.iter().filter(|m| **m != SERVER_MAC) {
        hello(&n, *m)?;
    }
    n.tick()?;
    Ok(n)
}

/// Node `from`'s hello arrives.
fn hello(h: &Harness, from: [u8; 6]) -> anyhow::Result<()> {
    let (verdict, _, delta) = h.run_counted(&hello_frame(Mac(from), Mac(SERVER_MAC)))?;
    assert_eq!(verdict, XDP_DROP, "a hello goes no further");
    assert_eq!(delta.get("fleet_hello"), Some(&1), "{delta:?}");
    Ok(())
}

/// A segment of an established connection the node under test does not have.
fn stray(flags: u8) -> TcpFrame {
    let mut f = frame(
        CLIENT,
        VIP,
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 7000,
            ack: 9000,
            flags,
            window: 500,
            ..TcpRepr::default()
        },
    );
    if flags & PSH != 0 {
        f.tcp.payload = b"late data".to_vec();
    }
    f
}

/// `frame` as node `from` hands it to SERVER_MAC, after visiting `visited` nodes.
fn handed(frame: &[u8], from: [u8; 6], visited: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(frame.len() + FLEET_HANDOFF_LEN);
    out.extend_from_slice(&SERVER_MAC);
    out.extend_from_slice(&from);
    out.extend_from_slice(&FLEET_ETHERTYPE.to_be_bytes());
    out.extend_from_slice(&[visited, 0]);
    out.extend_from_slice(&frame[6..12]);
    out.extend_from_slice(&frame[12..]);
    out
}

/// Checks that `out` is `original` handed to `next` by SERVER_MAC after `visited` nodes.
fn assert_handed(out: &[u8], original: &[u8], next: [u8; 6], visited: u8) {
    assert_eq!(out.len(), original.len() + FLEET_HANDOFF_LEN);
    assert_eq!(out[0..6], next, "to the next node");
    assert_eq!(out[6..12], SERVER_MAC, "from this node");
    assert_eq!(out[12..14], FLEET_ETHERTYPE.to_be_bytes());
    assert_eq!(out[14..16], [visited, 0]);
    assert_eq!(out[16..22], original[6..12], "the router's MAC, kept");
    assert_eq!(out[22..], original[12..], "the frame itself, untouched");
}

#[test]
fn a_segment_of_no_flow_goes_to_the_next_node_with_the_header() -> anyhow::Result<()> {
    let h = node(&[SERVER_MAC, NODE_B], false)?;
    for flags in [ACK, ACK | PSH, ACK | FIN, RST, RST | ACK] {
        let f = stray(flags).emit();
        let (verdict, out, delta) = h.run_counted(&f)?;
        assert_eq!(verdict, XDP_TX, "flags {flags:#x}: {delta:?}");
        assert_eq!(delta.get("fleet_handed_off"), Some(&1), "{delta:?}");
        assert_eq!(delta.get("drop_cookie_invalid"), None);
        assert_handed(&out, &f, NODE_B, 1);
    }
    // IPv6 too.
    let mut f6 = stray(ACK);
    f6.ip = tcpfront::wire::ip::IpRepr::new(CLIENT6.parse()?, VIP6.parse()?);
    let f6 = f6.emit();
    let (verdict, out, _) = h.run_counted(&f6)?;
    assert_eq!(verdict, XDP_TX);
    assert_handed(&out, &f6, NODE_B, 1);

    // A SYN is answered here, with a cookie any node accepts; never handed on.
    let syn = frame(CLIENT, VIP, linux_syn(40001, 80, 1, 2)).emit();
    let (verdict, _, delta) = h.run_counted(&syn)?;
    assert_eq!(verdict, XDP_TX);
    assert_eq!(delta.get("syn_ack_sent"), Some(&1));
    assert_eq!(delta.get("fleet_handed_off"), None);
    // Unprotected ports are none of the fleet's business.
    let mut other = stray(ACK);
    other.tcp.dst_port = 81;
    let (verdict, _, delta) = h.run_counted(&other.emit())?;
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(delta.get("fleet_handed_off"), None);
    Ok(())
}

#[test]
fn a_handed_segment_is_taken_where_its_flow_is_and_restored_as_the_router_sent_it()
-> anyhow::Result<()> {
    let h = node(&[SERVER_MAC, NODE_B], true)?;
    // Open a flow here with a cookie handshake.
    let syn = frame(CLIENT, VIP, linux_syn(40002, 80, 0x1000, 5));
    let (_, out) = h.run(&syn.emit())?;
    let syn_ack = TcpFrame::parse(&out)?;
    let mut ack = syn.clone();
    ack.tcp = TcpRepr {
        src_port: 40002,
        dst_port: 80,
        seq: 0x1001,
        ack: syn_ack.tcp.seq.wrapping_add(1),
        flags: ACK,
        window: 500,
        options: tcpfront::wire::tcp::TcpOptions {
            timestamps: Some((6, syn_ack.tcp.options.timestamps.map_or(0, |t| t.0))),
            ..Default::default()
        },
        ..TcpRepr::default()
    };
    let (_, _, delta) = h.run_counted(&ack.emit())?;
    assert_eq!(delta.get("flow_inserted"), Some(&1), "{delta:?}");

    // Node B got the next segment (ECMP moved the flow) and hands it here: taken (no AF_XDP
    // socket under BPF_PROG_TEST_RUN, so the redirect counts as dropped).
    let mut data = ack.clone();
    data.tcp.flags = ACK | PSH;
    data.tcp.payload = b"after the move".to_vec();
    let plain = data.emit();
    let (verdict, out, delta) = h.run_counted(&handed(&plain, NODE_B, 1))?;
    assert_eq!(delta.get("fleet_received"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("fleet_claimed"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("drop_no_socket"), Some(&1), "{delta:?}");
    assert_eq!(verdict, XDP_DROP);
    // What user space would read: the frame exactly as the router sent it.
    assert_eq!(
        out, plain,
        "the header is stripped and the router's MAC restored"
    );

    // A handed segment of no flow here, from the last node of a ring of two: nobody has
    // it; with --invalid-cookie rst it is reset, to the router's MAC.
    let lost = stray(ACK).emit();
    let (verdict, out, delta) = h.run_counted(&handed(&lost, NODE_B, 1))?;
    assert_eq!(verdict, XDP_TX, "{delta:?}");
    assert_eq!(delta.get("fleet_unclaimed"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("rst_sent"), Some(&1));
    assert_eq!(delta.get("cookie_ack_invalid"), None, "not checked again");
    let rst = TcpFrame::parse(&out)?;
    assert_eq!(rst.eth.dst, CLIENT_MAC);
    assert_eq!(rst.eth.src, SERVER_MAC);
    assert_eq!(rst.tcp.flags, RST);
    assert_eq!(rst.tcp.seq, 9000);
    // A RST nobody has is dropped, never answered.
    let (verdict, _, delta) = h.run_counted(&handed(&stray(RST).emit(), NODE_B, 1))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_no_flow"), Some(&1), "{delta:?}");
    Ok(())
}

#[test]
fn a_ring_of_three_visits_every_other_node_once() -> anyhow::Result<()> {
    // The node under test is the second of three: it hands to the third.
    let mut h = node(&[NODE_B, SERVER_MAC, NODE_C], false)?;
    assert_eq!(h.tick()?.map(|m| m.0), Some(NODE_C));
    let f = stray(ACK | PSH).emit();
    let (verdict, out, _) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_TX);
    assert_handed(&out, &f, NODE_C, 1);
    // From B (the first node), no flow here: on to C, second visit.
    let (verdict, out, delta) = h.run_counted(&handed(&f, NODE_B, 1))?;
    assert_eq!(verdict, XDP_TX, "{delta:?}");
    assert_handed(&out, &f, NODE_C, 2);
    // Started at C, B had no flow either: this is the third node and the last.
    let (verdict, _, delta) = h.run_counted(&handed(&f, NODE_B, 2))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("fleet_unclaimed"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("drop_cookie_invalid"), Some(&1), "{delta:?}");
    Ok(())
}

#[test]
fn silent_nodes_are_skipped() -> anyhow::Result<()> {
    let mut h = node(&[SERVER_MAC, NODE_B, NODE_C], false)?;
    let f = stray(ACK).emit();
    let (_, out, _) = h.run_counted(&f)?;
    assert_handed(&out, &f, NODE_B, 1);
    // B and C fall silent; C speaks again: B is skipped.
    std::thread::sleep(std::time::Duration::from_millis(
        tcp_common::maps::FLEET_DEAD_NS / 1_000_000 + 100,
    ));
    assert_eq!(h.tick()?, None);
    let (verdict, _, delta) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP, "nobody alive to ask: {delta:?}");
    assert_eq!(delta.get("fleet_no_live_node"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("drop_cookie_invalid"), Some(&1), "{delta:?}");
    hello(&h, NODE_C)?;
    assert_eq!(h.tick()?, Some(Mac(NODE_C)));
    let (verdict, out, _) = h.run_counted(&f)?;
    assert_eq!(verdict, XDP_TX);
    assert_handed(&out, &f, NODE_C, 1);
    Ok(())
}

#[test]
fn only_the_fleets_nodes_are_listened_to() -> anyhow::Result<()> {
    let h = node(&[SERVER_MAC, NODE_B], false)?;
    let f = stray(ACK).emit();
    let (verdict, _, delta) = h.run_counted(&handed(&f, NODE_C, 1))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_fleet_not_node"), Some(&1), "{delta:?}");
    let (verdict, _, delta) = h.run_counted(&hello_frame(Mac(NODE_C), Mac(SERVER_MAC)))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(
        delta.get("drop_fleet_not_node"),
        Some(&1),
        "a stranger's hello: {delta:?}"
    );
    // Too short to hold the header.
    let (verdict, _, delta) = h.run_counted(&handed(&f, NODE_B, 1)[..20])?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_truncated"), Some(&1), "{delta:?}");
    // A handed SYN is nobody's: dropped.
    let syn = frame(CLIENT, VIP, linux_syn(40003, 80, 1, 2)).emit();
    let (verdict, _, delta) = h.run_counted(&handed(&syn, NODE_B, 1))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_no_flow"), Some(&1), "{delta:?}");

    // A node in no fleet takes no hand-off, and drops what it has no flow for as before.
    let alone = Harness::protecting(&["0.0.0.0:80"])?;
    let (verdict, _, delta) = alone.run_counted(&handed(&f, NODE_B, 1))?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_fleet_not_node"), Some(&1), "{delta:?}");
    let (verdict, _, delta) = alone.run_counted(&f)?;
    assert_eq!(verdict, XDP_DROP);
    assert_eq!(delta.get("drop_cookie_invalid"), Some(&1), "{delta:?}");
    assert_eq!(delta.get("fleet_handed_off"), None);
    Ok(())
}

#[test]
fn the_cookie_mss_leaves_room_for_the_header() -> anyhow::Result<()> {
    let h = node(&[SERVER_MAC, NODE_B], false)?;
    let alone = Harness::protecting(&["0.0.0.0:80", "[::]:80"])?;
    for (client, vip, fleet_mss, alone_mss) in
        [(CLIENT, VIP, 1440, 1460), (CLIENT6, VIP6, 1420, 1440)]
    {
        // linux_syn offers MSS 1460; an IPv6 client on a 1500-byte link offers 1440.
        let mut syn = linux_syn(40004, 80, 1, 2);
        if client == CLIENT6 {
            syn.options.mss = Some(1440);
        }
        let syn = frame(client, vip, syn).emit();
        let (_, out) = h.run(&syn)?;
        let mss = TcpFrame::parse(&out)?.tcp.options.mss;
        assert_eq!(mss, Some(fleet_mss), "{client}: MSS + headers + 10 ≤ 1500");
        let (_, out) = alone.run(&syn)?;
        assert_eq!(TcpFrame::parse(&out)?.tcp.options.mss, Some(alone_mss));
    }
    Ok(())
}
