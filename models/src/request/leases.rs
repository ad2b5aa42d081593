//! Payloads of the lease operations and of `issue_credentials`, which
//! obtains a lease.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{is_reserved_mount, Delivery, InvalidField};
use crate::namespace::Namespace;
use crate::path::{MountName, SecretPath};

/// Most keys an `issue_credentials` request's `parameters` may have.
pub const MAX_CREDENTIAL_PARAMETERS: usize = 32;
/// Largest `issue_credentials` `parameters`, serialized, in bytes.
pub const MAX_CREDENTIAL_PARAMETERS_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLease {
    /// The lease to renew, e.g. `database/creds/app/AbC123`.
    #[schemars(length(min = 1, max = 1024))]
    pub lease_id: String,
    /// Requested extension; Vault may grant less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub increment_seconds: Option<u64>,
    /// Ask the node to keep renewing the lease (at 2/3 of each duration) until
    /// its max TTL, a `revoke_lease`, or the node's limit of tracked leases;
    /// it publishes a lease event when it can renew no more.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_alive: bool,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

/// Dynamic credentials: one read of a secrets engine endpoint that answers
/// with a lease, e.g. `{"mount": "database", "path": "creds/app"}` or
/// `{"mount": "pki", "path": "issue/web", "parameters": {"common_name": "web.example"}}`.
/// The access policy checks `mount` (the engine's mount) and `path` (the
/// endpoint under it) like a secret's mount and path.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCredentials {
    /// The secrets engine's mount, e.g. `database` or `pki` (required: the
    /// contract's default mount is a KV mount).
    pub mount: MountName,
    /// The endpoint under the mount, e.g. `creds/app` or `issue/web`.
    pub path: SecretPath,
    /// The endpoint's parameters (PKI: `common_name`, `ttl`, …), sent as the
    /// JSON body of a `POST`; omitted, the endpoint is read with `GET`. At most
    /// 32 keys and 16 KiB. Not secret: they travel and are audited as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("maxProperties" = 32))]
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
    /// Ask the node to keep renewing the new lease (as `renew_lease` with
    /// `keep_alive`), when it is renewable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_alive: bool,
    /// The credentials are secret material: sealed, wrapped or (if allowed) clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

impl IssueCredentials {
    /// The checks beyond the types: never a reserved mount (nested ones
    /// included: `auth/token` is `auth`), and bounded parameters.
    pub fn check(&self) -> Result<(), InvalidField> {
        if is_reserved_mount(self.mount.as_str()) {
            let engine = self.mount.as_str().split('/').next().unwrap_or_default();
            return Err(InvalidField::new(
                "payload.mount",
                format!("{engine}/ is not a secrets engine the node issues credentials from"),
            ));
        }
        if let Some(parameters) = &self.parameters {
            if parameters.len() > MAX_CREDENTIAL_PARAMETERS {
                return Err(InvalidField::new(
                    "payload.parameters",
                    format!("at most {MAX_CREDENTIAL_PARAMETERS} keys"),
                ));
            }
            if parameters.keys().any(|key| key.is_empty() || key.len() > 256 || key.chars().any(char::is_control)) {
                return Err(InvalidField::new(
                    "payload.parameters",
                    "keys of 1 to 256 characters, no control characters",
                ));
            }
            let size = serde_json::to_vec(parameters).map_or(usize::MAX, |v| v.len());
            if size > MAX_CREDENTIAL_PARAMETERS_BYTES {
                return Err(InvalidField::new(
                    "payload.parameters",
                    format!("at most {MAX_CREDENTIAL_PARAMETERS_BYTES} bytes as JSON"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupLease {
    #[schemars(length(min = 1, max = 1024))]
    pub lease_id: String,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeLease {
    #[schemars(length(min = 1, max = 1024))]
    pub lease_id: String,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}
