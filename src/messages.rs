//! Everything the node publishes, built in one place: replies, dead letters,
//! audit records, breaker transitions and health events, each as an envelope
//! with the wire contract's topic and key.

use base64::Engine as _;
use chrono::Utc;
use onex_vault_models::{
    AuditRecord, BreakerState, CircuitBreakerEvent, DeadLetter, Envelope, ErrorCode, LeaseEvent, NodeHealthEvent,
    ReplyError, VaultReply, AUDIT_PAYLOAD_TYPE, CIRCUIT_BREAKER_PAYLOAD_TYPE, DEAD_LETTER_PAYLOAD_TYPE,
    HEALTH_PAYLOAD_TYPE, LEASE_EVENT_PAYLOAD_TYPE, REPLY_PAYLOAD_TYPE,
};
use rdkafka::message::{Message, OwnedMessage};

use crate::bus::{Kind, Outgoing};
use crate::contract::EventBus;
use crate::decode::Refusal;
use crate::redact;
use crate::resilience::{self, Transition};
use crate::security::ReplySigner;

/// A reply, on the completed or failed topic, keyed by correlation id;
/// signed by the node's runtime key in the strict profile.
pub fn reply(bus: &EventBus, signer: Option<&ReplySigner>, envelope: Envelope<VaultReply>) -> Outgoing {
    let topics = &bus.publish_topics;
    let topic = if envelope.payload.is_success() { &topics.completed } else { &topics.failed };
    let key = envelope.correlation_id.map(|id| id.to_string().into_bytes());
    let operation = envelope.payload.operation.clone();
    let message = Outgoing::envelope(Kind::Reply, topic, key, envelope).with_operation_name(&operation);
    match signer {
        Some(signer) => signer.sign(message),
        None => message,
    }
}

/// The failed reply to a refused record, when its sender can be named: by
/// its `correlation_id`, else by its `envelope_id`.
pub fn refusal_reply(
    bus: &EventBus,
    signer: Option<&ReplySigner>,
    refusal: &Refusal,
    duration_ms: f64,
) -> Option<Outgoing> {
    let correlation_id = refusal.correlation_id.or(refusal.envelope_id)?;
    let operation = refusal.operation.as_deref().unwrap_or("unknown");
    let failure = VaultReply::failure(operation, refusal.error.clone(), duration_ms);
    let mut envelope = Envelope::new(REPLY_PAYLOAD_TYPE, failure);
    envelope.correlation_id = Some(correlation_id);
    envelope.parent_envelope_id = refusal.envelope_id;
    envelope.target_tool = refusal.source_tool.clone();
    Some(reply(bus, signer, envelope))
}

/// A dead letter for an unusable record, keyed like the original (unless
/// its key is over the limit): bounded in size, secret material redacted.
pub fn dead_letter(bus: &EventBus, record: &OwnedMessage, refusal: &Refusal) -> Outgoing {
    let value = record.payload().unwrap_or_default();
    let (kept, redacted) = redact::secret_material(value);
    let limit = bus.dlq_value_limit_bytes;
    let key = record.key().map(|k| &k[..k.len().min(bus.max_key_bytes)]);
    let key_truncated = record.key().is_some_and(|k| k.len() > bus.max_key_bytes);
    let b64 = base64::engine::general_purpose::STANDARD;
    let letter = DeadLetter {
        original_topic: record.topic().to_owned(),
        original_partition: record.partition(),
        original_offset: record.offset(),
        original_key: key.map(|k| b64.encode(k)),
        original_key_truncated: key_truncated,
        original_value: b64.encode(&kept[..kept.len().min(limit)]),
        original_value_redacted: redacted,
        original_value_bytes: value.len() as u64,
        original_value_truncated: kept.len() > limit,
        failure_reason: refusal.error.message.clone(),
        error_type: refusal.error.code,
        failure_timestamp: Utc::now(),
        correlation_id: refusal.correlation_id,
    };
    let mut envelope = Envelope::new(DEAD_LETTER_PAYLOAD_TYPE, letter);
    envelope.correlation_id = refusal.correlation_id;
    envelope.parent_envelope_id = refusal.envelope_id;
    let dlq_key = if key_truncated { None } else { key.map(<[u8]>::to_vec) };
    Outgoing::envelope(Kind::DeadLetter, &bus.dlq_topics.requests, dlq_key, envelope)
}

/// The failed reply that stands in for a reply the broker refused (a result
/// larger than the broker takes, say), from what the refused one's headers
/// say; none when they name no correlation id.
pub fn unpublishable_reply(bus: &EventBus, signer: Option<&ReplySigner>, refused: &Outgoing) -> Option<Outgoing> {
    let header = |name: &str| refused.headers.iter().find(|(key, _)| *key == name).map(|(_, value)| value.as_str());
    let uuid = |name: &str| header(name).and_then(|value| uuid::Uuid::parse_str(value).ok());
    let error = ReplyError::new(
        ErrorCode::InternalError,
        "the reply could not be published: the event bus refuses it (larger than its message limit?)",
    );
    let failure = VaultReply::failure(header("operation_name").unwrap_or("unknown"), error, 0.0);
    let mut envelope = Envelope::new(REPLY_PAYLOAD_TYPE, failure);
    envelope.correlation_id = Some(uuid("correlation_id")?);
    envelope.parent_envelope_id = uuid("parent_message_id");
    Some(reply(bus, signer, envelope))
}

/// The dead letter that stands in for one the broker refused: the record's
/// place and sizes, none of its key or value.
pub fn bare_dead_letter(bus: &EventBus, record: &OwnedMessage, refused: &Outgoing) -> Outgoing {
    // The refused letter's own envelope says (its header is filled in when it has none).
    let correlation_id = serde_json::from_slice::<serde_json::Value>(&refused.body)
        .ok()
        .and_then(|envelope| envelope.get("correlation_id")?.as_str().and_then(|id| uuid::Uuid::parse_str(id).ok()));
    let value = record.payload().unwrap_or_default();
    let letter = DeadLetter {
        original_topic: record.topic().to_owned(),
        original_partition: record.partition(),
        original_offset: record.offset(),
        original_key: None,
        original_key_truncated: record.key().is_some(),
        original_value: String::new(),
        original_value_redacted: false,
        original_value_bytes: value.len() as u64,
        original_value_truncated: !value.is_empty(),
        failure_reason: "unusable record; its full dead letter was refused by the event bus".to_owned(),
        error_type: ErrorCode::InvalidInput,
        failure_timestamp: Utc::now(),
        correlation_id,
    };
    let mut envelope = Envelope::new(DEAD_LETTER_PAYLOAD_TYPE, letter);
    envelope.correlation_id = correlation_id;
    Outgoing::envelope(Kind::DeadLetter, &bus.dlq_topics.requests, None, envelope)
}

/// An audit record, keyed by the request's correlation id.
pub fn audit(bus: &EventBus, record: AuditRecord) -> Outgoing {
    let key = record.correlation_id.map(|id| id.to_string().into_bytes());
    let mut envelope = Envelope::new(AUDIT_PAYLOAD_TYPE, record);
    envelope.correlation_id = envelope.payload.correlation_id;
    Outgoing::envelope(Kind::Audit, &bus.publish_topics.audit, key, envelope)
}

/// A breaker transition, keyed by the guarded service (`vault`).
pub fn breaker_transition(bus: &EventBus, change: &Transition) -> Outgoing {
    let event = CircuitBreakerEvent {
        service_name: "vault".to_owned(),
        state: breaker_state(change.to),
        previous_state: breaker_state(change.from),
        failure_count: change.failure_count,
        threshold: change.threshold,
        timestamp: change.at.into(),
        correlation_id: None,
    };
    let envelope = Envelope::new(CIRCUIT_BREAKER_PAYLOAD_TYPE, event);
    Outgoing::envelope(Kind::Event, &bus.publish_topics.circuit_breaker, Some(b"vault".to_vec()), envelope)
}

/// A lease event, keyed by the lease id.
pub fn lease_event(bus: &EventBus, mut event: LeaseEvent, instance_id: &str) -> Outgoing {
    event.instance_id = Some(instance_id.to_owned());
    let key = event.lease_id.clone().into_bytes();
    let envelope = Envelope::new(LEASE_EVENT_PAYLOAD_TYPE, event);
    Outgoing::envelope(Kind::Event, &bus.publish_topics.lease_events, Some(key), envelope)
}

/// A health event, keyed by the instance id.
pub fn health(bus: &EventBus, event: NodeHealthEvent) -> Outgoing {
    let key = event.health_metrics.custom_metrics.instance_id.clone().into_bytes();
    let envelope = Envelope::new(HEALTH_PAYLOAD_TYPE, event);
    Outgoing::envelope(Kind::Event, &bus.publish_topics.health, Some(key), envelope)
}

/// The wire name of a breaker state.
pub fn breaker_state(state: resilience::BreakerState) -> BreakerState {
    match state {
        resilience::BreakerState::Closed => BreakerState::Closed,
        resilience::BreakerState::Open => BreakerState::Open,
        resilience::BreakerState::HalfOpen => BreakerState::HalfOpen,
    }
}
