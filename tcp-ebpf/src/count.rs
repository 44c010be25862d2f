//! This CPU's counters, looked up once per frame.

use tcp_common::{Counter, CounterBlock};

/// A handle on this CPU's [`CounterBlock`]: counting is a plain add, no map lookup.
#[derive(Clone, Copy)]
pub struct Counts(*mut CounterBlock);

impl Counts {
    /// `block` is this CPU's value of the per-CPU `COUNTERS` array.
    #[inline(always)]
    pub fn new(block: *mut CounterBlock) -> Self {
        Self(block)
    }

    #[inline(always)]
    pub fn add(self, c: Counter) {
        // SAFETY: a per-CPU map value, written only by this CPU while the program runs;
        // every Counter indexes inside the block.
        unsafe { (*self.0)[c.index() as usize] += 1 };
    }
}
