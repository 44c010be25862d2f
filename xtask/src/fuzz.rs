//! `cargo xtask fuzz-xdp …`: set-up, then the differential fuzzer (tests/xdp), which runs the
//! XDP program on mutated frames and holds every answer and flow to the user-space parser.

use std::process::Command;

use crate::{setup, util};

pub fn fuzz_xdp(args: &[String]) -> anyhow::Result<()> {
    util::require_root()?;
    setup::setup()?;
    let root = util::workspace_root();
    util::run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tcpfront-xdp-harness",
        "--bin",
        "xdp-fuzz",
    ]))?;
    util::run(Command::new(root.join("target/release/xdp-fuzz")).args(args))
}
