//! Everything that talks to the kernel's BPF subsystem: the embedded object, attaching,
//! pinning and reading maps.

pub mod attach;
pub mod bpffs;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod flows;
pub mod key_rotation;
pub mod secret;
pub mod test_run;

/// The XDP object built from tcp-ebpf by build.rs.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tcp-ebpf"));

/// Loads the object (verifying nothing yet: programs are loaded on demand).
pub fn open_object() -> anyhow::Result<aya::Ebpf> {
    use anyhow::Context as _;
    aya::Ebpf::load(OBJECT).context("cannot load the embedded XDP object (root is needed)")
}

/// Loads (verifies) the `tcpfront` XDP program of `ebpf`.
pub fn load_xdp(ebpf: &mut aya::Ebpf) -> anyhow::Result<&mut aya::programs::Xdp> {
    use anyhow::Context as _;
    let prog: &mut aya::programs::Xdp = ebpf
        .program_mut(tcp_common::XDP_PROGRAM)
        .context("the XDP object has no `tcpfront` program")?
        .try_into()
        .context("`tcpfront` is not an XDP program")?;
    prog.load().context("the kernel rejected the XDP program")?;
    Ok(prog)
}
