//! The audit record: one per handled request, on the audit topic. It says who
//! asked for what and how it ended; never a value, a token or a secret id.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ErrorCode;
use crate::reply::ReplyStatus;

/// Payload type name of an audit record.
pub const AUDIT_PAYLOAD_TYPE: &str = "ModelVaultAuditRecord";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// The requester's `source_tool`; null when the record named none.
    pub requester: Option<String>,
    /// The `runtime_id` of the signed envelope the request came in (strict
    /// profile), as it claims to be; `denial` says whether it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_id: Option<String>,
    /// The operation as sent; null when it could not be read.
    pub operation: Option<String>,
    /// The KV mount the request addressed, if any.
    pub mount: Option<String>,
    /// The secret path (or lease id) the request addressed, if any.
    pub path: Option<String>,
    pub outcome: ReplyStatus,
    pub error_code: Option<ErrorCode>,
    /// The request's correlation id; null for an unreadable record.
    pub correlation_id: Option<Uuid>,
    pub duration_ms: f64,
    /// The node instance that handled the request.
    pub instance_id: String,
    pub timestamp: DateTime<Utc>,
    /// Where the record came from, for unreadable ones: `topic/partition@offset`.
    pub source_record: String,
    /// Which security check refused the request (`bad_signature`, `replayed`,
    /// `path_not_granted`, …); the requester is only told `ONEX_CORE_025_PERMISSION_DENIED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<String>,
}
