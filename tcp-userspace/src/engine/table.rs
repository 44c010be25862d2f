//! The connection table: demultiplexing by 4-tuple, passive opens, RST for segments to no
//! connection (RFC 9293 §3.10.7.1), a hard maximum, and the timer wheel.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
};

use super::{
    config::EngineConfig,
    isn::IsnGenerator,
    tcb::{CookieHandshake, Event, State, Tcb},
    time::Instant,
    timer::TimerWheel,
};
use crate::wire::tcp::{ACK, FIN, RST, SYN, TcpRepr};

/// (local, remote)
pub type ConnKey = (SocketAddr, SocketAddr);

/// A segment to put on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub seg: TcpRepr,
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
    pub retransmits: u64,
}

pub struct Engine {
    cfg: EngineConfig,
    listening: HashSet<SocketAddr>,
    conns: HashMap<ConnKey, Tcb>,
    /// The deadline each connection is scheduled for in the wheel.
    scheduled: HashMap<ConnKey, Instant>,
    wheel: TimerWheel<ConnKey>,
    isn: IsnGenerator,
    out: Vec<Outgoing>,
    events: Vec<(ConnKey, Event)>,
    pub counters: EngineCounters,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        Self {
            cfg,
            listening: HashSet::new(),
            conns: HashMap::new(),
            scheduled: HashMap::new(),
            // 1 ms ticks, 4096 slots: about 4 s per revolution.
            wheel: TimerWheel::new(1000, 4096),
            isn: IsnGenerator::default(),
            out: Vec::new(),
            events: Vec::new(),
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
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    pub fn get(&self, key: &ConnKey) -> Option<&Tcb> {
        self.conns.get(key)
    }

    pub fn connections(&self) -> impl Iterator<Item = (&ConnKey, &Tcb)> {
        self.conns.iter()
    }

    /// Runs `f` on a connection (application calls: send, recv, close, abort), then collects
    /// what it produced.
    pub fn with_conn<R>(
        &mut self,
        key: &ConnKey,
        now: Instant,
        f: impl FnOnce(&mut Tcb) -> R,
    ) -> Option<R> {
        let tcb = self.conns.get_mut(key)?;
        let r = f(tcb);
        self.after(*key, now);
        Some(r)
    }

    /// Active open.
    pub fn connect(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> Option<ConnKey> {
        let key = (local, remote);
        if self.conns.contains_key(&key) || self.conns.len() >= self.cfg.max_connections {
            return None;
        }
        let iss = self.isn.isn(local, remote, now);
        self.conns
            .insert(key, Tcb::connect(&self.cfg, local, remote, iss, now));
        self.counters.opened += 1;
        self.after(key, now);
        Some(key)
    }

    /// A connection whose handshake XDP completed with a cookie. Returns false (and answers
    /// with RST) when the table is full.
    pub fn accept_cookie(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        h: &CookieHandshake,
        ack: &TcpRepr,
        now: Instant,
    ) -> bool {
        let key = (local, remote);
        if self.conns.len() >= self.cfg.max_connections {
            self.counters.rejected_full += 1;
            self.reply_rst(local, remote, ack);
            return false;
        }
        let tcb = Tcb::from_cookie(&self.cfg, local, remote, h, ack, now);
        self.conns.insert(key, tcb);
        self.counters.opened += 1;
        self.after(key, now);
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.on_segment(ack, now);
        }
        self.after(key, now);
        true
    }

    /// One received segment from `remote` to `local`.
    pub fn on_segment(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seg: &TcpRepr,
        now: Instant,
    ) {
        let key = (local, remote);
        if let Some(tcb) = self.conns.get_mut(&key) {
            tcb.on_segment(seg, now);
            self.after(key, now);
            return;
        }
        if seg.flags & RST != 0 {
            return;
        }
        if seg.flags & (SYN | ACK) == SYN && self.is_listening(local) {
            if self.conns.len() >= self.cfg.max_connections {
                self.counters.rejected_full += 1;
                self.reply_rst(local, remote, seg);
                return;
            }
            let iss = self.isn.isn(local, remote, now);
            self.conns
                .insert(key, Tcb::accept(&self.cfg, local, remote, iss, seg, now));
            self.counters.opened += 1;
            self.after(key, now);
            return;
        }
        self.reply_rst(local, remote, seg);
    }

    /// RFC 9293 §3.10.7.1: to a segment with ACK, <SEQ=SEG.ACK><CTL=RST>; otherwise
    /// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    fn reply_rst(&mut self, local: SocketAddr, remote: SocketAddr, seg: &TcpRepr) {
        let rst = if seg.flags & ACK != 0 {
            TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                seq: seg.ack,
                flags: RST,
                ..TcpRepr::default()
            }
        } else {
            let len = seg.payload.len() as u32
                + u32::from(seg.flags & SYN != 0)
                + u32::from(seg.flags & FIN != 0);
            TcpRepr {
                src_port: local.port(),
                dst_port: remote.port(),
                seq: 0,
                ack: seg.seq.wrapping_add(len),
                flags: RST | ACK,
                ..TcpRepr::default()
            }
        };
        self.counters.rst_no_conn += 1;
        self.out.push(Outgoing {
            local,
            remote,
            seg: rst,
        });
    }

    /// Collects a connection's output and events, re-schedules its timer, and removes it when
    /// it reached CLOSED.
    fn after(&mut self, key: ConnKey, _now: Instant) {
        let Some(tcb) = self.conns.get_mut(&key) else {
            return;
        };
        for seg in tcb.take_outgoing() {
            self.out.push(Outgoing {
                local: key.0,
                remote: key.1,
                seg,
            });
        }
        for e in tcb.take_events() {
            if matches!(e, Event::Reset(_)) {
                self.counters.reset += 1;
            }
            self.events.push((key, e));
        }
        if tcb.state() == State::Closed {
            self.counters.closed += 1;
            self.counters.retransmits += tcb.stats.retransmits;
            self.conns.remove(&key);
            self.scheduled.remove(&key);
            return;
        }
        match tcb.next_deadline() {
            Some(d) if self.scheduled.get(&key).is_none_or(|&s| d < s) => {
                self.scheduled.insert(key, d);
                self.wheel.schedule(d, key);
            }
            _ => {}
        }
    }

    /// Runs the timers that are due.
    pub fn poll_timers(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.wheel.expire(now, |k| due.push(k));
        for key in due {
            let Some(&at) = self.scheduled.get(&key) else {
                continue; // connection gone, or a stale entry of a moved deadline
            };
            if at > now {
                continue; // an earlier entry is still pending
            }
            self.scheduled.remove(&key);
            if let Some(tcb) = self.conns.get_mut(&key)
                && tcb.next_deadline().is_some_and(|d| d <= now)
            {
                tcb.on_timer(now);
            }
            self.after(key, now);
        }
    }

    pub fn take_outgoing(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.out)
    }

    pub fn take_events(&mut self) -> Vec<(ConnKey, Event)> {
        std::mem::take(&mut self.events)
    }

    /// Connections per state, for `tcpfront stats`.
    pub fn count_in(&self, state: State) -> usize {
        self.conns.values().filter(|t| t.state() == state).count()
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
            let ack = TcpRepr {
                src_port: 40000,
                dst_port: 80,
                seq: i.wrapping_add(1),
                ack: i.wrapping_mul(7).wrapping_add(1),
                flags: ACK,
                window: 1000,
                ..TcpRepr::default()
            };
            assert!(e.accept_cookie(
                local,
                remote,
                &h,
                &ack,
                Instant::from_millis(u64::from(i % 1000))
            ));
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
