//! The memory every connection's buffers may grow into beyond their initial sizes, shared by
//! all queue threads (Linux's `tcp_mem` plays this part): auto-tuning takes from it before a
//! buffer may grow and a connection gives back what it took when it ends, so that a crowd of
//! connections cannot each grow to the per-connection maximum.

use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct BufferBudget {
    limit: usize,
    used: AtomicUsize,
}

impl BufferBudget {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes up to `want` bytes; returns how many were granted (0 when the budget is spent).
    pub fn take(&self, want: usize) -> usize {
        let mut used = self.used.load(Ordering::Relaxed);
        loop {
            let grant = want.min(self.limit.saturating_sub(used));
            if grant == 0 {
                return 0;
            }
            match self.used.compare_exchange_weak(
                used,
                used + grant,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return grant,
                Err(now) => used = now,
            }
        }
    }

    /// Gives back what `take` granted.
    pub fn give(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// Budgets compare by their limit (settings compare equal when they would behave alike).
impl PartialEq for BufferBudget {
    fn eq(&self, other: &Self) -> bool {
        self.limit == other.limit
    }
}
impl Eq for BufferBudget {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_until_spent_and_takes_back() {
        let b = BufferBudget::new(100);
        assert_eq!(b.take(60), 60);
        assert_eq!(b.take(60), 40);
        assert_eq!(b.take(1), 0);
        b.give(50);
        assert_eq!(b.used(), 50);
        assert_eq!(b.take(10), 10);
    }
}
