//! The foundation: tcpfront attaches on a lab veth, counts real kernel TCP by class, and
//! never leaves an attachment or pins behind.

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::Stdio,
    time::Duration,
};

use anyhow::Context as _;
use tcp_common::{Counter, classify};
use tcpfront_tests::{
    lab::Lab,
    netns::{command_in, run_in, spawn_in},
    pcap,
    process::{ChildGuard, Tcpfront, tcpfront_bin},
};

const PORT: u16 = 7001;

/// One request/response exchange over real kernel TCP, each side in its namespace.
fn exchange(lab: &Lab, conns: &[SocketAddr]) -> anyhow::Result<()> {
    let n = conns.len();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = spawn_in(&lab.names.front_ns, move || {
        let listener = TcpListener::bind(("::", PORT)).context("bind")?;
        ready_tx.send(()).ok();
        for _ in 0..n {
            let (mut s, _) = listener.accept()?;
            let mut req = Vec::new();
            s.read_to_end(&mut req)?;
            anyhow::ensure!(req == b"ping", "server got {req:?}");
            s.write_all(b"pong")?;
        }
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("server did not start")?;
    let conns = conns.to_vec();
    run_in(&lab.names.client_ns, move || {
        for addr in conns {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .with_context(|| format!("connect {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(b"ping")?;
            s.shutdown(Shutdown::Write)?;
            let mut resp = Vec::new();
            s.read_to_end(&mut resp)?;
            anyhow::ensure!(resp == b"pong", "client got {resp:?}");
        }
        Ok(())
    })?;
    server.join().expect("server thread panicked")
}

fn class_counts(frames: &[Vec<u8>]) -> BTreeMap<&'static str, u64> {
    let mut m = BTreeMap::new();
    for f in frames {
        let Some(flags) = pcap::tcp_flags(f) else {
            continue;
        };
        *m.entry(Counter::Tcp.name()).or_default() += 1;
        *m.entry(classify::classify(flags).name()).or_default() += 1;
        for (bit, c) in [
            (classify::PSH, Counter::FlagPsh),
            (classify::URG, Counter::FlagUrg),
            (classify::ECE, Counter::FlagEce),
            (classify::CWR, Counter::FlagCwr),
        ] {
            if flags & bit != 0 {
                *m.entry(c.name()).or_default() += 1;
            }
        }
    }
    m
}

#[test]
fn xdp_counts_real_kernel_tcp_by_class() -> anyhow::Result<()> {
    let bin = tcpfront_bin();
    let lab = Lab::unique(Some(&bin))?;
    let tf = Tcpfront::start(&lab, &[])?;
    assert!(
        lab.front_has_xdp()?,
        "no XDP program on {}",
        lab.names.front_if
    );

    // An independent witness of what reached the front-end interface.
    let pcap_path = std::env::temp_dir().join(format!("{}.pcap", lab.names.front_if));
    let mut tcpdump = ChildGuard::spawn(
        "tcpdump",
        command_in(&lab.names.front_ns, "tcpdump")
            .args([
                "--immediate-mode",
                "-i",
                &lab.names.front_if,
                "-U",
                "-n",
                "-w",
            ])
            .arg(&pcap_path)
            // Ingress only: what the XDP program sees. (`-Q in` captured nothing on veth.)
            .arg(format!(
                "tcp and (dst host {} or dst host {})",
                lab.front_addr(false),
                lab.front_addr(true)
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )?;
    let mut line = String::new();
    let stderr = tcpdump.child.stderr.take().context("tcpdump stderr")?;
    BufReader::new(stderr).read_line(&mut line)?;
    assert!(line.contains("listening on"), "tcpdump: {line}");

    let before = tf.stats()?;
    exchange(
        &lab,
        &[
            SocketAddr::new(lab.front_addr(false), PORT),
            SocketAddr::new(lab.front_addr(true), PORT),
        ],
    )?;
    // Let the last ACKs land before both sides stop counting.
    std::thread::sleep(Duration::from_millis(500));
    tcpdump.signal(libc::SIGINT);
    tcpdump.wait_timeout(Duration::from_secs(10))?;
    let after = tf.stats()?;

    let frames = pcap::read_frames(&std::fs::read(&pcap_path)?)?;
    let _ = std::fs::remove_file(&pcap_path);
    let seen = class_counts(&frames);
    let names = std::iter::once(Counter::Tcp)
        .chain(Counter::ALL.iter().copied().filter(|c| {
            (*c >= Counter::ClassSyn && *c <= Counter::ClassXmas)
                || (*c >= Counter::FlagPsh && *c <= Counter::FlagCwr)
        }))
        .map(|c| c.name());
    for name in names {
        let counted = Tcpfront::counter(&after, name) - Tcpfront::counter(&before, name);
        let captured = seen.get(name).copied().unwrap_or(0);
        assert_eq!(
            counted, captured,
            "counter {name}: XDP {counted}, tcpdump {captured}"
        );
    }
    // Two connections, v4 and v6: the witness must have seen them, or the test proves nothing.
    assert_eq!(seen.get("class_syn"), Some(&2), "{seen:?}");
    assert!(seen.get("class_fin").copied().unwrap_or(0) >= 2, "{seen:?}");
    assert!(seen.get("class_ack").copied().unwrap_or(0) >= 4, "{seen:?}");
    assert!(seen.get("flag_psh").copied().unwrap_or(0) >= 2, "{seen:?}");
    assert!(Tcpfront::counter(&after, "ipv4") > 0 && Tcpfront::counter(&after, "ipv6") > 0);
    assert_eq!(
        Tcpfront::counter(&after, "verdict_drop"),
        0,
        "legal traffic was dropped: {after}"
    );

    let status = tf.stop()?;
    assert!(status.success(), "tcpfront exited with {status}");
    assert!(
        !lab.front_has_xdp()?,
        "XDP program still attached after SIGTERM"
    );
    assert!(!lab.pin_dir().exists(), "pins left after SIGTERM");
    Ok(())
}

#[test]
fn killed_instance_leaves_nothing_attached_and_is_replaced() -> anyhow::Result<()> {
    let lab = Lab::unique(None)?;
    let first = Tcpfront::start(&lab, &[])?;
    assert!(lab.front_has_xdp()?);

    // A second instance on the same interface is refused while the first lives.
    let second = first.cli(&["run", "--iface", &lab.names.front_if])?;
    assert!(!second.status.success());
    let msg = String::from_utf8_lossy(&second.stderr);
    assert!(msg.contains("already running"), "{msg}");
    assert!(
        lab.front_has_xdp()?,
        "the refused instance disturbed the first"
    );

    // SIGKILL: no clean-up code runs; the kernel must still detach (the attachment is a
    // bpf_link owned by the process), while the pins stay behind.
    first.proc.signal(libc::SIGKILL);
    let mut first = first;
    first.proc.wait_timeout(Duration::from_secs(10))?;
    assert!(
        !lab.front_has_xdp()?,
        "a killed tcpfront left its XDP program attached"
    );
    assert!(lab.pin_dir().exists(), "expected stale pins after SIGKILL");
    drop(first);

    // The next start detects the stale state and replaces it.
    let next = Tcpfront::start(&lab, &[])?;
    assert!(next.log_text().contains("stale"), "{}", next.log_text());
    assert!(lab.front_has_xdp()?);
    let stats = next.stats()?;
    assert_eq!(Tcpfront::counter(&stats, "verdict_drop"), 0);

    let status = next.stop()?;
    assert!(status.success());
    assert!(!lab.front_has_xdp()?);
    assert!(!lab.pin_dir().exists());
    Ok(())
}

#[test]
fn cli_rejects_bad_input_plainly() -> anyhow::Result<()> {
    let bin = tcpfront_bin();
    let lab = Lab::unique(None)?;
    let out = std::process::Command::new(&bin)
        .args([
            "--netns",
            &lab.names.front_ns,
            "run",
            "--iface",
            "nosuchif0",
        ])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--iface nosuchif0") && err.contains("no such interface"),
        "{err}"
    );

    let out = std::process::Command::new(&bin)
        .args(["stats", "--iface", &lab.names.front_if])
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running on"), "{err}");

    let out = std::process::Command::new(&bin)
        .args(["run", "--iface", "x", "--mode", "turbo"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--mode"));

    let out = std::process::Command::new(&bin)
        .args(["--netns", "no/such", "run", "--iface", "x"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--netns"));
    Ok(())
}
