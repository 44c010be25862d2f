//! One module per subcommand.

pub mod conns;
pub mod peer;
mod reload;
pub mod run;
mod run_status;
pub mod stats;
pub mod status;

use crate::cli::{Command, PeerAction};

/// Runs a subcommand; `netns` is the global `--netns` (reported by `status`).
pub async fn dispatch(command: Command, netns: Option<String>) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(args, netns).await,
        Command::Conns(args) => conns::conns(args),
        Command::Stats(args) => stats::stats(args).await,
        Command::Status(args) => status::status(args),
        Command::Peer { action } => match action {
            PeerAction::Attach { iface } => peer::attach(&iface),
            PeerAction::Detach { iface } => peer::detach(&iface),
        },
    }
}

/// Fails unless `iface` exists in the current network namespace.
pub fn interface_index(iface: &str) -> anyhow::Result<u32> {
    crate::instance::validate_iface_name(iface)?;
    let c = std::ffi::CString::new(iface)?;
    // SAFETY: valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        anyhow::bail!("--iface {iface}: no such interface in this network namespace");
    }
    Ok(index)
}
