//! The XDP fast path on a lab veth with real kernel TCP clients: the SYN-ACK comes from the
//! XDP program (no kernel listener exists), the kernel's ACK passes the cookie check and is
//! redirected to an AF_XDP socket, forged ACKs are dropped, unprotected ports are untouched.

use std::{
    io::Write as _,
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData, XskMap};
use tcp_common::{
    classify::{ACK, PSH},
    maps::{FAMILY_V4, FAMILY_V6, FlowKey, FlowValue},
};
use tcpfront::{
    wire::{ethernet::EthernetRepr, frame::TcpFrame, ip::IpRepr, tcp::TcpRepr},
    xsk::{XskMode, XskSocket},
};
use tcpfront_tests::{
    lab::{Lab, queue_per_cpu},
    netns::{run_in, spawn_in},
    process::{Tcpfront, tcpfront_bin},
    rawsock::{PacketSocket, mac_of},
};

const PORT: u16 = 9000;
const UNPROTECTED: u16 = 9001;

fn start(lab: &Lab) -> anyhow::Result<Tcpfront> {
    Tcpfront::start(
        lab,
        &[
            "--xdp-only",
            "--listen",
            &format!("0.0.0.0:{PORT}"),
            "--listen",
            &format!("[::]:{PORT}"),
        ],
    )
}

/// A minimal AF_XDP receiver: binds every queue of the front-end interface (the client's
/// flows hash over all of them), registers each socket in tcpfront's pinned XSKMAP at its
/// queue's index, and collects the TCP frames they get until `stop`.
fn spawn_receiver(
    lab: &Lab,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<Vec<TcpFrame>>>> {
    let iface = lab.names.front_if.clone();
    let pin = lab.pin_dir().join("XSKS");
    let queues = queue_per_cpu();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = spawn_in(&lab.names.front_ns, move || {
        let data = MapData::from_pin(&pin).context("opening the pinned XSKS map")?;
        let mut map: XskMap<MapData> = XskMap::try_from(Map::XskMap(data))?;
        let mut sockets = Vec::new();
        for queue in 0..queues {
            let xsk = XskSocket::open(&iface, queue, 64, XskMode::Copy)
                .with_context(|| format!("binding queue {queue}"))?;
            map.set(queue, xsk.as_raw_fd(), 0)
                .with_context(|| format!("registering the AF_XDP socket of queue {queue}"))?;
            sockets.push(xsk);
        }
        ready_tx.send(()).ok();
        let mut frames = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let mut n = 0;
            for xsk in &mut sockets {
                n += xsk.recv(32, |f| match TcpFrame::parse(f) {
                    Ok(t) => frames.push(t),
                    Err(e) => eprintln!("receiver: unparsable frame ({e}): {f:02x?}"),
                });
            }
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(frames)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the AF_XDP receiver did not start")?;
    Ok(handle)
}

fn flows(lab: &Lab) -> anyhow::Result<Vec<(FlowKey, FlowValue)>> {
    let data = MapData::from_pin(lab.pin_dir().join("FLOWS"))?;
    let map: HashMap<MapData, FlowKey, FlowValue> = HashMap::try_from(Map::LruHashMap(data))?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

fn counter(tf: &Tcpfront, name: &str) -> anyhow::Result<u64> {
    Ok(Tcpfront::counter(&tf.stats()?, name))
}

#[test]
fn kernel_clients_get_cookie_syn_acks_and_their_flows_reach_af_xdp() -> anyhow::Result<()> {
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let tf = start(&lab)?;
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = spawn_receiver(&lab, stop.clone())?;

    // No listener exists in the front-end namespace: only the XDP program can answer.
    let mut locals = Vec::new();
    for v6 in [false, true] {
        let server = SocketAddr::new(lab.front_addr(v6), PORT);
        let local = run_in(&lab.names.client_ns, move || {
            let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))
                .with_context(|| format!("connect {server}"))?;
            s.write_all(b"hello")?;
            let local = s.local_addr()?;
            // Keep the connection open until the receiver has seen the data.
            std::thread::sleep(Duration::from_millis(300));
            Ok(local)
        })?;
        locals.push((local, v6));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&tf, "flow_redirected")? < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Counted while the sockets are still registered: once the receiver stops, a client's
    // retransmitted FIN finds no socket (seen once in CI) and says nothing about the path.
    let stats = tf.stats()?;
    stop.store(true, Ordering::Relaxed);
    let frames = receiver.join().expect("receiver panicked")?;
    let flows = flows(&lab)?;

    assert_eq!(Tcpfront::counter(&stats, "syn_ack_sent"), 2, "{stats}");
    assert_eq!(Tcpfront::counter(&stats, "cookie_ack_valid"), 2, "{stats}");
    assert_eq!(
        Tcpfront::counter(&stats, "cookie_ack_invalid"),
        0,
        "{stats}"
    );
    assert_eq!(Tcpfront::counter(&stats, "flow_inserted"), 2, "{stats}");
    assert_eq!(Tcpfront::counter(&stats, "drop_no_socket"), 0, "{stats}");

    for (local, v6) in locals {
        let family = if v6 { FAMILY_V6 } else { FAMILY_V4 };
        let (key, flow) = flows
            .iter()
            .find(|(k, _)| k.family == family && k.src_port == local.port())
            .with_context(|| format!("no flow for {local} in {flows:?}"))?;
        assert_eq!(key.dst_port, PORT);
        // Linux clients send MSS 1460 / 1440, SACK, timestamps and window scale.
        assert_ne!(flow.flags & tcp_common::maps::FLOW_TIMESTAMPS, 0);
        assert_ne!(flow.flags & tcp_common::maps::FLOW_SACK, 0);
        assert_ne!(flow.flags & tcp_common::maps::FLOW_WSCALE, 0);
        assert!(flow.mss >= 1300, "mss {}", flow.mss);

        let mine: Vec<&TcpFrame> = frames
            .iter()
            .filter(|f| f.ip.src == local.ip() && f.tcp.src_port == local.port())
            .collect();
        // The handshake's ACK: the kernel acknowledged our cookie, seq = ISN + 1.
        let hs_ack = mine
            .iter()
            .find(|f| f.tcp.flags == ACK && f.tcp.payload.is_empty())
            .with_context(|| format!("the AF_XDP socket never saw {local}'s ACK: {mine:?}"))?;
        assert_eq!(hs_ack.tcp.ack, flow.server_isn.wrapping_add(1));
        assert_eq!(hs_ack.tcp.seq, flow.client_isn.wrapping_add(1));
        // The first data segment of the flow followed the same path.
        let data = mine
            .iter()
            .find(|f| f.tcp.payload == b"hello")
            .with_context(|| format!("the AF_XDP socket never saw {local}'s data"))?;
        assert_eq!(data.tcp.flags, ACK | PSH);
        assert_eq!(data.tcp.seq, flow.client_isn.wrapping_add(1));
    }

    let status = tf.stop()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn forged_acks_are_dropped_and_unprotected_ports_reach_the_kernel() -> anyhow::Result<()> {
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let tf = start(&lab)?;

    // A forged ACK for the protected port: a random "cookie" that no SYN earned.
    let client_mac = mac_of(&lab.names.client_ns, &lab.names.client_if)?;
    let front_mac = mac_of(&lab.names.front_ns, &lab.names.front_if)?;
    let client_if = lab.names.client_if.clone();
    for v6 in [false, true] {
        let (src, dst): (IpAddr, IpAddr) = if v6 {
            (tcpfront_tests::lab::CLIENT_V6.into(), lab.front_addr(true))
        } else {
            (tcpfront_tests::lab::CLIENT_V4.into(), lab.front_addr(false))
        };
        let forged = TcpFrame::<Vec<u8>> {
            eth: EthernetRepr {
                dst: front_mac,
                src: client_mac,
                ..EthernetRepr::default()
            },
            ip: IpRepr::new(src, dst),
            tcp: TcpRepr {
                src_port: 45678,
                dst_port: PORT,
                seq: 0x1111_1111,
                ack: 0x2222_2222,
                flags: ACK,
                window: 500,
                ..TcpRepr::default()
            },
        }
        .emit();
        let ifname = client_if.clone();
        run_in(&lab.names.client_ns, move || {
            PacketSocket::open(&ifname)?.send(&forged)
        })?;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&tf, "drop_cookie_invalid")? < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = tf.stats()?;
    assert_eq!(
        Tcpfront::counter(&stats, "cookie_ack_invalid"),
        2,
        "{stats}"
    );
    assert_eq!(
        Tcpfront::counter(&stats, "drop_cookie_invalid"),
        2,
        "{stats}"
    );
    assert!(flows(&lab)?.is_empty(), "a forged ACK created a flow");

    // An unprotected port is the kernel's: its own listener answers.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in(&lab.names.front_ns, move || {
        let l = TcpListener::bind(("::", UNPROTECTED))?;
        ready_tx.send(()).ok();
        for _ in 0..2 {
            let (_s, _) = l.accept()?;
        }
        Ok(())
    });
    ready_rx.recv_timeout(Duration::from_secs(5))?;
    let before = tf.stats()?;
    for v6 in [false, true] {
        let addr = SocketAddr::new(lab.front_addr(v6), UNPROTECTED);
        run_in(&lab.names.client_ns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connect {addr}"))?;
            Ok(())
        })?;
    }
    server.join().expect("server panicked")?;
    let after = tf.stats()?;
    let diff = |n: &str| Tcpfront::counter(&after, n) - Tcpfront::counter(&before, n);
    assert_eq!(diff("syn_ack_sent"), 0);
    assert_eq!(diff("class_syn"), 2);
    assert_eq!(diff("verdict_drop"), 0);
    assert_eq!(diff("verdict_redirect"), 0);
    assert!(diff("verdict_pass") >= 4);

    let status = tf.stop()?;
    assert!(status.success());
    Ok(())
}

#[test]
fn optionless_syns_over_veth_are_all_answered() -> anyhow::Result<()> {
    // A SYN without options is 20 bytes shorter than our SYN-ACK: the frame must grow, and
    // veth frames have headroom but often no tailroom.
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let tf = start(&lab)?;
    let client_mac = mac_of(&lab.names.client_ns, &lab.names.client_if)?;
    let front_mac = mac_of(&lab.names.front_ns, &lab.names.front_if)?;
    let mut frames = Vec::new();
    for i in 0..200u16 {
        let f: TcpFrame = TcpFrame {
            eth: EthernetRepr {
                dst: front_mac,
                src: client_mac,
                ..EthernetRepr::default()
            },
            ip: IpRepr::new(tcpfront_tests::lab::CLIENT_V4.into(), lab.front_addr(false)),
            tcp: TcpRepr {
                src_port: 20000 + i,
                dst_port: PORT,
                seq: u32::from(i) * 1000,
                flags: tcp_common::classify::SYN,
                window: 512,
                ..TcpRepr::default()
            },
        };
        frames.push(f.emit());
    }
    let ifname = lab.names.client_if.clone();
    run_in(&lab.names.client_ns, move || {
        let s = PacketSocket::open(&ifname)?;
        for f in &frames {
            s.send(f)?;
        }
        Ok(())
    })?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&tf, "class_syn")? < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let stats = tf.stats()?;
    assert_eq!(Tcpfront::counter(&stats, "class_syn"), 200, "{stats}");
    assert_eq!(Tcpfront::counter(&stats, "syn_ack_sent"), 200, "{stats}");
    assert_eq!(Tcpfront::counter(&stats, "drop_resize"), 0, "{stats}");
    assert!(tf.stop()?.success());
    Ok(())
}
