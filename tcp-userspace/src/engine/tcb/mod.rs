//! One connection's transmission control block (RFC 9293 §3.3.1) and its state machine:
//! segments and a clock in, segments and events out. No sockets, no threads, no wall clock.

mod autotune;
mod input;
mod output;
mod pacing;
mod prr;
mod recovery;
mod timers;
mod tlp;
mod undo;

use std::{net::SocketAddr, time::Duration};

use super::{
    assembler::Assembler, cc::CongestionControl, config::EngineConfig, ring::ByteRing,
    rtt::RttEstimator, seq::SeqNum, time::Instant,
};
use crate::wire::tcp::{ACK, RST, SYN, TcpRepr};

/// The payload of a segment the engine sends: a range of the connection's send buffer,
/// copied only into the frame that carries it (by `drain_outgoing`), or bytes of its own
/// when the buffer could change before that (an ACK or a reset while segments wait).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutPayload {
    /// `len` bytes of the send buffer from sequence number `seq` on.
    Send {
        seq: SeqNum,
        len: usize,
    },
    Bytes(Vec<u8>),
}

impl Default for OutPayload {
    fn default() -> Self {
        OutPayload::Send {
            seq: SeqNum(0),
            len: 0,
        }
    }
}

impl OutPayload {
    pub fn len(&self) -> usize {
        match self {
            OutPayload::Send { len, .. } => *len,
            OutPayload::Bytes(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A segment the engine sends.
pub type OutSegment = TcpRepr<OutPayload>;

/// RFC 9293 §3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
    Closed,
}

impl State {
    /// Every state, in RFC 9293 §3.3.2's order.
    pub const ALL: [State; 11] = [
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
        State::Closed,
    ];

    /// The name `ss` and RFC 9293 use.
    pub fn name(self) -> &'static str {
        match self {
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
            State::Closed => "CLOSED",
        }
    }

    /// Both SYNs seen (RFC 9293 "synchronized states").
    pub fn synchronized(self) -> bool {
        !matches!(
            self,
            State::Listen | State::SynSent | State::SynReceived | State::Closed
        )
    }
}

/// Why a connection ended without a graceful close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetReason {
    /// The peer sent an acceptable RST.
    PeerReset,
    /// The retransmission limit was reached.
    RetransmitLimit,
    /// Keep-alive probes went unanswered.
    KeepaliveTimeout,
    /// The application aborted.
    Aborted,
    /// The peer refused (RST to our SYN).
    Refused,
    /// FIN-WAIT-2 lasted too long.
    FinWait2Timeout,
}

/// What the application learns from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// New in-order data can be read.
    Readable,
    /// The peer sent FIN: no more data will arrive (after what is buffered).
    PeerClosed,
    /// Send-buffer space was freed.
    Writable,
    /// The connection is gone (after a graceful close, or entering TIME-WAIT for the
    /// application's purposes is not "gone": this fires on CLOSED).
    Closed,
    Reset(ResetReason),
}

/// What the SYN-cookie handshake in XDP negotiated, to build an ESTABLISHED TCB from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieHandshake {
    pub client_isn: u32,
    pub server_isn: u32,
    pub mss: u16,
    /// (client's shift, our shift) when both sides agreed on window scaling.
    pub wscale: Option<(u8, u8)>,
    pub sack: bool,
    /// (the client's latest TSval, the TSval we sent in the SYN-ACK).
    pub timestamps: Option<(u32, u32)>,
}

/// Per-connection statistics for `tcpfront conns`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcbStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub retransmits: u64,
    /// Retransmission timeouts (each one a window of one segment and slow start again).
    pub timeouts: u64,
    /// Tail loss probes sent (RFC 8985 §7), and losses a retransmitted probe repaired.
    pub tail_loss_probes: u64,
    pub tail_losses_repaired: u64,
    /// Window reductions undone: every retransmission of the recovery was reported a
    /// duplicate (DSACK, RFC 3708), so nothing had been lost.
    pub undone_reductions: u64,
    pub segments_in: u64,
    pub segments_out: u64,
}

pub struct Tcb {
    pub(crate) cfg: EngineConfig,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub(crate) state: State,
    pub(crate) created: Instant,
    pub(crate) last_recv: Instant,

    // Send sequence space (RFC 9293 §3.3.1).
    pub(crate) iss: SeqNum,
    pub(crate) snd_una: SeqNum,
    pub(crate) snd_nxt: SeqNum,
    /// Highest sequence number sent (snd_nxt goes back on a retransmission timeout).
    pub(crate) snd_max: SeqNum,
    pub(crate) snd_wnd: usize,
    pub(crate) snd_wl1: SeqNum,
    pub(crate) snd_wl2: SeqNum,
    pub(crate) max_snd_wnd: usize,
    /// The peer's window shift (applied to the windows it sends us).
    pub(crate) snd_wscale: u8,
    /// The MSS we may send.
    pub(crate) snd_mss: usize,
    /// Bytes from `snd_buf_seq` on: unacknowledged, then unsent.
    pub(crate) snd_buf: ByteRing,
    pub(crate) snd_buf_seq: SeqNum,
    /// The application closed its sending side.
    pub(crate) close_requested: bool,
    /// The application has more to queue as soon as there is room (the relay's last read
    /// filled the send buffer): a last segment shorter than the MSS waits for it while data
    /// is in flight (as MSG_MORE; output.rs).
    pub(crate) snd_more: bool,
    /// Our FIN's sequence number, once sent.
    pub(crate) fin_seq: Option<SeqNum>,

    // Receive sequence space.
    pub(crate) irs: SeqNum,
    pub(crate) rcv_nxt: SeqNum,
    /// Right edge of the window we advertised (never moved left, RFC 9293 §3.8.6.2.2).
    pub(crate) rcv_adv: SeqNum,
    pub(crate) rcv_wscale: u8,
    pub(crate) rcv_buf: ByteRing,
    pub(crate) assembler: Assembler,
    /// Sequence number of the peer's FIN if it arrived out of order.
    pub(crate) peer_fin: Option<SeqNum>,
    pub(crate) peer_closed: bool,

    // Options.
    pub(crate) sack_ok: bool,
    pub(crate) ts_ok: bool,
    pub(crate) ts_recent: u32,
    /// Our TSval = ts_base + milliseconds since `created`.
    pub(crate) ts_base: u32,

    // Loss recovery and congestion control.
    pub(crate) rtt: RttEstimator,
    /// Segment being timed without timestamps (Karn: dropped if retransmitted).
    pub(crate) rtt_probe: Option<(SeqNum, Instant)>,
    pub(crate) cc: Box<dyn CongestionControl>,
    pub(crate) dup_acks: u32,
    /// NewReno: recovery ends when this is acknowledged (RFC 6582 "recover").
    pub(crate) recover: Option<SeqNum>,
    /// After a retransmission timeout: SND.MAX when it fired. Until the cumulative ACK
    /// passes it, what was outstanding is being resent from SND.UNA in slow start, and
    /// duplicate ACKs or the SACKs of data sent before the timeout must not start fast
    /// recovery again (RFC 6582 §3.2 step 1's "recover", RFC 6675 §5.1's RecoveryPoint):
    /// each would cut the window anew, down to two segments for as long as that takes.
    pub(crate) rto_recover: Option<SeqNum>,
    pub(crate) retransmit_count: u32,
    /// Ranges above `snd_una` the peer reported holding (RFC 2018 scoreboard), sorted,
    /// disjoint; retransmissions skip them.
    pub(crate) sacked: Vec<(SeqNum, SeqNum)>,
    /// SACK recovery: the end of the last hole retransmitted (RFC 6675 HighRxt).
    pub(crate) high_rxt: SeqNum,
    /// SACK recovery: each retransmission still unconfirmed, in the order sent, with
    /// SND.MAX at the time (recovery.rs: a lost retransmission is found by what was sent
    /// after it arriving).
    pub(crate) rxt_marks: std::collections::VecDeque<recovery::RxtMark>,
    /// SACK recovery: retransmissions found lost, to be sent again (in order).
    pub(crate) relost: std::collections::VecDeque<(SeqNum, SeqNum)>,
    /// The current round (RFC 9406) ends when this is acknowledged.
    pub(crate) round_end: SeqNum,
    /// Tail loss probe (tlp.rs): the probe in flight, if any.
    pub(crate) tlp: Option<tlp::TlpEpisode>,
    /// SACK recovery started by a SACKed probe: every unSACKed byte below this is lost.
    pub(crate) lost_below: Option<SeqNum>,
    /// SACK recovery: Proportional Rate Reduction's accounting (prr.rs).
    pub(crate) prr: prr::Prr,
    /// The congestion state before the last fast recovery, until it proves real (undo.rs).
    pub(crate) undo: Option<undo::Undo>,

    // Timers (absolute deadlines).
    pub(crate) rtx_at: Option<Instant>,
    pub(crate) persist_at: Option<Instant>,
    pub(crate) persist_backoff: u32,
    pub(crate) delack_at: Option<Instant>,
    pub(crate) keepalive_at: Option<Instant>,
    pub(crate) keepalive_probes: u32,
    pub(crate) time_wait_at: Option<Instant>,
    pub(crate) fin_wait2_at: Option<Instant>,
    /// The tail loss probe's deadline (PTO).
    pub(crate) tlp_at: Option<Instant>,
    /// Pacing (pacing.rs): when the next segment may leave, the credit, when it was counted.
    pub(crate) pace_at: Option<Instant>,
    pub(crate) pace_credit: usize,
    pub(crate) pace_stamp: Instant,

    /// When we last answered an unacceptable segment with an ACK (rate limit, RFC 5961 §7).
    pub(crate) last_oow_ack: Option<Instant>,
    /// An ACK must go out with the next transmission (or alone).
    pub(crate) ack_now: bool,
    /// Full-sized segments received since the last ACK (RFC 9293 §3.8.6.3: ACK every second).
    pub(crate) unacked_segments: u32,
    /// In-order data arrived within a receive batch (`Engine::begin_batch`): its ACK goes
    /// out once, when the batch ends (see `Engine::end_batch`).
    pub(crate) ack_at_batch_end: bool,
    /// Set by the engine while a receive batch is being handled.
    pub(crate) in_batch: bool,
    /// RCV.NXT when the last ACK went out: how much an ACK held for the batch covers.
    pub(crate) rcv_nxt_acked: SeqNum,

    // Buffer auto-tuning (autotune.rs).
    /// Bytes the buffers took from the global budget beyond their start sizes.
    pub(crate) budget_taken: usize,
    /// The most in-order data that arrived within one round trip so far.
    pub(crate) rcv_space: usize,
    /// (RCV.NXT, time) when the current round trip's measurement began.
    pub(crate) rcv_space_start: Option<(SeqNum, Instant)>,
    /// Receiver-side RTT estimate.
    pub(crate) rcv_rtt: Option<Duration>,
    /// Without timestamps: (right edge of the window advertised, when), timing how long the
    /// peer takes to fill it.
    pub(crate) rcv_rtt_probe: Option<(SeqNum, Instant)>,

    pub(crate) outbox: Vec<OutSegment>,
    pub(crate) events: Vec<Event>,
    pub stats: TcbStats,
}

impl Tcb {
    fn new(
        cfg: &EngineConfig,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        now: Instant,
    ) -> Self {
        let iss = SeqNum(iss);
        Self {
            cfg: cfg.clone(),
            local,
            remote,
            state: State::Closed,
            created: now,
            last_recv: now,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            snd_wscale: 0,
            snd_mss: 536,
            snd_buf: ByteRing::new(cfg.send_buffer),
            snd_buf_seq: iss + 1u32,
            close_requested: false,
            snd_more: false,
            fin_seq: None,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            rcv_wscale: 0,
            rcv_buf: ByteRing::new(cfg.recv_buffer),
            assembler: Assembler::default(),
            peer_fin: None,
            peer_closed: false,
            sack_ok: false,
            ts_ok: false,
            ts_recent: 0,
            // An arbitrary clock origin (RFC 7323 §5.4), so that TSval 0 (which peers may
            // read as "no echo") is not what the first segments carry.
            ts_base: iss.0.rotate_left(13) | 1,
            rtt: RttEstimator::new(cfg.initial_rto, cfg.min_rto, cfg.max_rto),
            rtt_probe: None,
            cc: cfg.congestion.controller(536),
            dup_acks: 0,
            recover: None,
            rto_recover: None,
            retransmit_count: 0,
            sacked: Vec::new(),
            high_rxt: iss,
            rxt_marks: std::collections::VecDeque::new(),
            relost: std::collections::VecDeque::new(),
            round_end: iss,
            tlp: None,
            lost_below: None,
            prr: prr::Prr::default(),
            undo: None,
            rtx_at: None,
            persist_at: None,
            persist_backoff: 0,
            delack_at: None,
            keepalive_at: None,
            keepalive_probes: 0,
            time_wait_at: None,
            fin_wait2_at: None,
            tlp_at: None,
            pace_at: None,
            // A full burst allowance to start with: the initial window leaves at once.
            pace_credit: usize::MAX,
            pace_stamp: now,
            last_oow_ack: None,
            ack_now: false,
            unacked_segments: 0,
            ack_at_batch_end: false,
            in_batch: false,
            rcv_nxt_acked: SeqNum(0),
            budget_taken: 0,
            rcv_space: 10 * usize::from(cfg.mss),
            rcv_space_start: None,
            rcv_rtt: None,
            rcv_rtt_probe: None,
            outbox: Vec::new(),
            events: Vec::new(),
            stats: TcbStats::default(),
        }
    }

    /// Active open (RFC 9293 §3.10.1): sends a SYN, enters SYN-SENT.
    pub fn connect(
        cfg: &EngineConfig,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        now: Instant,
    ) -> Self {
        let mut t = Self::new(cfg, local, remote, iss, now);
        t.ts_ok = cfg.timestamps;
        t.sack_ok = cfg.sack;
        t.set_state(State::SynSent, now);
        t.send_syn(now);
        t
    }

    /// Passive open from a SYN that reached a listener (cookies off): SYN-RECEIVED, and the
    /// SYN-ACK is queued.
    pub fn accept<P: AsRef<[u8]>>(
        cfg: &EngineConfig,
        local: SocketAddr,
        remote: SocketAddr,
        iss: u32,
        syn: &TcpRepr<P>,
        now: Instant,
    ) -> Self {
        let mut t = Self::new(cfg, local, remote, iss, now);
        t.irs = SeqNum(syn.seq);
        t.rcv_nxt = t.irs + 1u32;
        t.negotiate(syn);
        t.snd_wnd = usize::from(syn.window); // SYN windows are never scaled (RFC 7323 §2.2).
        t.snd_wl1 = SeqNum(syn.seq);
        t.set_state(State::SynReceived, now);
        t.send_syn(now);
        t
    }

    /// A connection whose handshake XDP completed with a SYN cookie: ESTABLISHED at once.
    /// `ack` is the segment that completed it (the cookie ACK, possibly carrying data), which
    /// the caller then feeds to `on_segment`.
    pub fn from_cookie<P>(
        cfg: &EngineConfig,
        local: SocketAddr,
        remote: SocketAddr,
        h: &CookieHandshake,
        ack: &TcpRepr<P>,
        now: Instant,
    ) -> Self {
        let mut t = Self::new(cfg, local, remote, h.server_isn, now);
        t.irs = SeqNum(h.client_isn);
        t.rcv_nxt = t.irs + 1u32;
        t.snd_una = t.iss + 1u32;
        t.snd_nxt = t.snd_una;
        t.snd_max = t.snd_una;
        t.snd_mss = usize::from(h.mss).min(usize::from(cfg.mss));
        t.cc = cfg.congestion.controller(t.snd_mss);
        if let Some((client, ours)) = h.wscale {
            t.snd_wscale = client.min(14);
            t.rcv_wscale = ours.min(14);
        }
        t.sack_ok = h.sack && cfg.sack;
        if let Some((ts_recent, our_tsval)) = h.timestamps {
            t.ts_ok = true;
            t.ts_recent = ts_recent;
            t.ts_base = our_tsval;
        }
        t.snd_wnd = usize::from(ack.window) << t.snd_wscale;
        t.max_snd_wnd = t.snd_wnd;
        t.snd_wl1 = SeqNum(ack.seq);
        t.snd_wl2 = SeqNum(ack.ack);
        t.rcv_adv = t.rcv_nxt + t.rcv_window();
        t.set_state(State::Established, now);
        t.events.push(Event::Connected);
        t
    }

    /// Options of the peer's SYN (RFC 9293 §3.7.1, RFC 7323 §2-3, RFC 2018 §2).
    fn negotiate<P>(&mut self, syn: &TcpRepr<P>) {
        let o = &syn.options;
        self.snd_mss = usize::from(o.mss.unwrap_or(536))
            .min(usize::from(self.cfg.mss))
            .max(64);
        self.cc = self.cfg.congestion.controller(self.snd_mss);
        if let Some(ws) = o.wscale {
            self.snd_wscale = ws.min(14);
            self.rcv_wscale = self.cfg.wscale.min(14);
        }
        self.sack_ok = self.cfg.sack && o.sack_permitted;
        if let (true, Some((tsval, _))) = (self.cfg.timestamps, o.timestamps) {
            self.ts_ok = true;
            self.ts_recent = tsval;
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub(crate) fn set_state(&mut self, state: State, now: Instant) {
        if state == self.state {
            return;
        }
        tracing::trace!(
            "{} -> {}: {} -> {}",
            self.local,
            self.remote,
            self.state.name(),
            state.name()
        );
        self.state = state;
        match state {
            State::TimeWait => {
                // RFC 9293 §3.10.7.4: 2·MSL, no other timers. Nothing is left to send or
                // read: the buffers go, so that TIME-WAIT costs only the TCB.
                self.release_buffers();
                self.return_budget();
                self.rtx_at = None;
                self.persist_at = None;
                self.keepalive_at = None;
                self.fin_wait2_at = None;
                self.pace_at = None;
                self.tlp_at = None;
                self.time_wait_at = Some(now + self.cfg.msl * 2);
            }
            State::Closed => {
                self.return_budget();
                self.rtx_at = None;
                self.persist_at = None;
                self.pace_at = None;
                self.tlp_at = None;
                self.delack_at = None;
                self.keepalive_at = None;
                self.time_wait_at = None;
                self.fin_wait2_at = None;
                self.events.push(Event::Closed);
            }
            State::FinWait2 => {
                self.fin_wait2_at = Some(now + self.cfg.fin_wait2_timeout);
            }
            _ => {}
        }
    }

    // --- The application's side ---------------------------------------------------------

    fn can_send(&self) -> bool {
        !self.close_requested
            && matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
    }

    /// Queues bytes for sending; returns how many fit in the send buffer.
    pub fn send(&mut self, data: &[u8], now: Instant) -> usize {
        if !self.can_send() {
            return 0;
        }
        self.snd_more = false;
        let n = self.snd_buf.extend(data);
        if self.state.synchronized() {
            self.output(now);
        }
        n
    }

    /// Free space of the send buffer for up to `want` bytes, to write into directly (the
    /// relay reads the upstream socket into it); `send_commit` then queues what was written.
    /// Empty when nothing may be sent.
    pub fn send_spare(&mut self, want: usize) -> (&mut [u8], &mut [u8]) {
        let want = if self.can_send() { want } else { 0 };
        self.snd_buf.spare_mut(want)
    }

    /// Queues the `n` bytes written into what `send_spare` gave. `more`: the application has
    /// more as soon as there is room (its read filled the space), so a short last segment
    /// may wait for it; [`Tcb::send_push`] says when nothing more is coming.
    pub fn send_commit(&mut self, n: usize, more: bool, now: Instant) {
        if n == 0 {
            return;
        }
        self.snd_more = more;
        self.snd_buf.commit(n);
        if self.state.synchronized() {
            self.output(now);
        }
    }

    /// The application has nothing more for now: a short last segment that waited for more
    /// goes.
    pub fn send_push(&mut self, now: Instant) {
        if std::mem::take(&mut self.snd_more) && self.state.synchronized() {
            self.output(now);
        }
    }

    /// Free space in the send buffer.
    pub fn send_capacity(&self) -> usize {
        if self.can_send() {
            self.snd_buf.free()
        } else {
            0
        }
    }

    /// Bytes the peer has not acknowledged yet, or we have not sent yet.
    pub fn send_queued(&self) -> usize {
        self.snd_buf.len()
    }

    /// Reads in-order received bytes. Reading opens the window, so an update may be sent.
    pub fn recv(&mut self, buf: &mut [u8], now: Instant) -> usize {
        let (a, b) = self.rcv_buf.as_slices();
        let n = buf.len().min(a.len() + b.len());
        let first = n.min(a.len());
        buf[..first].copy_from_slice(&a[..first]);
        buf[first..n].copy_from_slice(&b[..n - first]);
        self.recv_consume(n, now);
        n
    }

    /// The in-order received bytes, in place (the relay writes them to the upstream socket
    /// from here); `recv_consume` then drops what was taken.
    pub fn recv_slices(&self) -> (&[u8], &[u8]) {
        self.rcv_buf.as_slices()
    }

    /// Drops `n` read bytes; the window opens, so an update may be sent.
    pub fn recv_consume(&mut self, n: usize, now: Instant) {
        if n == 0 {
            return;
        }
        self.rcv_buf.consume(n);
        if self.rcv_buf.is_empty() {
            self.rcv_buf.release();
        }
        self.maybe_window_update(now);
    }

    /// `--echo`: moves received bytes into the send buffer, as far as it has room.
    pub fn echo(&mut self, now: Instant) {
        if !self.can_send() {
            return;
        }
        let n = self.rcv_buf.len().min(self.snd_buf.free());
        if n == 0 {
            return;
        }
        let (a, b) = self.rcv_buf.slices(0, n);
        let moved = self.snd_buf.extend(a) + self.snd_buf.extend(b);
        self.recv_consume(moved, now);
        if self.state.synchronized() {
            self.output(now);
        }
    }

    pub fn recv_available(&self) -> usize {
        self.rcv_buf.len()
    }

    /// The peer sent FIN and everything before it has been read.
    pub fn recv_finished(&self) -> bool {
        self.peer_closed && self.rcv_buf.is_empty()
    }

    /// Bytes held for this connection now (both buffers' allocations; out-of-order data
    /// lies in the receive buffer).
    pub fn buffer_memory(&self) -> usize {
        self.snd_buf.allocated() + self.rcv_buf.allocated()
    }

    pub(crate) fn release_buffers(&mut self) {
        self.snd_buf.release();
        self.rcv_buf.release();
    }

    /// Graceful close of our sending side (RFC 9293 §3.10.4): FIN after the queued data.
    pub fn close(&mut self, now: Instant) {
        match self.state {
            State::SynSent | State::Listen => self.set_state(State::Closed, now),
            State::SynReceived | State::Established | State::CloseWait => {
                self.close_requested = true;
                if self.state != State::SynReceived {
                    self.output(now);
                }
            }
            _ => {}
        }
    }

    /// Whether a SYN arriving in TIME-WAIT may open a new incarnation of the connection
    /// (RFC 1122 §4.2.2.13, RFC 6191): its timestamp is newer, or without timestamps its
    /// sequence number lies beyond everything of the old one.
    pub fn accepts_new_syn<P>(&self, syn: &TcpRepr<P>) -> bool {
        if self.state != State::TimeWait || syn.flags & (SYN | ACK | RST) != SYN {
            return false;
        }
        match (self.ts_ok, syn.options.timestamps) {
            (true, Some((tsval, _))) => (tsval.wrapping_sub(self.ts_recent) as i32) > 0,
            _ => SeqNum(syn.seq) > self.rcv_nxt,
        }
    }

    /// Abort (RFC 9293 §3.10.5): RST to the peer, buffers discarded. In CLOSING, LAST-ACK
    /// and TIME-WAIT our FIN is out and the TCB just goes.
    pub fn abort(&mut self, now: Instant) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            let rst = self.rst_segment(self.snd_nxt.0);
            self.push_segment(rst);
        }
        self.reset(ResetReason::Aborted, now);
    }

    /// A bare RST from this connection's ports with sequence number `seq`.
    pub(crate) fn rst_segment(&self, seq: u32) -> OutSegment {
        TcpRepr {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            flags: crate::wire::tcp::RST,
            ..TcpRepr::default()
        }
    }

    pub(crate) fn reset(&mut self, why: ResetReason, now: Instant) {
        self.own_outbox_payloads();
        self.snd_buf.clear();
        self.rcv_buf.clear();
        self.release_buffers();
        self.assembler = Assembler::default();
        self.events.push(Event::Reset(why));
        self.set_state(State::Closed, now);
    }

    // --- The I/O layer's side -----------------------------------------------------------

    /// Segments to transmit, in order, each with its payload copied out (tests, slow paths).
    pub fn take_outgoing(&mut self) -> Vec<TcpRepr> {
        let mut out = Vec::with_capacity(self.outbox.len());
        self.drain_outgoing(|seg, payload| {
            out.push(seg.clone().with_payload(payload.concat()));
        });
        out
    }

    /// Hands each segment to transmit to `f`, in order, with its payload as up to two slices
    /// (of the send buffer, or of the segment's own bytes). Nothing is allocated: `f` copies
    /// the bytes into the frame that carries them.
    pub fn drain_outgoing(&mut self, mut f: impl FnMut(&OutSegment, [&[u8]; 2])) {
        let outbox = std::mem::take(&mut self.outbox);
        for seg in &outbox {
            f(seg, self.payload_of(&seg.payload));
        }
        // Keep the allocation for the next segments.
        self.outbox = outbox;
        self.outbox.clear();
    }

    /// The bytes of a payload: a range of the send buffer (what is still in it), or the
    /// payload's own.
    pub fn payload_of<'a>(&'a self, p: &'a OutPayload) -> [&'a [u8]; 2] {
        match p {
            OutPayload::Bytes(b) => [b, &[]],
            OutPayload::Send { seq, len } => {
                // What was acknowledged meanwhile is gone; the rest is sent as it is.
                if *seq < self.snd_buf_seq {
                    return [&[], &[]];
                }
                let off = *seq - self.snd_buf_seq;
                let len = (*len).min(self.snd_buf.len().saturating_sub(off));
                let (a, b) = self.snd_buf.slices(off.min(self.snd_buf.len()), len);
                [a, b]
            }
        }
    }

    /// Gives every queued segment its own copy of its payload: the send buffer is about to
    /// lose bytes (acknowledged, or reset) that waiting segments still name.
    pub(crate) fn own_outbox_payloads(&mut self) {
        if !self
            .outbox
            .iter()
            .any(|s| matches!(s.payload, OutPayload::Send { len, .. } if len > 0))
        {
            return;
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        for seg in &mut outbox {
            if matches!(seg.payload, OutPayload::Send { len, .. } if len > 0) {
                let bytes = self.payload_of(&seg.payload).concat();
                seg.payload = OutPayload::Bytes(bytes);
            }
        }
        self.outbox = outbox;
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The earliest timer deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.rtx_at,
            self.persist_at,
            self.delack_at,
            self.keepalive_at,
            self.time_wait_at,
            self.fin_wait2_at,
            self.pace_at,
            self.tlp_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn snd_una(&self) -> u32 {
        self.snd_una.0
    }
    pub fn snd_nxt(&self) -> u32 {
        self.snd_nxt.0
    }
    pub fn rcv_nxt(&self) -> u32 {
        self.rcv_nxt.0
    }
    pub fn snd_wnd(&self) -> usize {
        self.snd_wnd
    }
    pub fn rcv_wnd(&self) -> usize {
        self.rcv_window()
    }
    pub fn wscale(&self) -> (u8, u8) {
        (self.snd_wscale, self.rcv_wscale)
    }
    pub fn mss(&self) -> usize {
        self.snd_mss
    }
    pub fn srtt(&self) -> Option<Duration> {
        self.rtt.srtt()
    }
    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }
    pub fn cwnd(&self) -> usize {
        self.cc.window()
    }
    /// Why HyStart ended slow start, if it did (hystart.rs).
    pub fn slow_start_exit(&self) -> Option<crate::engine::hystart::SlowStartExit> {
        self.cc.slow_start_exit()
    }
    pub fn age(&self, now: Instant) -> Duration {
        now - self.created
    }
    /// Time left in TIME-WAIT.
    pub fn time_wait_left(&self, now: Instant) -> Option<Duration> {
        self.time_wait_at.map(|t| t.saturating_since(now))
    }
}

#[cfg(test)]
mod tests;
