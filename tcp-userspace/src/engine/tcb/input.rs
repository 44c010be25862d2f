//! Segment arrival (RFC 9293 §3.10.7), with RFC 5961's defences and RFC 7323's PAWS.

use super::{Event, ResetReason, State, Tcb};
use crate::{
    engine::{seq::SeqNum, time::Instant},
    wire::tcp::{ACK, FIN, RST, SYN, TcpRepr},
};

/// Most in-order data an ACK held for the end of a receive batch may cover: beyond, the ACK
/// goes at once, so that the sender's window keeps moving and its bursts stay within what a
/// NIC ring (here veth's 256 frames) absorbs; 64 KiB, what GRO merges, overflowed it.
const BATCH_ACK_BYTES: usize = 32 * 1024;

impl Tcb {
    /// Processes one segment of this connection.
    pub fn on_segment<P: AsRef<[u8]> + Clone>(&mut self, seg: &TcpRepr<P>, now: Instant) {
        self.stats.segments_in += 1;
        match self.state {
            State::Closed | State::Listen => return,
            State::SynSent => {
                self.on_segment_syn_sent(seg, now);
                self.output(now);
                return;
            }
            _ => {}
        }
        // Simultaneous open (RFC 9293 §3.5, figure 7): the peer's SYN-ACK repeats the SYN we
        // already took; what is new in it is the ACK of ours.
        let stripped;
        let seg = if self.state == State::SynReceived
            && seg.flags & (SYN | ACK) == (SYN | ACK)
            && SeqNum(seg.seq) == self.irs
            && SeqNum(seg.ack) == self.iss + 1u32
        {
            stripped = TcpRepr {
                seq: seg.seq.wrapping_add(1),
                flags: seg.flags & !SYN,
                ..seg.clone()
            };
            &stripped
        } else {
            seg
        };
        let has = |f: u8| seg.flags & f != 0;
        let seq = SeqNum(seg.seq);
        if self.state == State::SynReceived && has(SYN) && !has(ACK) && seq == self.irs {
            // A retransmitted SYN: our SYN-ACK was lost.
            self.send_syn(now);
            return;
        }
        let payload = seg.payload.as_ref();
        let seg_len = payload.len() + usize::from(has(SYN)) + usize::from(has(FIN));

        // First: sequence number, with PAWS before it (RFC 7323 §5.3).
        if self.ts_ok
            && !has(RST)
            && let Some((tsval, _)) = seg.options.timestamps
            && (tsval.wrapping_sub(self.ts_recent) as i32) < 0
        {
            self.send_ack(now);
            return;
        }
        if !self.acceptable(seq, seg_len) {
            if !has(RST) {
                if self.state == State::TimeWait && has(FIN) {
                    // A retransmitted FIN: our ACK was lost. Acknowledge, restart 2·MSL.
                    self.time_wait_at = Some(now + self.cfg.msl * 2);
                    self.send_ack(now);
                } else {
                    self.send_oow_ack(now);
                }
            }
            return;
        }
        self.last_recv = now;
        self.keepalive_probes = 0;

        // Second: RST (RFC 5961 §3.2: only an exact match resets; in-window → challenge).
        if has(RST) {
            if seq != self.rcv_nxt {
                self.send_ack(now);
                return;
            }
            match self.state {
                // RFC 1337: TIME-WAIT ignores RSTs (no assassination).
                State::TimeWait => {}
                State::SynReceived => self.reset(ResetReason::Refused, now),
                _ => self.reset(ResetReason::PeerReset, now),
            }
            return;
        }

        // Fourth: SYN in a synchronized state → challenge ACK (RFC 5961 §4.2).
        if has(SYN) {
            self.send_ack(now);
            return;
        }

        // Fifth: ACK.
        if !has(ACK) {
            return;
        }
        let ack = SeqNum(seg.ack);
        if self.state == State::SynReceived {
            if !(self.snd_una < ack && ack <= self.snd_max) {
                // RFC 9293 §3.10.7.4: <SEQ=SEG.ACK><CTL=RST>.
                let rst = self.rst_segment(seg.ack);
                self.push_segment(rst);
                return;
            }
            self.snd_wnd = usize::from(seg.window) << self.snd_wscale;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            self.set_state(State::Established, now);
            self.events.push(Event::Connected);
            self.arm_keepalive(now);
        }
        // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.NXT].
        if ack > self.snd_max || ack < self.snd_una - (self.max_snd_wnd as u32) {
            self.send_oow_ack(now);
            return;
        }
        self.process_ack(seg, ack, now);
        if self.state == State::Closed {
            return;
        }

        // Seventh: segment text.
        if !payload.is_empty()
            && matches!(
                self.state,
                State::Established | State::FinWait1 | State::FinWait2
            )
        {
            self.measure_receiver_rtt(seg.options.timestamps.map(|(_, ecr)| ecr), now);
            self.receive_data(seq, payload, now);
        }

        // Eighth: FIN.
        if has(FIN) {
            let fin = seq + payload.len();
            if fin == self.rcv_nxt {
                self.process_fin(now);
            } else if fin > self.rcv_nxt {
                self.peer_fin = Some(fin);
            }
        }

        // RFC 7323 §4.3: remember the newest TSval of an in-order segment.
        if let Some((tsval, _)) = seg.options.timestamps
            && self.ts_ok
            && seq <= self.rcv_nxt
            && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0
        {
            self.ts_recent = tsval;
        }
        if matches!(self.state, State::Established | State::CloseWait) {
            self.arm_keepalive(now);
        }
        self.output(now);
    }

    /// An ACK answering an unacceptable segment, at most one per 500 ms (RFC 5961 §7; Linux's
    /// tcp_invalid_ratelimit): two ends that each find the other's ACKs out of window must
    /// not ping-pong forever.
    fn send_oow_ack(&mut self, now: Instant) {
        if self
            .last_oow_ack
            .is_some_and(|t| now.saturating_since(t) < std::time::Duration::from_millis(500))
        {
            return;
        }
        self.last_oow_ack = Some(now);
        self.send_ack(now);
    }

    /// RFC 9293 §3.10.7.4, the four cases of the acceptability test. With a zero window an
    /// in-sequence segment is still taken for its ACK (its text is then trimmed away).
    fn acceptable(&self, seq: SeqNum, seg_len: usize) -> bool {
        let wnd = if self.rcv_adv > self.rcv_nxt {
            self.rcv_adv - self.rcv_nxt
        } else {
            0
        };
        let end = self.rcv_nxt + wnd;
        match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_range(self.rcv_nxt, end),
            (_, 0) => seq == self.rcv_nxt,
            _ => {
                seq.in_range(self.rcv_nxt, end)
                    || (seq + (seg_len as u32 - 1)).in_range(self.rcv_nxt, end)
            }
        }
    }

    fn process_ack<P: AsRef<[u8]>>(&mut self, seg: &TcpRepr<P>, ack: SeqNum, now: Instant) {
        let seq = SeqNum(seg.seq);
        let prr_mark = self.prr_mark();
        if self.sack_ok {
            self.undo_on_ack(seg, ack);
            self.record_sack(seg, ack);
            self.tail_loss_probe_ack(seg, ack, now);
            if self.in_sack_recovery() {
                let tsecr = seg
                    .options
                    .timestamps
                    .map(|(_, echo)| echo)
                    .filter(|_| self.ts_ok);
                self.detect_lost_retransmissions(ack, tsecr);
            }
        }
        let mss = self.snd_mss;
        let in_flight = self.snd_max - self.snd_una;
        if ack > self.snd_una {
            let acked = ack - self.snd_una;
            self.rtt_sample(seg, ack, now);
            let data = (ack - self.snd_buf_seq).min(self.snd_buf.len());
            // Segments still waiting in the outbox may name the bytes that go now.
            self.own_outbox_payloads();
            self.snd_buf.consume(data);
            self.snd_buf_seq = self.snd_buf_seq + data;
            self.snd_una = ack;
            if self.snd_nxt < self.snd_una {
                self.snd_nxt = self.snd_una;
            }
            match self.recover {
                // With SACK, output() sends what the scoreboard shows lost (recovery.rs).
                Some(recover) if ack < recover && self.sack_ok => {}
                Some(recover) if ack < recover => {
                    // RFC 6582 §3.2 (5): partial ACK, retransmit the next hole at once.
                    self.cc.on_partial_ack(acked, mss);
                    self.fast_retransmit(now);
                }
                Some(_) => {
                    self.recover = None;
                    self.end_sack_recovery();
                    self.cc.on_recovery_exit();
                }
                None => {
                    self.cc.on_ack(acked, mss, now, self.rtt.srtt());
                    self.tune_send_buffer();
                }
            }
            if ack >= self.round_end {
                self.cc.on_round_end();
                self.round_end = self.snd_max;
            }
            if self.rto_recover.is_some_and(|r| ack >= r) {
                self.rto_recover = None;
            }
            self.dup_acks = 0;
            self.retransmit_count = 0;
            self.rtx_at = if self.snd_una == self.snd_max {
                None
            } else {
                Some(now + self.rtt.rto())
            };
            if data > 0 {
                self.events.push(Event::Writable);
            }
            self.arm_tail_loss_probe(now);
        } else if ack == self.snd_una
            && seg.payload.as_ref().is_empty()
            && seg.flags & (SYN | FIN) == 0
            && in_flight > 0
            && (usize::from(seg.window) << self.snd_wscale) == self.snd_wnd
        {
            // RFC 5681 §2 duplicate ACK.
            self.dup_acks += 1;
            if self.dup_acks == 3 && self.recover.is_none() && self.rto_recover.is_none() {
                self.enter_recovery(in_flight, now);
            } else if self.dup_acks > 3 && self.recover.is_some() && !self.sack_ok {
                self.cc.on_dup_ack_in_recovery(mss);
            }
        }
        // RFC 6675 §4-5 (IsLost): with SACK, the segment at SND.UNA is lost once three
        // segments' worth of data above it were SACKed, however few duplicate ACKs told us:
        // receivers coalesce them (GRO and LRO merge the segments that follow a hole, and one
        // ACK answers the merged run).
        if ack == self.snd_una
            && self.recover.is_none()
            && self.rto_recover.is_none()
            && self.sack_ok
            && in_flight > 0
            && self.sacked_bytes() >= 3 * mss
        {
            self.enter_recovery(in_flight, now);
        }
        self.prr_ack(prr_mark);

        // Window update (RFC 9293 §3.10.7.4, fifth, ESTABLISHED).
        if self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack) {
            self.snd_wnd = usize::from(seg.window) << self.snd_wscale;
            self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if self.snd_wnd > 0 {
                self.persist_at = None;
                self.persist_backoff = 0;
            }
        }

        let fin_acked = self.fin_seq.is_some_and(|f| ack > f);
        match self.state {
            State::FinWait1 if fin_acked => self.set_state(State::FinWait2, now),
            State::Closing if fin_acked => self.set_state(State::TimeWait, now),
            State::LastAck if fin_acked => self.set_state(State::Closed, now),
            _ => {}
        }
    }

    /// Fast retransmit and recovery (RFC 5681 §3.2): the window is reduced; with SACK the
    /// holes go out from `output` (RFC 6675), without, the first one now (RFC 6582).
    pub(super) fn enter_recovery(&mut self, in_flight: usize, now: Instant) {
        self.undo_arm();
        self.recover = Some(self.snd_max);
        self.tlp = None;
        self.tlp_at = None;
        self.cc.on_fast_retransmit(in_flight, self.snd_mss, now);
        if self.sack_ok {
            self.enter_sack_recovery();
        } else {
            self.fast_retransmit(now);
        }
    }

    /// Bytes the peer reported holding above SND.UNA.
    pub(super) fn sacked_bytes(&self) -> usize {
        self.sacked.iter().map(|&(l, r)| r - l).sum()
    }

    /// Merges the segment's SACK blocks into the scoreboard (RFC 2018 §3; blocks outside
    /// (SND.UNA, SND.MAX] are ignored as invalid) and forgets what the ACK now covers.
    fn record_sack<P>(&mut self, seg: &TcpRepr<P>, ack: SeqNum) {
        let una = ack.max(self.snd_una);
        for (l, r) in seg.options.sack.iter().flatten() {
            let (l, r) = (SeqNum(*l), SeqNum(*r));
            if l < r && l >= una && r <= self.snd_max {
                self.sacked.push((l, r));
            }
        }
        self.sacked.retain(|&(_, r)| r > una);
        self.sacked.sort_unstable_by_key(|&(l, _)| l);
        // Merged in place: no allocation per ACK once the scoreboard has its capacity.
        let mut kept = 0;
        for i in 0..self.sacked.len() {
            let (l, r) = self.sacked[i];
            if kept > 0 && l <= self.sacked[kept - 1].1 {
                self.sacked[kept - 1].1 = self.sacked[kept - 1].1.max(r);
            } else {
                self.sacked[kept] = (l.max(una), r);
                kept += 1;
            }
        }
        self.sacked.truncate(kept);
    }

    /// RTT measurement: from the echoed timestamp (RFC 7323 §4), else from one timed segment,
    /// never from a retransmitted one (Karn's rule).
    fn rtt_sample<P>(&mut self, seg: &TcpRepr<P>, ack: SeqNum, now: Instant) {
        if self.ts_ok {
            if let Some((_, tsecr)) = seg.options.timestamps
                && tsecr != 0
            {
                let ms = self.ts_now(now).wrapping_sub(tsecr);
                if ms < 60_000 {
                    let rtt = std::time::Duration::from_millis(u64::from(ms.max(1)));
                    self.rtt.sample(rtt);
                    self.cc.on_rtt_sample(rtt);
                }
            }
        } else if let Some((probe, sent)) = self.rtt_probe
            && ack > probe
        {
            self.rtt.sample(now - sent);
            self.cc.on_rtt_sample(now - sent);
            self.rtt_probe = None;
        }
    }

    fn receive_data(&mut self, seq: SeqNum, payload: &[u8], now: Instant) {
        // Trim what we already have and what lies beyond the window.
        let mut start = seq;
        let mut data = payload;
        if start < self.rcv_nxt {
            let skip = (self.rcv_nxt - start).min(data.len());
            data = &data[skip..];
            start = self.rcv_nxt;
        }
        let room = self.rcv_window().saturating_sub(start - self.rcv_nxt);
        data = &data[..data.len().min(room)];
        if data.is_empty() {
            self.ack_now = true;
            return;
        }
        let offset = start - self.rcv_nxt;
        let had_holes = !self.assembler.is_empty();
        if offset > 0 {
            // Out of order: keep it in place and send a duplicate ACK at once (RFC 5681 §4.2).
            let n = self.rcv_buf.write_ahead(offset, data);
            self.assembler.insert(offset, n);
            self.ack_now = true;
            return;
        }
        self.deliver(data);
        while let Some(n) = self.assembler.take_front() {
            // Already in the buffer, at its place.
            self.rcv_buf.commit(n);
            self.rcv_nxt = self.rcv_nxt + n;
            self.assembler.advance(n);
            self.stats.bytes_in += n as u64;
        }
        self.events.push(Event::Readable);
        self.tune_receive_buffer(now);
        if let Some(fin) = self.peer_fin
            && fin == self.rcv_nxt
        {
            self.peer_fin = None;
            self.process_fin(now);
        }
        // RFC 9293 §3.8.6.3 / RFC 5681 §4.2: ACK at least every second full segment, at once
        // when a gap was filled, otherwise within the delayed-ACK time.
        self.unacked_segments += 1;
        match self.cfg.delayed_ack {
            Some(delay) if !had_holes && self.unacked_segments < 2 => {
                if self.delack_at.is_none() {
                    self.delack_at = Some(now + delay);
                }
            }
            // Within a receive batch, in-order data is acknowledged once, when the batch
            // ends, as Linux acknowledges what GRO merged: one ACK for up to 32 KiB instead of
            // one per two segments (a stretch ACK; RFC 5681 §4.2 allows it, the SHOULD of
            // RFC 9293 §3.8.6.3 bends, and senders count acknowledged bytes, RFC 3465).
            // Duplicate and gap-filling ACKs never wait: fast retransmit counts them.
            _ if self.in_batch
                && !had_holes
                && (self.rcv_nxt - self.rcv_nxt_acked) < BATCH_ACK_BYTES =>
            {
                self.ack_at_batch_end = true;
            }
            _ => self.ack_now = true,
        }
    }

    fn deliver(&mut self, data: &[u8]) {
        self.rcv_buf.extend(data);
        self.rcv_nxt = self.rcv_nxt + data.len();
        self.assembler.advance(data.len());
        self.stats.bytes_in += data.len() as u64;
    }

    fn process_fin(&mut self, now: Instant) {
        self.rcv_nxt = self.rcv_nxt + 1u32;
        self.ack_now = true;
        if !self.peer_closed {
            self.peer_closed = true;
            self.events.push(Event::PeerClosed);
        }
        match self.state {
            State::SynReceived | State::Established => self.set_state(State::CloseWait, now),
            State::FinWait1 => self.set_state(State::Closing, now),
            State::FinWait2 => self.set_state(State::TimeWait, now),
            State::TimeWait => self.time_wait_at = Some(now + self.cfg.msl * 2),
            _ => {}
        }
    }

    /// RFC 9293 §3.10.7.3.
    fn on_segment_syn_sent<P>(&mut self, seg: &TcpRepr<P>, now: Instant) {
        let has = |f: u8| seg.flags & f != 0;
        let ack = SeqNum(seg.ack);
        if has(ACK) && (ack <= self.iss || ack > self.snd_max) {
            if !has(RST) {
                let rst = self.rst_segment(seg.ack);
                self.push_segment(rst);
            }
            return;
        }
        if has(RST) {
            if has(ACK) {
                self.reset(ResetReason::Refused, now);
            }
            return;
        }
        if !has(SYN) {
            return;
        }
        self.irs = SeqNum(seg.seq);
        self.rcv_nxt = self.irs + 1u32;
        self.negotiate(seg);
        self.snd_wnd = usize::from(seg.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = SeqNum(seg.seq);
        self.rcv_adv = self.rcv_nxt + self.rcv_window();
        if has(ACK) {
            self.rtt_sample(seg, ack, now);
            self.snd_una = ack;
            self.snd_wl2 = ack;
            self.rtx_at = None;
            self.retransmit_count = 0;
            self.set_state(State::Established, now);
            self.events.push(Event::Connected);
            self.arm_keepalive(now);
            self.ack_now = true;
        } else {
            // Simultaneous open (RFC 9293 §3.5, figure 7): SYN-ACK with our original ISS.
            self.set_state(State::SynReceived, now);
            self.send_syn(now);
        }
    }
}
