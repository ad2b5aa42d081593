//! Wire types of the ONEX Vault adapter node (`node_infrastructure_vault_adapter_effect`).
//!
//! This crate is the node's public API on Kafka, and nothing else: the envelope
//! every message travels in, the request payloads (tagged by `operation`), the
//! reply payload and its error codes, the dead-letter record, and the health and
//! circuit-breaker events, the signed `ModelMessageEnvelope` of the strict
//! profile. It depends on serde, schemars, secrecy, blake3 and two RustCrypto
//! crates only, so any Rust node can talk to the adapter without pulling in
//! Kafka or Vault clients.
//!
//! Security: [`RuntimeSigner`] wraps an envelope in omnibase-core's signed
//! `ModelMessageEnvelope` ([`SignedEnvelope`]) as an ONEX runtime's gateway
//! does, and [`SignedEnvelope::verify`] checks one as omnibase-infra's
//! `ServiceEnvelopeValidator` does; [`SealedResult::open`] opens a sealed
//! reply with the requester's [`SealingSecretKey`]; [`RuntimeIdentity`] is a
//! runtime's key file.
//!
//! Secret material (`set_secret` data, `get_secret` and `issue_credentials`
//! results) is held in [`SecretData`], whose `Debug` never shows a value.
//!
//! [`schemas()`] returns the JSON Schemas of every top-level message; they are
//! committed under `models/schemas/` for non-Rust nodes.

mod audit;
mod dlq;
mod envelope;
mod error;
mod events;
mod gateway;
mod identity;
mod keys;
mod lease_registration;
mod namespace;
mod path;
mod replay_claim;
mod reply;
mod request;
mod schema;
mod sealing;
mod secret;

pub use audit::{AuditRecord, DenialReason, AUDIT_PAYLOAD_TYPE};
pub use dlq::{DeadLetter, DEAD_LETTER_PAYLOAD_TYPE};
pub use envelope::{
    Envelope, EnvelopeMetadata, PrereleaseId, SemVer, DEFAULT_PRIORITY, ENVELOPE_VERSION, MAX_METADATA_ENTRIES,
    MAX_TEXT_FIELD_BYTES, NODE_NAME, ONEX_VERSION,
};
pub use error::{ErrorCode, ErrorReason, ReplyError, MAX_ERROR_MESSAGE_BYTES};
pub use events::{
    BreakerState, BusStats, CacheStats, CircuitBreakerEvent, CircuitBreakerStatus, HealthDetails, HealthMetrics,
    HealthPhase, HealthStatus, LeaseEvent, LeaseEventKind, LeaseStats, NodeHealthEvent, OperationStats, SecurityStatus,
    TokenStatus, VaultActivity, VaultMetrics, VaultStatus, CIRCUIT_BREAKER_PAYLOAD_TYPE, HEALTH_PAYLOAD_TYPE,
    LEASE_EVENT_PAYLOAD_TYPE, NODE_HEALTH_EVENT_TYPE,
};
pub use gateway::{
    canonical_json, canonical_json_text, payload_hash, payload_hash_text, CanonicalJsonError, EmitterIdentity,
    EnvelopeSignature, GatewayKeyError, GatewayRefusal, RuntimeKey, RuntimeSigner, SignatureAlgorithm, SignedEnvelope,
    GATEWAY_SIGNATURE_ALGORITHM,
};
pub use identity::RuntimeIdentity;
pub use keys::{check_key_id, KeyError};
pub use lease_registration::{LeaseRegistration, LEASE_REGISTRATION_PAYLOAD_TYPE};
pub use namespace::{Namespace, NamespaceError, MAX_NAMESPACE_BYTES, MAX_NAMESPACE_SEGMENTS, RESERVED_NAMESPACE_NAMES};
pub use path::{mask_path, FolderPath, MountName, PathError, SecretPath, MAX_PATH_BYTES};
pub use replay_claim::{RecordPosition, ReplayClaim, REPLAY_CLAIM_PAYLOAD_TYPE};
pub use reply::{
    BatchItem, CiphertextResult, DecryptResult, DeleteSecretResult, GetSecretResult, GetSecretsBatchResult,
    IssueCredentialsResult, ListSecretsResult, LookupLeaseResult, LookupTokenResult, OperationResult,
    ReadMetadataResult, RenewLeaseResult, RenewTokenResult, ReplyStatus, RevokeLeaseResult, RotateSecretResult,
    SecretVersionMetadata, SetSecretResult, UndeleteVersionsResult, VaultReply, VersionState, WrappedResult,
    WrappedTag, WriteMetadataResult, REPLY_PAYLOAD_TYPE,
};
pub use request::{
    is_reserved_mount, Alphabet, Consistency, DeleteSecret, Delivery, GetSecret, GetSecretsBatch, InvalidField,
    IssueCredentials, ListSecrets, LookupLease, LookupToken, Operation, ReadMetadata, RenewLease, RenewToken,
    RevokeLease, RotateSecret, SetSecret, TransitDecrypt, TransitEncrypt, TransitRewrap, UndeleteVersions,
    VaultRequest, WriteMetadata, MAX_BATCH_PATHS, MAX_CREDENTIAL_PARAMETERS, MAX_CREDENTIAL_PARAMETERS_BYTES,
    MAX_SECRET_DATA_BYTES, RESERVED_MOUNTS, ROTATE_LENGTH,
};
pub use schema::{schemas, MessageSchema};
pub use sealing::{
    InputBinding, OpenError, OpenedInput, SealedInput, SealedMaterial, SealedResult, SealedTag, SealingPublicKey,
    SealingSecretKey, MAX_SEALED_INPUT_CHARS, SEALED_BOX_SCHEME,
};
pub use secret::SecretData;

/// A request as it arrives on the request topic.
pub type RequestEnvelope = Envelope<VaultRequest>;
/// A reply as the node publishes it on the completed or failed topic.
pub type ReplyEnvelope = Envelope<VaultReply>;
/// A dead letter as the node publishes it on the DLQ topic.
pub type DeadLetterEnvelope = Envelope<DeadLetter>;
/// An audit record as the node publishes it on the audit topic.
pub type AuditEnvelope = Envelope<AuditRecord>;
/// A lease event as the node publishes it on the lease-events topic.
pub type LeaseEventEnvelope = Envelope<LeaseEvent>;
/// A health event as the node publishes it on the health topic.
pub type HealthEnvelope = Envelope<NodeHealthEvent>;
/// A replay claim as the node publishes it on the replay ledger topic.
pub type ReplayClaimEnvelope = Envelope<ReplayClaim>;
/// A lease registry record (the value of a non-tombstone record).
pub type LeaseRegistrationEnvelope = Envelope<LeaseRegistration>;
/// A breaker transition as the node publishes it on the circuit-breaker topic.
pub type CircuitBreakerEnvelope = Envelope<CircuitBreakerEvent>;
