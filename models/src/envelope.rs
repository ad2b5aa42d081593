//! The ONEX event envelope (`ModelEventEnvelope`) that wraps every message.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope schema version this crate speaks.
pub const ENVELOPE_VERSION: &str = "2.1.0";
/// The node's name: `source_tool` of everything it publishes.
pub const NODE_NAME: &str = "node_vault_adapter_effect";

/// One message on the bus. Unknown top-level fields are ignored so that newer
/// senders stay compatible; the payload decides its own strictness.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<P> {
    /// Identity of this message.
    pub envelope_id: Uuid,
    /// When the message was created (RFC 3339, UTC).
    pub envelope_timestamp: DateTime<Utc>,
    /// Ties a reply to its request; copied from request to reply.
    pub correlation_id: Uuid,
    /// What caused this message: in a reply, the request's `envelope_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The sending node's name.
    pub source_tool: String,
    /// The addressee: in a reply, the request's `source_tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tool: Option<String>,
    /// Name of the payload model, e.g. `ModelVaultAdapterResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// Envelope schema version.
    #[serde(default = "default_envelope_version")]
    pub envelope_version: String,
    /// The requester stops waiting after this many seconds; the node answers an
    /// older request with `TIMEOUT_ERROR` without calling Vault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0))]
    pub timeout_seconds: Option<f64>,
    /// Tracing ids and free-form tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<EnvelopeMetadata>,
    /// The message itself.
    pub payload: P,
}

fn default_envelope_version() -> String {
    ENVELOPE_VERSION.to_owned()
}

/// Tracing ids and free-form tags carried by an envelope.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnvelopeMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl<P> Envelope<P> {
    /// A new message from this node: fresh id and timestamp, current version.
    pub fn new(correlation_id: Uuid, payload_type: &str, payload: P) -> Self {
        Envelope {
            envelope_id: Uuid::new_v4(),
            envelope_timestamp: Utc::now(),
            correlation_id,
            causation_id: None,
            source_tool: NODE_NAME.to_owned(),
            target_tool: None,
            payload_type: Some(payload_type.to_owned()),
            envelope_version: ENVELOPE_VERSION.to_owned(),
            timeout_seconds: None,
            metadata: None,
            payload,
        }
    }

    /// A message answering `request`: same correlation id, caused by the
    /// request, addressed to its sender, carrying its trace ids over.
    pub fn answering<Q>(request: &Envelope<Q>, payload_type: &str, payload: P) -> Self {
        let mut reply = Envelope::new(request.correlation_id, payload_type, payload);
        reply.causation_id = Some(request.envelope_id);
        reply.target_tool = Some(request.source_tool.clone());
        reply.metadata = request.metadata.as_ref().and_then(|m| {
            (m.trace_id.is_some() || m.span_id.is_some()).then(|| EnvelopeMetadata {
                trace_id: m.trace_id.clone(),
                span_id: m.span_id.clone(),
                ..EnvelopeMetadata::default()
            })
        });
        reply
    }

    /// The same envelope around another payload (e.g. a raw JSON payload
    /// once it is decoded into its typed form).
    pub fn with_payload<Q>(self, payload: Q) -> Envelope<Q> {
        Envelope {
            envelope_id: self.envelope_id,
            envelope_timestamp: self.envelope_timestamp,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            source_tool: self.source_tool,
            target_tool: self.target_tool,
            payload_type: self.payload_type,
            envelope_version: self.envelope_version,
            timeout_seconds: self.timeout_seconds,
            metadata: self.metadata,
            payload,
        }
    }

    /// When the requester stops waiting, if it said.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let seconds = self.timeout_seconds?;
        let delta = chrono::TimeDelta::try_milliseconds((seconds * 1000.0) as i64)?;
        self.envelope_timestamp.checked_add_signed(delta)
    }
}
