//! Types shared by the XDP program (`tcp-ebpf`) and the daemon (`tcp-userspace`).
//!
//! Everything here is `#[repr(C)]` and plain data: the same bytes are written by one side
//! into a BPF map and read by the other.
#![no_std]

pub mod classify;
pub mod counters;

pub use counters::Counter;

/// Name of the XDP program inside the object; also what `bpftool prog` shows.
pub const XDP_PROGRAM: &str = "tcpfront";
/// Names of the maps, used for loading and for the pin files under
/// `/sys/fs/bpf/tcpfront/<iface>/`.
pub mod map_names {
    pub const COUNTERS: &str = "COUNTERS";
}
