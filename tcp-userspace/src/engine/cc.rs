//! Congestion control behind a small trait: CUBIC (RFC 9438), the default as in Linux, and
//! NewReno (RFC 5681, RFC 6582). Loss recovery itself (fast retransmit, RFC 6675) is the
//! sender's; the controller only sizes the window.

use std::time::Duration;

use super::{
    hystart::{HyStart, RoundVerdict, SlowStartExit},
    time::Instant,
};

/// Which controller new connections get (`--congestion`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Congestion {
    #[default]
    Cubic,
    NewReno,
}

impl Congestion {
    pub fn name(self) -> &'static str {
        match self {
            Congestion::Cubic => "cubic",
            Congestion::NewReno => "newreno",
        }
    }

    /// A controller for a connection whose segments carry `mss` bytes.
    pub fn controller(self, mss: usize) -> Box<dyn CongestionControl> {
        match self {
            Congestion::Cubic => Box::new(Cubic::new(mss)),
            Congestion::NewReno => Box::new(NewReno::new(mss)),
        }
    }
}

/// What the sender tells its congestion controller. Sizes in bytes.
pub trait CongestionControl: Send + std::fmt::Debug {
    fn window(&self) -> usize;
    /// New data was cumulatively acknowledged (not during fast recovery), at `now`, with the
    /// smoothed RTT if one was measured.
    fn on_ack(&mut self, acked: usize, mss: usize, now: Instant, srtt: Option<Duration>);
    /// Three duplicate ACKs: entering fast recovery with `flight` bytes outstanding.
    fn on_fast_retransmit(&mut self, flight: usize, mss: usize, now: Instant);
    /// A partial ACK during recovery (RFC 6582 §3.2 step 5).
    fn on_partial_ack(&mut self, acked: usize, mss: usize);
    /// Each further duplicate ACK during recovery inflates the window (RFC 5681 §3.2 step 4).
    fn on_dup_ack_in_recovery(&mut self, mss: usize);
    /// Recovery ends: deflate to ssthresh.
    fn on_recovery_exit(&mut self);
    /// The retransmission timer expired.
    fn on_rto(&mut self, flight: usize, mss: usize, now: Instant);
    fn ssthresh(&self) -> usize;
    /// An RTT sample (slow start's exit, RFC 9406, watches them).
    fn on_rtt_sample(&mut self, rtt: Duration);
    /// Everything sent when the last round began is acknowledged: a new round starts.
    fn on_round_end(&mut self);
    /// A copy of the whole state, to restore if a reduction proves spurious (undo.rs).
    fn boxed_clone(&self) -> Box<dyn CongestionControl>;
    /// Why HyStart ended slow start, if it did.
    fn slow_start_exit(&self) -> Option<SlowStartExit>;
}

/// A slow-start ACK of `acked` bytes, for every controller: RFC 3465 byte counting with
/// L = 2·SMSS, then HyStart++'s share of it (all, or a quarter in Conservative Slow Start);
/// and if HyStart's ACK train says the path is full, ssthresh = cwnd (congestion avoidance).
fn slow_start_ack(
    hystart: &mut HyStart,
    cwnd: &mut usize,
    ssthresh: &mut usize,
    acked: usize,
    mss: usize,
    now: Instant,
) {
    *cwnd += hystart.growth(acked.min(2 * mss)).max(1);
    if hystart.on_ack(now, *cwnd / mss) == RoundVerdict::EnterAvoidance {
        *ssthresh = *cwnd;
    }
}

/// RFC 6582 §3.2 (5), for every controller's fast recovery: deflate the window by the amount
/// a partial ACK acknowledged, and add back one MSS if it acknowledged at least that much.
fn deflate_on_partial_ack(cwnd: usize, acked: usize, mss: usize) -> usize {
    cwnd.saturating_sub(acked).max(mss) + if acked >= mss { mss } else { 0 }
}

#[derive(Debug, Clone)]
pub struct NewReno {
    cwnd: usize,
    ssthresh: usize,
    /// Bytes acked in congestion avoidance not yet turned into window growth.
    acked_in_ca: usize,
    hystart: HyStart,
}

impl NewReno {
    /// RFC 5681 §3.1 initial window (with RFC 6928's 10 segments, as Linux does).
    pub fn new(mss: usize) -> Self {
        Self {
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
            acked_in_ca: 0,
            hystart: HyStart::default(),
        }
    }
}

impl CongestionControl for NewReno {
    fn boxed_clone(&self) -> Box<dyn CongestionControl> {
        Box::new(self.clone())
    }

    fn slow_start_exit(&self) -> Option<SlowStartExit> {
        self.hystart.exit()
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, acked: usize, mss: usize, now: Instant, _srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            // Slow start, RFC 5681 §3.1.
            slow_start_ack(
                &mut self.hystart,
                &mut self.cwnd,
                &mut self.ssthresh,
                acked,
                mss,
                now,
            );
        } else {
            // Congestion avoidance: about one MSS per RTT.
            self.acked_in_ca += acked;
            if self.acked_in_ca >= self.cwnd {
                self.acked_in_ca -= self.cwnd;
                self.cwnd += mss;
            }
        }
    }

    fn on_fast_retransmit(&mut self, flight: usize, mss: usize, _now: Instant) {
        self.hystart.on_congestion();
        // RFC 5681 §3.2 (2), (3).
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = self.ssthresh + 3 * mss;
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        self.cwnd = deflate_on_partial_ack(self.cwnd, acked, mss);
    }

    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        self.cwnd += mss;
    }

    fn on_recovery_exit(&mut self) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, flight: usize, mss: usize, _now: Instant) {
        // RFC 5681 §3.1 (4), and the loss window of one segment.
        self.hystart.on_congestion();
        self.ssthresh = (flight / 2).max(2 * mss);
        self.cwnd = mss;
        self.acked_in_ca = 0;
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        if self.cwnd < self.ssthresh {
            self.hystart.on_rtt(rtt);
        }
    }

    fn on_round_end(&mut self) {
        if self.hystart.on_round_end() == RoundVerdict::EnterAvoidance {
            self.ssthresh = self.cwnd;
        }
    }
}

/// RFC 9438 §5.1: C = 0.4, β = 0.7.
const CUBIC_C: f64 = 0.4;
const CUBIC_BETA: f64 = 0.7;
/// RFC 9438 §4.3: the Reno-friendly additive increase for β = 0.7.
const CUBIC_ALPHA: f64 = 3.0 * (1.0 - CUBIC_BETA) / (1.0 + CUBIC_BETA);
/// The RTT assumed before one is measured (RFC 6298's initial RTO is 1 s; CUBIC only needs
/// it to look one RTT ahead).
const CUBIC_DEFAULT_RTT: f64 = 0.1;

/// CUBIC (RFC 9438): after a loss the window climbs back to where it was along a cubic
/// curve of time (concave, a plateau at the old maximum, then convex probing), independent
/// of the RTT, with Reno's growth as a floor (the Reno-friendly region) and fast
/// convergence. Slow start is RFC 5681's.
#[derive(Debug, Clone)]
pub struct Cubic {
    cwnd: usize,
    ssthresh: usize,
    /// W_max: the window (segments) before the last reduction.
    w_max: f64,
    /// W_est: the window Reno would have now (segments), RFC 9438 §4.3.
    w_est: f64,
    /// K: seconds from the epoch's start to the plateau at W_max.
    k: f64,
    /// Start of the current congestion-avoidance epoch.
    epoch_start: Option<Instant>,
    /// Fractional segments of growth carried between ACKs.
    growth: f64,
    hystart: HyStart,
}

impl Cubic {
    pub fn new(mss: usize) -> Self {
        Self {
            cwnd: 10 * mss,
            ssthresh: usize::MAX,
            w_max: 0.0,
            w_est: 0.0,
            k: 0.0,
            epoch_start: None,
            growth: 0.0,
            hystart: HyStart::default(),
        }
    }

    /// RFC 9438 §4.2: W_cubic(t) = C·(t − K)³ + W_max, in segments.
    fn w_cubic(&self, t: f64) -> f64 {
        CUBIC_C * (t - self.k).powi(3) + self.w_max
    }

    /// A congestion event (§4.6, §4.7 fast convergence): remember where it happened.
    fn reduce(&mut self, mss: usize) {
        self.hystart.on_congestion();
        let cwnd = self.cwnd as f64 / mss as f64;
        self.w_max = if cwnd < self.w_max {
            // The available bandwidth shrank: release some to newer flows.
            cwnd * (1.0 + CUBIC_BETA) / 2.0
        } else {
            cwnd
        };
        self.ssthresh = ((self.cwnd as f64 * CUBIC_BETA) as usize).max(2 * mss);
        self.epoch_start = None;
        self.growth = 0.0;
    }
}

impl CongestionControl for Cubic {
    fn boxed_clone(&self) -> Box<dyn CongestionControl> {
        Box::new(self.clone())
    }

    fn slow_start_exit(&self) -> Option<SlowStartExit> {
        self.hystart.exit()
    }

    fn window(&self) -> usize {
        self.cwnd
    }

    fn on_ack(&mut self, acked: usize, mss: usize, now: Instant, srtt: Option<Duration>) {
        if self.cwnd < self.ssthresh {
            slow_start_ack(
                &mut self.hystart,
                &mut self.cwnd,
                &mut self.ssthresh,
                acked,
                mss,
                now,
            );
            return;
        }
        let m = mss as f64;
        let cwnd = self.cwnd as f64 / m;
        let start = *self.epoch_start.get_or_insert_with(|| {
            // A new epoch (§4.2): from the last reduction, or from the end of slow start,
            // where the window itself is the plateau.
            if self.w_max < cwnd {
                self.w_max = cwnd;
            }
            self.k = ((self.w_max - cwnd) / CUBIC_C).cbrt();
            self.w_est = cwnd;
            now
        });
        let t = now.saturating_since(start).as_secs_f64();
        let rtt = srtt.map_or(CUBIC_DEFAULT_RTT, |r| r.as_secs_f64());
        let acked_segments = acked as f64 / m;
        // §4.3: Reno's window, grown by α per window of ACKs (1 once past W_max).
        let alpha = if self.w_est < self.w_max {
            CUBIC_ALPHA
        } else {
            1.0
        };
        self.w_est += alpha * acked_segments / cwnd;
        let grow = if self.w_cubic(t) < self.w_est {
            // §4.3 Reno-friendly region: at least what Reno would do.
            self.w_est - cwnd
        } else {
            // §4.4-4.5: towards W_cubic one RTT ahead, at most 1.5 × cwnd.
            let target = self.w_cubic(t + rtt).clamp(cwnd, 1.5 * cwnd);
            (target - cwnd) / cwnd * acked_segments
        };
        self.growth += grow.max(0.0) * m;
        let whole = self.growth as usize;
        self.cwnd += whole;
        self.growth -= whole as f64;
    }

    fn on_fast_retransmit(&mut self, _flight: usize, mss: usize, _now: Instant) {
        self.reduce(mss);
        // Fast recovery as RFC 5681 §3.2 (3): inflate by the three segments that left.
        self.cwnd = self.ssthresh + 3 * mss;
    }

    fn on_partial_ack(&mut self, acked: usize, mss: usize) {
        self.cwnd = deflate_on_partial_ack(self.cwnd, acked, mss);
    }

    fn on_dup_ack_in_recovery(&mut self, mss: usize) {
        self.cwnd += mss;
    }

    fn on_recovery_exit(&mut self) {
        self.cwnd = self.ssthresh;
    }

    fn on_rto(&mut self, _flight: usize, mss: usize, _now: Instant) {
        // §4.8: a timeout is a congestion event, then slow start from one segment.
        self.reduce(mss);
        self.cwnd = mss;
    }

    fn ssthresh(&self) -> usize {
        self.ssthresh
    }

    fn on_rtt_sample(&mut self, rtt: Duration) {
        if self.cwnd < self.ssthresh {
            self.hystart.on_rtt(rtt);
        }
    }

    fn on_round_end(&mut self) {
        if self.hystart.on_round_end() == RoundVerdict::EnterAvoidance {
            // Congestion avoidance from here: CUBIC's epoch starts with this window as
            // its plateau (see `on_ack`).
            self.ssthresh = self.cwnd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_start_then_avoidance_then_loss() {
        let mss = 1000;
        let mut c = NewReno::new(mss);
        let now = Instant(0);
        assert_eq!(c.window(), 10_000);
        c.on_ack(1000, mss, now, None);
        assert_eq!(c.window(), 11_000);
        c.on_fast_retransmit(20_000, mss, now);
        assert_eq!(c.ssthresh(), 10_000);
        assert_eq!(c.window(), 13_000);
        c.on_recovery_exit();
        assert_eq!(c.window(), 10_000);
        // Congestion avoidance: a full window of ACKs adds one MSS.
        for _ in 0..10 {
            c.on_ack(1000, mss, now, None);
        }
        assert_eq!(c.window(), 11_000);
        c.on_rto(11_000, mss, now);
        assert_eq!(c.window(), 1000);
        assert_eq!(c.ssthresh(), 5500);
    }

    /// A CUBIC sender in congestion avoidance with a simulated clock: a window of ACKs per
    /// RTT, returning cwnd (segments) after `secs`.
    fn run_cubic(c: &mut Cubic, mss: usize, rtt: Duration, from: Instant, secs: f64) -> Instant {
        let mut now = from;
        let end = from + Duration::from_secs_f64(secs);
        while now < end {
            let segments = c.window() / mss;
            for _ in 0..segments {
                c.on_ack(mss, mss, now, Some(rtt));
            }
            now = now + rtt;
        }
        now
    }

    /// RFC 9438 §4.2: after a loss at W_max, the window is β·W_max, comes back to W_max at
    /// t = K = ∛(W_max(1−β)/C), and grows past it convexly; the curve is the RFC's.
    #[test]
    fn cubic_follows_the_rfc_curve_after_a_loss() {
        let mss = 1000;
        let rtt = Duration::from_millis(100);
        let mut c = Cubic::new(mss);
        c.cwnd = 100 * mss;
        c.ssthresh = 0; // in congestion avoidance
        let t0 = Instant(1_000_000);
        c.on_fast_retransmit(100 * mss, mss, t0);
        c.on_recovery_exit();
        assert_eq!(c.window(), 70 * mss, "β·W_max");
        assert_eq!(c.ssthresh(), 70 * mss);
        let k = (100.0_f64 * (1.0 - CUBIC_BETA) / CUBIC_C).cbrt();
        assert!((k - 4.217).abs() < 0.01, "K = {k}");
        // Where the RFC's curve says the window is, within a few segments (the sender aims
        // one RTT ahead and grows per ACK).
        let mut now = t0;
        for t in [1.0, 2.0, 3.0, k, 5.0, 6.0] {
            now = run_cubic(
                &mut c,
                mss,
                rtt,
                now,
                t - now.saturating_since(t0).as_secs_f64(),
            );
            let want = CUBIC_C * (t - k).powi(3) + 100.0;
            let got = c.window() as f64 / mss as f64;
            assert!(
                (got - want).abs() <= 0.06 * want + 2.0,
                "t = {t:.2}: cwnd {got:.1}, the curve says {want:.1}"
            );
        }
        // The plateau: near W_max around K, slow growth there.
        assert!(c.window() > 100 * mss, "convex region past K");
    }

    /// RFC 9438 §4.3: with a short RTT and a small window, CUBIC grows at least as Reno
    /// would (α per RTT below W_max), not slower.
    #[test]
    fn cubic_is_reno_friendly_where_reno_is_faster() {
        let mss = 1000;
        let rtt = Duration::from_millis(1);
        let mut c = Cubic::new(mss);
        c.cwnd = 20 * mss;
        c.ssthresh = 0;
        let t0 = Instant(0);
        c.on_fast_retransmit(20 * mss, mss, t0);
        c.on_recovery_exit();
        let start = c.window();
        // 200 RTTs = 0.2 s: the cubic curve has barely moved (K ≈ 2.47 s), Reno's estimate
        // gained ~α·200 ≈ 106 segments.
        run_cubic(&mut c, mss, rtt, t0, 0.2);
        let grown = (c.window() - start) / mss;
        let reno = (CUBIC_ALPHA * 200.0) as usize;
        assert!(
            grown + 5 >= reno,
            "grew {grown} segments in 200 RTTs, Reno-friendly needs ~{reno}"
        );
    }

    /// RFC 9438 §4.7: a loss below the previous W_max means less bandwidth: W_max is set
    /// lower still, (1 + β)/2 of the window, to make room for others.
    #[test]
    fn cubic_fast_convergence_and_timeouts() {
        let mss = 1000;
        let mut c = Cubic::new(mss);
        c.cwnd = 100 * mss;
        c.ssthresh = 0;
        c.on_fast_retransmit(100 * mss, mss, Instant(0));
        c.on_recovery_exit();
        assert_eq!(c.w_max, 100.0);
        c.on_fast_retransmit(70 * mss, mss, Instant(1));
        assert!((c.w_max - 70.0 * (1.0 + CUBIC_BETA) / 2.0).abs() < 1e-9);
        assert_eq!(c.ssthresh(), 49 * mss);
        c.on_recovery_exit();
        c.on_rto(49 * mss, mss, Instant(2));
        assert_eq!(c.window(), mss, "a timeout restarts from one segment");
        assert_eq!(c.ssthresh(), (49.0 * CUBIC_BETA * mss as f64) as usize);
        // Slow start first, as Reno.
        c.on_ack(mss, mss, Instant(3), None);
        assert_eq!(c.window(), 2 * mss);
    }
}
