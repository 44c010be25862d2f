//! Undo of a spurious window reduction (RFC 3708 §3, as Linux's DSACK undo): reordering,
//! not loss, can bring three duplicate ACKs; the fast retransmission then reaches the
//! receiver after the original, and the receiver reports it as a duplicate (DSACK, RFC 2883).
//! When every segment retransmitted in a recovery was reported so, nothing had been lost,
//! and the congestion controller's state from before the reduction comes back (a path that
//! reorders would otherwise halve the window for nothing, again and again).

use super::{SeqNum, Tcb};
use crate::{engine::cc::CongestionControl, wire::tcp::TcpRepr};

#[derive(Debug)]
pub(crate) struct Undo {
    /// The controller as it was before the reduction.
    saved: Box<dyn CongestionControl>,
    /// SND.UNA when recovery began: DSACKs of data below it are older episodes'.
    from: SeqNum,
    /// Past this, the DSACKs that could undo the episode are overdue (two flights on).
    until: SeqNum,
    /// Segments retransmitted since, not yet reported as duplicates.
    retrans: u64,
}

impl Tcb {
    /// Fast recovery is about to reduce the window: keep what it was.
    pub(crate) fn undo_arm(&mut self) {
        let flight = self.snd_max - self.snd_una;
        self.undo = Some(Undo {
            saved: self.cc.boxed_clone(),
            from: self.snd_una,
            until: self.snd_max + flight,
            retrans: 0,
        });
    }

    /// A retransmission timeout: no undo for it (nor any more for an earlier recovery).
    pub(crate) fn undo_forget(&mut self) {
        self.undo = None;
    }

    /// A segment was retransmitted.
    pub(crate) fn undo_count_retransmission(&mut self) {
        if let Some(u) = &mut self.undo {
            u.retrans += 1;
        }
    }

    /// An ACK (acknowledging up to `ack`) arrived: a DSACK of this episode's data counts off
    /// retransmissions; when none is left, the reduction is undone and recovery ends.
    pub(crate) fn undo_on_ack<P>(&mut self, seg: &TcpRepr<P>, ack: SeqNum) {
        let Some(u) = &mut self.undo else {
            return;
        };
        if ack > u.until {
            self.undo = None;
            return;
        }
        let Some((l, r)) = seg.options.sack[0].map(|(l, r)| (SeqNum(l), SeqNum(r))) else {
            return;
        };
        // RFC 2883 §4: the first block is a DSACK when the cumulative ACK covers it, or
        // the second block contains it.
        let inside_second =
            seg.options.sack[1].is_some_and(|(l2, r2)| SeqNum(l2) <= l && r <= SeqNum(r2));
        if l >= r || !(r <= ack || inside_second) || l < u.from || u.retrans == 0 {
            return;
        }
        let segments = (r - l).div_ceil(self.snd_mss.max(1)) as u64;
        u.retrans = u.retrans.saturating_sub(segments);
        if u.retrans > 0 {
            return;
        }
        if let Some(u) = self.undo.take() {
            self.cc = u.saved;
            self.stats.undone_reductions += 1;
            if self.recover.is_some() {
                self.recover = None;
                self.end_sack_recovery();
            }
        }
    }
}
