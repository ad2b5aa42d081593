//! The ONEX event envelope, omnibase-core's `ModelEventEnvelope`, that wraps
//! every message the node reads and writes.
//!
//! Field for field the upstream model (omnibase-core 0.47.57,
//! `models/events/model_event_envelope.py`): upstream refuses an envelope with
//! a field it does not declare, so nothing is added here. Versions are SemVer
//! objects; the string form older requesters sent (`"2.1.0"`) is still read.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The envelope schema version this crate speaks (upstream's current one).
pub const ENVELOPE_VERSION: SemVer = SemVer::new(2, 3, 0);
/// The ONEX standard version the node declares (`onex_version`).
pub const ONEX_VERSION: SemVer = SemVer::new(1, 0, 0);
/// The node's name as the platform lists it: `source_tool` and `producer` of
/// everything it publishes.
pub const NODE_NAME: &str = "node_infrastructure_vault_adapter_effect";
/// Upstream's default priority (1 to 10, 10 highest).
pub const DEFAULT_PRIORITY: u8 = 5;

/// One message on the bus. Unknown top-level fields are ignored on input
/// (never emitted); the payload decides its own strictness.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Envelope<P> {
    /// Identity of this message (Kafka header `message_id`). Upstream fills a
    /// new one when it is missing; so does the node.
    #[serde(default = "Uuid::new_v4")]
    #[schemars(transform = no_default)]
    pub envelope_id: Uuid,
    /// When the message was created (RFC 3339, UTC).
    #[serde(default = "Utc::now")]
    #[schemars(transform = no_default)]
    pub envelope_timestamp: DateTime<Utc>,
    /// Ties the hops of one request together. Optional upstream; a reply to a
    /// request without one carries the request's `envelope_id` here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The envelope whose consumption caused this one: in a reply, the
    /// request's `envelope_id`. Absent: this message is the head of a chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_envelope_id: Option<Uuid>,
    /// The sending node's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_tool: Option<String>,
    /// The addressee: in a reply, the request's `source_tool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tool: Option<String>,
    /// Tracing ids, headers and free-form tags.
    #[serde(default)]
    pub metadata: EnvelopeMetadata,
    /// Upstream's `ModelSecurityContext`; read, never interpreted, never sent.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub security_context: Option<serde_json::Value>,
    /// Routing key: `<producer>.<event>` of the topic (upstream's
    /// dispatcher routes on it); the node sets it on what it publishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// Name of the payload model, e.g. `ModelVaultAdapterResponse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_type: Option<String>,
    /// Version of the payload's schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_schema_version: Option<SemVer>,
    /// 1 to 10, 10 highest; a reply keeps its request's.
    #[serde(default = "default_priority", deserialize_with = "priority_1_to_10")]
    #[schemars(range(min = 1, max = 10))]
    pub priority: u8,
    /// The requester stops waiting this many seconds after
    /// `envelope_timestamp`; the node answers an older request with
    /// `ONEX_CORE_092_TIMEOUT_ERROR` without calling Vault.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "positive_whole_seconds")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<u64>,
    /// Retry attempt of this message (0 = first).
    #[serde(default)]
    pub retry_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<Uuid>,
    /// Distributed trace id (a W3C trace id is 128 bits: a UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<Uuid>,
    /// Tenant the message belongs to (attribution only, never authority).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// The node that produced the message (attribution only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub producer: Option<String>,
    #[serde(default = "default_onex_version", deserialize_with = "object_or_text")]
    pub onex_version: SemVer,
    #[serde(default = "default_envelope_version", deserialize_with = "object_or_text")]
    pub envelope_version: SemVer,
    /// The message itself.
    pub payload: P,
}

/// A positive whole number of seconds; like upstream (pydantic), a float
/// with no fraction (`30.0`, sent by older requesters) is read as one.
fn positive_whole_seconds<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    let seconds = number.as_u64().or_else(|| {
        number.as_f64().filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= u32::MAX as f64).map(|f| f as u64)
    });
    match seconds {
        Some(s) if s > 0 => Ok(Some(s)),
        _ => Err(serde::de::Error::custom("timeout_seconds: a whole number of seconds greater than 0")),
    }
}

fn priority_1_to_10<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
    match u8::deserialize(deserializer)? {
        p @ 1..=10 => Ok(p),
        _ => Err(serde::de::Error::custom("priority: 1 to 10")),
    }
}

/// A default computed when the message is read (a new id, the time now)
/// has no place in a schema, which must be the same every time.
fn no_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

fn default_priority() -> u8 {
    DEFAULT_PRIORITY
}

fn default_onex_version() -> SemVer {
    ONEX_VERSION
}

fn default_envelope_version() -> SemVer {
    ENVELOPE_VERSION
}

/// Tracing ids, headers and tags (`ModelEnvelopeMetadata`; upstream ignores
/// unknown fields here, and so does the node).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EnvelopeMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A semantic version as upstream's `ModelSemVer` puts it on the wire:
/// `{"major":2,"minor":3,"patch":0,"prerelease":null,"build":null}`. The
/// envelope's two versions also accept the string form (`"2.3.0"`) on input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SemVer {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Dot-separated pre-release identifiers (numbers or text).
    pub prerelease: Option<Vec<PrereleaseId>>,
    pub build: Option<Vec<String>>,
}

/// One pre-release identifier: `alpha`, `1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PrereleaseId {
    Number(u64),
    Text(String),
}

impl SemVer {
    pub const fn new(major: u64, minor: u64, patch: u64) -> SemVer {
        SemVer { major, minor, patch, prerelease: None, build: None }
    }

    /// Parses `MAJOR.MINOR.PATCH[-pre][+build]`.
    pub fn parse(text: &str) -> Option<SemVer> {
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build.split('.').map(str::to_owned).collect())),
            None => (text, None),
        };
        let (core, prerelease) = match rest.split_once('-') {
            Some((core, pre)) => (
                core,
                Some(
                    pre.split('.')
                        .map(|p| p.parse().map_or_else(|_| PrereleaseId::Text(p.to_owned()), PrereleaseId::Number))
                        .collect(),
                ),
            ),
            None => (rest, None),
        };
        let mut numbers = core.split('.').map(|n| n.parse::<u64>().ok());
        let (major, minor, patch) = (numbers.next()??, numbers.next()??, numbers.next()??);
        if numbers.next().is_some() {
            return None;
        }
        Some(SemVer { major, minor, patch, prerelease, build })
    }
}

impl std::fmt::Display for SemVer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if let Some(pre) = &self.prerelease {
            let parts: Vec<String> = pre
                .iter()
                .map(|p| match p {
                    PrereleaseId::Number(n) => n.to_string(),
                    PrereleaseId::Text(t) => t.clone(),
                })
                .collect();
            write!(f, "-{}", parts.join("."))?;
        }
        if let Some(build) = &self.build {
            write!(f, "+{}", build.join("."))?;
        }
        Ok(())
    }
}

/// A version as an object, or in the string form older requesters sent.
fn object_or_text<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<SemVer, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Object(SemVer),
        Text(String),
    }
    match Form::deserialize(deserializer)? {
        Form::Object(version) => Ok(version),
        Form::Text(text) => SemVer::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a version: MAJOR.MINOR.PATCH or a SemVer object")),
    }
}

/// Longest text field of an envelope the node accepts (names and trace ids
/// are copied into replies, audit records and headers; a request cannot make
/// those outputs large).
pub const MAX_TEXT_FIELD_BYTES: usize = 256;
/// Most entries of `metadata.headers` or `metadata.tags`.
pub const MAX_METADATA_ENTRIES: usize = 32;

impl<P> Envelope<P> {
    /// The first field over [`MAX_TEXT_FIELD_BYTES`] (or a metadata map over
    /// [`MAX_METADATA_ENTRIES`] entries), if any.
    pub fn oversized_field(&self) -> Option<&'static str> {
        let metadata = &self.metadata;
        let texts = [
            ("source_tool", &self.source_tool),
            ("target_tool", &self.target_tool),
            ("event_type", &self.event_type),
            ("payload_type", &self.payload_type),
            ("tenant_id", &self.tenant_id),
            ("producer", &self.producer),
            ("metadata.trace_id", &metadata.trace_id),
            ("metadata.request_id", &metadata.request_id),
            ("metadata.span_id", &metadata.span_id),
            ("metadata.parent_span_id", &metadata.parent_span_id),
        ];
        let long = |text: &Option<String>| text.as_ref().is_some_and(|t| t.len() > MAX_TEXT_FIELD_BYTES);
        if let Some((field, _)) = texts.iter().find(|(_, text)| long(text)) {
            return Some(field);
        }
        let map_too_big = |map: &BTreeMap<String, String>| {
            map.len() > MAX_METADATA_ENTRIES
                || map.iter().any(|(k, v)| k.len() > MAX_TEXT_FIELD_BYTES || v.len() > MAX_TEXT_FIELD_BYTES)
        };
        if map_too_big(&metadata.headers) {
            return Some("metadata.headers");
        }
        if map_too_big(&metadata.tags) {
            return Some("metadata.tags");
        }
        None
    }

    /// A new message from this node, the head of its chain: fresh id and
    /// timestamp, current versions.
    pub fn new(payload_type: &str, payload: P) -> Self {
        Envelope {
            envelope_id: Uuid::new_v4(),
            envelope_timestamp: Utc::now(),
            correlation_id: None,
            parent_envelope_id: None,
            source_tool: Some(NODE_NAME.to_owned()),
            target_tool: None,
            metadata: EnvelopeMetadata::default(),
            security_context: None,
            event_type: None,
            payload_type: Some(payload_type.to_owned()),
            payload_schema_version: None,
            priority: DEFAULT_PRIORITY,
            timeout_seconds: None,
            retry_count: 0,
            request_id: None,
            trace_id: None,
            span_id: None,
            tenant_id: None,
            producer: Some(NODE_NAME.to_owned()),
            onex_version: ONEX_VERSION,
            envelope_version: ENVELOPE_VERSION,
            payload,
        }
    }

    /// A message caused by `request`: same correlation (the request's
    /// `envelope_id` when it had none), `parent_envelope_id` naming it,
    /// addressed to its sender, with its priority, request, trace and tenant.
    pub fn answering<Q>(request: &Envelope<Q>, payload_type: &str, payload: P) -> Self {
        let mut reply = Envelope::new(payload_type, payload);
        reply.correlation_id = Some(request.reply_correlation_id());
        reply.parent_envelope_id = Some(request.envelope_id);
        reply.target_tool = request.source_tool.clone();
        reply.priority = request.priority;
        reply.request_id = request.request_id;
        reply.trace_id = request.trace_id;
        reply.tenant_id = request.tenant_id.clone();
        reply.metadata.request_id = request.metadata.request_id.clone();
        reply
    }

    /// The correlation id the replies to this message carry: its own, else
    /// its `envelope_id`.
    pub fn reply_correlation_id(&self) -> Uuid {
        self.correlation_id.unwrap_or(self.envelope_id)
    }

    /// The same envelope around another payload (e.g. a raw JSON payload
    /// once it is decoded into its typed form).
    pub fn with_payload<Q>(self, payload: Q) -> Envelope<Q> {
        Envelope {
            envelope_id: self.envelope_id,
            envelope_timestamp: self.envelope_timestamp,
            correlation_id: self.correlation_id,
            parent_envelope_id: self.parent_envelope_id,
            source_tool: self.source_tool,
            target_tool: self.target_tool,
            metadata: self.metadata,
            security_context: self.security_context,
            event_type: self.event_type,
            payload_type: self.payload_type,
            payload_schema_version: self.payload_schema_version,
            priority: self.priority,
            timeout_seconds: self.timeout_seconds,
            retry_count: self.retry_count,
            request_id: self.request_id,
            trace_id: self.trace_id,
            span_id: self.span_id,
            tenant_id: self.tenant_id,
            producer: self.producer,
            onex_version: self.onex_version,
            envelope_version: self.envelope_version,
            payload,
        }
    }

    /// When the requester stops waiting, if it said.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        let seconds = i64::try_from(self.timeout_seconds?).ok()?;
        self.envelope_timestamp.checked_add_signed(chrono::TimeDelta::try_seconds(seconds)?)
    }

    /// Upstream's header word for the priority (`low`, `normal`, `high`,
    /// `critical`).
    pub fn priority_word(&self) -> &'static str {
        match self.priority {
            0..=3 => "low",
            4..=6 => "normal",
            7..=8 => "high",
            _ => "critical",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn versions_are_objects_out_and_either_form_in() {
        let envelope = Envelope::new("T", json!({}));
        let value = serde_json::to_value(&envelope).expect("serializes");
        assert_eq!(
            value["envelope_version"],
            json!({"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null})
        );
        assert!(value.get("causation_id").is_none());
        let old: Envelope<serde_json::Value> =
            serde_json::from_value(json!({"envelope_version": "2.1.0", "payload": {}})).expect("string form");
        assert_eq!(old.envelope_version, SemVer::new(2, 1, 0));
        let pre = SemVer::parse("1.0.0-alpha.1+build.7").expect("parses");
        assert_eq!(pre.to_string(), "1.0.0-alpha.1+build.7");
        assert!(SemVer::parse("1.0").is_none());
    }

    #[test]
    fn a_reply_without_request_correlation_uses_the_request_id() {
        let request: Envelope<serde_json::Value> =
            serde_json::from_value(json!({"payload": {}, "priority": 9})).expect("minimal envelope");
        let reply = Envelope::answering(&request, "R", ());
        assert_eq!(reply.correlation_id, Some(request.envelope_id));
        assert_eq!(reply.parent_envelope_id, Some(request.envelope_id));
        assert_eq!(reply.priority, 9);
        assert_eq!(reply.priority_word(), "critical");
    }
}
