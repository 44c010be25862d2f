//! Log set-up: `tracing` for the daemon, with the eBPF side's aya-log records bridged in.

use std::os::fd::AsRawFd;

use tokio::io::unix::AsyncFd;
use tracing_subscriber::EnvFilter;

pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // aya-log emits `log` records; route them into tracing.
    let _ = tracing_log::LogTracer::init();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Forwards the XDP program's aya-log records until the returned task is aborted.
///
/// The logger owns the log ring buffer; it must live as long as the program is loaded.
pub fn spawn_ebpf_logger(ebpf: &mut aya::Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("eBPF logs unavailable: {e}");
            return None;
        }
    };
    // SAFETY: the logger owns the ring buffer's fd, and the AsyncFd owns the logger, so the
    // fd stays open and unchanged for the AsyncFd's whole life.
    let registered =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("eBPF logs unavailable: cannot poll the log ring: {e}");
            return None;
        }
    };
    tracing::debug!(
        "forwarding eBPF logs (ring fd {})",
        fd.get_ref().as_raw_fd()
    );
    Some(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}
