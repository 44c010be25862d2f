//! `cargo xtask demo fleet`: two tcpfront nodes behind a router that learns their VIP over
//! eBGP (BIRD in every namespace) and spreads clients over both with ECMP; a handshake
//! answered by one node completes on the other (shared cookie secret); a node drained, then
//! killed, leaves the fleet on its own; connections ECMP moves when a node comes back go on
//! (the nodes hand each other their segments).

use std::{
    io::{Read as _, Write as _},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tcpfront_tests::{
    fleet::{Fleet, NODE_ADDRS, VIP},
    netns::command_in,
    process::{Tcpfront, connect_and_greet},
};

use crate::{build, setup, util};

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Who answers a new connection to the VIP.
fn who(fleet: &Fleet) -> anyhow::Result<String> {
    let (mut s, name) = connect_and_greet(&fleet.client_ns, SocketAddr::new(VIP.parse()?, 80))?;
    s.write_all(b"bye\n")?;
    let mut back = [0u8; 4];
    s.read_exact(&mut back)?;
    Ok(name)
}

fn spread(fleet: &Fleet, n: usize) -> anyhow::Result<String> {
    let mut counts = std::collections::BTreeMap::new();
    for _ in 0..n {
        *counts.entry(who(fleet)?).or_insert(0) += 1;
    }
    Ok(counts
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", "))
}

fn route(fleet: &Fleet) -> anyhow::Result<String> {
    let out = command_in(&fleet.router_ns, "ip")
        .args(["route", "show", &format!("{VIP}/32")])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace('\n', "\n    "))
}

pub fn demo() -> anyhow::Result<()> {
    util::require_root()?;
    step("setup (installs only what is missing: BIRD among others)");
    setup::setup()?;
    step("build tcpfront and a small backend that says which node it runs on");
    let bin = build::tcpfront()?;
    let backend = build::test_backend()?;
    // SAFETY: setting an env var before any thread is spawned.
    unsafe { std::env::set_var("TCPFRONT_BIN", &bin) };

    step("the fleet: client -> router (BIRD, ECMP) -> node 1 / node 2 (tcpfront + BIRD)");
    let fleet = Fleet::create()?;
    println!(
        "    client {}  router {}  nodes {} ({}) and {} ({}), VIP {VIP}",
        fleet.client_ns,
        fleet.router_ns,
        fleet.node_ns[0],
        NODE_ADDRS[0],
        fleet.node_ns[1],
        NODE_ADDRS[1]
    );
    let secret = fleet.dir.join("cookie.secret");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mut b = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
        std::fs::write(&secret, b)?;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    }
    let secret = secret.to_string_lossy().into_owned();
    let _backends = (fleet.backend(0, &backend)?, fleet.backend(1, &backend)?);
    step("tcpfront on both nodes, one secret file (--cookie-secret), VIP announced (--announce)");
    let n1 = fleet.start_node(0, &secret, &[])?;
    let n2 = fleet.start_node(1, &secret, &[])?;
    let took = fleet.wait_next_hops(&[NODE_ADDRS[0], NODE_ADDRS[1]], Duration::from_secs(30))?;
    println!("    router, after {took:.1?}: {}", route(&fleet)?);
    let status = n1.cli(&["status"])?;
    println!(
        "    node 1 status:\n{}",
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .map(|l| format!("      {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    step("30 connections from the client: ECMP spreads them over both nodes");
    println!("    {}", spread(&fleet, 30)?);

    step("drain node 1 (SIGTERM): its VIP is withdrawn, new connections go to node 2");
    n1.proc.signal(libc::SIGTERM);
    let t = Instant::now();
    fleet.wait_next_hops(&[NODE_ADDRS[1]], Duration::from_secs(10))?;
    println!(
        "    route withdrawn after {:.0?}: {}",
        t.elapsed(),
        route(&fleet)?
    );
    println!("    {}", spread(&fleet, 10)?);
    drop(n1);

    step("20 connections held open on node 2, then node 1 back: ECMP moves some of them");
    let mut open = Vec::new();
    for _ in 0..20 {
        let (s, _) = connect_and_greet(&fleet.client_ns, SocketAddr::new(VIP.parse()?, 80))?;
        open.push(s);
    }
    let n1 = fleet.start_node(0, &secret, &[])?;
    fleet.wait_next_hops(&[NODE_ADDRS[0], NODE_ADDRS[1]], Duration::from_secs(30))?;
    let mut went_on = 0;
    for s in &mut open {
        let mut back = [0u8; 5];
        if s.write_all(b"more\n")
            .and_then(|()| s.read_exact(&mut back))
            .is_ok()
        {
            went_on += 1;
        }
    }
    println!(
        "    {went_on} of {} went on: node 1 handed {} segments of the moved ones to node 2 \
         (--fleet-nodes), which took {}",
        open.len(),
        Tcpfront::counter(&n1.stats()?, "fleet_handed_off"),
        Tcpfront::counter(&n2.stats()?, "fleet_claimed")
    );
    drop(open);

    step("node 1 killed (SIGKILL): its TUN device goes with it, so does its route");
    println!("    both serve: {}", spread(&fleet, 10)?);
    n1.proc.signal(libc::SIGKILL);
    let t = Instant::now();
    fleet.wait_next_hops(&[NODE_ADDRS[1]], Duration::from_secs(15))?;
    println!(
        "    route withdrawn {:.0?} after the kill; {}",
        t.elapsed(),
        spread(&fleet, 10)?
    );

    let stats = n2.stats().context("node 2 stats")?;
    println!(
        "\n    node 2 answered {} SYNs and accepted {} cookie ACKs",
        Tcpfront::counter(&stats, "syn_ack_sent"),
        Tcpfront::counter(&stats, "cookie_ack_valid")
    );
    step("done: the fleet's namespaces, BIRDs and pins are removed");
    Ok(())
}
