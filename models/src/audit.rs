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
    /// The Vault namespace the request addressed, in full (`team-a/app`);
    /// omitted for the root namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
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
    /// Which security check refused the request; the requester is only told
    /// `ONEX_CORE_025_PERMISSION_DENIED`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denial: Option<DenialReason>,
}

/// Which security check refused a request, in the order the gate checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DenialReason {
    /// The request reaches what no grant can: a reserved mount, a token
    /// lease, the node's own requester keys.
    ReservedPath,
    /// Strict profile: not a signed `ModelMessageEnvelope`.
    Unsigned,
    MalformedSignedEnvelope,
    SignerIsNotRuntime,
    EmitterNotInRealm,
    RealmMismatch,
    UnknownSigner,
    HashMismatch,
    InvalidSignature,
    EnvelopeIdOrTimestampMissing,
    TimestampOutsideWindow,
    Replayed,
    ReplayCacheFull,
    ReplayLedgerUnavailable,
    /// The requester may not use the namespace the request names.
    NamespaceNotGranted,
    OperationNotGranted,
    MountNotGranted,
    PathNotGranted,
    ClearDeliveryNotAllowed,
    WrappedDeliveryNotAllowed,
    NoSealingKey,
}

impl DenialReason {
    /// The wire name (as in audit records and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            DenialReason::ReservedPath => "reserved_path",
            DenialReason::Unsigned => "unsigned",
            DenialReason::MalformedSignedEnvelope => "malformed_signed_envelope",
            DenialReason::SignerIsNotRuntime => "signer_is_not_runtime",
            DenialReason::EmitterNotInRealm => "emitter_not_in_realm",
            DenialReason::RealmMismatch => "realm_mismatch",
            DenialReason::UnknownSigner => "unknown_signer",
            DenialReason::HashMismatch => "hash_mismatch",
            DenialReason::InvalidSignature => "invalid_signature",
            DenialReason::EnvelopeIdOrTimestampMissing => "envelope_id_or_timestamp_missing",
            DenialReason::TimestampOutsideWindow => "timestamp_outside_window",
            DenialReason::Replayed => "replayed",
            DenialReason::ReplayCacheFull => "replay_cache_full",
            DenialReason::ReplayLedgerUnavailable => "replay_ledger_unavailable",
            DenialReason::NamespaceNotGranted => "namespace_not_granted",
            DenialReason::OperationNotGranted => "operation_not_granted",
            DenialReason::MountNotGranted => "mount_not_granted",
            DenialReason::PathNotGranted => "path_not_granted",
            DenialReason::ClearDeliveryNotAllowed => "clear_delivery_not_allowed",
            DenialReason::WrappedDeliveryNotAllowed => "wrapped_delivery_not_allowed",
            DenialReason::NoSealingKey => "no_sealing_key",
        }
    }

    /// Whether the request was refused before its sender was known to be a
    /// registered runtime sending it now: not signed, not verified, or a
    /// replay of a signed record (an old one, one without its own id and
    /// timestamp, or one seen before), anything anyone on the bus can send.
    /// Such a request gets no reply (as omnibase-infra's gateway drops what
    /// it refuses, so as not to help an attacker); its audit record is its
    /// one output. Every other denial is answered: its sender is known.
    pub fn is_gateway(self) -> bool {
        use DenialReason::*;
        match self {
            Unsigned
            | MalformedSignedEnvelope
            | SignerIsNotRuntime
            | EmitterNotInRealm
            | RealmMismatch
            | UnknownSigner
            | HashMismatch
            | InvalidSignature
            | EnvelopeIdOrTimestampMissing
            | TimestampOutsideWindow
            | Replayed => true,
            ReservedPath
            | NamespaceNotGranted
            | ReplayCacheFull
            | ReplayLedgerUnavailable
            | OperationNotGranted
            | MountNotGranted
            | PathNotGranted
            | ClearDeliveryNotAllowed
            | WrappedDeliveryNotAllowed
            | NoSealingKey => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DenialReason;

    #[test]
    fn a_denial_reason_names_itself_as_serde_does() {
        use DenialReason::*;
        for reason in [
            ReservedPath,
            NamespaceNotGranted,
            Unsigned,
            EnvelopeIdOrTimestampMissing,
            WrappedDeliveryNotAllowed,
            NoSealingKey,
        ] {
            assert_eq!(serde_json::to_value(reason).ok(), Some(serde_json::Value::from(reason.as_str())));
        }
    }
}
