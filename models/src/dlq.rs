//! The dead-letter record: what the node publishes for a record it cannot use.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;

/// Payload type name of a dead letter.
pub const DEAD_LETTER_PAYLOAD_TYPE: &str = "ModelVaultDeadLetter";

/// A record from the request topic that could not be parsed or validated.
/// `original_value` holds at most the node's documented limit of bytes
/// (`event_bus.dlq_value_limit_bytes`), base64-encoded.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadLetter {
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    /// Base64 of the record key (at most `event_bus.max_key_bytes` of it);
    /// null when the record had none.
    pub original_key: Option<String>,
    /// Whether `original_key` was cut at the limit.
    #[serde(default)]
    pub original_key_truncated: bool,
    /// Base64 of the record value, secret material redacted, truncated to the limit.
    pub original_value: String,
    /// Whether secret material (`data`, `plaintext`, `secret` fields) was
    /// replaced by `"<redacted>"`, or, in a value that is not JSON, the value
    /// cut before the first place it could start.
    #[serde(default)]
    pub original_value_redacted: bool,
    /// Size of the whole original value in bytes.
    pub original_value_bytes: u64,
    /// Whether `original_value` was cut at the limit.
    pub original_value_truncated: bool,
    /// Human text: why the record was refused (never a secret value).
    pub failure_reason: String,
    /// The error code of the wire contract that applies.
    pub error_type: ErrorCode,
    pub failure_timestamp: DateTime<Utc>,
    /// The record's `correlation_id`, if one could be read.
    pub correlation_id: Option<Uuid>,
}
