//! `cargo xtask bench …`: set-up, then the `tcpfront-bench` binary (bench/), which links the
//! generator's eBPF programs and so can only be built once set-up has installed bpf-linker.

use std::process::Command;

use crate::{build, setup, util};

pub fn bench(args: &[String]) -> anyhow::Result<()> {
    util::require_root()?;
    setup::setup()?;
    let tcpfront = build::tcpfront()?;
    let root = util::workspace_root();
    util::run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tcpfront-bench",
    ]))?;
    util::run(
        Command::new(root.join("target/release/tcpfront-bench"))
            .args(args)
            .env("TCPFRONT_BIN", &tcpfront),
    )
}
