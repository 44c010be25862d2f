//! Builds the XDP object (tcp-ebpf) with the nightly toolchain, BTF included, into OUT_DIR so
//! that `tcpfront` embeds it. `cargo xtask setup` installs what this needs.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let root = std::path::Path::new(&manifest)
        .parent()
        .context("tcp-userspace has no parent directory")?;
    let ebpf_dir = root.join("tcp-ebpf");
    // The object also depends on the shared types.
    println!(
        "cargo:rerun-if-changed={}",
        root.join("tcp-common").display()
    );
    let ebpf_dir = ebpf_dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tcp-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context("building the eBPF object failed; did you run `cargo xtask setup`?")
}
