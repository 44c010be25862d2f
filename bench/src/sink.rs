//! The client side of the flood rig: `syn_ack_sink` on the client veth counts and drops the
//! SYN-ACKs and RSTs the target sends to spoofed sources (and gives veth the peer XDP
//! program it needs to deliver XDP_TX frames). Detached when dropped, also by a crash:
//! the attachment is a bpf_link owned by this process.

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use flood_common::{FloodConf, Pacing, SinkConf, sink_stat};

use crate::ebpf;

/// What the sink saw, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub syn_acks: u64,
    pub rsts: u64,
    pub passed: u64,
    /// SYN-ACKs the echo generator turned into fresh SYNs.
    pub echoed: u64,
}

/// Holds the program; aya detaches it when the object drops.
pub struct Sink {
    ebpf: Ebpf,
    own: SinkConf,
}

impl Sink {
    /// Attaches to `iface` in driver mode; the calling thread must be in its namespace.
    pub fn attach(iface: &str, own_v4: Ipv4Addr, own_v6: Ipv6Addr) -> anyhow::Result<Self> {
        let mut sink = Self::load(own_v4, own_v6)?;
        let prog: &mut Xdp = sink
            .ebpf
            .program_mut("syn_ack_sink")
            .context("no syn_ack_sink program")?
            .try_into()?;
        prog.attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching the SYN-ACK sink to {iface}"))?;
        Ok(sink)
    }

    /// Loads the program without attaching it (for `test_run`).
    pub fn load(own_v4: Ipv4Addr, own_v6: Ipv6Addr) -> anyhow::Result<Self> {
        let mut ebpf = ebpf::load()?;
        let own = SinkConf {
            own_v4: own_v4.octets(),
            own_v6: own_v6.octets(),
            echo: 0,
        };
        let mut conf: Array<_, SinkConf> =
            Array::try_from(ebpf.map_mut("SINK").context("no SINK map")?)?;
        conf.set(0, own, 0)?;
        let prog: &mut Xdp = ebpf
            .program_mut("syn_ack_sink")
            .context("no syn_ack_sink program")?
            .try_into()?;
        prog.load().context("loading syn_ack_sink")?;
        Ok(Self { ebpf, own })
    }

    /// Runs the program once on `frame` (BPF_PROG_TEST_RUN): its verdict and the frame as
    /// it left the program.
    pub fn test_run(&self, frame: &[u8]) -> anyhow::Result<(u32, Vec<u8>)> {
        use std::os::fd::AsFd as _;
        let prog: &Xdp = self
            .ebpf
            .program("syn_ack_sink")
            .context("no syn_ack_sink program")?
            .try_into()?;
        tcpfront::bpf::test_run::run(prog.fd()?.as_fd(), frame)
    }

    /// The SYN the echo generator writes (see `generator::template`).
    pub fn set_echo_template(&mut self, template: FloodConf) -> anyhow::Result<()> {
        let mut map: Array<_, FloodConf> =
            Array::try_from(self.ebpf.map_mut("FLOOD").context("no FLOOD map")?)?;
        map.set(0, template, 0).context("writing the echo template")
    }

    /// Turns the echo generator on or off (off: SYN-ACKs are dropped, as without it).
    pub fn set_echo(&mut self, on: bool) -> anyhow::Result<()> {
        let mut map: Array<_, SinkConf> =
            Array::try_from(self.ebpf.map_mut("SINK").context("no SINK map")?)?;
        let conf = SinkConf {
            echo: u32::from(on),
            ..self.own
        };
        map.set(0, conf, 0).context("writing SINK")
    }

    /// The echo generator's pacing; write it only while the echo is off (the program
    /// updates it without atomics).
    pub fn set_pacing(&mut self, p: Pacing) -> anyhow::Result<()> {
        let mut map: Array<_, Pacing> =
            Array::try_from(self.ebpf.map_mut("PACE").context("no PACE map")?)?;
        map.set(0, p, 0).context("writing PACE")
    }

    pub fn pacing(&self) -> anyhow::Result<Pacing> {
        let map: Array<_, Pacing> = Array::try_from(self.ebpf.map("PACE").context("no PACE map")?)?;
        Ok(map.get(&0, 0)?)
    }

    pub fn counts(&self) -> anyhow::Result<SinkCounts> {
        let map: PerCpuArray<_, [u64; sink_stat::COUNT as usize]> =
            PerCpuArray::try_from(self.ebpf.map("SINK_STATS").context("no SINK_STATS")?)?;
        let per_cpu = map.get(&0, 0)?;
        let total = |i: u32| per_cpu.iter().map(|v| v[i as usize]).sum();
        Ok(SinkCounts {
            syn_acks: total(sink_stat::SYN_ACK),
            rsts: total(sink_stat::RST),
            passed: total(sink_stat::PASSED),
            echoed: total(sink_stat::ECHOED),
        })
    }

    /// The program's id, for its run-time statistics.
    pub fn prog_id(&self) -> anyhow::Result<u32> {
        let prog: &Xdp = self
            .ebpf
            .program("syn_ack_sink")
            .context("no syn_ack_sink program")?
            .try_into()?;
        Ok(prog.info()?.id())
    }
}

/// The `pass` program on an interface, for the kernel targets: veth delivers the
/// generator's XDP frames only to a peer with an XDP program. Detached when dropped.
pub struct Pass {
    ebpf: Ebpf,
}

impl Pass {
    /// Attaches to `iface` in driver mode; the calling thread must be in its namespace.
    pub fn attach(iface: &str) -> anyhow::Result<Self> {
        let mut ebpf = ebpf::load()?;
        let prog: &mut Xdp = ebpf
            .program_mut("pass")
            .context("no pass program")?
            .try_into()?;
        prog.load().context("loading pass")?;
        prog.attach(iface, XdpMode::Driver)
            .with_context(|| format!("attaching the pass program to {iface}"))?;
        Ok(Self { ebpf })
    }

    pub fn prog_id(&self) -> anyhow::Result<u32> {
        let prog: &Xdp = self
            .ebpf
            .program("pass")
            .context("no pass program")?
            .try_into()?;
        Ok(prog.info()?.id())
    }
}
