//! Building and sending segments: SYN / SYN-ACK, data with the sliding window, FIN, ACKs.

use super::{OutPayload, OutSegment, State, Tcb};
use crate::{
    engine::{seq::SeqNum, time::Instant},
    wire::tcp::{ACK, FIN, PSH, RST, SYN, TcpOptions, TcpRepr},
};

impl Tcb {
    /// Our receive window: buffer space not yet taken by unread data. (Out-of-order data
    /// lies inside the window, at its place in the buffer: it takes no extra room.)
    pub(crate) fn rcv_window(&self) -> usize {
        self.rcv_buf.free()
    }

    /// Payload that fits in one segment: the MSS less the options every segment carries
    /// (RFC 9293 §3.7.1: the MSS counts data only; RFC 7323 §3.2: the timestamps option takes
    /// 12 bytes of it in practice, as do SACK blocks).
    pub(crate) fn eff_mss(&self) -> usize {
        let mut opts = if self.ts_ok { 12 } else { 0 };
        if self.sack_ok && !self.assembler.is_empty() {
            let blocks = self.assembler.count().min(if self.ts_ok { 3 } else { 4 });
            opts += 4 + 8 * blocks;
        }
        self.snd_mss.saturating_sub(opts).max(1)
    }

    /// Our TSval clock: milliseconds, continuing from what the handshake announced.
    pub(crate) fn ts_now(&self, now: Instant) -> u32 {
        self.ts_base
            .wrapping_add((now - self.created).as_millis() as u32)
    }

    /// Fills in ACK, window and options common to every segment we send after the SYN.
    fn finish<P>(&mut self, mut seg: TcpRepr<P>, now: Instant) -> TcpRepr<P> {
        seg.src_port = self.local.port();
        seg.dst_port = self.remote.port();
        if seg.flags & ACK != 0 {
            seg.ack = self.rcv_nxt.0;
        }
        // Advertise the window, never retracting the right edge we announced.
        let wnd = self.rcv_window();
        let edge = (self.rcv_nxt + wnd).max(self.rcv_adv);
        let mut adv = edge - self.rcv_nxt;
        if seg.flags & SYN == 0 {
            adv >>= self.rcv_wscale;
        }
        seg.window = adv.min(usize::from(u16::MAX)) as u16;
        let shift = if seg.flags & SYN == 0 {
            self.rcv_wscale
        } else {
            0
        };
        self.rcv_adv = self.rcv_nxt + (usize::from(seg.window) << shift);
        if self.ts_ok {
            seg.options.timestamps = Some((self.ts_now(now), self.ts_recent));
        }
        if self.sack_ok && seg.flags & SYN == 0 && !self.assembler.is_empty() {
            // RFC 2018 §4: the most recent block first; three fit beside timestamps.
            let mut blocks = [(0, 0); 3];
            let n = self.assembler.sack_blocks(&mut blocks);
            for (i, &(s, e)) in blocks[..n].iter().enumerate() {
                seg.options.sack[i] = Some(((self.rcv_nxt + s).0, (self.rcv_nxt + e).0));
            }
        }
        seg
    }

    pub(crate) fn push_segment(&mut self, seg: OutSegment) {
        self.stats.segments_out += 1;
        self.outbox.push(seg);
    }

    /// SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED), first time or retransmitted.
    pub(crate) fn send_syn(&mut self, now: Instant) {
        let mut flags = SYN;
        if self.state == State::SynReceived {
            flags |= ACK;
        }
        let seg = TcpRepr {
            seq: self.iss.0,
            flags,
            options: TcpOptions {
                mss: Some(self.cfg.mss),
                // RFC 7323 §2.2: in a SYN-ACK, only if the SYN had it.
                wscale: (self.state == State::SynSent
                    || self.snd_wscale != 0
                    || self.rcv_wscale != 0)
                    .then_some(self.cfg.wscale),
                sack_permitted: self.sack_ok,
                ..TcpOptions::default()
            },
            ..TcpRepr::default()
        };
        let mut seg = self.finish(seg, now);
        if self.state == State::SynSent {
            seg.options.timestamps = self.ts_ok.then(|| (self.ts_now(now), 0));
        }
        self.snd_nxt = self.iss + 1u32;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        self.push_segment(seg);
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rtt.rto());
        }
        if self.rtt_probe.is_none() && self.retransmit_count == 0 {
            self.rtt_probe = Some((self.iss, now));
        }
    }

    /// A segment with no data: ACK (and whatever window/SACK information is current).
    ///
    /// Its sequence number is the highest we sent that lies in the peer's window (Linux's
    /// `tcp_acceptable_seq`), not `snd_nxt`: after a timeout rewound `snd_nxt` for go-back-N,
    /// an ACK numbered below the peer's RCV.NXT would fail its acceptability test and its
    /// acknowledgment would be ignored.
    pub(crate) fn send_ack(&mut self, now: Instant) {
        let seq = self
            .snd_max
            .min(self.snd_una + self.snd_wnd)
            .max(self.snd_nxt.min(self.snd_max));
        let seg = TcpRepr {
            seq: seq.0,
            flags: ACK,
            ..TcpRepr::default()
        };
        let seg = self.finish(seg, now);
        self.push_segment(seg);
        self.ack_sent();
    }

    fn ack_sent(&mut self) {
        self.ack_now = false;
        self.ack_at_batch_end = false;
        self.delack_at = None;
        self.unacked_segments = 0;
        self.rcv_nxt_acked = self.rcv_nxt;
    }

    /// The states in which data (or our FIN) may go, or still be unacknowledged.
    pub(crate) fn sends_data(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Sends what the windows allow: new data, then our FIN when the application closed; an
    /// ACK alone if one is owed and nothing else carried it.
    pub(crate) fn output(&mut self, now: Instant) {
        if self.sends_data() {
            self.fill_window(now);
        }
        if self.ack_now {
            self.send_ack(now);
        }
    }

    /// Sends segments while the send and congestion windows have room.
    fn fill_window(&mut self, now: Instant) {
        if self.in_sack_recovery() {
            self.sack_recovery_output(now);
            return;
        }
        // Retransmitting after a timeout: what the peer SACKed below SND.NXT is skipped and
        // is not in flight (RFC 6675 §4's pipe: SACKed bytes have left the network).
        let mut sacked_below_nxt: usize = self
            .sacked
            .iter()
            .take_while(|&&(l, _)| l < self.snd_nxt)
            .map(|&(l, r)| r.min(self.snd_nxt) - l)
            .sum();
        loop {
            if self.snd_nxt < self.snd_max
                && let Some(&(_, r)) = self
                    .sacked
                    .iter()
                    .find(|&&(l, r)| l <= self.snd_nxt && self.snd_nxt < r)
            {
                sacked_below_nxt += r - self.snd_nxt;
                self.snd_nxt = r;
                continue;
            }
            let sent = (self.snd_nxt - self.snd_buf_seq).min(self.snd_buf.len());
            let mut unsent = self.snd_buf.len() - sent;
            // A retransmission stops at the next SACKed block.
            if self.snd_nxt < self.snd_max
                && let Some(&(l, _)) = self.sacked.iter().find(|&&(l, _)| l > self.snd_nxt)
            {
                unsent = unsent.min(l - self.snd_nxt);
            }
            let in_flight = self.snd_nxt - self.snd_una;
            let pipe = in_flight.saturating_sub(sacked_below_nxt);
            let n = unsent
                .min(self.snd_wnd.saturating_sub(in_flight))
                .min(self.cc.window().saturating_sub(pipe))
                .min(self.eff_mss());
            // The FIN follows the last byte; after it is sent snd_nxt is past the end, so
            // this also re-sends it after a retransmission timeout rewound snd_nxt.
            let fin = self.close_requested && self.snd_nxt + n == self.buffer_end();
            if n == 0 && !fin {
                if unsent > 0 && self.snd_wnd == 0 && in_flight == 0 && self.persist_at.is_none() {
                    // RFC 9293 §3.8.6.1: probe a zero window.
                    self.persist_at = Some(now + self.rtt.rto());
                }
                break;
            }
            // Sender silly-window avoidance (RFC 9293 §3.8.6.2.1): with data in flight (an
            // ACK will come to send more), new data shorter than the MSS goes only if it is
            // all that is queued and nothing more is coming at once (pushed: a relayed stream
            // otherwise left a runt after every ACK's worth, a third of its segments), or if
            // it fills half the largest window the peer offered. A window or a congestion
            // window with less than an MSS of room waits for room. Nagle (§3.7.4), when on,
            // also holds pushed runts.
            if n > 0 && n < self.eff_mss() && in_flight > 0 && !fin && self.snd_nxt >= self.snd_max
            {
                let pushed_tail = n == unsent && !self.snd_more && !self.cfg.nagle;
                let half_window = !self.cfg.nagle && n >= self.max_snd_wnd / 2;
                if !pushed_tail && !half_window {
                    break;
                }
            }
            if n > 0 && !self.pacing_allows(n, now) {
                break;
            }
            if n == 0 && fin && self.fin_onto_queued_segment(now) {
                break;
            }
            self.pacing_spend(n);
            self.send_data(sent, n, fin, now);
            if fin {
                break;
            }
        }
    }

    /// Our first FIN rides on the last data segment if that one is still waiting in the
    /// outbox (as Linux's `tcp_send_fin` adds it to the last queued skb): a response
    /// followed by the upstream's close leaves as one segment, and the client answers both
    /// with one ACK. Returns whether it did.
    fn fin_onto_queued_segment(&mut self, now: Instant) -> bool {
        if self.snd_nxt != self.snd_max || self.fin_seq.is_some() {
            return false;
        }
        let Some(last) = self.outbox.last_mut() else {
            return false;
        };
        let OutPayload::Send { len, .. } = last.payload else {
            return false;
        };
        if len == 0 || last.flags & (SYN | RST | FIN) != 0 || SeqNum(last.seq) + len != self.snd_nxt
        {
            return false;
        }
        last.flags |= FIN;
        self.snd_nxt = self.snd_nxt + 1u32;
        self.snd_max = self.snd_nxt;
        self.fin_sent(now);
        true
    }

    /// Our FIN (at SND.NXT − 1) has gone: RFC 9293 §3.10.4 CLOSE's state changes.
    fn fin_sent(&mut self, now: Instant) {
        self.fin_seq = Some(self.snd_nxt - 1u32);
        match self.state {
            State::Established => self.set_state(State::FinWait1, now),
            State::CloseWait => self.set_state(State::LastAck, now),
            _ => {}
        }
    }

    /// One segment: `n` bytes from buffer offset `sent` (at `snd_nxt`), plus FIN if `fin`.
    pub(crate) fn send_data(&mut self, sent: usize, n: usize, fin: bool, now: Instant) {
        // The bytes stay in the send buffer until the segment is put in a frame.
        let payload = OutPayload::Send {
            seq: self.snd_buf_seq + sent,
            len: n,
        };
        let mut flags = ACK;
        if n > 0 && sent + n == self.snd_buf.len() {
            flags |= PSH;
        }
        if fin {
            flags |= FIN;
        }
        let seg = TcpRepr {
            seq: self.snd_nxt.0,
            flags,
            payload,
            ..TcpRepr::default()
        };
        let seg = self.finish(seg, now);
        let new_data = self.snd_nxt >= self.snd_max;
        if !new_data {
            self.stats.retransmits += 1;
            self.undo_count_retransmission();
        } else {
            self.stats.bytes_out += n as u64;
            if !self.ts_ok && self.rtt_probe.is_none() && n > 0 {
                self.rtt_probe = Some((self.snd_nxt, now));
            }
        }
        self.snd_nxt = self.snd_nxt + n + usize::from(fin);
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if fin {
            self.fin_sent(now);
        }
        self.push_segment(seg);
        self.ack_sent();
        if self.rtx_at.is_none() {
            self.rtx_at = Some(now + self.rtt.rto());
        }
        if new_data {
            self.arm_tail_loss_probe(now);
        }
        self.persist_at = None;
    }

    /// After the application read data: announce the larger window if it grew by at least
    /// two segments or half the buffer (receiver-side SWS avoidance, RFC 9293 §3.8.6.2.2).
    pub(crate) fn maybe_window_update(&mut self, now: Instant) {
        if !matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        ) {
            return;
        }
        let advertised = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv - self.rcv_nxt
        } else {
            0
        };
        // What the window field can express at all.
        let wnd = self
            .rcv_window()
            .min(usize::from(u16::MAX) << self.rcv_wscale);
        let step = (2 * usize::from(self.cfg.mss)).min(self.rcv_buf.max() / 2);
        if wnd >= advertised + step {
            self.send_ack(now);
        }
    }

    /// Retransmits the first unacknowledged segment (timeout or fast retransmit); the rest
    /// follows as ACKs open the window (go-back-N from `snd_una`).
    pub(crate) fn retransmit(&mut self, now: Instant) {
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.stats.retransmits += 1;
            self.send_syn(now);
            return;
        }
        self.snd_nxt = self.snd_una;
        let sent = (self.snd_nxt - self.snd_buf_seq).min(self.snd_buf.len());
        let n = (self.snd_buf.len() - sent).min(self.eff_mss());
        let fin = self.close_requested && self.snd_nxt + n == self.buffer_end();
        if n > 0 || fin {
            self.send_data(sent, n, fin, now);
        }
        self.rtx_at = Some(now + self.rtt.rto());
    }

    /// Fast retransmit (RFC 5681 §3.2, RFC 6582): the segment at `snd_una` again, without
    /// moving `snd_nxt`.
    pub(crate) fn fast_retransmit(&mut self, now: Instant) {
        let saved = self.snd_nxt;
        self.snd_nxt = self.snd_una;
        let n = self.snd_buf.len().min(self.eff_mss());
        let fin = self.close_requested && self.snd_nxt + n == self.buffer_end();
        if n > 0 || fin {
            self.send_data(0, n, fin, now);
        }
        self.snd_nxt = saved.max(self.snd_nxt);
        self.rtx_at = Some(now + self.rtt.rto());
    }

    /// Sends one byte beyond the zero window (RFC 9293 §3.8.6.1) or, with nothing to send,
    /// a keep-alive probe: SEG.SEQ = SND.NXT - 1, no data (RFC 1122 §4.2.3.6).
    pub(crate) fn send_probe(&mut self, now: Instant, zero_window: bool) {
        let sent = (self.snd_nxt - self.snd_buf_seq).min(self.snd_buf.len());
        let seg = if zero_window && sent < self.snd_buf.len() {
            TcpRepr {
                seq: self.snd_nxt.0,
                flags: ACK,
                payload: OutPayload::Send {
                    seq: self.snd_buf_seq + sent,
                    len: 1,
                },
                ..TcpRepr::default()
            }
        } else {
            TcpRepr {
                seq: (self.snd_nxt - 1u32).0,
                flags: ACK,
                ..TcpRepr::default()
            }
        };
        let seg = self.finish(seg, now);
        self.push_segment(seg);
    }

    /// The sequence number after the last byte the application queued (our FIN's).
    pub(crate) fn buffer_end(&self) -> SeqNum {
        self.snd_buf_seq + self.snd_buf.len()
    }
}
