//! `cargo xtask fuzz-xdp`: the differential fuzzer, as long as one wants.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "cargo xtask fuzz-xdp",
    about = "Mutated frames through tcpfront's XDP program (BPF_PROG_TEST_RUN); every frame it \\
             answers or turns into a flow must parse in user space as a segment of that kind"
)]
struct Args {
    /// Frames to run.
    #[arg(long, default_value_t = 10_000_000)]
    frames: u64,
    /// The mutator's seed (a failure replays with the same one).
    #[arg(long, default_value_t = 0x7466_7a7a)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    tcpfront::logging::init(0);
    let t0 = std::time::Instant::now();
    match xdp_harness::fuzz::run(args.frames, args.seed) {
        Ok(r) => {
            println!(
                "{} frames in {:.0?} (seed {:#x}): {} answered, {} flows, {} dropped, {} mismatches",
                r.frames,
                t0.elapsed(),
                args.seed,
                r.answered,
                r.flows,
                r.dropped,
                r.mismatches.len()
            );
            for m in r.mismatches.iter().take(20) {
                println!("mismatch: {}\n  frame: {:02x?}", m.what, m.frame);
            }
            if r.mismatches.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("cargo xtask fuzz-xdp: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
