//! Building tcpfront.

use std::{path::PathBuf, process::Command};

use crate::util::{run, workspace_root};

/// Builds the release tcpfront (build.rs compiles and embeds the XDP object) and returns
/// the binary's path.
pub fn tcpfront() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tcp-userspace",
        "--bin",
        "tcpfront",
    ]))?;
    Ok(root.join("target/release/tcpfront"))
}

/// Builds the test suite's backend process (`tf-test-backend`), for the fleet demo.
pub fn test_backend() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    run(Command::new(env!("CARGO")).current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tests",
        "--bin",
        "tf-test-backend",
    ]))?;
    Ok(root.join("target/release/tf-test-backend"))
}
