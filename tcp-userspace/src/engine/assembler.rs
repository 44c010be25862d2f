//! Out-of-order reassembly: bytes that arrived beyond the next expected one, kept until the
//! gap before them fills (RFC 9293 §3.10.7.4 "segment text", RFC 2018 for the SACK blocks).
//!
//! Offsets are relative to the receiver's `rcv_nxt`; the caller shifts them as data becomes
//! contiguous.

use std::collections::BTreeMap;

/// Data held out of order, keyed by offset from `rcv_nxt`, non-overlapping and non-adjacent.
#[derive(Debug, Default, Clone)]
pub struct Assembler {
    blocks: BTreeMap<usize, Vec<u8>>,
    /// Most recently changed block (its start), first in SACK blocks (RFC 2018 §4).
    latest: Option<usize>,
}

impl Assembler {
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.blocks.values().map(Vec::len).sum()
    }

    /// Stores `data` at `offset` (> 0: the caller delivers offset 0 directly), merging with
    /// what is already there. Data already held wins where they overlap (it was checked first).
    pub fn insert(&mut self, offset: usize, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut start = offset;
        let mut bytes = data.to_vec();
        // Merge with a block that starts before and reaches into or touches us.
        if let Some((&s, b)) = self.blocks.range(..=start).next_back()
            && s + b.len() >= start
        {
            let mut merged = self.blocks.remove(&s).unwrap_or_default();
            let end = start + bytes.len();
            if end > s + merged.len() {
                let skip = s + merged.len() - start;
                merged.extend_from_slice(&bytes[skip..]);
            }
            start = s;
            bytes = merged;
        }
        // Swallow blocks that start inside or right after us.
        loop {
            let end = start + bytes.len();
            let Some((&s, _)) = self.blocks.range(start..=end).next() else {
                break;
            };
            let b = self.blocks.remove(&s).unwrap_or_default();
            if s + b.len() > end {
                bytes.extend_from_slice(&b[end - s..]);
            }
        }
        self.blocks.insert(start, bytes);
        self.latest = Some(start);
    }

    /// Removes and returns the block at offset 0, if the gap before it has filled. The caller
    /// then calls `advance` with its length.
    pub fn take_front(&mut self) -> Option<Vec<u8>> {
        let (&s, _) = self.blocks.iter().next()?;
        if s != 0 {
            return None;
        }
        self.blocks.remove(&0)
    }

    /// Shifts every offset down by `n` (rcv_nxt advanced by `n`), dropping what falls below 0.
    pub fn advance(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        let old = std::mem::take(&mut self.blocks);
        for (s, b) in old {
            if s + b.len() <= n {
                continue;
            }
            if s >= n {
                self.blocks.insert(s - n, b);
            } else {
                self.blocks.insert(0, b[n - s..].to_vec());
            }
        }
        self.latest = self.latest.and_then(|l| l.checked_sub(n));
    }

    /// The held ranges as (start, end) offsets, the most recently changed first (for SACK).
    pub fn ranges(&self) -> Vec<(usize, usize)> {
        let mut v: Vec<(usize, usize)> =
            self.blocks.iter().map(|(&s, b)| (s, s + b.len())).collect();
        if let Some(latest) = self.latest
            && let Some(pos) = v.iter().position(|&(s, e)| s <= latest && latest < e)
        {
            let r = v.remove(pos);
            v.insert(0, r);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds segments of `stream` in the given order through an assembler the way the receive
    /// path does, and returns what was delivered in order.
    fn reassemble(stream: &[u8], segments: &[(usize, usize)]) -> Vec<u8> {
        let mut asm = Assembler::default();
        let mut delivered = Vec::new();
        for &(start, len) in segments {
            let end = (start + len).min(stream.len());
            if start >= end || end <= delivered.len() {
                continue;
            }
            let start = start.max(delivered.len());
            let off = start - delivered.len();
            if off == 0 {
                delivered.extend_from_slice(&stream[start..end]);
                asm.advance(end - start);
            } else {
                asm.insert(off, &stream[start..end]);
            }
            while let Some(front) = asm.take_front() {
                let n = front.len();
                delivered.extend_from_slice(&front);
                asm.advance(n);
            }
        }
        delivered
    }

    #[test]
    fn fills_a_hole() {
        let s: Vec<u8> = (0..30).collect();
        assert_eq!(reassemble(&s, &[(10, 10), (20, 10), (0, 10)]), s);
    }

    #[test]
    fn ranges_put_the_latest_first() {
        let mut a = Assembler::default();
        a.insert(10, &[1; 5]);
        a.insert(30, &[1; 5]);
        assert_eq!(a.ranges(), vec![(30, 35), (10, 15)]);
        a.insert(15, &[1; 2]);
        assert_eq!(a.ranges(), vec![(10, 17), (30, 35)]);
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
        fn held_bytes_never_overlap(ops in proptest::collection::vec((1usize..500, 1usize..50), 1..80)) {
            let mut a = Assembler::default();
            for (off, len) in ops {
                a.insert(off, &vec![0; len]);
                let r = a.ranges();
                let mut sorted = r.clone();
                sorted.sort();
                for w in sorted.windows(2) {
                    prop_assert!(w[0].1 < w[1].0, "{:?}", sorted);
                }
                prop_assert_eq!(sorted.iter().map(|(s, e)| e - s).sum::<usize>(), a.len());
            }
        }
    }
}
