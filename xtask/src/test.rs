//! `cargo xtask test`: set-up, build, and the whole suite (unit and integration tests).

use std::process::Command;

use anyhow::bail;
use tcpfront_tests::lab::{TEST_PREFIX, remove_orphaned_test_namespaces};

use crate::{build, setup, util};

pub fn test(args: &[String]) -> anyhow::Result<()> {
    util::require_root()?;
    setup::setup()?;
    let removed = remove_orphaned_test_namespaces();
    if removed > 0 {
        eprintln!("xtask: removed {removed} namespaces/pins left by an earlier killed test run");
    }
    let bin = build::tcpfront()?;
    let result = util::run(
        Command::new(env!("CARGO"))
            .current_dir(util::workspace_root())
            .args(["test", "--release"])
            .args(args)
            .env("TCPFRONT_BIN", &bin),
    );
    // Every test cleans up after itself; anything left is a bug worth failing for.
    let leftovers: Vec<String> = tcpfront_tests::netns::list()
        .into_iter()
        .filter(|n| n.starts_with(TEST_PREFIX))
        .collect();
    remove_orphaned_test_namespaces();
    result?;
    if !leftovers.is_empty() {
        bail!("tests left namespaces behind: {}", leftovers.join(", "));
    }
    Ok(())
}
