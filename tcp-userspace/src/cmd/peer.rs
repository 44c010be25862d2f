//! `tcpfront peer attach|detach`: the pass-through program for a veth peer.

use std::{fs, path::PathBuf};

use anyhow::Context as _;
use aya::programs::{Xdp, XdpMode, links::FdLink};

use crate::bpf::{self, bpffs};

const PEER_PROGRAM: &str = "tcpfront_peer_pass";

fn link_pin(iface: &str) -> PathBuf {
    PathBuf::from(bpffs::BPFFS)
        .join("tcpfront-peer")
        .join(iface)
}

pub fn attach(iface: &str) -> anyhow::Result<()> {
    crate::instance::require_root("tcpfront peer attach")?;
    super::interface_index(iface)?;
    bpffs::ensure_mounted()?;
    let pin = link_pin(iface);
    if pin.exists() {
        tracing::info!(
            "{iface}: pass-through program already attached ({})",
            pin.display()
        );
        return Ok(());
    }
    let mut ebpf = bpf::open_object()?;
    let prog: &mut Xdp = ebpf
        .program_mut(PEER_PROGRAM)
        .context("the XDP object has no pass-through program")?
        .try_into()?;
    prog.load().context("loading the pass-through program")?;
    let id = prog
        .attach(iface, XdpMode::Driver)
        .or_else(|_| prog.attach(iface, XdpMode::Skb))
        .with_context(|| format!("attaching the pass-through program to {iface}"))?;
    let link: FdLink = prog.take_link(id)?.try_into().context("not a bpf_link")?;
    if let Some(dir) = pin.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    link.pin(&pin)
        .with_context(|| format!("pinning the link at {}", pin.display()))?;
    tracing::info!(
        "{iface}: pass-through program attached, link pinned at {}",
        pin.display()
    );
    Ok(())
}

pub fn detach(iface: &str) -> anyhow::Result<()> {
    crate::instance::require_root("tcpfront peer detach")?;
    crate::instance::validate_iface_name(iface)?;
    let pin = link_pin(iface);
    match fs::remove_file(&pin) {
        Ok(()) => tracing::info!("{iface}: pass-through program detached"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!("{iface}: no pass-through program was attached")
        }
        Err(e) => return Err(e).with_context(|| format!("removing {}", pin.display())),
    }
    Ok(())
}
