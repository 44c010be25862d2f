//! tcpfront serving real kernel TCP clients end to end: XDP cookie handshake, AF_XDP, the
//! engine, and the relay to an upstream in the front-end namespace.

use std::{
    io::{Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData};
use sha2::{Digest as _, Sha256};
use tcp_common::maps::{FlowKey, FlowValue};
use tcpfront_impair::{Impairment, Profile};
use tcpfront_tests::{
    lab::{Lab, LabNames, queue_per_cpu},
    netns::{command_in, run_in, spawn_in},
    process::{ChildGuard, Tcpfront, tcpfront_bin},
};

const PORT: u16 = 8080;
const UPSTREAM: u16 = 18080;

/// One test of this file at a time: they move a lot of data through copy-mode AF_XDP, and two
/// of them on a 2-core machine starve each other into heavy loss (correct, but slow).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A lab for one test, holding the file's serialization lock for as long as it lives.
struct SerialLab {
    lab: Lab,
    _guard: std::sync::MutexGuard<'static, ()>,
}

impl std::ops::Deref for SerialLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        &self.lab
    }
}

fn lab() -> anyhow::Result<SerialLab> {
    lab_with_queues(queue_per_cpu())
}

fn lab_with_queues(queues: u32) -> anyhow::Result<SerialLab> {
    // A failed test poisons the lock; the next one may still run.
    let guard = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    Ok(SerialLab {
        lab: Lab::create(LabNames::unique(), false, Some(&tcpfront_bin()), queues)?,
        _guard: guard,
    })
}

fn start(lab: &Lab, upstream: &str, extra: &[&str]) -> anyhow::Result<Tcpfront> {
    let mut args = vec![
        "--listen".to_string(),
        format!("0.0.0.0:{PORT}"),
        "--listen".to_string(),
        format!("[::]:{PORT}"),
    ];
    if upstream == "echo" {
        args.push("--echo".into());
    } else {
        args.push("--upstream".into());
        args.push(upstream.into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    Tcpfront::start(lab, &refs)
}

fn client_addr(lab: &Lab, v6: bool) -> SocketAddr {
    SocketAddr::new(lab.front_addr(v6), PORT)
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.set_write_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

/// An upstream in the front-end namespace on 127.0.0.1:UPSTREAM, running `serve` for each of
/// `conns` connections in turn.
fn upstream<F>(
    lab: &Lab,
    conns: usize,
    serve: F,
) -> anyhow::Result<std::thread::JoinHandle<anyhow::Result<()>>>
where
    F: Fn(TcpStream) -> anyhow::Result<()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let h = spawn_in(&lab.names.front_ns, move || {
        let l = TcpListener::bind(("127.0.0.1", UPSTREAM))?;
        tx.send(()).ok();
        for _ in 0..conns {
            let (s, _) = l.accept()?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            serve(s)?;
        }
        Ok(())
    });
    rx.recv_timeout(Duration::from_secs(5))
        .context("upstream did not start")?;
    Ok(h)
}

fn join(h: std::thread::JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    h.join().map_err(|_| anyhow::anyhow!("thread panicked"))?
}

fn flows(lab: &Lab) -> anyhow::Result<usize> {
    let data = MapData::from_pin(lab.pin_dir().join("FLOWS"))?;
    let map: HashMap<MapData, FlowKey, FlowValue> = HashMap::try_from(Map::LruHashMap(data))?;
    Ok(map.keys().filter_map(Result::ok).count())
}

#[test]
fn curl_through_tcpfront_ipv4_and_ipv6() -> anyhow::Result<()> {
    let lab = lab()?;
    let www = std::env::temp_dir().join(format!("tcpfront-www-{}", lab.names.front_if));
    std::fs::create_dir_all(&www)?;
    let body: String = (0..2000)
        .map(|i| format!("line {i} through tcpfront\n"))
        .collect();
    std::fs::write(www.join("index.html"), &body)?;
    let _http = ChildGuard::spawn(
        "http.server",
        command_in(&lab.names.front_ns, "python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &UPSTREAM.to_string(),
            ])
            .current_dir(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    for host in [
        lab.front_addr(false).to_string(),
        format!("[{}]", lab.front_addr(true)),
    ] {
        let url = format!("http://{host}:{PORT}/index.html");
        let mut got = None;
        for _ in 0..50 {
            let out = command_in(&lab.names.client_ns, "curl")
                .args(["-sS", "--max-time", "10", &url])
                .output()?;
            if out.status.success() {
                got = Some(String::from_utf8(out.stdout)?);
                break;
            }
            std::thread::sleep(Duration::from_millis(100)); // http.server still starting
        }
        let got = got.with_context(|| format!("curl {url} never succeeded"))?;
        assert!(
            got == body,
            "{url}: {} bytes differ from the {} expected",
            got.len(),
            body.len()
        );
    }
    let stats = tf.stats()?;
    assert!(
        Tcpfront::counter(&stats, "cookie_ack_valid") >= 2,
        "{stats}"
    );
    assert_eq!(Tcpfront::counter(&stats, "drop_no_socket"), 0);
    let _ = std::fs::remove_dir_all(&www);
    assert!(tf.stop()?.success());
    Ok(())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
        .collect()
}

const BULK: usize = 100 * 1024 * 1024;

#[test]
fn hundred_megabytes_up_and_down_are_byte_exact() -> anyhow::Result<()> {
    let lab = lab()?;
    bulk_up_and_down(&lab, None)
}

/// The same transfer over a lossy link: a seeded impairment on the client's veth drops 2% of
/// the TCP frames each way, sends 1% of tcpfront's frames late through another CPU, and
/// duplicates 1% of the client's (on that side a unit is the kernel's GSO packet, so losses
/// come in bursts). `TCPFRONT_IMPAIR_SEED` replays another seed.
#[test]
fn hundred_megabytes_up_and_down_survive_loss_reordering_and_duplicates() -> anyhow::Result<()> {
    let lab = lab()?;
    let seed = std::env::var("TCPFRONT_IMPAIR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7466_726f_6e74_u64);
    eprintln!("impairment seed {seed} (set TCPFRONT_IMPAIR_SEED to replay another)");
    // The impairment takes the place of the pass-through program on the client's veth.
    let detach = std::process::Command::new(tcpfront_bin())
        .args(["--netns", &lab.names.client_ns, "peer", "detach", "--iface"])
        .arg(&lab.names.client_if)
        .output()?;
    anyhow::ensure!(detach.status.success(), "peer detach failed");
    let iface = lab.names.client_if.clone();
    let impairment = run_in(&lab.names.client_ns, move || {
        Impairment::attach(
            &iface,
            Profile {
                seed,
                drop_ppm: 20_000,
                reorder_ppm: 10_000,
                duplicate_ppm: 10_000,
            },
        )
    })?;
    bulk_up_and_down(&lab, Some(&impairment))
}

fn bulk_up_and_down(lab: &Lab, impairment: Option<&Impairment>) -> anyhow::Result<()> {
    // Upload: the upstream hashes what it receives and answers with the digest.
    // Download: the upstream sends BULK bytes and closes.
    let down = pattern(BULK, 7);
    let down_hash = sha256(&down);
    let up = upstream(lab, 2, move |mut s| {
        let mut kind = [0u8; 1];
        s.read_exact(&mut kind)?;
        if kind[0] == b'U' {
            let mut h = Sha256::new();
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = s.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
            }
            s.write_all(&h.finalize())?;
        } else {
            s.write_all(&down)?;
        }
        Ok(())
    })?;
    let tf = start(lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    let addr = client_addr(lab, false);
    let upload = pattern(BULK, 3);
    let upload_hash = sha256(&upload);
    let t0 = Instant::now();
    let (got_up, got_down) = run_in(&lab.names.client_ns, move || {
        let mut s = connect(addr)?;
        s.write_all(b"U")?;
        s.write_all(&upload)?;
        s.shutdown(Shutdown::Write)?;
        let mut digest = Vec::new();
        s.read_to_end(&mut digest)?;
        let mut s = connect(addr)?;
        s.write_all(b"D")?;
        s.shutdown(Shutdown::Write)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n;
            h.update(&buf[..n]);
        }
        anyhow::ensure!(total == BULK, "downloaded {total} bytes");
        Ok((digest, <[u8; 32]>::from(h.finalize())))
    })?;
    eprintln!("200 MB through tcpfront in {:?}", t0.elapsed());
    assert_eq!(got_up, upload_hash.to_vec(), "upload SHA-256 differs");
    assert_eq!(got_down, down_hash, "download SHA-256 differs");
    join(up)?;
    if impairment.is_none() {
        // On a clean link nothing may be lost on the way to user space: a connection's
        // window (256 KiB) is far below the RX ring (8,192 frames), so only frames leaking
        // out of the fill ring could starve it.
        let stats = tf.stats()?;
        assert_eq!(stats["engine"]["xsk_rx_dropped"], 0, "{stats}");
        assert_eq!(stats["engine"]["xsk_fill_ring_empty"], 0, "{stats}");
    }
    if let Some(imp) = impairment {
        let s = imp.stats()?;
        eprintln!("impairment: {s:?}");
        // The link really was impaired both ways, and tcpfront had to recover.
        assert!(s.dropped_rx > 0 && s.reordered_rx > 0, "{s:?}");
        assert!(s.dropped_tx > 0 && s.duplicated_tx > 0, "{s:?}");
        let stats = tf.stats()?;
        let retransmits = stats["engine"]["retransmits"].as_u64().unwrap_or(0);
        assert!(retransmits > 0, "no retransmissions: {stats}");
    }
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn half_close_client_still_gets_the_whole_response() -> anyhow::Result<()> {
    let lab = lab()?;
    let up = upstream(&lab, 1, |mut s| {
        let mut req = Vec::new();
        s.read_to_end(&mut req)?; // ends only when the client's FIN was relayed
        anyhow::ensure!(req == b"request", "upstream got {req:?}");
        s.write_all(&vec![b'r'; 300_000])?;
        Ok(())
    })?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    let addr = client_addr(&lab, true);
    let n = run_in(&lab.names.client_ns, move || {
        let mut s = connect(addr)?;
        s.write_all(b"request")?;
        s.shutdown(Shutdown::Write)?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        anyhow::ensure!(resp.iter().all(|&b| b == b'r'));
        Ok(resp.len())
    })?;
    assert_eq!(n, 300_000);
    join(up)?;
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn client_reset_closes_the_upstream() -> anyhow::Result<()> {
    let lab = lab()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let up = upstream(&lab, 1, move |mut s| {
        let mut buf = [0u8; 1024];
        let started = Instant::now();
        // Read until the relay closes us: EOF or reset.
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(20),
                "upstream never closed"
            );
        }
        tx.send(()).ok();
        Ok(())
    })?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    let addr = client_addr(&lab, false);
    run_in(&lab.names.client_ns, move || {
        let mut s = connect(addr)?;
        s.write_all(&[1u8; 50_000])?;
        std::thread::sleep(Duration::from_millis(200));
        // SO_LINGER 0: close() sends RST.
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt on our own socket with a correctly sized value.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&s),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as u32,
            )
        };
        anyhow::ensure!(rc == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
        drop(s);
        Ok(())
    })?;
    rx.recv_timeout(Duration::from_secs(20))
        .context("the upstream did not see the close")?;
    join(up)?;
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn upstream_down_resets_the_client() -> anyhow::Result<()> {
    let lab = lab()?;
    // Nothing listens on the upstream port.
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    let addr = client_addr(&lab, false);
    let err = run_in(&lab.names.client_ns, move || {
        // The handshake is XDP's and succeeds; the RST can come so soon after it that
        // connect() itself already reports it.
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return Ok(Some(e.kind())),
        };
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = s.write_all(b"hello");
        let mut buf = [0u8; 16];
        Ok(s.read(&mut buf).err().map(|e| e.kind()))
    })?;
    assert_eq!(err, Some(std::io::ErrorKind::ConnectionReset));
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn upstream_initiated_close_and_time_wait_on_tcpfront() -> anyhow::Result<()> {
    let lab = lab()?;
    let up = upstream(&lab, 1, |mut s| {
        s.write_all(b"bye")?;
        Ok(()) // drop: FIN from the upstream
    })?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &["--msl", "1s"])?;
    let addr = client_addr(&lab, false);
    run_in(&lab.names.client_ns, move || {
        let mut s = connect(addr)?;
        let mut got = Vec::new();
        s.read_to_end(&mut got)?; // FIN from tcpfront after "bye"
        anyhow::ensure!(got == b"bye", "client got {got:?}");
        Ok(()) // our close: tcpfront closed first, so it holds TIME-WAIT
    })?;
    join(up)?;
    // TIME-WAIT keeps the flow entry for 2·MSL = 2 s, then it goes.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(flows(&lab)?, 1, "the flow must stay during TIME-WAIT");
    let deadline = Instant::now() + Duration::from_secs(10);
    while flows(&lab)? > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(flows(&lab)?, 0, "TIME-WAIT did not expire");
    assert!(tf.stop()?.success());
    Ok(())
}

/// A client that reuses its port while tcpfront still holds TIME-WAIT for the 4-tuple (the
/// upstream closed first) gets a new connection at once, as from Linux (RFC 6191): the SYN
/// retires the TIME-WAIT and is answered with a cookie SYN-ACK, both families.
#[test]
fn a_reused_port_reopens_a_connection_in_time_wait() -> anyhow::Result<()> {
    const REUSES: usize = 5;
    let lab = lab()?;
    let up = upstream(&lab, 2 * (REUSES + 1), |mut s| {
        s.write_all(b"bye")?;
        Ok(()) // drop: FIN from the upstream, so tcpfront closes first
    })?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &["--msl", "60s"])?;
    for (v6, port) in [(false, 40111u16), (true, 40112)] {
        let addr = client_addr(&lab, v6);
        let took = run_in(&lab.names.client_ns, move || {
            let mut took = Vec::new();
            // Each new socket draws a new TX hash, so with two queues most reuses land on
            // the other queue than the connection in TIME-WAIT: that one is handed over.
            for _ in 0..REUSES + 1 {
                let bind: SocketAddr = if v6 {
                    SocketAddr::new(tcpfront_tests::lab::CLIENT_V6.into(), port)
                } else {
                    SocketAddr::new(tcpfront_tests::lab::CLIENT_V4.into(), port)
                };
                let sock = socket2::Socket::new(
                    socket2::Domain::for_address(addr),
                    socket2::Type::STREAM,
                    None,
                )?;
                sock.set_reuse_address(true)?;
                sock.bind(&bind.into())?;
                let t = Instant::now();
                sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
                took.push(t.elapsed());
                let mut s: TcpStream = sock.into();
                let mut got = Vec::new();
                s.read_to_end(&mut got)?;
                anyhow::ensure!(got == b"bye", "client got {got:?}");
                drop(s);
                // Our side goes LAST-ACK → CLOSED as soon as tcpfront acknowledges our FIN;
                // only then is the 4-tuple free for this client again.
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(took)
        })?;
        // No SYN retransmission (a second or more): each reuse is answered at once.
        assert!(
            took[1..].iter().all(|t| *t < Duration::from_millis(500)),
            "{v6}: {took:?}"
        );
    }
    join(up)?;
    let stats = tf.stats()?;
    assert_eq!(stats["engine"]["reopened"], 2 * REUSES, "{stats}");
    assert_eq!(stats["engine"]["misrouted_dropped"], 0, "{stats}");
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn client_initiated_close_leaves_time_wait_with_the_client() -> anyhow::Result<()> {
    let lab = lab()?;
    let tf = start(&lab, "echo", &["--msl", "30s"])?;
    let addr = client_addr(&lab, false);
    let ns = lab.names.client_ns.clone();
    run_in(&ns, move || {
        let mut s = connect(addr)?;
        s.write_all(b"ping")?;
        let mut b = [0u8; 4];
        s.read_exact(&mut b)?;
        s.shutdown(Shutdown::Write)?;
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(300));
    // tcpfront closed second (LAST-ACK → CLOSED): its flow entry is gone at once ...
    assert_eq!(flows(&lab)?, 0);
    // ... and the client's kernel holds TIME-WAIT.
    let ss = command_in(&lab.names.client_ns, "ss")
        .args(["-tan", "state", "time-wait"])
        .output()?;
    let text = String::from_utf8_lossy(&ss.stdout);
    assert!(
        text.contains(&format!("{}:{PORT}", lab.front_addr(false))),
        "{text}"
    );
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn thousand_concurrent_connections_all_complete() -> anyhow::Result<()> {
    let lab = lab()?;
    let tf = start(&lab, "echo", &[])?;
    let addr = client_addr(&lab, false);
    let n = run_in(&lab.names.client_ns, move || {
        let mut conns = Vec::new();
        for i in 0..1000u32 {
            let mut s = connect(addr)?;
            s.write_all(&i.to_be_bytes().repeat(256))?; // 1 KiB each
            conns.push((i, s));
        }
        let mut done = 0;
        for (i, s) in &mut conns {
            let mut buf = vec![0u8; 1024];
            s.read_exact(&mut buf)?;
            anyhow::ensure!(
                buf == i.to_be_bytes().repeat(256),
                "connection {i} got other bytes"
            );
            done += 1;
        }
        Ok(done)
    })?;
    assert_eq!(n, 1000);
    let stats = tf.stats()?;
    assert_eq!(
        Tcpfront::counter(&stats, "cookie_ack_valid"),
        1000,
        "{stats}"
    );
    assert!(tf.stop()?.success());
    Ok(())
}

/// Uploads as fast as iperf3 sends them, one stream then eight: every frame reaches user
/// space (none dropped for want of a fill-ring buffer or an RX-ring slot; a connection's
/// window is far below the rings' size). Found by the throughput benchmark: a refill that
/// returned fewer frames than it took starved the fill ring within seconds. And the queue
/// threads allocate nothing per frame (tcpfront counts each thread's heap allocations).
#[test]
fn uploads_lose_no_frame_on_the_way_to_user_space() -> anyhow::Result<()> {
    let lab = lab()?;
    let _iperf = ChildGuard::spawn(
        "iperf3 server",
        command_in(&lab.names.front_ns, "iperf3")
            .args(["-s", "-p", &UPSTREAM.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let tf = start(&lab, &format!("127.0.0.1:{UPSTREAM}"), &[])?;
    // Heap allocations of the queue threads, against frames handed to them.
    let allocations_and_frames = || -> anyhow::Result<(u64, u64)> {
        let stats = tf.stats()?;
        let allocations = stats["engine"]["queues"]
            .as_array()
            .context("per-queue stats")?
            .iter()
            .filter_map(|q| q["allocations"].as_u64())
            .sum();
        Ok((allocations, Tcpfront::counter(&stats, "flow_redirected")))
    };
    let before = allocations_and_frames()?;
    for streams in ["1", "8"] {
        let out = command_in(&lab.names.client_ns, "iperf3")
            .args(["-c", &tcpfront_tests::lab::FRONT_V4.to_string()])
            .args(["-p", &PORT.to_string(), "-t", "3", "-J", "-P", streams])
            .output()
            .context("running iperf3")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| String::from_utf8_lossy(&out.stderr).into_owned())?;
        assert!(v["error"].is_null(), "iperf3: {}", v["error"]);
        let received = v["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0);
        assert!(
            received > 10 << 20,
            "{streams} stream(s): only {received} bytes"
        );
    }
    // A connection allocates when it opens (buffers come from a per-thread pool after
    // that); frames allocate nothing.
    let after = allocations_and_frames()?;
    let (allocations, frames) = (after.0 - before.0, after.1 - before.1);
    assert!(allocations > 0, "the counting allocator counts");
    assert!(
        allocations * 1000 < frames,
        "{allocations} allocations for {frames} frames"
    );
    let stats = tf.stats()?;
    assert_eq!(stats["engine"]["xsk_fill_ring_empty"], 0, "{stats}");
    assert_eq!(stats["engine"]["xsk_rx_dropped"], 0, "{stats}");
    assert!(tf.stop()?.success());
    Ok(())
}

/// Two queues on each veth end (whatever the CPU count), one engine thread per queue: the
/// client's connections spread over both, and every frame of a connection reaches the queue
/// that owns it (none is dropped as misrouted), over many round trips each.
#[test]
fn connections_spread_over_the_queues_and_stay_on_theirs() -> anyhow::Result<()> {
    let lab = lab_with_queues(2)?;
    let tf = start(&lab, "echo", &[])?;
    let addr = client_addr(&lab, false);
    let rounds = run_in(&lab.names.client_ns, move || {
        let mut conns = (0..200u32)
            .map(|_| connect(addr))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut rounds = 0;
        for round in 0..20u32 {
            for (i, s) in conns.iter_mut().enumerate() {
                s.write_all(&(i as u32 ^ round << 16).to_be_bytes().repeat(100))?;
            }
            for (i, s) in conns.iter_mut().enumerate() {
                let mut buf = vec![0u8; 400];
                s.read_exact(&mut buf)?;
                anyhow::ensure!(buf == (i as u32 ^ round << 16).to_be_bytes().repeat(100));
                rounds += 1;
            }
        }
        Ok(rounds)
    })?;
    assert_eq!(rounds, 200 * 20);
    let stats = tf.stats()?;
    let queues = stats["engine"]["queues"]
        .as_array()
        .context("per-queue stats")?
        .clone();
    assert_eq!(queues.len(), 2, "{stats}");
    for q in &queues {
        assert!(q["opened"].as_u64() > Some(20), "an idle queue: {stats}");
        assert_eq!(q["misrouted"].as_u64(), Some(0), "{stats}");
    }
    let opened: u64 = queues.iter().filter_map(|q| q["opened"].as_u64()).sum();
    assert_eq!(opened, 200);
    // Each queue's thread runs on its own CPU where there are two.
    if queue_per_cpu() >= 2 {
        assert_ne!(queues[0]["cpu"], queues[1]["cpu"], "{stats}");
    }
    assert_eq!(Tcpfront::counter(&stats, "cookie_ack_valid"), 200);
    assert!(tf.stop()?.success());
    Ok(())
}

#[test]
fn with_syn_cookies_off_the_engine_does_the_handshake() -> anyhow::Result<()> {
    let lab = lab()?;
    let tf = start(&lab, "echo", &["--syn-cookies", "off"])?;
    for v6 in [false, true] {
        let addr = client_addr(&lab, v6);
        let echoed = run_in(&lab.names.client_ns, move || {
            let mut s = connect(addr)?;
            s.write_all(b"handshake by the engine")?;
            let mut buf = [0u8; 23];
            s.read_exact(&mut buf)?;
            Ok(buf.to_vec())
        })?;
        assert_eq!(echoed, b"handshake by the engine");
    }
    let stats = tf.stats()?;
    assert_eq!(Tcpfront::counter(&stats, "syn_ack_sent"), 0, "{stats}");
    assert!(Tcpfront::counter(&stats, "syn_redirected") >= 2, "{stats}");
    assert!(tf.stop()?.success());
    Ok(())
}
