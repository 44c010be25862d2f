//! Loss recovery with SACK (RFC 6675): once in fast recovery, every hole the scoreboard
//! shows lost is retransmitted, as many per round trip as the congestion window allows,
//! instead of one per round trip as NewReno's partial ACKs would (RFC 6582). On a long fat
//! path a window of thousands of segments may lose several; recovering them one round trip
//! each would stall the connection for as many round trips.
//!
//! The sender tracks `pipe` (RFC 6675 §4: what it believes is in the network) and sends
//! what Proportional Rate Reduction allows on each ACK (prr.rs, RFC 9937, in place of RFC
//! 6675's "while pipe < cwnd"), first the lost holes (NextSeg rule 1), then new data
//! (rule 2). A byte is lost (IsLost) when at least
//! three segments' worth of data above it were SACKed (DupThresh × SMSS), and the hole at
//! SND.UNA is lost once recovery began (the third duplicate ACK said so). Each hole is
//! retransmitted once (`high_rxt`). A retransmission can be lost too, above all when
//! recovery starts with the bottleneck's queue still full after a slow start overshot it:
//! RFC 6675 leaves that to the retransmission timer (200 ms or more of silence, then slow
//! start from one segment). Like Linux before RACK (`tcp_mark_lost_retrans`), a
//! retransmission counts as lost again once data sent after it (above SND.MAX as it was
//! then, by DupThresh segments, for reordering) is SACKed while it is not: it is sent again
//! at once, within the same recovery and the same window reduction.

use super::Tcb;
use crate::engine::{seq::SeqNum, time::Instant};

/// DupThresh (RFC 6675 §2).
const DUP_THRESH: usize = 3;

/// One retransmission in SACK recovery: the range sent again, and SND.MAX at that moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxtMark {
    start: SeqNum,
    end: SeqNum,
    marker: SeqNum,
    /// The TSval it carried (with timestamps): an ACK echoing it or later was sent for
    /// this copy, not for a late original.
    tsval: Option<u32>,
}

impl Tcb {
    /// In fast recovery with a SACK scoreboard to work from.
    pub(crate) fn in_sack_recovery(&self) -> bool {
        self.sack_ok && self.recover.is_some()
    }

    /// Entering recovery: the window is reduced, the scan for holes starts at SND.UNA, and
    /// the segment there is lost (RFC 6675 §5 (4.3): the third duplicate ACK said so).
    ///
    /// What an episode just ended retransmitted carries over: a hole it resent may still be
    /// on its way when the ACK that ends that episode starts this one (the hole lay above
    /// its recovery point), and must not go a second time (it did, and the ACKs of data
    /// sent meanwhile then looked like more losses: 18 needless retransmissions in 20 s at
    /// 80 ms with 0.1% loss, simulated).
    pub(crate) fn enter_sack_recovery(&mut self) {
        self.high_rxt = self.high_rxt.max(self.snd_una);
        let first = self.snd_una + self.snd_mss.min(self.snd_max - self.snd_una);
        self.lost_below = Some(first);
        self.prr_start();
    }

    /// Recovery ended: every byte outstanding when it began is acknowledged.
    pub(crate) fn end_sack_recovery(&mut self) {
        self.lost_below = None;
    }

    /// A retransmission timeout took over: resending starts again from SND.UNA.
    pub(crate) fn leave_sack_recovery(&mut self) {
        self.lost_below = None;
        self.high_rxt = self.snd_una;
        self.rxt_marks.clear();
        self.relost.clear();
    }

    /// Whether the peer SACKed all of [l, r).
    pub(super) fn is_sacked(&self, l: SeqNum, r: SeqNum) -> bool {
        self.sacked.iter().any(|&(a, b)| a <= l && r <= b)
    }

    /// After the scoreboard took an ACK's SACK blocks (the ACK acknowledging up to `ack`,
    /// echoing `tsecr`): a retransmission that arrived shows everything sent before it and
    /// still missing lost (RACK's principle, RFC 8985 §6.2, in sequence rather than time:
    /// one path delivers in order), but only when the echoed timestamp shows that this copy
    /// arrived, not a late original (reordering; without timestamps it cannot be told);
    /// one overtaken by data sent after it is lost itself (see the module's comment) and
    /// queued to go again.
    pub(crate) fn detect_lost_retransmissions(&mut self, ack: SeqNum, tsecr: Option<u32>) {
        let una = ack.max(self.snd_una);
        let reordering = DUP_THRESH * self.snd_mss;
        while let Some(&m) = self.rxt_marks.front() {
            if self.missing_above(una, (m.start, m.end)).is_none() {
                self.rxt_marks.pop_front(); // it arrived
                let this_copy = m
                    .tsval
                    .zip(tsecr)
                    .is_some_and(|(sent, echo)| echo.wrapping_sub(sent) as i32 >= 0);
                if this_copy {
                    self.lost_below = Some(self.lost_below.map_or(m.marker, |b| b.max(m.marker)));
                }
                continue;
            }
            let Some(&(_, top)) = self.sacked.last() else {
                break;
            };
            if top < m.marker + reordering {
                break; // nothing sent after it has arrived yet (marks are in sending order)
            }
            self.rxt_marks.pop_front();
            self.relost.push_back((m.start, m.end));
        }
    }

    /// What of a range found lost is still missing (neither acknowledged nor SACKed).
    fn still_missing(&self, range: (SeqNum, SeqNum)) -> Option<(SeqNum, SeqNum)> {
        self.missing_above(self.snd_una, range)
    }

    /// What of [l, r) the peer holds neither below `una` nor in a SACK block.
    fn missing_above(&self, una: SeqNum, (l, r): (SeqNum, SeqNum)) -> Option<(SeqNum, SeqNum)> {
        let l = l.max(una);
        (l < r && !self.is_sacked(l, r)).then_some((l, r))
    }

    /// The next retransmission found lost, trimmed to what is still missing.
    fn next_relost(&mut self, mss: usize) -> Option<(SeqNum, usize)> {
        while let Some(&range) = self.relost.front() {
            if let Some((l, r)) = self.still_missing(range) {
                return Some((l, (r - l).min(mss)));
            }
            self.relost.pop_front();
        }
        None
    }

    /// Bytes of retransmissions found lost and not yet sent again (out of the network).
    fn relost_bytes(&self) -> usize {
        self.relost
            .iter()
            .filter_map(|&range| self.still_missing(range))
            .map(|(l, r)| r - l)
            .sum()
    }

    /// Below this sequence number, every byte not SACKed counts as lost.
    fn lost_edge(&self) -> SeqNum {
        let threshold = DUP_THRESH * self.snd_mss;
        let mut above = 0;
        let mut edge = self.snd_una;
        if let Some(below) = self.lost_below {
            edge = edge.max(below);
        }
        for &(l, r) in self.sacked.iter().rev() {
            above += r - l;
            if above >= threshold {
                edge = edge.max(l);
                break;
            }
        }
        edge
    }

    /// Un-SACKed ranges in [SND.UNA, `end`), in order.
    fn holes(&self, end: SeqNum) -> impl Iterator<Item = (SeqNum, SeqNum)> + '_ {
        let mut from = self.snd_una;
        self.sacked
            .iter()
            .copied()
            .chain(std::iter::once((end, end)))
            .filter_map(move |(l, r)| {
                let hole = (from, l.min(end));
                from = from.max(r);
                (hole.0 < hole.1).then_some(hole)
            })
            .take_while(move |&(l, _)| l < end)
    }

    /// RFC 6675 §4 pipe: in flight less SACKed, less lost and not yet retransmitted.
    pub(super) fn pipe(&self) -> usize {
        let in_flight = self.snd_max - self.snd_una;
        let sacked: usize = self.sacked.iter().map(|&(l, r)| r - l).sum();
        let edge = self.lost_edge();
        let lost_unsent: usize = self
            .holes(edge)
            .map(|(l, r)| r - l.max(self.high_rxt).min(r))
            .sum();
        in_flight.saturating_sub(sacked + lost_unsent + self.relost_bytes())
    }

    /// NextSeg rule 1: the first lost byte not retransmitted yet, and how much to send.
    fn next_lost(&self, mss: usize) -> Option<(SeqNum, usize)> {
        let edge = self.lost_edge();
        self.holes(edge).find_map(|(l, r)| {
            let start = l.max(self.high_rxt);
            (start < r).then(|| (start, (r - start).min(mss)))
        })
    }

    /// Sends what recovery allows (PRR, prr.rs): lost holes first, then new data.
    pub(crate) fn sack_recovery_output(&mut self, now: Instant) {
        let mss = self.eff_mss();
        loop {
            if !self.prr_allows() {
                break;
            }
            let relost = self.next_relost(mss);
            if let Some((seq, len)) = relost.or_else(|| self.next_lost(mss)) {
                let offset = seq - self.snd_buf_seq;
                let len = len.min(self.snd_buf.len().saturating_sub(offset));
                // The lost range may end with our FIN (or be the FIN alone, once all data
                // is acknowledged): it goes again with the bytes before it.
                let fin = self.fin_seq == Some(seq + len);
                if len == 0 && !fin {
                    break;
                }
                if !self.pacing_allows(len, now) {
                    break;
                }
                self.pacing_spend(len);
                self.prr_sent(len.max(1));
                let saved = self.snd_nxt;
                self.snd_nxt = seq;
                self.send_data(offset, len, fin, now);
                self.snd_nxt = saved.max(self.snd_nxt);
                let end = seq + len + usize::from(fin);
                if relost.is_some() {
                    // Sent again: what is left of that range stays queued.
                    if let Some(front) = self.relost.front_mut() {
                        front.0 = end;
                    }
                } else {
                    self.high_rxt = end;
                }
                self.rxt_marks.push_back(RxtMark {
                    start: seq,
                    end,
                    marker: self.snd_max,
                    tsval: self.ts_ok.then(|| self.ts_now(now)),
                });
                continue;
            }
            // Rule 2: new data, within the peer's window.
            let sent = (self.snd_max - self.snd_buf_seq).min(self.snd_buf.len());
            let unsent = self.snd_buf.len() - sent;
            let room = self.snd_wnd.saturating_sub(self.snd_max - self.snd_una);
            let n = unsent.min(room).min(mss);
            let fin = self.close_requested
                && self.fin_seq.is_none()
                && self.snd_max + n == self.buffer_end();
            if n == 0 && !fin {
                break;
            }
            if n > 0 && !self.pacing_allows(n, now) {
                break;
            }
            self.pacing_spend(n);
            self.prr_sent(n.max(1));
            self.snd_nxt = self.snd_max;
            self.send_data(sent, n, fin, now);
            if fin {
                break;
            }
        }
    }
}
