//! Engine settings. Every knob a deployment may want, with the defaults a proxy wants.

use std::{sync::Arc, time::Duration};

use super::budget::BufferBudget;

/// Default per-connection buffer maxima (Linux's `tcp_rmem`/`tcp_wmem` maxima are 6 MiB and
/// 4 MiB; a front-end for long paths wants room for a 1 Gbit/s × 100 ms product).
pub const DEFAULT_BUFFER_MAX: usize = 16 << 20;

/// Default of the buffers' global budget.
pub const DEFAULT_BUFFER_BUDGET: usize = 1 << 30;

/// The smallest window scale shift (RFC 7323 §2.3, at most 14) whose windows reach `bytes`,
/// and never less than 7 (what tcpfront always offered).
pub fn wscale_for(bytes: usize) -> u8 {
    (7..14)
        .find(|&s| (usize::from(u16::MAX) << s) >= bytes)
        .unwrap_or(14)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keepalive {
    /// Idle time before the first probe (RFC 1122 §4.2.3.6: default no less than two hours;
    /// tcpfront's default is shorter, a front-end wants dead peers gone sooner).
    pub idle: Duration,
    pub interval: Duration,
    /// Unanswered probes after which the peer is declared dead.
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// MSS we announce (our receive side).
    pub mss: u16,
    /// A connection's send and receive buffers start at these sizes and grow (auto-tuning,
    /// see `tcb/autotune.rs`) up to the maxima; a maximum equal to its start size fixes it.
    pub send_buffer: usize,
    pub recv_buffer: usize,
    pub send_buffer_max: usize,
    pub recv_buffer_max: usize,
    /// What all connections' buffers together may grow into beyond their start sizes.
    pub buffer_budget: Arc<BufferBudget>,
    /// Our window scale shift (RFC 7323 §2), offered when the peer offers one: enough to
    /// advertise `recv_buffer_max` (see [`wscale_for`]).
    pub wscale: u8,
    pub timestamps: bool,
    pub sack: bool,
    /// Maximum segment lifetime; TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2).
    pub msl: Duration,
    pub initial_rto: Duration,
    pub min_rto: Duration,
    pub max_rto: Duration,
    /// Retransmissions of one segment before the connection is reset.
    pub max_retransmits: u32,
    /// ACK delay (RFC 9293 §3.8.6.3: under 0.5 s); `None` acknowledges every segment at once.
    pub delayed_ack: Option<Duration>,
    /// Nagle's algorithm (RFC 9293 §3.7.4); off for a proxy, which forwards what it gets.
    pub nagle: bool,
    pub keepalive: Option<Keepalive>,
    /// How long FIN-WAIT-2 may last once we have closed.
    pub fin_wait2_timeout: Duration,
    /// Hard maximum of connections in the table.
    pub max_connections: usize,
    /// The congestion controller of new connections (RFC 9438 CUBIC by default).
    pub congestion: super::cc::Congestion,
    /// Pace data segments at about cwnd/SRTT (see `tcb/pacing.rs`).
    pub pacing: bool,
    /// Probe for lost tails of flights (RFC 8985 §7, see `tcb/tlp.rs`); needs SACK.
    pub tail_loss_probe: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            mss: 1460,
            send_buffer: 256 * 1024,
            recv_buffer: 256 * 1024,
            send_buffer_max: DEFAULT_BUFFER_MAX,
            recv_buffer_max: DEFAULT_BUFFER_MAX,
            buffer_budget: Arc::new(BufferBudget::new(DEFAULT_BUFFER_BUDGET)),
            wscale: wscale_for(DEFAULT_BUFFER_MAX),
            timestamps: true,
            sack: true,
            msl: Duration::from_secs(30),
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(60),
            max_retransmits: 8,
            delayed_ack: Some(Duration::from_millis(40)),
            nagle: false,
            keepalive: Some(Keepalive {
                idle: Duration::from_secs(600),
                interval: Duration::from_secs(10),
                count: 6,
            }),
            fin_wait2_timeout: Duration::from_secs(60),
            max_connections: 100_000,
            congestion: super::cc::Congestion::default(),
            pacing: true,
            tail_loss_probe: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_scale_reaches_the_buffer_maximum() {
        assert_eq!(wscale_for(256 << 10), 7);
        assert_eq!(wscale_for(65_535 << 7), 7);
        assert_eq!(wscale_for((65_535 << 7) + 1), 8);
        assert_eq!(wscale_for(16 << 20), 9);
        assert_eq!(wscale_for(usize::MAX), 14);
    }
}
