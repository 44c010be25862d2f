//! Sequence numbers: 32-bit, compared modulo 2^32 (RFC 9293 §3.4).

use std::{
    cmp::Ordering,
    fmt,
    ops::{Add, Sub},
};

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// `self - other` as a signed distance; meaningful within 2^31.
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    pub fn max(self, other: SeqNum) -> SeqNum {
        if self > other { self } else { other }
    }

    pub fn min(self, other: SeqNum) -> SeqNum {
        if self < other { self } else { other }
    }

    /// `lo <= self < hi`, modulo 2^32.
    pub fn in_range(self, lo: SeqNum, hi: SeqNum) -> bool {
        lo <= self && self < hi
    }
}

impl PartialOrd for SeqNum {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Not a total order on u32 (it is circular), but consistent for numbers within 2^31 of
/// each other, which is all TCP ever compares.
impl Ord for SeqNum {
    fn cmp(&self, other: &Self) -> Ordering {
        self.diff(*other).cmp(&0)
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl Add<usize> for SeqNum {
    type Output = SeqNum;
    fn add(self, rhs: usize) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs as u32))
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

/// Distance in bytes from `rhs` up to `self`; callers ensure `self >= rhs`.
impl Sub<SeqNum> for SeqNum {
    type Output = usize;
    fn sub(self, rhs: SeqNum) -> usize {
        let d = self.diff(rhs);
        debug_assert!(
            d >= 0,
            "sequence number subtraction underflow: {self} - {rhs}"
        );
        d.max(0) as usize
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn wraps_around() {
        let a = SeqNum(u32::MAX - 1);
        let b = a + 4u32;
        assert_eq!(b.0, 2);
        assert!(a < b);
        assert_eq!(b - a, 4);
        assert!(SeqNum(1).in_range(a, b));
    }

    proptest! {
        #[test]
        fn order_is_consistent_within_half_the_space(x: u32, d in 1u32..(1 << 31)) {
            let a = SeqNum(x);
            let b = a + d;
            prop_assert!(a < b);
            prop_assert!(b > a);
            prop_assert_eq!(b - a, d as usize);
            prop_assert_eq!(b - d, a);
            prop_assert_eq!(a.max(b), b);
            prop_assert_eq!(a.min(b), a);
        }

        #[test]
        fn in_range_matches_offsets(x: u32, lo in 0u32..1000, len in 0u32..1000, off in 0u32..3000) {
            let base = SeqNum(x);
            let s = base + off;
            prop_assert_eq!(s.in_range(base + lo, base + lo + len), off >= lo && off < lo + len);
        }
    }
}
