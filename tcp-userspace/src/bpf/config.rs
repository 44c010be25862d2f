//! Writing tcpfront's settings into the XDP program's `CONFIG` and `LISTEN` maps.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context as _;

use crate::fleet::FleetPlace;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData},
};
use tcp_common::{
    cookie::CookieKeys,
    map_names,
    maps::{
        CFG_DRAIN_DROP_SYNS, CFG_DRAINING, CFG_ENABLED, CFG_RST_INVALID_COOKIE, CFG_SCRUB_ALL,
        CFG_SYN_COOKIES, Config, FAMILY_V4, FAMILY_V6, FleetNode, LISTEN_RETIRED, LISTEN_SERVING,
        ListenKey, mac_key, port_bits, port_retired_bit,
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
    /// The flow filter's hash seed (`tcp_common::maps::flow_filter_slot`): random per
    /// instance, and needed again to take a deleted flow out of the filter.
    pub filter_seed: u64,
    /// The SYN cookie's keys and clock offset (`tcp_common::cookie`).
    pub cookie_keys: CookieKeys,
    /// This node's place in its fleet's hand-off ring, if in one.
    pub fleet: Option<FleetPlace>,
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
            filter_seed: random_seed(),
            cookie_keys: super::cookie::per_instance_keys(),
            fleet: None,
        }
    }
}

/// 64 bits from the kernel's random pool.
pub fn random_seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        // Never in practice; a fixed seed only makes collisions guessable, never answers wrong.
        return 0x7466_7472_6f6e_7421;
    }
    u64::from_ne_bytes(b)
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

/// The `PORTS` bits of every port `listen` protects: a wildcard address sets the family's
/// "any" bit, an exact one its "exact" bit (the address then goes into `LISTEN`). `retired`
/// addresses (removed by a reload) keep their bits so that their connections' segments still
/// reach user space; a retired wildcard also gets its family's retired bit, unless a serving
/// wildcard of that family and port is back.
pub fn port_map(
    listen: &[SocketAddr],
    retired: &[SocketAddr],
) -> std::collections::BTreeMap<u16, u8> {
    let mut ports = std::collections::BTreeMap::new();
    for addr in listen {
        let key = listen_key(addr);
        let (any, exact) = port_bits(key.family);
        *ports.entry(addr.port()).or_insert(0) |= if addr.ip().is_unspecified() {
            any
        } else {
            exact
        };
    }
    for addr in retired {
        let key = listen_key(addr);
        let (any, exact) = port_bits(key.family);
        let bits = ports.entry(addr.port()).or_insert(0);
        if !addr.ip().is_unspecified() {
            *bits |= exact;
        } else if *bits & any == 0 {
            *bits |= any | port_retired_bit(key.family);
        }
    }
    ports
}

/// Writes `LISTEN` and `PORTS` for the `listen` addresses and the `retired` ones; every
/// port of `previous` that is in neither is cleared. Entries are updated in place, the
/// program keeps running: addresses are made serving before ports point at them.
pub fn apply_listen(
    ebpf: &mut Ebpf,
    listen: &[SocketAddr],
    retired: &[SocketAddr],
    previous: &[SocketAddr],
) -> anyhow::Result<()> {
    {
        let mut map: HashMap<_, ListenKey, u32> = HashMap::try_from(
            ebpf.map_mut(map_names::LISTEN)
                .context("the XDP object has no LISTEN map")?,
        )?;
        for (addrs, value) in [(listen, LISTEN_SERVING), (retired, LISTEN_RETIRED)] {
            for addr in addrs.iter().filter(|a| !a.ip().is_unspecified()) {
                map.insert(listen_key(addr), value, 0)
                    .with_context(|| format!("adding {addr} to LISTEN"))?;
            }
        }
    }
    let mut ports: Array<&mut MapData, u8> = Array::try_from(
        ebpf.map_mut(map_names::PORTS)
            .context("the XDP object has no PORTS map")?,
    )?;
    let bits = port_map(listen, retired);
    for addr in previous {
        if !bits.contains_key(&addr.port()) {
            ports
                .set(u32::from(addr.port()), 0, 0)
                .with_context(|| format!("clearing port {} in PORTS", addr.port()))?;
        }
    }
    for (port, b) in bits {
        ports
            .set(u32::from(port), b, 0)
            .with_context(|| format!("marking port {port} in PORTS"))?;
    }
    Ok(())
}

/// Fills `LISTEN` and `PORTS`, then writes `CONFIG` with the enabled flag last, so that the
/// program never acts on half a configuration.
pub fn apply(ebpf: &mut Ebpf, s: &FastPathSettings) -> anyhow::Result<()> {
    apply_listen(ebpf, &s.listen, &[], &[])?;
    {
        let mut cookie: Array<&mut MapData, CookieKeys> = Array::try_from(
            ebpf.map_mut(map_names::COOKIE)
                .context("the XDP object has no COOKIE map")?,
        )?;
        cookie
            .set(0, s.cookie_keys, 0)
            .context("writing the SYN cookie keys")?;
    }
    write_fleet_nodes(ebpf, s.fleet.as_ref())?;
    write_config(ebpf, s, false)
}

/// Rewrites `CONFIG` and the fleet's nodes from `s` (a reload: flags and settings change in
/// place). Nodes are added before `CONFIG` points the ring at them.
pub fn update(ebpf: &mut Ebpf, s: &FastPathSettings) -> anyhow::Result<()> {
    write_fleet_nodes(ebpf, s.fleet.as_ref())?;
    write_config(ebpf, s, false)
}

/// `FLEET_RING` and `FLEET_NODES`: the ring of `fleet` by position, and its nodes by MAC
/// (none without a fleet). A node that stays keeps the time it was last heard, so that a
/// reload does not make live nodes look dead.
fn write_fleet_nodes(ebpf: &mut Ebpf, fleet: Option<&FleetPlace>) -> anyhow::Result<()> {
    let nodes: Vec<[u8; 6]> = fleet
        .map(|f| f.nodes.iter().map(|m| m.0).collect())
        .unwrap_or_default();
    let mut ring: Array<_, FleetNode> = Array::try_from(
        ebpf.map_mut(map_names::FLEET_RING)
            .context("the XDP object has no FLEET_RING map")?,
    )?;
    let heard: Vec<FleetNode> = ring.iter().filter_map(Result::ok).collect();
    for (i, mac) in nodes.iter().enumerate() {
        let last_seen_ns = heard
            .iter()
            .find(|n| n.mac == *mac)
            .map_or(0, |n| n.last_seen_ns);
        let node = FleetNode {
            mac: *mac,
            _pad: [0; 2],
            last_seen_ns,
        };
        ring.set(i as u32, node, 0).context("writing FLEET_RING")?;
    }
    for i in nodes.len()..heard.len() {
        ring.set(i as u32, FleetNode::default(), 0)
            .context("clearing FLEET_RING")?;
    }
    let mut map: HashMap<_, u64, u32> = HashMap::try_from(
        ebpf.map_mut(map_names::FLEET_NODES)
            .context("the XDP object has no FLEET_NODES map")?,
    )?;
    let keep: Vec<u64> = nodes.iter().map(|m| mac_key(*m)).collect();
    let stale: Vec<u64> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keep.contains(k))
        .collect();
    for k in stale {
        map.remove(&k).context("removing a node from FLEET_NODES")?;
    }
    for (i, k) in keep.iter().enumerate() {
        map.insert(k, i as u32, 0)
            .context("adding a node to FLEET_NODES")?;
    }
    Ok(())
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
    let (mss_cap_v4, mss_cap_v6) = s.fleet.as_ref().map_or((0, 0), FleetPlace::mss_caps);
    let config = Config {
        flags,
        syn_ack_window: s.syn_ack_window,
        wscale: s.wscale,
        _pad: 0,
        filter_seed: s.filter_seed,
        mss_cap_v4,
        mss_cap_v6,
        fleet_size: s.fleet.as_ref().map_or(0, |f| f.nodes.len() as u8),
        fleet_self: s.fleet.as_ref().map_or(0, |f| f.index as u8),
        _pad2: [0; 2],
    };
    let mut array: Array<_, Config> = Array::try_from(
        ebpf.map_mut(map_names::CONFIG)
            .context("the XDP object has no CONFIG map")?,
    )?;
    array.set(0, config, 0).context("writing CONFIG")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tcp_common::maps::{
        PORT_V4_ANY, PORT_V4_ANY_RETIRED, PORT_V4_EXACT, PORT_V6_ANY, PORT_V6_ANY_RETIRED,
    };

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn retired_addresses_keep_their_bits_and_retire_wildcards() {
        let serving = [a("0.0.0.0:80"), a("10.0.0.1:81")];
        let m = port_map(&serving, &[]);
        assert_eq!(m[&80], PORT_V4_ANY);
        assert_eq!(m[&81], PORT_V4_EXACT);
        // 80 (both families) removed, 443 added.
        let m = port_map(
            &[a("0.0.0.0:443")],
            &[a("0.0.0.0:80"), a("[::]:80"), a("10.0.0.1:81")],
        );
        assert_eq!(
            m[&80],
            PORT_V4_ANY | PORT_V4_ANY_RETIRED | PORT_V6_ANY | PORT_V6_ANY_RETIRED
        );
        assert_eq!(m[&81], PORT_V4_EXACT);
        assert_eq!(m[&443], PORT_V4_ANY);
        // A wildcard that is back serves again.
        assert_eq!(
            port_map(&[a("0.0.0.0:80")], &[a("0.0.0.0:80")])[&80],
            PORT_V4_ANY
        );
    }
}
