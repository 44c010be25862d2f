//! A byte FIFO for a connection's send and receive buffers: one allocation that grows (by
//! doubling) only as far as the data needs, up to a maximum, and gives its free space out as
//! slices, so that the relay reads from the upstream socket straight into a send buffer and
//! writes a receive buffer straight to the upstream socket.
//!
//! A connection at rest holds no allocation at all (`release` gives it back). Given-back
//! buffers wait in a small per-thread pool for the next connection that needs one, so a busy
//! queue thread does not allocate (nor zero) buffers in steady state: every queue runs in its
//! own thread, so the pool needs no lock.

use std::cell::RefCell;

/// Smallest allocation: a few segments.
const MIN_CAPACITY: usize = 4096;

/// Bytes of idle buffers a thread's pool keeps at most (beyond, they are freed).
const POOL_BYTES: usize = 32 << 20;

/// Idle buffers by size class (capacity `MIN_CAPACITY << class`), and their total size.
struct Pool {
    classes: Vec<Vec<Vec<u8>>>,
    bytes: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool {
            classes: Vec::new(),
            bytes: 0,
        })
    };
}

fn class_of(cap: usize) -> usize {
    (cap / MIN_CAPACITY).trailing_zeros() as usize
}

/// A buffer of `cap` bytes (a power of two ≥ MIN_CAPACITY): a pooled one if there is one.
/// Its contents are whatever they were; the ring exposes only bytes it wrote.
fn take_buffer(cap: usize) -> Vec<u8> {
    let pooled = POOL.with(|p| {
        let mut p = p.borrow_mut();
        let b = p.classes.get_mut(class_of(cap))?.pop()?;
        p.bytes -= b.len();
        Some(b)
    });
    pooled.unwrap_or_else(|| vec![0u8; cap])
}

/// Gives a buffer back to the thread's pool (or frees it when the pool is full).
fn give_buffer(buf: Vec<u8>) {
    let cap = buf.len();
    if cap < MIN_CAPACITY || !cap.is_power_of_two() {
        return;
    }
    POOL.with(|p| {
        let mut p = p.borrow_mut();
        if p.bytes + cap > POOL_BYTES {
            return;
        }
        let class = class_of(cap);
        if p.classes.len() <= class {
            p.classes.resize_with(class + 1, Vec::new);
        }
        p.bytes += cap;
        p.classes[class].push(buf);
    });
}

#[derive(Debug, Clone, Default)]
pub struct ByteRing {
    /// `buf.len()` is the capacity: zero or a power of two.
    buf: Vec<u8>,
    head: usize,
    len: usize,
    /// Bytes written beyond `len` out of order (`write_ahead`): the extent to keep when the
    /// allocation grows.
    ahead: usize,
    max: usize,
}

impl ByteRing {
    /// An empty ring that may hold up to `max` bytes; nothing is allocated yet.
    pub fn new(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            head: 0,
            len: 0,
            ahead: 0,
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

    /// Raises the most it may hold (auto-tuning); never lowers it.
    pub fn grow_max(&mut self, max: usize) {
        self.max = self.max.max(max);
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
        // Back to the start when empty (bytes written ahead stay where they are).
        self.head = if self.len == 0 && self.ahead == 0 {
            0
        } else {
            (self.head + n) & self.mask()
        };
    }

    /// Grows the allocation so that `want` more bytes fit (as far as `max` allows).
    fn reserve(&mut self, want: usize) {
        self.reserve_to(self.len + want.min(self.free()));
    }

    /// Grows the allocation to hold `total` bytes from the head (as far as `max` allows),
    /// keeping the data and what was written ahead of it.
    fn reserve_to(&mut self, total: usize) {
        let need = total.max(self.len + self.ahead).max(1);
        if need <= self.buf.len() {
            return;
        }
        let cap = need
            .next_power_of_two()
            .max(MIN_CAPACITY)
            .min(self.max.next_power_of_two().max(MIN_CAPACITY));
        let mut buf = take_buffer(cap);
        let kept = self.len + self.ahead;
        if kept > 0 {
            let first = kept.min(self.buf.len() - self.head);
            buf[..first].copy_from_slice(&self.buf[self.head..self.head + first]);
            buf[first..kept].copy_from_slice(&self.buf[..kept - first]);
        }
        give_buffer(std::mem::replace(&mut self.buf, buf));
        self.head = 0;
    }

    /// Writes `data` at `offset` bytes past the end of the data (out-of-order arrival),
    /// without making it part of the data: `commit` does that once the gap before it has
    /// filled. Writes only what fits within `max`; returns how much.
    pub fn write_ahead(&mut self, offset: usize, data: &[u8]) -> usize {
        let end = (offset + data.len()).min(self.free());
        if end <= offset {
            return 0;
        }
        let n = end - offset;
        self.reserve_to(self.len + end);
        let cap = self.buf.len();
        let at = (self.head + self.len + offset) & self.mask();
        let first = n.min(cap - at);
        self.buf[at..at + first].copy_from_slice(&data[..first]);
        self.buf[..n - first].copy_from_slice(&data[first..n]);
        self.ahead = self.ahead.max(end);
        n
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
        self.ahead = self.ahead.saturating_sub(n);
        n
    }

    /// Free space for up to `want` bytes, as up to two slices to write into; `commit` then
    /// says how many were written. The allocation at most doubles per call, so that a short
    /// answer read with a large `want` takes a small buffer, and a stream grows into a large
    /// one in a few reads.
    pub fn spare_mut(&mut self, want: usize) -> (&mut [u8], &mut [u8]) {
        let room = (self.buf.len() * 2).max(MIN_CAPACITY) - self.len;
        let n = want.min(self.free()).min(room);
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

    /// Takes `n` bytes written into the slices `spare_mut` gave, or ahead by `write_ahead`.
    pub fn commit(&mut self, n: usize) {
        debug_assert!(self.len + n <= self.buf.len());
        self.len += n;
        self.ahead = self.ahead.saturating_sub(n);
    }

    /// Empties the ring (its allocation stays; see `release`).
    pub fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
        self.ahead = 0;
    }

    /// Frees the allocation if the ring holds nothing (a connection at rest).
    pub fn release(&mut self) {
        if self.len == 0 && self.ahead == 0 {
            give_buffer(std::mem::take(&mut self.buf));
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
    fn a_released_buffer_is_reused_not_reallocated() {
        let mut r = ByteRing::new(1 << 20);
        r.extend(&[1; 100]);
        let first = r.buf.as_ptr();
        r.consume(100);
        r.release();
        let mut other = ByteRing::new(1 << 20);
        other.extend(&[2; 100]);
        assert_eq!(other.buf.as_ptr(), first, "the pooled buffer");
        assert_eq!(other.as_slices().0, &[2; 100][..]);
    }

    #[test]
    fn spare_grows_by_doubling() {
        let mut r = ByteRing::new(1 << 20);
        let (a, b) = r.spare_mut(256 * 1024);
        assert_eq!(
            a.len() + b.len(),
            MIN_CAPACITY,
            "a short answer takes a small buffer"
        );
        r.commit(MIN_CAPACITY);
        let (a, b) = r.spare_mut(256 * 1024);
        assert_eq!(a.len() + b.len(), MIN_CAPACITY);
        r.commit(MIN_CAPACITY);
        assert_eq!(r.allocated(), 2 * MIN_CAPACITY);
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

    #[test]
    fn bytes_written_ahead_survive_growth_and_commit_in_place() {
        let mut r = ByteRing::new(1 << 20);
        r.extend(b"abc");
        r.consume(2); // head moves
        assert_eq!(r.write_ahead(3, b"ghi"), 3);
        // Growth far beyond the first allocation keeps what was written ahead.
        assert_eq!(r.write_ahead(10_000, &[7; 10]), 10);
        r.extend(b"def");
        r.commit(3);
        let (a, b) = r.as_slices();
        assert_eq!([a, b].concat(), b"cdefghi");
        r.consume(7);
        r.release();
        assert!(r.allocated() > 0, "the bytes ahead are still held");
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
                        // At most doubling the allocation, and never nothing when there is room.
                        prop_assert!(got <= n.min(max - d.len()));
                        prop_assert!(got > 0 || n == 0 || d.len() == max);
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
