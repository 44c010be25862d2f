//! Attaching the XDP program to an interface: mode choice, driver→generic fallback, and
//! replacing a stale attachment left behind by an earlier tcpfront.

use std::process::Command;

use anyhow::{Context as _, bail};
use aya::programs::{ProgramError, Xdp, XdpMode, xdp::XdpLinkId};
use tcp_common::XDP_PROGRAM;

use crate::cli::AttachMode;

fn xdp_mode(mode: AttachMode) -> XdpMode {
    match mode {
        AttachMode::Drv => XdpMode::Driver,
        AttachMode::Skb => XdpMode::Skb,
    }
}

fn os_error(e: &ProgramError) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = err.source();
    }
    None
}

/// Attaches `prog` to `iface`. With no mode requested, tries driver mode and falls back to
/// generic (skb) mode with a warning. The caller must hold the instance lock of `iface`, so a
/// program named like ours that is already attached belongs to a dead instance and is replaced.
pub fn attach(
    prog: &mut Xdp,
    iface: &str,
    requested: Option<AttachMode>,
) -> anyhow::Result<(XdpLinkId, AttachMode)> {
    let first = requested.unwrap_or(AttachMode::Drv);
    match attach_replacing_stale(prog, iface, first) {
        Ok(id) => Ok((id, first)),
        Err(e) if requested.is_none() => {
            tracing::warn!(
                "driver-mode XDP is not available on {iface} ({e:#}); falling back to generic \
                 (skb) mode, which is much slower. Use --mode skb to silence this."
            );
            let id = attach_replacing_stale(prog, iface, AttachMode::Skb)?;
            Ok((id, AttachMode::Skb))
        }
        Err(e) => Err(e),
    }
}

fn attach_replacing_stale(
    prog: &mut Xdp,
    iface: &str,
    mode: AttachMode,
) -> anyhow::Result<XdpLinkId> {
    match prog.attach(iface, xdp_mode(mode)) {
        Ok(id) => Ok(id),
        Err(e) if matches!(os_error(&e), Some(libc::EBUSY) | Some(libc::EEXIST)) => {
            let Some(current) = attached_program(iface)? else {
                return Err(e)
                    .with_context(|| format!("attaching to {iface} in {} mode", mode.name()));
            };
            if current.name != XDP_PROGRAM {
                bail!(
                    "{iface} already has another XDP program attached (id {}, name {:?}); \
                     tcpfront will not replace it",
                    current.id,
                    current.name
                );
            }
            tracing::warn!(
                "{iface}: replacing a stale tcpfront XDP program (id {}) left by a dead instance",
                current.id
            );
            detach_netlink(iface, &current.mode)?;
            prog.attach(iface, xdp_mode(mode))
                .with_context(|| format!("attaching to {iface} after removing the stale program"))
        }
        Err(e) => Err(e).with_context(|| format!("attaching to {iface} in {} mode", mode.name())),
    }
}

/// An XDP program attached to an interface, as iproute2 reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedProgram {
    pub id: u64,
    pub name: String,
    /// `xdp` (driver), `xdpgeneric` or `xdpoffload`: the keyword `ip link set` uses.
    pub mode: String,
}

/// The XDP program attached to `iface`, if any.
pub fn attached_program(iface: &str) -> anyhow::Result<Option<AttachedProgram>> {
    let out = Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .context("running `ip link show` (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!(
            "ip link show dev {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_ip_link_json(&out.stdout)
}

fn parse_ip_link_json(json: &[u8]) -> anyhow::Result<Option<AttachedProgram>> {
    let v: serde_json::Value = serde_json::from_slice(json).context("parsing `ip -j link`")?;
    let Some(xdp) = v.get(0).and_then(|l| l.get("xdp")) else {
        return Ok(None);
    };
    let prog = xdp.get("prog").or_else(|| {
        xdp.get("attached")
            .and_then(|a| a.get(0))
            .and_then(|a| a.get("prog"))
    });
    let Some(prog) = prog else {
        return Ok(None);
    };
    let mode = match xdp.get("mode").and_then(|m| m.as_u64()) {
        Some(2) => "xdpgeneric",
        Some(3) => "xdpoffload",
        _ => "xdpdrv",
    };
    Ok(Some(AttachedProgram {
        id: prog.get("id").and_then(|i| i.as_u64()).unwrap_or(0),
        name: prog
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or_default()
            .to_string(),
        mode: mode.to_string(),
    }))
}

fn detach_netlink(iface: &str, mode: &str) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args(["link", "set", "dev", iface, mode, "off"])
        .status()
        .context("running `ip link set … off`")?;
    if !status.success() {
        bail!("could not remove the stale XDP program from {iface} ({mode} off failed)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attached_program() {
        let json = br#"[{"ifname":"v0","xdp":{"mode":2,"prog":{"id":42,"name":"tcpfront","tag":"ab","jited":1}}}]"#;
        let p = parse_ip_link_json(json).unwrap().unwrap();
        assert_eq!(p.id, 42);
        assert_eq!(p.name, "tcpfront");
        assert_eq!(p.mode, "xdpgeneric");
    }

    #[test]
    fn no_program_is_none() {
        assert_eq!(parse_ip_link_json(br#"[{"ifname":"v0"}]"#).unwrap(), None);
    }
}
