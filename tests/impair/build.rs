//! Builds the test-only impairment object (tests/impair-ebpf) with the nightly toolchain.
use anyhow::Context as _;

fn main() -> anyhow::Result<()> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let dir = std::path::Path::new(&manifest)
        .parent()
        .context("no parent directory")?
        .join("impair-ebpf");
    let dir = dir.to_str().context("non-UTF-8 path")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "impair-ebpf",
            root_dir: dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Nightly,
    )
    .context("building the impairment object failed; did you run `cargo xtask setup`?")
}
