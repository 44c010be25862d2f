//! A hashed timing wheel (Varghese & Lauck): O(1) to schedule, O(1) per expiring entry, and
//! per tick only one slot is looked at, so 100k connections with timers stay cheap.
//!
//! Entries are not removed when a deadline moves; the owner checks on expiry whether the
//! entry is still current (and re-schedules if not).

use super::time::Instant;

pub struct TimerWheel<K> {
    tick_us: u64,
    slots: Vec<Vec<(u64, K)>>,
    /// Last tick processed.
    current: u64,
    len: usize,
}

impl<K> TimerWheel<K> {
    /// `tick_us` per slot, `slots` slots (a power of two).
    pub fn new(tick_us: u64, slots: usize) -> Self {
        Self {
            tick_us: tick_us.max(1),
            slots: (0..slots.max(1)).map(|_| Vec::new()).collect(),
            current: 0,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn tick_of(&self, t: Instant) -> u64 {
        t.0.div_ceil(self.tick_us)
    }

    pub fn schedule(&mut self, at: Instant, key: K) {
        let tick = self.tick_of(at).max(self.current + 1);
        let n = self.slots.len() as u64;
        self.slots[(tick % n) as usize].push((tick, key));
        self.len += 1;
    }

    /// Removes and returns every entry due at or before `now`.
    pub fn expire(&mut self, now: Instant, mut out: impl FnMut(K)) {
        let now_tick = now.0 / self.tick_us;
        if now_tick <= self.current {
            return;
        }
        let n = self.slots.len() as u64;
        // A jump longer than a revolution visits every slot once.
        let first = self.current + 1;
        let last = now_tick.min(self.current + n);
        for t in first..=last {
            let slot = &mut self.slots[(t % n) as usize];
            let mut i = 0;
            while i < slot.len() {
                if slot[i].0 <= now_tick {
                    let (_, k) = slot.swap_remove(i);
                    self.len -= 1;
                    out(k);
                } else {
                    i += 1;
                }
            }
        }
        self.current = now_tick;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_the_right_tick_also_after_a_revolution() {
        let mut w = TimerWheel::new(1000, 8);
        w.schedule(Instant::from_millis(3), "a");
        w.schedule(Instant::from_millis(20), "b"); // more than one revolution away
        let mut got = Vec::new();
        w.expire(Instant::from_millis(2), |k| got.push(k));
        assert!(got.is_empty());
        w.expire(Instant::from_millis(3), |k| got.push(k));
        assert_eq!(got, vec!["a"]);
        w.expire(Instant::from_millis(12), |k| got.push(k));
        assert_eq!(got, vec!["a"], "b is one revolution later");
        w.expire(Instant::from_millis(100), |k| got.push(k));
        assert_eq!(got, vec!["a", "b"]);
        assert!(w.is_empty());
    }

    #[test]
    fn a_past_deadline_fires_on_the_next_tick() {
        let mut w = TimerWheel::new(1000, 8);
        w.expire(Instant::from_millis(50), |_: u32| {});
        w.schedule(Instant::from_millis(10), 1);
        let mut got = Vec::new();
        w.expire(Instant::from_millis(51), |k| got.push(k));
        assert_eq!(got, vec![1]);
    }
}
