//! The node's main loop, in one place:
//!
//! record in → envelope decoded → operation dispatched → reply out → offset stored.
//!
//! Records are handled concurrently up to `event_bus.max_in_flight` (records
//! with the same key one after another, in order: see `bus::KeyOrder`); at the
//! bound the loop stops taking records (so librdkafka stops fetching once its
//! small queue is full). An offset is stored only after everything the record
//! caused was delivered, and never past an unfinished record of its partition.
//! On shutdown the loop stops taking records, lets in-flight ones finish within
//! the deadline, commits, flushes and leaves the group.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use chrono::Utc;
use onex_vault_models::{
    BreakerState, CircuitBreakerEvent, DeadLetter, Envelope, ErrorCode, ReplyError, VaultReply,
    CIRCUIT_BREAKER_PAYLOAD_TYPE, DEAD_LETTER_PAYLOAD_TYPE, REPLY_PAYLOAD_TYPE,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{self, KeyOrder, OffsetTracker, Outgoing, Publisher, Ticket};
use crate::contract::Contract;
use crate::decode::{decode, Decoded, Refusal};
use crate::operations::{masked_target, Dispatcher};
use crate::resilience::{self, Transition};

/// Everything a record's handling needs, shared by all in-flight records.
pub struct Node {
    pub contract: Contract,
    pub dispatcher: Dispatcher,
    pub publisher: Publisher,
}

/// Runs the node until `stop` fires, then shuts down cleanly.
pub async fn run(node: Arc<Node>, stop: CancellationToken) -> anyhow::Result<()> {
    let bus_settings = &node.contract.event_bus;
    let consumer: StreamConsumer = bus::consumer_config(&node.contract)
        .create()
        .context("cannot create the Kafka consumer")?;
    consumer
        .subscribe(&[bus_settings.subscribe_topics.requests.as_str()])
        .context("cannot subscribe to the request topic")?;
    tracing::info!(
        topic = %bus_settings.subscribe_topics.requests,
        group = %bus_settings.consumer_group,
        max_in_flight = bus_settings.max_in_flight,
        "consuming requests"
    );

    let slots = Arc::new(Semaphore::new(bus_settings.max_in_flight));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let mut offsets = OffsetTracker::default();
    let mut key_order = KeyOrder::default();
    // Replies of in-flight records may still be delivered during shutdown;
    // `abandon` cuts them off at the deadline.
    let abandon = CancellationToken::new();

    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(mut finished) = done_rx.recv() => {
                key_order.leave(finished.ticket.take());
                store(&consumer, &mut offsets, finished);
            }
            slot = slots.clone().acquire_owned() => {
                let Ok(slot) = slot else { break };
                let record = tokio::select! {
                    _ = stop.cancelled() => break,
                    received = consumer.recv() => match received {
                        Ok(record) => record.detach(),
                        Err(error) => {
                            tracing::warn!(%error, "Kafka consumer error");
                            continue;
                        }
                    },
                };
                offsets.begin(record.topic(), record.partition(), record.offset());
                let mut turn = key_order.enter(record.partition(), record.key());
                let node = node.clone();
                let done = done_tx.clone();
                let abandon = abandon.clone();
                tokio::spawn(async move {
                    turn.wait().await;
                    let delivered = handle_record(&node, &record, &abandon).await;
                    let ticket = turn.finish();
                    drop(slot);
                    let _ = done.send(Finished { record, delivered, ticket });
                });
            }
        }
    }

    // Shutdown: no new records; wait for the in-flight ones, within the deadline.
    let deadline = Instant::now() + Duration::from_secs(bus_settings.shutdown_timeout_seconds);
    tracing::info!(
        in_flight = offsets.in_flight(),
        "stopping: finishing in-flight requests"
    );
    while offsets.in_flight() > 0 {
        match tokio::time::timeout_at(deadline.into(), done_rx.recv()).await {
            Ok(Some(mut finished)) => {
                key_order.leave(finished.ticket.take());
                store(&consumer, &mut offsets, finished);
            }
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    in_flight = offsets.in_flight(),
                    "shutdown deadline reached; unanswered requests will be redelivered"
                );
                abandon.cancel();
                break;
            }
        }
    }
    if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
        tracing::debug!(%error, "final commit had nothing to commit or failed");
    }
    node.publisher.flush(Duration::from_secs(5));
    consumer.unsubscribe();
    tracing::info!("stopped");
    Ok(())
}

struct Finished {
    record: OwnedMessage,
    delivered: bool,
    ticket: Option<Ticket>,
}

/// Stores the offset a finished record allows, if its answer was delivered.
fn store(consumer: &StreamConsumer, offsets: &mut OffsetTracker, finished: Finished) {
    let record = &finished.record;
    if !finished.delivered {
        // Leave the offset unstored and stop storing this partition: the
        // record is redelivered after a restart or rebalance.
        tracing::warn!(
            partition = record.partition(),
            offset = record.offset(),
            "answer not delivered; offset kept back"
        );
        return;
    }
    if let Some(offset) = offsets.finish(record.topic(), record.partition(), record.offset()) {
        if let Err(error) = consumer.store_offset(record.topic(), record.partition(), offset) {
            // A partition revoked while its record was in flight: benign.
            tracing::debug!(%error, partition = record.partition(), offset, "offset not stored");
        }
    }
}

/// Handles one record end to end; returns whether all it caused was delivered.
async fn handle_record(node: &Node, record: &OwnedMessage, stop: &CancellationToken) -> bool {
    let started = Instant::now();
    let value = record.payload().unwrap_or_default();
    let outgoing = match decode(value, node.contract.event_bus.max_record_bytes) {
        Decoded::Request(request) => {
            let span = tracing::info_span!(
                "request",
                correlation_id = %request.correlation_id,
                requester = %request.source_tool,
                operation = %request.payload.operation(),
                target = %masked_target(&request.payload, &node.contract.vault.default_mount),
            );
            vec![perform(node, &request, started).instrument(span).await]
        }
        Decoded::Refused(mut refusal) => {
            // The body wins; a `correlation_id` header names the requester
            // when the body cannot.
            refusal.correlation_id = refusal
                .correlation_id
                .or_else(|| header_correlation_id(record));
            refuse(node, record, refusal, started)
        }
    };
    for message in &outgoing {
        if !node.publisher.deliver(message, stop).await {
            return false;
        }
    }
    true
}

/// Performs a decoded request and builds its reply.
async fn perform(
    node: &Node,
    request: &Envelope<onex_vault_models::VaultRequest>,
    started: Instant,
) -> Outgoing {
    let operation = request.payload.operation();
    let outcome = match request.deadline() {
        Some(deadline) if deadline < Utc::now() => Err(ReplyError::new(
            ErrorCode::TimeoutError,
            "request expired (envelope_timestamp + timeout_seconds) before the node reached it",
        )),
        _ => node.dispatcher.handle(&request.payload).await,
    };
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reply = match outcome {
        Ok(result) => {
            tracing::info!(outcome = "success", duration_ms, "request answered");
            VaultReply::success(operation.as_str(), result, duration_ms)
        }
        Err(error) => {
            tracing::info!(outcome = "error", code = %error.code, reason = %error.message, duration_ms, "request answered");
            VaultReply::failure(operation.as_str(), error, duration_ms)
        }
    };
    reply_message(
        node,
        Envelope::answering(request, REPLY_PAYLOAD_TYPE, reply),
    )
}

/// The answers to a record the node will not perform: a failed reply when
/// the sender can be named, a dead letter when the record itself is unusable.
fn refuse(node: &Node, record: &OwnedMessage, refusal: Refusal, started: Instant) -> Vec<Outgoing> {
    let topics = &node.contract.event_bus;
    tracing::warn!(
        correlation_id = ?refusal.correlation_id,
        requester = refusal.source_tool.as_deref().unwrap_or("unknown"),
        partition = record.partition(),
        offset = record.offset(),
        code = %refusal.error.code,
        reason = %refusal.error.message,
        dead_letter = refusal.dead_letter,
        "request refused"
    );
    let mut outgoing = Vec::new();
    if let Some(correlation_id) = refusal.correlation_id {
        let operation = refusal.operation.as_deref().unwrap_or("unknown");
        let reply = VaultReply::failure(
            operation,
            refusal.error.clone(),
            started.elapsed().as_secs_f64() * 1000.0,
        );
        let mut envelope = Envelope::new(correlation_id, REPLY_PAYLOAD_TYPE, reply);
        envelope.causation_id = refusal.envelope_id;
        envelope.target_tool = refusal.source_tool.clone();
        outgoing.push(reply_message(node, envelope));
    }
    if refusal.dead_letter {
        let value = record.payload().unwrap_or_default();
        let limit = topics.dlq_value_limit_bytes;
        let b64 = base64::engine::general_purpose::STANDARD;
        let letter = DeadLetter {
            original_topic: record.topic().to_owned(),
            original_partition: record.partition(),
            original_offset: record.offset(),
            original_key: record.key().map(|k| b64.encode(k)),
            original_value: b64.encode(&value[..value.len().min(limit)]),
            original_value_bytes: value.len() as u64,
            original_value_truncated: value.len() > limit,
            failure_reason: refusal.error.message.clone(),
            error_type: refusal.error.code,
            failure_timestamp: Utc::now(),
            correlation_id: refusal.correlation_id,
        };
        let correlation_id = refusal.correlation_id.unwrap_or_else(uuid::Uuid::new_v4);
        let envelope = Envelope::new(correlation_id, DEAD_LETTER_PAYLOAD_TYPE, letter);
        outgoing.push(Outgoing::json(
            &topics.dlq_topics.requests,
            record.key().map(<[u8]>::to_vec),
            refusal.correlation_id.map(|id| id.to_string()),
            &envelope,
        ));
    }
    outgoing
}

/// The record's `correlation_id` header, if it holds a UUID.
fn header_correlation_id(record: &OwnedMessage) -> Option<uuid::Uuid> {
    use rdkafka::message::Headers;
    let headers = record.headers()?;
    headers
        .iter()
        .find(|h| h.key == "correlation_id")
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
}

/// A reply, on the completed or failed topic, keyed by correlation id.
fn reply_message(node: &Node, envelope: Envelope<VaultReply>) -> Outgoing {
    let topics = &node.contract.event_bus.publish_topics;
    let topic = if envelope.payload.is_success() {
        &topics.completed
    } else {
        &topics.failed
    };
    let id = envelope.correlation_id.to_string();
    Outgoing::json(topic, Some(id.clone().into_bytes()), Some(id), &envelope)
}

/// Publishes a circuit-breaker event at every state change of the breaker.
pub async fn publish_breaker_transitions(
    node: Arc<Node>,
    mut transitions: mpsc::UnboundedReceiver<Transition>,
    stop: CancellationToken,
) {
    let state = |s: resilience::BreakerState| match s {
        resilience::BreakerState::Closed => BreakerState::Closed,
        resilience::BreakerState::Open => BreakerState::Open,
        resilience::BreakerState::HalfOpen => BreakerState::HalfOpen,
    };
    while let Some(change) =
        tokio::select! { t = transitions.recv() => t, _ = stop.cancelled() => None }
    {
        tracing::warn!(
            from = state(change.from).as_str(),
            to = state(change.to).as_str(),
            failures = change.failure_count,
            "circuit breaker changed state"
        );
        let event = CircuitBreakerEvent {
            service_name: "vault".to_owned(),
            state: state(change.to),
            previous_state: state(change.from),
            failure_count: change.failure_count,
            threshold: change.threshold,
            timestamp: change.at.into(),
            correlation_id: None,
        };
        let envelope = Envelope::new(uuid::Uuid::new_v4(), CIRCUIT_BREAKER_PAYLOAD_TYPE, event);
        let topic = &node.contract.event_bus.publish_topics.circuit_breaker;
        let message = Outgoing::json(
            topic,
            Some(b"vault".to_vec()),
            Some(envelope.correlation_id.to_string()),
            &envelope,
        );
        node.publisher.deliver(&message, &stop).await;
    }
}

/// Builds the producer the node publishes with.
pub fn producer(contract: &Contract) -> anyhow::Result<FutureProducer> {
    bus::producer_config(contract)
        .create()
        .context("cannot create the Kafka producer")
}
