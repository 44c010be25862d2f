//! Serving real backends: pools balanced by weight or by connections, health checks and
//! failover with backend processes killed and restarted, PROXY protocol read by a real
//! HAProxy and a real nginx, and a reload on SIGHUP that keeps open connections.

use std::{
    io::{ErrorKind, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde_json::Value;
use tcpfront_tests::{
    lab::Lab,
    netns::{command_in, run_in, spawn_in},
    process::{ChildGuard, Tcpfront, connect_and_greet, spawn_backend, tcpfront_bin},
    rawsock::mac_of,
};

const PORT: u16 = 8080;

/// One test of this file at a time: they start tcpfront and count its packets.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// `tf-test-backend` in the front namespace on 127.0.0.1:`port`, once it accepts.
fn backend(lab: &Lab, port: u16, name: &str, mode: &str) -> anyhow::Result<ChildGuard> {
    spawn_backend(
        &lab.names.front_ns,
        std::path::Path::new(env!("CARGO_BIN_EXE_tf-test-backend")),
        port,
        name,
        mode,
    )
}

fn kill(b: &mut ChildGuard) -> anyhow::Result<()> {
    b.signal(libc::SIGKILL);
    b.wait_timeout(Duration::from_secs(5))?;
    Ok(())
}

/// A client connection through tcpfront: returns it and the first line its backend sent.
fn connect(lab: &Lab, v6: bool, port: u16) -> anyhow::Result<(TcpStream, String)> {
    connect_and_greet(
        &lab.names.client_ns,
        SocketAddr::new(lab.front_addr(v6), port),
    )
}

/// Backends of `n` new connections (each closed at once).
fn spread(lab: &Lab, n: usize) -> anyhow::Result<Vec<String>> {
    (0..n)
        .map(|_| connect(lab, false, PORT).map(|(_, b)| b))
        .collect()
}

fn count(names: &[String], name: &str) -> usize {
    names.iter().filter(|n| *n == name).count()
}

fn status_of(tf: &Tcpfront) -> anyhow::Result<Value> {
    let out = tf.cli(&["status", "--json"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout)?;
    all.as_array()
        .and_then(|a| a.iter().find(|e| e["iface"] == tf.iface.as_str()))
        .map(|e| e["status"].clone())
        .context("tcpfront not in status")
}

fn backend_up(tf: &Tcpfront, name_port: u16) -> anyhow::Result<Option<bool>> {
    let st = status_of(tf)?;
    Ok(st["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|b| b["backend"] == format!("127.0.0.1:{name_port}").as_str())
        .and_then(|b| b["up"].as_bool()))
}

fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !f()? {
        ensure!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn pool_args(extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ["--listen", "0.0.0.0:8080", "--listen", "[::]:8080"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn start(lab: &Lab, args: &[String]) -> anyhow::Result<Tcpfront> {
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    Tcpfront::start(lab, &a)
}

#[test]
fn new_connections_follow_the_weights_or_the_fewest_connections() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let _a = backend(&lab, 9101, "a", "echo")?;
    let _b = backend(&lab, 9102, "b", "echo")?;
    let tf = start(
        &lab,
        &pool_args(&[
            "--upstream",
            "127.0.0.1:9101,weight=3",
            "--upstream",
            "127.0.0.1:9102",
        ]),
    )?;
    let names = spread(&lab, 8)?;
    ensure!(
        count(&names, "a") == 6 && count(&names, "b") == 2,
        "weights 3:1 over 8 connections gave {names:?}"
    );
    // `conns` names each connection's backend.
    let (held, name) = connect(&lab, true, PORT)?;
    let out = tf.cli(&[
        "conns",
        "--iface",
        &tf.iface,
        "--json",
        "--state",
        "established",
    ])?;
    let conns: Value = serde_json::from_slice(&out.stdout)?;
    let port = if name == "a" { 9101 } else { 9102 };
    ensure!(
        conns["connections"][0]["upstream"] == format!("127.0.0.1:{port}").as_str(),
        "{conns}"
    );
    drop(held);
    tf.stop()?;

    let tf = start(
        &lab,
        &pool_args(&[
            "--upstream",
            "127.0.0.1:9101",
            "--upstream",
            "127.0.0.1:9102",
            "--balance",
            "least-conn",
        ]),
    )?;
    // Four held connections spread two and two; with a's two closed, a has the fewest.
    let held: Vec<(TcpStream, String)> = (0..4)
        .map(|_| connect(&lab, false, PORT))
        .collect::<anyhow::Result<_>>()?;
    let names: Vec<String> = held.iter().map(|(_, n)| n.clone()).collect();
    ensure!(count(&names, "a") == 2, "least-conn spread {names:?}");
    let (on_a, on_b): (Vec<_>, Vec<_>) = held.into_iter().partition(|(_, n)| n == "a");
    drop(on_a);
    wait_until("a's connections closed", Duration::from_secs(5), || {
        let st = status_of(&tf)?;
        Ok(st["backends"][0]["active"] == 0)
    })?;
    let (c1, n1) = connect(&lab, false, PORT)?;
    let (c2, n2) = connect(&lab, false, PORT)?;
    ensure!(
        n1 == "a" && n2 == "a",
        "least-conn chose {n1} and {n2}, not a"
    );
    drop((c1, c2, on_b));
    tf.stop()?;
    Ok(())
}

/// A client that sends and checks its echo until told to stop; returns the bytes verified,
/// or how the connection ended.
fn transfer(
    lab: &Lab,
    stream: TcpStream,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<anyhow::Result<Result<u64, ErrorKind>>> {
    spawn_in(&lab.names.client_ns, move || {
        let mut s = stream;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut verified = 0u64;
        let mut block = vec![0u8; 16 * 1024];
        let mut back = vec![0u8; block.len()];
        let mut seq = 0u8;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for b in block.iter_mut() {
                *b = seq;
                seq = seq.wrapping_add(1);
            }
            if let Err(e) = s.write_all(&block) {
                return Ok(Err(e.kind()));
            }
            match s.read_exact(&mut back) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    // The backend's kernel closed its socket with FIN (nothing was unread):
                    // tcpfront relays the FIN; what the client sends next reaches the dead
                    // socket, whose RST tcpfront passes on.
                    let deadline = Instant::now() + Duration::from_secs(3);
                    while Instant::now() < deadline {
                        if let Err(e) = s.write_all(b"x") {
                            return Ok(Err(e.kind()));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    return Ok(Err(ErrorKind::UnexpectedEof));
                }
                Err(e) => return Ok(Err(e.kind())),
            }
            ensure!(back == block, "the echo differs after {verified} bytes");
            verified += block.len() as u64;
        }
        Ok(Ok(verified))
    })
}

#[test]
fn killed_backends_are_failed_over_and_come_back_after_their_rise() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let mut a = backend(&lab, 9111, "a", "echo")?;
    let mut b = backend(&lab, 9112, "b", "echo")?;
    let tf = start(
        &lab,
        &pool_args(&[
            "--upstream",
            "127.0.0.1:9111",
            "--upstream",
            "127.0.0.1:9112",
            "--health-interval",
            "500ms",
            "--health-fall",
            "2",
            "--health-rise",
            "2",
        ]),
    )?;
    // One transfer on each backend.
    let (s1, n1) = connect(&lab, false, PORT)?;
    let (s2, n2) = connect(&lab, false, PORT)?;
    ensure!(n1 != n2, "round-robin gave {n1} twice");
    let (on_a, on_b) = if n1 == "a" { (s1, s2) } else { (s2, s1) };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ta = transfer(&lab, on_a, stop.clone());
    let tb = transfer(&lab, on_b, stop.clone());
    std::thread::sleep(Duration::from_millis(300));

    kill(&mut b)?;
    // Before the health checks notice (2 × 500 ms): b refuses, the connect is retried on a.
    let names = spread(&lab, 4).with_context(|| {
        format!(
            "right after b died; stats: {}",
            tf.stats().unwrap_or_default()
        )
    })?;
    ensure!(count(&names, "a") == 4, "right after b died: {names:?}");
    let stats = tf.stats()?;
    ensure!(
        stats["engine"]["connect_failures"].as_u64() >= Some(1),
        "{stats}"
    );
    // b's client loses its connection with a reset; a's keeps going.
    let ended = tb.join().expect("transfer panicked")?;
    ensure!(
        matches!(
            ended,
            Err(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
        ),
        "the transfer through the killed backend ended with {ended:?}, not a reset"
    );
    ensure!(tf.stats()?["engine"]["upstream_failed"].as_u64() >= Some(1));
    wait_until("b marked down", Duration::from_secs(5), || {
        Ok(backend_up(&tf, 9112)? == Some(false))
    })?;
    let failures_when_down = tf.stats()?["engine"]["connect_failures"].as_u64();
    let names = spread(&lab, 4)
        .with_context(|| format!("with b down; stats: {}", tf.stats().unwrap_or_default()))?;
    ensure!(count(&names, "a") == 4, "with b down: {names:?}");
    ensure!(
        tf.stats()?["engine"]["connect_failures"].as_u64() == failures_when_down,
        "new connections still tried the backend marked down"
    );

    // b comes back: after `rise` checks it takes connections again.
    let _b = backend(&lab, 9112, "b", "echo")?;
    wait_until("b back up", Duration::from_secs(5), || {
        Ok(backend_up(&tf, 9112)? == Some(true))
    })?;
    let names = spread(&lab, 4)
        .with_context(|| format!("with b back; stats: {}", tf.stats().unwrap_or_default()))?;
    ensure!(count(&names, "b") == 2, "with b back: {names:?}");

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done = ta.join().expect("transfer panicked")?;
    ensure!(
        matches!(done, Ok(n) if n > 0),
        "the transfer through a was disturbed: {done:?}"
    );

    // Every backend down: a client gets RST at once, counted.
    kill(&mut a)?;
    drop(_b);
    wait_until("both down", Duration::from_secs(5), || {
        Ok(backend_up(&tf, 9111)? == Some(false) && backend_up(&tf, 9112)? == Some(false))
    })?;
    let addr = SocketAddr::new(lab.front_addr(false), PORT);
    let (seen, took) = run_in(&lab.names.client_ns, move || {
        let t = Instant::now();
        // The RST follows the handshake at once: it may even beat connect()'s return.
        let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(s) => s,
            Err(e) => return Ok((Err(e.kind()), t.elapsed())),
        };
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = [0u8; 8];
        let r = s.read(&mut buf).map_err(|e| e.kind());
        Ok((r, t.elapsed()))
    })?;
    ensure!(
        seen == Err(ErrorKind::ConnectionReset) && took < Duration::from_secs(1),
        "with every backend down the client saw {seen:?} after {took:?}"
    );
    ensure!(tf.stats()?["engine"]["no_backend"].as_u64() >= Some(1));
    tf.stop()?;
    Ok(())
}

#[test]
fn a_backend_that_accepts_but_never_answers_passes_its_health_checks() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let _silent = backend(&lab, 9121, "silent", "silent")?;
    let tf = start(
        &lab,
        &pool_args(&[
            "--upstream",
            "127.0.0.1:9121",
            "--health-checks",
            "on",
            "--health-interval",
            "200ms",
        ]),
    )?;
    std::thread::sleep(Duration::from_millis(800));
    // The documented limit: a TCP connect check cannot see that the service is stuck.
    ensure!(backend_up(&tf, 9121)? == Some(true));
    let st = status_of(&tf)?;
    ensure!(st["backends"][0]["last_check"]["ok"] == true, "{st}");
    let addr = SocketAddr::new(lab.front_addr(false), PORT);
    let got = run_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_millis(700)))?;
        s.write_all(b"hello?\n")?;
        let mut buf = [0u8; 8];
        Ok(s.read(&mut buf).map_err(|e| e.kind()))
    })?;
    ensure!(
        matches!(got, Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "the silent backend answered: {got:?}"
    );
    tf.stop()?;
    Ok(())
}

/// An HTTP GET through tcpfront; the body, and the client's own address.
fn get(lab: &Lab, v6: bool) -> anyhow::Result<(String, SocketAddr)> {
    let addr = SocketAddr::new(lab.front_addr(v6), PORT);
    run_in(&lab.names.client_ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        let me = s.local_addr()?;
        write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no HTTP answer")?;
        ensure!(head.contains(" 200 "), "{head}");
        Ok((body.trim().to_string(), me))
    })
}

/// `ADDR:PORT` as HAProxy and nginx print a client (IPv6 without brackets).
fn plain(a: SocketAddr) -> String {
    format!("{}:{}", a.ip(), a.port())
}

#[test]
fn real_haproxy_and_nginx_read_the_client_from_the_proxy_protocol() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let dir = std::env::temp_dir().join(format!("tcpfront-pp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    // HAProxy: `accept-proxy`, and the client it sees as the answer.
    let haproxy_cfg = dir.join("haproxy.cfg");
    std::fs::write(
        &haproxy_cfg,
        "global\n  maxconn 100\ndefaults\n  mode http\n  timeout connect 2s\n  timeout client \
         5s\n  timeout server 5s\nfrontend pp\n  bind 127.0.0.1:9131 accept-proxy\n  \
         http-request return status 200 content-type text/plain lf-string \
         \"%[src]:%[src_port]\"\n",
    )?;
    let _haproxy = ChildGuard::spawn(
        "haproxy",
        command_in(&lab.names.front_ns, "haproxy")
            .args(["-db", "-f"])
            .arg(&haproxy_cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    // nginx: `listen … proxy_protocol`, answering $proxy_protocol_addr:$proxy_protocol_port.
    let nginx_cfg = dir.join("nginx.conf");
    std::fs::write(
        &nginx_cfg,
        format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 64; }}\nhttp {{\n  access_log off;\n  \
             client_body_temp_path {d};\n  proxy_temp_path {d};\n  fastcgi_temp_path {d};\n  \
             uwsgi_temp_path {d};\n  scgi_temp_path {d};\n  server {{\n    listen \
             127.0.0.1:9132 proxy_protocol;\n    location / {{ return 200 \
             \"$proxy_protocol_addr:$proxy_protocol_port\\n\"; }}\n  }}\n}}\n",
            d = dir.display()
        ),
    )?;
    let _nginx = ChildGuard::spawn(
        "nginx",
        command_in(&lab.names.front_ns, "nginx")
            .args(["-e", "stderr", "-c"])
            .arg(&nginx_cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    for port in [9131u16, 9132] {
        wait_until(
            "the PROXY-protocol backends listen",
            Duration::from_secs(10),
            || {
                run_in(&lab.names.front_ns, move || {
                    Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
                })
            },
        )?;
    }

    for (server, port) in [("HAProxy", 9131u16), ("nginx", 9132)] {
        for version in ["v1", "v2"] {
            let upstream = format!("127.0.0.1:{port}");
            let tf = start(
                &lab,
                &pool_args(&["--upstream", &upstream, "--proxy-protocol", version]),
            )?;
            for v6 in [false, true] {
                let (body, me) = get(&lab, v6)?;
                ensure!(
                    body == plain(me),
                    "{server} with PROXY {version}: saw the client as {body:?}, it is {me}"
                );
            }
            tf.stop()?;
        }
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn xdp_prog_id(lab: &Lab) -> anyhow::Result<u64> {
    let out = command_in(&lab.names.front_ns, "ip")
        .args(["-j", "link", "show", &lab.names.front_if])
        .output()?;
    let v: Value = serde_json::from_slice(&out.stdout)?;
    v[0]["xdp"]["prog"]["id"]
        .as_u64()
        .or_else(|| v[0]["xdp"]["attached"][0]["prog"]["id"].as_u64())
        .with_context(|| format!("no XDP program in {v}"))
}

#[test]
fn a_reload_applies_the_new_file_and_keeps_open_connections() -> anyhow::Result<()> {
    let _serial = serial();
    let lab = Lab::unique(Some(&tcpfront_bin()))?;
    let _a = backend(&lab, 9141, "a", "echo")?;
    let _b = backend(&lab, 9142, "b", "echo")?;
    let dir = std::env::temp_dir().join(format!("tcpfront-reload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("tcpfront.toml");
    std::fs::write(
        &config,
        "listen = [\"0.0.0.0:8080\", \"[::]:8080\"]\nupstream = \"127.0.0.1:9141\"\n",
    )?;
    let config_arg = config.to_string_lossy().into_owned();
    let tf = Tcpfront::start(&lab, &["--config", &config_arg])?;
    let prog = xdp_prog_id(&lab)?;

    let (s, name) = connect(&lab, false, 8080)?;
    ensure!(name == "a");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = transfer(&lab, s, stop.clone());
    std::thread::sleep(Duration::from_millis(300));

    // 8080 → 8081, backend a → b, and a tunable.
    std::fs::write(
        &config,
        "listen = [\"0.0.0.0:8081\", \"[::]:8081\"]\nupstream = \"127.0.0.1:9142\"\n\
         max-conns = 500\n",
    )?;
    tf.proc.signal(libc::SIGHUP);
    wait_until("the reload", Duration::from_secs(5), || {
        Ok(tf.log_text().contains("reloaded "))
    })?;
    let (_, name) = connect(&lab, false, 8081)?;
    ensure!(
        name == "b",
        "a new connection after the reload went to {name}"
    );
    let (_, name) = connect(&lab, true, 8081)?;
    ensure!(name == "b");
    // The removed address takes no new connection (nothing else listens: the kernel refuses).
    let addr = SocketAddr::new(lab.front_addr(false), 8080);
    let refused = run_in(&lab.names.client_ns, move || {
        Ok(TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.kind()))
    })?;
    ensure!(
        matches!(refused, Err(ErrorKind::ConnectionRefused)),
        "the removed listen address answered: {refused:?}"
    );
    let st = status_of(&tf)?;
    ensure!(
        st["max_conns"] == 500 && st["upstream"] == "127.0.0.1:9142",
        "{st}"
    );
    ensure!(xdp_prog_id(&lab)? == prog, "the XDP program was replaced");

    // A bad file: refused with its name and key, nothing changes.
    std::fs::write(
        &config,
        "listen = [\"0.0.0.0:9999\"]\nmax-conns = \"lots\"\n",
    )?;
    tf.proc.signal(libc::SIGHUP);
    wait_until("the refused reload", Duration::from_secs(5), || {
        Ok(tf.log_text().contains("reload refused"))
    })?;
    let log = tf.log_text();
    let at = log.find("reload refused").unwrap_or(0);
    let refusal: String = log[at..].chars().take(800).collect();
    ensure!(
        refusal.contains(&config_arg) && refusal.contains("max-conns"),
        "the refusal does not name the file and key: {refusal}"
    );
    let (_, name) = connect(&lab, false, 8081)?;
    ensure!(name == "b");
    ensure!(status_of(&tf)?["max_conns"] == 500);

    // A fleet's ring may change on reload: this node joins one, then its place changes; a
    // ring without it is refused.
    let own = mac_of(&lab.names.front_ns, &lab.names.front_if)?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let kept = "listen = [\"0.0.0.0:8081\", \"[::]:8081\"]\nupstream = \"127.0.0.1:9142\"\n\
                max-conns = 500\n";
    for (ring, place) in [
        (
            format!("[\"{own}\", \"02:00:00:00:00:0b\"]"),
            format!("node 1 of 2 ({own}), hands segments of unknown flows on to 02:00:00:00:00:0b"),
        ),
        (
            format!("[\"02:00:00:00:00:0c\", \"{own}\"]"),
            format!("node 2 of 2 ({own}), hands segments of unknown flows on to 02:00:00:00:00:0c"),
        ),
    ] {
        let before = tf.log_text().matches("reloaded ").count();
        std::fs::write(&config, format!("{kept}fleet-nodes = {ring}\n"))?;
        tf.proc.signal(libc::SIGHUP);
        wait_until("a fleet reload", Duration::from_secs(5), || {
            Ok(tf.log_text().matches("reloaded ").count() > before)
        })?;
        let st = status_of(&tf)?;
        ensure!(
            st["fleet"].as_str().is_some_and(|f| f.starts_with(&place)),
            "after fleet-nodes = {ring}: {st}"
        );
    }
    let before = tf.log_text().matches("reload refused").count();
    std::fs::write(
        &config,
        format!("{kept}fleet-nodes = [\"02:00:00:00:00:0b\", \"02:00:00:00:00:0c\"]\n"),
    )?;
    tf.proc.signal(libc::SIGHUP);
    wait_until("the refused fleet reload", Duration::from_secs(5), || {
        Ok(tf.log_text().matches("reload refused").count() > before)
    })?;
    ensure!(
        tf.log_text().contains("is not one of the fleet's nodes"),
        "the refusal does not say why"
    );
    ensure!(
        status_of(&tf)?["fleet"]
            .as_str()
            .is_some_and(|f| f.starts_with("node 2 of 2")),
        "a refused reload changed the ring"
    );

    // The connection from before the reloads still moves, byte-exact, through a.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let done = running.join().expect("transfer panicked")?;
    match done {
        Ok(n) if n > 0 => {}
        other => bail!("the connection open across the reloads ended: {other:?}"),
    }
    tf.stop()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
