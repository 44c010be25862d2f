//! The control plane of a running tcpfront: `conns`, `stats` and `status` through the control
//! socket (and from the pins alone), and the graceful shutdown on SIGTERM.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tcpfront_tests::{
    lab::Lab,
    netns::{command_in, run_in, spawn_in},
    process::{Tcpfront, tcpfront_bin},
};

const PORT: u16 = 8080;
const UPSTREAM: u16 = 18080;

/// One test of this file at a time: they start tcpfront and count its packets.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn start(lab: &Lab, upstream: Option<&str>, extra: &[&str]) -> anyhow::Result<Tcpfront> {
    let listen4 = format!("0.0.0.0:{PORT}");
    let listen6 = format!("[::]:{PORT}");
    let mut args = vec!["--listen", &listen4, "--listen", &listen6];
    match upstream {
        Some(u) => args.extend(["--upstream", u]),
        None => args.push("--echo"),
    }
    args.extend(extra);
    Tcpfront::start(lab, &args)
}

fn connect(addr: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    Ok(s)
}

/// Reads exactly `n` bytes.
fn read_n(s: &mut TcpStream, n: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// An upstream in the front-end namespace: per connection, answers the first line with
/// `ok\n`, or with `bye\n` and a close when the line is `close`. Other connections read to
/// EOF and then stay open (so that tcpfront's side stays half-closed) until `release` drops.
fn scripted_upstream(lab: &Lab, release: mpsc::Receiver<()>) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let release = std::sync::Arc::new(std::sync::Mutex::new(release));
    let _accept = spawn_in(&lab.names.front_ns, move || {
        let l = TcpListener::bind(("127.0.0.1", UPSTREAM))?;
        ready_tx.send(()).ok();
        loop {
            let (mut s, _) = l.accept()?;
            let release = release.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut line = Vec::new();
                let mut b = [0u8; 1];
                while s.read(&mut b)? == 1 && b[0] != b'\n' {
                    line.push(b[0]);
                }
                if line == b"close" {
                    s.write_all(b"bye\n")?;
                    return Ok(());
                }
                s.write_all(b"ok\n")?;
                let mut rest = Vec::new();
                s.read_to_end(&mut rest)?;
                // Hold our side open until the test ends.
                let _ = release.lock().map(|r| r.recv());
                Ok(())
            });
        }
        #[allow(unreachable_code)]
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("upstream did not start")
}

fn cli_json(tf: &Tcpfront, args: &[&str]) -> anyhow::Result<Value> {
    let out = tf.cli(args)?;
    ensure!(
        out.status.success(),
        "tcpfront {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).with_context(|| format!("parsing {args:?} JSON"))
}

fn conn_of(conns: &Value, client_port: u16) -> Option<Value> {
    conns["connections"].as_array()?.iter().find_map(|c| {
        let remote: SocketAddr = c["remote"].as_str()?.parse().ok()?;
        (remote.port() == client_port).then(|| c.clone())
    })
}

#[test]
fn conns_and_stats_show_each_connection_and_the_traffic() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let (release_tx, release_rx) = mpsc::channel();
    scripted_upstream(&lab, release_rx)?;
    let upstream = format!("127.0.0.1:{UPSTREAM}");
    let tf = start(&lab, Some(&upstream), &["--msl", "30s"])?;
    let iface = tf.iface.clone();

    // established: "hold\n" in, "ok\n" out. half-closed: the same, then the client's FIN.
    // time-wait: "close\n" in, "bye\n" and the upstream's FIN out, then the client's FIN.
    let v4 = SocketAddr::new(lab.front_addr(false), PORT);
    let v6 = SocketAddr::new(lab.front_addr(true), PORT);
    let (established, half_closed, closed) = run_in(&lab.names.client_ns, move || {
        let mut a = connect(v4)?;
        a.write_all(b"hold\n")?;
        ensure!(read_n(&mut a, 3)? == b"ok\n");
        let mut b = connect(v6)?;
        b.write_all(b"hold\n")?;
        ensure!(read_n(&mut b, 3)? == b"ok\n");
        b.shutdown(Shutdown::Write)?;
        let mut c = connect(v4)?;
        c.write_all(b"close\n")?;
        let mut got = Vec::new();
        c.read_to_end(&mut got)?;
        ensure!(got == b"bye\n", "got {got:?}");
        let port = c.local_addr()?.port();
        drop(c);
        Ok((a, b, port))
    })?;
    let (pa, pb) = (
        established.local_addr()?.port(),
        half_closed.local_addr()?.port(),
    );

    // The engine sees the last ACKs a moment after the client's calls return.
    let deadline = Instant::now() + Duration::from_secs(10);
    let conns = loop {
        let conns = cli_json(&tf, &["conns", "--iface", &iface, "--json"])?;
        let state = |p| conn_of(&conns, p).and_then(|c| c["state"].as_str().map(String::from));
        if state(pa).as_deref() == Some("ESTABLISHED")
            && state(pb).as_deref() == Some("CLOSE-WAIT")
            && state(closed).as_deref() == Some("TIME-WAIT")
        {
            break conns;
        }
        ensure!(
            Instant::now() < deadline,
            "states never settled: {}",
            serde_json::to_string(&conns["connections"])?
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(conns["connections"].as_array().map(Vec::len), Some(3));
    for (port, family, bytes_in, bytes_out) in [
        (pa, "ipv4", 5, 3),
        (pb, "ipv6", 5, 3),
        (closed, "ipv4", 6, 4),
    ] {
        let c = conn_of(&conns, port).context("connection missing")?;
        assert_eq!(c["family"], family, "{c}");
        assert_eq!(c["bytes_in"], bytes_in, "{c}");
        assert_eq!(c["bytes_out"], bytes_out, "{c}");
        assert_eq!(c["in_flow_map"], true, "{c}");
        assert_eq!(c["from_cookie"], true, "{c}");
        assert_eq!(c["upstream"], upstream.as_str(), "{c}");
        assert_eq!(c["retransmits"], 0, "{c}");
        assert_eq!(
            c["snd_una"], c["snd_nxt"],
            "everything was acknowledged: {c}"
        );
        assert!(c["mss"].as_u64().unwrap_or(0) >= 1220, "{c}");
        assert!(c["rto_ms"].as_u64().unwrap_or(0) >= 200, "{c}");
    }
    let tw = conn_of(&conns, closed).context("time-wait missing")?;
    let left = tw["time_wait_left_ms"].as_u64().context("no time left")?;
    assert!(left > 0 && left <= 60_000, "2·MSL is 60 s: {tw}");
    assert_eq!(conns["listeners"].as_array().map(Vec::len), Some(2));

    // Filters.
    let only_tw = cli_json(
        &tf,
        &["conns", "--iface", &iface, "--state", "time-wait", "--json"],
    )?;
    assert_eq!(only_tw["connections"].as_array().map(Vec::len), Some(1));
    assert!(conn_of(&only_tw, closed).is_some());
    let by_port = cli_json(
        &tf,
        &[
            "conns",
            "--iface",
            &iface,
            "--port",
            &pa.to_string(),
            "--json",
        ],
    )?;
    assert_eq!(by_port["connections"].as_array().map(Vec::len), Some(1));
    assert!(conn_of(&by_port, pa).is_some());

    // The table: a header, two LISTEN rows, one row per connection with its state.
    let out = tf.cli(&["conns", "--iface", &iface])?;
    let table = String::from_utf8(out.stdout)?;
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(rows.len(), 5, "{table}");
    assert_eq!(rows.iter().filter(|r| r.starts_with("LISTEN")).count(), 2);
    for (port, state) in [
        (pa, "ESTABLISHED"),
        (pb, "CLOSE-WAIT"),
        (closed, "TIME-WAIT"),
    ] {
        let needle = format!(":{port} ");
        let matching: Vec<_> = rows.iter().filter(|r| r.contains(&needle)).collect();
        assert_eq!(matching.len(), 1, "{table}");
        assert!(matching[0].starts_with(state), "{table}");
    }

    // Five illegal SYN+FIN probes, then the counters against the traffic sent.
    let hping = command_in(&lab.names.client_ns, "hping3")
        .args(["-q", "-c", "5", "-i", "u20000", "-S", "-F", "-p"])
        .arg(PORT.to_string())
        .arg(lab.front_addr(false).to_string())
        .output()?;
    ensure!(
        hping.status.success() || hping.status.code() == Some(1),
        "hping3: {}",
        String::from_utf8_lossy(&hping.stderr)
    );
    let stats = cli_json(&tf, &["stats", "--iface", &iface, "--json"])?;
    let xdp = |name: &str| stats["xdp"][name].as_u64().unwrap_or(u64::MAX);
    let engine = |name: &str| stats["engine"][name].as_u64().unwrap_or(u64::MAX);
    assert_eq!(xdp("class_syn"), 3, "{stats}");
    assert_eq!(xdp("syn_ack_sent"), 3, "{stats}");
    assert_eq!(xdp("cookie_ack_valid"), 3, "{stats}");
    assert_eq!(xdp("cookie_ack_invalid"), 0, "{stats}");
    assert_eq!(xdp("flow_inserted"), 3, "{stats}");
    assert_eq!(xdp("class_syn_fin"), 5, "{stats}");
    assert_eq!(xdp("drop_illegal_flags"), 5, "{stats}");
    assert_eq!(engine("opened"), 3, "{stats}");
    assert_eq!(engine("closed"), 0, "{stats}");
    assert_eq!(engine("reset"), 0, "{stats}");
    assert_eq!(engine("connections"), 3, "{stats}");
    assert_eq!(engine("time_wait"), 1, "{stats}");
    assert_eq!(engine("retransmits"), 0, "{stats}");
    assert_eq!(stats["engine"]["states"]["ESTABLISHED"], 1, "{stats}");

    // --watch prints rates: nothing moves, so every rate is 0.
    let watch = tf.cli(&[
        "stats", "--iface", &iface, "--json", "--watch", "1", "--count", "2",
    ])?;
    ensure!(watch.status.success(), "stats --watch failed");
    let reports: Vec<Value> = String::from_utf8(watch.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[1]["xdp_per_sec"]["class_syn"], 0.0);
    assert_eq!(reports[1]["engine_per_sec"]["opened"], 0.0);

    // status names this instance and its settings.
    let status = cli_json(&tf, &["status", "--json"])?;
    let me = status
        .as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == iface.as_str()))
        .context("status does not list the instance")?;
    assert_eq!(me["state"], "running", "{me}");
    assert_eq!(me["status"]["phase"], "serving", "{me}");
    assert_eq!(me["status"]["mode"], "drv", "{me}");
    assert_eq!(me["status"]["upstream"], upstream.as_str(), "{me}");
    assert_eq!(me["status"]["netns"], lab.names.front_ns.as_str(), "{me}");
    assert_eq!(me["status"]["connections"], 3, "{me}");
    assert_eq!(me["status"]["cookie_secret"]["source"], "random", "{me}");

    drop(release_tx);
    drop((established, half_closed));
    ensure!(tf.stop()?.success(), "tcpfront did not exit cleanly");
    Ok(())
}

/// What a client saw on a connection while tcpfront shut down.
#[derive(Debug, PartialEq)]
enum Seen {
    Fin,
    Reset,
    Other(String),
}

fn wait_for_close(s: &mut TcpStream) -> Seen {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => Seen::Fin,
        Ok(n) => Seen::Other(format!("{n} bytes")),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => Seen::Reset,
        Err(e) => Seen::Other(e.to_string()),
    }
}

#[test]
fn sigterm_drains_with_fin_refuses_new_syns_and_leaves_nothing() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let tf = start(&lab, None, &["--drain-timeout", "20s"])?;
    let iface = tf.iface.clone();
    let addr = SocketAddr::new(lab.front_addr(false), PORT);
    let mut conns = run_in(&lab.names.client_ns, move || {
        (0..3)
            .map(|i| {
                let mut s = connect(addr)?;
                s.write_all(&[i; 100])?;
                ensure!(read_n(&mut s, 100)? == [i; 100]);
                Ok(s)
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;

    tf.proc.signal(libc::SIGTERM);
    let seen: Vec<Seen> = conns.iter_mut().map(wait_for_close).collect();
    assert_eq!(seen, [Seen::Fin, Seen::Fin, Seen::Fin]);

    // Draining: a new SYN is passed to the kernel, which has no listener.
    let refused = run_in(&lab.names.client_ns, move || {
        Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map(drop))
    })?;
    match refused {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {}
        other => bail!("a new connection while draining: {other:?}"),
    }
    let stats = cli_json(&tf, &["stats", "--iface", &iface, "--json"])?;
    assert_eq!(stats["xdp"]["syn_while_draining"], 1, "{stats}");
    let status = cli_json(&tf, &["status", "--json"])?;
    let me = status
        .as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == iface.as_str()))
        .context("status does not list the draining instance")?;
    assert_eq!(me["status"]["phase"], "draining", "{me}");

    // The clients close; the drain ends before its timeout and nobody was reset.
    drop(conns);
    let mut tf = tf;
    let status = tf.proc.wait_timeout(Duration::from_secs(30))?;
    ensure!(status.success(), "tcpfront exited with {status}");
    let log = tf.log_text();
    ensure!(
        log.contains("drained: every connection closed"),
        "the drain did not finish:\n{log}"
    );
    ensure!(!log.contains("reset "), "connections were reset:\n{log}");
    lab.assert_nothing_left()
}

#[test]
fn stuck_connections_are_reset_after_the_drain_timeout_or_a_second_signal() -> anyhow::Result<()> {
    let _serial = serial();
    for second_signal in [false, true] {
        let lab = Lab::unique(Some(&tcpfront_bin()))?;
        let timeout = if second_signal { "120s" } else { "1s" };
        let mut tf = start(&lab, None, &["--drain-timeout", timeout])?;
        let addr = SocketAddr::new(lab.front_addr(false), PORT);
        // The client reads the FIN but never closes its side.
        let mut stuck = run_in(&lab.names.client_ns, move || connect(addr))?;
        stuck.write_all(b"x")?;
        read_n(&mut stuck, 1)?;
        tf.proc.signal(libc::SIGTERM);
        assert_eq!(wait_for_close(&mut stuck), Seen::Fin);
        if second_signal {
            // Give the first signal's drain a moment to be under way.
            std::thread::sleep(Duration::from_millis(300));
            tf.proc.signal(libc::SIGTERM);
        }
        let status = tf.proc.wait_timeout(Duration::from_secs(30))?;
        ensure!(status.success(), "tcpfront exited with {status}");
        let log = tf.log_text();
        let why = if second_signal {
            "second signal"
        } else {
            "drain timeout"
        };
        ensure!(log.contains(why), "no {why:?} in:\n{log}");
        ensure!(log.contains("reset 1 connection(s)"), "{log}");
        lab.assert_nothing_left()?;
    }
    Ok(())
}

#[test]
fn without_the_daemon_conns_reads_the_pinned_flow_map() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let mut tf = start(&lab, None, &[])?;
    let iface = tf.iface.clone();
    let addr = SocketAddr::new(lab.front_addr(false), PORT);
    let mut s = run_in(&lab.names.client_ns, move || connect(addr))?;
    s.write_all(b"x")?;
    read_n(&mut s, 1)?;
    let port = s.local_addr()?.port();

    // A crash: the kernel detaches the program, the pins and the socket file stay.
    tf.proc.signal(libc::SIGKILL);
    tf.proc.wait_timeout(Duration::from_secs(10))?;
    let out = tf.cli(&["conns", "--iface", &iface, "--json"])?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let cleanup = || {
        let _ = std::fs::remove_dir_all(lab.pin_dir());
        let _ = std::fs::remove_file(format!("/run/tcpfront/{iface}.sock"));
        let _ = std::fs::remove_file(format!("/run/tcpfront/{iface}.lock"));
    };
    let result = (|| {
        ensure!(out.status.success(), "conns failed: {stderr}");
        ensure!(stderr.contains("pinned flow map only"), "no note: {stderr}");
        let conns: Value = serde_json::from_slice(&out.stdout)?;
        let c = conn_of(&conns, port).context("the flow is not listed")?;
        ensure!(c["state"].is_null(), "{c}");
        ensure!(c["in_flow_map"] == true && c["from_cookie"] == true, "{c}");
        ensure!(c["local"] == addr.to_string().as_str(), "{c}");
        let status = tf.cli(&["status", "--json"])?;
        let status: Value = serde_json::from_slice(&status.stdout)?;
        let me = status
            .as_array()
            .and_then(|a| a.iter().find(|e| e["iface"] == iface.as_str()))
            .context("status does not list the stale instance")?;
        ensure!(me["state"] == "stale", "{me}");
        Ok(())
    })();
    cleanup();
    result
}

#[test]
fn queries_fail_plainly() -> anyhow::Result<()> {
    let tcpfront = tcpfront_bin();
    let run = |args: &[&str]| -> anyhow::Result<(bool, String)> {
        let out = Command::new(&tcpfront).args(args).output()?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    };
    for cmd in ["conns", "stats"] {
        let (ok, err) = run(&[cmd, "--iface", "tfnothere0"])?;
        ensure!(!ok, "{cmd} succeeded without tcpfront");
        ensure!(
            err.starts_with("error: tcpfront is not running on tfnothere0"),
            "{cmd}: {err}"
        );
    }
    let (ok, err) = run(&["conns", "--state", "bogus"])?;
    ensure!(!ok && err.contains("unknown state \"bogus\""), "{err}");
    let (ok, err) = run(&["stats", "--watch", "0"])?;
    ensure!(!ok && err.contains("--watch"), "{err}");

    // As nobody: told that root is needed.
    for cmd in ["conns", "stats", "status"] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&tcpfront)
            .arg(cmd)
            .output()
            .context("running setpriv")?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "{cmd} ran as nobody");
        ensure!(err.contains("needs root"), "{cmd} as nobody: {err}");
    }
    Ok(())
}
