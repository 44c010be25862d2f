//! Retransmission timeout (RFC 6298), with Karn's rule applied by the caller (no samples from
//! retransmitted segments unless timestamps disambiguate them).

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct RttEstimator {
    srtt: Option<Duration>,
    rttvar: Duration,
    rto: Duration,
    /// Number of back-offs since the last new sample (RFC 6298 §5.5).
    backoffs: u32,
    min_rto: Duration,
    max_rto: Duration,
}

impl RttEstimator {
    pub fn new(initial: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            rto: initial,
            backoffs: 0,
            min_rto,
            max_rto,
        }
    }

    /// RFC 6298 §2.2 / §2.3, with α = 1/8, β = 1/4, K = 4, G ignored (clock is µs).
    pub fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + r) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        self.rto = (srtt + self.rttvar * 4).clamp(self.min_rto, self.max_rto);
        self.backoffs = 0;
    }

    /// RFC 6298 §5.5: double the RTO on expiry.
    pub fn back_off(&mut self) {
        self.rto = (self.rto * 2).min(self.max_rto);
        self.backoffs += 1;
    }

    pub fn rto(&self) -> Duration {
        self.rto
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_and_smoothing() {
        let mut e = RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        );
        assert_eq!(e.rto(), Duration::from_secs(1));
        e.sample(Duration::from_millis(100));
        // RTO = SRTT + 4·RTTVAR = 100 + 4·50 = 300 ms.
        assert_eq!(e.rto(), Duration::from_millis(300));
        e.sample(Duration::from_millis(100));
        // RTTVAR = 3/4·50 + 1/4·0 = 37.5; RTO = 100 + 150 = 250.
        assert_eq!(e.rto(), Duration::from_micros(250_000));
        e.back_off();
        assert_eq!(e.rto(), Duration::from_millis(500));
        for _ in 0..20 {
            e.back_off();
        }
        assert_eq!(e.rto(), Duration::from_secs(60));
    }

    #[test]
    fn rto_never_below_the_minimum() {
        let mut e = RttEstimator::new(
            Duration::from_secs(1),
            Duration::from_millis(200),
            Duration::from_secs(60),
        );
        e.sample(Duration::from_micros(50));
        assert_eq!(e.rto(), Duration::from_millis(200));
    }
}
