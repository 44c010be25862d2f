//! A bulk sender through a simulated WAN bottleneck: a fixed rate, a drop-tail queue of one
//! bandwidth-delay product (a classic router buffer) and a propagation delay, in simulated
//! time. Slow start must end before it overflows that queue by a window's worth (HyStart's
//! ACK train: before it, the overshoot dropped three to four times the queue), the window's
//! growth after it fills the queue once; the sender must recover from that within a few
//! round trips, without a retransmission timeout, and then keep the bottleneck busy. A lossy variant drops segments at random on the way.
//! Deterministic: the clock is the simulation's, the losses come from a fixed seed.

use std::{collections::VecDeque, net::SocketAddr, time::Duration};

use tcpfront::{
    engine::{EngineConfig, Instant, State, Tcb},
    wire::tcp::TcpRepr,
};

/// The path: a bottleneck one way (data), a plain delay the other (ACKs).
struct Path {
    /// Bottleneck rate, bytes per second.
    rate: u64,
    /// Drop-tail queue limit, bytes.
    queue_limit: u64,
    /// One-way propagation delay.
    delay: Duration,
    /// When the bottleneck finishes sending what it holds.
    busy_until: Instant,
    /// Segments on their way (delivery time, to B?, segment), in delivery order per direction.
    to_b: VecDeque<(Instant, TcpRepr)>,
    to_a: VecDeque<(Instant, TcpRepr)>,
    dropped: u64,
    /// Random loss each way, in parts per million (a lossy link, not the queue).
    loss_ppm: u64,
    rng: u64,
    lost: u64,
    /// Of those, segments with data (A to B).
    lost_data: u64,
}

/// Ethernet framing, preamble and gap: what a segment costs on the wire beyond its IP packet.
const ETHERNET_OVERHEAD: u64 = 38;

impl Path {
    fn wire_bytes(seg: &TcpRepr) -> u64 {
        (20 + seg.header_len() + seg.payload.len()) as u64 + ETHERNET_OVERHEAD
    }

    /// Whether the link loses this segment (xorshift64: deterministic).
    fn loses(&mut self) -> bool {
        if self.loss_ppm == 0 {
            return false;
        }
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let lost = self.rng % 1_000_000 < self.loss_ppm;
        self.lost += u64::from(lost);
        lost
    }

    fn send_to_b(&mut self, now: Instant, seg: TcpRepr) {
        if self.loses() {
            self.lost_data += u64::from(!seg.payload.is_empty());
            return;
        }
        let size = Self::wire_bytes(&seg);
        let backlog_ns = self.busy_until.0.saturating_sub(now.0) * 1000;
        let backlog = backlog_ns * self.rate / 1_000_000_000;
        if backlog + size > self.queue_limit {
            self.dropped += 1;
            return;
        }
        let start = self.busy_until.max(now);
        self.busy_until = Instant(start.0 + size * 1_000_000 / self.rate);
        self.to_b.push_back((self.busy_until + self.delay, seg));
    }

    fn send_to_a(&mut self, now: Instant, seg: TcpRepr) {
        if self.loses() {
            return;
        }
        self.to_a.push_back((now + self.delay, seg));
    }

    fn next(&self) -> Option<Instant> {
        [self.to_b.front(), self.to_a.front()]
            .into_iter()
            .flatten()
            .map(|(at, _)| *at)
            .min()
    }
}

struct Outcome {
    /// Bytes B received in each simulated second.
    per_second: Vec<u64>,
    retransmits: u64,
    timeouts: u64,
    dropped: u64,
    lost: u64,
    lost_data: u64,
    /// Largest gap between two deliveries of new data at B.
    longest_stall: Duration,
}

/// A sends as fast as its congestion control lets it for `secs` simulated seconds.
fn bulk(rate_mbit: u64, rtt_ms: u64, secs: u64) -> Outcome {
    bulk_lossy(rate_mbit, rtt_ms, 0, secs)
}

/// As `bulk`, with random loss of `loss_ppm` each way on top of the bottleneck's queue.
fn bulk_lossy(rate_mbit: u64, rtt_ms: u64, loss_ppm: u64, secs: u64) -> Outcome {
    let a_addr: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let cfg = EngineConfig::default();
    let rate = rate_mbit * 1_000_000 / 8;
    let delay = Duration::from_millis(rtt_ms / 2);
    let mut path = Path {
        rate,
        queue_limit: rate * rtt_ms / 1000,
        delay,
        busy_until: Instant::ZERO,
        to_b: VecDeque::new(),
        to_a: VecDeque::new(),
        dropped: 0,
        loss_ppm,
        rng: 0x9e37_79b9_7f4a_7c15,
        lost: 0,
        lost_data: 0,
    };
    let mut now = Instant::ZERO;
    let mut a = Tcb::connect(&cfg, a_addr, b_addr, 0x1234_5678, now);
    let mut b: Option<Tcb> = None;
    let end = Instant::ZERO + Duration::from_secs(secs);
    let chunk = vec![0x5au8; 256 * 1024];
    let mut sink = vec![0u8; 1 << 20];
    let mut per_second = vec![0u64; secs as usize];
    let (mut last_delivery, mut longest_stall) = (None::<Instant>, Duration::ZERO);
    let trace = std::env::var_os("BOTTLENECK_TRACE").is_some();
    let mut last_tick = 0;
    while now < end {
        if a.state() == State::Established {
            while a.send(&chunk, now) > 0 {}
        }
        if let Some(b) = b.as_mut() {
            loop {
                let n = b.recv(&mut sink, now);
                if n == 0 {
                    break;
                }
                per_second[(now.0 / 1_000_000) as usize] += n as u64;
                if let Some(last) = last_delivery {
                    longest_stall = longest_stall.max(now - last);
                }
                last_delivery = Some(now);
            }
        }
        for seg in a.take_outgoing() {
            path.send_to_b(now, seg);
        }
        if let Some(b) = b.as_mut() {
            for seg in b.take_outgoing() {
                path.send_to_a(now, seg);
            }
        }
        a.take_events();
        if let Some(b) = b.as_mut() {
            b.take_events();
        }
        let next = [
            path.next(),
            a.next_deadline(),
            b.as_ref().and_then(Tcb::next_deadline),
        ]
        .into_iter()
        .flatten()
        .min()
        .expect("nothing scheduled: the transfer stalled");
        now = now.max(next);
        while path.to_b.front().is_some_and(|(at, _)| *at <= now) {
            let (_, seg) = path.to_b.pop_front().unwrap();
            match b.as_mut() {
                Some(b) => b.on_segment(&seg, now),
                None => b = Some(Tcb::accept(&cfg, b_addr, a_addr, 0x7654_3210, &seg, now)),
            }
        }
        while path.to_a.front().is_some_and(|(at, _)| *at <= now) {
            let (_, seg) = path.to_a.pop_front().unwrap();
            a.on_segment(&seg, now);
        }
        for t in std::iter::once(&mut a).chain(b.as_mut()) {
            if t.next_deadline().is_some_and(|d| d <= now) {
                t.on_timer(now);
            }
        }
        // BOTTLENECK_TRACE=1: one line per 100 ms of simulated time.
        if trace {
            let tick = now.0 / 100_000;
            if tick != last_tick {
                last_tick = tick;
                eprintln!(
                    "{:>6} ms cwnd {:>6} segs srtt {:?} rtx {} dropped {}",
                    now.0 / 1000,
                    a.cwnd() / a.mss(),
                    a.srtt(),
                    a.stats.retransmits,
                    path.dropped
                );
            }
        }
    }
    Outcome {
        per_second,
        retransmits: a.stats.retransmits,
        timeouts: a.stats.timeouts,
        dropped: path.dropped,
        lost: path.lost,
        lost_data: path.lost_data,
        longest_stall,
    }
}

fn report(what: &str, o: &Outcome, rate_mbit: u64) {
    let mbit: Vec<u64> = o.per_second.iter().map(|b| b * 8 / 1_000_000).collect();
    eprintln!(
        "{what}: Mbit/s per second {mbit:?} (rate {rate_mbit}); {} retransmitted, {} \
         timeouts, {} dropped at the bottleneck, {} lost on the link ({} with data), longest \
         stall {:?}",
        o.retransmits, o.timeouts, o.dropped, o.lost, o.lost_data, o.longest_stall
    );
}

#[test]
fn slow_start_overshoot_into_a_one_bdp_queue_recovers_and_fills_the_path() {
    // Long enough for CUBIC's growth after slow start to reach the queue's limit once.
    for (rate, rtt, secs) in [(1000, 20, 8), (200, 80, 30)] {
        let o = bulk(rate, rtt, secs);
        report(&format!("{rate} Mbit/s, {rtt} ms"), &o, rate);
        assert!(o.dropped > 0, "the window never reached the queue's limit");
        // Fewer drops than the queue holds: no slow-start overshoot (4,806 and 4,993 drops
        // here before the ACK train, against queues of ~1,600 and ~1,300 segments).
        let queue_segments = rate * 1_000_000 / 8 * rtt / 1000 / 1538;
        assert!(
            o.dropped < queue_segments,
            "{} drops into a queue of {queue_segments} segments",
            o.dropped
        );
        // Nothing that arrived is sent again (before PRR and the carried-over recovery
        // state, 1,200-2,200 of these retransmissions were needless).
        assert_eq!(o.retransmits, o.dropped, "retransmissions against drops");
        // Recovery takes round trips, not a retransmission timeout and its slow start.
        assert!(
            o.longest_stall < Duration::from_millis(4 * rtt),
            "stalled for {:?}",
            o.longest_stall
        );
        // From the third second on, the bottleneck is kept at least 90% busy.
        let payload_share = 1448.0 / (1448.0 + 52.0 + 38.0);
        for (s, &bytes) in o.per_second.iter().enumerate().skip(2) {
            let mbit = bytes as f64 * 8.0 / 1e6;
            assert!(
                mbit >= 0.9 * rate as f64 * payload_share,
                "second {s}: {mbit:.0} Mbit/s through a {rate} Mbit/s bottleneck"
            );
        }
    }
}

/// Random loss on a long path (the WAN bench's 0.1%, both ways): every lost segment is
/// found by SACK and resent once, without a retransmission timeout and without resending
/// anything that arrived.
#[test]
fn random_loss_is_repaired_segment_for_segment_without_a_timeout() {
    for (rate, rtt) in [(1000, 80), (1000, 20)] {
        let o = bulk_lossy(rate, rtt, 1000, 20);
        report(&format!("{rate} Mbit/s, {rtt} ms, 0.1% loss"), &o, rate);
        assert!(o.lost_data > 10, "too few losses to tell: {}", o.lost_data);
        assert_eq!(o.timeouts, 0, "a loss waited for the retransmission timer");
        assert_eq!(
            o.retransmits, o.lost_data,
            "retransmissions against segments lost with data"
        );
        assert!(
            o.longest_stall < Duration::from_millis(4 * rtt),
            "stalled for {:?}",
            o.longest_stall
        );
    }
}
