//! `cargo xtask bench throughput`: bulk transfer (iperf3, 1 and 8 streams, both directions)
//! and new connections per second (short request/response), through tcpfront and straight to
//! the kernel listener, over the same lab veth.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    process::Stdio,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tcpfront_tests::{
    lab::{self, Lab},
    netns::{command_in, spawn_in},
    process::{ChildGuard, Tcpfront},
};

use crate::common::{self, ratio};

const IPERF_PORT: u16 = 5201;
const IPERF_VIA_TCPFRONT: u16 = 5202;
const RR_PORT: u16 = 9000;
const RR_VIA_TCPFRONT: u16 = 9001;
const RR_CLIENTS: usize = 4;

struct Row {
    name: &'static str,
    unit: &'static str,
    kernel: f64,
    tcpfront: f64,
}

pub fn throughput(duration: Duration) -> anyhow::Result<()> {
    let bin = common::tcpfront_bin();
    let lab = common::lab(Some(&bin), tcpfront_tests::lab::queue_per_cpu())?;
    let _iperf = ChildGuard::spawn(
        "iperf3 server",
        command_in(&lab.names.front_ns, "iperf3")
            .args(["-s", "-p", &IPERF_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let (_rr, _) = common::ok_server(&lab.names.front_ns, RR_PORT, None)?;
    std::thread::sleep(Duration::from_millis(300));

    let mut rows = Vec::new();
    for (name, streams, reverse) in [
        ("upload, 1 stream", 1, false),
        ("download, 1 stream", 1, true),
        ("upload, 8 streams", 8, false),
        ("download, 8 streams", 8, true),
    ] {
        eprintln!("xtask: bench throughput: {name} ...");
        let kernel = iperf(&lab, IPERF_PORT, streams, reverse, duration)?;
        let tf = start(&lab, IPERF_VIA_TCPFRONT, IPERF_PORT)?;
        let via = iperf(&lab, IPERF_VIA_TCPFRONT, streams, reverse, duration);
        tf.stop()?;
        rows.push(Row {
            name,
            unit: "Gbit/s",
            kernel: kernel / 1e9,
            tcpfront: via? / 1e9,
        });
    }
    eprintln!("xtask: bench throughput: connections per second ...");
    let kernel = conn_rate(&lab, RR_PORT, duration)?;
    let tf = start(&lab, RR_VIA_TCPFRONT, RR_PORT)?;
    let via = conn_rate(&lab, RR_VIA_TCPFRONT, duration);
    tf.stop()?;
    rows.push(Row {
        name: "new connections (request/response)",
        unit: "conn/s",
        kernel,
        tcpfront: via?,
    });
    drop(lab);
    report(&rows, duration)
}

fn start(lab: &Lab, port: u16, upstream: u16) -> anyhow::Result<Tcpfront> {
    let listen = format!("0.0.0.0:{port}");
    let upstream = format!("127.0.0.1:{upstream}");
    // Connections per second leave many TIME-WAITs behind; keep them short.
    Tcpfront::start(
        lab,
        &["--listen", &listen, "--upstream", &upstream, "--msl", "1s"],
    )
}

/// Received bits per second of an iperf3 run from the client namespace.
fn iperf(
    lab: &Lab,
    port: u16,
    streams: u32,
    reverse: bool,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut cmd = command_in(&lab.names.client_ns, "iperf3");
    cmd.args(["-c", &lab::FRONT_V4.to_string(), "-p", &port.to_string()])
        .args(["-P", &streams.to_string(), "-J", "-t"])
        .arg(duration.as_secs().to_string());
    if reverse {
        cmd.arg("-R");
    }
    let out = cmd.output().context("running iperf3")?;
    let v: Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3 to port {port}: {e}");
    }
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("no sum_received in iperf3's output")
}

/// Completed connect + request + response + close per second, from RR_CLIENTS threads.
fn conn_rate(lab: &Lab, port: u16, duration: Duration) -> anyhow::Result<f64> {
    let addr = SocketAddr::new(lab::FRONT_V4.into(), port);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..RR_CLIENTS)
        .map(|_| {
            let (done, failed) = (done.clone(), failed.clone());
            spawn_in(&lab.names.client_ns, move || {
                while t0.elapsed() < duration {
                    match common::request(addr, Duration::from_secs(3)) {
                        Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        eprintln!("xtask: bench throughput: {failed} request(s) to port {port} failed");
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

fn report(rows: &[Row], duration: Duration) -> anyhow::Result<()> {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "{:<36} {:>15} {:>15} {:>18}",
        "measurement", "kernel", "tcpfront", "tcpfront / kernel"
    );
    for r in rows {
        let _ = writeln!(
            t,
            "{:<36} {:>15} {:>15} {:>18}",
            r.name,
            format!("{:.2} {}", r.kernel, short(r.unit)),
            format!("{:.2} {}", r.tcpfront, short(r.unit)),
            ratio(r.tcpfront, r.kernel)
        );
    }
    print!("{t}");
    let now = common::unix_now();
    let path = common::results_dir()?.join(format!("throughput-{now}.json"));
    let json = json!({
        "benchmark": "throughput",
        "unix_time": now,
        "machine": common::machine(),
        "duration_secs": duration.as_secs_f64(),
        "results": rows.iter().map(|r| json!({
            "measurement": r.name,
            "unit": r.unit,
            "kernel": r.kernel,
            "tcpfront": r.tcpfront,
            "ratio": if r.kernel > 0.0 { Some(r.tcpfront / r.kernel) } else { None },
        })).collect::<Vec<_>>(),
    });
    std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
    println!("\nwritten: {}", path.display());
    Ok(())
}

fn short(unit: &str) -> &str {
    match unit {
        "Gbit/s" => "Gb/s",
        other => other,
    }
}
