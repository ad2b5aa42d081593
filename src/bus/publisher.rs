//! Publishing: every message the node sends, with the wire contract's key and
//! headers, awaited until the broker has it.

use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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
    /// The topic's event name, e.g. `vault-completed` (header `event_type`).
    pub event_type: String,
    pub correlation_id: Option<String>,
    /// W3C `traceparent` header, for replies to traced requests.
    pub traceparent: Option<String>,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// Serializes `message` for `topic`; the event name is the topic's fourth part.
    pub fn json(
        kind: Kind,
        topic: &str,
        key: Option<Vec<u8>>,
        correlation_id: Option<String>,
        message: &impl Serialize,
    ) -> Outgoing {
        Outgoing {
            kind,
            topic: topic.to_owned(),
            key,
            event_type: topic.split('.').nth(3).unwrap_or(topic).to_owned(),
            correlation_id,
            traceparent: None,
            // Serializing our own model types cannot fail; an empty body would
            // show the bug downstream rather than crash the node.
            body: serde_json::to_vec(message).unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
}

impl Publisher {
    pub fn new(producer: FutureProducer) -> Publisher {
        Publisher { producer }
    }

    /// Publishes `message`, retrying until the broker acknowledges it or
    /// `stop` fires. Returns whether it was delivered: a request whose reply
    /// was not delivered keeps its offset unstored, so it is answered again
    /// after a restart instead of lost.
    pub async fn deliver(&self, message: &Outgoing, stop: &CancellationToken) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            // A send to an unreachable broker waits up to librdkafka's
            // message timeout; `stop` cuts that wait short too.
            let sent = tokio::select! {
                sent = self.send(message) => sent,
                _ = stop.cancelled() => return false,
            };
            match sent {
                Ok(()) => return true,
                Err(error) => {
                    tracing::warn!(topic = %message.topic, %error, "publish failed; retrying")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn send(&self, message: &Outgoing) -> Result<(), rdkafka::error::KafkaError> {
        let mut headers = OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some("application/json") })
            .insert(Header { key: "event_type", value: Some(message.event_type.as_str()) })
            .insert(Header { key: "source", value: Some(onex_vault_models::NODE_NAME) });
        if let Some(traceparent) = &message.traceparent {
            headers = headers.insert(Header { key: "traceparent", value: Some(traceparent.as_str()) });
        }
        if let Some(id) = &message.correlation_id {
            headers = headers.insert(Header { key: "correlation_id", value: Some(id.as_str()) });
        }
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&message.topic).payload(message.body.as_slice()).headers(headers);
        if let Some(key) = &message.key {
            record = record.key(key.as_slice());
        }
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }

    /// Waits for queued messages to reach the broker (before exit).
    pub fn flush(&self, limit: Duration) {
        if let Err(error) = self.producer.flush(Timeout::After(limit)) {
            tracing::warn!(%error, "producer flush did not complete");
        }
    }
}
