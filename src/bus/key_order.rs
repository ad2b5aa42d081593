//! Per-key ordering: records with the same key (requesters use the secret
//! path) are performed one after another, in offset order, while records with
//! different keys run concurrently. Without it a `set_secret` could overtake
//! an earlier one to the same path.
//!
//! Each record gets a [`Turn`]: the signal of the previous record with its key
//! to wait for, and its own signal, given when the turn is dropped.

use std::collections::HashMap;

use tokio_util::sync::{CancellationToken, DropGuard};

#[derive(Default)]
pub struct KeyOrder {
    issued: u64,
    /// The latest record of each (partition, key), and its done-signal.
    tails: HashMap<(i32, Vec<u8>), (u64, CancellationToken)>,
}

/// One record's place in its key's queue.
pub struct Turn {
    previous: Option<CancellationToken>,
    done: Option<DropGuard>,
    ticket: Option<Ticket>,
}

/// Given back through [`KeyOrder::leave`] once the record is finished.
pub struct Ticket {
    slot: (i32, Vec<u8>),
    number: u64,
}

impl KeyOrder {
    /// Takes a place in the queue of `key`; a record without key has no queue.
    pub fn enter(&mut self, partition: i32, key: Option<&[u8]>) -> Turn {
        let Some(key) = key else {
            return Turn { previous: None, done: None, ticket: None };
        };
        self.issued += 1;
        let slot = (partition, key.to_vec());
        let done = CancellationToken::new();
        let previous = self.tails.insert(slot.clone(), (self.issued, done.clone())).map(|(_, token)| token);
        Turn { previous, done: Some(done.drop_guard()), ticket: Some(Ticket { slot, number: self.issued }) }
    }

    /// Forgets a finished record's key unless a later record took its place.
    pub fn leave(&mut self, ticket: Option<Ticket>) {
        let Some(ticket) = ticket else { return };
        if self.tails.get(&ticket.slot).is_some_and(|(number, _)| *number == ticket.number) {
            self.tails.remove(&ticket.slot);
        }
    }

    pub fn queued_keys(&self) -> usize {
        self.tails.len()
    }
}

impl Turn {
    /// Waits until the previous record with this key is finished.
    pub async fn wait(&mut self) {
        if let Some(previous) = self.previous.take() {
            previous.cancelled().await;
        }
    }

    /// Ends the turn: the next record with this key may go. Returns the ticket
    /// for [`KeyOrder::leave`].
    pub fn finish(mut self) -> Option<Ticket> {
        self.done.take();
        self.ticket.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn same_key_waits_for_the_previous_record() {
        let mut order = KeyOrder::default();
        let first = order.enter(0, Some(b"a"));
        let mut second = order.enter(0, Some(b"a"));
        let mut other = order.enter(0, Some(b"b"));
        other.wait().await; // a different key does not wait
        let waited = tokio::time::timeout(Duration::from_millis(50), second.wait()).await;
        assert!(waited.is_err(), "second ran before the first finished");
        order.leave(first.finish());
        assert_eq!(order.queued_keys(), 2, "a later record still holds key a");
        second.wait().await;
        order.leave(second.finish());
        order.leave(other.finish());
        assert_eq!(order.queued_keys(), 0);
    }

    #[tokio::test]
    async fn a_dropped_turn_releases_its_successor() {
        let mut order = KeyOrder::default();
        let first = order.enter(1, Some(b"k"));
        let mut second = order.enter(1, Some(b"k"));
        drop(first); // e.g. a task that panicked
        second.wait().await;
    }

    #[tokio::test]
    async fn records_without_key_never_wait() {
        let mut order = KeyOrder::default();
        let _first = order.enter(0, None);
        let mut second = order.enter(0, None);
        second.wait().await;
        assert_eq!(order.queued_keys(), 0);
    }
}
