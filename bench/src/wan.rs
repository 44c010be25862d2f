//! `cargo xtask bench wan`: bulk transfers over emulated long and lossy paths (the lab's WAN
//! emulator between client and front end: 20 and 80 ms RTT, 0% and 0.1% loss each way, one
//! bottleneck rate), 1 and 4 streams each way, straight to the upstream (kernel TCP end to
//! end), through HAProxy (kernel TCP towards the client, CUBIC) and through tcpfront, in one
//! run. Each path is first checked against its settings: UDP echo RTT, and the emulator's
//! own counters (its socket must drop nothing, or it and not the path was the bottleneck).

use std::{fmt::Write as _, time::Duration};

use anyhow::Context as _;
use serde_json::json;
use tcpfront_tests::{
    lab::{self, Lab},
    wan::{Profile, Wan, WanStats, probe::udp_rtts},
};

use crate::{
    chart,
    common::{self, ratio},
    proxies::{self, Proxy, Recovery},
    throughput::iperf,
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
}

/// One path setting and what was measured on it.
struct Cell {
    rtt_ms: u64,
    loss_ppm: u32,
    rtt_measured_ms: f64,
    runs: Vec<Run>,
    wan: Option<WanStats>,
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
        wan: Some(stats),
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
    if cells
        .iter()
        .flat_map(|c| &c.runs)
        .any(|r| r.tcpfront_recovery.is_some())
    {
        let _ = writeln!(
            t,
            "\ntcpfront's engine per run: segments retransmitted / retransmission timeouts"
        );
        for c in cells {
            for r in &c.runs {
                if let Some(rec) = r.tcpfront_recovery {
                    let _ = writeln!(
                        t,
                        "  {} ms {}% {:<20} {:>6} / {}{}",
                        c.rtt_ms,
                        c.loss_ppm as f64 / 1e4,
                        r.name(),
                        rec.retransmits,
                        rec.timeouts,
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
