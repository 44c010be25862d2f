//! HyStart++ (RFC 9406): leaving slow start before it overshoots. Slow start doubles the
//! window every round trip until a loss; on a path with a deep bottleneck queue the last
//! doubling puts a whole window's worth into the queue and most of it is dropped. HyStart++
//! watches each round's minimum RTT: when it rises by more than a threshold (the queue is
//! building), the sender enters Conservative Slow Start, growing a quarter as fast, and if
//! the rise holds for five rounds, congestion avoidance. A falling RTT in CSS means the rise
//! was noise: slow start resumes. Only the first slow start uses it (RFC 9406 §4.3: after a
//! timeout ssthresh is known).
//!
//! The RTT rise comes a round late where the bottleneck's queue is about one
//! bandwidth-delay product: the round that takes the window from one BDP to two sees no queue
//! in its first samples, and the next one overflows the queue (the WAN bench's 500 Mbit/s
//! downloads at 80 ms lost 2,900-6,800 segments, the kernel's CUBIC about a thousand by the
//! emulator's drop count). So, as Linux's CUBIC does (HyStart's ACK train, Ha and Rhee
//! 2008), slow start also ends when the ACKs of one round keep coming, each within
//! `ACK_TRAIN_GAP` of the last, for longer than `ACK_TRAIN_SHARE` quarters of the minimum
//! RTT: a round's data took that long to drain through the bottleneck, so the window has
//! reached the path's capacity.

use std::time::Duration;

use crate::engine::time::Instant;

/// RFC 9406 §4.3 constants.
const MIN_RTT_THRESH: Duration = Duration::from_millis(4);
const MAX_RTT_THRESH: Duration = Duration::from_millis(16);
const MIN_RTT_DIVISOR: u32 = 8;
const N_RTT_SAMPLE: u32 = 8;
const CSS_GROWTH_DIVISOR: usize = 4;
const CSS_ROUNDS: u32 = 5;

/// ACKs closer than this belong to one train (Linux's `hystart_ack_delta_us`).
const ACK_TRAIN_GAP: Duration = Duration::from_millis(2);
/// No ACK-train verdict below this window, in segments (Linux's `hystart_low_window`).
const ACK_TRAIN_LOW_WINDOW: usize = 16;
/// A train longer than this share of the minimum RTT (in quarters) ends slow start. Linux
/// takes half the minimum RTT for a sender that does not pace and the whole of it for one
/// that does; this sender paces slow start at twice cwnd/SRTT, so a round's data leaves
/// within half an SRTT and returns as a train that long whatever the window: three quarters
/// is clear of that and still a round before the queue of one BDP overflows.
const ACK_TRAIN_SHARE: u32 = 3;

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
    /// The smallest RTT seen in slow start.
    min_rtt: Option<Duration>,
    /// This round's ACK train, from its first ACK.
    train: Option<AckTrain>,
    exit: Option<SlowStartExit>,
}

#[derive(Debug, Clone, Copy)]
struct AckTrain {
    start: Instant,
    last: Instant,
    /// A gap longer than `ACK_TRAIN_GAP` ended it for this round.
    broken: bool,
}

impl Default for HyStart {
    fn default() -> Self {
        Self {
            phase: Phase::SlowStart,
            last_round_min: None,
            current_round_min: None,
            samples: 0,
            min_rtt: None,
            train: None,
            exit: None,
        }
    }
}

/// Why slow start ended, if HyStart ended it (a loss or a timeout ends it otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowStartExit {
    /// The RTT rose for CSS_ROUNDS rounds (RFC 9406).
    RttRise,
    /// A round's ACK train outlasted its share of the minimum RTT.
    AckTrain,
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

    /// Why HyStart ended slow start, if it did.
    pub fn exit(&self) -> Option<SlowStartExit> {
        self.exit
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
        self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
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

    /// An ACK of new data at `now` in slow start or CSS, with the window (in segments) it
    /// leaves: `EnterAvoidance` when this round's ACK train outlasts its share of the
    /// minimum RTT.
    pub fn on_ack(&mut self, now: Instant, window_segments: usize) -> RoundVerdict {
        if self.phase == Phase::Done {
            return RoundVerdict::Continue;
        }
        let train = self.train.get_or_insert(AckTrain {
            start: now,
            last: now,
            broken: false,
        });
        if train.broken || now - train.last > ACK_TRAIN_GAP {
            train.broken = true;
            return RoundVerdict::Continue;
        }
        train.last = now;
        let Some(min_rtt) = self.min_rtt else {
            return RoundVerdict::Continue;
        };
        if window_segments >= ACK_TRAIN_LOW_WINDOW
            && now - train.start > min_rtt * ACK_TRAIN_SHARE / 4
        {
            self.phase = Phase::Done;
            self.exit = Some(SlowStartExit::AckTrain);
            return RoundVerdict::EnterAvoidance;
        }
        RoundVerdict::Continue
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
                self.exit = Some(SlowStartExit::RttRise);
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
        self.train = None;
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

    /// ACKs every `every` from `from` for `span`, with a window of `window` segments: the
    /// first verdict other than Continue, and when.
    fn train(
        h: &mut HyStart,
        from: Instant,
        every: Duration,
        span: Duration,
        window: usize,
    ) -> Option<(Instant, RoundVerdict)> {
        let mut at = from;
        while at <= from + span {
            let v = h.on_ack(at, window);
            if v != RoundVerdict::Continue {
                return Some((at, v));
            }
            at = at + every;
        }
        None
    }

    #[test]
    fn an_ack_train_longer_than_three_quarters_of_the_rtt_ends_slow_start() {
        let us = Duration::from_micros;
        let mut h = HyStart::default();
        round(&mut h, ms(40));
        // A paced round: its ACKs come for half the RTT, then stop; no verdict.
        assert_eq!(train(&mut h, Instant::ZERO, us(100), ms(20), 400), None);
        h.on_round_end();
        // A round whose ACKs keep coming: the bottleneck spreads them; at 30 ms it ends.
        let start = Instant::from_millis(40);
        let (at, v) = train(&mut h, start, us(100), ms(40), 400).expect("a verdict");
        assert_eq!(v, RoundVerdict::EnterAvoidance);
        assert_eq!(at - start, us(30_100));
        assert_eq!(h.phase(), Phase::Done);
        assert_eq!(h.exit(), Some(SlowStartExit::AckTrain));
        assert_eq!(h.on_ack(start + ms(31), 400), RoundVerdict::Continue);
    }

    #[test]
    fn a_gap_breaks_the_train_for_the_round_and_small_windows_never_end_it() {
        let us = Duration::from_micros;
        let mut h = HyStart::default();
        round(&mut h, ms(40));
        // 2.1 ms between ACKs: no train, however long the round.
        assert_eq!(train(&mut h, Instant::ZERO, us(2_100), ms(80), 400), None);
        h.on_round_end();
        // A train broken once stays broken until the round ends.
        let start = Instant::from_millis(100);
        assert_eq!(train(&mut h, start, us(100), ms(10), 400), None);
        assert_eq!(
            train(&mut h, start + ms(15), us(100), ms(40), 400),
            None,
            "broken by the 5 ms gap"
        );
        h.on_round_end();
        // Under 16 segments the train is not a verdict.
        let start = Instant::from_millis(200);
        assert_eq!(train(&mut h, start, us(100), ms(60), 15), None);
        h.on_round_end();
        // Without an RTT sample there is nothing to compare with.
        let mut fresh = HyStart::default();
        assert_eq!(train(&mut fresh, start, us(100), ms(60), 400), None);
        assert_eq!((h.exit(), fresh.exit()), (None, None));
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
        assert_eq!(h.exit(), Some(SlowStartExit::RttRise));
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
