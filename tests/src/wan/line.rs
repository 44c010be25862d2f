//! One direction of the emulated WAN link, as pure timing logic (no I/O): a frame that
//! arrives at time `now` is lost at random, tail-dropped when the bottleneck's queue is
//! full, or scheduled for delivery after its serialisation at the link rate, the one-way
//! delay and a jitter sample. Frames leave in arrival order, except the few picked for
//! reordering, which are held back by `reorder_delay`.
//!
//! Times are nanoseconds on one monotonic clock.

use std::time::Duration;

/// The impairments of one direction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Each frame's extra delay is uniform in `0..=jitter` (never reordering on its own, as
    /// on a real path whose queues stay FIFO).
    pub jitter: Duration,
    /// Bottleneck rate in bits per second, 0 for none.
    pub rate_bps: u64,
    /// Longest a frame may wait for the bottleneck before it is tail-dropped (the router's
    /// buffer, in time at the link rate).
    pub queue: Duration,
    /// Random loss, in parts per million.
    pub loss_ppm: u32,
    /// Frames held back by `reorder_delay` (delivered after later ones), per million.
    pub reorder_ppm: u32,
    pub reorder_delay: Duration,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: 0,
            queue: Duration::from_millis(100),
            loss_ppm: 0,
            reorder_ppm: 0,
            reorder_delay: Duration::from_millis(1),
        }
    }
}

/// What becomes of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver at this time.
    Deliver(u64),
    /// Lost on the link (random loss).
    Lost,
    /// The bottleneck's queue was full.
    QueueFull,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LineStats {
    pub frames: u64,
    pub bytes: u64,
    pub lost: u64,
    pub queue_full: u64,
    pub reordered: u64,
}

pub struct Line {
    shape: Shape,
    rng: fastrand::Rng,
    /// When the bottleneck finishes serialising the last admitted frame.
    busy_until: u64,
    /// Delivery time of the last in-order frame: later frames never overtake it.
    last_delivery: u64,
    pub stats: LineStats,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Line {
    pub fn new(shape: Shape, seed: u64) -> Self {
        Self {
            shape,
            rng: fastrand::Rng::with_seed(seed),
            busy_until: 0,
            last_delivery: 0,
            stats: LineStats::default(),
        }
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// Decides the fate of a frame of `len` bytes arriving at `now`.
    pub fn admit(&mut self, now: u64, len: usize) -> Verdict {
        let s = self.shape;
        if s.loss_ppm > 0 && self.rng.u32(0..1_000_000) < s.loss_ppm {
            self.stats.lost += 1;
            return Verdict::Lost;
        }
        let mut sent = now;
        if let Some(serialisation) = (len as u64 * 8)
            .saturating_mul(1_000_000_000)
            .checked_div(s.rate_bps)
        {
            let start = self.busy_until.max(now);
            if start - now > nanos(s.queue) {
                self.stats.queue_full += 1;
                return Verdict::QueueFull;
            }
            self.busy_until = start + serialisation;
            sent = self.busy_until;
        }
        let jitter = nanos(s.jitter);
        let extra = if jitter > 0 {
            self.rng.u64(0..=jitter)
        } else {
            0
        };
        let mut at = sent + nanos(s.delay) + extra;
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        if s.reorder_ppm > 0 && self.rng.u32(0..1_000_000) < s.reorder_ppm {
            self.stats.reordered += 1;
            return Verdict::Deliver(at + nanos(s.reorder_delay));
        }
        at = at.max(self.last_delivery);
        self.last_delivery = at;
        Verdict::Deliver(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn delay_only_adds_the_delay() {
        let mut l = Line::new(
            Shape {
                delay: Duration::from_millis(10),
                ..Shape::default()
            },
            1,
        );
        assert_eq!(l.admit(5 * MS, 1500), Verdict::Deliver(15 * MS));
        assert_eq!(l.admit(6 * MS, 64), Verdict::Deliver(16 * MS));
    }

    #[test]
    fn the_rate_spaces_frames_and_the_queue_bounds_the_wait() {
        // 12 Mbit/s: a 1500-byte frame takes 1 ms on the wire; 3 ms of queue.
        let mut l = Line::new(
            Shape {
                delay: Duration::from_millis(10),
                rate_bps: 12_000_000,
                queue: Duration::from_millis(3),
                ..Shape::default()
            },
            1,
        );
        let got: Vec<_> = (0..6).map(|_| l.admit(0, 1500)).collect();
        assert_eq!(
            got,
            [
                Verdict::Deliver(11 * MS),
                Verdict::Deliver(12 * MS),
                Verdict::Deliver(13 * MS),
                Verdict::Deliver(14 * MS),
                Verdict::QueueFull,
                Verdict::QueueFull,
            ]
        );
        // Once the queue has drained, frames pass again.
        assert_eq!(l.admit(4 * MS, 1500), Verdict::Deliver(15 * MS));
        assert_eq!(l.stats.queue_full, 2);
    }

    #[test]
    fn loss_is_seeded_and_near_its_rate() {
        let shape = Shape {
            loss_ppm: 10_000,
            ..Shape::default()
        };
        let run = |seed| {
            let mut l = Line::new(shape, seed);
            (0..100_000)
                .map(|i| l.admit(i, 100))
                .filter(|v| *v == Verdict::Lost)
                .count()
        };
        assert_eq!(run(7), run(7));
        let lost = run(7);
        assert!((800..1200).contains(&lost), "{lost} lost of 100,000 at 1%");
    }

    #[test]
    fn jitter_never_reorders_but_reordering_does() {
        let mut l = Line::new(
            Shape {
                delay: Duration::from_millis(5),
                jitter: Duration::from_millis(2),
                ..Shape::default()
            },
            3,
        );
        let mut last = 0;
        for i in 0..10_000 {
            let Verdict::Deliver(at) = l.admit(i * 1000, 100) else {
                panic!("nothing is lost here");
            };
            assert!(at >= last && at >= i * 1000 + 5 * MS && at <= i * 1000 + 7 * MS);
            last = at;
        }
        let mut l = Line::new(
            Shape {
                reorder_ppm: 100_000,
                reorder_delay: Duration::from_millis(1),
                ..Shape::default()
            },
            3,
        );
        let ats: Vec<u64> = (0..1000)
            .map(|i| match l.admit(i * 1000, 100) {
                Verdict::Deliver(at) => at,
                v => panic!("{v:?}"),
            })
            .collect();
        let overtaken = ats.windows(2).filter(|w| w[1] < w[0]).count();
        assert!(overtaken > 50, "{overtaken} reordered");
        assert!((50..150).contains(&l.stats.reordered), "{:?}", l.stats);
    }
}
