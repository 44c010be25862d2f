//! `cargo xtask bench …`: tcpfront against kernel TCP, side by side in one run. Benchmarks
//! print a table with ratios and write JSON (and a chart) under `target/bench/`; they assert
//! nothing about timing.

mod chart;
mod common;
mod flood;
mod synflood;
mod throughput;

use std::time::Duration;

use anyhow::bail;
use clap::Subcommand;

use crate::{build, setup, util};

#[derive(Subcommand)]
pub enum BenchAction {
    /// SYN flood against kernel SYN cookies, nftables SYNPROXY and tcpfront, each with a
    /// legitimate client measuring connect latency meanwhile.
    Synflood {
        /// Flood length per target, in seconds.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// SYNs per second; without it, as fast as the generator can.
        #[arg(long)]
        rate: Option<u64>,
        /// Upper bound on SYNs per target.
        #[arg(long, default_value_t = 20_000_000)]
        max_syns: u64,
    },
    /// Bulk throughput (1 and 8 streams, iperf3) and new connections per second, through
    /// tcpfront and straight to the kernel.
    Throughput {
        /// Length of each measurement, in seconds.
        #[arg(long, default_value_t = 5)]
        duration: u64,
    },
}

pub fn bench(action: BenchAction) -> anyhow::Result<()> {
    util::require_root()?;
    setup::setup()?;
    let bin = build::tcpfront()?;
    // SAFETY: set before any thread is spawned.
    unsafe { std::env::set_var("TCPFRONT_BIN", &bin) };
    match action {
        BenchAction::Synflood {
            duration,
            rate,
            max_syns,
        } => {
            if duration == 0 || rate == Some(0) || max_syns == 0 {
                bail!("--duration, --rate and --max-syns must be positive");
            }
            synflood::synflood(
                &bin,
                &synflood::Options {
                    duration: Duration::from_secs(duration),
                    rate,
                    max_packets: max_syns,
                },
            )
        }
        BenchAction::Throughput { duration } => {
            if duration == 0 {
                bail!("--duration must be positive");
            }
            throughput::throughput(&bin, Duration::from_secs(duration))
        }
    }
}
