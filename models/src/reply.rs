//! The reply payload (`ModelVaultAdapterResponse`): one per request, on the
//! completed topic when `status` is `success`, on the failed topic otherwise.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use secrecy::SecretString;

use crate::error::ReplyError;
use crate::sealing::SealedResult;
use crate::secret::SecretData;

/// Payload type name of a reply.
pub const REPLY_PAYLOAD_TYPE: &str = "ModelVaultAdapterResponse";

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultReply {
    /// The request's operation (as sent, even if the node does not know it).
    pub operation: String,
    pub status: ReplyStatus,
    /// Present on success only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<OperationResult>,
    /// Present on error only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
    /// Time the node spent on the request, in milliseconds.
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplyStatus {
    Success,
    Error,
}

impl VaultReply {
    pub fn success(operation: &str, result: OperationResult, duration_ms: f64) -> Self {
        VaultReply {
            operation: operation.to_owned(),
            status: ReplyStatus::Success,
            result: Some(result),
            error: None,
            duration_ms,
        }
    }

    pub fn failure(operation: &str, error: ReplyError, duration_ms: f64) -> Self {
        VaultReply {
            operation: operation.to_owned(),
            status: ReplyStatus::Error,
            result: None,
            error: Some(error),
            duration_ms,
        }
    }

    pub fn is_success(&self) -> bool {
        self.status == ReplyStatus::Success
    }
}

/// The `result` of a successful reply; its shape depends on the operation.
/// Each shape rejects unknown fields, so the untagged form decodes unambiguously.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OperationResult {
    GetSecret(GetSecretResult),
    SetSecret(SetSecretResult),
    DeleteSecret(DeleteSecretResult),
    ListSecrets(ListSecretsResult),
    RenewLease(RenewLeaseResult),
    RenewToken(RenewTokenResult),
    LookupLease(LookupLeaseResult),
    RevokeLease(RevokeLeaseResult),
    GetSecretsBatch(GetSecretsBatchResult),
    ReadMetadata(ReadMetadataResult),
    WriteMetadata(WriteMetadataResult),
    UndeleteVersions(UndeleteVersionsResult),
    RotateSecret(RotateSecretResult),
    /// `encrypt` and `rewrap`.
    Ciphertext(CiphertextResult),
    Decrypt(DecryptResult),
    LookupToken(LookupTokenResult),
    IssueCredentials(IssueCredentialsResult),
    /// A result with secret values, sealed to the requester's key.
    Sealed(SealedResult),
    /// A result with secret values, left in Vault behind a wrapping token.
    Wrapped(WrappedResult),
}

/// The result of a `delivery: "wrapped"` request: the requester unwraps it
/// in Vault (`sys/wrapping/unwrap`), once; a second unwrap fails, so a reader
/// who got there first is noticed.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WrappedResult {
    /// Always `wrapped`.
    pub delivery: WrappedTag,
    /// The single-use wrapping token.
    #[serde(serialize_with = "crate::secret::expose_string")]
    #[schemars(with = "String")]
    pub wrap_token: SecretString,
    /// Looks the token up or revokes it without unwrapping.
    pub wrap_accessor: String,
    pub ttl_seconds: u64,
    /// RFC 3339 time the token was created.
    pub creation_time: String,
}

impl std::fmt::Debug for WrappedResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WrappedResult").field("ttl_seconds", &self.ttl_seconds).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WrappedTag {
    Wrapped,
}

/// One result per requested path, in request order.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSecretsBatchResult {
    pub results: Vec<BatchItem>,
}

/// One path of a batch: its data, or why it could not be read.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    pub path: String,
    pub status: ReplyStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<SecretData>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<SecretVersionMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ReplyError>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSecretResult {
    pub data: SecretData,
    pub metadata: SecretVersionMetadata,
}

/// Metadata of one version of a KV v2 secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretVersionMetadata {
    pub version: u64,
    /// RFC 3339 time the version was written.
    pub created_time: String,
    /// RFC 3339 time the version was soft-deleted; null if it was not.
    pub deletion_time: Option<String>,
    pub destroyed: bool,
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSecretResult {
    pub version: u64,
    pub created_time: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSecretResult {
    pub deleted: bool,
    /// The versions affected; empty when every version and the metadata went.
    pub versions: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSecretsResult {
    /// Keys in the folder; sub-folders end in `/`. Empty for an empty or
    /// missing folder.
    pub keys: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewLeaseResult {
    pub lease_id: String,
    /// Seconds the lease now lasts.
    pub lease_duration: u64,
    pub renewable: bool,
    /// Whether the node now keeps renewing the lease (`keep_alive` requests).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept_alive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupLeaseResult {
    pub lease_id: String,
    /// RFC 3339 times as Vault reports them.
    pub issue_time: Option<String>,
    pub expire_time: Option<String>,
    pub last_renewal: Option<String>,
    pub renewable: bool,
    /// Seconds left.
    pub ttl_seconds: u64,
    /// Whether this node is keeping the lease alive.
    pub kept_alive: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeLeaseResult {
    pub lease_id: String,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewTokenResult {
    /// Seconds the renewed token lasts.
    pub lease_duration: u64,
    pub renewable: bool,
    /// The token's remaining time to live after renewal, in seconds.
    pub ttl_seconds: u64,
}

/// KV v2 metadata of a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadMetadataResult {
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    pub delete_version_after: String,
    pub created_time: String,
    pub updated_time: String,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// By version number.
    pub versions: BTreeMap<String, VersionState>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionState {
    pub created_time: String,
    /// Null when the version is not deleted.
    pub deletion_time: Option<String>,
    pub destroyed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteMetadataResult {
    pub metadata_written: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UndeleteVersionsResult {
    pub undeleted: bool,
    pub versions: Vec<u64>,
}

/// A rotated secret: its new version, and the new value only when the reply
/// is sealed (or, wrapped, behind the token).
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretResult {
    pub version: u64,
    pub created_time: String,
    pub rotated_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::secret::expose_optional")]
    #[schemars(with = "Option<String>")]
    pub value: Option<SecretString>,
}

impl std::fmt::Debug for RotateSecretResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateSecretResult")
            .field("version", &self.version)
            .field("rotated_key", &self.rotated_key)
            .finish_non_exhaustive()
    }
}

/// A transit ciphertext (`encrypt`, `rewrap`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CiphertextResult {
    pub ciphertext: String,
    pub key_version: u64,
}

/// A transit plaintext, base64: secret material.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DecryptResult {
    #[serde(serialize_with = "crate::secret::expose_string")]
    #[schemars(with = "String")]
    pub plaintext: SecretString,
}

impl std::fmt::Debug for DecryptResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecryptResult { .. }")
    }
}

/// Dynamic credentials (`issue_credentials`): the engine's secret data and
/// the lease Vault put on it. The data is secret material: sealed, wrapped
/// or (if allowed) clear, like a `get_secret` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueCredentialsResult {
    /// What the engine answered: `username` and `password` of a database
    /// role, `certificate`, `private_key`, `serial_number`, … of a PKI role.
    pub data: SecretData,
    /// The lease to renew, look up or revoke; absent when the engine gave
    /// none (a PKI role without `generate_lease`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    /// Seconds the lease lasts (0 without a lease).
    pub lease_duration: u64,
    pub renewable: bool,
    /// Whether the node now keeps renewing the lease (`keep_alive` requests
    /// of a renewable lease, within the node's limit of tracked leases).
    #[serde(default)]
    pub kept_alive: bool,
}

/// The node's own token, described (never the token or its accessor).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupTokenResult {
    pub ttl_seconds: u64,
    pub renewable: bool,
    pub policies: Vec<String>,
    pub expire_time: Option<String>,
    pub entity_id: Option<String>,
    pub display_name: Option<String>,
}
