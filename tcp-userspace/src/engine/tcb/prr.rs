//! Proportional Rate Reduction (RFC 9937, which obsoletes RFC 6937): how much SACK recovery
//! (recovery.rs) may send on each ACK.
//!
//! Without it, RFC 6675 sends nothing while `pipe` exceeds the reduced window: entering
//! recovery with a window of W segments in flight and ssthresh 0.7·W (CUBIC), the sender
//! falls silent for the next 0.3·W ACKs, the fast retransmission included, then sends one
//! segment per ACK. PRR spreads the reduction over the whole round trip instead, sending
//! ssthresh/RecoverFS of what each ACK reports delivered (proportional part, while pipe >
//! ssthresh), so the repair leaves with the first ACK, the ACK clock never stops, and the
//! flight ends the recovery at ssthresh. When losses drained pipe below ssthresh, it grows
//! back by what each ACK delivered (packet conservation), and by one segment more on a
//! "safe" ACK that advanced SND.UNA and reported nothing new lost, as Linux's
//! `tcp_cwnd_reduction` does: after a burst of losses the repair ramps up like slow start
//! instead of leaving at once (a burst of retransmissions into the queue that just
//! overflowed, or into a policer, is lost again).

use super::Tcb;

/// One recovery episode's accounting (RFC 9937 §6).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Prr {
    /// Bytes the peer reported delivered (acknowledged or SACKed) since recovery began.
    delivered: usize,
    /// Bytes sent (new or retransmitted) since recovery began.
    out: usize,
    /// `pipe` when recovery began: what the reduction is proportional to.
    recover_fs: usize,
    /// The latest ACK's delivered bytes, and whether it was a safe ACK.
    last_delivered: usize,
    safe_ack: bool,
    /// What the latest ACK lets go (RFC 9937's `sndcnt`), less what went since.
    budget: usize,
}

/// What an ACK changed, taken before it is processed (see `Tcb::prr_ack`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AckMark {
    una: super::SeqNum,
    sacked: usize,
    relost: usize,
}

impl Tcb {
    /// Recovery begins: the reduction is proportional to what is in the network now.
    pub(crate) fn prr_start(&mut self) {
        self.prr = Prr {
            recover_fs: self.pipe().max(1),
            ..Prr::default()
        };
    }

    /// Before an ACK is processed: what is needed to measure what it delivered.
    pub(crate) fn prr_mark(&self) -> AckMark {
        AckMark {
            una: self.snd_una,
            sacked: self.sacked_bytes(),
            relost: self.relost.len(),
        }
    }

    /// After an ACK was processed (that began or continued recovery): RFC 9937's
    /// DeliveredData is the change in SND.UNA plus the change in SACKed bytes.
    pub(crate) fn prr_ack(&mut self, before: AckMark) {
        if !self.in_sack_recovery() {
            return;
        }
        let advanced = self.snd_una - before.una;
        let delivered = (advanced + self.sacked_bytes()).saturating_sub(before.sacked);
        self.prr.delivered += delivered;
        self.prr.last_delivered = delivered;
        // Nothing newly lost: no new SACK (which would have shown a new hole below it) and
        // no retransmission found lost again.
        self.prr.safe_ack = advanced > 0
            && self.sacked_bytes() <= before.sacked
            && self.relost.len() <= before.relost;
        self.prr.budget = self.prr_sndcnt(self.pipe(), self.snd_mss);
    }

    /// Whether recovery may send another segment: in whole segments, as Linux counts, any
    /// budget left lets one more go (what it sends beyond is taken from the next ACK's).
    pub(crate) fn prr_allows(&self) -> bool {
        self.prr.budget > 0
    }

    /// A segment of `len` bytes left in recovery.
    pub(crate) fn prr_sent(&mut self, len: usize) {
        self.prr.out += len;
        self.prr.budget = self.prr.budget.saturating_sub(len);
    }

    /// Bytes an ACK lets recovery send (RFC 9937 §6, `sndcnt`), given `pipe` after it.
    fn prr_sndcnt(&self, pipe: usize, mss: usize) -> usize {
        let ssthresh = self.cc.ssthresh().min(self.cc.window());
        let p = &self.prr;
        let sndcnt = if pipe > ssthresh {
            // Proportional rate reduction: CEIL(prr_delivered · ssthresh / RecoverFS) − prr_out.
            (p.delivered * ssthresh)
                .div_ceil(p.recover_fs)
                .saturating_sub(p.out)
        } else {
            // Packet conservation (at least what this ACK delivered), one segment more on
            // a safe ACK.
            let conserve = p.delivered.saturating_sub(p.out).max(p.last_delivered);
            let limit = if p.safe_ack { conserve + mss } else { conserve };
            (ssthresh - pipe).min(limit)
        };
        // The fast retransmission leaves with the ACK that began recovery.
        if p.out == 0 && sndcnt == 0 {
            mss
        } else {
            sndcnt
        }
    }
}
