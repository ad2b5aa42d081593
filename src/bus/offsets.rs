//! Which offsets are safe to store, with requests finishing out of order.
//!
//! Records of one partition are handled concurrently, so offset 12 may finish
//! before offset 10. Storing 12 then would commit past 10, and a crash would
//! lose it. The tracker stores, per partition, only up to the last record
//! before the lowest one still in flight.

use std::collections::{BTreeSet, HashMap};

#[derive(Default)]
pub struct OffsetTracker {
    partitions: HashMap<(String, i32), Partition>,
}

#[derive(Default)]
struct Partition {
    in_flight: BTreeSet<i64>,
    /// Answered offsets above the last stored one.
    finished: BTreeSet<i64>,
}

impl OffsetTracker {
    /// A record was taken from the partition.
    pub fn begin(&mut self, topic: &str, partition: i32, offset: i64) {
        self.partitions.entry((topic.to_owned(), partition)).or_default().in_flight.insert(offset);
    }

    /// A record was answered. Returns the offset to store now (the highest
    /// answered record with no unanswered record before it), if there is one.
    pub fn finish(&mut self, topic: &str, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        if !p.in_flight.remove(&offset) {
            return None;
        }
        p.finished.insert(offset);
        let below = match p.in_flight.first() {
            Some(&lowest) => p.finished.range(..lowest).next_back().copied(),
            None => p.finished.last().copied(),
        }?;
        p.finished = p.finished.split_off(&(below + 1));
        Some(below)
    }

    /// Records taken but not yet answered, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_stores_each_offset() {
        let mut t = OffsetTracker::default();
        t.begin("t", 0, 5);
        t.begin("t", 0, 6);
        assert_eq!(t.finish("t", 0, 5), Some(5));
        assert_eq!(t.finish("t", 0, 6), Some(6));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn never_stores_past_an_unfinished_record() {
        let mut t = OffsetTracker::default();
        for o in 10..=12 {
            t.begin("t", 0, o);
        }
        assert_eq!(t.finish("t", 0, 12), None, "10 and 11 still in flight");
        assert_eq!(t.finish("t", 0, 11), None, "10 still in flight");
        assert_eq!(t.finish("t", 0, 10), Some(12), "all done: store the highest");
    }

    #[test]
    fn a_later_finish_below_the_gap_moves_forward_partially() {
        let mut t = OffsetTracker::default();
        for o in [1, 2, 3, 4] {
            t.begin("t", 0, o);
        }
        assert_eq!(t.finish("t", 0, 1), Some(1));
        assert_eq!(t.finish("t", 0, 4), None);
        assert_eq!(t.finish("t", 0, 2), Some(2), "3 still in flight");
        assert_eq!(t.finish("t", 0, 3), Some(4));
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::default();
        t.begin("t", 0, 0);
        t.begin("t", 1, 0);
        assert_eq!(t.finish("t", 1, 0), Some(0));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.finish("other", 0, 0), None, "unknown partition");
    }
}
