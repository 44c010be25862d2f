//! One AF_XDP queue's loop: frames from the XDP program → the engine → frames back out, and
//! each connection's bytes to and from its relay.

mod snapshot;

use std::{
    collections::{HashMap, VecDeque},
    net::SocketAddr,
    os::fd::{AsRawFd as _, RawFd},
    path::PathBuf,
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use aya::maps::{HashMap as BpfHashMap, Map, MapData, XskMap};
use tcp_common::maps::{FLOW_SACK, FLOW_TIMESTAMPS, FLOW_WSCALE, FlowKey, FlowValue};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, oneshot, watch},
};

pub use self::snapshot::QueueSnapshot;
use crate::{
    bpf::flows::{FlowFilter, flow_key},
    engine::{ConnKey, CookieHandshake, Engine, EngineConfig, Event, Instant, State},
    relay::{self, RelayCmd, RelayHandle, Upstream},
    wire::{ethernet::EthernetRepr, frame::TcpFrame, ip::IpRepr},
    xsk::{XskMode, XskSocket},
};

/// UMEM frames per queue (4 KiB each): half stock the fill ring, half wait to transmit.
/// Deep rings absorb bursts while the loop is busy; a full RX ring drops frames in the kernel.
const UMEM_FRAMES: u32 = 16384;

/// Everything one queue's loop needs.
pub struct QueueConfig {
    pub iface: String,
    pub queue: u32,
    /// None: zero-copy if the driver can, else copy.
    pub mode: Option<XskMode>,
    pub engine: EngineConfig,
    pub listen: Vec<SocketAddr>,
    pub upstream: Upstream,
    pub flows_pin: PathBuf,
    pub filter_pin: PathBuf,
    /// The flow filter's hash seed (`Config::filter_seed`).
    pub filter_seed: u64,
    pub xsks_pin: PathBuf,
}

/// The link-layer addressing of a connection, learnt from its frames.
#[derive(Clone, Copy)]
struct L2 {
    ours: [u8; 6],
    peer: [u8; 6],
    vlans: [Option<(u16, u16)>; 2],
}

struct Conn {
    relay: RelayHandle,
    /// Free send-buffer space already handed to the relay as permits.
    granted: usize,
    /// Upstream bytes the engine's send buffer could not take yet.
    pending: VecDeque<u8>,
    /// The relay's upstream connection, once made: (upstream, our local address).
    upstream: Option<(String, Option<String>)>,
}

/// Where the whole instance is in its life: a shutdown first drains, then stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// No new connections; every open one was sent FIN after its pending data.
    Draining,
    /// Reset what is left and end the loop.
    Stopping,
}

/// Questions the control socket asks a queue's loop, which alone owns its engine.
pub enum DatapathQuery {
    Snapshot(oneshot::Sender<QueueSnapshot>),
}

struct RawFdRef(RawFd);
impl std::os::fd::AsRawFd for RawFdRef {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

fn handshake(v: &FlowValue) -> CookieHandshake {
    CookieHandshake {
        client_isn: v.client_isn,
        server_isn: v.server_isn,
        mss: v.mss,
        wscale: (v.flags & FLOW_WSCALE != 0).then_some((v.client_wscale, v.server_wscale)),
        sack: v.flags & FLOW_SACK != 0,
        timestamps: (v.flags & FLOW_TIMESTAMPS != 0).then_some((v.ts_recent, v.ts_offset)),
    }
}

pub struct Datapath {
    cfg: QueueConfig,
    xsk: XskSocket,
    flows: BpfHashMap<MapData, FlowKey, FlowValue>,
    filter: FlowFilter,
    engine: Engine,
    conns: HashMap<ConnKey, Conn>,
    l2: HashMap<ConnKey, L2>,
    cmd_tx: mpsc::UnboundedSender<RelayCmd>,
    epoch: std::time::Instant,
    draining: bool,
    /// Frames that did not parse (bad checksum, truncated): dropped and counted.
    pub bad_frames: u64,
}

impl Datapath {
    /// Opens the AF_XDP socket of the queue and registers it in the XSKMAP.
    pub fn open(cfg: QueueConfig, cmd_tx: mpsc::UnboundedSender<RelayCmd>) -> anyhow::Result<Self> {
        let open = |mode| {
            XskSocket::open(&cfg.iface, cfg.queue, UMEM_FRAMES, mode).with_context(|| {
                format!(
                    "AF_XDP socket for {} queue {} ({mode:?} mode)",
                    cfg.iface, cfg.queue
                )
            })
        };
        let xsk = match cfg.mode {
            Some(mode) => open(mode)?,
            None => match open(XskMode::ZeroCopy) {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!("zero-copy AF_XDP unavailable ({e:#}); using copy mode");
                    open(XskMode::Copy)?
                }
            },
        };
        tracing::info!(
            "{} queue {}: AF_XDP in {:?} mode",
            cfg.iface,
            cfg.queue,
            xsk.mode()
        );
        let xsks = MapData::from_pin(&cfg.xsks_pin).context("opening XSKS")?;
        let mut xsks: XskMap<MapData> = XskMap::try_from(Map::XskMap(xsks))?;
        xsks.set(cfg.queue, xsk.as_raw_fd(), 0)
            .with_context(|| format!("registering queue {} in XSKS", cfg.queue))?;
        let flows = MapData::from_pin(&cfg.flows_pin).context("opening FLOWS")?;
        let flows = BpfHashMap::try_from(Map::LruHashMap(flows))?;
        let filter = FlowFilter::open(&cfg.filter_pin, cfg.filter_seed)?;
        let mut engine = Engine::new(cfg.engine.clone());
        for l in &cfg.listen {
            engine.listen(*l);
        }
        Ok(Self {
            cfg,
            xsk,
            flows,
            filter,
            engine,
            conns: HashMap::new(),
            l2: HashMap::new(),
            cmd_tx,
            epoch: std::time::Instant::now(),
            draining: false,
            bad_frames: 0,
        })
    }

    fn now(&self) -> Instant {
        Instant(self.epoch.elapsed().as_micros() as u64)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn xsk_mode(&self) -> XskMode {
        self.xsk.mode()
    }

    /// Serves until `phase` says [`Phase::Stopping`].
    pub async fn run(
        mut self,
        mut cmds: mpsc::UnboundedReceiver<RelayCmd>,
        mut queries: mpsc::Receiver<DatapathQuery>,
        mut phase: watch::Receiver<Phase>,
    ) -> anyhow::Result<()> {
        // SAFETY: the fd belongs to self.xsk, which outlives this AsyncFd (dropped first, at
        // the end of this function).
        let fd = unsafe {
            AsyncFd::register_with_interest(
                RawFdRef(self.xsk.as_raw_fd()),
                tokio::io::Interest::READABLE,
            )
        }
        .map_err(|e| anyhow!("polling the AF_XDP socket: {e}"))?;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                r = fd.readable() => {
                    let mut guard = r.context("AF_XDP readiness")?;
                    guard.clear_ready();
                }
                Some(cmd) = cmds.recv() => {
                    self.on_cmd(cmd);
                    while let Ok(cmd) = cmds.try_recv() {
                        self.on_cmd(cmd);
                    }
                }
                Some(q) = queries.recv() => match q {
                    DatapathQuery::Snapshot(reply) => {
                        let _ = reply.send(self.snapshot());
                    }
                },
                _ = tick.tick() => {}
                r = phase.changed() => {
                    let now_phase = if r.is_ok() { *phase.borrow_and_update() } else { Phase::Stopping };
                    match now_phase {
                        Phase::Serving => {}
                        Phase::Draining => self.drain(),
                        Phase::Stopping => {
                            self.stop();
                            break;
                        }
                    }
                }
            }
            self.receive();
            let now = self.now();
            self.engine.poll_timers(now);
            self.pump();
            self.handle_events();
            self.transmit();
        }
        drop(fd);
        Ok(())
    }

    fn receive(&mut self) {
        // Drain the ring (bounded, so timers and the relays still get their turn): readiness
        // is edge-triggered, and frames left behind would wait for the next tick.
        let mut frames = Vec::new();
        for _ in 0..16 {
            if self.xsk.recv(256, |f| frames.push(f.to_vec())) == 0 {
                break;
            }
        }
        let now = self.now();
        for f in frames {
            let frame = match TcpFrame::parse(&f) {
                Ok(fr) => fr,
                Err(e) => {
                    self.bad_frames += 1;
                    tracing::debug!("dropped an AF_XDP frame: {e}");
                    continue;
                }
            };
            let local = SocketAddr::new(frame.ip.dst, frame.tcp.dst_port);
            let remote = SocketAddr::new(frame.ip.src, frame.tcp.src_port);
            let key = (local, remote);
            self.l2.insert(
                key,
                L2 {
                    ours: frame.eth.dst,
                    peer: frame.eth.src,
                    vlans: frame.eth.vlans,
                },
            );
            if self.engine.get(&key).is_none()
                && let Ok(v) = self.flows.get(&flow_key(local, remote), 0)
            {
                if self.draining {
                    // Too late for a new connection: forget the flow, and the engine
                    // answers the ACK with RST as it matches no connection.
                    self.forget_flow(local, remote);
                } else {
                    self.engine
                        .accept_cookie(local, remote, &handshake(&v), &frame.tcp, now);
                    continue;
                }
            }
            self.engine.on_segment(local, remote, &frame.tcp, now);
        }
    }

    /// Deletes the connection's XDP flow entry, and counts it out of the flow filter.
    fn forget_flow(&mut self, local: SocketAddr, remote: SocketAddr) {
        let key = flow_key(local, remote);
        if self.flows.remove(&key).is_ok() {
            self.filter.release(&key);
        }
    }

    fn on_cmd(&mut self, cmd: RelayCmd) {
        let now = self.now();
        match cmd {
            RelayCmd::Connected { key, local, peer } => {
                if let Some(conn) = self.conns.get_mut(&key) {
                    conn.upstream = Some((peer, local));
                }
            }
            RelayCmd::Data(key, data) => {
                let Some(conn) = self.conns.get_mut(&key) else {
                    return;
                };
                if self.draining {
                    // We already sent FIN: nothing more can go to the client.
                    return;
                }
                conn.granted = conn.granted.saturating_sub(data.len());
                conn.pending.extend(data);
            }
            RelayCmd::Fin(key) => {
                if self.draining {
                    return;
                }
                if let Some(conn) = self.conns.get_mut(&key) {
                    // Flush what is pending first; the FIN follows the data.
                    let pending: Vec<u8> = conn.pending.drain(..).collect();
                    self.engine.with_conn(&key, now, |t| {
                        t.send(&pending, now);
                        t.close(now);
                    });
                }
            }
            RelayCmd::Reset(key) => {
                self.engine.with_conn(&key, now, |t| t.abort(now));
            }
        }
    }

    /// Moves bytes between the engine and the relays, within both sides' room.
    fn pump(&mut self) {
        let now = self.now();
        let keys: Vec<ConnKey> = self.conns.keys().copied().collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(&key) else {
                continue;
            };
            let engine = &mut self.engine;
            engine.with_conn(&key, now, |t| {
                // upstream → client
                if !conn.pending.is_empty() {
                    let chunk: Vec<u8> = conn.pending.iter().copied().take(64 * 1024).collect();
                    let n = t.send(&chunk, now);
                    conn.pending.drain(..n);
                }
                // Grant the relay what the send buffer has free beyond what it holds.
                let free = t.send_capacity().saturating_sub(conn.pending.len());
                if free > conn.granted {
                    conn.relay.permits.add_permits(free - conn.granted);
                    conn.granted = free;
                }
                // client → upstream, while the relay's queue has room.
                if let Some(tx) = &conn.relay.to_upstream {
                    while t.recv_available() > 0 {
                        let Ok(permit) = tx.try_reserve() else { break };
                        let mut buf = vec![0u8; t.recv_available().min(64 * 1024)];
                        let n = t.recv(&mut buf, now);
                        buf.truncate(n);
                        permit.send(buf);
                    }
                    if t.recv_finished() {
                        // Client FIN: close the channel; the relay shuts the upstream's write side.
                        conn.relay.to_upstream = None;
                    }
                }
            });
        }
    }

    fn handle_events(&mut self) {
        for (key, event) in self.engine.take_events() {
            match event {
                Event::Connected => {
                    let relay = relay::spawn(
                        key,
                        self.cfg.upstream.clone(),
                        self.cfg.engine.send_buffer,
                        self.cmd_tx.clone(),
                    );
                    // The semaphore starts full: that grant is the whole send buffer.
                    let granted = self.cfg.engine.send_buffer;
                    self.conns.insert(
                        key,
                        Conn {
                            relay,
                            granted,
                            pending: VecDeque::new(),
                            upstream: None,
                        },
                    );
                }
                Event::Reset(why) => {
                    tracing::debug!("{} reset: {why:?}", key.1);
                    if let Some(c) = self.conns.remove(&key) {
                        c.relay.abort();
                    }
                }
                Event::Closed => {
                    if let Some(c) = self.conns.remove(&key) {
                        if self.draining {
                            // The upstream may still be sending what nobody will read.
                            c.relay.abort();
                        } else {
                            // Graceful end: the relay has finished both directions already.
                            drop(c.relay.to_upstream);
                        }
                    }
                    self.forget_flow(key.0, key.1);
                }
                Event::Readable | Event::Writable | Event::PeerClosed => {}
            }
        }
    }

    /// Graceful shutdown, first step: accept nothing new and close every connection (FIN
    /// after what is already queued for the client).
    fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.engine.stop_listening();
        let now = self.now();
        let keys: Vec<ConnKey> = self.engine.connections().map(|(k, _)| *k).collect();
        for key in keys {
            let pending: Vec<u8> = self
                .conns
                .get_mut(&key)
                .map(|c| c.pending.drain(..).collect())
                .unwrap_or_default();
            self.engine.with_conn(&key, now, |t| {
                t.send(&pending, now);
                t.close(now);
            });
        }
        self.handle_events();
        self.transmit();
        tracing::info!(
            "{} queue {}: draining {} connection(s)",
            self.cfg.iface,
            self.cfg.queue,
            self.engine.len()
        );
    }

    /// Graceful shutdown, last step: reset what did not close in time.
    fn stop(&mut self) {
        self.drain();
        let now = self.now();
        let keys: Vec<ConnKey> = self.engine.connections().map(|(k, _)| *k).collect();
        let mut reset = 0;
        for key in keys {
            if self.engine.with_conn(&key, now, |t| {
                let open = t.state() != State::TimeWait;
                t.abort(now);
                open
            }) == Some(true)
            {
                reset += 1;
            }
        }
        if reset > 0 {
            tracing::warn!(
                "{} queue {}: reset {reset} connection(s) that had not closed",
                self.cfg.iface,
                self.cfg.queue
            );
        }
        self.handle_events();
        self.transmit();
        for (_, c) in self.conns.drain() {
            c.relay.abort();
        }
    }

    /// Connections that still need time to close (TIME-WAIT does not count: the client is
    /// done).
    pub fn open_connections(&self) -> usize {
        self.engine.len() - self.engine.count_in(State::TimeWait)
    }

    fn transmit(&mut self) {
        for out in self.engine.take_outgoing() {
            let key = (out.local, out.remote);
            let Some(l2) = self.l2.get(&key).copied() else {
                continue;
            };
            let frame = TcpFrame {
                eth: EthernetRepr {
                    dst: l2.peer,
                    src: l2.ours,
                    vlans: l2.vlans,
                    ethertype: 0,
                },
                ip: IpRepr::new(out.local.ip(), out.remote.ip()),
                tcp: out.seg,
            }
            .emit();
            match self.xsk.send(&frame) {
                Ok(true) => {}
                Ok(false) => tracing::debug!("AF_XDP TX ring full; a segment was dropped"),
                Err(e) => tracing::warn!("AF_XDP send: {e:#}"),
            }
            if self.engine.get(&key).is_none() {
                self.l2.remove(&key);
            }
        }
    }
}
