//! The XDP flow map (`FLOWS`): keys from socket addresses and back, and its entries as
//! `conns` rows when the engine has nothing to add.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData};
use tcp_common::maps::{FAMILY_V4, FAMILY_V6, FLOW_FROM_COOKIE, FLOW_WSCALE, FlowKey, FlowValue};

use crate::control::proto::ConnInfo;

pub type FlowMap = HashMap<MapData, FlowKey, FlowValue>;

/// The key of the connection between tcpfront's `local` and the client's `remote`.
pub fn flow_key(local: SocketAddr, remote: SocketAddr) -> FlowKey {
    let mut k = FlowKey {
        src_port: remote.port(),
        dst_port: local.port(),
        ..FlowKey::default()
    };
    match (remote.ip(), local.ip()) {
        (IpAddr::V4(r), IpAddr::V4(l)) => {
            k.family = FAMILY_V4;
            k.src[..4].copy_from_slice(&r.octets());
            k.dst[..4].copy_from_slice(&l.octets());
        }
        (r, l) => {
            k.family = FAMILY_V6;
            k.src = v6_octets(r);
            k.dst = v6_octets(l);
        }
    }
    k
}

fn v6_octets(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(v) => v.octets(),
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
    }
}

/// `(local, remote)` of a flow key.
pub fn flow_addrs(k: &FlowKey) -> (SocketAddr, SocketAddr) {
    let ip = |b: &[u8; 16]| -> IpAddr {
        if k.family == FAMILY_V4 {
            IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(*b))
        }
    };
    (
        SocketAddr::new(ip(&k.dst), k.dst_port),
        SocketAddr::new(ip(&k.src), k.src_port),
    )
}

pub fn open_pinned(pin: &Path) -> anyhow::Result<FlowMap> {
    let data = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
    HashMap::try_from(Map::LruHashMap(data))
        .with_context(|| format!("{} is not the flow map", pin.display()))
}

/// Every entry; entries that vanish while iterating (LRU eviction, deletion) are skipped.
pub fn entries(map: &FlowMap) -> Vec<(FlowKey, FlowValue)> {
    map.iter().filter_map(Result::ok).collect()
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`, which stamps `created_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A `conns` row from the flow map alone.
pub fn flow_info(k: &FlowKey, v: &FlowValue, now_ns: u64) -> ConnInfo {
    let (local, remote) = flow_addrs(k);
    let wscale = v.flags & FLOW_WSCALE != 0;
    ConnInfo {
        snd_wscale: wscale.then_some(v.client_wscale),
        rcv_wscale: wscale.then_some(v.server_wscale),
        mss: Some(v.mss),
        age_ms: Some(now_ns.saturating_sub(v.created_ns) / 1_000_000),
        in_flow_map: true,
        from_cookie: v.flags & FLOW_FROM_COOKIE != 0,
        ..ConnInfo::new(local, remote)
    }
}

pub fn family_name(a: SocketAddr) -> &'static str {
    if a.is_ipv4() { "ipv4" } else { "ipv6" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        for (l, r) in [
            ("10.0.0.2:80", "10.0.0.1:40000"),
            ("[fd00::2]:443", "[fd00::1]:5555"),
        ] {
            let (l, r): (SocketAddr, SocketAddr) = (l.parse().unwrap(), r.parse().unwrap());
            assert_eq!(flow_addrs(&flow_key(l, r)), (l, r));
        }
    }
}
