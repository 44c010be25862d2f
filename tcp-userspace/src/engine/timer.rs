//! The connections' timers: a min-heap of (deadline, connection) with lazy deletion.
//!
//! A connection has one scheduled deadline at a time (its earliest timer). Moving it earlier
//! pushes a new entry; moving it later pushes nothing: the old, earlier entry fires, the owner
//! finds nothing due and schedules the real deadline. Stale entries are recognised on expiry
//! (the owner compares with what it scheduled) and dropped. The heap's minimum is the event
//! loop's sleep: a thousand idle connections whose keep-alive is ten minutes away let it
//! sleep ten minutes.

use std::{cmp::Reverse, collections::BinaryHeap};

use super::time::Instant;

pub struct Timers<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Timers<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> Timers<K> {
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    pub fn schedule(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry's deadline (possibly stale: then it fires early, harmlessly).
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and hands over every entry due at or before `now`, earliest first.
    pub fn expire(&mut self, now: Instant, mut out: impl FnMut(Instant, K)) {
        while let Some(Reverse((at, _))) = self.heap.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((at, k))) = self.heap.pop() {
                out(at, k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let mut t = Timers::default();
        t.schedule(Instant::from_millis(20), "b");
        t.schedule(Instant::from_millis(3), "a");
        t.schedule(Instant::from_millis(600_000), "idle");
        assert_eq!(t.next(), Some(Instant::from_millis(3)));
        let mut got = Vec::new();
        t.expire(Instant::from_millis(2), |_, k| got.push(k));
        assert!(got.is_empty());
        t.expire(Instant::from_millis(25), |_, k| got.push(k));
        assert_eq!(got, vec!["a", "b"]);
        // What is left is ten minutes away: that is the loop's sleep.
        assert_eq!(t.next(), Some(Instant::from_millis(600_000)));
    }
}
