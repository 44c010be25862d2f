//! A fleet in namespaces: a router running BIRD with ECMP, two tcpfront nodes on a shared
//! segment (a bridge in the router) announcing the same VIP over eBGP through their own
//! BIRD, and a client behind the router.
//!
//! ```text
//! client 10.77.1.2 ── 10.77.1.1 router (BIRD, AS 65000) br0 10.77.0.1 ─┬─ node 1 10.77.0.11 (AS 65001)
//!                                                                       └─ node 2 10.77.0.12 (AS 65001)
//! VIP 10.77.9.1/32: announced by each node's BIRD from tcpfront's `--announce` device.
//! ```

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{
    lab::TEST_PREFIX,
    netns::{command_in, ip, run},
    process::{ChildGuard, Tcpfront, spawn_backend, tcpfront_bin},
};

pub const VIP: &str = "10.77.9.1";
pub const ROUTER: &str = "10.77.0.1";
pub const CLIENT: &str = "10.77.1.2";
pub const NODE_ADDRS: [&str; 2] = ["10.77.0.11", "10.77.0.12"];
/// The nodes' MAC addresses on the segment: fixed, so that `--fleet-nodes` can list them.
pub const NODE_MACS: [&str; 2] = ["02:77:00:00:00:11", "02:77:00:00:00:12"];
/// The name of tcpfront's announcing device in each node (names are per namespace).
pub const ANNOUNCE_DEV: &str = "tfvip0";
/// Where each node's backend listens, on its loopback.
pub const BACKEND_PORT: u16 = 9201;

pub struct Fleet {
    pub client_ns: String,
    pub router_ns: String,
    pub node_ns: [String; 2],
    /// Each node's interface on the segment (tcpfront attaches there).
    pub node_if: [String; 2],
    /// The router's bridge ports facing the nodes (pass-through XDP, for XDP_TX).
    pub port_if: [String; 2],
    pub dir: PathBuf,
    birds: Vec<ChildGuard>,
}

impl Fleet {
    pub fn create() -> anyhow::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let ns = |role: &str| format!("{TEST_PREFIX}{pid}-f{n}-{role}");
        let dir = std::env::temp_dir().join(format!("tcpfront-fleet-{pid}-{n}"));
        let fleet = Self {
            client_ns: ns("client"),
            router_ns: ns("router"),
            node_ns: [ns("node1"), ns("node2")],
            node_if: [format!("tf{pid}x{n}f1"), format!("tf{pid}x{n}f2")],
            port_if: [format!("tc{pid}x{n}f1"), format!("tc{pid}x{n}f2")],
            dir,
            birds: Vec::new(),
        };
        // Drop tears down whatever part was made if a step fails.
        let mut fleet = fleet;
        fleet.build().context("building the fleet")?;
        Ok(fleet)
    }

    fn build(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir)?;
        for ns in [
            &self.client_ns,
            &self.router_ns,
            &self.node_ns[0],
            &self.node_ns[1],
        ] {
            ip(&["netns", "add", ns])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (c, r) = (&self.client_ns, &self.router_ns);
        ip(&[
            "link", "add", "eth0", "netns", c, "type", "veth", "peer", "name", "down0", "netns", r,
        ])?;
        ip(&["-n", c, "addr", "add", "10.77.1.2/24", "dev", "eth0"])?;
        ip(&["-n", c, "link", "set", "eth0", "up"])?;
        ip(&["-n", c, "route", "add", "default", "via", "10.77.1.1"])?;
        // Full checksums on the wire (see lab.rs): the nodes' XDP verifies them.
        run(command_in(c, "ethtool").args(["-K", "eth0", "tx", "off"]))?;
        ip(&["-n", r, "addr", "add", "10.77.1.1/24", "dev", "down0"])?;
        ip(&["-n", r, "link", "set", "down0", "up"])?;
        ip(&["-n", r, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", r, "addr", "add", "10.77.0.1/24", "dev", "br0"])?;
        ip(&["-n", r, "link", "set", "br0", "up"])?;
        run(command_in(r, "sysctl").args([
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.fib_multipath_hash_policy=1",
        ]))?;
        for (i, addr) in NODE_ADDRS.iter().enumerate() {
            let (nns, nif, port) = (&self.node_ns[i], &self.node_if[i], &self.port_if[i]);
            ip(&[
                "link", "add", nif, "netns", nns, "type", "veth", "peer", "name", port, "netns", r,
            ])?;
            ip(&["-n", r, "link", "set", port, "master", "br0"])?;
            ip(&["-n", r, "link", "set", port, "up"])?;
            ip(&["-n", nns, "link", "set", nif, "address", NODE_MACS[i]])?;
            ip(&["-n", nns, "addr", "add", &format!("{addr}/24"), "dev", nif])?;
            ip(&["-n", nns, "link", "set", nif, "up"])?;
            ip(&["-n", nns, "route", "add", "default", "via", ROUTER])?;
            // veth hands XDP_TX frames only to a peer with an XDP program.
            run(std::process::Command::new(tcpfront_bin())
                .args(["--netns", r, "peer", "attach", "--iface", port]))?;
        }
        self.start_birds()
    }

    fn start_birds(&mut self) -> anyhow::Result<()> {
        // Withdrawals do not wait for the hold timer (a node's route goes with its device), so
        // it keeps its usual 9 s: a busy machine must not drop sessions. Reconnects are quick.
        let timers = "hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 2;";
        let router = format!(
            "router id {ROUTER};\nprotocol device {{ scan time 1; }}\n\
             protocol kernel {{ ipv4 {{ import none; export all; }}; merge paths on; }}\n\
             template bgp node {{ local {ROUTER} as 65000; {timers} ipv4 {{ import all; \
             export none; }}; }}\n\
             protocol bgp node1 from node {{ neighbor {} as 65001; }}\n\
             protocol bgp node2 from node {{ neighbor {} as 65001; }}\n",
            NODE_ADDRS[0], NODE_ADDRS[1]
        );
        self.bird(&self.router_ns.clone(), "router", &router)?;
        for (i, addr) in NODE_ADDRS.iter().enumerate() {
            let conf = std::fs::read_to_string(Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../dist/bird-node.conf"
            )))
            .context("reading dist/bird-node.conf")?
            .replace("NODE_ADDRESS", addr)
            .replace("ROUTER_ADDRESS", ROUTER)
            .replace("hold time 9; keepalive time 3;", timers);
            self.bird(&self.node_ns[i].clone(), &format!("node{}", i + 1), &conf)?;
        }
        Ok(())
    }

    fn bird(&mut self, ns: &str, name: &str, conf: &str) -> anyhow::Result<()> {
        let path = self.dir.join(format!("bird-{name}.conf"));
        std::fs::write(&path, conf)?;
        let log = std::fs::File::create(self.dir.join(format!("bird-{name}.log")))?;
        let g = ChildGuard::spawn(
            "bird",
            command_in(ns, "bird")
                .arg("-f")
                .arg("-c")
                .arg(&path)
                .arg("-s")
                .arg(self.dir.join(format!("bird-{name}.ctl")))
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        self.birds.push(g);
        Ok(())
    }

    /// tcpfront on node `i`: the VIP on port 80, relayed to the node's backend, the shared
    /// cookie `secret`, the VIP announced, both nodes in the hand-off ring; `extra`
    /// arguments after those.
    pub fn start_node(&self, i: usize, secret: &str, extra: &[&str]) -> anyhow::Result<Tcpfront> {
        let listen = format!("{VIP}:80");
        let upstream = format!("127.0.0.1:{BACKEND_PORT}");
        let ring = NODE_MACS.join(",");
        let mut args = vec![
            "--fleet-nodes",
            &ring,
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--cookie-secret",
            secret,
            "--announce",
            ANNOUNCE_DEV,
            "--drain-timeout",
            "3s",
        ];
        args.extend_from_slice(extra);
        Tcpfront::start_in(&self.node_ns[i], &self.node_if[i], &args, "info", &[])
    }

    /// Node `i`'s backend (`tf-test-backend` at `bin`), answering `node1` or `node2`.
    pub fn backend(&self, i: usize, bin: &Path) -> anyhow::Result<ChildGuard> {
        spawn_backend(
            &self.node_ns[i],
            bin,
            BACKEND_PORT,
            &format!("node{}", i + 1),
            "echo",
        )
    }

    /// The router's next hops for the VIP (empty: no route).
    pub fn vip_next_hops(&self) -> anyhow::Result<Vec<String>> {
        let out = command_in(&self.router_ns, "ip")
            .args(["-j", "route", "show", &format!("{VIP}/32")])
            .output()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let Some(route) = v.get(0) else {
            return Ok(Vec::new());
        };
        if let Some(hops) = route["nexthops"].as_array() {
            return Ok(hops
                .iter()
                .filter_map(|h| h["gateway"].as_str().map(String::from))
                .collect());
        }
        Ok(route["gateway"]
            .as_str()
            .map(|g| vec![g.to_string()])
            .unwrap_or_default())
    }

    /// Waits until the router's route to the VIP has exactly these next hops.
    pub fn wait_next_hops(&self, want: &[&str], timeout: Duration) -> anyhow::Result<Duration> {
        let start = Instant::now();
        loop {
            let mut hops = self.vip_next_hops()?;
            hops.sort();
            if hops == want {
                return Ok(start.elapsed());
            }
            ensure!(
                start.elapsed() < timeout,
                "the router's next hops for {VIP} are {hops:?}, not {want:?}, after {timeout:?}\n\
                 BIRD logs:\n{}",
                self.bird_logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn bird_logs(&self) -> String {
        ["router", "node1", "node2"]
            .iter()
            .map(|n| {
                format!(
                    "--- {n}\n{}",
                    std::fs::read_to_string(self.dir.join(format!("bird-{n}.log")))
                        .unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.birds.clear();
        for port in &self.port_if {
            let _ = std::fs::remove_file(Path::new("/sys/fs/bpf/tcpfront-peer").join(port));
        }
        for nif in &self.node_if {
            let _ = std::fs::remove_dir_all(Path::new("/sys/fs/bpf/tcpfront").join(nif));
            // A node killed by the test leaves its control socket and lock behind.
            for ext in ["sock", "lock"] {
                let _ = std::fs::remove_file(format!("/run/tcpfront/{nif}.{ext}"));
            }
        }
        for ns in [
            &self.client_ns,
            &self.router_ns,
            &self.node_ns[0],
            &self.node_ns[1],
        ] {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
