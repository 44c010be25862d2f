//! A fleet behind BGP and ECMP (namespaces only): a router running BIRD, two tcpfront nodes
//! announcing the same VIP through their own BIRD, sharing one cookie secret, handing each
//! other the segments of connections ECMP moved.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};
use tcpfront::wire::{
    ethernet::EthernetRepr,
    frame::TcpFrame,
    ip::IpRepr,
    tcp::{ACK, PSH, SYN, TcpOptions, TcpRepr},
};
use tcpfront_tests::{
    fleet::{Fleet, NODE_ADDRS, VIP},
    netns::run_in,
    process::{ChildGuard, Tcpfront, connect_and_greet},
    rawsock::{PacketSocket, mac_of},
};

const PORT: u16 = 80;

/// One fleet at a time: each runs two BIRDs and two tcpfronts on the machine's two CPUs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn start_node(fleet: &Fleet, i: usize, secret: &str) -> anyhow::Result<Tcpfront> {
    // A segment of a connection this node does not have gets RST at once.
    fleet.start_node(i, secret, &["--invalid-cookie", "rst"])
}

fn backend(fleet: &Fleet, i: usize) -> anyhow::Result<ChildGuard> {
    fleet.backend(i, Path::new(env!("CARGO_BIN_EXE_tf-test-backend")))
}

/// A connection to the VIP from the client: the node that answered, and the stream.
fn connect(fleet: &Fleet) -> anyhow::Result<(TcpStream, String)> {
    connect_and_greet(&fleet.client_ns, SocketAddr::new(VIP.parse()?, PORT))
}

/// One echoed line through an open connection.
fn echo(s: &mut TcpStream, line: &[u8]) -> anyhow::Result<()> {
    s.write_all(line)?;
    let mut back = vec![0; line.len()];
    s.read_exact(&mut back)?;
    ensure!(
        back == line,
        "echoed {} bytes that differ from those sent",
        back.len()
    );
    Ok(())
}

fn counter(tf: &Tcpfront, name: &str) -> anyhow::Result<u64> {
    Ok(Tcpfront::counter(&tf.stats()?, name))
}

#[test]
fn a_fleet_behind_bgp_ecmp_shares_cookies_drains_and_survives_a_kill() -> anyhow::Result<()> {
    let _serial = serial();
    let fleet = Fleet::create()?;
    let secret = fleet.dir.join("cookie.secret");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        std::fs::write(&secret, b)?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    }
    let secret = secret.to_string_lossy().into_owned();
    let _b1 = backend(&fleet, 0)?;
    let _b2 = backend(&fleet, 1)?;
    let mut node1 = Some(start_node(&fleet, 0, &secret)?);
    let node2 = start_node(&fleet, 1, &secret)?;
    let both = [NODE_ADDRS[0], NODE_ADDRS[1]];
    let took = fleet.wait_next_hops(&both, Duration::from_secs(30))?;
    println!("ECMP route to {VIP} over both nodes after {took:?}");

    // Connections spread over both nodes, and every one completes.
    let mut seen = [0usize; 2];
    for _ in 0..40 {
        let (mut s, name) = connect(&fleet)?;
        echo(&mut s, b"ping\n").context("spreading connections")?;
        match name.as_str() {
            "node1" => seen[0] += 1,
            "node2" => seen[1] += 1,
            other => anyhow::bail!("answered by {other:?}"),
        }
    }
    println!(
        "40 connections: {} on node 1, {} on node 2",
        seen[0], seen[1]
    );
    ensure!(seen[0] > 0 && seen[1] > 0, "ECMP did not spread: {seen:?}");

    // A handshake whose SYN-ACK came from node 1 completes on node 2: crafted in the router,
    // the SYN sent to node 1's MAC, the ACK (with data) to node 2's.
    let before_valid = counter(&node2, "cookie_ack_valid")?;
    let cookie = raw_syn(&fleet, 0, 40999)?;
    raw_ack(&fleet, 1, 40999, cookie)?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(&node2, "cookie_ack_valid")? == before_valid {
        ensure!(
            Instant::now() < deadline,
            "node 2 did not accept node 1's cookie {cookie:#x}: {}",
            node2.stats()?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = node2.cli(&[
        "conns",
        "--iface",
        &node2.iface,
        "--json",
        "--port",
        "40999",
    ])?;
    let conns: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    ensure!(
        conns["connections"][0]["remote"] == "10.77.1.99:40999"
            && conns["connections"][0]["from_cookie"] == true,
        "node 2 has no connection from node 1's handshake: {conns}"
    );

    // Drain node 1 with connections open on both nodes: its route is withdrawn, its clients
    // get the rest of their data and FIN, the others go on; new connections go to node 2.
    let mut held: Vec<(TcpStream, String)> = Vec::new();
    while held.iter().filter(|(_, n)| n == "node1").count() < 5
        || held.iter().filter(|(_, n)| n == "node2").count() < 5
    {
        let (mut s, n) = connect(&fleet)?;
        echo(&mut s, b"before\n").context("a connection before the drain")?;
        held.push((s, n));
        ensure!(held.len() < 200, "ECMP sends everything one way");
    }
    let handed_before = counter(&node2, "fleet_handed_off")?;
    let mut n1 = node1.take().context("node 1")?;
    n1.proc.signal(libc::SIGTERM);
    let withdrawn = fleet.wait_next_hops(&[NODE_ADDRS[1]], Duration::from_secs(10))?;
    println!("draining node 1: its route withdrawn after {withdrawn:?}");
    let mut finished = 0;
    for (s, node) in &mut held {
        if node == "node1" {
            // FIN from node 1 (it takes the direct way back, not ECMP).
            let mut buf = [0u8; 16];
            let n = s
                .read(&mut buf)
                .context("a node 1 client waiting for the drain's FIN")?;
            ensure!(n == 0, "node 1's client got {n} bytes instead of FIN");
            // What this client sends now reaches node 2, which hands it to node 1: it is
            // acknowledged there, not reset.
            s.write_all(b"late\n")
                .and_then(|()| {
                    std::thread::sleep(Duration::from_millis(100));
                    s.write_all(b"later\n")
                })
                .context("a node 1 client writing after the withdrawal")?;
            wait_all_acked(s).context("a node 1 client's data after the withdrawal")?;
            finished += 1;
        } else {
            echo(s, b"during\n").context("a node 2 connection was disturbed by the drain")?;
        }
    }
    let handed = counter(&node2, "fleet_handed_off")? - handed_before;
    let claimed = counter(&n1, "fleet_claimed")?;
    println!(
        "node 1's {finished} open connections got FIN; what their clients sent after the \
         withdrawal reached node 2, which handed {handed} segments to node 1 ({claimed} taken)"
    );
    ensure!(handed > 0 && claimed > 0, "no segment was handed over");
    let mut on_node2 = Vec::new();
    for _ in 0..20 {
        let (mut s, name) = connect(&fleet)?;
        ensure!(
            name == "node2",
            "a new connection landed on draining node 1"
        );
        echo(&mut s, b"after\n")?;
        on_node2.push(s);
    }
    // The clients close; their FINs go the same way, and node 1's drain ends before its
    // timeout: every connection closed.
    drop(held);
    let status = n1.proc.wait_timeout(Duration::from_secs(20))?;
    ensure!(status.success(), "node 1 did not drain cleanly: {status}");
    let log = n1.log_text();
    ensure!(
        log.contains("drained: every connection closed"),
        "node 1's drain did not see its connections close:\n{log}"
    );

    // Node 1 back: ECMP rehashes, and some of node 2's established flows now reach node 1,
    // which hands their segments to node 2: every connection goes on.
    let n1 = start_node(&fleet, 0, &secret)?;
    fleet.wait_next_hops(&both, Duration::from_secs(30))?;
    let claimed_before = counter(&node2, "fleet_claimed")?;
    // 16 KiB each way: full-sized segments, which still fit the segment between the nodes
    // with the hand-off header (the MSS offered leaves room for it).
    let big: Vec<u8> = (0..16384u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (i, s) in on_node2.iter_mut().enumerate() {
        echo(s, &big).with_context(|| {
            format!(
                "node 2 connection {i} after the rehash\nnode 1: {}\n{}\nnode 2: {}",
                n1.stats().unwrap_or_default(),
                n1.log_text(),
                node2.stats().unwrap_or_default()
            )
        })?;
    }
    let moved = counter(&n1, "fleet_handed_off")?;
    let claimed = counter(&node2, "fleet_claimed")? - claimed_before;
    println!(
        "node 1 added back: all {} established node-2 connections went on; node 1 handed \
         {moved} segments of moved ones to node 2 ({claimed} taken)",
        on_node2.len()
    );
    ensure!(moved > 0, "ECMP moved none of 20 flows");
    // Every segment handed on arrived and was taken (a segment too large for the segment
    // between the nodes would be lost on the way; the client would retransmit it until a
    // timeout made its kernel pick another flow hash, which veth carries to the router's
    // ECMP).
    ensure!(
        claimed == moved,
        "node 1 handed {moved} segments to node 2, which took {claimed}"
    );
    drop(on_node2);

    // Node 1 SIGKILLed: its route goes with its process, no clean-up step.
    let (mut on1, _) = loop {
        let c = connect(&fleet)?;
        if c.1 == "node1" {
            break c;
        }
    };
    echo(&mut on1, b"x\n")?;
    n1.proc.signal(libc::SIGKILL);
    let killed_at = Instant::now();
    fleet.wait_next_hops(&[NODE_ADDRS[1]], Duration::from_secs(15))?;
    println!(
        "node 1 SIGKILLed: its route withdrawn after {:?}",
        killed_at.elapsed()
    );
    for _ in 0..10 {
        let (mut s, name) = connect(&fleet)?;
        ensure!(name == "node2");
        echo(&mut s, b"survivor\n")?;
    }
    // The killed node's client: its segments now reach node 2, which hears node 1 no more
    // and resets them.
    let r = on1.write_all(b"orphan\n").and_then(|()| {
        let mut b = [0u8; 8];
        on1.read(&mut b).map(|_| ())
    });
    println!("the killed node's client saw: {r:?}");
    ensure!(
        matches!(
            r.as_ref().map_err(std::io::Error::kind),
            Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "the killed node's client saw {r:?}, not a reset"
    );
    ensure!(
        counter(&node2, "fleet_no_live_node")? > 0,
        "node 2 still counts node 1 alive: {}",
        node2.stats()?
    );
    drop(n1);
    Ok(())
}

/// Waits until the peer has acknowledged everything written on `s` (SIOCOUTQ: bytes sent
/// and not yet acknowledged, or not yet sent).
fn wait_all_acked(s: &TcpStream) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut pending: libc::c_int = 0;
        // SAFETY: SIOCOUTQ writes one int.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut pending) } != 0 {
            return Err(std::io::Error::last_os_error()).context("SIOCOUTQ");
        }
        if pending == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{pending} bytes still unacknowledged after 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A client the router pretends to be (no such host exists behind it).
const RAW_CLIENT: &str = "10.77.1.99";

fn raw_frame(fleet: &Fleet, node: usize, tcp: TcpRepr<Vec<u8>>) -> anyhow::Result<Vec<u8>> {
    let (src, dst): (IpAddr, IpAddr) = (RAW_CLIENT.parse()?, VIP.parse()?);
    Ok(TcpFrame::<Vec<u8>> {
        eth: EthernetRepr {
            dst: mac_of(&fleet.node_ns[node], &fleet.node_if[node])?,
            src: mac_of(&fleet.router_ns, "br0")?,
            ..EthernetRepr::default()
        },
        ip: IpRepr::new(src, dst),
        tcp,
    }
    .emit())
}

/// Sends a SYN from the router straight to `node` (its MAC on the segment, whatever ECMP
/// would choose) and returns the cookie of its SYN-ACK.
fn raw_syn(fleet: &Fleet, node: usize, sport: u16) -> anyhow::Result<u32> {
    let syn = raw_frame(
        fleet,
        node,
        TcpRepr {
            src_port: sport,
            dst_port: PORT,
            seq: 1000,
            flags: SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        },
    )?;
    let node_mac = mac_of(&fleet.node_ns[node], &fleet.node_if[node])?;
    run_in(&fleet.router_ns, move || {
        let sock = PacketSocket::open("br0")?;
        sock.send(&syn)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            ensure!(
                Instant::now() < deadline,
                "node {} sent no SYN-ACK",
                node + 1
            );
            let Some(f) = sock.recv(Duration::from_millis(200))? else {
                continue;
            };
            if let Ok(t) = TcpFrame::parse(&f)
                && t.tcp.flags == SYN | ACK
                && t.tcp.dst_port == sport
            {
                ensure!(t.eth.src == node_mac, "the SYN-ACK came from another node");
                return Ok(t.tcp.seq);
            }
        }
    })
}

/// Completes that handshake at `node`: the ACK for `cookie`, with data.
fn raw_ack(fleet: &Fleet, node: usize, sport: u16, cookie: u32) -> anyhow::Result<()> {
    let ack = raw_frame(
        fleet,
        node,
        TcpRepr {
            src_port: sport,
            dst_port: PORT,
            seq: 1001,
            ack: cookie.wrapping_add(1),
            flags: ACK | PSH,
            window: 64240,
            payload: b"hello\n".to_vec(),
            ..TcpRepr::default()
        },
    )?;
    run_in(&fleet.router_ns, move || {
        PacketSocket::open("br0")?.send(&ack)
    })
}

/// Waits for `counter` of `tf` to pass `before`.
fn wait_counter(tf: &Tcpfront, counter_name: &str, before: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while counter(tf, counter_name)? <= before {
        ensure!(
            Instant::now() < deadline,
            "{counter_name} did not move: {}",
            tf.stats()?
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn wall_clock_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sleeps until `secs` past the start of minute `minute`.
fn sleep_until_minute(minute: u64, secs: f64) {
    let target = minute as f64 * 60.0 + secs;
    let now = wall_clock_secs();
    if target > now {
        std::thread::sleep(Duration::from_secs_f64(target - now));
    }
}

/// Rotation on the wall clock, across nodes (one-minute epochs): a cookie node 1 minted in
/// epoch e is accepted by node 2 in e+1 and refused in e+2, where both daemons have
/// installed the new epoch's key on their own. Takes up to two and a half minutes.
#[test]
fn cookies_rotate_on_the_wall_clock_and_stay_valid_one_epoch_across_nodes() -> anyhow::Result<()> {
    let _serial = serial();
    let fleet = Fleet::create()?;
    let secret = fleet.dir.join("cookie.secret");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::write(&secret, [0x5au8; 32])?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    }
    let secret = secret.to_string_lossy().into_owned();
    let _b = (backend(&fleet, 0)?, backend(&fleet, 1)?);
    let start = |i: usize| fleet.start_node(i, &secret, &["--cookie-rotate", "1m"]);
    let (_node1, node2) = (start(0)?, start(1)?);
    // Mint well inside a minute, so that "the next epoch" is unambiguous.
    let mut m = (wall_clock_secs() / 60.0) as u64;
    if wall_clock_secs() - m as f64 * 60.0 > 45.0 {
        m += 1;
    }
    sleep_until_minute(m, 2.0);
    let next_epoch_cookie = raw_syn(&fleet, 0, 41001)?;
    let late_cookie = raw_syn(&fleet, 0, 41002)?;
    ensure!(
        (wall_clock_secs() / 60.0) as u64 == m,
        "minted across a minute boundary"
    );

    sleep_until_minute(m + 1, 3.0);
    let valid = counter(&node2, "cookie_ack_valid")?;
    raw_ack(&fleet, 1, 41001, next_epoch_cookie)?;
    wait_counter(&node2, "cookie_ack_valid", valid)
        .context("node 2 refused node 1's cookie of the previous epoch")?;
    let out = node2.cli(&["status", "--json"])?;
    let st: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let me = st
        .as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == node2.iface.as_str()))
        .context("node 2 not in status")?;
    ensure!(
        me["status"]["cookie_secret"]["epoch"] == m + 1,
        "node 2 is not in epoch {}: {}",
        m + 1,
        me["status"]["cookie_secret"]
    );

    sleep_until_minute(m + 2, 3.0);
    let invalid = counter(&node2, "cookie_ack_invalid")?;
    raw_ack(&fleet, 1, 41002, late_cookie)?;
    wait_counter(&node2, "cookie_ack_invalid", invalid)
        .context("node 2 accepted a cookie two epochs old")?;
    // Epoch e+2's key was not in the maps at start (they hold the previous, current and next
    // epoch): both daemons installed it at a boundary, and still agree.
    let valid = counter(&node2, "cookie_ack_valid")?;
    let fresh = raw_syn(&fleet, 0, 41003)?;
    raw_ack(&fleet, 1, 41003, fresh)?;
    wait_counter(&node2, "cookie_ack_valid", valid)
        .context("the nodes disagree on the key of epoch e+2")?;
    Ok(())
}
