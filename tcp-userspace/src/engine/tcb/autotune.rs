//! Buffer auto-tuning. The receive buffer follows what the peer delivers per round trip
//! (Linux's dynamic right-sizing, `tcp_rcv_space_adjust`): once per RTT, if more arrived in
//! order than in any round trip before, the buffer grows to twice that, more while the rate
//! is still climbing (a slow-starting sender doubles it every round trip), so the window
//! stays ahead of the bandwidth-delay product. The send buffer follows the congestion window
//! (`tcp_sndbuf_expand`): twice the window, so that one window is in flight while the next
//! waits. Both grow only within their maxima and what the global budget grants; neither
//! shrinks while the connection lives (a window once advertised is never retracted, RFC 9293
//! §3.8.6.2.2). Allocation stays lazy: a buffer that holds nothing holds no memory.

use std::time::Duration;

use super::Tcb;
use crate::engine::time::Instant;

impl Tcb {
    /// A receiver-side RTT sample (Linux's `tcp_rcv_rtt_measure*`): with timestamps, from
    /// the TSval of ours the peer echoes on its data; without, the time the peer took to
    /// fill one advertised window. The estimate follows a lower sample at once, a higher one
    /// by 1/8.
    pub(crate) fn measure_receiver_rtt(&mut self, tsecr: Option<u32>, now: Instant) {
        let sample = match tsecr {
            Some(ecr) if self.ts_ok && ecr != 0 => {
                let ms = self.ts_now(now).wrapping_sub(ecr);
                (ms < 60_000).then(|| Duration::from_millis(u64::from(ms.max(1))))
            }
            _ => match self.rcv_rtt_probe {
                Some((edge, at)) if self.rcv_nxt >= edge => {
                    self.rcv_rtt_probe = None;
                    Some(now - at)
                }
                Some(_) => None,
                None => {
                    self.rcv_rtt_probe = Some((self.rcv_nxt + self.rcv_window(), now));
                    None
                }
            },
        };
        if let Some(s) = sample {
            self.rcv_rtt = Some(match self.rcv_rtt {
                Some(old) if s >= old => old + (s - old) / 8,
                _ => s,
            });
        }
    }

    /// Once per round trip of in-order data: grows the receive buffer to stay ahead of what
    /// the peer delivers per round trip.
    pub(crate) fn tune_receive_buffer(&mut self, now: Instant) {
        if self.rcv_buf.max() >= self.cfg.recv_buffer_max {
            return;
        }
        // The shorter of both estimates: a window-filling sample overstates the RTT when the
        // sender sends less than the window.
        let Some(rtt) = [self.rcv_rtt, self.rtt.srtt()].into_iter().flatten().min() else {
            return;
        };
        let Some((start_seq, start_at)) = self.rcv_space_start else {
            self.rcv_space_start = Some((self.rcv_nxt, now));
            return;
        };
        if now - start_at < rtt {
            return;
        }
        let copied = self.rcv_nxt - start_seq;
        self.rcv_space_start = Some((self.rcv_nxt, now));
        if copied <= self.rcv_space {
            return;
        }
        let mss = usize::from(self.cfg.mss);
        let mut target = 2 * copied + 16 * mss;
        // Still growing: one more doubling's worth per doubling of the rate.
        let growth = (copied - self.rcv_space).min(self.rcv_space);
        target += 2 * target * growth / self.rcv_space.max(1);
        self.rcv_space = copied;
        let max = self.cfg.recv_buffer_max;
        let granted = self.take_budget(self.rcv_buf.max(), target.min(max));
        self.rcv_buf.grow_max(self.rcv_buf.max() + granted);
    }

    /// After the congestion window changed: a send buffer of twice the window.
    pub(crate) fn tune_send_buffer(&mut self) {
        let target = (2 * self.cc.window()).min(self.cfg.send_buffer_max);
        let current = self.snd_buf.max();
        if target <= current {
            return;
        }
        let granted = self.take_budget(current, target);
        self.snd_buf.grow_max(current + granted);
    }

    /// Takes what growing a buffer from `current` to `target` bytes needs from the budget;
    /// returns what was granted (possibly less, or nothing).
    fn take_budget(&mut self, current: usize, target: usize) -> usize {
        if target <= current {
            return 0;
        }
        let granted = self.cfg.buffer_budget.take(target - current);
        self.budget_taken += granted;
        granted
    }

    /// Gives back what the buffers took from the budget (the connection ends, or enters
    /// TIME-WAIT where it holds no data).
    pub(crate) fn return_budget(&mut self) {
        if self.budget_taken > 0 {
            self.cfg.buffer_budget.give(self.budget_taken);
            self.budget_taken = 0;
        }
    }
}

impl Drop for Tcb {
    fn drop(&mut self) {
        self.return_budget();
    }
}
