//! Replay protection: the envelope ids this node instance has accepted,
//! each remembered until its timestamp leaves the clock-skew window (after
//! that the timestamp check refuses it anyway).
//!
//! Kafka may deliver the same record twice (a rebalance, a restart before
//! the offset was stored): that is the same id at the same partition and
//! offset, and it is let through. The same id in a new record is a replay.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Where a record sits in the request topic.
pub type Position = (i32, i64);

#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// First time seen (or Kafka delivering the same record again).
    Fresh,
    /// Seen before in another record.
    Replayed,
    /// The memory is full of live ids: refuse rather than forget.
    Full,
}

pub struct ReplayGuard {
    seen: HashMap<Uuid, (Position, DateTime<Utc>)>,
    /// The same ids ordered by when they may be forgotten.
    by_expiry: BTreeSet<(DateTime<Utc>, Uuid)>,
    max_entries: usize,
}

impl ReplayGuard {
    pub fn new(max_entries: usize) -> ReplayGuard {
        ReplayGuard { seen: HashMap::new(), by_expiry: BTreeSet::new(), max_entries }
    }

    /// Records `id` at `position`, to be remembered until `forget_after`.
    pub fn check(&mut self, id: Uuid, position: Position, forget_after: DateTime<Utc>, now: DateTime<Utc>) -> Replay {
        self.forget_expired(now);
        if let Some((seen_at, _)) = self.seen.get(&id) {
            return if *seen_at == position { Replay::Fresh } else { Replay::Replayed };
        }
        if self.seen.len() >= self.max_entries {
            return Replay::Full;
        }
        self.seen.insert(id, (position, forget_after));
        self.by_expiry.insert((forget_after, id));
        Replay::Fresh
    }

    /// Ids remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }

    fn forget_expired(&mut self, now: DateTime<Utc>) {
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.by_expiry.pop_first();
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn a_second_record_with_the_same_id_is_a_replay_until_the_window_closes() {
        let mut guard = ReplayGuard::new(10);
        let now = Utc::now();
        let id = Uuid::new_v4();
        let later = now + TimeDelta::seconds(60);
        assert_eq!(guard.check(id, (0, 5), later, now), Replay::Fresh);
        assert_eq!(guard.check(id, (0, 5), later, now), Replay::Fresh, "redelivery of the same record");
        assert_eq!(guard.check(id, (0, 9), later, now), Replay::Replayed);
        assert_eq!(guard.check(id, (1, 5), later, now), Replay::Replayed);
        assert_eq!(guard.check(id, (0, 9), later, later + TimeDelta::seconds(1)), Replay::Fresh, "forgotten");
    }

    #[test]
    fn a_full_memory_refuses_instead_of_forgetting() {
        let mut guard = ReplayGuard::new(2);
        let now = Utc::now();
        let later = now + TimeDelta::seconds(60);
        for offset in 0..2 {
            assert_eq!(guard.check(Uuid::new_v4(), (0, offset), later, now), Replay::Fresh);
        }
        assert_eq!(guard.check(Uuid::new_v4(), (0, 3), later, now), Replay::Full);
        assert_eq!(guard.check(Uuid::new_v4(), (0, 3), later, later), Replay::Fresh, "room again once expired");
        assert_eq!(guard.remembered(), 1);
    }
}
