//! Command-line interface.

use clap::{Parser, Subcommand, ValueEnum};

use crate::engine::State;

#[derive(Parser, Debug)]
#[command(
    name = "tcpfront",
    version,
    about = "A TCP front-end accelerated by XDP/eBPF"
)]
pub struct Cli {
    /// Run inside this network namespace (a name under /run/netns, as made by `ip netns add`).
    /// BPF pins stay in the host's /sys/fs/bpf, unlike with `ip netns exec`.
    #[arg(long, global = true, value_name = "NAME")]
    pub netns: Option<String>,

    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load the XDP program on an interface and serve until SIGINT/SIGTERM.
    Run(RunArgs),
    /// List the connections of a running instance, like `ss -tan`.
    ///
    /// Every entry of the XDP flow map joined with the engine's connection, plus the
    /// listening addresses. Without the daemon (crashed), only the pinned flow map is shown.
    Conns(ConnsArgs),
    /// Print the XDP packet counters and the engine's connection counters.
    Stats(StatsArgs),
    /// Show which interfaces tcpfront runs on, how, and since when.
    Status(StatusArgs),
    /// Attach or detach a pass-through XDP program on the peer of a veth.
    ///
    /// veth delivers XDP_TX frames only to a peer that has an XDP program, so the client side
    /// of a veth pair in front of tcpfront needs one. The attachment is pinned and outlives
    /// this command.
    Peer {
        #[command(subcommand)]
        action: PeerAction,
    },
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Network interface to attach to.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// XDP attach mode: `drv` (native driver) or `skb` (generic). Default: drv, falling back
    /// to skb with a warning when the driver has no XDP support.
    #[arg(long, value_enum)]
    pub mode: Option<AttachMode>,
    /// A protected address (repeatable): SYNs to it are answered at the NIC, its connections
    /// are terminated by tcpfront and relayed. `0.0.0.0:PORT` / `[::]:PORT` protect PORT on
    /// every address. Without any, tcpfront only counts and scrubs.
    #[arg(long = "listen", value_name = "ADDR:PORT")]
    pub listen: Vec<std::net::SocketAddr>,
    /// A backend connections are relayed to, over kernel TCP (repeatable: a pool).
    /// `,weight=N` (1-256) gives it N shares of the new connections.
    #[arg(long = "upstream", value_name = "HOST:PORT[,weight=N]")]
    pub upstream: Vec<String>,
    /// How the pool's backend is chosen for a new connection. Default round-robin.
    #[arg(long, value_enum)]
    pub balance: Option<crate::backends::Balance>,
    /// Active TCP health checks of the backends: `on` or `off`. Default: on for a pool of two
    /// or more backends, off for a single one.
    #[arg(long, value_enum)]
    pub health_checks: Option<OnOff>,
    /// Time between two checks of a backend. Default 2s.
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// How long a check's connect may take. Default 1s.
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Checks passed in a row that bring a down backend up. Default 2.
    #[arg(long, value_name = "N")]
    pub health_rise: Option<u32>,
    /// Checks failed in a row that take a backend down. Default 3.
    #[arg(long, value_name = "N")]
    pub health_fall: Option<u32>,
    /// Send the PROXY protocol header (`v1` text or `v2` binary) to the backends first, so
    /// that they see the client's address and port.
    #[arg(long, value_enum)]
    pub proxy_protocol: Option<crate::backends::ProxyVersion>,
    /// Other backends tried when a connect fails (refused, timed out), before the client
    /// gets RST. Default 2.
    #[arg(long, value_name = "N")]
    pub connect_retries: Option<u32>,
    /// Built-in upstream that echoes every byte back (demos, tests).
    #[arg(long)]
    pub echo: bool,
    /// Maximum concurrent connections; beyond it new ones are answered with RST and counted.
    /// Default 100000.
    #[arg(long, value_name = "N")]
    pub max_conns: Option<usize>,
    /// Maximum segment lifetime; TIME-WAIT lasts twice this. Default 30s.
    #[arg(long, value_name = "DURATION")]
    pub msl: Option<String>,
    /// Number of RX queues to serve (one AF_XDP socket each). Default: the interface's.
    #[arg(long, value_name = "N")]
    pub queues: Option<u32>,
    /// AF_XDP binding: `copy` (every driver; veth has nothing else), `zerocopy` (drivers with
    /// XSK pool support), or `auto` (default: zero-copy where the driver offers it, else copy).
    #[arg(long, value_enum)]
    pub xsk_mode: Option<XskModeArg>,
    /// Answer SYNs with SYN cookies in XDP (`on`, default), or hand them to the engine (`off`).
    #[arg(long, value_enum)]
    pub syn_cookies: Option<OnOff>,
    /// What to do with an ACK to a protected port whose cookie is invalid (default `drop`).
    #[arg(long, value_enum)]
    pub invalid_cookie: Option<InvalidCookie>,
    /// Drop illegal flag combinations for every destination, not only protected ports.
    #[arg(long)]
    pub scrub_all: bool,
    /// Run the XDP fast path for the --listen addresses but open no AF_XDP sockets: another
    /// program registers its own in the pinned XSKS map (tests, custom engines).
    #[arg(long, conflicts_with_all = ["upstream", "echo"])]
    pub xdp_only: bool,
    /// On SIGTERM/SIGINT, how long open connections get to close after tcpfront sent them
    /// FIN; what remains is then reset. A second signal cuts the wait short. Default 10s.
    #[arg(long, value_name = "DURATION")]
    pub drain_timeout: Option<String>,
    /// While draining, new SYNs to protected ports are `pass`ed to the kernel (default: with
    /// no listener there the client gets a RST at once) or `drop`ped.
    #[arg(long, value_enum)]
    pub drain_syns: Option<DrainSyns>,
    /// Congestion control towards clients: `cubic` (RFC 9438, default, as Linux) or
    /// `newreno` (RFC 5681, RFC 6582).
    #[arg(long, value_enum)]
    pub congestion: Option<CongestionArg>,
    /// TCP keep-alive towards clients (RFC 1122 §4.2.3.6): `on` (default) or `off`.
    #[arg(long, value_enum)]
    pub keepalive: Option<OnOff>,
    /// Idle time before the first keep-alive probe. Default 10m.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_idle: Option<String>,
    /// Time between unanswered keep-alive probes. Default 10s.
    #[arg(long, value_name = "DURATION")]
    pub keepalive_interval: Option<String>,
    /// Unanswered probes after which the client is declared dead and reset. Default 6.
    #[arg(long, value_name = "N")]
    pub keepalive_count: Option<u32>,
    /// How long a connection may stay in FIN-WAIT-2 (tcpfront closed, the client has not)
    /// before it is dropped. Default 60s.
    #[arg(long, value_name = "DURATION")]
    pub fin_wait2_timeout: Option<String>,
    /// How long the connect to the upstream may take before the client is reset. It stays
    /// the upstream socket's TCP_USER_TIMEOUT: data unacknowledged by the upstream for longer
    /// also ends the connection. Default 5s.
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// A fixed per-connection send buffer towards the client (bytes; K and M suffixes,
    /// powers of 1024), turning its auto-tuning off. Default: auto-tuned from 256K up to
    /// --send-buffer-max.
    #[arg(long, value_name = "SIZE")]
    pub send_buffer: Option<String>,
    /// A fixed per-connection receive buffer, the most tcpfront advertises in its window,
    /// turning its auto-tuning off. Default: auto-tuned from 256K up to --recv-buffer-max.
    #[arg(long, value_name = "SIZE")]
    pub recv_buffer: Option<String>,
    /// How far a connection's send buffer may grow with its congestion window. Default 16M.
    #[arg(long, value_name = "SIZE")]
    pub send_buffer_max: Option<String>,
    /// How far a connection's receive buffer may grow with the rate its client sends at
    /// (the window scale offered follows it). Default 16M.
    #[arg(long, value_name = "SIZE")]
    pub recv_buffer_max: Option<String>,
    /// What all connections' buffers together may grow into beyond their 256K start sizes;
    /// once spent, buffers stop growing. Default 1G.
    #[arg(long, value_name = "SIZE")]
    pub buffer_memory: Option<String>,
    /// The SYN cookies' secret: a file of at least 32 random bytes, readable by its owner
    /// only, the same on every node of a fleet (so that any node accepts another's cookies).
    /// Default: a random secret for this instance alone.
    #[arg(long, value_name = "FILE")]
    pub cookie_secret: Option<std::path::PathBuf>,
    /// How long each cookie key lives (whole minutes, at least 1m); keys are derived from
    /// the secret per epoch. Default 1h.
    #[arg(long, value_name = "DURATION")]
    pub cookie_rotate: Option<String>,
    /// Announce the VIPs (the exact --listen addresses) while serving: tcpfront creates the
    /// TUN device IFNAME with them as /32 and /128, for a BGP daemon (BIRD's `protocol
    /// direct`) to export; draining or dying, tcpfront closes it and the routes are withdrawn.
    #[arg(long, value_name = "IFNAME")]
    pub announce: Option<String>,
    /// The fleet's nodes: each node's MAC address on the segment they share with the router,
    /// comma-separated, this node's included, in the same order on every node. A segment of a
    /// flow this node does not have (ECMP moved it when a node joined or left) is handed to
    /// the next node of that ring, until the node that has it takes it.
    #[arg(long, value_name = "MAC,MAC,...", value_delimiter = ',')]
    pub fleet_nodes: Vec<String>,
    /// Serve Prometheus metrics on http://ADDR:PORT/metrics (e.g. 127.0.0.1:9464), in the
    /// network namespace tcpfront runs in.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<std::net::SocketAddr>,
    /// A TOML file with any of these settings (keys named like the flags: `listen = [..]`,
    /// `upstream`, `max-conns`, …). Flags override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CongestionArg {
    Cubic,
    Newreno,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum XskModeArg {
    Auto,
    Copy,
    Zerocopy,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainSyns {
    Pass,
    Drop,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidCookie {
    Drop,
    Rst,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    Drv,
    Skb,
}

impl AttachMode {
    pub fn name(self) -> &'static str {
        match self {
            AttachMode::Drv => "drv",
            AttachMode::Skb => "skb",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ConnsArgs {
    /// Interface tcpfront runs on; may be left out when it runs on exactly one.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Only connections in this state (`established`, `time-wait`, `syn-received`, …, as
    /// RFC 9293 names them; `estab` and `syn-recv` as in ss also work).
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub state: Option<String>,
    /// Only connections with this local or remote port.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Print JSON (documented in the README) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Normalises a state name (any case, `_` or `-`, ss abbreviations) to its RFC 9293 name.
pub fn parse_state(s: &str) -> Result<String, String> {
    let norm = s.trim().to_ascii_uppercase().replace('_', "-");
    let name = match norm.as_str() {
        "ESTAB" => "ESTABLISHED".to_string(),
        "SYN-RECV" => "SYN-RECEIVED".to_string(),
        "TIMEWAIT" => "TIME-WAIT".to_string(),
        other => other.to_string(),
    };
    let names = State::ALL.map(State::name);
    if names.contains(&name.as_str()) {
        Ok(name)
    } else {
        Err(format!(
            "unknown state {s:?}; one of: {}",
            names.join(", ").to_ascii_lowercase()
        ))
    }
}

#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    /// Interface tcpfront runs on; may be left out when it runs on exactly one.
    #[arg(long, value_name = "IF")]
    pub iface: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep printing every SECS seconds, with per-second rates, until interrupted.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,
    /// With --watch: stop after this many reports.
    #[arg(long, value_name = "N", requires = "watch")]
    pub count: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum PeerAction {
    /// Attach the pass-through program to IF and pin its link.
    Attach {
        #[arg(long, value_name = "IF")]
        iface: String,
    },
    /// Remove the pinned pass-through program from IF.
    Detach {
        #[arg(long, value_name = "IF")]
        iface: String,
    },
}
