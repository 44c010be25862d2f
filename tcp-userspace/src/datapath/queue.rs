//! One AF_XDP queue's event loop, in its own thread: frames from the XDP program → the engine
//! → frames back out, and each connection's bytes to and from its upstream.
//!
//! Event-driven: the thread sleeps in one `poll` on the AF_XDP socket, the upstream sockets
//! and a waker for commands, until I/O or the engine's next timer deadline. Only connections
//! with work are visited (the ready list: engine events, upstream readiness); an idle
//! connection costs nothing until its own timer is due, and an idle queue sleeps.
//!
//! Batched and allocation-free in steady state: received frames are parsed where they lie
//! in the UMEM, segments are written straight into UMEM TX frames, the TX ring is kicked once
//! per batch, and the scratch vectors keep their capacity.

use std::{
    net::SocketAddr,
    sync::Arc,
    sync::mpsc::{Receiver, TryRecvError},
    time::Duration,
};

use anyhow::Context as _;
use aya::maps::MapData;
use mio::{Events, Interest, Poll, Token, net::TcpStream};
use tcp_common::{
    cookie::CookieKeys,
    maps::{FLOW_SACK, FLOW_TIMESTAMPS, FLOW_WSCALE, FlowKey, FlowValue},
};

use super::{
    Phase, QueueCmd, QueueConfig,
    relay::{Conn, Outcome, UpstreamConn},
};
use crate::{
    backends::Pool,
    bpf::{
        cookie::{coarse_now_ns, mint},
        flows::{FlowFilter, flow_key},
    },
    engine::{ConnId, CookieHandshake, Engine, Event, Instant, State},
    wire::{
        ethernet::EthernetRepr,
        frame::{self, TcpFrame},
        ip::IpRepr,
        tcp::{ACK, RST, SYN, TcpOptions, TcpRepr},
    },
    xsk::{UmemView, XdpDesc, XskSocket},
};

/// Frames taken off the RX ring per turn of the loop: enough to amortise the system calls,
/// few enough that timers and upstreams get their turn under a flood.
const RX_BATCH: u32 = 256;
/// How soon to retry frames the device had no room for.
const TX_RETRY: Duration = Duration::from_millis(1);
pub(super) const XSK: Token = Token(usize::MAX - 1);
pub(super) const WAKER: Token = Token(usize::MAX - 2);

/// What a queue counts besides the engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueStats {
    /// AF_XDP frames that did not parse (bad checksum, truncated): dropped.
    pub bad_frames: u64,
    /// Frames of a flow another queue owns (RSS does that when its indirection table
    /// changes; a veth sender when it changes TX queue, as a new socket reusing a port in
    /// TIME-WAIT does): handed to the owning queue's thread.
    pub misrouted: u64,
    /// Of those, frames that could not be handed over (the owner had gone, or the frame
    /// had been handed over once already): dropped, never answered with RST.
    pub misrouted_dropped: u64,
    /// Segments dropped because the TX ring was full.
    pub tx_full: u64,
    /// Connections whose upstream failed (every backend tried refused or timed out, or the
    /// upstream reset or vanished later): the client got RST.
    pub upstream_failed: u64,
    /// Connects to a backend that failed, retried on another while one is left.
    pub connect_failures: u64,
    /// Connections that found every backend down: RST at once.
    pub no_backend: u64,
    /// TIME-WAIT connections a new SYN of the same 4-tuple retired (RFC 6191).
    pub reopened: u64,
}

/// Where a segment of no connection of this queue belongs.
enum NewFlow {
    /// Here: the connection it opened or belongs to, if any.
    Here(Option<ConnId>),
    /// To the flow of another queue (by number).
    OwnedBy(u32),
}

/// The XDP program's maps a queue reads and writes.
pub(super) struct Maps {
    pub flows: aya::maps::HashMap<MapData, FlowKey, FlowValue>,
    pub filter: FlowFilter,
    pub cookie: aya::maps::Array<MapData, CookieKeys>,
}

pub(super) struct Queue {
    pub cfg: QueueConfig,
    xsk: XskSocket,
    umem: UmemView,
    maps: Maps,
    pub engine: Engine,
    /// Per engine slot: the generation and the relay state of its connection.
    conns: Vec<Option<(u32, Conn)>>,
    ready: super::ready::ReadySet,
    /// Scratch: this turn's ready connections.
    ready_batch: Vec<ConnId>,
    /// The backends; None for `--echo`. Replaced as a whole on reload.
    pool: Option<Arc<Pool>>,
    poll: Poll,
    cmds: Receiver<QueueCmd>,
    /// Every queue by number (see `QueueCmd::Peers`).
    peers: Vec<super::QueueControl>,
    /// The cookie keys and when they were read (see `cookie_keys`).
    cookie_cache: Option<(Instant, CookieKeys)>,
    epoch: std::time::Instant,
    pub draining: bool,
    /// Scratch, kept between turns so that the loop does not allocate.
    rx: Vec<XdpDesc>,
    events: Vec<(ConnId, Event)>,
    pub stats: QueueStats,
}

impl Queue {
    pub(super) fn new(
        cfg: QueueConfig,
        maps: Maps,
        xsk: XskSocket,
        engine: Engine,
        pool: Option<Arc<Pool>>,
        poll: Poll,
        cmds: Receiver<QueueCmd>,
    ) -> Self {
        let umem = xsk.umem();
        Self {
            cfg,
            xsk,
            umem,
            maps,
            engine,
            conns: Vec::new(),
            ready: super::ready::ReadySet::default(),
            ready_batch: Vec::new(),
            pool,
            poll,
            cmds,
            peers: Vec::new(),
            cookie_cache: None,
            epoch: std::time::Instant::now(),
            draining: false,
            rx: Vec::with_capacity(RX_BATCH as usize),
            events: Vec::new(),
            stats: QueueStats::default(),
        }
    }

    pub(super) fn xsk_statistics(&self) -> crate::xsk::XskStats {
        self.xsk.statistics()
    }

    pub(super) fn now(&self) -> Instant {
        Instant(self.epoch.elapsed().as_micros() as u64)
    }

    /// Serves until told to stop.
    pub(super) fn run(mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut rx_pending = true;
        let mut tx_waiting = false;
        loop {
            let now = self.now();
            let mut timeout = if rx_pending || !self.ready.is_empty() {
                Some(Duration::ZERO)
            } else {
                self.engine.next_timer().map(|t| t.saturating_since(now))
            };
            if tx_waiting {
                // The device was full: try again shortly, whatever else happens.
                timeout = Some(timeout.map_or(TX_RETRY, |t| t.min(TX_RETRY)));
            }
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != std::io::ErrorKind::Interrupted
            {
                return Err(e).context("polling");
            }
            let mut commands = false;
            for ev in events.iter() {
                match ev.token() {
                    XSK => rx_pending = true,
                    WAKER => commands = true,
                    Token(t) => self.on_upstream_event(
                        ConnId::from_u64(t as u64),
                        ev.is_readable() || ev.is_read_closed() || ev.is_error(),
                        ev.is_writable() || ev.is_write_closed() || ev.is_error(),
                    ),
                }
            }
            if commands && self.on_commands() {
                return Ok(());
            }
            if rx_pending {
                rx_pending = self.receive();
            }
            let now = self.now();
            self.engine.poll_timers(now);
            self.flush(None);
            self.run_ready();
            tx_waiting = self.xsk.kick();
        }
    }

    /// Commands from the control socket and the shutdown sequence; true: stop now.
    fn on_commands(&mut self) -> bool {
        loop {
            match self.cmds.try_recv() {
                Ok(QueueCmd::Snapshot(reply)) => {
                    let _ = reply.send(self.snapshot());
                }
                Ok(QueueCmd::Phase(Phase::Serving)) => {}
                Ok(QueueCmd::Peers(p)) => self.peers = p,
                Ok(QueueCmd::Frame(f)) => self.on_frame(&f, true),
                Ok(QueueCmd::Reconfigure(r)) => self.reconfigure(*r),
                Ok(QueueCmd::Phase(Phase::Draining)) => self.drain(),
                Ok(QueueCmd::Phase(Phase::Stopping)) | Err(TryRecvError::Disconnected) => {
                    self.stop();
                    return true;
                }
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    /// A reload: new connections get the new settings, listeners and pool; open ones keep
    /// their own (their TCB's settings, their backend).
    fn reconfigure(&mut self, r: super::Reconfig) {
        self.engine.set_config(r.engine.clone());
        if !self.draining {
            self.engine.set_listeners(&r.listen);
        }
        self.cfg.engine = r.engine;
        self.cfg.listen = r.listen;
        self.cfg.connect_timeout = r.connect_timeout;
        self.pool = r.pool;
        tracing::debug!("queue {}: reconfigured", self.cfg.queue);
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        match self.conns.get_mut(id.slot as usize) {
            Some(Some((g, c))) if *g == id.generation => Some(c),
            _ => None,
        }
    }

    pub(super) fn conn(&self, id: ConnId) -> Option<&Conn> {
        match self.conns.get(id.slot as usize) {
            Some(Some((g, c))) if *g == id.generation => Some(c),
            _ => None,
        }
    }

    fn mark_ready(&mut self, id: ConnId) {
        if self.conn(id).is_some() {
            self.ready.mark(id);
        }
    }

    /// One batch from the RX ring, parsed in place; true if the ring had more.
    fn receive(&mut self) -> bool {
        let n = self.xsk.receive(RX_BATCH, &mut self.rx);
        self.engine.begin_batch();
        for i in 0..n {
            let desc = self.rx[i];
            // SAFETY: the frame came from this socket's RX ring and goes back to the fill
            // ring only after this loop.
            let frame = unsafe { self.umem.frame(&desc) };
            self.on_frame(frame, false);
        }
        let now = self.now();
        self.engine.end_batch(now);
        self.flush(None);
        let rx = std::mem::take(&mut self.rx);
        self.xsk.refill(&rx);
        self.rx = rx;
        n == RX_BATCH as usize
    }

    /// One frame; `handed_over` when another queue passed it on (it is never passed twice).
    fn on_frame(&mut self, frame: &[u8], handed_over: bool) {
        let f = match TcpFrame::parse_in_place(frame) {
            Ok(f) => f,
            Err(e) => {
                self.stats.bad_frames += 1;
                tracing::debug!("dropped an AF_XDP frame: {e}");
                return;
            }
        };
        let local = SocketAddr::new(f.ip.dst, f.tcp.dst_port);
        let remote = SocketAddr::new(f.ip.src, f.tcp.src_port);
        // Replies go back the way the frame came.
        let l2 = EthernetRepr {
            dst: f.eth.src,
            src: f.eth.dst,
            vlans: f.eth.vlans,
            ethertype: 0,
        };
        let now = self.now();
        let id = match self.engine.id_of(&(local, remote)) {
            Some(id) => {
                if self
                    .engine
                    .tcb(id)
                    .is_some_and(|t| t.accepts_new_syn(&f.tcp))
                {
                    self.reopen(id, &f.tcp, &l2, now);
                    return;
                }
                self.engine.on_segment(local, remote, &f.tcp, now)
            }
            None => match self.new_flow(local, remote, &f.tcp, &l2, now) {
                NewFlow::Here(id) => id,
                NewFlow::OwnedBy(owner) => {
                    self.stats.misrouted += 1;
                    let peer = self.peers.get(owner as usize);
                    if handed_over || peer.is_none_or(|p| p.forward(frame).is_err()) {
                        self.stats.misrouted_dropped += 1;
                    }
                    return;
                }
            },
        };
        if let Some(id) = id
            && self.conn(id).is_none()
        {
            let slot = id.slot as usize;
            if self.conns.len() <= slot {
                self.conns.resize_with(slot + 1, || None);
            }
            self.conns[slot] = Some((
                id.generation,
                Conn::new((local, remote), l2, UpstreamConn::Closed),
            ));
        }
        self.flush(Some(&l2));
    }

    /// A segment of no connection: the first of a flow XDP opened with a cookie (its
    /// handshake is in `FLOWS`), a SYN when cookies are off, or a stray (answered with RST).
    fn new_flow(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &crate::wire::tcp::TcpRepr<&[u8]>,
        l2: &EthernetRepr,
        now: Instant,
    ) -> NewFlow {
        let fk = flow_key(local, remote);
        let is_syn = seg.flags & (SYN | ACK | RST) == SYN;
        let Ok(mut v) = self.maps.flows.get(&fk, 0) else {
            // A SYN XDP sent here for a flow that has since closed.
            if self.cfg.syn_cookies && is_syn && !self.draining {
                self.answer_with_cookie(local, remote, seg, l2);
                return NewFlow::Here(None);
            }
            return NewFlow::Here(self.engine.on_segment(local, remote, seg, now));
        };
        let mine = self.cfg.queue as u8 + 1;
        if v.state != 0 && v.state != mine {
            return NewFlow::OwnedBy(u32::from(v.state - 1));
        }
        if is_syn {
            // A flow with no connection (its handshake done in XDP, its first segment not
            // here yet) and a new SYN: the client started over. Answer it as XDP would.
            if self.cfg.syn_cookies && !self.draining {
                self.answer_with_cookie(local, remote, seg, l2);
            }
            return NewFlow::Here(None);
        }
        if self.draining {
            // Too late for a new connection: forget the flow, and the engine answers the ACK
            // with RST as it matches no connection.
            self.forget_flow(local, remote);
            return NewFlow::Here(self.engine.on_segment(local, remote, seg, now));
        }
        if v.state == 0 {
            // This queue owns the flow now (see `QueueStats::misrouted`); XDP marks the
            // flows it makes itself.
            v.state = mine;
            let _ = self.maps.flows.insert(fk, v, 0);
        }
        NewFlow::Here(
            self.engine
                .accept_cookie(local, remote, &handshake(&v), seg, now),
        )
    }

    /// The XDP program's cookie keys, read from the map at most once a second (they change
    /// by the minute; a reused port would otherwise cost a system call per SYN).
    fn cookie_keys(&mut self) -> Option<CookieKeys> {
        let now = self.now();
        match self.cookie_cache {
            Some((at, keys)) if now.saturating_since(at) < Duration::from_secs(1) => Some(keys),
            _ => {
                let keys = self.maps.cookie.get(&0, 0).ok()?;
                self.cookie_cache = Some((now, keys));
                Some(keys)
            }
        }
    }

    /// Deletes the connection's XDP flow entry, and counts it out of the flow filter.
    fn forget_flow(&mut self, local: SocketAddr, remote: SocketAddr) {
        let key = flow_key(local, remote);
        if self.maps.flows.remove(&key).is_ok() {
            self.maps.filter.release(&key);
        }
    }

    /// A SYN for a connection in TIME-WAIT that may open a new one (RFC 6191; clients reuse
    /// ports quickly, NAT'ed ones all the more). The old connection goes, and the SYN is
    /// answered as XDP answers a SYN: with a cookie SYN-ACK whose ACK XDP then turns into a
    /// fresh flow (or, cookies off, by the engine's own handshake).
    fn reopen(&mut self, id: ConnId, syn: &TcpRepr<&[u8]>, l2: &EthernetRepr, now: Instant) {
        let Some((local, remote)) = self.engine.retire(id) else {
            return;
        };
        if let Some(slot) = self.conns.get_mut(id.slot as usize)
            && let Some((_, conn)) = slot.take()
        {
            // Closing the socket takes it out of the epoll set (it is never duplicated):
            // no deregistration, one system call fewer per connection.
            drop(conn);
        }
        self.forget_flow(local, remote);
        self.stats.reopened += 1;
        if !self.cfg.syn_cookies {
            if let Some(id) = self.engine.on_segment(local, remote, syn, now) {
                let slot = id.slot as usize;
                if self.conns.len() <= slot {
                    self.conns.resize_with(slot + 1, || None);
                }
                self.conns[slot] = Some((
                    id.generation,
                    Conn::new((local, remote), *l2, UpstreamConn::Closed),
                ));
            }
            self.flush(Some(l2));
            return;
        }
        self.answer_with_cookie(local, remote, syn, l2);
    }

    /// Answers a SYN that reached user space as the XDP program would have: with a cookie
    /// SYN-ACK minted with its keys, keeping no state, so that the ACK makes a flow there.
    /// (The engine's own handshake would be lost: XDP drops the ACK of a SYN-ACK whose
    /// sequence number is no cookie.)
    fn answer_with_cookie(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        syn: &TcpRepr<&[u8]>,
        l2: &EthernetRepr,
    ) {
        let Some(keys) = self.cookie_keys() else {
            return;
        };
        let o = &syn.options;
        let Some((cookie, mss)) = mint(
            &keys,
            remote,
            local,
            syn.seq,
            o.mss.unwrap_or(0),
            o.wscale,
            o.sack_permitted,
        ) else {
            return;
        };
        let reply = TcpRepr {
            src_port: local.port(),
            dst_port: remote.port(),
            seq: cookie,
            ack: syn.seq.wrapping_add(1),
            flags: SYN | ACK,
            window: self.cfg.syn_ack_window,
            urgent: 0,
            options: TcpOptions {
                mss: Some(mss),
                // RFC 7323 §2.2: scaling only to a client that offered it.
                wscale: o.wscale.map(|_| self.cfg.wscale),
                sack_permitted: o.sack_permitted,
                // The XDP program's TSval clock (units of 2^20 ns).
                timestamps: o
                    .timestamps
                    .map(|(tsval, _)| ((coarse_now_ns() >> 20) as u32, tsval)),
                sack: [None; 4],
            },
            payload: (),
        };
        let ip = IpRepr::new(local.ip(), remote.ip());
        if !self
            .xsk
            .transmit(|buf| frame::emit_into(l2, &ip, &reply, &[], buf))
        {
            self.stats.tx_full += 1;
        }
    }

    /// Sends what the engine produced (straight into UMEM frames), then acts on its events.
    /// `reply_l2` addresses segments of no connection (a RST to the frame just handled).
    fn flush(&mut self, reply_l2: Option<&EthernetRepr>) {
        let Self {
            engine,
            conns,
            xsk,
            stats,
            ..
        } = self;
        engine.drain_outgoing(|o, payload| {
            let l2 = o
                .conn
                .and_then(|id| match conns.get(id.slot as usize) {
                    Some(Some((g, c))) if *g == id.generation => Some(&c.l2),
                    _ => None,
                })
                .or(reply_l2);
            let Some(l2) = l2 else {
                return; // a connection that never had a frame: nobody to answer
            };
            let ip = IpRepr::new(o.local.ip(), o.remote.ip());
            if !xsk.transmit(|buf| frame::emit_into(l2, &ip, &o.seg, &payload, buf)) {
                stats.tx_full += 1;
            }
        });
        let mut events = std::mem::take(&mut self.events);
        self.engine.drain_events(|id, e| events.push((id, e)));
        for &(id, e) in &events {
            self.on_event(id, e);
        }
        events.clear();
        self.events = events;
    }

    fn on_event(&mut self, id: ConnId, e: Event) {
        match e {
            Event::Connected => self.open_upstream(id),
            Event::Readable | Event::Writable | Event::PeerClosed => self.mark_ready(id),
            Event::Reset(why) => {
                tracing::debug!("connection {id:?} reset: {why:?}");
            }
            Event::Closed => {
                let Some(slot) = self.conns.get_mut(id.slot as usize) else {
                    return;
                };
                if !matches!(slot, Some((g, _)) if *g == id.generation) {
                    return;
                }
                let Some((_, conn)) = slot.take() else {
                    return;
                };
                let (local, remote) = conn.key;
                // The upstream socket closes as it drops (after a graceful end both
                // directions are done; after a reset, the upstream sees it go); closing
                // takes it out of the epoll set (it is never duplicated), so there is no
                // deregistration, one system call fewer per connection.
                drop(conn);
                self.forget_flow(local, remote);
            }
        }
    }

    /// The handshake completed: open the upstream connection (non-blocking).
    fn open_upstream(&mut self, id: ConnId) {
        let pool = self.pool.clone();
        let Some(c) = self.conn_mut(id) else {
            return;
        };
        let Some(pool) = pool else {
            c.upstream = UpstreamConn::Echo;
            self.mark_ready(id);
            return;
        };
        c.proxy_protocol = pool.settings.proxy_protocol;
        c.pool = Some(pool);
        self.connect_next(id);
    }

    /// Connects to the next backend of the connection's pool that is up and not yet tried;
    /// the client gets RST when none is left or the retries are spent.
    fn connect_next(&mut self, id: ConnId) {
        loop {
            let Some(c) = self.conn_mut(id) else {
                return;
            };
            let Some(pool) = c.pool.clone() else {
                return;
            };
            if c.attempts >= pool.max_attempts() {
                self.upstream_failed(id);
                return;
            }
            let Some(assignment) = pool.assign(c.tried) else {
                if c.tried == 0 {
                    tracing::info!("every backend is down: resetting the client");
                    self.stats.no_backend += 1;
                }
                self.upstream_failed(id);
                return;
            };
            let backend = assignment.backend.clone();
            c.tried |= 1 << assignment.index;
            c.attempts += 1;
            // Replaces (and so uncounts) the backend of a failed attempt.
            c.backend = Some(assignment);
            match TcpStream::connect(backend.addr) {
                Ok(mut s) => {
                    // The kernel would retry the SYN for ~2 minutes; TCP_USER_TIMEOUT bounds
                    // the connect (and later, how long the upstream may leave data unacked).
                    if let Err(e) = socket2::SockRef::from(&s)
                        .set_tcp_user_timeout(Some(self.cfg.connect_timeout))
                    {
                        tracing::debug!("TCP_USER_TIMEOUT on an upstream socket: {e}");
                    }
                    if let Err(e) = self.poll.registry().register(
                        &mut s,
                        Token(id.to_u64() as usize),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!("registering an upstream socket: {e}");
                        self.upstream_failed(id);
                        return;
                    }
                    if let Some(c) = self.conn_mut(id) {
                        c.upstream = UpstreamConn::Connecting(s);
                        c.connect_started = Some(std::time::Instant::now());
                    }
                    self.mark_ready(id);
                    return;
                }
                Err(e) => {
                    tracing::info!("backend {}: {e}", backend.target);
                    backend.connect_failed();
                    self.stats.connect_failures += 1;
                }
            }
        }
    }

    fn upstream_failed(&mut self, id: ConnId) {
        self.stats.upstream_failed += 1;
        let now = self.now();
        self.engine.with(id, now, |t| t.abort(now));
        self.flush(None);
    }

    fn on_upstream_event(&mut self, id: ConnId, readable: bool, writable: bool) {
        let Some(c) = self.conn_mut(id) else {
            return;
        };
        if matches!(c.upstream, UpstreamConn::Connecting(_)) {
            // The connect finished, one way or the other.
            if !(writable || readable) {
                return;
            }
            let outcome = c.connected();
            let started = c.connect_started.take();
            if outcome == Outcome::Failed {
                // Refused, reset or timed out: another backend, if one is left.
                if let Some(a) = &c.backend {
                    a.backend.connect_failed();
                }
                self.stats.connect_failures += 1;
                self.connect_next(id);
                return;
            }
            if let Some(started) = started {
                self.cfg
                    .connect_latency
                    .observe(started.elapsed().as_secs_f64());
            }
        } else if let UpstreamConn::Open(o) = &mut c.upstream {
            o.readable |= readable;
            o.writable |= writable;
        }
        self.mark_ready(id);
    }

    /// Moves bytes for every connection with something to move.
    fn run_ready(&mut self) {
        let mut ready = std::mem::take(&mut self.ready_batch);
        self.ready.take(&mut ready);
        let now = self.now();
        let draining = self.draining;
        for &id in &ready {
            let Some(slot) = self.conns.get_mut(id.slot as usize) else {
                continue;
            };
            let Some((g, conn)) = slot.as_mut() else {
                continue;
            };
            if *g != id.generation {
                continue;
            }
            let outcome = self
                .engine
                .with(id, now, |t| conn.pump(t, now, draining))
                .unwrap_or(Outcome::Ok);
            if outcome == Outcome::Failed {
                self.upstream_failed(id);
            }
            self.flush(None);
        }
        // Connections marked while this batch ran are in `self.ready`, for the next turn.
        self.ready_batch = ready;
    }

    /// Graceful shutdown, first step: accept nothing new and close every connection (FIN
    /// after what is already queued for the client).
    pub(super) fn drain(&mut self) {
        if self.draining {
            return;
        }
        self.draining = true;
        self.engine.stop_listening();
        let now = self.now();
        let ids: Vec<ConnId> = self.engine.connections().map(|(id, _, _)| id).collect();
        for id in ids {
            self.engine.with(id, now, |t| t.close(now));
            self.flush(None);
        }
        self.xsk.kick();
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
        let ids: Vec<(ConnId, State)> = self
            .engine
            .connections()
            .map(|(id, _, t)| (id, t.state()))
            .collect();
        let mut reset = 0;
        for (id, state) in ids {
            if state != State::TimeWait {
                reset += 1;
            }
            self.engine.with(id, now, |t| t.abort(now));
            self.flush(None);
        }
        if reset > 0 {
            tracing::warn!(
                "{} queue {}: reset {reset} connection(s) that had not closed",
                self.cfg.iface,
                self.cfg.queue
            );
        }
        self.xsk.kick();
    }

    /// Connections that still need time to close (TIME-WAIT does not count: the client is
    /// done).
    pub(super) fn open_connections(&self) -> usize {
        self.engine.len() - self.engine.count_in(State::TimeWait)
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
