//! Running tcpfront as operators do: scraped by a real Prometheus, supervised through the
//! sd_notify protocol with the shipped unit file, queried from `ip netns exec`, tuned
//! (keep-alive, upstream connect timeout) and stopped at any point of its start-up.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tcpfront_tests::{
    lab::Lab,
    netns::{command_in, nft, run_in, spawn_in},
    process::{ChildGuard, Tcpfront, tcpfront_bin},
};

const PORT: u16 = 8080;
const UPSTREAM: u16 = 18081;
const METRICS: u16 = 19464;
const PROMETHEUS: u16 = 19090;

/// One test of this file at a time: they start tcpfront and count its packets.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn listen_args() -> Vec<String> {
    vec![
        "--listen".into(),
        format!("0.0.0.0:{PORT}"),
        "--listen".into(),
        format!("[::]:{PORT}"),
    ]
}

/// `tcpfront --netns … run --iface … --echo --listen …` for a process the test spawns itself.
fn echo_run_args(lab: &Lab) -> Vec<String> {
    let mut args = vec![
        "--netns".to_string(),
        lab.names.front_ns.clone(),
        "run".into(),
        "--iface".into(),
        lab.names.front_if.clone(),
        "--echo".into(),
    ];
    args.extend(listen_args());
    args
}

fn start(lab: &Lab, extra: &[&str]) -> anyhow::Result<Tcpfront> {
    let mut args = listen_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Tcpfront::start(lab, &args)
}

/// An echo server on the front namespace's loopback, for the lab's lifetime.
fn echo_upstream(lab: &Lab) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let _detached = spawn_in(&lab.names.front_ns, move || {
        let listener = TcpListener::bind(("127.0.0.1", UPSTREAM))?;
        ready_tx.send(()).ok();
        for s in listener.incoming() {
            let mut s = s?;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(())
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .context("the echo upstream did not start")
}

/// Connects from the client namespace, sends `msg` and reads it back; returns the stream.
fn echo_once(lab: &Lab, msg: &'static [u8]) -> anyhow::Result<TcpStream> {
    let server = SocketAddr::new(lab.front_addr(false), PORT);
    run_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .with_context(|| format!("connect {server}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(msg)?;
        let mut back = vec![0; msg.len()];
        s.read_exact(&mut back)?;
        ensure!(back == msg, "echoed {back:?}");
        Ok(s)
    })
}

/// A plain HTTP/1.0 GET inside namespace `ns`; returns the body of a 200 answer.
fn http_get(ns: &str, port: u16, path: &str) -> anyhow::Result<String> {
    let path = path.to_string();
    run_in(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header end")?;
        ensure!(
            head.starts_with("HTTP/1.") && head.contains(" 200 "),
            "{head}"
        );
        Ok(body.to_string())
    })
}

/// `query` through Prometheus's HTTP API: the value of its single sample, if any.
fn prometheus_value(ns: &str, query: &str) -> anyhow::Result<Option<f64>> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let body = http_get(ns, PROMETHEUS, &format!("/api/v1/query?query={encoded}"))?;
    let v: Value = serde_json::from_str(&body).with_context(|| format!("parsing {body}"))?;
    ensure!(v["status"] == "success", "{v}");
    let Some(sample) = v["data"]["result"].as_array().and_then(|r| r.first()) else {
        return Ok(None);
    };
    let value = sample["value"][1]
        .as_str()
        .with_context(|| format!("no value in {sample}"))?;
    Ok(Some(value.parse()?))
}

#[test]
fn a_real_prometheus_scrapes_the_xdp_and_engine_counters() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    echo_upstream(&lab)?;
    let upstream = format!("127.0.0.1:{UPSTREAM}");
    let metrics = format!("127.0.0.1:{METRICS}");
    let tf = start(&lab, &["--upstream", &upstream, "--metrics", &metrics])?;

    // Known traffic: five connections, each a handshake answered by XDP, an upstream
    // connect and an echo.
    const CONNECTIONS: u64 = 5;
    for _ in 0..CONNECTIONS - 1 {
        drop(echo_once(&lab, b"ping\n")?);
    }
    let held = echo_once(&lab, b"ping\n")?;

    // The endpoint itself: OpenMetrics text with the conventional names.
    let text = http_get(&lab.names.front_ns, METRICS, "/metrics")?;
    for name in [
        "tcpfront_build_info{version=",
        "tcpfront_xdp_syn_ack_sent_total ",
        "tcpfront_xdp_drop_bad_checksum_total ",
        "tcpfront_engine_opened_total ",
        "tcpfront_engine_connections ",
        "tcpfront_connections{state=\"ESTABLISHED\"} 1",
        "tcpfront_upstream_connect_duration_seconds_bucket{le=",
        "# UNIT tcpfront_upstream_connect_duration_seconds seconds",
    ] {
        ensure!(text.contains(name), "no {name:?} in:\n{text}");
    }

    let dir = tempdir("prometheus")?;
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tcpfront\n    \
             static_configs:\n      - targets: ['{metrics}']\n"
        ),
    )?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let _prometheus = ChildGuard::spawn(
        "prometheus",
        command_in(&lab.names.front_ns, "prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(log),
    )?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let syn_acks = loop {
        let v = prometheus_value(&lab.names.front_ns, "tcpfront_xdp_syn_ack_sent_total")
            .unwrap_or(None);
        if let Some(v) = v
            && v >= CONNECTIONS as f64
        {
            break v;
        }
        if Instant::now() > deadline {
            bail!(
                "Prometheus has no tcpfront_xdp_syn_ack_sent_total >= {CONNECTIONS} ({v:?}); \
                 its log:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let ns = &lab.names.front_ns;
    let stats = tf.stats()?;
    let value = |q: &str| -> anyhow::Result<f64> {
        prometheus_value(ns, q)?.with_context(|| format!("Prometheus has no {q}"))
    };
    ensure!(
        syn_acks <= Tcpfront::counter(&stats, "syn_ack_sent") as f64,
        "Prometheus saw {syn_acks} SYN-ACKs, stats say {stats}"
    );
    ensure!(value("up")? == 1.0, "the scrape target is not up");
    ensure!(value("tcpfront_build_info")? == 1.0);
    ensure!(value("tcpfront_xdp_cookie_ack_valid_total")? >= CONNECTIONS as f64);
    ensure!(value("tcpfront_engine_opened_total")? >= CONNECTIONS as f64);
    ensure!(
        value("tcpfront_upstream_connect_duration_seconds_count")? == CONNECTIONS as f64,
        "one upstream connect per connection"
    );
    ensure!(value("tcpfront_engine_upstream_failed_total")? == 0.0);
    drop(held);
    Ok(())
}

fn tempdir(what: &str) -> anyhow::Result<std::path::PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tcpfront-{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Messages tcpfront sent to the socket, until `until` is among them or `timeout` passes.
fn notifications(
    sock: &UnixDatagram,
    seen: &mut Vec<String>,
    until: &str,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == until)) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no {until:?} within {timeout:?}; got {seen:?}");
        }
        sock.set_read_timeout(Some(left))?;
        match sock.recv(&mut buf) {
            Ok(n) => seen.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

#[test]
fn systemd_is_told_ready_status_and_stopping_in_order() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let dir = tempdir("notify")?;
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path)?;
    let mut args = listen_args();
    args.push("--echo".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let notify_socket = path.to_string_lossy().into_owned();
    let tf = Tcpfront::start_with_env(&lab, &args, "info", &[("NOTIFY_SOCKET", &notify_socket)])?;

    let mut seen = Vec::new();
    notifications(&sock, &mut seen, "READY=1", Duration::from_secs(10))?;
    ensure!(lab.front_has_xdp()?, "READY=1 before XDP was attached");
    ensure!(
        seen.last()
            .is_some_and(|m| m.contains("STATUS=serving: 0 connections")),
        "{seen:?}"
    );

    // A connection shows in the status line (updated every 2 s).
    let client = echo_once(&lab, b"hello")?;
    notifications(
        &sock,
        &mut seen,
        "STATUS=serving: 1 connection",
        Duration::from_secs(10),
    )?;
    drop(client);

    // A reload is bracketed by RELOADING=1 and READY=1 (this one is refused: no --config).
    let before = seen.len();
    tf.proc.signal(libc::SIGHUP);
    notifications(&sock, &mut seen, "RELOADING=1", Duration::from_secs(10))?;
    let mut after = seen.split_off(before);
    notifications(&sock, &mut after, "READY=1", Duration::from_secs(10))?;
    let reloading = after
        .iter()
        .position(|m| m.lines().any(|l| l == "RELOADING=1"));
    let ready = after.iter().position(|m| m.lines().any(|l| l == "READY=1"));
    ensure!(reloading < ready, "reload out of order: {after:?}");
    ensure!(
        tf.log_text().contains("reload refused"),
        "{}",
        tf.log_text()
    );
    ensure!(lab.front_has_xdp()?, "a refused reload stopped tcpfront");
    seen.extend(after);

    tf.proc.signal(libc::SIGTERM);
    notifications(&sock, &mut seen, "STOPPING=1", Duration::from_secs(10))?;
    let index = |what: &str| seen.iter().position(|m| m.lines().any(|l| l == what));
    // (READY=1 is there twice: at start and after the reload; the first counts.)
    let (ready, one, stopping) = (
        index("READY=1"),
        index("STATUS=serving: 1 connection"),
        index("STOPPING=1"),
    );
    ensure!(ready < one && one < stopping, "out of order: {seen:?}");
    ensure!(tf.stop()?.success());
    lab.assert_nothing_left()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_shipped_unit_file_verifies() -> anyhow::Result<()> {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        println!("SKIPPED: systemd-analyze is not installed (Debian package `systemd`)");
        return Ok(());
    };
    ensure!(out.status.success());
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/tcpfront.service"
    ))?;
    for key in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitMEMLOCK=",
        "RuntimeDirectory=tcpfront",
        "CapabilityBoundingSet=",
    ] {
        ensure!(unit.contains(key), "the unit has no {key}");
    }
    // verify checks that ExecStart's binary exists: point it at the one just built.
    let dir = tempdir("unit")?;
    let path = dir.join("tcpfront.service");
    let bin = tcpfront_bin();
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/tcpfront", &bin.to_string_lossy()),
    )?;
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown keys but names them: any line about our file is a defect.
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tcpfront.service"))
        .collect();
    ensure!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // The example configuration it points at is one tcpfront accepts.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../dist/tcpfront.toml");
    let out = Command::new(&bin)
        .args(["run", "--config", example, "--iface", "tfnothere0"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("--iface tfnothere0: no such interface"),
        "the example configuration was not accepted up to the interface check: {stderr}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn the_cli_works_under_ip_netns_exec_and_errors_read_like_a_cli() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let tf = start(&lab, &["--echo"])?;
    let client = echo_once(&lab, b"hello")?;
    let bin = tcpfront_bin();
    let bin = bin.to_string_lossy();
    let cli = |args: &[&str]| -> anyhow::Result<Value> {
        // `ip netns exec` remounts /sys: the pins are not visible, the control socket is.
        let out = command_in(&lab.names.front_ns, &bin).args(args).output()?;
        ensure!(
            out.status.success(),
            "tcpfront {args:?} under ip netns exec: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let iface = lab.names.front_if.as_str();
    let stats = cli(&["stats", "--iface", iface, "--json"])?;
    ensure!(Tcpfront::counter(&stats, "syn_ack_sent") >= 1, "{stats}");
    ensure!(stats["engine"]["connections"] == 1, "{stats}");
    let conns = cli(&["conns", "--iface", iface, "--json"])?;
    let rows = conns["connections"].as_array().context("no connections")?;
    ensure!(
        rows.iter()
            .any(|c| c["state"] == "ESTABLISHED" && c["in_flow_map"] == true),
        "{conns}"
    );
    let status = cli(&["status", "--json"])?;
    let me = status
        .as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == iface))
        .with_context(|| format!("{iface} not in {status}"))?;
    ensure!(me["state"] == "running", "{me}");
    drop(client);

    // Errors: one `error:` line naming what is wrong.
    let dir = tempdir("badconf")?;
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "iface = \"x\"\nkeepalive-count = \"many\"\n")?;
    let out = Command::new(tcpfront_bin())
        .args(["run", "--config"])
        .arg(&bad)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "a bad config was accepted");
    ensure!(
        stderr.starts_with("error: ")
            && stderr.contains(&*bad.to_string_lossy())
            && stderr.contains("keepalive-count"),
        "{stderr}"
    );
    let out = Command::new(tcpfront_bin())
        .args(["run", "--iface", "x", "--echo", "--listen", "0.0.0.0:1"])
        .args(["--recv-buffer", "512M"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.starts_with("error: --recv-buffer") && !stderr.contains("ERROR"),
        "{stderr}"
    );
    for (ring, extra, says) in [
        ("02:00:00:00:00:01", None, "at least two nodes"),
        (
            "02:00:00:00:00:01,zz:00:00:00:00:02",
            None,
            "not a MAC address",
        ),
        ("02:00:00:00:00:01,02:00:00:00:00:01", None, "listed twice"),
        (
            "02:00:00:00:00:01,02:00:00:00:00:02",
            Some("--syn-cookies=off"),
            "needs the SYN cookies",
        ),
    ] {
        let out = Command::new(tcpfront_bin())
            .args(["run", "--iface", "x", "--echo", "--listen", "0.0.0.0:1"])
            .args(["--fleet-nodes", ring])
            .args(extra)
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            stderr.starts_with("error: --fleet-nodes") && stderr.contains(says),
            "--fleet-nodes {ring}: {stderr}"
        );
    }
    // A ring that does not hold this node's interface is refused before anything is set up
    // (the running instance on the interface is untouched).
    let out = Command::new(tcpfront_bin())
        .args([
            "--netns",
            &lab.names.front_ns,
            "run",
            "--iface",
            iface,
            "--echo",
        ])
        .args(["--listen", "0.0.0.0:1"])
        .args(["--fleet-nodes", "02:00:00:00:00:01,02:00:00:00:00:02"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success()
            && stderr.contains("--fleet-nodes")
            && stderr.contains("is not one of the fleet's nodes"),
        "{stderr}"
    );
    ensure!(
        echo_once(&lab, b"still").is_ok(),
        "the running instance was disturbed"
    );
    std::fs::remove_dir_all(&dir)?;
    tf.stop()?;
    Ok(())
}

/// An nftables table in `ns` (deleted on drop) with one rule in the `hook` chain; its
/// counter tells how many packets matched.
struct NftRule {
    ns: String,
    table: String,
}

impl NftRule {
    fn add(ns: &str, hook: &str, rule: &str) -> anyhow::Result<Self> {
        let table = format!("tfops{}", std::process::id());
        let script = format!(
            "table inet {table} {{\n  chain c {{\n    type filter hook {hook} priority 0;\n    \
             {rule} counter drop\n  }}\n}}\n"
        );
        nft(ns, &script)?;
        Ok(Self {
            ns: ns.into(),
            table,
        })
    }

    fn packets(&self) -> anyhow::Result<u64> {
        let out = command_in(&self.ns, "nft")
            .args(["-j", "list", "table", "inet", &self.table])
            .output()?;
        let v: Value = serde_json::from_slice(&out.stdout)?;
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["rule"]["expr"].as_array())
            .flatten()
            .find_map(|x| x["counter"]["packets"].as_u64())
            .context("no counter in the nft table")
    }
}

impl Drop for NftRule {
    fn drop(&mut self) {
        let _ = command_in(&self.ns, "nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}

fn open_connections(tf: &Tcpfront) -> anyhow::Result<usize> {
    let out = tf.cli(&[
        "conns",
        "--iface",
        &tf.iface,
        "--json",
        "--state",
        "established",
    ])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["connections"].as_array().map_or(0, Vec::len))
}

#[test]
fn a_silent_client_is_probed_and_dropped_on_the_configured_schedule() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    // Idle 1 s, then 2 probes 500 ms apart: dropped 2 s after the last exchange.
    let tf = start(
        &lab,
        &[
            "--echo",
            "--keepalive-idle",
            "1s",
            "--keepalive-interval",
            "500ms",
            "--keepalive-count",
            "2",
        ],
    )?;
    let client = echo_once(&lab, b"hello")?;
    let last_exchange = Instant::now();
    // From now on the client's kernel never sees tcpfront's segments: nothing answers.
    let silence = NftRule::add(&lab.names.client_ns, "input", &format!("tcp sport {PORT}"))?;
    std::thread::sleep(Duration::from_millis(600));
    ensure!(open_connections(&tf)? == 1, "dropped before its idle time");
    ensure!(silence.packets()? == 0, "probed before its idle time");

    let deadline = Instant::now() + Duration::from_secs(15);
    while open_connections(&tf)? > 0 {
        ensure!(
            Instant::now() < deadline,
            "a silent client was never dropped"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gone_after = last_exchange.elapsed();
    // Two probes and the RST that ends it, and nothing more.
    std::thread::sleep(Duration::from_millis(300));
    let packets = silence.packets()?;
    ensure!(
        packets == 3,
        "{packets} segments reached the silent client, not 2 probes + RST"
    );
    ensure!(
        gone_after >= Duration::from_millis(1900),
        "dropped after {gone_after:?}, before idle + 2 x interval"
    );
    let stats = tf.stats()?;
    ensure!(stats["engine"]["reset"].as_u64() >= Some(1), "{stats}");
    drop(client);
    tf.stop()?;
    Ok(())
}

#[test]
fn an_upstream_that_never_answers_the_connect_resets_the_client_at_the_timeout()
-> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    // The upstream's SYNs vanish: without a timeout the kernel would retry for ~2 minutes.
    let _blackhole = NftRule::add(
        &lab.names.front_ns,
        "output",
        &format!("tcp dport {UPSTREAM}"),
    )?;
    let upstream = format!("127.0.0.1:{UPSTREAM}");
    let tf = start(&lab, &["--upstream", &upstream, "--connect-timeout", "1s"])?;
    let server = SocketAddr::new(lab.front_addr(false), PORT);
    let (result, waited) = run_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&server, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let sent = Instant::now();
        s.write_all(b"hello")?;
        let mut buf = [0u8; 16];
        let r = s.read(&mut buf).map_err(|e| e.kind());
        Ok((r, sent.elapsed()))
    })?;
    ensure!(
        result == Err(ErrorKind::ConnectionReset),
        "the client saw {result:?} after {waited:?}, not a reset"
    );
    ensure!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "reset after {waited:?}, with a connect timeout of 1 s"
    );
    let stats = tf.stats()?;
    ensure!(stats["engine"]["upstream_failed"] == 1, "{stats}");
    tf.stop()?;
    Ok(())
}

#[test]
fn a_stop_during_start_up_is_prompt_and_leaves_nothing() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    // From before the program is loaded to after it serves (start-up takes ~0.3-0.6 s here).
    for delay_ms in [0u64, 30, 100, 200, 300, 450, 700, 1200] {
        let args = echo_run_args(&lab);
        let mut proc = ChildGuard::spawn(
            "tcpfront",
            Command::new(tcpfront_bin())
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        std::thread::sleep(Duration::from_millis(delay_ms));
        let signalled = Instant::now();
        proc.signal(libc::SIGTERM);
        let status = proc.wait_timeout(Duration::from_secs(20))?;
        let took = signalled.elapsed();
        let mut log = String::new();
        if let Some(mut e) = proc.child.stderr.take() {
            e.read_to_string(&mut log)?;
        }
        // A signal that comes before `main` has run kills the process by its default action:
        // clean, as nothing was set up yet. From `main` on, it is a clean stop (exit 0).
        use std::os::unix::process::ExitStatusExt as _;
        let killed_before_main = status.signal() == Some(libc::SIGTERM) && log.is_empty();
        ensure!(
            status.success() || killed_before_main,
            "SIGTERM at {delay_ms} ms: {status}\n{log}"
        );
        ensure!(
            took < Duration::from_secs(3),
            "SIGTERM at {delay_ms} ms: exit took {took:?}\n{log}"
        );
        lab.assert_nothing_left()
            .with_context(|| format!("SIGTERM at {delay_ms} ms\n{log}"))?;
    }
    Ok(())
}

/// The pinned `COOKIE` map of a lab's tcpfront: key by the minute it takes over.
fn cookie_keys(lab: &Lab) -> anyhow::Result<std::collections::BTreeMap<u64, [u64; 2]>> {
    use aya::maps::{Array, Map, MapData};
    use tcp_common::cookie::{COOKIE_SLOT_UNUSED, CookieKeys};
    let data = MapData::from_pin(lab.pin_dir().join("COOKIE"))?;
    let map: Array<MapData, CookieKeys> = Array::try_from(Map::Array(data))?;
    let keys = map.get(&0, 0)?;
    Ok(keys
        .from_minute
        .iter()
        .zip(keys.key)
        .filter(|(m, _)| **m != COOKIE_SLOT_UNUSED)
        .map(|(m, k)| (*m, k))
        .collect())
}

fn write_secret(path: &std::path::Path, byte: u8, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, [byte; 32])?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

#[test]
fn a_shared_cookie_secret_is_checked_installed_alike_and_reread() -> anyhow::Result<()> {
    let _serial = serial();
    let dir = tempdir("secret")?;
    let secret = dir.join("cookie.secret");
    let secret_arg = secret.to_string_lossy().into_owned();

    // Refused with the reason: readable by others, or too short.
    write_secret(&secret, 1, 0o644)?;
    let refuse = |want: &str| -> anyhow::Result<()> {
        let out = Command::new(tcpfront_bin())
            .args(["run", "--iface", "lo", "--echo", "--listen", "127.0.0.1:1"])
            .args(["--cookie-secret", &secret_arg])
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success() && err.starts_with("error: "), "{err}");
        ensure!(err.contains(&secret_arg) && err.contains(want), "{err}");
        Ok(())
    };
    refuse("readable by group or others")?;
    std::fs::write(&secret, [1u8; 16])?;
    std::fs::set_permissions(&secret, {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::Permissions::from_mode(0o600)
    })?;
    refuse("at least 32")?;

    // Two nodes with the same file install the same keys.
    write_secret(&secret, 7, 0o600)?;
    let (lab1, lab2) = (
        Lab::unique(Some(&tcpfront_bin()))?,
        Lab::unique(Some(&tcpfront_bin()))?,
    );
    let args = [
        "--echo",
        "--cookie-secret",
        &secret_arg,
        "--cookie-rotate",
        "1m",
    ];
    let (tf1, tf2) = (start(&lab1, &args)?, start(&lab2, &args)?);
    let (k1, k2) = (cookie_keys(&lab1)?, cookie_keys(&lab2)?);
    let common: Vec<u64> = k1.keys().filter(|m| k2.contains_key(m)).copied().collect();
    ensure!(common.len() >= 2, "{k1:?} / {k2:?}");
    for m in &common {
        ensure!(
            k1[m] == k2[m],
            "the nodes disagree on the key of minute {m}"
        );
    }
    // `status` shows the source, the epoch and the next rotation, no key material.
    let out = tf1.cli(&["status", "--json"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let all: Value = serde_json::from_str(&text)?;
    let me = all
        .as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == tf1.iface.as_str()))
        .context("tf1 not in status")?;
    let c = &me["status"]["cookie_secret"];
    let minute = tcpfront::bpf::cookie::current_minute();
    ensure!(c["source"] == format!("file {secret_arg}").as_str(), "{c}");
    ensure!(c["rotate_secs"] == 60, "{c}");
    ensure!(
        c["epoch"]
            .as_u64()
            .is_some_and(|e| e + 1 >= minute && e <= minute),
        "{c} at minute {minute}"
    );
    ensure!(
        c["next_rotation_secs"].as_u64().is_some_and(|s| s <= 60),
        "{c}"
    );
    for k in k1.values().flatten() {
        ensure!(!text.contains(&k.to_string()), "status shows key material");
    }

    // A new secret, re-read on SIGHUP by node 1: the epochs already keyed keep their keys,
    // the ones after take the new secret's.
    write_secret(&secret, 9, 0o600)?;
    tf1.proc.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    let (after, now_minute) = loop {
        let k = cookie_keys(&lab1)?;
        let m = tcpfront::bpf::cookie::current_minute();
        if k.get(&(m + 1)) != cookie_keys(&lab2)?.get(&(m + 1)) {
            break (k, m);
        }
        ensure!(
            Instant::now() < deadline,
            "node 1 kept the old secret: {k:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    ensure!(
        after.get(&now_minute) == cookie_keys(&lab2)?.get(&now_minute),
        "the current epoch's key changed at once"
    );
    tf1.stop()?;
    tf2.stop()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The unit's `CapabilityBoundingSet` is enough: tcpfront runs with exactly that bounding set
/// (as systemd would apply it) and serves a connection.
#[test]
fn the_units_capabilities_are_enough_to_serve() -> anyhow::Result<()> {
    let _serial = serial();
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../dist/tcpfront.service"
    ))?;
    let caps: Vec<String> = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .context("the unit has no CapabilityBoundingSet")?
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let bounding = format!("-all,{}", caps.join(","));
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let dir = tempdir("caps")?;
    let log_path = dir.join("tcpfront.log");
    let log = std::fs::File::create(&log_path)?;
    let args = echo_run_args(&lab);
    let mut proc = ChildGuard::spawn(
        "tcpfront",
        Command::new("setpriv")
            .arg(format!("--bounding-set={bounding}"))
            .arg("--inh-caps=-all")
            .arg(tcpfront_bin())
            .args(&args)
            .stdout(Stdio::null())
            .stderr(log),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)?.contains("attached to ") {
        if let Some(status) = proc.child.try_wait()? {
            bail!(
                "tcpfront with only {bounding} exited ({status}):\n{}",
                std::fs::read_to_string(&log_path)?
            );
        }
        ensure!(
            Instant::now() < deadline,
            "tcpfront did not start with {bounding}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(echo_once(&lab, b"capable\n")?);
    proc.signal(libc::SIGTERM);
    ensure!(proc.wait_timeout(Duration::from_secs(20))?.success());
    lab.assert_nothing_left()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
