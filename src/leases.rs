//! Lease keep-alive: leases a requester asked the node to keep renewing
//! (`renew_lease` or `issue_credentials` with `keep_alive: true`), kept in
//! the lease registry so that they survive a restart and a failover.
//!
//! Each kept lease is renewed at 2/3 of its current duration (failed
//! renewals retried with jittered backoff while the lease still lives), and a
//! lease event is published when it can be renewed no more: `expiring` when
//! Vault caps a renewal (max TTL reached), `expired` when it ran out,
//! `renewal_failed` when Vault refuses to renew it (not renewable, not
//! found). `revoke_lease` stops the keep-alive.
//!
//! **Where the leases live.** Not in this process: in the lease registry, a
//! compacted Kafka topic (`event_bus.publish_topics.lease_registry`) keyed by
//! lease id. A record holds the lease id and scheduling facts only (the
//! renewal increment, the expiry known at registration; never a
//! credential); a tombstone (no value) takes the lease off when it is
//! revoked, expired or refused by Vault. The instance that accepts a
//! `keep_alive` publishes the registration, awaits the broker's ack and reads
//! it back before it replies `kept_alive: true`, so a lease is never promised
//! and then lost with the process.
//!
//! **Who renews.** Every instance reads the whole registry (every partition
//! by assignment, from its start, like the replay ledger), so each can answer
//! `kept_alive` and count leases against `vault.lease_keep_alive.max_tracked`
//! (a group-wide bound). Renewal is owned through Kafka's own group protocol:
//! every instance is also a member of group `<consumer_group>.leases` on the
//! registry topic and renews exactly the leases whose records sit in the
//! partitions that group hands it. When an instance stops or dies, the
//! rebalance hands its partitions, and with them its leases, to the
//! survivors; a restarted node reads the registry and takes them back. No
//! lock, lease table or clock agreement is needed beyond what the broker
//! already keeps, and there is never a partition (so never a lease) that two
//! live members renew for long (at worst both renew during a rebalance,
//! which is harmless).
//!
//! **When a new owner renews.** The registry is not rewritten at every
//! renewal (that would race a revocation's tombstone); a new owner knows the
//! expiry at registration and, for its own leases, the expiry its last
//! renewal got. When less than a third of the duration is left by what it
//! knows (or the moment passed: the old owner renewed since), it renews at
//! once, spread over a few seconds; renewing early is harmless, late is not.
//! So a lease survives a failover when a third of its duration is longer
//! than the group's session timeout plus the rebalance; shorter leases may
//! run out while the group notices the death.
//!
//! Bad records on the registry topic (too large, not JSON, key and lease id
//! apart) are skipped with a rate-limited warning.
//!
//! A lease is renewed in the Vault namespace it was issued or renewed in (a
//! request's child namespace, or the node's own): the registration names it.
//!
//! Over 500 lines: one concept (the lease registry: reading it, owning its
//! partitions, renewing their leases) whose parts share one state.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use onex_vault_models::{Envelope, LeaseEvent, LeaseEventKind, LeaseRegistration, LEASE_REGISTRATION_PAYLOAD_TYPE};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::bus::{self, Kind, Outgoing, Publisher};
use crate::contract::Contract;
use crate::logging::Throttle;
use crate::resilience::BackoffPolicy;
use crate::telemetry::Telemetry;
use crate::vault::{Hint, Vault, VaultError};

/// Largest registry record value read; a registration is a few hundred bytes.
const MAX_REGISTRATION_BYTES: usize = 16 * 1024;
/// Longest lease id (the request models' bound).
const MAX_LEASE_ID_BYTES: usize = 1024;
/// Longest renewal increment taken from the registry (ten years).
const MAX_INCREMENT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Longest spread of the renewals a new owner makes at once.
const MAX_SPREAD: Duration = Duration::from_secs(5);

/// Warnings about unusable registry records: 5 a second after a burst of 20.
static BAD_RECORDS: Throttle = Throttle::new(5, 20);

pub struct LeaseKeeper {
    vault: Arc<Vault>,
    publisher: Publisher,
    topic: String,
    instance_id: String,
    max_tracked: usize,
    events: mpsc::UnboundedSender<LeaseEvent>,
    telemetry: Arc<Telemetry>,
    stop: CancellationToken,
    state: Mutex<State>,
    /// Woken whenever the registry reader moves on.
    advanced: Notify,
    /// How long a registry write and its read-back may take.
    write_timeout: Duration,
    /// The group member that owns partitions; ended by [`LeaseKeeper::close`].
    owner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    tasks: AtomicU64,
}

/// This instance's view of the registry and of what it renews.
#[derive(Default)]
struct State {
    leases: HashMap<String, Entry>,
    /// Registry partitions the `.leases` group hands this instance.
    owned: HashSet<i32>,
    /// Leases renewed here now: their task's number and cancel token.
    running: HashMap<String, (u64, CancellationToken)>,
    /// Per registry partition, the next offset to read.
    read_to: HashMap<i32, i64>,
}

struct Entry {
    partition: i32,
    increment: Duration,
    /// As known here: at registration, or after this instance's last renewal.
    expires_at: DateTime<Utc>,
    /// The Vault namespace it lives in, in full; `None`: the node's own.
    namespace: Option<String>,
    /// Its keep-alive ended here (tombstone on the way): not restarted.
    ended: bool,
}

/// How a keep-alive task ended.
#[derive(PartialEq, Eq)]
enum Ending {
    /// Stopped from outside (revoked, partition handed over, shutdown).
    Cancelled,
    /// The lease can be renewed no more: it leaves the registry.
    Ended,
}

/// Group membership changes of the owner consumer.
enum Ownership {
    Assign(Vec<i32>),
    Revoke(Vec<i32>),
}

struct OwnerEvents {
    changes: mpsc::UnboundedSender<Ownership>,
}

impl ClientContext for OwnerEvents {}

impl ConsumerContext for OwnerEvents {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |list: &TopicPartitionList| list.elements().iter().map(|e| e.partition()).collect();
        let change = match rebalance {
            Rebalance::Assign(list) => Ownership::Assign(partitions(list)),
            Rebalance::Revoke(list) => Ownership::Revoke(partitions(list)),
            Rebalance::Error(error) => {
                tracing::warn!(%error, "lease registry rebalance failed");
                return;
            }
        };
        let _ = self.changes.send(change);
    }
}

type OwnerConsumer = StreamConsumer<OwnerEvents>;

impl LeaseKeeper {
    /// Reads the whole lease registry (the contract's `lease_registry`
    /// topic), keeps reading it in the background, and joins the `.leases`
    /// group to renew the leases of the partitions it is handed, until `stop`.
    pub async fn open(
        contract: &Contract,
        vault: Arc<Vault>,
        publisher: Publisher,
        instance_id: &str,
        events: mpsc::UnboundedSender<LeaseEvent>,
        telemetry: Arc<Telemetry>,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<LeaseKeeper>> {
        let topic = contract.event_bus.publish_topics.lease_registry.clone();
        let wait = Duration::from_secs(contract.vault.startup_wait_seconds.max(10));
        let reader: StreamConsumer = bus::registry_reader_config(contract)
            .create()
            .map_err(|e| bus::client_error(e, "lease registry reader"))?;
        let extent = tokio::task::block_in_place(|| {
            let hint = "create it (cleanup.policy=compact) or let the broker create topics";
            bus::topic_extent(&reader, &topic, "lease registry", hint, wait, &stop)
        })?;
        let targets = extent.watermarks;
        reader
            .assign(&extent.assignment)
            .map_err(|e| anyhow::anyhow!("cannot read the lease registry {topic}: {e}"))?;
        let keeper = Arc::new(LeaseKeeper {
            vault,
            publisher,
            topic: topic.clone(),
            instance_id: instance_id.to_owned(),
            max_tracked: contract.vault.lease_keep_alive.max_tracked,
            events,
            telemetry,
            stop: stop.clone(),
            state: Mutex::new(State {
                read_to: targets.iter().map(|(&p, &(low, _))| (p, low)).collect(),
                ..State::default()
            }),
            advanced: Notify::new(),
            write_timeout: contract.request_timeout().max(Duration::from_secs(5)),
            owner: Mutex::default(),
            tasks: AtomicU64::new(0),
        });
        tokio::spawn(read_registry(keeper.clone(), reader, stop.clone()));
        let restored = keeper.wait_until(wait, |state| {
            targets.iter().all(|(p, &(_, high))| state.read_to.get(p).is_some_and(|&read| read >= high))
        });
        if !restored.await {
            anyhow::bail!("cannot read the lease registry {topic} to its end within {wait:?} (is the topic readable?)");
        }
        tracing::info!(topic = %topic, leases = keeper.registered(), "lease registry restored");

        let (changes_tx, changes) = mpsc::unbounded_channel();
        let owner: OwnerConsumer = bus::lease_owner_config(contract)
            .create_with_context(OwnerEvents { changes: changes_tx })
            .map_err(|e| bus::client_error(e, "lease registry owner"))?;
        owner.subscribe(&[topic.as_str()]).map_err(|e| anyhow::anyhow!("cannot join the lease registry group: {e}"))?;
        let handle = tokio::spawn(own_partitions(keeper.clone(), owner, changes, stop));
        *keeper.owner.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(keeper)
    }

    /// Keeps `lease_id` alive (it was just renewed or issued for
    /// `duration`, in `namespace`, in full; `None`: the node's own):
    /// registers it, awaits the broker and reads it back.
    /// Returns whether it is kept alive: false at the limit or when the
    /// registry cannot be written.
    pub async fn track(&self, lease_id: &str, namespace: Option<&str>, duration: Duration) -> bool {
        {
            let state = self.lock();
            if state.leases.get(lease_id).is_some_and(|entry| !entry.ended) {
                return true;
            }
            if state.leases.len() >= self.max_tracked {
                tracing::warn!(limit = self.max_tracked, "lease not kept alive: tracking limit reached");
                return false;
            }
        }
        if lease_id.is_empty() || lease_id.len() > MAX_LEASE_ID_BYTES || duration.is_zero() {
            return false;
        }
        let now = Utc::now();
        let registration = LeaseRegistration {
            lease_id: lease_id.to_owned(),
            increment_seconds: duration.as_secs(),
            expires_at: now + duration,
            registered_at: now,
            instance_id: self.instance_id.clone(),
            namespace: namespace.map(str::to_owned),
        };
        let envelope = Envelope::new(LEASE_REGISTRATION_PAYLOAD_TYPE, registration);
        let message = Outgoing::envelope(Kind::Event, &self.topic, Some(lease_id.as_bytes().to_vec()), envelope);
        let (partition, offset) = match tokio::time::timeout(self.write_timeout, self.publisher.send(&message)).await {
            Ok(Ok(at)) => at,
            Ok(Err(error)) => {
                tracing::warn!(%error, topic = %self.topic, "cannot register a lease; not kept alive");
                return false;
            }
            Err(_) => {
                tracing::warn!(topic = %self.topic, "lease registration not acknowledged in time; not kept alive");
                return false;
            }
        };
        // Acknowledged: its owner keeps it alive. Read it back, so that this
        // instance answers `kept_alive` for it from now on.
        if !self.read_back(partition, offset).await {
            tracing::warn!(topic = %self.topic, partition, "lease registration not read back in time");
        }
        true
    }

    /// Whether `lease_id` is in the registry (kept alive by the group).
    pub fn is_tracked(&self, lease_id: &str) -> bool {
        self.lock().leases.get(lease_id).is_some_and(|entry| !entry.ended)
    }

    /// Stops keeping `lease_id` alive (it was revoked): a tombstone on the
    /// registry, read back (which stops its renewal wherever it runs).
    pub async fn forget(&self, lease_id: &str) {
        if !self.lock().leases.contains_key(lease_id) {
            return;
        }
        let sent =
            tokio::time::timeout(self.write_timeout, self.publisher.send_tombstone(&self.topic, lease_id.as_bytes()));
        match sent.await {
            Ok(Ok((partition, offset))) => {
                if !self.read_back(partition, offset).await {
                    tracing::warn!(topic = %self.topic, partition, "lease release not read back in time");
                }
            }
            // Its owner finds it revoked at its next renewal and releases it.
            Ok(Err(error)) => tracing::warn!(%error, topic = %self.topic, "cannot release a revoked lease"),
            Err(_) => tracing::warn!(topic = %self.topic, "lease release not acknowledged in time"),
        }
    }

    /// Leases in the registry.
    pub fn registered(&self) -> usize {
        self.lock().leases.len()
    }

    /// Leases this instance renews.
    pub fn kept_alive_here(&self) -> usize {
        self.lock().running.len()
    }

    /// Waits (at most `limit`) until this instance has left the `.leases`
    /// group, after `stop`: its partitions go to the others at once.
    pub async fn close(&self, limit: Duration) {
        let handle = self.owner.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            if tokio::time::timeout(limit, handle).await.is_err() {
                tracing::warn!("did not leave the lease registry group in time; its session times out instead");
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn read_back(&self, partition: i32, offset: i64) -> bool {
        self.wait_until(self.write_timeout, |state| state.read_to.get(&partition).is_some_and(|&read| read > offset))
            .await
    }

    /// Waits up to `limit` until `done` holds of the state.
    async fn wait_until(&self, limit: Duration, done: impl Fn(&State) -> bool) -> bool {
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

    /// One registry record: a registration, or a tombstone.
    fn apply(self: &Arc<Self>, partition: i32, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(lease_id) = key.filter(|k| !k.is_empty() && k.len() <= MAX_LEASE_ID_BYTES) else {
            return bad_record(partition, "no usable key");
        };
        let Ok(lease_id) = std::str::from_utf8(lease_id) else {
            return bad_record(partition, "key not UTF-8");
        };
        let value = value.unwrap_or_default();
        if value.is_empty() {
            let mut state = self.lock();
            state.leases.remove(lease_id);
            self.reconcile(&mut state, lease_id);
            return;
        }
        if value.len() > MAX_REGISTRATION_BYTES {
            return bad_record(partition, "value too large");
        }
        let Ok(envelope) = serde_json::from_slice::<Envelope<LeaseRegistration>>(value) else {
            return bad_record(partition, "not a lease registration");
        };
        let registration = envelope.payload;
        let increment = Duration::from_secs(registration.increment_seconds);
        if registration.lease_id != lease_id || increment.is_zero() || increment > MAX_INCREMENT {
            return bad_record(partition, "lease id apart from the key, or an unusable increment");
        }
        let mut state = self.lock();
        if !state.leases.contains_key(lease_id) && state.leases.len() >= self.max_tracked.saturating_mul(2).max(16) {
            drop(state);
            return bad_record(partition, "registry larger than twice vault.lease_keep_alive.max_tracked");
        }
        if registration.namespace.as_deref().is_some_and(|ns| onex_vault_models::Namespace::new(ns).is_err()) {
            return bad_record(partition, "not a usable namespace");
        }
        let entry = Entry {
            partition,
            increment,
            expires_at: registration.expires_at,
            namespace: registration.namespace,
            ended: false,
        };
        state.leases.insert(lease_id.to_owned(), entry);
        self.reconcile(&mut state, lease_id);
    }

    /// Starts or stops `lease_id`'s keep-alive here, as the registry and
    /// this instance's partitions say.
    fn reconcile(self: &Arc<Self>, state: &mut State, lease_id: &str) {
        let wanted = state.leases.get(lease_id).filter(|e| !e.ended && state.owned.contains(&e.partition));
        match (wanted, state.running.contains_key(lease_id)) {
            (Some(entry), false) => {
                let (increment, expires_at, namespace) = (entry.increment, entry.expires_at, entry.namespace.clone());
                let cancel = self.stop.child_token();
                let number = self.tasks.fetch_add(1, Ordering::Relaxed);
                state.running.insert(lease_id.to_owned(), (number, cancel.clone()));
                let keeper = self.clone();
                let lease_id = lease_id.to_owned();
                tokio::spawn(
                    async move { keeper.run(lease_id, namespace, number, increment, expires_at, cancel).await },
                );
            }
            (None, true) => {
                if let Some((_, cancel)) = state.running.remove(lease_id) {
                    cancel.cancel();
                }
            }
            _ => {}
        }
        self.telemetry.set_leases(state.leases.len(), state.running.len());
    }

    fn reconcile_all(self: &Arc<Self>, state: &mut State) {
        let ids: HashSet<String> = state.leases.keys().chain(state.running.keys()).cloned().collect();
        for id in ids {
            self.reconcile(state, &id);
        }
    }

    fn change_ownership(self: &Arc<Self>, change: Ownership) {
        let mut state = self.lock();
        match change {
            Ownership::Assign(partitions) => {
                tracing::info!(partitions = partitions.len(), "lease registry partitions assigned");
                state.owned.extend(partitions);
            }
            Ownership::Revoke(partitions) => {
                tracing::info!(partitions = partitions.len(), "lease registry partitions revoked");
                for partition in partitions {
                    state.owned.remove(&partition);
                }
            }
        }
        self.telemetry.set_lease_partitions(state.owned.len());
        self.reconcile_all(&mut state);
    }

    /// One lease's keep-alive task; releases the lease from the registry
    /// when it can be renewed no more.
    async fn run(
        self: Arc<Self>,
        lease_id: String,
        namespace: Option<String>,
        number: u64,
        increment: Duration,
        expires_at: DateTime<Utc>,
        cancel: CancellationToken,
    ) {
        let left = (expires_at - Utc::now()).to_std().unwrap_or_default();
        let (wait, expires_in) = if left > increment / 3 {
            (left - increment / 3, left)
        } else {
            // Renewed since by a former owner, or due now: renew soon. It
            // expires by `increment` from now at the latest.
            let spread = (increment / 10).min(MAX_SPREAD);
            (spread.mul_f64(rand::random_range(0.0..=1.0)), increment)
        };
        let ending = self.keep_alive(&lease_id, namespace, increment, wait, expires_in, &cancel).await;
        {
            let mut state = self.lock();
            if state.running.get(&lease_id).is_some_and(|(n, _)| *n == number) {
                state.running.remove(&lease_id);
            }
            if ending == Ending::Ended {
                if let Some(entry) = state.leases.get_mut(&lease_id) {
                    entry.ended = true;
                }
            }
            self.telemetry.set_leases(state.leases.len(), state.running.len());
        }
        if ending == Ending::Ended {
            self.release(&lease_id).await;
        }
    }

    /// Takes a lease that can be renewed no more off the registry: a
    /// tombstone, retried until the broker has it or the node stops.
    async fn release(&self, lease_id: &str) {
        let mut delay = Duration::from_millis(200);
        loop {
            let sent = tokio::select! {
                sent = self.publisher.send_tombstone(&self.topic, lease_id.as_bytes()) => sent,
                _ = self.stop.cancelled() => return,
            };
            match sent {
                Ok(_) => return,
                Err(error) => tracing::warn!(%error, topic = %self.topic, "cannot release a lease; retrying"),
            }
            if sleep_or_cancel(delay, &self.stop).await {
                return;
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }

    fn note_renewed(&self, lease_id: &str, granted: Duration) {
        if let Some(entry) = self.lock().leases.get_mut(lease_id) {
            entry.expires_at = Utc::now() + granted;
        }
    }

    /// Renews `lease_id` after `wait`, then at 2/3 of each duration Vault
    /// grants, until it can be renewed no more or `cancel` fires.
    async fn keep_alive(
        &self,
        lease_id: &str,
        namespace: Option<String>,
        mut duration: Duration,
        mut wait: Duration,
        mut expires_in: Duration,
        cancel: &CancellationToken,
    ) -> Ending {
        let vault = self.vault.at(namespace);
        let engine = lease_id.split('/').next().unwrap_or_default().to_owned();
        let retry = BackoffPolicy {
            max_attempts: u32::MAX,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: true,
        };
        loop {
            let mut delays = retry.delays();
            let renewed = loop {
                if sleep_or_cancel(wait, cancel).await {
                    return Ending::Cancelled;
                }
                expires_in = expires_in.saturating_sub(wait);
                match vault.renew_lease(lease_id, Some(duration.as_secs())).await {
                    Ok(renewed) => break renewed,
                    Err(VaultError::Status { hint: Hint::NotRenewable | Hint::LeaseNotFound, .. }) => {
                        self.publish(lease_id, LeaseEventKind::RenewalFailed, 0, "Vault refuses to renew the lease");
                        return Ending::Ended;
                    }
                    Err(error) => {
                        tracing::warn!(lease = %engine, %error, "lease renewal failed; retrying");
                        let next = delays.next().unwrap_or(retry.max_delay);
                        if expires_in <= next {
                            if sleep_or_cancel(expires_in, cancel).await {
                                return Ending::Cancelled;
                            }
                            self.publish(
                                lease_id,
                                LeaseEventKind::Expired,
                                0,
                                "renewals failed until the lease ran out",
                            );
                            return Ending::Ended;
                        }
                        wait = next;
                    }
                }
            };
            let granted = Duration::from_secs(renewed.lease_duration);
            self.telemetry.record_lease_renewal();
            self.note_renewed(lease_id, granted);
            tracing::debug!(lease = %engine, granted_seconds = renewed.lease_duration, "lease renewed");
            if granted < duration {
                // Vault capped the renewal: the lease's max TTL is near.
                self.publish(
                    lease_id,
                    LeaseEventKind::Expiring,
                    granted.as_secs(),
                    "max TTL reached; the lease cannot be extended further",
                );
                if sleep_or_cancel(granted, cancel).await {
                    return Ending::Cancelled;
                }
                self.publish(lease_id, LeaseEventKind::Expired, 0, "the lease reached its max TTL");
                return Ending::Ended;
            }
            duration = granted;
            expires_in = granted;
            wait = granted.mul_f64(2.0 / 3.0);
        }
    }

    fn publish(&self, lease_id: &str, kind: LeaseEventKind, ttl_seconds: u64, reason: &str) {
        match kind {
            LeaseEventKind::Expired => self.telemetry.record_lease_ended(false),
            LeaseEventKind::RenewalFailed => self.telemetry.record_lease_ended(true),
            LeaseEventKind::Expiring => {}
        }
        let event = LeaseEvent {
            lease_id: lease_id.to_owned(),
            event: kind,
            ttl_seconds,
            reason: reason.to_owned(),
            instance_id: None,
            timestamp: Utc::now(),
        };
        let _ = self.events.send(event);
    }
}

fn bad_record(partition: i32, problem: &str) {
    if let Some(held_back) = BAD_RECORDS.allow() {
        tracing::warn!(partition, problem, held_back, "unusable record on the lease registry topic: skipped");
    }
}

/// Reads registry records into the keeper until `stop`.
async fn read_registry(keeper: Arc<LeaseKeeper>, reader: StreamConsumer, stop: CancellationToken) {
    loop {
        let record = tokio::select! {
            _ = stop.cancelled() => return,
            record = reader.recv() => record,
        };
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "lease registry reader error");
                continue;
            }
        };
        keeper.apply(record.partition(), record.key(), record.payload());
        keeper.lock().read_to.insert(record.partition(), record.offset() + 1);
        keeper.advanced.notify_waiters();
    }
}

/// Membership of the `.leases` group: applies partition hand-overs until
/// `stop`, then leaves the group (on a thread: leaving blocks) so the
/// partitions go to the other members at once.
async fn own_partitions(
    keeper: Arc<LeaseKeeper>,
    owner: OwnerConsumer,
    mut changes: mpsc::UnboundedReceiver<Ownership>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(change) = changes.recv() => keeper.change_ownership(change),
            // Polling serves the rebalances; the records themselves are read
            // by the registry reader.
            record = owner.recv() => {
                if let Err(error) = record {
                    tracing::warn!(%error, "lease registry group error");
                }
            }
        }
    }
    let left = tokio::task::spawn_blocking(move || {
        owner.unsubscribe();
        drop(owner);
    });
    if let Err(error) = left.await {
        tracing::warn!(%error, "leaving the lease registry group failed");
    }
}

/// Sleeps for `duration`; true if cancelled first.
async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
