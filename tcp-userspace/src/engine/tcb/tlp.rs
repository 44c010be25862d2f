//! Tail loss probe (RFC 8985 §7). When the last segments of a flight are lost, no later
//! segment arrives to make the receiver send duplicate ACKs or SACKs, so fast recovery never
//! starts and only the retransmission timer (200 ms or more, then slow start from one
//! segment) repairs the loss: the common case for request/response traffic, whose responses
//! end in a tail. TLP sends one probe two smoothed RTTs after the last progress (new data if
//! any may go, else the last segment again) so that the receiver's answer reveals the loss.
//!
//! What the answer shows:
//! - the probe SACKed above holes: the holes were sent before a segment that was delivered,
//!   more than a round trip earlier, which is RACK's verdict of lost (RFC 8985 §6.2): fast
//!   recovery starts with them marked lost (recovery.rs retransmits them);
//! - everything acknowledged past the probe, and the probe was a retransmission with no
//!   DSACK for it: the probe repaired a loss, and the window is reduced as fast recovery
//!   would have (§7.4.2, as Linux's `tcp_process_tlp_ack`);
//! - a DSACK for the probe, or a pure duplicate ACK: both copies arrived, nothing was lost.
//!
//! TLP needs SACK to tell these apart, and stays out of the way of recovery and timeouts.

use std::time::Duration;

use super::Tcb;
use crate::{
    engine::{seq::SeqNum, time::Instant},
    wire::tcp::TcpRepr,
};

/// RFC 8985 §7.2 WCDelAckT: the receiver may hold the ACK of a lone segment this long.
const WORST_CASE_DELAYED_ACK: Duration = Duration::from_millis(200);

/// One probe's episode: from the probe until the ACKs say what happened to it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TlpEpisode {
    /// TLP.end_seq: SND.MAX after the probe.
    end: SeqNum,
    /// What the probe carried.
    start: SeqNum,
    /// TLP.is_retrans: the probe sent old data again (no new data could go).
    retransmission: bool,
}

impl Tcb {
    /// RFC 8985 §7.2: (re)starts the probe timer after new data left or an ACK made
    /// progress, when data is outstanding and no recovery, timeout recovery or probe episode
    /// is under way.
    pub(crate) fn arm_tail_loss_probe(&mut self, now: Instant) {
        self.tlp_at = None;
        if !self.cfg.tail_loss_probe
            || !self.sack_ok
            || self.tlp.is_some()
            || self.recover.is_some()
            || self.rto_recover.is_some()
            || self.snd_una == self.snd_max
            || !self.sends_data()
        {
            return;
        }
        // Without an RTT measurement the probe would come as late as the RTO itself.
        let Some(srtt) = self.rtt.srtt() else {
            return;
        };
        let mut pto = srtt * 2;
        if self.snd_max - self.snd_una <= self.snd_mss {
            pto += WORST_CASE_DELAYED_ACK;
        }
        // Never later than the retransmission timer (§7.2: PTO = min(PTO, RTO)).
        let at = now + pto;
        self.tlp_at = Some(self.rtx_at.map_or(at, |rto| at.min(rto)));
    }

    /// The probe timer fired (§7.3): one segment goes, new data if the peer's window takes
    /// it, else the last segment sent; the retransmission timer starts again from now.
    pub(crate) fn on_tail_loss_probe_timer(&mut self, now: Instant) {
        if self.tlp_at.is_none_or(|t| now < t) {
            return;
        }
        self.tlp_at = None;
        if self.snd_una == self.snd_max || self.recover.is_some() || self.rto_recover.is_some() {
            return;
        }
        let mss = self.eff_mss();
        let sent = (self.snd_max - self.snd_buf_seq).min(self.snd_buf.len());
        let unsent = self.snd_buf.len() - sent;
        let room = self.snd_wnd.saturating_sub(self.snd_max - self.snd_una);
        let saved = self.snd_nxt;
        let (start, retransmission) = if unsent > 0 && room > 0 && self.fin_seq.is_none() {
            let n = unsent.min(room).min(mss);
            let fin = self.close_requested && self.snd_max + n == self.buffer_end();
            let start = self.snd_max;
            self.snd_nxt = start;
            self.send_data(sent, n, fin, now);
            (start, false)
        } else {
            // The last data sent (and our FIN, if it went), once more.
            let data_end = self.snd_buf_seq + sent;
            let n = (data_end - self.snd_una.min(data_end)).min(mss);
            let start = data_end - n as u32;
            let fin = self.fin_seq.is_some();
            if n == 0 && !fin {
                return;
            }
            self.snd_nxt = start;
            self.send_data(start - self.snd_buf_seq, n, fin, now);
            (start, true)
        };
        self.snd_nxt = saved.max(self.snd_nxt);
        self.tlp = Some(TlpEpisode {
            end: self.snd_max,
            start,
            retransmission,
        });
        // (Sending new data above armed the timer again: one probe per episode.)
        self.tlp_at = None;
        self.stats.tail_loss_probes += 1;
        self.rtx_at = Some(now + self.rtt.rto());
    }

    /// What an ACK says about the probe (§7.4). Runs after the SACK scoreboard took the
    /// ACK's blocks and before SND.UNA moves; may start fast recovery.
    pub(crate) fn tail_loss_probe_ack<P: AsRef<[u8]>>(
        &mut self,
        seg: &TcpRepr<P>,
        ack: SeqNum,
        now: Instant,
    ) {
        let Some(ep) = self.tlp else {
            return;
        };
        // RFC 2883: a first SACK block below the cumulative ACK reports a duplicate.
        let dsack_of_probe = seg.options.sack[0].is_some_and(|(l, r)| {
            let (l, r) = (SeqNum(l), SeqNum(r));
            r <= ack && l < ep.end && r > ep.start
        });
        if ack < ep.end {
            // Still short of the probe: if the probe itself was SACKed, what lies below it
            // unSACKed was sent earlier and is overdue by a round trip: lost.
            if ack < ep.start && self.is_sacked(ep.start, ep.start + 1u32) {
                let in_flight = self.snd_max - self.snd_una;
                self.enter_recovery(in_flight, now);
                self.lost_below = Some(ep.start);
            }
            return;
        }
        let advanced = ack > self.snd_una;
        if !ep.retransmission || dsack_of_probe {
            self.tlp = None;
        } else if ack > ep.end {
            // Acknowledged past the probe without a DSACK: the probe repaired a loss.
            self.tlp = None;
            let in_flight = self.snd_max - self.snd_una;
            self.cc.on_fast_retransmit(in_flight, self.snd_mss, now);
            self.cc.on_recovery_exit();
            self.stats.tail_losses_repaired += 1;
        } else if !advanced && seg.payload.as_ref().is_empty() && self.sacked.is_empty() {
            // A pure duplicate ACK at the probe's end: the original and the probe both
            // arrived (the DSACK may have been lost).
            self.tlp = None;
        }
        // Else (the ACK reached exactly the probe's end): a later ACK decides.
    }
}
