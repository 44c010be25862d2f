//! `cargo xtask bench wan`: bulk transfers over emulated long and lossy paths (the lab's WAN
//! emulator between client and front end: 20 and 80 ms RTT, 0% and 0.1% loss each way, one
//! bottleneck rate), 1 and 4 streams each way, straight to the upstream (kernel TCP end to
//! end), through HAProxy (kernel TCP towards the client, CUBIC) and through tcpfront, in one
//! run. Each path is first checked against its settings: UDP echo RTT, and the emulator's
//! own counters (its socket must drop nothing, or it and not the path was the bottleneck).

use std::{fmt::Write as _, time::Duration};

use anyhow::{Context as _, bail};
use serde_json::json;
use tcpfront_tests::{
    lab::{self, Lab},
    wan::{Profile, Wan, WanStats, probe::udp_rtts},
};

use crate::{
    chart,
    common::{self, ratio},
    proxies::{self, Proxy, Recovery},
    throughput::{iperf, run_wrk},
    upstreams,
};

pub struct Options {
    pub rtts_ms: Vec<u64>,
    /// Loss each way, in parts per million.
    pub losses_ppm: Vec<u32>,
    pub rate_bps: u64,
    pub duration: Duration,
    pub streams: Vec<u32>,
    pub targets: Vec<Proxy>,
    /// The kernel's congestion control in both end namespaces (the senders of the kernel
    /// targets, and the client's uploads).
    pub kernel_cc: String,
    /// Also time 32 KiB HTTP requests, a new connection each.
    pub requests: bool,
}

/// One path setting and what was measured on it.
struct Cell {
    rtt_ms: u64,
    loss_ppm: u32,
    rtt_measured_ms: f64,
    runs: Vec<Run>,
    /// HTTP request timings by target (with `--requests`), and tcpfront's recovery meanwhile.
    requests: Vec<(Proxy, Latency)>,
    requests_recovery: Option<Recovery>,
    wan: Option<WanStats>,
}

/// `wrk --latency` over new connections: requests per second and percentiles (ms).
#[derive(Clone, Copy, Debug, serde::Serialize)]
struct Latency {
    requests_per_sec: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
}

struct Run {
    download: bool,
    streams: u32,
    /// Goodput by target, bits per second.
    bps: Vec<(Proxy, f64)>,
    /// tcpfront's retransmissions and timeouts in this run.
    tcpfront_recovery: Option<Recovery>,
}

impl Run {
    fn get(&self, p: Proxy) -> Option<f64> {
        self.bps.iter().find(|(q, _)| *q == p).map(|(_, v)| *v)
    }
    fn name(&self) -> String {
        format!(
            "{}, {} stream{}",
            if self.download { "download" } else { "upload" },
            self.streams,
            if self.streams == 1 { "" } else { "s" }
        )
    }
}

/// The end namespaces' `tcp_wmem` maximum: tcpfront's default `--send-buffer-max`.
const KERNEL_WMEM_MAX: u64 = 16 << 20;

pub fn wan(o: &Options) -> anyhow::Result<()> {
    let bin = common::tcpfront_bin();
    let lab = common::wan_lab(&bin, lab::queue_per_cpu())?;
    let _allowed = AllowedCongestion::include(&o.kernel_cc)?;
    for ns in [&lab.names.client_ns, &lab.names.front_ns] {
        tcpfront_tests::netns::run(tcpfront_tests::netns::command_in(ns, "sysctl").args([
            "-qw",
            &format!("net.ipv4.tcp_congestion_control={}", o.kernel_cc),
        ]))
        .with_context(|| format!("--kernel-cc {}", o.kernel_cc))?;
        // Send buffers may grow as far as tcpfront's do by default (16 MiB): with Linux's
        // 4 MiB the client's kernel (every upload) and HAProxy's client side (its downloads)
        // stopped near 300 Mbit/s at 80 ms, a bound of their configuration, not of TCP.
        tcpfront_tests::netns::run(tcpfront_tests::netns::command_in(ns, "sysctl").args([
            "-qw",
            &format!("net.ipv4.tcp_wmem=4096 16384 {KERNEL_WMEM_MAX}"),
        ]))
        .context("raising tcp_wmem")?;
    }
    let mut cells = Vec::new();
    for &rtt_ms in &o.rtts_ms {
        for &loss_ppm in &o.losses_ppm {
            cells.push(cell(&lab, o, rtt_ms, loss_ppm)?);
        }
    }
    drop(lab);
    report(o, &cells)
}

fn cell(lab: &Lab, o: &Options, rtt_ms: u64, loss_ppm: u32) -> anyhow::Result<Cell> {
    let profile = Profile {
        rtt: Duration::from_millis(rtt_ms),
        rate_bps: o.rate_bps,
        loss_ppm,
        seed: rtt_ms << 32 | loss_ppm as u64,
        ..Profile::default()
    };
    let wan = Wan::start(lab, profile, None)?;
    // (Started once the path carries frames: it waits until the client can connect.)
    let _iperf = upstreams::iperf(lab)?;
    let mut rtts = udp_rtts(lab, lab::FRONT_V4.into(), 20, Duration::from_millis(10))?;
    rtts.sort_by(f64::total_cmp);
    let rtt_measured_ms = rtts.get(rtts.len() / 2).copied().unwrap_or(f64::NAN);
    eprintln!(
        "bench wan: path {rtt_ms} ms RTT, {loss_ppm} ppm loss: UDP echo median {rtt_measured_ms:.2} ms"
    );
    let mut runs: Vec<Run> = [false, true]
        .into_iter()
        .flat_map(|download| {
            o.streams.iter().map(move |&streams| Run {
                download,
                streams,
                bps: Vec::new(),
                tcpfront_recovery: None,
            })
        })
        .collect();
    for &proxy in &o.targets {
        let running = proxies::start(lab, proxy, upstreams::IPERF)
            .with_context(|| format!("starting {}", proxy.label()))?;
        let mut recovery = running.tcpfront_recovery(Duration::ZERO)?;
        for run in &mut runs {
            eprintln!(
                "bench wan: {rtt_ms} ms, {loss_ppm} ppm: {}: {} ...",
                proxy.label(),
                run.name()
            );
            let bps = iperf(
                lab,
                proxy.port(upstreams::IPERF),
                run.streams,
                run.download,
                o.duration,
            )?;
            run.bps.push((proxy, bps));
            if let Some(before) = recovery {
                let after = running
                    .tcpfront_recovery(Duration::from_secs(3))?
                    .unwrap_or(before);
                run.tcpfront_recovery = Some(after - before);
                recovery = Some(after);
            }
        }
        running.stop()?;
    }
    let mut requests = Vec::new();
    let mut requests_recovery = None;
    if o.requests {
        let _http = upstreams::http(lab)?;
        for &proxy in &o.targets {
            let running = proxies::start(lab, proxy, upstreams::HTTP)
                .with_context(|| format!("starting {}", proxy.label()))?;
            eprintln!(
                "bench wan: {rtt_ms} ms, {loss_ppm} ppm: {}: requests ...",
                proxy.label()
            );
            let before = running.tcpfront_recovery(Duration::ZERO)?;
            requests.push((
                proxy,
                request_latency(lab, proxy.port(upstreams::HTTP), o.duration)?,
            ));
            if let Some(before) = before {
                let after = running
                    .tcpfront_recovery(Duration::from_secs(3))?
                    .unwrap_or(before);
                requests_recovery = Some(after - before);
            }
            running.stop()?;
        }
    }
    let stats = wan.stop()?;
    for (way, d) in [
        ("client→front", &stats.client_to_front),
        ("front→client", &stats.front_to_client),
    ] {
        if d.socket_drops > 0 || d.send_errors > 0 || d.oversize > 0 {
            eprintln!(
                "bench wan: warning: the emulator itself lost frames {way} \
                 (socket {}, send {}, oversize {}): it was a bottleneck",
                d.socket_drops, d.send_errors, d.oversize
            );
        }
    }
    Ok(Cell {
        rtt_ms,
        loss_ppm,
        rtt_measured_ms,
        runs,
        requests,
        requests_recovery,
        wan: Some(stats),
    })
}

/// Sixteen connections in turn, each one request for the 32 KiB file and closed
/// (`Connection: close`): what a lost tail costs shows in the upper percentiles.
fn request_latency(lab: &Lab, port: u16, duration: Duration) -> anyhow::Result<Latency> {
    let url = format!("http://{}:{port}{}", lab::FRONT_V4, upstreams::REQUEST_PATH);
    // (A request that takes seconds, its SYN lost twice, is a sample, not an error.)
    let text = run_wrk(
        lab,
        &url,
        &["-t1", "-c16", "--latency", "--timeout", "30s"],
        duration,
    )?;
    if let Some(errors) = text
        .lines()
        .find(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
    {
        bail!("wrk {url}: {}", errors.trim());
    }
    let percentile = |p: &str| -> anyhow::Result<f64> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(p))
            .with_context(|| format!("no {p} line in wrk's output:\n{text}"))?;
        let value = line.split_whitespace().nth(1).unwrap_or("");
        duration_ms(value).with_context(|| format!("wrk's {p} value {value:?}"))
    };
    let requests_per_sec = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no Requests/sec in wrk's output")?;
    Ok(Latency {
        requests_per_sec,
        p50_ms: percentile("50%")?,
        p90_ms: percentile("90%")?,
        p99_ms: percentile("99%")?,
    })
}

/// wrk's durations: `812.00us`, `241.35ms`, `1.02s`, `2.00m`.
fn duration_ms(v: &str) -> Option<f64> {
    let split = v.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

fn mbit(bps: f64) -> String {
    format!("{:.0}", bps / 1e6)
}

fn report(o: &Options, cells: &[Cell]) -> anyhow::Result<()> {
    let mut t = String::new();
    let rate = o.rate_bps as f64;
    let _ = writeln!(
        t,
        "goodput in Mbit/s through a {} Mbit/s bottleneck (each run {} s, slow start included); \
         kernel congestion control {}, tcpfront's default (CUBIC)\n",
        mbit(rate),
        o.duration.as_secs(),
        o.kernel_cc
    );
    let _ = write!(t, "{:<16} {:<20}", "path (measured)", "transfer");
    for p in &o.targets {
        let _ = write!(t, " {:>14}", p.label());
    }
    let compare = o.targets.contains(&Proxy::Tcpfront);
    if compare {
        if o.targets.contains(&Proxy::Haproxy) {
            let _ = write!(t, " {:>11}", "tf/haproxy");
        }
        if o.targets.contains(&Proxy::Direct) {
            let _ = write!(t, " {:>11}", "tf/kernel");
        }
        let _ = write!(t, " {:>9}", "tf/rate");
    }
    let _ = writeln!(t);
    for c in cells {
        for (i, r) in c.runs.iter().enumerate() {
            let path = if i == 0 {
                format!(
                    "{} ms {}% ({:.1})",
                    c.rtt_ms,
                    c.loss_ppm as f64 / 1e4,
                    c.rtt_measured_ms
                )
            } else {
                String::new()
            };
            let _ = write!(t, "{path:<16} {:<20}", r.name());
            for &p in &o.targets {
                let _ = write!(t, " {:>14}", r.get(p).map_or("-".into(), mbit));
            }
            if compare {
                let tf = r.get(Proxy::Tcpfront).unwrap_or(0.0);
                if o.targets.contains(&Proxy::Haproxy) {
                    let _ = write!(
                        t,
                        " {:>11}",
                        ratio(tf, r.get(Proxy::Haproxy).unwrap_or(0.0))
                    );
                }
                if o.targets.contains(&Proxy::Direct) {
                    let _ = write!(t, " {:>11}", ratio(tf, r.get(Proxy::Direct).unwrap_or(0.0)));
                }
                let _ = write!(t, " {:>9}", format!("{:.2}", tf / rate));
            }
            let _ = writeln!(t);
        }
    }
    if cells.iter().any(|c| !c.requests.is_empty()) {
        let _ = write!(
            t,
            "\nHTTP requests for {} KiB, a new connection each (wrk -c16): \
             p50 / p90 / p99 ms, requests/s\n{:<16}",
            upstreams::REQUEST_BYTES / 1024,
            "path"
        );
        for p in &o.targets {
            let _ = write!(t, " {:>26}", p.label());
        }
        let _ = writeln!(t);
        for c in cells {
            let _ = write!(
                t,
                "{:<16}",
                format!("{} ms {}%", c.rtt_ms, c.loss_ppm as f64 / 1e4)
            );
            for p in &o.targets {
                let cell = c
                    .requests
                    .iter()
                    .find(|(q, _)| q == p)
                    .map_or("-".into(), |(_, l)| {
                        format!(
                            "{:.0} / {:.0} / {:.0}, {:.0}/s",
                            l.p50_ms, l.p90_ms, l.p99_ms, l.requests_per_sec
                        )
                    });
                let _ = write!(t, " {cell:>26}");
            }
            if let Some(r) = c.requests_recovery {
                let _ = write!(
                    t,
                    "   (tcpfront: {} retransmitted, {} probes, {} timeouts)",
                    r.retransmits, r.tail_loss_probes, r.timeouts
                );
            }
            let _ = writeln!(t);
        }
    }
    if cells
        .iter()
        .flat_map(|c| &c.runs)
        .any(|r| r.tcpfront_recovery.is_some())
    {
        let _ = writeln!(
            t,
            "\ntcpfront's engine per run: segments retransmitted / retransmission timeouts; \
             connections whose slow start HyStart ended (on an RTT rise, on an ACK train)"
        );
        for c in cells {
            for r in &c.runs {
                if let Some(rec) = r.tcpfront_recovery {
                    let _ = writeln!(
                        t,
                        "  {} ms {}% {:<20} {:>6} / {}   HyStart {} / {}{}",
                        c.rtt_ms,
                        c.loss_ppm as f64 / 1e4,
                        r.name(),
                        rec.retransmits,
                        rec.timeouts,
                        rec.hystart_rtt_exits,
                        rec.hystart_train_exits,
                        if rec.still_open > 0 {
                            " (a connection was still open: incomplete)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    print!("{t}");
    let now = common::unix_now();
    let dir = common::results_dir()?;
    let base = dir.join(format!("wan-{now}"));
    let json = json!({
        "benchmark": "wan",
        "unix_time": now,
        "machine": common::machine(),
        "rate_bps": o.rate_bps,
        "kernel_congestion_control": o.kernel_cc,
        "duration_secs": o.duration.as_secs_f64(),
        "paths": cells.iter().map(|c| json!({
            "rtt_ms": c.rtt_ms,
            "loss_ppm": c.loss_ppm,
            "udp_echo_rtt_median_ms": c.rtt_measured_ms,
            "emulator": c.wan,
            "requests": c.requests.iter().map(|(p, l)| (p.key().to_string(), json!(l)))
                .collect::<serde_json::Map<_, _>>(),
            "requests_tcpfront_recovery": c.requests_recovery,
            "runs": c.runs.iter().map(|r| json!({
                "transfer": r.name(),
                "download": r.download,
                "streams": r.streams,
                "goodput_bps": r.bps.iter().map(|(p, v)| (p.key().to_string(), json!(v)))
                    .collect::<serde_json::Map<_, _>>(),
                "tcpfront_over_haproxy": r.get(Proxy::Tcpfront).zip(r.get(Proxy::Haproxy))
                    .map(|(a, b)| a / b),
                "tcpfront_over_rate": r.get(Proxy::Tcpfront).map(|a| a / rate),
                "tcpfront_recovery": r.tcpfront_recovery,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(&json)?,
    )?;
    let groups: Vec<chart::BarGroup> = cells
        .iter()
        .flat_map(|c| {
            c.runs.iter().map(move |r| chart::BarGroup {
                label: format!(
                    "{}ms {}% {}{}",
                    c.rtt_ms,
                    c.loss_ppm as f64 / 1e4,
                    if r.download { "dn" } else { "up" },
                    r.streams
                ),
                values: r.bps.iter().map(|(_, v)| v / 1e6).collect(),
            })
        })
        .collect();
    let series: Vec<String> = o.targets.iter().map(|p| p.label().to_string()).collect();
    chart::bars(
        &base,
        &format!("goodput through a {} Mbit/s emulated WAN path", mbit(rate)),
        "Mbit/s",
        &series,
        &groups,
        Some(rate / 1e6),
    )?;
    println!(
        "\nwritten: {} (and .png, .svg)",
        base.with_extension("json").display()
    );
    Ok(())
}

/// A namespace other than the first may only pick a congestion control that the host
/// allows (`net.ipv4.tcp_allowed_congestion_control`); this adds one for the run and puts
/// the list back when dropped.
struct AllowedCongestion {
    before: Option<String>,
}

const ALLOWED: &str = "/proc/sys/net/ipv4/tcp_allowed_congestion_control";

impl AllowedCongestion {
    fn include(name: &str) -> anyhow::Result<Self> {
        let before = std::fs::read_to_string(ALLOWED)
            .with_context(|| format!("reading {ALLOWED}"))?
            .trim()
            .to_string();
        if before.split_whitespace().any(|n| n == name) {
            return Ok(Self { before: None });
        }
        std::fs::write(ALLOWED, format!("{before} {name}"))
            .with_context(|| format!("allowing {name} in {ALLOWED}"))?;
        Ok(Self {
            before: Some(before),
        })
    }
}

impl Drop for AllowedCongestion {
    fn drop(&mut self) {
        if let Some(b) = &self.before {
            let _ = std::fs::write(ALLOWED, b);
        }
    }
}
