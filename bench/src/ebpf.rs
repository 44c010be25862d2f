//! The bench's own XDP object (bench/flood-ebpf), built by build.rs.

use anyhow::Context as _;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/flood-ebpf"));

/// A fresh copy of the object: its own maps.
pub fn load() -> anyhow::Result<aya::Ebpf> {
    aya::Ebpf::load(OBJECT).context("loading the bench XDP object (root is needed)")
}
