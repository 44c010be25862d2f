//! Types shared by the XDP program (`tcp-ebpf`) and the daemon (`tcp-userspace`).
//!
//! Everything here is `#[repr(C)]` and plain data: the same bytes are written by one side
//! into a BPF map and read by the other.
#![no_std]
#![cfg_attr(target_arch = "bpf", feature(asm_experimental_arch))]

#[cfg(target_arch = "bpf")]
pub mod bpf_mem;
pub mod classify;
pub mod cookie;
pub mod counters;
pub mod maps;

pub use counters::{Counter, CounterBlock};

/// Name of the XDP program inside the object; also what `bpftool prog` shows.
pub const XDP_PROGRAM: &str = "tcpfront";
/// Names of the maps, used for loading and for the pin files under
/// `/sys/fs/bpf/tcpfront/<iface>/`.
pub mod map_names {
    pub const COUNTERS: &str = "COUNTERS";
    pub const CONFIG: &str = "CONFIG";
    pub const LISTEN: &str = "LISTEN";
    pub const FLOWS: &str = "FLOWS";
    pub const XSKS: &str = "XSKS";
    pub const PORTS: &str = "PORTS";
    pub const FLOW_FILTER: &str = "FLOW_FILTER";
    pub const COOKIE: &str = "COOKIE";
    /// The fleet's nodes by MAC address (their position in `FLEET_RING`; not pinned), the
    /// ring with when each node was last heard, and the node segments are handed to.
    pub const FLEET_NODES: &str = "FLEET_NODES";
    pub const FLEET_RING: &str = "FLEET_RING";
    pub const FLEET_NEXT: &str = "FLEET_NEXT";
    /// Every map tcpfront pins.
    pub const PINNED: &[&str] = &[
        COUNTERS,
        CONFIG,
        LISTEN,
        PORTS,
        FLOWS,
        FLOW_FILTER,
        COOKIE,
        XSKS,
        FLEET_RING,
        FLEET_NEXT,
    ];
}

/// Entries of the LRU flow map.
pub const MAX_FLOWS: u32 = 262_144;
/// `BPF_F_MMAPABLE`: an array map user space can map into memory (include/uapi/linux/bpf.h).
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Entries of the listen map.
pub const MAX_LISTEN: u32 = 64;
/// Entries of the port map: one per TCP port.
pub const PORT_ENTRIES: u32 = 65_536;
/// AF_XDP sockets: one per RX queue.
pub const MAX_QUEUES: u32 = 64;
