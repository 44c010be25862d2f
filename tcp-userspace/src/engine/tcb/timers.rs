//! What happens when a deadline passes: retransmission (RFC 6298), delayed ACK, zero-window
//! probes, keep-alive (RFC 1122 §4.2.3.6), FIN-WAIT-2 and TIME-WAIT expiry.

use super::{ResetReason, State, Tcb};
use crate::engine::time::Instant;

impl Tcb {
    /// Runs every timer whose deadline is at or before `now`.
    pub fn on_timer(&mut self, now: Instant) {
        if self.time_wait_at.is_some_and(|t| now >= t) {
            self.set_state(State::Closed, now);
            return;
        }
        if self.fin_wait2_at.is_some_and(|t| now >= t) && self.state == State::FinWait2 {
            self.events
                .push(super::Event::Reset(ResetReason::FinWait2Timeout));
            self.set_state(State::Closed, now);
            return;
        }
        if self.delack_at.is_some_and(|t| now >= t) {
            self.delack_at = None;
            self.send_ack(now);
        }
        // A probe due with the retransmission timer goes instead (RFC 8985 §7.2) and
        // restarts it.
        self.on_tail_loss_probe_timer(now);
        if self.rtx_at.is_some_and(|t| now >= t) {
            self.rtx_at = None;
            self.retransmit_count += 1;
            self.stats.timeouts += 1;
            if self.retransmit_count > self.cfg.max_retransmits {
                self.send_rst(now);
                self.reset(ResetReason::RetransmitLimit, now);
                return;
            }
            // RFC 6298 §5.5-5.6 and Karn: back off, forget the timed segment.
            self.rtt.back_off();
            self.rtt_probe = None;
            let in_flight = self.snd_max - self.snd_una;
            self.cc.on_rto(in_flight, self.snd_mss, now);
            self.recover = None;
            self.leave_sack_recovery();
            self.undo_forget();
            self.tlp = None;
            self.tlp_at = None;
            self.rto_recover = Some(self.snd_max);
            self.dup_acks = 0;
            self.retransmit(now);
        }
        if self.persist_at.is_some_and(|t| now >= t) {
            self.send_probe(now, true);
            self.persist_backoff = (self.persist_backoff + 1).min(10);
            let wait = (self.rtt.rto() * (1 << self.persist_backoff)).min(self.cfg.max_rto);
            self.persist_at = Some(now + wait);
        }
        if self.keepalive_at.is_some_and(|t| now >= t) {
            self.keepalive_at = None;
            self.keepalive_fired(now);
        }
        self.on_pacing_timer(now);
    }

    pub(crate) fn arm_keepalive(&mut self, now: Instant) {
        if let Some(k) = &self.cfg.keepalive {
            self.keepalive_at = Some(now + k.idle);
        }
    }

    fn keepalive_fired(&mut self, now: Instant) {
        let Some(k) = self.cfg.keepalive.clone() else {
            return;
        };
        let idle = matches!(self.state, State::Established | State::CloseWait)
            && self.snd_una == self.snd_max;
        if !idle {
            self.keepalive_at = Some(now + k.idle);
            return;
        }
        if self.keepalive_probes >= k.count {
            self.send_rst(now);
            self.reset(ResetReason::KeepaliveTimeout, now);
            return;
        }
        self.keepalive_probes += 1;
        self.send_probe(now, false);
        self.keepalive_at = Some(now + k.interval);
    }

    fn send_rst(&mut self, _now: Instant) {
        let rst = self.rst_segment(self.snd_nxt.0);
        self.push_segment(rst);
    }
}
