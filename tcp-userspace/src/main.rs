use clap::Parser as _;
use tcpfront::{
    alloc_count::CountingAlloc,
    cli::{self as cmd_line, Cli},
    cmd, logging, netns, signals,
};

/// Counts each thread's allocations, so that `stats` can show the queue threads make none
/// per frame.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, cmd_line::Command::Run(_)) {
        // Until `run` has installed its handlers, a stop request waits instead of killing the
        // process half set up; every thread made from here on inherits the mask.
        signals::block_stop_signals();
    }
    logging::init(cli.verbose);
    // setns() only moves the calling thread, so it must happen before any runtime thread exists.
    if let Some(ns) = &cli.netns
        && let Err(e) = netns::enter(ns)
    {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::dispatch(cli.command, cli.netns)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A CLI's error line, not a log line (the daemon's own log says what led to it).
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
