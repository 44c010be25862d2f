//! Builds the bench-only XDP programs (bench/flood-ebpf) with the nightly toolchain.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let dir = std::path::Path::new(&manifest).join("flood-ebpf");
    let common = std::path::Path::new(&manifest).join("flood-common");
    println!("cargo:rerun-if-changed={}", common.display());
    let dir = dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "flood-ebpf",
            root_dir: dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context("building the flood generator failed; did you run `cargo xtask setup`?")
}
