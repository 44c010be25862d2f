//! `cargo xtask bench throughput`: bulk transfer (iperf3, 1 and 8 streams, both directions)
//! and new connections per second (wrk, one HTTP request per connection, nginx answering),
//! straight to the upstream and through HAProxy, nginx `stream` and tcpfront, in one lab and
//! one run. The lab's veths have a queue per CPU; everything floats over both CPUs as it
//! would on a small server (tcpfront pins a thread per queue, as it does by default).

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tcpfront_tests::{
    lab::{self, Lab},
    netns::command_in,
};

use crate::{
    common::{self, ratio},
    proxies::{self, Proxy},
    upstreams,
};

/// One measurement: a value per proxy, and the proxy's CPU use meanwhile.
struct Row {
    name: &'static str,
    unit: &'static str,
    values: Vec<(Proxy, Sample)>,
}

#[derive(Clone, Copy, Default)]
struct Sample {
    value: f64,
    /// The proxy's processes' CPU, in cores (0 for Direct).
    cpu_cores: f64,
}

impl Row {
    fn get(&self, p: Proxy) -> Option<Sample> {
        self.values.iter().find(|(q, _)| *q == p).map(|(_, s)| *s)
    }
}

const IPERF_ROWS: [(&str, u32, bool); 4] = [
    ("upload, 1 stream", 1, false),
    ("download, 1 stream", 1, true),
    ("upload, 8 streams", 8, false),
    ("download, 8 streams", 8, true),
];
const CONN_ROW: &str = "connections/s (HTTP, Connection: close)";

pub fn throughput(duration: Duration, targets: &[Proxy]) -> anyhow::Result<()> {
    let bin = common::tcpfront_bin();
    let lab = common::lab(Some(&bin), lab::queue_per_cpu())?;
    common::nic_like_receive(&lab)?;
    let _iperf = upstreams::iperf(&lab)?;
    let _http = upstreams::http(&lab)?;

    let mut rows: Vec<Row> = IPERF_ROWS
        .iter()
        .map(|(name, _, _)| Row {
            name,
            unit: "Gbit/s",
            values: Vec::new(),
        })
        .chain([Row {
            name: CONN_ROW,
            unit: "conn/s",
            values: Vec::new(),
        }])
        .collect();
    for &proxy in targets {
        let running = proxies::start(&lab, proxy, upstreams::IPERF)
            .with_context(|| format!("starting {}", proxy.label()))?;
        for (i, (name, streams, reverse)) in IPERF_ROWS.iter().enumerate() {
            eprintln!("bench throughput: {}: {name} ...", proxy.label());
            let cpu0 = running.cpu_time();
            let bps = iperf(
                &lab,
                proxy.port(upstreams::IPERF),
                *streams,
                *reverse,
                duration,
            )?;
            let cpu =
                running.cpu_time().saturating_sub(cpu0).as_secs_f64() / duration.as_secs_f64();
            rows[i].values.push((
                proxy,
                Sample {
                    value: bps / 1e9,
                    cpu_cores: cpu,
                },
            ));
        }
        running.stop()?;

        eprintln!("bench throughput: {}: {CONN_ROW} ...", proxy.label());
        let running = proxies::start(&lab, proxy, upstreams::HTTP)
            .with_context(|| format!("starting {}", proxy.label()))?;
        let cpu0 = running.cpu_time();
        let rate = wrk(&lab, proxy.port(upstreams::HTTP), duration)?;
        let cpu = running.cpu_time().saturating_sub(cpu0).as_secs_f64() / duration.as_secs_f64();
        rows[IPERF_ROWS.len()].values.push((
            proxy,
            Sample {
                value: rate,
                cpu_cores: cpu,
            },
        ));
        running.stop()?;
    }
    drop(lab);
    report(&rows, targets, duration)
}

/// Received bits per second of an iperf3 run from the client namespace.
pub fn iperf(
    lab: &Lab,
    port: u16,
    streams: u32,
    reverse: bool,
    duration: Duration,
) -> anyhow::Result<f64> {
    wait_upstream_idle(lab, upstreams::IPERF, Duration::from_secs(10))?;
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

/// `wrk` from the client namespace for `duration`, one connection per request
/// (`Connection: close`), with `args`; its report.
pub fn run_wrk(lab: &Lab, url: &str, args: &[&str], duration: Duration) -> anyhow::Result<String> {
    let out = command_in(&lab.names.client_ns, "wrk")
        .args(args)
        .args(["-H", "Connection: close"])
        .args(["-d", &format!("{}s", duration.as_secs())])
        .arg(url)
        .output()
        .context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "wrk {url} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// Waits until the upstream on `port` has held no connection for a second: iperf3 serves
/// one test at a time and resets the next while the last one is still closing. Over a lossy
/// emulated path a proxy's teardown, or the connection with which `proxies::start` checked
/// the proxy listens (relayed to iperf3 a round trip later), can take a retransmission
/// timeout or more to end.
fn wait_upstream_idle(lab: &Lab, port: u16, limit: Duration) -> anyhow::Result<()> {
    const QUIET: Duration = Duration::from_secs(1);
    let until = std::time::Instant::now() + limit;
    let mut quiet_since = std::time::Instant::now();
    loop {
        let out = command_in(&lab.names.front_ns, "ss")
            .args(["-Htn", "state", "established", "state", "close-wait"])
            .arg(format!("( sport = :{port} )"))
            .output()
            .context("running ss")?;
        if !out.stdout.iter().all(u8::is_ascii_whitespace) {
            quiet_since = std::time::Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            return Ok(());
        }
        if std::time::Instant::now() >= until {
            eprintln!(
                "bench: warning: the upstream on port {port} still has connections after {limit:?}"
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Requests per second of `wrk -t1 -c32`, each on its own connection (`Connection: close`):
/// connect, request, `200 ok`, close. Errors are reported, and fail the run above 1%.
fn wrk(lab: &Lab, port: u16, duration: Duration) -> anyhow::Result<f64> {
    let url = format!("http://{}:{port}/", lab::FRONT_V4);
    let text = run_wrk(lab, &url, &["-t1", "-c32"], duration)?;
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    let rate = field("Requests/sec:").context("no Requests/sec in wrk's output")?;
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let errors: f64 = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.starts_with("Socket errors:") {
                Some(
                    l.split(',')
                        .filter_map(|p| p.split_whitespace().last()?.parse::<f64>().ok())
                        .sum(),
                )
            } else {
                l.strip_prefix("Non-2xx or 3xx responses:")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            }
        })
        .sum();
    if errors > 0.0 {
        eprintln!("bench throughput: {url}: {errors} errors in {requests} requests");
    }
    if requests > 0.0 && errors / requests > 0.01 {
        bail!("{url}: {errors} errors in {requests} requests:\n{text}");
    }
    Ok(rate)
}

fn report(rows: &[Row], targets: &[Proxy], duration: Duration) -> anyhow::Result<()> {
    let mut t = String::new();
    let _ = write!(t, "{:<40}", "measurement");
    for p in targets {
        let _ = write!(t, " {:>14}", p.label());
    }
    let compare: Vec<Proxy> = [Proxy::Haproxy, Proxy::Nginx]
        .into_iter()
        .filter(|p| targets.contains(p) && targets.contains(&Proxy::Tcpfront))
        .collect();
    for p in &compare {
        let _ = write!(t, " {:>12}", format!("tf/{}", p.key()));
    }
    let _ = writeln!(t);
    for r in rows {
        let _ = write!(t, "{:<40}", r.name);
        for &p in targets {
            let v = r.get(p).map_or(0.0, |s| s.value);
            let _ = write!(t, " {:>14}", format!("{v:.2} {}", short(r.unit)));
        }
        let tf = r.get(Proxy::Tcpfront).map_or(0.0, |s| s.value);
        for &p in &compare {
            let _ = write!(t, " {:>12}", ratio(tf, r.get(p).map_or(0.0, |s| s.value)));
        }
        let _ = writeln!(t);
    }
    let _ = writeln!(
        t,
        "\nthe proxy's CPU meanwhile (cores; the machine has {}):",
        common::cpus()
    );
    for r in rows {
        let _ = write!(t, "{:<40}", r.name);
        for &p in targets {
            let c = r.get(p).map_or(0.0, |s| s.cpu_cores);
            let cell = if p == Proxy::Direct {
                "-".to_string()
            } else {
                format!("{c:.2}")
            };
            let _ = write!(t, " {cell:>14}");
        }
        let _ = writeln!(t);
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
            "values": r.values.iter().map(|(p, s)| json!({
                "target": p.key(),
                "value": s.value,
                "proxy_cpu_cores": s.cpu_cores,
            })).collect::<Vec<_>>(),
            "tcpfront_over_haproxy": r.get(Proxy::Tcpfront).zip(r.get(Proxy::Haproxy))
                .map(|(a, b)| a.value / b.value),
            "tcpfront_over_nginx": r.get(Proxy::Tcpfront).zip(r.get(Proxy::Nginx))
                .map(|(a, b)| a.value / b.value),
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
