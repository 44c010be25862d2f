//! What the flood generator's eBPF programs (`flood-ebpf`) and their loader (`tcpfront-bench`)
//! share. Bench tooling only: nothing here is part of tcpfront.
#![no_std]

/// Longest SYN the generator writes: Ethernet + IPv6 + TCP with a Linux SYN's 20 option bytes.
pub const FRAME_MAX: usize = 96;
/// Where IP starts in a generated frame (no VLAN tag).
pub const L3_OFF: usize = 14;
/// A generated SYN's TCP header: 20 bytes and Linux's options (MSS, SACK-permitted,
/// timestamps, NOP, window scale).
pub const TCP_HLEN: usize = 40;
/// Offset of TSval inside the TCP header (after MSS and the SACK-permitted/timestamp kinds).
pub const TSVAL_OFF: usize = 28;
pub const V4_LEN: usize = L3_OFF + 20 + TCP_HLEN;
pub const V6_LEN: usize = L3_OFF + 40 + TCP_HLEN;

/// The single entry of the generator's `FLOOD` array: a template SYN and how to vary it.
///
/// Every run the program writes the whole frame from `frame` (the page it writes into comes
/// back from the target rewritten by its XDP_TX), then draws a source address, a source
/// port, an ISN, a TSval and (IPv4) an IP ID, and fixes both checksums incrementally from
/// the template's sums.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FloodConf {
    /// The SYN with every varying field zero, checksums zero.
    pub frame: [u8; FRAME_MAX],
    /// 4 or 6.
    pub family: u32,
    /// The last two bytes of the source address are `host_first + r % host_count`.
    pub host_first: u32,
    pub host_count: u32,
    /// Source ports are `port_first + r % port_count`.
    pub port_first: u32,
    pub port_count: u32,
    /// One's-complement sums (native byte order, unfolded) of the template's IPv4 header and
    /// of its TCP pseudo-header and header, varying fields and checksums zero.
    pub ip_sum: u32,
    pub tcp_sum: u32,
    pub _pad: u32,
}

impl Default for FloodConf {
    fn default() -> Self {
        Self {
            frame: [0; FRAME_MAX],
            family: 0,
            host_first: 0,
            host_count: 1,
            port_first: 1024,
            port_count: 1,
            ip_sum: 0,
            tcp_sum: 0,
            _pad: 0,
        }
    }
}

/// The single entry of the generator's `PACE` array: the program paces itself, because a
/// live-frames BPF_PROG_RUN call costs milliseconds to set up and so must run long: it is
/// started with a huge repeat count and interrupted by a signal when the flood is over.
/// Runs that come too early return XDP_DROP (nothing is sent; the page is recycled).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Pacing {
    /// Nanoseconds between two SYNs; 0: as fast as it goes.
    pub interval_ns: u64,
    /// When the next SYN is due (`bpf_ktime_get_ns`); 0 before the first.
    pub next_ns: u64,
    /// How far behind schedule it may fall before skipping ahead instead of bursting.
    pub max_lag_ns: u64,
    /// SYNs sent so far, and the bound.
    pub sent: u64,
    pub limit: u64,
    /// When the first and the latest SYN were sent.
    pub first_ns: u64,
    pub last_ns: u64,
    /// xorshift64 state for the random fields (a helper call per field costs more than the
    /// rest of the frame); seeded by user space, never zero.
    pub rng: u64,
}

/// The single entry of the sink's `SINK` array: the client's own addresses, whose traffic
/// passes; SYN-ACKs and RSTs to any other address are counted and dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SinkConf {
    pub own_v4: [u8; 4],
    pub own_v6: [u8; 16],
    /// Non-zero: the echo generator is on. Each SYN-ACK to a spoofed source is rewritten,
    /// whole, into a fresh SYN from the sink's own `FLOOD` template and sent back (XDP_TX)
    /// while the sink's `PACE` says one is due; otherwise dropped. For kernels that refuse
    /// live-frames BPF_PROG_RUN: the SYNs still reach the target as XDP frames.
    pub echo: u32,
}

/// Indexes of the sink's per-CPU `SINK_STATS` counters.
pub mod sink_stat {
    pub const SYN_ACK: u32 = 0;
    pub const RST: u32 = 1;
    pub const PASSED: u32 = 2;
    /// SYN-ACKs turned into fresh SYNs by the echo generator.
    pub const ECHOED: u32 = 3;
    pub const COUNT: u32 = 4;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] plain data without implicit padding (checked by the tests below).
    unsafe impl aya::Pod for super::FloodConf {}
    unsafe impl aya::Pod for super::SinkConf {}
    unsafe impl aya::Pod for super::Pacing {}
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_implicit_padding() {
        assert_eq!(
            core::mem::size_of::<super::FloodConf>(),
            super::FRAME_MAX + 32
        );
        assert_eq!(core::mem::size_of::<super::SinkConf>(), 24);
    }
}
