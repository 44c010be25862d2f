//! One module per subcommand.

pub mod peer;
pub mod run;
pub mod stats;

use crate::cli::{Command, PeerAction};

pub async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Stats(args) => stats::stats(args),
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
