//! `tcpfront-bench`: run through `cargo xtask bench …`, which builds it and tcpfront first.

use std::time::Duration;

use anyhow::bail;
use clap::{Parser, Subcommand};
use tcpfront_bench::{micro, rig::Target, synflood, throughput};

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
    },
    /// Bulk throughput (iperf3, 1 and 8 streams) and new connections per second.
    Throughput {
        /// Length of each measurement, in seconds.
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
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

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synflood {
            step_secs,
            rates_k,
            v6,
            targets,
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
                targets: targets
                    .iter()
                    .map(|t| target(t))
                    .collect::<Result<_, _>>()?,
            })
        }
        Command::Throughput { duration } => {
            if duration == 0 {
                bail!("--duration must be positive");
            }
            throughput::throughput(Duration::from_secs(duration))
        }
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
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("cargo xtask bench: error: this needs root (network namespaces, XDP)");
        return std::process::ExitCode::FAILURE;
    }
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo xtask bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
