//! The ready set: the connections a queue's loop must visit this turn, and only those.
//!
//! A connection is marked when something gives it work (an engine event, its upstream
//! socket's readiness, the end of its upstream connect); the loop visits each marked
//! connection once per turn. Marking a connection while its turn's batch runs puts it in the
//! next batch: work that appears while a connection is pumped is never lost, and a connection
//! that nothing marks is never visited, however many there are.

use crate::engine::ConnId;

#[derive(Default)]
pub struct ReadySet {
    /// Marked connections, in marking order.
    list: Vec<ConnId>,
    /// Per engine slot: the generation + 1 of the connection marked there (0: none), so that
    /// a connection is listed once however often it is marked.
    marked: Vec<u32>,
}

impl ReadySet {
    /// Marks `id`; false if it was marked already.
    pub fn mark(&mut self, id: ConnId) -> bool {
        let slot = id.slot as usize;
        if self.marked.len() <= slot {
            self.marked.resize(slot + 1, 0);
        }
        let tag = id.generation.wrapping_add(1);
        if self.marked[slot] == tag {
            return false;
        }
        self.marked[slot] = tag;
        self.list.push(id);
        true
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Moves this turn's connections into `batch` (cleared first; its capacity is reused)
    /// and unmarks them, so that marking one again while the batch runs lists it for the
    /// next turn.
    pub fn take(&mut self, batch: &mut Vec<ConnId>) {
        batch.clear();
        std::mem::swap(batch, &mut self.list);
        for id in batch.iter() {
            if let Some(m) = self.marked.get_mut(id.slot as usize) {
                *m = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn id(slot: u32, generation: u32) -> ConnId {
        ConnId { slot, generation }
    }

    #[test]
    fn a_connection_is_listed_once_however_often_it_is_marked() {
        let mut r = ReadySet::default();
        assert!(r.mark(id(3, 0)));
        assert!(!r.mark(id(3, 0)));
        assert!(r.mark(id(1, 0)));
        let mut batch = Vec::new();
        r.take(&mut batch);
        assert_eq!(batch, vec![id(3, 0), id(1, 0)]);
        assert!(r.is_empty());
    }

    #[test]
    fn marked_while_its_batch_runs_means_visited_next_turn() {
        let mut r = ReadySet::default();
        r.mark(id(0, 0));
        let mut batch = Vec::new();
        r.take(&mut batch);
        // Pumping connection 0 produced more work for it (say, its upstream is readable
        // again): it is not lost, and not visited twice in this turn.
        assert!(r.mark(id(0, 0)));
        assert_eq!(batch, vec![id(0, 0)]);
        let mut next = Vec::new();
        r.take(&mut next);
        assert_eq!(next, vec![id(0, 0)]);
    }

    #[test]
    fn a_reused_slot_is_another_connection() {
        let mut r = ReadySet::default();
        r.mark(id(5, 1));
        assert!(r.mark(id(5, 2)), "the slot's next connection is its own");
    }

    #[test]
    fn idle_connections_are_never_visited() {
        let mut r = ReadySet::default();
        // 10,000 connections exist; two have work.
        r.mark(id(42, 0));
        r.mark(id(9_999, 0));
        let mut batch = Vec::new();
        r.take(&mut batch);
        assert_eq!(batch.len(), 2);
        r.take(&mut batch);
        assert!(batch.is_empty(), "nothing marked: nothing visited");
    }

    proptest! {
        /// Against a model: every connection marked before a turn is visited in that turn,
        /// exactly once; nothing unmarked is visited.
        #[test]
        fn every_mark_is_served_by_the_next_turn(
            ops in proptest::collection::vec(prop_oneof![
                (0u32..50).prop_map(Some),
                Just(None),
            ], 0..300)
        ) {
            let mut r = ReadySet::default();
            let mut model: BTreeSet<u32> = BTreeSet::new();
            let mut batch = Vec::new();
            for op in ops {
                match op {
                    Some(slot) => {
                        prop_assert_eq!(r.mark(id(slot, 7)), model.insert(slot));
                    }
                    None => {
                        r.take(&mut batch);
                        let got: BTreeSet<u32> = batch.iter().map(|i| i.slot).collect();
                        prop_assert_eq!(got.len(), batch.len(), "listed twice");
                        prop_assert_eq!(&got, &model);
                        model.clear();
                    }
                }
            }
        }
    }
}
