//! A lab: a client namespace and a front-end namespace joined by one veth pair with IPv4 and
//! IPv6 addresses. Tests make uniquely named labs that are destroyed on drop (also while
//! unwinding from a failed assertion); `cargo xtask lab` makes the fixed, persistent one.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::Context as _;

use crate::netns::{self, ip};

/// Prefix of every namespace a test creates; `cargo xtask test` removes leftovers by it.
pub const TEST_PREFIX: &str = "tft-";

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 1);
pub const FRONT_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7466, 0, 0, 0, 0, 0, 1);
pub const FRONT_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x7466, 0, 0, 0, 0, 0, 2);

/// Names of the namespaces and interfaces of one lab.
#[derive(Clone, Debug)]
pub struct LabNames {
    pub client_ns: String,
    pub front_ns: String,
    pub client_if: String,
    pub front_if: String,
    /// A middle namespace emulating a WAN path between the two (see [`crate::wan`]); without
    /// it the two ends share one veth pair.
    pub wan: Option<WanNames>,
}

/// The middle namespace of a WAN lab and its two veths: `client_side` is the client's peer,
/// `front_side` the front-end's.
#[derive(Clone, Debug)]
pub struct WanNames {
    pub ns: String,
    pub client_side: String,
    pub front_side: String,
}

impl LabNames {
    /// The lab of `cargo xtask lab up`.
    pub fn fixed() -> Self {
        Self {
            client_ns: "tf-client".into(),
            front_ns: "tf-front".into(),
            client_if: "tf-c0".into(),
            front_if: "tf-f0".into(),
            wan: None,
        }
    }

    /// The same lab with a WAN emulator's namespace in the middle, named after the front
    /// end's (`<front_ns>-wan`, `<front_if>a`, `<front_if>b`; interface names must stay
    /// within 15 characters).
    pub fn with_wan(mut self) -> Self {
        self.wan = Some(WanNames {
            ns: format!("{}-wan", self.front_ns),
            client_side: format!("{}a", self.front_if),
            front_side: format!("{}b", self.front_if),
        });
        self
    }

    /// Names no other lab of this or another running test process uses.
    pub fn unique() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        Self {
            client_ns: format!("{TEST_PREFIX}{pid}-{n}-client"),
            front_ns: format!("{TEST_PREFIX}{pid}-{n}-front"),
            // IFNAMSIZ: at most 15 characters.
            client_if: format!("tc{pid}x{n}"),
            front_if: format!("tf{pid}x{n}"),
            wan: None,
        }
    }
}

/// One queue per CPU, as a NIC's RSS would be set up (at least one).
pub fn queue_per_cpu() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

pub struct Lab {
    pub names: LabNames,
    /// Keep the namespaces when dropped (the xtask lab).
    persistent: bool,
}

impl Lab {
    /// Creates both namespaces, the veth pair (MTU 1500, `queues` RX and TX queues on each
    /// end) and the addresses. With `tcpfront`, also attaches the pass-through XDP program to
    /// the client side, without which veth drops the XDP_TX frames tcpfront sends back.
    pub fn create(
        names: LabNames,
        persistent: bool,
        tcpfront: Option<&Path>,
        queues: u32,
    ) -> anyhow::Result<Self> {
        let lab = Lab { names, persistent };
        // Drop destroys whatever part was made if a later step fails.
        lab.build(tcpfront, queues.max(1))
            .with_context(|| format!("creating lab {}", lab.names.front_ns))?;
        Ok(lab)
    }

    /// A uniquely named lab for one test, destroyed on drop, with a queue per CPU.
    pub fn unique(tcpfront: Option<&Path>) -> anyhow::Result<Self> {
        Self::create(LabNames::unique(), false, tcpfront, queue_per_cpu())
    }

    fn build(&self, tcpfront: Option<&Path>, queues: u32) -> anyhow::Result<()> {
        let n = &self.names;
        ip(&["netns", "add", &n.client_ns])?;
        ip(&["netns", "add", &n.front_ns])?;
        match &n.wan {
            None => veth_pair(&n.client_ns, &n.client_if, &n.front_ns, &n.front_if, queues)?,
            Some(w) => {
                ip(&["netns", "add", &w.ns])?;
                // The middle carries frames only: no addresses, no IPv6 chatter of its own.
                netns::run(netns::command_in(&w.ns, "sysctl").args([
                    "-qw",
                    "net.ipv6.conf.default.disable_ipv6=1",
                    "net.ipv6.conf.all.disable_ipv6=1",
                ]))?;
                veth_pair(&n.client_ns, &n.client_if, &w.ns, &w.client_side, queues)?;
                veth_pair(&w.ns, &w.front_side, &n.front_ns, &n.front_if, queues)?;
                for ifname in [&w.client_side, &w.front_side] {
                    // Frames stay frames: no GRO merging them on the way in.
                    netns::run(
                        netns::command_in(&w.ns, "ethtool").args(["-K", ifname, "gro", "off"]),
                    )?;
                    ip(&["-n", &w.ns, "link", "set", ifname, "up"])?;
                }
                // The front end's kernel sends wire-size frames with full checksums, as the
                // client's does (below): the emulator carries frames, not offload metadata.
                netns::run(netns::command_in(&n.front_ns, "ethtool").args([
                    "-K",
                    &n.front_if,
                    "tx",
                    "off",
                ]))?;
                if let Some(bin) = tcpfront {
                    // tcpfront's XDP_TX frames reach the middle only through an XDP program.
                    netns::run(std::process::Command::new(bin).args([
                        "--netns",
                        &w.ns,
                        "peer",
                        "attach",
                        "--iface",
                        &w.front_side,
                    ]))?;
                }
            }
        }
        // veth delivers a frame to the peer's RX queue of the sender's TX queue, which the
        // kernel picks from the socket's hash; by default it re-draws that hash on a
        // retransmission timeout (and on some duplicates), moving a live connection to another
        // queue, where a NIC's RSS would keep hashing its 4-tuple to the same one. Keep the
        // hash, as RSS would.
        netns::run(netns::command_in(&n.client_ns, "sysctl").args(["-qw", "net.core.txrehash=0"]))?;
        for (ns, ifname, v4, v6) in [
            (&n.client_ns, &n.client_if, CLIENT_V4, CLIENT_V6),
            (&n.front_ns, &n.front_if, FRONT_V4, FRONT_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", ifname])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", ifname, "up"])?;
        }
        // veth passes the sender's TX checksum offload along (CHECKSUM_PARTIAL): frames reach
        // the peer's XDP program and AF_XDP with only the pseudo-header summed. A real wire
        // carries full checksums, so the lab's client computes them itself.
        netns::run(netns::command_in(&n.client_ns, "ethtool").args([
            "-K",
            &n.client_if,
            "tx",
            "off",
        ]))?;
        if let Some(bin) = tcpfront
            && n.wan.is_none()
        {
            netns::run(std::process::Command::new(bin).args([
                "--netns",
                &n.client_ns,
                "peer",
                "attach",
                "--iface",
                &n.client_if,
            ]))?;
        }
        Ok(())
    }

    pub fn front_addr(&self, v6: bool) -> IpAddr {
        if v6 { FRONT_V6.into() } else { FRONT_V4.into() }
    }

    /// Where tcpfront pins the maps of the front-end interface.
    pub fn pin_dir(&self) -> PathBuf {
        Path::new("/sys/fs/bpf/tcpfront").join(&self.names.front_if)
    }

    /// Removes everything; safe to call on a half-built or already destroyed lab.
    pub fn destroy(&self) {
        destroy(&self.names);
    }

    /// Whether an XDP program is attached to the front-end interface.
    /// Fails if tcpfront left anything behind on this lab: an XDP program on the front
    /// interface, pins, or its control socket.
    pub fn assert_nothing_left(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.front_has_xdp()?, "an XDP program is still attached");
        anyhow::ensure!(
            !self.pin_dir().exists(),
            "pins left in {:?}",
            self.pin_dir()
        );
        let sock = format!("/run/tcpfront/{}.sock", self.names.front_if);
        anyhow::ensure!(
            !std::path::Path::new(&sock).exists(),
            "{sock} is still there"
        );
        Ok(())
    }

    pub fn front_has_xdp(&self) -> anyhow::Result<bool> {
        let out = std::process::Command::new("ip")
            .args([
                "-n",
                &self.names.front_ns,
                "-j",
                "link",
                "show",
                "dev",
                &self.names.front_if,
            ])
            .output()
            .context("ip link show")?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("ip -j output")?;
        Ok(v.get(0).and_then(|l| l.get("xdp")).is_some())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.persistent {
            self.destroy();
        }
    }
}

/// A veth pair between two namespaces, MTU 1500, `queues` RX and TX queues on each end.
fn veth_pair(ns_a: &str, if_a: &str, ns_b: &str, if_b: &str, queues: u32) -> anyhow::Result<()> {
    let q = queues.to_string();
    ip(&[
        "link",
        "add",
        if_a,
        "netns",
        ns_a,
        "mtu",
        "1500",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
        "type",
        "veth",
        "peer",
        "name",
        if_b,
        "netns",
        ns_b,
        "mtu",
        "1500",
        "numtxqueues",
        &q,
        "numrxqueues",
        &q,
    ])
}

/// Tears down a lab by its names, ignoring parts that do not exist.
pub fn destroy(n: &LabNames) {
    let _ = std::fs::remove_file(Path::new("/sys/fs/bpf/tcpfront-peer").join(&n.client_if));
    if let Some(w) = &n.wan {
        let _ = std::fs::remove_file(Path::new("/sys/fs/bpf/tcpfront-peer").join(&w.front_side));
        let _ = ip(&["netns", "del", &w.ns]);
    }
    let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf/tcpfront").join(&n.front_if));
    for ext in ["sock", "lock"] {
        let _ = std::fs::remove_file(format!("/run/tcpfront/{}.{ext}", n.front_if));
    }
    for ns in [&n.client_ns, &n.front_ns] {
        let _ = ip(&["netns", "del", ns]);
    }
}

/// Removes test namespaces whose creating process is gone (after a SIGKILLed test run).
pub fn remove_orphaned_test_namespaces() -> usize {
    let mut removed = 0;
    for ns in netns::list() {
        let Some(rest) = ns.strip_prefix(TEST_PREFIX) else {
            continue;
        };
        let pid: Option<u32> = rest.split('-').next().and_then(|p| p.parse().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && ip(&["netns", "del", &ns]).is_ok() {
            removed += 1;
        }
    }
    // Pins named after a dead test's interfaces (`tc<pid>x<n>`, `tf<pid>x<n>`).
    for dir in ["/sys/fs/bpf/tcpfront", "/sys/fs/bpf/tcpfront-peer"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name
                .strip_prefix("tc")
                .or_else(|| name.strip_prefix("tf"))
                .and_then(|r| r.split('x').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(pid) = pid
                && !Path::new(&format!("/proc/{pid}")).exists()
            {
                let p = e.path();
                let _ = std::fs::remove_dir_all(&p).or_else(|_| std::fs::remove_file(&p));
                removed += 1;
            }
        }
    }
    removed
}
