//! Replay protection for signed requests, shared by every instance of the
//! consumer group and kept across restarts: the replay ledger.
//!
//! A signed request's `envelope_id` is covered by its signature, so the same
//! id in another record is a replay. Each instance admits an id only after
//! claiming it on the ledger topic (key: the id, value: the request's record
//! position) and reading the ledger back up to its own claim: the first claim
//! of an id in the ledger wins, so of two instances that see the same signed
//! request at once (a re-produce to another partition, a partition handed over
//! in a rebalance) exactly one admits it. Every instance reads the whole
//! ledger from the start before it admits anything, so a restart forgets
//! nothing either.
//!
//! Kafka may deliver the same record twice (a restart before its offset was
//! stored): that is the same id at the same position, and it is let through.
//! A claim matters only while the request's timestamp is inside the
//! clock-skew window (after that the timestamp check refuses it anyway), so
//! the ledger topic needs a retention of at least 2 × `max_clock_skew_seconds`
//! and no compaction (compaction would keep an id's last claim, not its first).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use onex_vault_models::{Envelope, RecordPosition, ReplayClaim, REPLAY_CLAIM_PAYLOAD_TYPE};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{self, Kind, Outgoing, Publisher};
use crate::contract::Contract;

/// Where a request record sits.
pub type Position = RecordPosition;

/// What the ledger says of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Replay {
    /// Its first claim is this record's (or Kafka delivering it again).
    Fresh,
    /// Another record claimed its id first.
    Replayed,
    /// The memory is full of live ids: refuse rather than forget.
    Full,
    /// The ledger could not be written or read in time: refuse (fail closed).
    Unavailable,
}

/// The first claim of every live id, as read from the ledger.
#[derive(Default)]
pub struct Claims {
    first: HashMap<Uuid, (Position, DateTime<Utc>)>,
    /// The same ids ordered by when they may be forgotten.
    by_expiry: BTreeSet<(DateTime<Utc>, Uuid)>,
}

impl Claims {
    /// A claim read from the ledger, in ledger order: only an id's first counts.
    pub fn record(&mut self, claim: &ReplayClaim, now: DateTime<Utc>) {
        if claim.forget_after <= now || self.first.contains_key(&claim.envelope_id) {
            return;
        }
        self.first.insert(claim.envelope_id, (claim.position.clone(), claim.forget_after));
        self.by_expiry.insert((claim.forget_after, claim.envelope_id));
    }

    /// What the claims read so far say of `id` at `position`; `None` when
    /// nobody claimed it yet.
    pub fn judge(&self, id: Uuid, position: &Position) -> Option<Replay> {
        let (first, _) = self.first.get(&id)?;
        Some(if first == position { Replay::Fresh } else { Replay::Replayed })
    }

    pub fn forget_expired(&mut self, now: DateTime<Utc>) {
        while let Some(&(expiry, id)) = self.by_expiry.first() {
            if expiry > now {
                break;
            }
            self.by_expiry.pop_first();
            self.first.remove(&id);
        }
    }

    /// Ids remembered now.
    pub fn remembered(&self) -> usize {
        self.first.len()
    }
}

/// What this instance has read of the ledger.
#[derive(Default)]
struct View {
    claims: Claims,
    /// Per ledger partition, the next offset to read.
    read_to: HashMap<i32, i64>,
}

pub struct ReplayLedger {
    topic: String,
    instance_id: String,
    publisher: Publisher,
    view: Arc<Mutex<View>>,
    /// Woken whenever the reader moves on.
    advanced: Arc<Notify>,
    max_entries: usize,
    claim_timeout: Duration,
}

impl ReplayLedger {
    /// Reads the whole ledger (the contract's `replay_claims` topic), then
    /// keeps reading it in the background until `stop`.
    pub async fn open(
        contract: &Contract,
        publisher: Publisher,
        instance_id: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<ReplayLedger> {
        let topic = contract.event_bus.publish_topics.replay_claims.clone();
        let wait = Duration::from_secs(contract.vault.startup_wait_seconds.max(10));
        let consumer: StreamConsumer =
            bus::ledger_consumer_config(contract).create().map_err(|e| bus::client_error(e, "replay ledger reader"))?;
        let extent = tokio::task::block_in_place(|| {
            let hint = "create it (delete retention ≥ 2 × security.max_clock_skew_seconds, no compaction) or let \
                        the broker create topics";
            bus::topic_extent(&consumer, &topic, "replay ledger", hint, wait, &stop)
        })?;
        let targets = extent.watermarks;
        consumer
            .assign(&extent.assignment)
            .map_err(|e| anyhow::anyhow!("cannot read the replay ledger {topic}: {e}"))?;
        let view = Arc::new(Mutex::new(View {
            claims: Claims::default(),
            read_to: targets.iter().map(|(&p, &(low, _))| (p, low)).collect(),
        }));
        let advanced = Arc::new(Notify::new());
        tokio::spawn(read_ledger(consumer, view.clone(), advanced.clone(), stop));

        let ledger = ReplayLedger {
            topic: topic.clone(),
            instance_id: instance_id.to_owned(),
            publisher,
            view,
            advanced,
            max_entries: contract.security.replay_cache_max_entries,
            claim_timeout: contract.request_timeout().max(Duration::from_secs(5)),
        };
        let restored = ledger.wait_until(wait, |view| {
            targets.iter().all(|(p, &(_, high))| view.read_to.get(p).is_some_and(|&read| read >= high))
        });
        if !restored.await {
            anyhow::bail!("cannot read the replay ledger {topic} to its end within {wait:?} (is the topic readable?)");
        }
        tracing::info!(topic = %topic, remembered = ledger.remembered(), "replay ledger restored");
        Ok(ledger)
    }

    /// Claims `id` for the record at `position`, remembered until
    /// `forget_after`, and says whether the record may be admitted.
    pub async fn claim(&self, id: Uuid, position: &Position, forget_after: DateTime<Utc>) -> Replay {
        {
            let mut view = self.lock();
            view.claims.forget_expired(Utc::now());
            if let Some(known) = view.claims.judge(id, position) {
                return known;
            }
            if view.claims.remembered() >= self.max_entries {
                return Replay::Full;
            }
        }
        let claim = ReplayClaim {
            envelope_id: id,
            position: position.clone(),
            forget_after,
            instance_id: self.instance_id.clone(),
        };
        let envelope = Envelope::new(REPLAY_CLAIM_PAYLOAD_TYPE, claim);
        let message = Outgoing::envelope(Kind::Event, &self.topic, Some(id.to_string().into_bytes()), envelope);
        let written = tokio::time::timeout(self.claim_timeout, self.publisher.send(&message)).await;
        let (partition, offset) = match written {
            Ok(Ok(at)) => at,
            Ok(Err(error)) => {
                tracing::warn!(%error, topic = %self.topic, "cannot write a replay claim; request refused");
                return Replay::Unavailable;
            }
            Err(_) => {
                tracing::warn!(topic = %self.topic, "replay claim not acknowledged in time; request refused");
                return Replay::Unavailable;
            }
        };
        let read_back =
            self.wait_until(self.claim_timeout, |view| view.read_to.get(&partition).is_some_and(|&read| read > offset));
        if !read_back.await {
            tracing::warn!(topic = %self.topic, partition, "replay ledger not read back in time; request refused");
            return Replay::Unavailable;
        }
        // Our claim is in the view now, unless its window already closed.
        self.lock().claims.judge(id, position).unwrap_or(Replay::Unavailable)
    }

    /// Ids remembered now.
    pub fn remembered(&self) -> usize {
        self.lock().claims.remembered()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits up to `limit` until `done` holds of the view.
    async fn wait_until(&self, limit: Duration, done: impl Fn(&View) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let advanced = self.advanced.notified();
            if done(&self.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, advanced).await.is_err() {
                return done(&self.lock());
            }
        }
    }
}

/// Reads ledger records into `view` until `stop`.
async fn read_ledger(consumer: StreamConsumer, view: Arc<Mutex<View>>, advanced: Arc<Notify>, stop: CancellationToken) {
    loop {
        let record = tokio::select! {
            _ = stop.cancelled() => return,
            record = consumer.recv() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "replay ledger reader error");
                continue;
            }
        };
        let claim = record.payload().and_then(|value| serde_json::from_slice::<Envelope<ReplayClaim>>(value).ok());
        {
            let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
            match &claim {
                Some(envelope) => view.claims.record(&envelope.payload, Utc::now()),
                None => tracing::warn!(
                    partition = record.partition(),
                    offset = record.offset(),
                    "unreadable record on the replay ledger topic: ignored (who writes there?)"
                ),
            }
            view.read_to.insert(record.partition(), record.offset() + 1);
        }
        advanced.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn at(partition: i32, offset: i64) -> Position {
        Position { topic: "requests".into(), partition, offset }
    }

    fn claim(id: Uuid, position: Position, forget_after: DateTime<Utc>) -> ReplayClaim {
        ReplayClaim { envelope_id: id, position, forget_after, instance_id: "a".into() }
    }

    #[test]
    fn the_first_claim_of_an_id_wins_until_its_window_closes() {
        let mut claims = Claims::default();
        let now = Utc::now();
        let later = now + TimeDelta::seconds(60);
        let id = Uuid::new_v4();
        assert_eq!(claims.judge(id, &at(0, 5)), None, "nobody claimed it yet");
        claims.record(&claim(id, at(0, 5), later), now);
        claims.record(&claim(id, at(1, 7), later), now);
        assert_eq!(claims.judge(id, &at(0, 5)), Some(Replay::Fresh), "the first claim, delivered again");
        assert_eq!(claims.judge(id, &at(1, 7)), Some(Replay::Replayed), "a later claim of the same id");
        assert_eq!(claims.judge(id, &at(0, 6)), Some(Replay::Replayed));
        claims.forget_expired(later);
        assert_eq!(claims.judge(id, &at(1, 7)), None, "forgotten once the window closed");
        assert_eq!(claims.remembered(), 0);
    }

    #[test]
    fn expired_claims_are_not_remembered() {
        let mut claims = Claims::default();
        let now = Utc::now();
        claims.record(&claim(Uuid::new_v4(), at(0, 1), now - TimeDelta::seconds(1)), now);
        assert_eq!(claims.remembered(), 0);
    }
}
