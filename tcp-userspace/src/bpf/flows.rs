//! The XDP flow map (`FLOWS`): keys from socket addresses and back, and its entries as
//! `conns` rows when the engine has nothing to add.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::Path,
};

use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData};
use tcp_common::maps::{
    FAMILY_V4, FAMILY_V6, FLOW_FILTER_WORDS, FLOW_FROM_COOKIE, FLOW_WSCALE, FlowKey, FlowValue,
    flow_filter_place, flow_filter_slot,
};

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

/// User space's side of the flow filter (see `tcp_common::maps::flow_filter_slot`): the
/// pinned `FLOW_FILTER` array mapped into memory, so that a deleted flow's slot is counted
/// down atomically, as the XDP program counts it up.
pub struct FlowFilter {
    words: std::ptr::NonNull<std::sync::atomic::AtomicU64>,
    seed: u64,
    _map: MapData,
}

// SAFETY: the mapping is shared memory changed only through atomics.
unsafe impl Send for FlowFilter {}

const FILTER_BYTES: usize = FLOW_FILTER_WORDS as usize * 8;

impl FlowFilter {
    /// Maps the pinned filter; `seed` is the instance's (`Config::filter_seed`).
    pub fn open(pin: &Path, seed: u64) -> anyhow::Result<Self> {
        use std::os::fd::{AsFd as _, AsRawFd as _};
        let map = MapData::from_pin(pin).with_context(|| format!("opening {}", pin.display()))?;
        // SAFETY: a shared mapping of a BPF_F_MMAPABLE array of exactly FILTER_BYTES bytes;
        // checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                FILTER_BYTES,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mapping {} into memory", pin.display()));
        }
        Ok(Self {
            words: std::ptr::NonNull::new(p.cast()).context("mmap returned null")?,
            seed,
            _map: map,
        })
    }

    /// Takes one flow with `key` out of its slot (never below zero: a slot whose flow the
    /// LRU evicted unseen may already be too high, never too low).
    pub fn release(&self, key: &FlowKey) {
        use std::sync::atomic::Ordering;
        let (word, shift) = flow_filter_place(flow_filter_slot(&key.words(), self.seed));
        // SAFETY: word < FLOW_FILTER_WORDS, inside the mapping.
        let w = unsafe { &*self.words.as_ptr().add(word as usize) };
        let _ = w.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            ((v >> shift) & 0xff != 0).then(|| v - (1 << shift))
        });
    }
}

impl Drop for FlowFilter {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `open` mapped.
        unsafe { libc::munmap(self.words.as_ptr().cast(), FILTER_BYTES) };
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

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_coarse_ns` (the same clock, updated
/// every jiffy), which stamps `created_ns`.
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
