//! Pacing: data segments leave at a rate near cwnd / SRTT instead of a window's worth at
//! once, so that a sender's bursts do not overflow a bottleneck's queue (and a slow start
//! overshoot costs fewer losses). Like Linux's internal pacing, the rate is twice cwnd/SRTT
//! in slow start and 1.2 times in congestion avoidance (`tcp_pacing_ss_ratio`,
//! `tcp_pacing_ca_ratio`), so pacing shapes bursts without capping growth.
//!
//! A token bucket: credit accrues at the pacing rate up to a burst allowance (a few
//! milliseconds of data: the event loop's timers have millisecond granularity, and Linux's
//! TSO autosizing sends about a millisecond per burst too); a segment goes when credit covers
//! it, otherwise the pacing timer is set for when it will, and `output` runs again then. Only
//! the timers and the arrival of ACKs drive it: no tick.

use std::time::Duration;

use super::Tcb;
use crate::engine::time::Instant;

/// Pacing rate gains (Linux's defaults), in percent of cwnd / SRTT.
const SLOW_START_GAIN: u64 = 200;
const AVOIDANCE_GAIN: u64 = 120;

/// The burst allowance: this much time's worth of data at the pacing rate, and never less
/// than `MIN_BURST_SEGMENTS`.
const BURST_TIME: Duration = Duration::from_millis(2);
const MIN_BURST_SEGMENTS: usize = 16;

impl Tcb {
    /// Bytes per second data may leave at now, if pacing applies (an RTT was measured).
    fn pacing_rate(&self) -> Option<u64> {
        if !self.cfg.pacing {
            return None;
        }
        let srtt = self.rtt.srtt()?.as_micros().max(1) as u64;
        let cwnd = self.cc.window() as u64;
        let gain = if self.cc.window() < self.cc.ssthresh() {
            SLOW_START_GAIN
        } else {
            AVOIDANCE_GAIN
        };
        Some(cwnd * gain * 10_000 / srtt)
    }

    fn burst_allowance(&self, rate: u64) -> usize {
        let time_worth = rate * BURST_TIME.as_micros() as u64 / 1_000_000;
        (time_worth as usize).max(MIN_BURST_SEGMENTS * self.snd_mss)
    }

    /// Whether `len` bytes may leave now. If not, the pacing timer is set for when they may.
    pub(crate) fn pacing_allows(&mut self, len: usize, now: Instant) -> bool {
        let Some(rate) = self.pacing_rate() else {
            return true;
        };
        let burst = self.burst_allowance(rate);
        let elapsed = (now - self.pace_stamp).as_micros() as u64;
        let accrued = (rate.saturating_mul(elapsed) / 1_000_000) as usize;
        self.pace_credit = self.pace_credit.saturating_add(accrued).min(burst);
        self.pace_stamp = now;
        if self.pace_credit >= len {
            return true;
        }
        let missing = (len - self.pace_credit) as u64;
        let wait = Duration::from_micros((missing * 1_000_000).div_ceil(rate).max(1));
        self.pace_at = Some(now + wait);
        false
    }

    /// `len` bytes left.
    pub(crate) fn pacing_spend(&mut self, len: usize) {
        self.pace_credit = self.pace_credit.saturating_sub(len);
    }

    /// The pacing timer: send what waited.
    pub(crate) fn on_pacing_timer(&mut self, now: Instant) {
        if self.pace_at.is_some_and(|t| now >= t) {
            self.pace_at = None;
            self.output(now);
        }
    }
}
