//! Writing tcpfront's settings into the XDP program's `CONFIG` and `LISTEN` maps.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap},
};
use tcp_common::{
    map_names,
    maps::{
        CFG_DRAIN_DROP_SYNS, CFG_DRAINING, CFG_ENABLED, CFG_RST_INVALID_COOKIE, CFG_SCRUB_ALL,
        CFG_SYN_COOKIES, Config, FAMILY_V4, FAMILY_V6, ListenKey,
    },
};

/// What the XDP program needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FastPathSettings {
    /// Protected addresses; an unspecified IP (0.0.0.0 / ::) protects the port on every
    /// address of that family.
    pub listen: Vec<SocketAddr>,
    pub syn_cookies: bool,
    pub rst_invalid_cookie: bool,
    pub scrub_all: bool,
    /// While draining on shutdown, drop new SYNs instead of passing them to the kernel.
    pub drain_drop_syns: bool,
    pub syn_ack_window: u16,
    pub wscale: u8,
}

impl Default for FastPathSettings {
    fn default() -> Self {
        Self {
            listen: Vec::new(),
            syn_cookies: true,
            rst_invalid_cookie: false,
            scrub_all: false,
            drain_drop_syns: false,
            syn_ack_window: 65535,
            wscale: 7,
        }
    }
}

pub fn listen_key(addr: &SocketAddr) -> ListenKey {
    let mut key = ListenKey {
        port: addr.port(),
        ..ListenKey::default()
    };
    match addr.ip() {
        IpAddr::V4(ip) => {
            key.family = FAMILY_V4;
            if !ip.is_unspecified() {
                key.addr[..4].copy_from_slice(&ip.octets());
            }
        }
        IpAddr::V6(ip) => {
            key.family = FAMILY_V6;
            if !ip.is_unspecified() {
                key.addr = ip.octets();
            }
        }
    }
    key
}

/// Fills `LISTEN`, then writes `CONFIG` with the enabled flag last, so that the program never
/// acts on half a configuration.
pub fn apply(ebpf: &mut Ebpf, s: &FastPathSettings) -> anyhow::Result<()> {
    {
        let mut listen: HashMap<_, ListenKey, u32> = HashMap::try_from(
            ebpf.map_mut(map_names::LISTEN)
                .context("the XDP object has no LISTEN map")?,
        )?;
        for addr in &s.listen {
            listen
                .insert(listen_key(addr), 1, 0)
                .with_context(|| format!("adding {addr} to LISTEN"))?;
        }
    }
    write_config(ebpf, s, false)
}

/// Switches the program to draining: new SYNs are no longer answered (see `CFG_DRAINING`).
pub fn start_draining(ebpf: &mut Ebpf, s: &FastPathSettings) -> anyhow::Result<()> {
    write_config(ebpf, s, true)
}

fn write_config(ebpf: &mut Ebpf, s: &FastPathSettings, draining: bool) -> anyhow::Result<()> {
    let mut flags = CFG_ENABLED;
    if draining {
        flags |= CFG_DRAINING;
        if s.drain_drop_syns {
            flags |= CFG_DRAIN_DROP_SYNS;
        }
    }
    if s.syn_cookies {
        flags |= CFG_SYN_COOKIES;
    }
    if s.rst_invalid_cookie {
        flags |= CFG_RST_INVALID_COOKIE;
    }
    if s.scrub_all {
        flags |= CFG_SCRUB_ALL;
    }
    let config = Config {
        flags,
        syn_ack_window: s.syn_ack_window,
        wscale: s.wscale,
        _pad: 0,
    };
    let mut array: Array<_, Config> = Array::try_from(
        ebpf.map_mut(map_names::CONFIG)
            .context("the XDP object has no CONFIG map")?,
    )?;
    array.set(0, config, 0).context("writing CONFIG")?;
    Ok(())
}
