//! Congestion control behind a small trait; NewReno (RFC 5681, RFC 6582) is the default.

/// What the sender tells its congestion controller. Sizes in bytes.
pub trait CongestionControl: Send + std::fmt::Debug {
    fn window(&self) -> usize;
    /// New data was cumulatively acknowledged (not during fast recovery).
    fn on_ack(&mut self, acked: usize, mss: usize);
    /// Three duplicate ACKs: entering fast recovery with `flight` bytes outstanding.
    fn on_fast_retransmit(&mut self, flight: usize, mss: usize);
    /// A partial ACK during recovery (RFC 6582 §3.2 step 5).
    fn on_partial_ack(&mut self, acked: usize, mss: usize);
    /// Each further duplicate ACK during recovery inflates the window (RFC 5681 §3.2 step 4).
    fn on_dup_ack_in_recovery(&mut self, mss: usize);
    /// Recovery ends: deflate to ssthresh.
    fn on_recovery_exit(&mut self);
    /// The retransmission timer expired.
    fn on_rto(&mut self, flight: usize, mss: usize);
    fn ssthresh(&self) -> usize;
}

#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acked in congestion avoidance not yet turned into window growth.
    acked_in_ca: usize,
}

impl NewReno {
    /// RFC 5681 §3.1 initial window (with RFC 6928's 10 segments, as Linux does).
    pub fn new(mss: usize) -> Self {
        Self {
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
            acked_in_ca: 0,
        }
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, acked: usize, mss: usize) {
        if self.cwnd < self.ssthresh {
            // Slow start, RFC 5681 §3.1 (3465's L = 2·SMSS byte counting).
            self.cwnd += acked.min(2 * mss);
        } else {
            // Congestion avoidance: about one MSS per RTT.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += mss;
            }
        }
    }

    fn on_fast_retransmit(&mut self, flight: usize, mss: usize) {
        // RFC 5681 §3.2 (2), (3).
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh + 3 * mss;
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        // RFC 6582 §3.2 (5): deflate by the amount acked, add back one MSS.
        self.cwnd = self.cwnd.saturating_sub(acked).max(mss) + if acked >= mss { mss } else { 0 };
    }

    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        self.cwnd += mss;
    }

    fn on_recovery_exit(&mut self) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, flight: usize, mss: usize) {
        // RFC 5681 §3.1 (4), and the loss window of one segment.
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.acked_in_ca = 0;
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance_then_loss() {
        let mss = 1000;
        let mut c = NewReno::new(mss);
        assert_eq!(c.window(), 10_000);
        c.on_ack(1000, mss);
        assert_eq!(c.window(), 11_000);
        c.on_fast_retransmit(20_000, mss);
        assert_eq!(c.ssthresh(), 10_000);
        assert_eq!(c.window(), 13_000);
        c.on_recovery_exit();
        assert_eq!(c.window(), 10_000);
        // Congestion avoidance: a full window of ACKs adds one MSS.
        for _ in 0..10 {
            c.on_ack(1000, mss);
        }
        assert_eq!(c.window(), 11_000);
        c.on_rto(11_000, mss);
        assert_eq!(c.window(), 1000);
        assert_eq!(c.ssthresh(), 5500);
    }
}
