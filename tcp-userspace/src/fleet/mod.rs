//! The fleet's hand-off ring (`--fleet-nodes`): where this node sits in it, which node it
//! hands segments of unknown flows to, and the MSS that leaves room for the hand-off header.
//!
//! Stateless ECMP moves established flows between nodes whenever one joins or leaves; a node
//! that gets a segment of a flow it does not have hands it, in XDP, to the next node of the
//! ring, until a node that has the flow takes it or every node has seen it
//! (`tcp_common::maps::FLEET_ETHERTYPE`).

pub mod hello;
pub mod liveness;

use std::{fmt, str::FromStr};

use anyhow::{Context as _, bail, ensure};
use tcp_common::maps::{FLEET_HANDOFF_LEN, MAX_FLEET_NODES};

/// A MAC address, `aa:bb:cc:dd:ee:ff`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl FromStr for Mac {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let mut mac = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for b in &mut mac {
            let p = parts
                .next()
                .with_context(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
            ensure!(
                p.len() == 2,
                "{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"
            );
            *b = u8::from_str_radix(p, 16)
                .with_context(|| format!("{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
        }
        ensure!(
            parts.next().is_none(),
            "{s:?} is not a MAC address (aa:bb:cc:dd:ee:ff)"
        );
        ensure!(
            mac[0] & 1 == 0 && mac != [0; 6],
            "{s}: not a node's address (multicast, broadcast or zero)"
        );
        Ok(Mac(mac))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `--fleet-nodes`: every node's MAC on the segment the nodes share with the router, in the
/// same order on every node.
pub fn parse_nodes(list: &[String]) -> anyhow::Result<Vec<Mac>> {
    let nodes = list
        .iter()
        .map(|s| s.trim().parse::<Mac>())
        .collect::<anyhow::Result<Vec<_>>>()?;
    ensure!(
        nodes.len() >= 2,
        "a fleet has at least two nodes (this one included), got {}",
        nodes.len()
    );
    ensure!(
        nodes.len() <= MAX_FLEET_NODES as usize,
        "a fleet has at most {MAX_FLEET_NODES} nodes, got {}",
        nodes.len()
    );
    for (i, n) in nodes.iter().enumerate() {
        ensure!(!nodes[..i].contains(n), "{n} is listed twice");
    }
    Ok(nodes)
}

/// This node's place in the ring, and what the XDP program needs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetPlace {
    pub nodes: Vec<Mac>,
    /// This node's position in `nodes`.
    pub index: usize,
    /// The MTU of the interface tcpfront serves on.
    pub mtu: u32,
}

impl FleetPlace {
    /// Finds `own` (the interface's MAC) in `nodes`.
    pub fn new(nodes: Vec<Mac>, own: Mac, mtu: u32) -> anyhow::Result<Self> {
        let Some(index) = nodes.iter().position(|n| *n == own) else {
            bail!("this node's interface address {own} is not one of the fleet's nodes");
        };
        ensure!(
            mtu >= 1280 + FLEET_HANDOFF_LEN as u32,
            "an MTU of {mtu} leaves no room for IPv6's 1280 bytes and the hand-off header"
        );
        Ok(Self { nodes, index, mtu })
    }

    /// The node after this one in the ring (segments go to the first live node from there).
    pub fn next(&self) -> Mac {
        self.nodes[(self.index + 1) % self.nodes.len()]
    }

    /// The largest MSS offered to clients (IPv4, IPv6): a client's largest segment plus the
    /// hand-off header still fits the MTU of the segment the nodes share.
    pub fn mss_caps(&self) -> (u16, u16) {
        let room = self.mtu.saturating_sub(FLEET_HANDOFF_LEN as u32);
        let cap = |headers: u32| room.saturating_sub(headers).min(u32::from(u16::MAX)) as u16;
        (cap(40), cap(60))
    }

    /// For `status`.
    pub fn describe(&self) -> String {
        let (v4, v6) = self.mss_caps();
        format!(
            "node {} of {} ({}), hands segments of unknown flows on to {} (or the next live \
             node); MSS at most {v4} (IPv4) / {v6} (IPv6) for the hand-off header at MTU {}",
            self.index + 1,
            self.nodes.len(),
            self.nodes[self.index],
            self.next(),
            self.mtu
        )
    }
}

/// Places this node on `iface` (in the current network namespace) in the ring of `nodes`,
/// if there is one (`--fleet-nodes` given).
pub fn place_if_any(iface: &str, nodes: &[Mac]) -> anyhow::Result<Option<FleetPlace>> {
    if nodes.is_empty() {
        return Ok(None);
    }
    place(iface, nodes).map(Some)
}

/// Places this node on `iface` (in the current network namespace) in the ring.
pub fn place(iface: &str, nodes: &[Mac]) -> anyhow::Result<FleetPlace> {
    let (own, mtu) = interface_mac_and_mtu(iface)
        .with_context(|| format!("reading the address and MTU of {iface}"))?;
    FleetPlace::new(nodes.to_vec(), own, mtu).context("--fleet-nodes")
}

/// The interface's MAC address and MTU, asked of the kernel (not /sys, which shows another
/// namespace's interfaces under `--netns`).
fn interface_mac_and_mtu(iface: &str) -> anyhow::Result<(Mac, u32)> {
    crate::instance::validate_iface_name(iface)?;
    // SAFETY: a throw-away datagram socket for the two ioctls, closed by OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error()).context("socket");
    }
    // SAFETY: fd is a fresh descriptor we own.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&fd);
    // SAFETY: an all-zero ifreq is valid; the name fits (validated: at most 15 bytes).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR fills ifru_hwaddr of a correctly sized ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut ifr) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIOCGIFHWADDR");
    }
    // SAFETY: the union member the ioctl just wrote.
    let data = unsafe { ifr.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    // SAFETY: SIOCGIFMTU fills ifru_mtu of the same ifreq.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFMTU, &mut ifr) } != 0 {
        return Err(std::io::Error::last_os_error()).context("SIOCGIFMTU");
    }
    // SAFETY: the union member the ioctl just wrote.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    Ok((Mac(mac), u32::try_from(mtu).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macs(n: u8) -> Vec<Mac> {
        (1..=n).map(|i| Mac([2, 0, 0, 0, 0, i])).collect()
    }

    #[test]
    fn macs_parse_and_print_back() {
        let m: Mac = "02:Aa:00:10:ff:09".parse().unwrap();
        assert_eq!(m.0, [2, 0xaa, 0, 0x10, 0xff, 9]);
        assert_eq!(m.to_string(), "02:aa:00:10:ff:09");
        for bad in [
            "02:aa:00:10:ff",
            "02:aa:00:10:ff:09:01",
            "2:aa:00:10:ff:09",
            "zz:aa:00:10:ff:09",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_fleet_lists_two_or_more_distinct_nodes() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(parse_nodes(&s(&["02:00:00:00:00:01"])).is_err());
        let e = parse_nodes(&s(&["02:00:00:00:00:01", "02:00:00:00:00:01"])).unwrap_err();
        assert!(e.to_string().contains("listed twice"), "{e}");
        assert_eq!(
            parse_nodes(&s(&["02:00:00:00:00:01", " 02:00:00:00:00:02"]))
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn the_ring_goes_round_every_other_node_once() {
        let nodes = macs(3);
        let p = FleetPlace::new(nodes.clone(), nodes[2], 1500).unwrap();
        assert_eq!(p.index, 2);
        assert_eq!(p.next(), nodes[0], "the last node hands to the first");
        let p = FleetPlace::new(nodes.clone(), nodes[0], 1500).unwrap();
        assert_eq!(p.next(), nodes[1]);
        let e = FleetPlace::new(nodes, Mac([2, 9, 9, 9, 9, 9]), 1500).unwrap_err();
        assert!(e.to_string().contains("02:09:09:09:09:09"), "{e}");
    }

    #[test]
    fn the_mss_leaves_room_for_the_hand_off_header() {
        let nodes = macs(2);
        let p = FleetPlace::new(nodes.clone(), nodes[0], 1500).unwrap();
        // 1450 + 40 + 10 = 1500: a full IPv4 segment plus the header fits the MTU.
        assert_eq!(p.mss_caps(), (1450, 1430));
        let jumbo = FleetPlace::new(nodes.clone(), nodes[0], 9000).unwrap();
        assert_eq!(jumbo.mss_caps(), (8950, 8930));
        assert!(FleetPlace::new(nodes.clone(), nodes[0], 1280).is_err());
    }
}
