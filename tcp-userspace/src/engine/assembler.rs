//! Out-of-order reassembly (RFC 9293 §3.10.7.4 "segment text", RFC 2018 for the SACK
//! blocks): which byte ranges beyond the next expected one have arrived. The bytes
//! themselves are written straight into the receive buffer at their place
//! (`ByteRing::write_ahead`), so holding them costs no copy and no allocation; when the gap
//! before a range fills, the range is simply committed.
//!
//! Offsets are relative to the receiver's `rcv_nxt`; the caller shifts them as data becomes
//! contiguous.

/// Ranges held out of order: sorted, non-overlapping, non-adjacent. The vector keeps its
/// capacity, so steady loss recovery allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct Assembler {
    ranges: Vec<(usize, usize)>,
    /// Start of the most recently changed range, first in SACK blocks (RFC 2018 §4).
    latest: Option<usize>,
}

impl Assembler {
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.ranges.iter().map(|(s, e)| e - s).sum()
    }

    /// Ranges held.
    pub fn count(&self) -> usize {
        self.ranges.len()
    }

    /// Records `len` bytes at `offset` (> 0: the caller delivers offset 0 directly), merging
    /// with the ranges already there.
    pub fn insert(&mut self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let (mut start, mut end) = (offset, offset + len);
        // The first range that ends at or after our start (it may touch or overlap us).
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        // Past the last range that starts at or before our end.
        let last = self.ranges.partition_point(|&(s, _)| s <= end);
        if first < last {
            start = start.min(self.ranges[first].0);
            end = end.max(self.ranges[last - 1].1);
        }
        self.ranges.splice(first..last, [(start, end)]);
        self.latest = Some(start);
    }

    /// Removes the range at offset 0, if the gap before it has filled, and returns its
    /// length. The caller then calls `advance` with it.
    pub fn take_front(&mut self) -> Option<usize> {
        match self.ranges.first() {
            Some(&(0, e)) => {
                self.ranges.remove(0);
                Some(e)
            }
            _ => None,
        }
    }

    /// Shifts every offset down by `n` (rcv_nxt advanced by `n`), dropping what falls below 0.
    pub fn advance(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        self.ranges.retain_mut(|(s, e)| {
            if *e <= n {
                return false;
            }
            *s = s.saturating_sub(n);
            *e -= n;
            true
        });
        self.latest = self.latest.map(|l| l.saturating_sub(n));
    }

    /// Fills `out` with the held ranges as (start, end) offsets, the most recently changed
    /// first (RFC 2018 §4), then the others in order; returns how many it wrote.
    pub fn sack_blocks(&self, out: &mut [(usize, usize)]) -> usize {
        let latest = self
            .latest
            .and_then(|l| self.ranges.iter().position(|&(s, e)| s <= l && l < e));
        let mut n = 0;
        for i in latest
            .into_iter()
            .chain((0..self.ranges.len()).filter(|&i| Some(i) != latest))
        {
            if n == out.len() {
                break;
            }
            out[n] = self.ranges[i];
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::engine::ring::ByteRing;

    /// Feeds segments of `stream` in the given order through an assembler and a receive ring
    /// the way the receive path does, and returns what was delivered in order.
    fn reassemble(stream: &[u8], segments: &[(usize, usize)]) -> Vec<u8> {
        let mut asm = Assembler::default();
        let mut ring = ByteRing::new(1 << 16);
        let mut delivered = 0;
        for &(start, len) in segments {
            let end = (start + len).min(stream.len());
            if start >= end || end <= delivered {
                continue;
            }
            let start = start.max(delivered);
            let off = start - delivered;
            if off == 0 {
                let n = ring.extend(&stream[start..end]);
                delivered += n;
                asm.advance(n);
            } else {
                let n = ring.write_ahead(off, &stream[start..end]);
                asm.insert(off, n);
            }
            while let Some(n) = asm.take_front() {
                ring.commit(n);
                delivered += n;
                asm.advance(n);
            }
        }
        let (a, b) = ring.as_slices();
        [a, b].concat()
    }

    #[test]
    fn fills_a_hole() {
        let s: Vec<u8> = (0..30).collect();
        assert_eq!(reassemble(&s, &[(10, 10), (20, 10), (0, 10)]), s);
    }

    #[test]
    fn sack_blocks_put_the_latest_first() {
        let mut a = Assembler::default();
        a.insert(10, 5);
        a.insert(30, 5);
        let mut out = [(0, 0); 4];
        assert_eq!(a.sack_blocks(&mut out), 2);
        assert_eq!(out[..2], [(30, 35), (10, 15)]);
        a.insert(15, 2);
        assert_eq!(a.sack_blocks(&mut out), 2);
        assert_eq!(out[..2], [(10, 17), (30, 35)]);
        // Only as many as fit.
        assert_eq!(a.sack_blocks(&mut out[..1]), 1);
    }

    #[test]
    fn merging_touching_and_overlapping_ranges() {
        let mut a = Assembler::default();
        a.insert(10, 5);
        a.insert(20, 5);
        a.insert(15, 5); // touches both
        assert_eq!(a.ranges, vec![(10, 25)]);
        a.insert(5, 30); // covers it
        assert_eq!(a.ranges, vec![(5, 35)]);
        a.advance(7);
        assert_eq!(a.ranges, vec![(0, 28)]);
        assert_eq!(a.take_front(), Some(28));
        assert!(a.is_empty());
    }

    proptest! {
        #[test]
        fn any_order_with_overlaps_reassembles_exactly(
            len in 1usize..2000,
            cuts in proptest::collection::vec((0usize..2000, 1usize..300), 1..60),
            seed: u64,
        ) {
            let stream: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            // Cover everything at least once, then shuffle with the extra random pieces.
            let mut segs: Vec<(usize, usize)> = (0..len).step_by(100).map(|s| (s, 100)).collect();
            segs.extend(cuts);
            let mut x = seed | 1;
            for i in (1..segs.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                segs.swap(i, (x % (i as u64 + 1)) as usize);
            }
            // The covering pieces must all arrive eventually: append them again at the end.
            segs.extend((0..len).step_by(100).map(|s| (s, 100)));
            prop_assert_eq!(reassemble(&stream, &segs), stream);
        }

        #[test]
        fn held_ranges_never_overlap(ops in proptest::collection::vec((1usize..500, 1usize..50), 1..80)) {
            let mut a = Assembler::default();
            let mut held = std::collections::BTreeSet::new();
            for (off, len) in ops {
                a.insert(off, len);
                held.extend(off..off + len);
                for w in a.ranges.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "{:?}", a.ranges);
                }
                prop_assert_eq!(a.len(), held.len());
            }
        }
    }
}
