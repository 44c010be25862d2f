//! What travels over the control socket. The JSON field names are stable: `conns --json`,
//! `stats --json` and `status --json` print these structures (see the README).

use std::{collections::BTreeMap, net::SocketAddr};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "request", rename_all = "lowercase")]
pub enum Request {
    Conns,
    Stats,
    Status,
    /// The XDP program's counters, summed over CPUs: the daemon reads its own map, so the
    /// CLI needs no access to the pins (hidden under `ip netns exec`, which remounts /sys).
    Xdp,
}

// One per request on the control socket: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "lowercase")]
pub enum Response {
    Conns(ConnsReply),
    Stats(EngineStats),
    Status(StatusInfo),
    /// Counter name (as in `stats`) → value.
    Xdp {
        counters: BTreeMap<String, u64>,
    },
    Error {
        message: String,
    },
}

/// One connection: an entry of the XDP flow map, the engine's TCB, or (usually) both.
/// Fields the source does not know are `null`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnInfo {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// tcpfront's side.
    pub local: SocketAddr,
    /// The client.
    pub remote: SocketAddr,
    /// RFC 9293 state name; `null` for a flow-map entry the engine has no TCB for.
    pub state: Option<String>,
    /// Milliseconds of TIME-WAIT left.
    pub time_wait_left_ms: Option<u64>,
    pub snd_una: Option<u32>,
    pub snd_nxt: Option<u32>,
    pub rcv_nxt: Option<u32>,
    /// Send window (bytes, scaled) the client offers.
    pub snd_wnd: Option<u64>,
    /// Receive window (bytes) tcpfront offers.
    pub rcv_wnd: Option<u64>,
    /// Shift applied to the client's window fields.
    pub snd_wscale: Option<u8>,
    /// Shift applied to ours.
    pub rcv_wscale: Option<u8>,
    pub mss: Option<u16>,
    pub srtt_us: Option<u64>,
    pub rto_ms: Option<u64>,
    pub cwnd: Option<u64>,
    pub retransmits: Option<u64>,
    /// Payload bytes received from the client.
    pub bytes_in: Option<u64>,
    /// Payload bytes sent to the client (first transmissions).
    pub bytes_out: Option<u64>,
    pub age_ms: Option<u64>,
    /// The upstream the relay connected to (`echo` for the built-in one).
    pub upstream: Option<String>,
    /// The relay's local address towards the upstream.
    pub upstream_local: Option<String>,
    /// The AF_XDP queue serving the connection.
    pub queue: Option<u32>,
    /// The XDP flow map has an entry for it.
    pub in_flow_map: bool,
    /// The handshake was a SYN cookie checked in XDP.
    pub from_cookie: bool,
}

impl ConnInfo {
    /// A row that knows only its addresses.
    pub fn new(local: SocketAddr, remote: SocketAddr) -> Self {
        Self {
            family: if local.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
            local,
            remote,
            state: None,
            time_wait_left_ms: None,
            snd_una: None,
            snd_nxt: None,
            rcv_nxt: None,
            snd_wnd: None,
            rcv_wnd: None,
            snd_wscale: None,
            rcv_wscale: None,
            mss: None,
            srtt_us: None,
            rto_ms: None,
            cwnd: None,
            retransmits: None,
            bytes_in: None,
            bytes_out: None,
            age_ms: None,
            upstream: None,
            upstream_local: None,
            queue: None,
            in_flow_map: false,
            from_cookie: false,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnsReply {
    /// Addresses tcpfront accepts connections on (shown as LISTEN rows).
    pub listeners: Vec<SocketAddr>,
    pub connections: Vec<ConnInfo>,
}

/// The engines' counters, summed over queues.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EngineStats {
    pub opened: u64,
    pub closed: u64,
    pub reset: u64,
    /// New connections refused with RST at --max-conns.
    pub rejected_full: u64,
    /// RSTs sent to segments of no connection.
    pub rst_no_conn: u64,
    /// Segments retransmitted, by connections that are closed or in TIME-WAIT (their
    /// counts are final then).
    pub retransmits: u64,
    /// Retransmission timeouts (counted as `retransmits`): a loss SACK did not repair in
    /// time.
    #[serde(default)]
    pub timeouts: u64,
    /// Tail loss probes sent (counted as `retransmits`): a flight's last segments went
    /// unanswered for two round trips.
    #[serde(default)]
    pub tail_loss_probes: u64,
    /// Window reductions undone because every retransmission of the recovery was reported
    /// a duplicate (DSACK, RFC 3708): reordering, not loss.
    #[serde(default)]
    pub undone_reductions: u64,
    /// Connections whose slow start HyStart ended on a rise of the RTT (RFC 9406) or on an
    /// ACK train; the others left it on a loss.
    #[serde(default)]
    pub hystart_rtt_exits: u64,
    #[serde(default)]
    pub hystart_train_exits: u64,
    /// AF_XDP frames dropped because they did not parse (bad checksum, truncated).
    pub bad_frames: u64,
    /// Frames of a flow that another queue owns, handed to that queue.
    #[serde(default)]
    pub misrouted: u64,
    /// Of those, frames that could not be handed over: dropped.
    #[serde(default)]
    pub misrouted_dropped: u64,
    /// Segments dropped because the AF_XDP TX ring was full.
    #[serde(default)]
    pub tx_full: u64,
    /// Upstream connections that failed (refused, reset); their clients got RST.
    #[serde(default)]
    pub upstream_failed: u64,
    /// Failed connects to a backend (refused, timed out); each is retried on another backend
    /// while one is left.
    #[serde(default)]
    pub connect_failures: u64,
    /// Connections that found every backend down: RST at once.
    #[serde(default)]
    pub no_backend: u64,
    /// TIME-WAIT connections a new SYN of the same 4-tuple retired (RFC 6191).
    #[serde(default)]
    pub reopened: u64,
    /// Frames the kernel dropped on the way to the AF_XDP sockets (XDP_STATISTICS).
    #[serde(default)]
    pub xsk_rx_dropped: u64,
    /// Of those, for a full RX ring (the queue thread fell behind).
    #[serde(default)]
    pub xsk_rx_ring_full: u64,
    /// Times the kernel found a fill ring empty.
    #[serde(default)]
    pub xsk_fill_ring_empty: u64,
    /// Connections in the table now.
    pub connections: u64,
    pub time_wait: u64,
    /// Connections per state name (states with none are left out).
    pub states: BTreeMap<String, u64>,
    /// Per AF_XDP queue: how the connections spread over the queues' threads.
    #[serde(default)]
    pub queues: Vec<QueueCounts>,
}

/// One queue's share of the connections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueCounts {
    pub queue: u32,
    /// The CPU its thread is pinned to, if it is.
    pub cpu: Option<u32>,
    pub opened: u64,
    pub connections: u64,
    pub misrouted: u64,
    /// Heap allocations the queue's thread has made since it started.
    #[serde(default)]
    pub allocations: u64,
}

impl EngineStats {
    pub fn add(&mut self, o: &EngineStats) {
        self.opened += o.opened;
        self.closed += o.closed;
        self.reset += o.reset;
        self.rejected_full += o.rejected_full;
        self.rst_no_conn += o.rst_no_conn;
        self.retransmits += o.retransmits;
        self.timeouts += o.timeouts;
        self.tail_loss_probes += o.tail_loss_probes;
        self.undone_reductions += o.undone_reductions;
        self.hystart_rtt_exits += o.hystart_rtt_exits;
        self.hystart_train_exits += o.hystart_train_exits;
        self.bad_frames += o.bad_frames;
        self.misrouted += o.misrouted;
        self.misrouted_dropped += o.misrouted_dropped;
        self.tx_full += o.tx_full;
        self.upstream_failed += o.upstream_failed;
        self.connect_failures += o.connect_failures;
        self.no_backend += o.no_backend;
        self.reopened += o.reopened;
        self.xsk_rx_dropped += o.xsk_rx_dropped;
        self.xsk_rx_ring_full += o.xsk_rx_ring_full;
        self.xsk_fill_ring_empty += o.xsk_fill_ring_empty;
        self.connections += o.connections;
        self.time_wait += o.time_wait;
        for (k, v) in &o.states {
            *self.states.entry(k.clone()).or_default() += v;
        }
        self.queues.extend(o.queues.iter().cloned());
        self.queues.sort_by_key(|q| q.queue);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusInfo {
    pub iface: String,
    pub pid: u32,
    /// The network namespace given with --netns, if any.
    pub netns: Option<String>,
    /// XDP attach mode: `drv` or `skb`.
    pub mode: String,
    /// AF_XDP binding per queue: `copy` or `zerocopy` (empty with --xdp-only).
    pub xsk_modes: Vec<String>,
    /// Seconds since the Unix epoch when the program was attached.
    pub since_unix: u64,
    pub uptime_secs: u64,
    pub listen: Vec<SocketAddr>,
    /// `host:port`, `echo`, or null (counting and scrubbing only).
    pub upstream: Option<String>,
    pub syn_cookies: bool,
    pub invalid_cookie: String,
    pub max_conns: u64,
    pub msl_ms: u64,
    pub drain_timeout_ms: u64,
    /// `serving` or `draining`.
    pub phase: String,
    pub connections: u64,
    pub cookie_secret: CookieSecret,
    /// How backends are chosen (`round-robin`, `least-conn`); null for `--echo`.
    #[serde(default)]
    pub balance: Option<String>,
    /// `v1`, `v2` or null.
    #[serde(default)]
    pub proxy_protocol: Option<String>,
    /// Every backend of the pool: health, connections, last check.
    #[serde(default)]
    pub backends: Vec<crate::backends::BackendStatus>,
    /// The TUN device the VIPs are announced on (`--announce`), and the VIPs on it now
    /// (none once draining: withdrawn).
    #[serde(default)]
    pub announce: Option<String>,
    #[serde(default)]
    pub announced: Vec<std::net::IpAddr>,
    /// This node's place in its fleet's hand-off ring (`--fleet-nodes`), if in one.
    #[serde(default)]
    pub fleet: Option<String>,
}

/// The key tcpfront's SYN cookies are signed with (never the key material itself).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CookieSecret {
    /// Where the secret comes from: `file PATH` (shared by a fleet) or `random (this instance
    /// only)`. Never the key material.
    pub source: String,
    /// Seconds since the current epoch's key took over.
    pub age_secs: u64,
    /// The current epoch (wall-clock minutes / epoch length): nodes that agree on it and on
    /// the secret accept each other's cookies.
    #[serde(default)]
    pub epoch: u64,
    /// Epoch length (`--cookie-rotate`).
    #[serde(default)]
    pub rotate_secs: u64,
    /// Seconds until the next epoch's key takes over.
    #[serde(default)]
    pub next_rotation_secs: u64,
    /// A cookie is accepted in the wall-clock minute it was minted and the next one: between
    /// 60 and 120 s after its SYN-ACK.
    pub validity_secs: u64,
}
