//! `cargo xtask …`: everything a newcomer needs, from a fresh machine to a running lab.

mod bench;
mod build;
mod demo;
mod demo_fleet;
mod fuzz;
mod lab;
mod setup;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "tcpfront's automation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what a fresh machine lacks (Debian tools, nightly rust-src, bpf-linker).
    /// Idempotent: a second run changes nothing.
    Setup,
    /// Build tcpfront (release) with its embedded XDP object.
    Build,
    /// The persistent lab: two network namespaces joined by a veth pair.
    Lab {
        #[command(subcommand)]
        action: lab::LabAction,
    },
    /// Set up, build, bring the lab up and run tcpfront on it in the foreground.
    Run {
        /// Extra arguments for `tcpfront run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build and show tcpfront on real traffic in a throw-away lab (`demo fleet`:
    /// two nodes behind a BGP router with ECMP).
    Demo {
        #[command(subcommand)]
        what: Option<DemoKind>,
    },
    /// Benchmarks, side by side with what users run instead, as ratios (`cargo xtask bench
    /// --help` lists them): synflood, throughput, idle, xdp-cost.
    Bench {
        /// The benchmark and its options.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Differential fuzz of the XDP program against the user-space parser (`--frames N`,
    /// `--seed S`); exits non-zero on any mismatch.
    FuzzXdp {
        /// Options for the fuzzer.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build and run the whole test suite.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Subcommand, Debug)]
enum DemoKind {
    /// Two tcpfront nodes behind a router running BIRD with ECMP, sharing a cookie secret.
    Fleet,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Setup => setup::setup(),
        Command::Build => build::tcpfront().map(|_| ()),
        Command::Lab { action } => lab::lab(action),
        Command::Run { args } => lab::run(&args),
        Command::Demo { what: None } => demo::demo(),
        Command::Demo {
            what: Some(DemoKind::Fleet),
        } => demo_fleet::demo(),
        Command::Bench { args } => bench::bench(&args),
        Command::FuzzXdp { args } => fuzz::fuzz_xdp(&args),
        Command::Test { args } => test::test(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
