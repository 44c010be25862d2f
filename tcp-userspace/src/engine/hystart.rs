//! HyStart++ (RFC 9406): leaving slow start before it overshoots. Slow start doubles the
//! window every round trip until a loss; on a path with a deep bottleneck queue the last
//! doubling puts a whole window's worth into the queue and most of it is dropped. HyStart++
//! watches each round's minimum RTT: when it rises by more than a threshold (the queue is
//! building), the sender enters Conservative Slow Start, growing a quarter as fast, and if
//! the rise holds for five rounds, congestion avoidance. A falling RTT in CSS means the rise
//! was noise: slow start resumes. Only the first slow start uses it (RFC 9406 §4.3: after a
//! timeout ssthresh is known).

use std::time::Duration;

/// RFC 9406 §4.3 constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u32 = 8;
const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    SlowStart,
    /// Conservative Slow Start: (the round minimum RTT when it began, rounds so far).
    Css {
        baseline: Duration,
        rounds: u32,
    },
    /// Slow start is over (left for congestion avoidance, or a loss ended it).
    Done,
}

#[derive(Debug, Clone)]
pub struct HyStart {
    phase: Phase,
    last_round_min: Option<Duration>,
    current_round_min: Option<Duration>,
    samples: u32,
}

impl Default for HyStart {
    fn default() -> Self {
        Self {
            phase: Phase::SlowStart,
            last_round_min: None,
            current_round_min: None,
            samples: 0,
        }
    }
}

/// What the controller does at the end of a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundVerdict {
    Continue,
    /// CSS lasted CSS_ROUNDS: set ssthresh to cwnd, congestion avoidance from now on.
    EnterAvoidance,
}

impl HyStart {
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Slow-start growth for `acked` bytes (already limited by byte counting): all of it in
    /// slow start, a quarter in CSS.
    pub fn growth(&self, acked: usize) -> usize {
        match self.phase {
            Phase::Css { .. } => acked / CSS_GROWTH_DIVISOR,
            _ => acked,
        }
    }

    /// An RTT sample while in slow start or CSS (§4.3).
    pub fn on_rtt(&mut self, rtt: Duration) {
        if self.phase == Phase::Done {
            return;
        }
        self.samples += 1;
        self.current_round_min = Some(self.current_round_min.map_or(rtt, |m| m.min(rtt)));
        if let (Phase::SlowStart, Some(last), Some(current)) =
            (self.phase, self.last_round_min, self.current_round_min)
            && self.samples >= N_RTT_SAMPLE
        {
            let thresh = (last / MIN_RTT_DIVISOR).clamp(MIN_RTT_THRESH, MAX_RTT_THRESH);
            if current >= last + thresh {
                self.phase = Phase::Css {
                    baseline: current,
                    rounds: 0,
                };
            }
        }
    }

    /// A round (a window of data) was acknowledged: the next one starts.
    pub fn on_round_end(&mut self) -> RoundVerdict {
        let mut verdict = RoundVerdict::Continue;
        if let Phase::Css { baseline, rounds } = self.phase {
            if self.samples >= N_RTT_SAMPLE && self.current_round_min.is_some_and(|c| c < baseline)
            {
                // The RTT came back down: the rise was not the queue (§4.3).
                self.phase = Phase::SlowStart;
            } else if rounds + 1 >= CSS_ROUNDS {
                self.phase = Phase::Done;
                verdict = RoundVerdict::EnterAvoidance;
            } else {
                self.phase = Phase::Css {
                    baseline,
                    rounds: rounds + 1,
                };
            }
        }
        self.last_round_min = self.current_round_min.or(self.last_round_min);
        self.current_round_min = None;
        self.samples = 0;
        verdict
    }

    /// A loss or a timeout ends slow start for good.
    pub fn on_congestion(&mut self) {
        self.phase = Phase::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn round(h: &mut HyStart, rtt: Duration) -> RoundVerdict {
        for _ in 0..N_RTT_SAMPLE {
            h.on_rtt(rtt);
        }
        h.on_round_end()
    }

    #[test]
    fn a_steady_rtt_keeps_slow_start() {
        let mut h = HyStart::default();
        for _ in 0..20 {
            assert_eq!(round(&mut h, ms(40)), RoundVerdict::Continue);
        }
        assert_eq!(h.phase(), Phase::SlowStart);
        assert_eq!(h.growth(3000), 3000);
    }

    #[test]
    fn a_rising_rtt_enters_css_then_avoidance_after_five_rounds() {
        let mut h = HyStart::default();
        round(&mut h, ms(40));
        // 40 ms / 8 = 5 ms threshold: 44 ms is not enough, 45 ms is.
        for _ in 0..N_RTT_SAMPLE {
            h.on_rtt(ms(44));
        }
        assert_eq!(h.phase(), Phase::SlowStart);
        h.on_round_end();
        // (The last round's minimum is now 44 ms.)
        for _ in 0..N_RTT_SAMPLE {
            h.on_rtt(ms(50));
        }
        assert!(matches!(h.phase(), Phase::Css { .. }));
        assert_eq!(h.growth(4000), 1000, "a quarter of slow start's growth");
        let mut verdicts = vec![h.on_round_end()];
        for _ in 0..4 {
            verdicts.push(round(&mut h, ms(52)));
        }
        assert_eq!(verdicts[..4], [RoundVerdict::Continue; 4]);
        assert_eq!(verdicts[4], RoundVerdict::EnterAvoidance);
        assert_eq!(h.phase(), Phase::Done);
    }

    #[test]
    fn the_threshold_is_clamped_and_a_falling_rtt_resumes_slow_start() {
        let mut h = HyStart::default();
        round(&mut h, ms(10));
        // 10 ms / 8 is under the 4 ms floor: 13 ms does not trigger, 14 ms does.
        round(&mut h, ms(13));
        assert_eq!(h.phase(), Phase::SlowStart);
        let mut h = HyStart::default();
        round(&mut h, ms(10));
        for _ in 0..N_RTT_SAMPLE {
            h.on_rtt(ms(14));
        }
        assert!(matches!(h.phase(), Phase::Css { .. }));
        h.on_round_end();
        // The next round's RTT is below the CSS baseline: back to slow start.
        assert_eq!(round(&mut h, ms(11)), RoundVerdict::Continue);
        assert_eq!(h.phase(), Phase::SlowStart);
        // 200 ms / 8 is over the 16 ms ceiling.
        let mut h = HyStart::default();
        round(&mut h, ms(200));
        for _ in 0..N_RTT_SAMPLE {
            h.on_rtt(ms(216));
        }
        assert!(matches!(h.phase(), Phase::Css { .. }));
    }
}
