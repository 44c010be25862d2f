use clap::Parser as _;
use tcpfront::{alloc_count::CountingAlloc, cli::Cli, cmd, logging, netns};

/// Counts each thread's allocations, so that `stats` can show the queue threads make none
/// per frame.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    logging::init(cli.verbose);
    // setns() only moves the calling thread, so it must happen before any runtime thread exists.
    if let Some(ns) = &cli.netns
        && let Err(e) = netns::enter(ns)
    {
        tracing::error!("{e:#}");
        return std::process::ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cmd::dispatch(cli.command, cli.netns)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
