//! `tcpfront-bench`: run through `cargo xtask bench …`, which builds it and tcpfront first.

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use tcpfront_bench::{
    common, idle, micro, proxies::Proxy, rig::Target, synflood, throughput, upstreams, wan,
};

#[derive(Parser)]
#[command(
    name = "cargo xtask bench",
    about = "tcpfront's benchmarks: side by side with what users run instead, in one run"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// SYN flood: each target's one-core capacity (kernel SYN cookies, nftables SYNPROXY,
    /// tcpfront) on a ladder of offered rates, with a legitimate client meanwhile.
    Synflood {
        /// Seconds per step of the ladder.
        #[arg(long, default_value_t = 3.0)]
        step_secs: f64,
        /// Offered rates to try, in thousands of SYNs per second (comma-separated).
        #[arg(long, value_delimiter = ',')]
        rates_k: Option<Vec<u64>>,
        /// Flood with IPv6 SYNs instead of IPv4.
        #[arg(long)]
        v6: bool,
        /// Targets, in order (kernel first: tcpfront's 5x-kernel step needs its capacity).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "kernel,synproxy,tcpfront"
        )]
        targets: Vec<String>,
        /// The flood generator: `live` (live-frames BPF_PROG_RUN), `echo` (the client's
        /// sink turns SYN-ACKs into fresh SYNs, for kernels that refuse live frames) or
        /// `auto` (live where allowed).
        #[arg(long, default_value = "auto")]
        generator: tcpfront_bench::rig::GeneratorChoice,
    },
    /// Bulk throughput (iperf3, 1 and 8 streams, both directions) and new connections per
    /// second (wrk against nginx), direct and through HAProxy, nginx stream and tcpfront.
    Throughput {
        /// Length of each measurement, in seconds.
        #[arg(long, default_value_t = 5)]
        duration: u64,
        /// Targets, in order (direct, haproxy, nginx, tcpfront).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "direct,haproxy,nginx,tcpfront"
        )]
        targets: Vec<String>,
    },
    /// What idle connections cost: each proxy's CPU and new-connection latency with 0,
    /// 1,000 and 10,000 idle connections.
    Idle {
        /// Idle connection counts, in order (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
        counts: Vec<usize>,
        /// Targets (haproxy, nginx, tcpfront).
        #[arg(long, value_delimiter = ',', default_value = "tcpfront,haproxy")]
        targets: Vec<String>,
        /// Seconds the idle CPU is measured for, per step.
        #[arg(long, default_value_t = 10)]
        quiet_secs: u64,
        /// New connections timed per step.
        #[arg(long, default_value_t = 300)]
        probes: usize,
    },
    /// Bulk goodput over emulated WAN paths (RTT × loss, one bottleneck rate), uploads and
    /// downloads of 1 and 4 streams: kernel TCP end to end, HAProxy, tcpfront.
    Wan {
        /// Round-trip times to emulate, in milliseconds (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "20,80")]
        rtts_ms: Vec<u64>,
        /// Random loss each way, in percent (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "0,0.1")]
        loss_pct: Vec<f64>,
        /// The path's bottleneck rate, in Mbit/s.
        #[arg(long, default_value_t = 1000)]
        rate_mbit: u64,
        /// Seconds per transfer.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Parallel streams per transfer (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,4")]
        streams: Vec<u32>,
        /// Targets, in order (direct, haproxy, nginx, tcpfront).
        #[arg(long, value_delimiter = ',', default_value = "direct,haproxy,tcpfront")]
        targets: Vec<String>,
        /// The kernel's congestion control at both ends (Linux's default is cubic; this
        /// machine's own default may differ: `sysctl net.ipv4.tcp_congestion_control`).
        #[arg(long, default_value = "cubic")]
        kernel_cc: String,
        /// Also time HTTP requests for 32 KiB over a new connection each (wrk, latency
        /// percentiles): where a lost tail costs a timeout or a probe.
        #[arg(long)]
        requests: bool,
    },
    /// (Internal) the benchmarks' echo upstream, run in the lab by `bench idle`.
    #[command(hide = true)]
    ServeEcho {
        #[arg(long)]
        port: u16,
    },
    /// Draws a `synflood` run's chart again from its JSON (next to it, same name).
    SynfloodChart { json: std::path::PathBuf },
    /// The XDP SYN path's cost per SYN without a rig (BPF_PROG_TEST_RUN), IPv4 and IPv6.
    XdpCost {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
}

fn target(name: &str) -> anyhow::Result<Target> {
    Target::ALL
        .into_iter()
        .find(|t| t.key() == name)
        .ok_or_else(|| {
            anyhow::anyhow!("--targets: unknown target {name:?} (kernel, synproxy, tcpfront)")
        })
}

fn proxies_named(names: &[String]) -> anyhow::Result<Vec<Proxy>> {
    names
        .iter()
        .map(|n| {
            Proxy::ALL
                .into_iter()
                .find(|p| p.key() == n)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--targets: unknown target {n:?} (direct, haproxy, nginx, tcpfront)"
                    )
                })
        })
        .collect()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synflood {
            step_secs,
            rates_k,
            v6,
            targets,
            generator,
        } => {
            if !(step_secs.is_finite() && step_secs >= 0.5) {
                bail!("--step-secs must be at least 0.5");
            }
            let rates = match rates_k {
                Some(r) if r.contains(&0) => bail!("--rates-k: rates must be positive"),
                Some(r) => r.iter().map(|k| k * 1000).collect(),
                None => synflood::default_rates(),
            };
            synflood::synflood(&synflood::Options {
                step: Duration::from_secs_f64(step_secs),
                rates,
                v6,
                generator,
                targets: targets
                    .iter()
                    .map(|t| target(t))
                    .collect::<Result<_, _>>()?,
            })
        }
        Command::Throughput { duration, targets } => {
            if duration == 0 {
                bail!("--duration must be positive");
            }
            throughput::throughput(Duration::from_secs(duration), &proxies_named(&targets)?)
        }
        Command::Idle {
            counts,
            targets,
            quiet_secs,
            probes,
        } => {
            if quiet_secs == 0 || probes < 2 {
                bail!("--quiet-secs must be positive and --probes at least 2");
            }
            let targets = proxies_named(&targets)?;
            if targets.contains(&Proxy::Direct) {
                bail!("--targets: idle connections need a proxy (haproxy, nginx, tcpfront)");
            }
            idle::idle(&idle::Options {
                counts,
                targets,
                quiet: Duration::from_secs(quiet_secs),
                probes,
            })
        }
        Command::Wan {
            rtts_ms,
            loss_pct,
            rate_mbit,
            duration,
            streams,
            targets,
            kernel_cc,
            requests,
        } => {
            if duration == 0 || rate_mbit == 0 {
                bail!("--duration and --rate-mbit must be positive");
            }
            if let Some(l) = loss_pct.iter().find(|l| !(0.0..=50.0).contains(*l)) {
                bail!("--loss-pct: {l} is not a percentage between 0 and 50");
            }
            if streams.contains(&0) {
                bail!("--streams: stream counts must be positive");
            }
            wan::wan(&wan::Options {
                rtts_ms,
                losses_ppm: loss_pct.iter().map(|l| (l * 1e4).round() as u32).collect(),
                rate_bps: rate_mbit * 1_000_000,
                duration: Duration::from_secs(duration),
                streams,
                targets: proxies_named(&targets)?,
                kernel_cc,
                requests,
            })
        }
        Command::ServeEcho { port } => upstreams::serve_echo(port),
        Command::SynfloodChart { json } => synflood::chart_from_json(&json),
        Command::XdpCost { repeat } => {
            for (family, v6) in [("IPv4", false), ("IPv6", true)] {
                let ns = micro::tcpfront_syn_ns(v6, repeat)?;
                println!("{family}: tcpfront {ns:.1} ns per SYN (warm caches, no clock per run)");
            }
            Ok(())
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cargo xtask bench: error: this needs root (network namespaces, XDP)");
        return std::process::ExitCode::FAILURE;
    }
    if let Err(e) = common::restore_on_interrupt() {
        eprintln!("cargo xtask bench: error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo xtask bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
