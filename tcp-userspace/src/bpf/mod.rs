//! Everything that talks to the kernel's BPF subsystem: the embedded object, attaching,
//! pinning and reading maps.

pub mod attach;
pub mod bpffs;
pub mod counters;

/// The XDP object built from tcp-ebpf by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp-ebpf"));

/// Loads the object (verifying nothing yet: programs are loaded on demand).
pub fn open_object() -> anyhow::Result<aya::Ebpf> {
    use anyhow::Context as _;
    aya::Ebpf::load(OBJECT).context("cannot load the embedded XDP object (root is needed)")
}
