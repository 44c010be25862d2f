//! Running tcpfront's XDP program on crafted frames with BPF_PROG_TEST_RUN: each harness loads
//! its own copy of the program, so its maps and counters belong to one test.

use std::{
    net::{IpAddr, SocketAddr},
    os::fd::AsFd as _,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray},
    programs::Xdp,
};
use tcp_common::{
    Counter, XDP_PROGRAM,
    cookie::CookieKeys,
    map_names,
    maps::{FlowKey, FlowValue},
};
use tcpfront::{
    bpf::{self, config::FastPathSettings, counters::CounterSnapshot, test_run},
    wire::{
        ethernet::EthernetRepr,
        frame::TcpFrame,
        ip::IpRepr,
        tcp::{TcpOptions, TcpRepr},
    },
};

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

pub struct Harness {
    ebpf: Ebpf,
    pub settings: FastPathSettings,
}

impl Harness {
    pub fn new(settings: &FastPathSettings) -> anyhow::Result<Self> {
        let mut ebpf = bpf::open_object()?;
        bpf::load_xdp(&mut ebpf)?;
        bpf::config::apply(&mut ebpf, settings)?;
        Ok(Self {
            ebpf,
            settings: settings.clone(),
        })
    }

    /// Takes one of the program's array maps out of the harness (for user-space code that
    /// owns its maps, as the daemon's tasks do).
    pub fn take_array(&mut self, name: &str) -> anyhow::Result<MapData> {
        match self.ebpf.take_map(name) {
            Some(aya::maps::Map::Array(data)) => Ok(data),
            Some(_) => anyhow::bail!("{name} is not an array"),
            None => anyhow::bail!("no {name}"),
        }
    }

    /// Replaces the SYN cookie keys and clock offset the program reads.
    pub fn set_cookie_keys(&mut self, keys: CookieKeys) -> anyhow::Result<()> {
        let mut map: Array<&mut MapData, CookieKeys> =
            Array::try_from(self.ebpf.map_mut(map_names::COOKIE).context("no COOKIE")?)?;
        map.set(0, keys, 0)?;
        self.settings.cookie_keys = keys;
        Ok(())
    }

    /// A harness protecting `listen`, cookies on.
    pub fn protecting(listen: &[&str]) -> anyhow::Result<Self> {
        let listen = listen
            .iter()
            .map(|a| a.parse::<SocketAddr>())
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&FastPathSettings {
            listen,
            ..FastPathSettings::default()
        })
    }

    /// Runs the program once; returns the verdict and the frame as it left.
    pub fn run(&self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        let prog: &Xdp = self
            .ebpf
            .program(XDP_PROGRAM)
            .context("no program")?
            .try_into()?;
        test_run::run(prog.fd()?.as_fd(), frame)
    }

    pub fn counters(&self) -> anyhow::Result<CounterSnapshot> {
        let map: bpf::counters::CounterMap<&MapData> =
            PerCpuArray::try_from(self.ebpf.map(map_names::COUNTERS).context("no COUNTERS")?)?;
        bpf::counters::read(&map)
    }

    pub fn flows(&self) -> anyhow::Result<Vec<(FlowKey, FlowValue)>> {
        let map: HashMap<&MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(map_names::FLOWS).context("no FLOWS")?)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }

    /// Whether the flow table holds the connection of `remote` to `local`.
    pub fn has_flow(&self, local: SocketAddr, remote: SocketAddr) -> anyhow::Result<bool> {
        let map: HashMap<&MapData, FlowKey, FlowValue> =
            HashMap::try_from(self.ebpf.map(map_names::FLOWS).context("no FLOWS")?)?;
        Ok(map.get(&bpf::flows::flow_key(local, remote), 0).is_ok())
    }

    /// Runs `frame` and returns the verdict plus the counters that changed, by name.
    pub fn run_counted(
        &self,
        frame: &[u8],
    ) -> anyhow::Result<(u32, Vec<u8>, std::collections::BTreeMap<&'static str, u64>)> {
        let before = self.counters()?;
        let (verdict, out) = self.run(frame)?;
        let after = self.counters()?;
        let delta = Counter::ALL
            .iter()
            .filter_map(|&c| {
                let d = after.get(c) - before.get(c);
                (d != 0).then_some((c.name(), d))
            })
            .collect();
        Ok((verdict, out, delta))
    }
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// A client → server TCP frame.
pub fn frame(src: &str, dst: &str, tcp: TcpRepr) -> TcpFrame {
    let src: IpAddr = src.parse().expect("src address");
    let dst: IpAddr = dst.parse().expect("dst address");
    TcpFrame {
        eth: EthernetRepr {
            dst: SERVER_MAC,
            src: CLIENT_MAC,
            ..EthernetRepr::default()
        },
        ip: IpRepr::new(src, dst),
        tcp,
    }
}

/// A SYN as Linux sends it: MSS, SACK permitted, timestamps, window scale.
pub fn linux_syn(sport: u16, dport: u16, isn: u32, tsval: u32) -> TcpRepr {
    TcpRepr {
        src_port: sport,
        dst_port: dport,
        seq: isn,
        flags: tcp_common::classify::SYN,
        window: 64240,
        options: TcpOptions {
            mss: Some(1460),
            wscale: Some(7),
            sack_permitted: true,
            timestamps: Some((tsval, 0)),
            ..TcpOptions::default()
        },
        ..TcpRepr::default()
    }
}

/// Recomputes the IPv4 header and TCP checksums of a frame edited by hand, so that a test
/// of some other defect is not caught by the checksum first. Leaves alone what its headers
/// do not let it compute (a frame too short, lengths past its end).
pub fn refresh_checksums(f: &mut [u8]) {
    use tcpfront::wire::{checksum, ethernet::EthernetRepr, ip::IpRepr};
    let Ok((eth, l3)) = EthernetRepr::parse(f) else {
        return;
    };
    let Some(&first) = f.get(l3) else {
        return;
    };
    let v4 = first >> 4 == 4;
    let ihl = if v4 {
        usize::from(first & 0x0f) * 4
    } else {
        40
    };
    if v4 {
        if ihl < 20 || f.len() < l3 + ihl {
            return;
        }
        f[l3 + 10..l3 + 12].fill(0);
        let c = checksum::finish(checksum::add(0, &f[l3..l3 + ihl]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    // A length that no longer fits the frame leaves the TCP checksum alone.
    let Ok((ip, _, len)) = IpRepr::parse(eth.ethertype, &f[l3..]) else {
        return;
    };
    let l4 = l3 + ihl;
    if len < 20 || f.len() < l4 + len {
        return;
    }
    f[l4 + 16..l4 + 18].fill(0);
    let acc = checksum::pseudo_header(ip.src, ip.dst, 6, len as u32);
    let c = checksum::finish(checksum::add(acc, &f[l4..l4 + len]));
    f[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
}
