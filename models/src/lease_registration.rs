//! The lease registry's record: a lease the node's consumer group keeps
//! alive (`renew_lease` or `issue_credentials` with `keep_alive`). Internal to
//! the node's consumer group, on a compacted topic keyed by the lease id;
//! a record with no value (a tombstone) takes the lease off the registry.
//! It holds the lease id and scheduling facts only: never a credential.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Payload type name of a lease registration.
pub const LEASE_REGISTRATION_PAYLOAD_TYPE: &str = "ModelVaultLeaseRegistration";

/// One lease to keep alive; the record's key is `lease_id` too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseRegistration {
    /// Vault's lease id (e.g. `database/creds/app/AbC…`); not a secret.
    pub lease_id: String,
    /// The increment each renewal asks Vault for: the lease's duration when
    /// it was registered.
    pub increment_seconds: u64,
    /// When the lease expires unless renewed, as known at registration. The
    /// instance that renews it renews at 2/3 of its duration, so a later
    /// owner renews at once when this moment is less than a third of the
    /// duration away (or past).
    pub expires_at: DateTime<Utc>,
    /// When the node accepted the keep-alive.
    pub registered_at: DateTime<Utc>,
    /// The node instance that accepted it (for operators).
    pub instance_id: String,
    /// The Vault namespace the lease lives in, in full (`team-a/app`);
    /// absent: the node's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}
