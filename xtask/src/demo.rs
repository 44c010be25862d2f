//! `cargo xtask demo`: tcpfront on a lab veth in front of a real HTTP server, with real curl
//! requests from the client namespace, then its counters.

use std::{
    io::{Read as _, Write as _},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context as _, bail};
use tcpfront_tests::{
    lab::{self, Lab, LabNames},
    netns::command_in,
    process::{ChildGuard, Tcpfront},
};

use crate::{build, setup, util};

/// Where clients connect: tcpfront's protected port.
const FRONT_PORT: u16 = 8080;
/// The upstream HTTP server, on the front-end namespace's loopback.
const HTTP_PORT: u16 = 8081;

/// The demo's own lab, apart from `cargo xtask lab up`'s.
pub fn names() -> LabNames {
    LabNames {
        client_ns: "tfd-client".into(),
        front_ns: "tfd-front".into(),
        client_if: "tfd-c0".into(),
        front_if: "tfd-f0".into(),
        wan: None,
    }
}

fn step(text: &str) {
    println!("\n==> {text}");
}

pub fn demo() -> anyhow::Result<()> {
    util::require_root()?;
    step("setup (installs only what is missing)");
    setup::setup()?;
    step("build tcpfront");
    let bin = build::tcpfront()?;
    // SAFETY: setting an env var before any thread is spawned.
    unsafe { std::env::set_var("TCPFRONT_BIN", &bin) };

    // An interrupted earlier demo may have left its lab.
    lab::destroy(&names());
    step("lab up: client namespace <-veth-> front-end namespace");
    let lab = Lab::create(names(), false, Some(&bin), lab::queue_per_cpu())?;
    println!(
        "    {} {} {} / {}   <->   {} {} {} / {}",
        lab.names.client_ns,
        lab.names.client_if,
        lab::CLIENT_V4,
        lab::CLIENT_V6,
        lab.names.front_ns,
        lab.names.front_if,
        lab::FRONT_V4,
        lab::FRONT_V6
    );

    step(&format!(
        "upstream: python3 -m http.server on port {HTTP_PORT} in the front-end namespace"
    ));
    let webroot = std::env::temp_dir().join("tcpfront-demo-www");
    std::fs::create_dir_all(&webroot)?;
    std::fs::write(webroot.join("index.html"), "hello through tcpfront\n")?;
    let _http = ChildGuard::spawn(
        "http.server",
        command_in(&lab.names.front_ns, "python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &HTTP_PORT.to_string(),
            ])
            .current_dir(&webroot)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;

    let listen4 = format!("0.0.0.0:{FRONT_PORT}");
    let listen6 = format!("[::]:{FRONT_PORT}");
    let upstream = format!("127.0.0.1:{HTTP_PORT}");
    step(&format!(
        "tcpfront run --iface {} --listen {listen4} --listen {listen6} --upstream {upstream}",
        lab.names.front_if
    ));
    let tf = Tcpfront::start(
        &lab,
        &[
            "--listen",
            &listen4,
            "--listen",
            &listen6,
            "--upstream",
            &upstream,
        ],
    )?;
    println!("    XDP attached: {}", lab.front_has_xdp()?);
    println!(
        "    no kernel listener on port {FRONT_PORT}: XDP answers SYNs with cookies, tcpfront's"
    );
    println!("    engine terminates the connections and relays them to the upstream");

    step("real traffic: curl from the client namespace through tcpfront, IPv4 and IPv6");
    wait_for_http(&lab)?;
    for (family, host) in [
        ("IPv4", lab::FRONT_V4.to_string()),
        ("IPv6", format!("[{}]", lab::FRONT_V6)),
    ] {
        for _ in 0..3 {
            let url = format!("http://{host}:{FRONT_PORT}/");
            let body = curl(&lab, &url)?;
            println!("    {family} GET {url} -> {body:?}");
        }
    }

    step("a short SYN flood (hping3: 20000 SYNs) while curl keeps working");
    let before = syn_acks(&tf)?;
    let mut flood = ChildGuard::spawn(
        "hping3",
        command_in(&lab.names.client_ns, "hping3")
            .args([
                "-S",
                "-p",
                &FRONT_PORT.to_string(),
                "-c",
                "20000",
                "-i",
                "u50",
                "-q",
            ])
            .arg(lab::FRONT_V4.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let url = format!("http://{}:{FRONT_PORT}/", lab::FRONT_V4);
    for i in 1..=5 {
        let t = std::time::Instant::now();
        let body = curl(&lab, &url)?;
        println!(
            "    during the flood, GET #{i} -> {body:?} in {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_millis(150));
    }
    flood.wait_timeout(Duration::from_secs(60))?;
    println!(
        "    SYN-ACKs sent by XDP since the flood began: {}",
        syn_acks(&tf)? - before
    );

    step("a client holds a connection open (a request without its last line)");
    let addr = std::net::SocketAddr::new(lab.front_addr(false), FRONT_PORT);
    let mut held = tcpfront_tests::netns::run_in(&lab.names.client_ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: demo\r\n")?;
        Ok(s)
    })?;
    std::thread::sleep(Duration::from_millis(200));
    println!("    held open from {}", held.local_addr()?);

    step("tcpfront conns (like ss -tan: the flow map joined with the engine's connections)");
    println!("    the curls above are in TIME-WAIT on tcpfront's side: the upstream closed first");
    let conns = tf.cli(&["conns", "--iface", &lab.names.front_if])?;
    if !conns.status.success() {
        bail!(
            "tcpfront conns failed: {}",
            String::from_utf8_lossy(&conns.stderr)
        );
    }
    for line in String::from_utf8_lossy(&conns.stdout).lines() {
        println!("    {line}");
    }

    step("tcpfront stats (XDP counters, summed over CPUs; zero rows hidden)");
    let stats = tf.cli(&["stats", "--iface", &lab.names.front_if])?;
    if !stats.status.success() {
        bail!(
            "tcpfront stats failed: {}",
            String::from_utf8_lossy(&stats.stderr)
        );
    }
    for line in String::from_utf8_lossy(&stats.stdout).lines() {
        if !line.trim_end().ends_with(" 0") {
            println!("    {line}");
        }
    }

    step("stop tcpfront (SIGTERM): drain with FIN, detach, unpin");
    // The held client closes as soon as it sees tcpfront's FIN.
    let reader = std::thread::spawn(move || {
        held.set_read_timeout(Some(Duration::from_secs(20))).ok();
        let mut buf = [0u8; 256];
        let seen = match held.read(&mut buf) {
            Ok(0) => "FIN".to_string(),
            Ok(n) => format!("{n} bytes"),
            Err(e) => e.to_string(),
        };
        drop(held);
        seen
    });
    let mut tf = tf;
    tf.proc.signal(libc::SIGTERM);
    let status = tf.proc.wait_timeout(Duration::from_secs(30))?;
    for line in tf.log_text().lines().filter(|l| l.contains("drain")) {
        println!(
            "    log: {}",
            line.split_once("tcpfront::").map_or(line, |x| x.1)
        );
    }
    let seen = reader
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    println!("    the held connection saw: {seen}");
    println!(
        "    exited: {status}; XDP attached now: {}; pins left: {}",
        lab.front_has_xdp()?,
        lab.pin_dir().exists()
    );

    step("lab down");
    drop(lab);
    println!("\ndemo complete");
    Ok(())
}

fn curl(lab: &Lab, url: &str) -> anyhow::Result<String> {
    util::output(command_in(&lab.names.client_ns, "curl").args(["-sS", "--max-time", "5", url]))
}

fn syn_acks(tf: &Tcpfront) -> anyhow::Result<u64> {
    Ok(Tcpfront::counter(&tf.stats()?, "syn_ack_sent"))
}

fn wait_for_http(lab: &Lab) -> anyhow::Result<()> {
    let url = format!("http://{}:{FRONT_PORT}/", lab::FRONT_V4);
    for _ in 0..50 {
        let ok = command_in(&lab.names.client_ns, "curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "1", &url])
            .status()
            .context("running curl")?
            .success();
        if ok {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the demo HTTP server did not come up")
}
