use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tcpfront-bench", about = "tcpfront's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Micro-benchmark: ns per SYN in tcpfront's XDP program.
    XdpCost {
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// Probe: flood the bench lab's front veth once.
    Probe {
        #[arg(long)]
        rate: Option<u64>,
        #[arg(long, default_value_t = 3)]
        secs: u64,
        #[arg(long)]
        v6: bool,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::XdpCost { repeat } => tcpfront_bench::xdp_cost(repeat),
        Command::Probe { rate, secs, v6 } => tcpfront_bench::probe(rate, secs, v6),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tcpfront-bench: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
