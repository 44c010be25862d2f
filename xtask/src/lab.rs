//! `cargo xtask lab up|down|status` and `cargo xtask run`.

use std::process::Command;

use clap::Subcommand;
use tcpfront_tests::lab::{self, CLIENT_V4, CLIENT_V6, FRONT_V4, FRONT_V6, Lab, LabNames};

use crate::{build, setup, util};

#[derive(Subcommand)]
pub enum LabAction {
    /// Create the namespaces, the veth pair, addresses, and the client-side pass program.
    Up,
    /// Destroy the lab (also any demo lab left by an interrupted demo).
    Down,
    /// Show the lab's namespaces, addresses and XDP attachments.
    Status,
}

pub fn lab(action: LabAction) -> anyhow::Result<()> {
    util::require_root()?;
    match action {
        LabAction::Up => {
            let bin = build::tcpfront()?;
            up(&bin)
        }
        LabAction::Down => {
            lab::destroy(&LabNames::fixed());
            lab::destroy(&crate::demo::names());
            eprintln!("xtask: lab down");
            Ok(())
        }
        LabAction::Status => status(&LabNames::fixed()),
    }
}

fn exists(names: &LabNames) -> bool {
    tcpfront_tests::netns::list().contains(&names.front_ns)
}

fn up(bin: &std::path::Path) -> anyhow::Result<()> {
    let names = LabNames::fixed();
    if exists(&names) {
        eprintln!("xtask: lab already up");
        return status(&names);
    }
    Lab::create(names.clone(), true, Some(bin), lab::queue_per_cpu())?;
    eprintln!(
        "xtask: lab up: {} ({} {CLIENT_V4} {CLIENT_V6}) <-veth-> {} ({} {FRONT_V4} {FRONT_V6})",
        names.client_ns, names.client_if, names.front_ns, names.front_if
    );
    status(&names)
}

pub fn status(names: &LabNames) -> anyhow::Result<()> {
    if !exists(names) {
        println!("lab is down");
        return Ok(());
    }
    for (ns, ifname) in [
        (&names.client_ns, &names.client_if),
        (&names.front_ns, &names.front_if),
    ] {
        println!("namespace {ns}:");
        let addrs = util::output(
            Command::new("ip").args(["-n", ns, "-br", "addr", "show", "dev", ifname]),
        )?;
        println!("  {addrs}");
        let link =
            util::output(Command::new("ip").args(["-n", ns, "link", "show", "dev", ifname]))?;
        for l in link
            .lines()
            .filter(|l| l.contains("xdp") || l.contains("prog/xdp"))
        {
            println!("  {}", l.trim());
        }
    }
    Ok(())
}

/// Runs tcpfront on the lab's front-end interface in the foreground.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    util::require_root()?;
    setup::setup()?;
    let bin = build::tcpfront()?;
    up(&bin)?;
    let names = LabNames::fixed();
    util::run(
        Command::new(&bin)
            .args([
                "--netns",
                &names.front_ns,
                "run",
                "--iface",
                &names.front_if,
            ])
            .args(args),
    )
}
