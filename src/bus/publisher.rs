//! Publishing: every message the node sends, with its key and omnibase-infra's
//! Kafka headers, awaited until the broker has it.

use std::time::Duration;

use chrono::SecondsFormat;
use onex_vault_models::{Envelope, NODE_NAME};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What a published message is, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Reply,
    DeadLetter,
    Audit,
    Event,
}

/// A message ready to publish.
pub struct Outgoing {
    pub kind: Kind,
    pub topic: String,
    pub key: Option<Vec<u8>>,
    /// Kafka headers, as omnibase-infra's bus writes them.
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// Upstream's `schema_version` header: the header set's own version.
const HEADER_SCHEMA_VERSION: &str = "1.0.0";
/// Upstream's default `max_retries` header (message-level retries a consumer
/// may make before dead-lettering).
const HEADER_MAX_RETRIES: &str = "3";

impl Outgoing {
    /// `envelope` for `topic`: its `event_type` derived from the topic as
    /// upstream's publishers derive it, its body the JSON of the envelope,
    /// and its headers those omnibase-infra's `EventBusKafka` writes
    /// (`_model_headers_to_kafka`), taken from the envelope (the
    /// `event_type` header is the whole topic name).
    pub fn envelope<P: Serialize>(
        kind: Kind,
        topic: &str,
        key: Option<Vec<u8>>,
        mut envelope: Envelope<P>,
    ) -> Outgoing {
        envelope.event_type = event_type_of(topic);
        let correlation_id = envelope.correlation_id.unwrap_or_else(Uuid::new_v4);
        let mut headers = vec![
            ("content_type", "application/json".to_owned()),
            ("correlation_id", correlation_id.to_string()),
            ("message_id", envelope.envelope_id.to_string()),
            ("timestamp", envelope.envelope_timestamp.to_rfc3339_opts(SecondsFormat::Micros, false)),
            ("source", NODE_NAME.to_owned()),
            ("event_type", topic.to_owned()),
            ("schema_version", HEADER_SCHEMA_VERSION.to_owned()),
            ("priority", envelope.priority_word().to_owned()),
            ("retry_count", envelope.retry_count.to_string()),
            ("max_retries", HEADER_MAX_RETRIES.to_owned()),
        ];
        let metadata = &envelope.metadata;
        let optional = [
            ("trace_id", metadata.trace_id.clone()),
            ("span_id", metadata.span_id.clone()),
            ("parent_span_id", metadata.parent_span_id.clone()),
            ("parent_message_id", envelope.parent_envelope_id.map(|id| id.to_string())),
            ("traceparent", metadata.headers.get("traceparent").cloned()),
        ];
        headers.extend(optional.into_iter().filter_map(|(name, value)| Some((name, value?))));
        Outgoing {
            kind,
            topic: topic.to_owned(),
            key,
            headers,
            // Serializing our own model types cannot fail; an empty body would
            // show the bug downstream rather than crash the node.
            body: serde_json::to_vec(&envelope).unwrap_or_default(),
        }
    }

    /// The body replaced by `change` of its JSON (headers unchanged); kept as
    /// it was, with an error logged, if `change` gives nothing.
    pub fn map_body(mut self, change: impl FnOnce(serde_json::Value) -> Option<serde_json::Value>) -> Outgoing {
        let changed =
            serde_json::from_slice(&self.body).ok().and_then(change).and_then(|v| serde_json::to_vec(&v).ok());
        match changed {
            Some(body) => self.body = body,
            None => tracing::error!(topic = %self.topic, "cannot rewrite a message body (a bug): sent as it was"),
        }
        self
    }

    /// Adds upstream's `operation_name` header.
    pub fn with_operation_name(mut self, operation: &str) -> Outgoing {
        self.headers.push(("operation_name", operation.to_owned()));
        self
    }
}

/// The envelope's `event_type` for a topic, as omnibase-infra's
/// `derive_event_type_from_topic` gives it: `<producer>.<event>` of an ONEX
/// topic `onex.<kind>.<producer>.<event>.v<N>` (upstream's dispatcher routes
/// on it by exact match); none for a topic outside that taxonomy.
pub fn event_type_of(topic: &str) -> Option<String> {
    let parts: Vec<&str> = topic.split('.').collect();
    match parts.as_slice() {
        ["onex", _kind, producer, event, version]
            if version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            Some(format!("{producer}.{event}"))
        }
        _ => None,
    }
}

/// How a [`Publisher::deliver`] ended.
#[derive(Debug)]
pub enum Published {
    Delivered,
    /// `stop` fired first.
    Stopped,
    /// The broker or librdkafka refuses this message for good.
    Refused(rdkafka::error::KafkaError),
}

/// Errors that no retry can mend: the message is too large, the topic is
/// invalid or unknown (librdkafka has already waited its message timeout
/// for it to appear), or the node may not write there.
pub fn is_permanent(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidMessage
                | Code::InvalidRecord
                | Code::InvalidTopic
                | Code::UnknownTopic
                | Code::UnknownTopicOrPartition
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::PolicyViolation
        )
    )
}

/// The node's two producers: one for what someone waits on (replies, dead
/// letters, events, the ledger's and registry's records), one for audit
/// records. Audit records are one per request and nobody waits on them, so
/// they gather into larger batches (`linger.ms`) on a connection of their
/// own, and do not queue in front of replies.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    audit: FutureProducer,
}

impl Publisher {
    pub fn new(producer: FutureProducer, audit: FutureProducer) -> Publisher {
        Publisher { producer, audit }
    }

    fn producer_for(&self, kind: Kind) -> &FutureProducer {
        match kind {
            Kind::Audit => &self.audit,
            Kind::Reply | Kind::DeadLetter | Kind::Event => &self.producer,
        }
    }

    /// Publishes `message`, retrying until the broker acknowledges it, or
    /// refuses it for good (see [`is_permanent`]), or `stop` fires. A request
    /// whose reply was stopped keeps its offset unstored, so it is answered
    /// again after a restart instead of lost; one whose reply was refused is
    /// answered with a smaller stand-in by the caller.
    pub async fn deliver(&self, message: &Outgoing, stop: &CancellationToken) -> Published {
        let mut delay = Duration::from_millis(100);
        loop {
            // A send to an unreachable broker waits up to librdkafka's
            // message timeout; `stop` cuts that wait short too.
            let sent = tokio::select! {
                sent = self.send(message) => sent,
                _ = stop.cancelled() => return Published::Stopped,
            };
            match sent {
                Ok(_) => return Published::Delivered,
                Err(error) if is_permanent(&error) => return Published::Refused(error),
                Err(error) => {
                    tracing::warn!(topic = %message.topic, %error, "publish failed; retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return Published::Stopped,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Publishes `message` once; returns the partition and offset the broker
    /// gave it.
    pub async fn send(&self, message: &Outgoing) -> Result<(i32, i64), rdkafka::error::KafkaError> {
        let headers = message
            .headers
            .iter()
            .fold(OwnedHeaders::new_with_capacity(message.headers.len()), |headers, (key, value)| {
                headers.insert(Header { key, value: Some(value.as_str()) })
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&message.topic).payload(message.body.as_slice()).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        self.producer_for(message.kind)
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(error, _)| error)
    }

    /// Publishes a record with `key` and no value (a tombstone: on a
    /// compacted topic it deletes the key); returns its partition and offset.
    pub async fn send_tombstone(&self, topic: &str, key: &[u8]) -> Result<(i32, i64), rdkafka::error::KafkaError> {
        let record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).key(key);
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|delivery| (delivery.partition, delivery.offset))
            .map_err(|(error, _)| error)
    }

    /// Waits for queued messages to reach the broker (before exit).
    pub fn flush(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        for producer in [&self.producer, &self.audit] {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if let Err(error) = producer.flush(Timeout::After(left)) {
                tracing::warn!(%error, "producer flush did not complete");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::event_type_of;

    #[test]
    fn event_type_is_producer_and_event_of_an_onex_topic() {
        assert_eq!(
            event_type_of("onex.evt.omnibase-infra.vault-completed.v1").as_deref(),
            Some("omnibase-infra.vault-completed")
        );
        assert_eq!(
            event_type_of("onex.dlq.omnibase-infra.vault-request.v12").as_deref(),
            Some("omnibase-infra.vault-request")
        );
        for other in ["requests", "onex.evt.a.b", "onex.evt.a.b.version1", "onex.evt.a.b.v", "x.evt.a.b.v1"] {
            assert_eq!(event_type_of(other), None, "{other}");
        }
    }
}
