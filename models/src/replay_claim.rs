//! The replay ledger's record: an instance of the node claims a signed
//! request's `envelope_id` before admitting it (strict profile). Internal to
//! the node's consumer group, published as an envelope like everything else.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Payload type name of a replay claim.
pub const REPLAY_CLAIM_PAYLOAD_TYPE: &str = "ModelVaultReplayClaim";

/// Where a request record sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One claim: the first claim of an id in the ledger wins.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayClaim {
    /// The signed request's `envelope_id`.
    pub envelope_id: Uuid,
    /// The request record that claims it.
    pub position: RecordPosition,
    /// When the request's timestamp leaves the clock-skew window; the claim
    /// is forgotten then.
    pub forget_after: DateTime<Utc>,
    /// The node instance that claimed it (for operators).
    pub instance_id: String,
}
