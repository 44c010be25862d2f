//! The connection table: demultiplexing by 4-tuple, passive opens, RST for segments to no
//! connection (RFC 9293 §3.10.7.1), a hard maximum, and the timers.
//!
//! Connections live in a slab and are named by [`ConnId`] (slot and generation, so that a
//! stale id never reaches a later connection in the same slot); the 4-tuple index uses a
//! randomly seeded hash (foldhash), which clients cannot aim collisions at.

use std::{collections::HashSet, net::SocketAddr};

use foldhash::fast::RandomState;

use super::{
    config::EngineConfig,
    hystart::SlowStartExit,
    isn::IsnGenerator,
    tcb::{CookieHandshake, Event, OutPayload, OutSegment, State, Tcb},
    time::Instant,
    timer::Timers,
};
use crate::wire::tcp::{ACK, FIN, RST, SYN, TcpRepr};

/// (local, remote)
pub type ConnKey = (SocketAddr, SocketAddr);

/// A connection of this engine: its slab slot and the slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl ConnId {
    /// As one number (an event loop's token).
    pub fn to_u64(self) -> u64 {
        u64::from(self.generation) << 32 | u64::from(self.slot)
    }

    pub fn from_u64(v: u64) -> Self {
        Self {
            slot: v as u32,
            generation: (v >> 32) as u32,
        }
    }
}

/// A segment to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing<P = OutPayload> {
    /// The connection it belongs to (none for a RST to a segment that matched none).
    pub conn: Option<ConnId>,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub seg: TcpRepr<P>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    pub opened: u64,
    pub closed: u64,
    pub reset: u64,
    /// New connections refused because the table was full.
    pub rejected_full: u64,
    /// RSTs sent for segments that matched no connection.
    pub rst_no_conn: u64,
    /// Segments retransmitted by connections that are closed or in TIME-WAIT.
    pub retransmits: u64,
    /// Retransmission timeouts of those connections.
    pub timeouts: u64,
    /// Tail loss probes (RFC 8985 §7) of those connections.
    pub tail_loss_probes: u64,
    /// Window reductions those connections undid (DSACK, RFC 3708).
    pub undone_reductions: u64,
    /// Those connections whose slow start HyStart ended: on a rise of the RTT (RFC 9406),
    /// on an ACK train (hystart.rs). The rest left it on a loss, or never filled the path.
    pub hystart_rtt_exits: u64,
    pub hystart_train_exits: u64,
}

struct Entry {
    key: ConnKey,
    tcb: Tcb,
    /// The deadline the timers hold for this connection.
    scheduled: Option<Instant>,
    /// The state counted in `Engine::states`.
    state: State,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

pub struct Engine {
    cfg: EngineConfig,
    listening: HashSet<SocketAddr>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    index: std::collections::HashMap<ConnKey, u32, RandomState>,
    timers: Timers<ConnId>,
    isn: IsnGenerator,
    out: Vec<Outgoing>,
    events: Vec<(ConnId, Event)>,
    /// Scratch for `poll_timers`, kept to avoid an allocation per call.
    due: Vec<(Instant, ConnId)>,
    /// Connections per state (index: `State::ALL` order).
    states: [usize; State::ALL.len()],
    /// A receive batch is being handled (see `begin_batch`).
    batching: bool,
    /// Connections holding an ACK for the end of the batch.
    batch_acks: Vec<ConnId>,
    pub counters: EngineCounters,
}

fn state_index(s: State) -> usize {
    State::ALL.iter().position(|&x| x == s).unwrap_or(0)
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            listening: HashSet::new(),
            slots: Vec::new(),
            free: Vec::new(),
            index: std::collections::HashMap::with_hasher(RandomState::default()),
            timers: Timers::default(),
            isn: IsnGenerator::default(),
            out: Vec::new(),
            events: Vec::new(),
            due: Vec::new(),
            states: [0; State::ALL.len()],
            batching: false,
            batch_acks: Vec::new(),
            counters: EngineCounters::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Accept SYNs to `addr` (an unspecified IP matches any local address of that port).
    pub fn listen(&mut self, addr: SocketAddr) {
        self.listening.insert(addr);
    }

    /// Settings for connections opened from now on (a reload); open connections keep the
    /// ones they were opened with.
    pub fn set_config(&mut self, cfg: EngineConfig) {
        self.cfg = cfg;
    }

    /// Accept SYNs to exactly these addresses from now on; open connections are not touched.
    pub fn set_listeners(&mut self, addrs: &[SocketAddr]) {
        self.listening = addrs.iter().copied().collect();
    }

    /// Accept no more SYNs (graceful shutdown); open connections are not touched.
    pub fn stop_listening(&mut self) {
        self.listening.clear();
    }

    pub fn listeners(&self) -> impl Iterator<Item = &SocketAddr> {
        self.listening.iter()
    }

    fn is_listening(&self, local: SocketAddr) -> bool {
        self.listening.contains(&local)
            || self.listening.iter().any(|l| {
                l.ip().is_unspecified()
                    && l.port() == local.port()
                    && l.is_ipv4() == local.is_ipv4()
            })
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The connection of a 4-tuple.
    pub fn id_of(&self, key: &ConnKey) -> Option<ConnId> {
        let slot = *self.index.get(key)?;
        Some(ConnId {
            slot,
            generation: self.slots[slot as usize].generation,
        })
    }

    fn entry(&self, id: ConnId) -> Option<&Entry> {
        let slot = self.slots.get(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, id: ConnId) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    pub fn get(&self, key: &ConnKey) -> Option<&Tcb> {
        self.tcb(self.id_of(key)?)
    }

    pub fn tcb(&self, id: ConnId) -> Option<&Tcb> {
        self.entry(id).map(|e| &e.tcb)
    }

    pub fn key(&self, id: ConnId) -> Option<ConnKey> {
        self.entry(id).map(|e| e.key)
    }

    /// Every connection, in no particular order.
    pub fn connections(&self) -> impl Iterator<Item = (ConnId, &ConnKey, &Tcb)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            s.entry.as_ref().map(|e| {
                (
                    ConnId {
                        slot: i as u32,
                        generation: s.generation,
                    },
                    &e.key,
                    &e.tcb,
                )
            })
        })
    }

    /// Runs `f` on a connection (application calls: send, recv, close, abort), then collects
    /// what it produced.
    /// The frames of one receive batch follow: in-order data is acknowledged once per
    /// connection, at `end_batch` (as Linux does for what GRO merged).
    pub fn begin_batch(&mut self) {
        self.batching = true;
    }

    /// Sends the ACKs held for the batch (unless data went out and carried them).
    pub fn end_batch(&mut self, now: Instant) {
        self.batching = false;
        let mut ids = std::mem::take(&mut self.batch_acks);
        for id in ids.drain(..) {
            self.with(id, now, |t| {
                if t.ack_at_batch_end {
                    t.ack_now = true;
                    t.output(now);
                }
            });
        }
        // Keep the capacity: no allocation per batch.
        self.batch_acks = ids;
    }

    pub fn with<R>(
        &mut self,
        id: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Tcb) -> R,
    ) -> Option<R> {
        self.own_pending_payloads(id);
        let r = f(&mut self.entry_mut(id)?.tcb);
        self.after(id, now);
        Some(r)
    }

    /// As [`Engine::with`], by 4-tuple.
    pub fn with_conn<R>(
        &mut self,
        key: &ConnKey,
        now: Instant,
        f: impl FnOnce(&mut Tcb) -> R,
    ) -> Option<R> {
        let id = self.id_of(key)?;
        self.with(id, now, f)
    }

    fn insert(&mut self, key: ConnKey, tcb: Tcb) -> ConnId {
        let state = tcb.state();
        let entry = Entry {
            key,
            tcb,
            scheduled: None,
            state,
        };
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let s = &mut self.slots[slot as usize];
        s.entry = Some(entry);
        self.index.insert(key, slot);
        self.states[state_index(state)] += 1;
        self.counters.opened += 1;
        ConnId {
            slot,
            generation: s.generation,
        }
    }

    /// Active open.
    pub fn connect(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Option<ConnId> {
        let key = (local, remote);
        if self.index.contains_key(&key) || self.len() >= self.cfg.max_connections {
            return None;
        }
        let iss = self.isn.isn(local, remote, now);
        let id = self.insert(key, Tcb::connect(&self.cfg, local, remote, iss, now));
        self.after(id, now);
        Some(id)
    }

    /// A connection whose handshake XDP completed with a cookie. Returns None (and answers
    /// with RST) when the table is full.
    pub fn accept_cookie<P: AsRef<[u8]> + Clone>(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        h: &CookieHandshake,
        ack: &TcpRepr<P>,
        now: Instant,
    ) -> Option<ConnId> {
        if self.len() >= self.cfg.max_connections {
            self.counters.rejected_full += 1;
            self.reply_rst(local, remote, ack);
            return None;
        }
        let tcb = Tcb::from_cookie(&self.cfg, local, remote, h, ack, now);
        let id = self.insert((local, remote), tcb);
        self.after(id, now);
        if let Some(e) = self.entry_mut(id) {
            e.tcb.on_segment(ack, now);
        }
        self.after(id, now);
        Some(id)
    }

    /// One received segment from `remote` to `local`; returns the connection it belongs to.
    pub fn on_segment<P: AsRef<[u8]> + Clone>(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<P>,
        now: Instant,
    ) -> Option<ConnId> {
        let key = (local, remote);
        if let Some(id) = self.id_of(&key) {
            self.own_pending_payloads(id);
            let batching = self.batching;
            if let Some(e) = self.entry_mut(id) {
                let held = e.tcb.ack_at_batch_end;
                e.tcb.in_batch = batching;
                e.tcb.on_segment(seg, now);
                e.tcb.in_batch = false;
                if e.tcb.ack_at_batch_end && !held {
                    self.batch_acks.push(id);
                }
            }
            self.after(id, now);
            return Some(id);
        }
        if seg.flags & RST != 0 {
            return None;
        }
        if seg.flags & (SYN | ACK) == SYN && self.is_listening(local) {
            if self.len() >= self.cfg.max_connections {
                self.counters.rejected_full += 1;
                self.reply_rst(local, remote, seg);
                return None;
            }
            let iss = self.isn.isn(local, remote, now);
            let id = self.insert(key, Tcb::accept(&self.cfg, local, remote, iss, seg, now));
            self.after(id, now);
            return Some(id);
        }
        self.reply_rst(local, remote, seg);
        None
    }

    /// RFC 9293 §3.10.7.1: to a segment with ACK, <SEQ=SEG.ACK><CTL=RST>; otherwise
    /// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    fn reply_rst<P: AsRef<[u8]>>(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr<P>,
    ) {
        let rst = if seg.flags & ACK != 0 {
            TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                seq: seg.ack,
                flags: RST,
                ..OutSegment::default()
            }
        } else {
            let len = seg.payload.as_ref().len() as u32
                + u32::from(seg.flags & SYN != 0)
                + u32::from(seg.flags & FIN != 0);
            TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                seq: 0,
                ack: seg.seq.wrapping_add(len),
                flags: RST | ACK,
                ..OutSegment::default()
            }
        };
        self.counters.rst_no_conn += 1;
        self.out.push(Outgoing {
            conn: None,
            local,
            remote,
            seg: rst,
        });
    }

    /// Segments of `id` still waiting in `out` get their own payload bytes before the
    /// connection's send buffer can change under them (only when the caller did not drain
    /// between two calls: never in the datapath, which always does).
    fn own_pending_payloads(&mut self, id: ConnId) {
        if self.out.is_empty() {
            return;
        }
        let Some(entry) = self
            .slots
            .get(id.slot as usize)
            .and_then(|s| s.entry.as_ref())
        else {
            return;
        };
        for o in &mut self.out {
            if o.conn == Some(id)
                && matches!(o.seg.payload, OutPayload::Send { len, .. } if len > 0)
            {
                let bytes = entry.tcb.payload_of(&o.seg.payload).concat();
                o.seg.payload = OutPayload::Bytes(bytes);
            }
        }
    }

    /// Collects a connection's output and events, counts its state, re-schedules its timer,
    /// and removes it when it reached CLOSED.
    fn after(&mut self, id: ConnId, _now: Instant) {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        let Some(e) = slot.entry.as_mut() else {
            return;
        };
        let closing = e.tcb.state() == State::Closed;
        if closing {
            e.tcb.own_outbox_payloads();
        }
        let (local, remote) = e.key;
        for seg in e.tcb.outbox.drain(..) {
            self.out.push(Outgoing {
                conn: Some(id),
                local,
                remote,
                seg,
            });
        }
        for ev in e.tcb.events.drain(..) {
            if matches!(ev, Event::Reset(_)) {
                self.counters.reset += 1;
            }
            self.events.push((id, ev));
        }
        let state = e.tcb.state();
        let was = e.state;
        if state != was {
            self.states[state_index(was)] -= 1;
            self.states[state_index(state)] += 1;
            e.state = state;
        }
        // A connection's loss counters are final once it is in TIME-WAIT (it sends nothing
        // but ACKs there) or closed: counted then, not 2·MSL later.
        if was != State::TimeWait && (state == State::TimeWait || closing) {
            self.counters.retransmits += e.tcb.stats.retransmits;
            self.counters.timeouts += e.tcb.stats.timeouts;
            self.counters.tail_loss_probes += e.tcb.stats.tail_loss_probes;
            self.counters.undone_reductions += e.tcb.stats.undone_reductions;
            match e.tcb.slow_start_exit() {
                Some(SlowStartExit::RttRise) => self.counters.hystart_rtt_exits += 1,
                Some(SlowStartExit::AckTrain) => self.counters.hystart_train_exits += 1,
                None => {}
            }
        }
        if closing {
            self.counters.closed += 1;
            self.states[state_index(State::Closed)] -= 1;
            let key = e.key;
            slot.entry = None;
            slot.generation = slot.generation.wrapping_add(1);
            self.index.remove(&key);
            self.free.push(id.slot);
            return;
        }
        if let Some(d) = e.tcb.next_deadline()
            && e.scheduled.is_none_or(|s| d < s)
        {
            e.scheduled = Some(d);
            self.timers.schedule(d, id);
        }
    }

    /// Forgets a connection at once, sending nothing and telling nothing (a TIME-WAIT that
    /// a new SYN of the same 4-tuple retires, RFC 6191); returns its 4-tuple.
    pub fn retire(&mut self, id: ConnId) -> Option<ConnKey> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let e = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.states[state_index(e.state)] -= 1;
        self.counters.closed += 1;
        self.index.remove(&e.key);
        self.free.push(id.slot);
        Some(e.key)
    }

    /// When `poll_timers` next has something to do (the event loop's sleep), if ever.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Runs the timers that are due.
    pub fn poll_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.timers.expire(now, |at, id| due.push((at, id)));
        for &(at, id) in &due {
            let Some(e) = self.entry_mut(id) else {
                continue; // connection gone
            };
            if e.scheduled != Some(at) {
                continue; // a stale entry of a moved deadline
            }
            e.scheduled = None;
            if e.tcb.next_deadline().is_some_and(|d| d <= now) {
                e.tcb.on_timer(now);
            }
            self.after(id, now);
        }
        due.clear();
        self.due = due;
    }

    /// Segments to transmit, each with its payload copied out (tests, slow paths).
    pub fn take_outgoing(&mut self) -> Vec<Outgoing<Vec<u8>>> {
        let mut v = Vec::with_capacity(self.out.len());
        self.drain_outgoing(|o, payload| {
            v.push(Outgoing {
                conn: o.conn,
                local: o.local,
                remote: o.remote,
                seg: o.seg.clone().with_payload(payload.concat()),
            });
        });
        v
    }

    /// Hands each segment to transmit to `f`, in order, with its payload as up to two slices
    /// (of its connection's send buffer, in place). Nothing is allocated.
    pub fn drain_outgoing(&mut self, mut f: impl FnMut(&Outgoing, [&[u8]; 2])) {
        let out = std::mem::take(&mut self.out);
        for o in &out {
            const NONE: [&[u8]; 2] = [&[], &[]];
            let payload: [&[u8]; 2] = match (&o.seg.payload, o.conn) {
                (OutPayload::Bytes(b), _) => [b.as_slice(), &[]],
                (p @ OutPayload::Send { .. }, Some(id)) => match self.entry(id) {
                    Some(e) => e.tcb.payload_of(p),
                    None => NONE,
                },
                (OutPayload::Send { .. }, None) => NONE,
            };
            f(o, payload);
        }
        self.out = out;
        self.out.clear();
    }

    pub fn take_events(&mut self) -> Vec<(ConnId, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Hands each application event to `f`, in order. Nothing is allocated.
    pub fn drain_events(&mut self, mut f: impl FnMut(ConnId, Event)) {
        for (id, e) in self.events.drain(..) {
            f(id, e);
        }
    }

    /// Connections in `state` (counted as they change).
    pub fn count_in(&self, state: State) -> usize {
        self.states[state_index(state)]
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn seg(flags: u8, seq: u32, ack: u32) -> TcpRepr {
        TcpRepr {
            src_port: 5000,
            dst_port: 80,
            seq,
            ack,
            flags,
            window: 1000,
            ..TcpRepr::default()
        }
    }

    #[test]
    fn syn_to_a_closed_port_is_answered_with_rst() {
        let mut e = Engine::new(EngineConfig::default());
        e.on_segment(
            addr("10.0.0.1:80"),
            addr("10.0.0.2:5000"),
            &seg(SYN, 100, 0),
            Instant(0),
        );
        let out = e.take_outgoing();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seg.flags, RST | ACK);
        assert_eq!((out[0].seg.seq, out[0].seg.ack), (0, 101));
        // An ACK to no connection: <SEQ=SEG.ACK><CTL=RST>.
        e.on_segment(
            addr("10.0.0.1:80"),
            addr("10.0.0.2:5000"),
            &seg(ACK, 100, 777),
            Instant(0),
        );
        let out = e.take_outgoing();
        assert_eq!((out[0].seg.flags, out[0].seg.seq), (RST, 777));
        // A RST to no connection: nothing.
        e.on_segment(
            addr("10.0.0.1:80"),
            addr("10.0.0.2:5000"),
            &seg(RST, 1, 0),
            Instant(0),
        );
        assert!(e.take_outgoing().is_empty());
        assert_eq!(e.counters.rst_no_conn, 2);
    }

    #[test]
    fn listener_accepts_up_to_the_maximum() {
        let mut e = Engine::new(EngineConfig {
            max_connections: 2,
            ..EngineConfig::default()
        });
        e.listen(addr("0.0.0.0:80"));
        for port in [5000u16, 5001, 5002] {
            let mut s = seg(SYN, 100, 0);
            s.src_port = port;
            e.on_segment(
                addr("10.0.0.1:80"),
                SocketAddr::new("10.0.0.2".parse().unwrap(), port),
                &s,
                Instant(0),
            );
        }
        let out = e.take_outgoing();
        let flags: Vec<u8> = out.iter().map(|o| o.seg.flags).collect();
        assert_eq!(flags, vec![SYN | ACK, SYN | ACK, RST | ACK]);
        assert_eq!(e.len(), 2);
        assert_eq!(e.counters.rejected_full, 1);
    }

    #[test]
    fn timers_fire_through_the_wheel_and_closed_connections_leave() {
        let mut e = Engine::new(EngineConfig {
            max_retransmits: 1,
            ..EngineConfig::default()
        });
        e.listen(addr("10.0.0.1:80"));
        e.on_segment(
            addr("10.0.0.1:80"),
            addr("10.0.0.2:5000"),
            &seg(SYN, 100, 0),
            Instant(0),
        );
        e.take_outgoing();
        // The SYN-ACK is retransmitted after the initial RTO (1 s), then the connection dies.
        e.poll_timers(Instant::from_millis(999));
        assert!(e.take_outgoing().is_empty());
        e.poll_timers(Instant::from_millis(1001));
        assert_eq!(e.take_outgoing().len(), 1);
        e.poll_timers(Instant::from_millis(4000));
        assert!(e.is_empty());
        assert_eq!(e.counters.reset, 1);
    }

    /// A connection that closed first sits in TIME-WAIT for 2·MSL; its retransmissions are
    /// final there and are counted on entry, not a minute later.
    #[test]
    fn loss_counters_count_a_connection_once_it_is_in_time_wait() {
        let mut e = Engine::new(EngineConfig {
            sack: false,
            timestamps: false,
            ..EngineConfig::default()
        });
        let (l, r) = (addr("10.0.0.1:80"), addr("10.0.0.2:5000"));
        e.listen(l);
        e.on_segment(l, r, &seg(SYN, 100, 0), Instant(0));
        let iss = e.take_outgoing()[0].seg.seq;
        e.on_segment(
            l,
            r,
            &seg(ACK, 101, iss.wrapping_add(1)),
            Instant::from_millis(10),
        );
        let id = e.id_of(&(l, r)).unwrap();
        // One segment of data, lost: the retransmission timer sends it again.
        e.with(id, Instant::from_millis(20), |t| {
            t.send(b"reply", Instant::from_millis(20))
        });
        e.take_outgoing();
        e.poll_timers(Instant::from_millis(2_000));
        assert_eq!(e.take_outgoing().len(), 1, "the retransmission");
        // Close, the peer acknowledges everything and closes too: TIME-WAIT.
        e.with(id, Instant::from_millis(2_010), |t| {
            t.close(Instant::from_millis(2_010))
        });
        e.take_outgoing();
        let mut fin = seg(FIN | ACK, 101, iss.wrapping_add(1 + 5 + 1));
        fin.window = 1000;
        e.on_segment(l, r, &fin, Instant::from_millis(2_020));
        assert_eq!(e.tcb(id).map(|t| t.state()), Some(State::TimeWait));
        assert_eq!(e.counters.retransmits, 1);
        assert_eq!(e.counters.closed, 0);
        // Leaving TIME-WAIT does not count it again.
        e.poll_timers(Instant::from_millis(200_000));
        assert!(e.is_empty());
        assert_eq!((e.counters.closed, e.counters.retransmits), (1, 1));
    }

    /// Idle connections cost nothing until their own deadline: 10,000 established ones
    /// with nothing to do have no timer before the keep-alive's, and a timer poll up to then
    /// visits none of them (no events, no segments).
    #[test]
    fn idle_connections_are_not_visited_before_their_deadline() {
        let mut e = Engine::new(EngineConfig::default());
        let local = addr("10.0.0.1:80");
        let t0 = Instant::from_millis(0);
        for i in 0..10_000u32 {
            let remote = SocketAddr::new(std::net::Ipv4Addr::from(0x0a01_0000 + i).into(), 40000);
            let h = CookieHandshake {
                client_isn: i,
                server_isn: i.wrapping_mul(7),
                mss: 1460,
                wscale: None,
                sack: false,
                timestamps: None,
            };
            let ack: TcpRepr = TcpRepr {
                src_port: 40000,
                dst_port: 80,
                seq: i.wrapping_add(1),
                ack: i.wrapping_mul(7).wrapping_add(1),
                flags: ACK,
                window: 1000,
                ..TcpRepr::default()
            };
            assert!(e.accept_cookie(local, remote, &h, &ack, t0).is_some());
        }
        e.take_outgoing();
        e.take_events();
        let idle = EngineConfig::default()
            .keepalive
            .map_or(Duration::MAX, |k| k.idle);
        let next = e.next_timer().map(|t| t.saturating_since(t0));
        assert!(next.is_none_or(|d| d >= idle), "{next:?}");
        // Every second for the first minute: nothing is due, nothing happens.
        for s in 1..=60 {
            e.poll_timers(Instant::from_millis(s * 1000));
        }
        assert!(e.take_outgoing().is_empty());
        assert!(e.take_events().is_empty());
    }

    #[test]
    fn a_hundred_thousand_connections_with_timers() {
        let cfg = EngineConfig {
            max_connections: 100_000,
            keepalive: Some(super::super::config::Keepalive {
                idle: Duration::from_secs(5),
                interval: Duration::from_secs(1),
                count: 1,
            }),
            ..EngineConfig::default()
        };
        let mut e = Engine::new(cfg);
        let local = addr("10.0.0.1:80");
        for i in 0..100_000u32 {
            let remote = SocketAddr::new(std::net::Ipv4Addr::from(0x0a01_0000 + i).into(), 40000);
            let h = CookieHandshake {
                client_isn: i,
                server_isn: i.wrapping_mul(7),
                mss: 1460,
                wscale: None,
                sack: false,
                timestamps: None,
            };
            let ack: TcpRepr = TcpRepr {
                src_port: 40000,
                dst_port: 80,
                seq: i.wrapping_add(1),
                ack: i.wrapping_mul(7).wrapping_add(1),
                flags: ACK,
                window: 1000,
                ..TcpRepr::default()
            };
            assert!(
                e.accept_cookie(
                    local,
                    remote,
                    &h,
                    &ack,
                    Instant::from_millis(u64::from(i % 1000))
                )
                .is_some()
            );
        }
        assert_eq!(e.len(), 100_000);
        e.take_outgoing();
        // Walk time in 1 ms ticks: keep-alive probes, then resets, all through the wheel.
        let mut probes = 0;
        for ms in 1..8_000u64 {
            e.poll_timers(Instant::from_millis(ms));
            probes += e.take_outgoing().len();
        }
        assert!(e.is_empty(), "{} connections left", e.len());
        // One probe and one RST per silent connection.
        assert_eq!(probes, 200_000);
        assert_eq!(e.counters.reset, 100_000);
    }
}
