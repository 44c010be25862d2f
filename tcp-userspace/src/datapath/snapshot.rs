//! What a queue's loop reports to the control socket: its connections and counters.

use crate::{
    control::proto::{ConnInfo, EngineStats, QueueCounts},
    engine::{State, Tcb},
};

use super::{queue::Queue, relay::Conn};

/// One queue's answer to [`super::DatapathQuery::Snapshot`].
#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    pub queue: u32,
    pub connections: Vec<ConnInfo>,
    pub stats: EngineStats,
    pub listeners: Vec<std::net::SocketAddr>,
    /// Connections that still need time to close (not TIME-WAIT).
    pub open: usize,
}

impl Queue {
    pub(super) fn snapshot(&self) -> QueueSnapshot {
        // Before this snapshot's own allocations.
        let allocations = crate::alloc_count::thread_allocations();
        let now = self.now();
        let connections = self
            .engine
            .connections()
            .map(|(id, _, tcb)| conn_info(tcb, self.conn(id), self.cfg.queue, now))
            .collect();
        let c = &self.engine.counters;
        let xsk = self.xsk_statistics();
        let mut stats = EngineStats {
            xsk_rx_dropped: xsk.rx_dropped,
            xsk_rx_ring_full: xsk.rx_ring_full,
            xsk_fill_ring_empty: xsk.fill_ring_empty,
            opened: c.opened,
            closed: c.closed,
            reset: c.reset,
            rejected_full: c.rejected_full,
            rst_no_conn: c.rst_no_conn,
            retransmits: c.retransmits,
            timeouts: c.timeouts,
            tail_loss_probes: c.tail_loss_probes,
            undone_reductions: c.undone_reductions,
            hystart_rtt_exits: c.hystart_rtt_exits,
            hystart_train_exits: c.hystart_train_exits,
            bad_frames: self.stats.bad_frames,
            misrouted: self.stats.misrouted,
            misrouted_dropped: self.stats.misrouted_dropped,
            tx_full: self.stats.tx_full,
            upstream_failed: self.stats.upstream_failed,
            connect_failures: self.stats.connect_failures,
            no_backend: self.stats.no_backend,
            reopened: self.stats.reopened,
            connections: self.engine.len() as u64,
            time_wait: self.engine.count_in(State::TimeWait) as u64,
            queues: vec![QueueCounts {
                queue: self.cfg.queue,
                cpu: self.cfg.cpu.map(|c| c as u32),
                opened: c.opened,
                connections: self.engine.len() as u64,
                misrouted: self.stats.misrouted,
                allocations,
            }],
            ..EngineStats::default()
        };
        for s in State::ALL {
            let n = self.engine.count_in(s) as u64;
            if n > 0 {
                stats.states.insert(s.name().to_string(), n);
            }
        }
        QueueSnapshot {
            queue: self.cfg.queue,
            connections,
            stats,
            listeners: self.engine.listeners().copied().collect(),
            open: self.open_connections(),
        }
    }
}

fn conn_info(tcb: &Tcb, conn: Option<&Conn>, queue: u32, now: crate::engine::Instant) -> ConnInfo {
    let (snd_shift, rcv_shift) = tcb.wscale();
    ConnInfo {
        state: Some(tcb.state().name().into()),
        time_wait_left_ms: tcb.time_wait_left(now).map(|d| d.as_millis() as u64),
        snd_una: Some(tcb.snd_una()),
        snd_nxt: Some(tcb.snd_nxt()),
        rcv_nxt: Some(tcb.rcv_nxt()),
        snd_wnd: Some(tcb.snd_wnd() as u64),
        rcv_wnd: Some(tcb.rcv_wnd() as u64),
        snd_wscale: Some(snd_shift),
        rcv_wscale: Some(rcv_shift),
        mss: Some(tcb.mss().min(u16::MAX as usize) as u16),
        srtt_us: tcb.srtt().map(|d| d.as_micros() as u64),
        rto_ms: Some(tcb.rto().as_millis() as u64),
        cwnd: Some(tcb.cwnd() as u64),
        retransmits: Some(tcb.stats.retransmits),
        bytes_in: Some(tcb.stats.bytes_in),
        bytes_out: Some(tcb.stats.bytes_out),
        age_ms: Some(tcb.age(now).as_millis() as u64),
        upstream: conn.and_then(Conn::upstream_name),
        upstream_local: conn.and_then(Conn::upstream_local),
        queue: Some(queue),
        ..ConnInfo::new(tcb.local, tcb.remote)
    }
}
