//! A byte FIFO for a connection's send and receive buffers: one allocation that grows (by
//! doubling) only as far as the data needs, up to a maximum, and gives its free space out as
//! slices, so that the relay reads from the upstream socket straight into a send buffer and
//! writes a receive buffer straight to the upstream socket.
//!
//! A connection at rest holds no allocation at all (`release` gives it back).

/// Smallest allocation: a few segments.
const MIN_CAPACITY: usize = 4096;

#[derive(Debug, Clone, Default)]
pub struct ByteRing {
    /// `buf.len()` is the capacity: zero or a power of two.
    buf: Vec<u8>,
    head: usize,
    len: usize,
    max: usize,
}

impl ByteRing {
    /// An empty ring that may hold up to `max` bytes; nothing is allocated yet.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            head: 0,
            len: 0,
            max,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many more bytes it may take.
    pub fn free(&self) -> usize {
        self.max.saturating_sub(self.len)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes allocated now.
    pub fn allocated(&self) -> usize {
        self.buf.len()
    }

    fn mask(&self) -> usize {
        self.buf.len().wrapping_sub(1)
    }

    /// The `len` bytes from `offset` on (offset + len ≤ self.len()), as up to two slices.
    pub fn slices(&self, offset: usize, len: usize) -> (&[u8], &[u8]) {
        debug_assert!(offset + len <= self.len);
        if len == 0 {
            return (&[], &[]);
        }
        let start = (self.head + offset) & self.mask();
        let first = len.min(self.buf.len() - start);
        (&self.buf[start..start + first], &self.buf[..len - first])
    }

    /// All the data, as up to two slices.
    pub fn as_slices(&self) -> (&[u8], &[u8]) {
        self.slices(0, self.len)
    }

    /// The byte at `offset`.
    pub fn get(&self, offset: usize) -> Option<u8> {
        (offset < self.len).then(|| self.buf[(self.head + offset) & self.mask()])
    }

    /// Drops `n` bytes from the front (acknowledged, or read by the application).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.len -= n;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) & self.mask()
        };
    }

    /// Grows the allocation so that `want` more bytes fit (as far as `max` allows).
    fn reserve(&mut self, want: usize) {
        let need = (self.len + want.min(self.free())).max(1);
        if need <= self.buf.len() {
            return;
        }
        let cap = need
            .next_power_of_two()
            .max(MIN_CAPACITY)
            .min(self.max.next_power_of_two().max(MIN_CAPACITY));
        let mut buf = vec![0u8; cap];
        let (a, b) = self.as_slices();
        buf[..a.len()].copy_from_slice(a);
        buf[a.len()..a.len() + b.len()].copy_from_slice(b);
        self.buf = buf;
        self.head = 0;
    }

    /// Appends as much of `data` as fits; returns how much.
    pub fn extend(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.free());
        if n == 0 {
            return 0;
        }
        self.reserve(n);
        let (a, b) = self.spare(n);
        let first = a.len();
        a.copy_from_slice(&data[..first]);
        b.copy_from_slice(&data[first..n]);
        self.len += n;
        n
    }

    /// Free space for up to `want` bytes (grown as needed), as up to two slices to write
    /// into; `commit` then says how many were written.
    pub fn spare_mut(&mut self, want: usize) -> (&mut [u8], &mut [u8]) {
        let n = want.min(self.free());
        self.reserve(n);
        self.spare(n)
    }

    fn spare(&mut self, n: usize) -> (&mut [u8], &mut [u8]) {
        if n == 0 {
            return (&mut [], &mut []);
        }
        let cap = self.buf.len();
        let tail = (self.head + self.len) & self.mask();
        let first = n.min(cap - tail);
        let (lo, hi) = self.buf.split_at_mut(tail);
        (&mut hi[..first], &mut lo[..n - first])
    }

    /// Takes `n` bytes written into the slices `spare_mut` gave.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.buf.len());
        self.len += n;
    }

    /// Empties the ring (its allocation stays; see `release`).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    /// Frees the allocation if the ring is empty (a connection at rest).
    pub fn release(&mut self) {
        if self.len == 0 {
            self.buf = Vec::new();
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn nothing_is_allocated_before_data() {
        let mut r = ByteRing::new(1 << 20);
        assert_eq!(r.allocated(), 0);
        r.extend(b"x");
        assert_eq!(r.allocated(), MIN_CAPACITY);
        r.consume(1);
        r.release();
        assert_eq!(r.allocated(), 0);
    }

    #[test]
    fn never_more_than_max() {
        let mut r = ByteRing::new(10_000);
        assert_eq!(r.extend(&[7; 20_000]), 10_000);
        assert_eq!(r.free(), 0);
        assert!(r.allocated() <= 16_384);
        let (a, b) = r.spare_mut(100);
        assert_eq!(a.len() + b.len(), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Extend(Vec<u8>),
        Consume(usize),
        Spare(usize, u8),
        Release,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..3000).prop_map(Op::Extend),
            (0usize..4000).prop_map(Op::Consume),
            (0usize..5000, any::<u8>()).prop_map(|(n, b)| Op::Spare(n, b)),
            Just(Op::Release),
        ]
    }

    proptest! {
        /// The ring holds exactly what a VecDeque with the same capacity limit would.
        #[test]
        fn behaves_like_a_bounded_deque(ops in proptest::collection::vec(op(), 0..60)) {
            let max = 9000;
            let mut r = ByteRing::new(max);
            let mut d = VecDeque::new();
            for op in ops {
                match op {
                    Op::Extend(data) => {
                        let n = r.extend(&data);
                        prop_assert_eq!(n, data.len().min(max - d.len()));
                        d.extend(&data[..n]);
                    }
                    Op::Consume(n) => {
                        r.consume(n);
                        d.drain(..n.min(d.len()));
                    }
                    Op::Spare(n, byte) => {
                        let (a, b) = r.spare_mut(n);
                        let got = a.len() + b.len();
                        prop_assert_eq!(got, n.min(max - d.len()));
                        a.fill(byte);
                        b.fill(byte);
                        r.commit(got);
                        d.extend(std::iter::repeat_n(byte, got));
                    }
                    Op::Release => {
                        r.release();
                    }
                }
                let (a, b) = r.as_slices();
                let got: Vec<u8> = a.iter().chain(b).copied().collect();
                let want: Vec<u8> = d.iter().copied().collect();
                prop_assert_eq!(got, want);
                if !d.is_empty() {
                    let mid = d.len() / 2;
                    let (a, b) = r.slices(mid, d.len() - mid);
                    let got: Vec<u8> = a.iter().chain(b).copied().collect();
                    prop_assert_eq!(got, d.iter().skip(mid).copied().collect::<Vec<_>>());
                    prop_assert_eq!(r.get(mid), d.get(mid).copied());
                }
            }
        }
    }
}
