//! Request payloads, one struct per operation, tagged by `payload.operation`.
//!
//! Unknown fields are rejected (`deny_unknown_fields`) so a typo never silently
//! changes what a request does. Paths are validated by their types
//! ([`crate::SecretPath`], [`crate::FolderPath`], [`crate::MountName`]);
//! [`VaultRequest::validate`] adds the checks that span fields. The payloads
//! live by engine: `kv.rs`, `transit.rs`, `leases.rs` (with
//! `issue_credentials`), `token.rs`.

use std::fmt;

use schemars::JsonSchema;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, EnumIter, EnumString, IntoStaticStr};

use crate::namespace::Namespace;
use crate::sealing::{SealedInput, MAX_SEALED_INPUT_CHARS, SEALED_BOX_SCHEME};

/// Largest `set_secret` data the node accepts, serialized, in bytes.
pub const MAX_SECRET_DATA_BYTES: usize = 512 * 1024;
/// Longest lease id the node accepts, in bytes.
const MAX_LEASE_ID_BYTES: usize = 1024;
/// Mounts no request reaches, whatever the grants: Vault's own (`sys`,
/// `auth`, `identity`) and the node's private one (`cubbyhole`).
pub const RESERVED_MOUNTS: [&str; 4] = ["sys", "auth", "identity", "cubbyhole"];

/// Whether `mount` is reserved, nested ones included (`auth/token` is `auth`).
pub fn is_reserved_mount(mount: &str) -> bool {
    RESERVED_MOUNTS.contains(&mount.trim_matches('/').split('/').next().unwrap_or_default())
}

// The one list of operations: `Operation` (the names without their
// arguments) is derived from this enum, and the node's dispatch is
// generated from its variants.
/// A request payload. The `operation` field selects the variant.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, EnumDiscriminants)]
#[serde(tag = "operation", rename_all = "snake_case")]
#[strum_discriminants(
    name(Operation),
    vis(pub),
    derive(Hash, PartialOrd, Ord, EnumIter, IntoStaticStr, EnumString, Serialize, Deserialize),
    strum(serialize_all = "snake_case"),
    serde(rename_all = "snake_case")
)]
pub enum VaultRequest {
    /// Read a secret (latest version, or `version`). Also read under the
    /// names of omnibase-infra's Vault handler: `vault.read_secret`, `read_secret`.
    #[serde(alias = "vault.read_secret", alias = "read_secret")]
    GetSecret(GetSecret),
    /// Write a new version of a secret (also `vault.write_secret`, `write_secret`).
    #[serde(alias = "vault.write_secret", alias = "write_secret")]
    SetSecret(SetSecret),
    /// Soft-delete, destroy, or delete every version of a secret (also
    /// `vault.delete_secret`).
    #[serde(alias = "vault.delete_secret")]
    DeleteSecret(DeleteSecret),
    /// List the keys in a folder (also `vault.list_secrets`).
    #[serde(alias = "vault.list_secrets")]
    ListSecrets(ListSecrets),
    /// Renew a lease of a dynamic secret.
    RenewLease(RenewLease),
    /// Renew the node's own Vault token (also `vault.renew_token`).
    #[serde(alias = "vault.renew_token")]
    RenewToken(RenewToken),
    /// Look up a lease: its TTL, expiry and renewability.
    LookupLease(LookupLease),
    /// Revoke a lease now (and stop keeping it alive).
    RevokeLease(RevokeLease),
    /// Read several secrets in one request; one result per path.
    GetSecretsBatch(GetSecretsBatch),
    /// Read a secret's metadata: versions, times, custom metadata.
    ReadMetadata(ReadMetadata),
    /// Write a secret's metadata (only the fields given change).
    WriteMetadata(WriteMetadata),
    /// Restore soft-deleted versions.
    UndeleteVersions(UndeleteVersions),
    /// Replace one key of a secret with a new random value (new version, CAS).
    RotateSecret(RotateSecret),
    /// Transit: encrypt base64 plaintext with a named key.
    Encrypt(TransitEncrypt),
    /// Transit: decrypt to base64 plaintext (secret material in the reply).
    Decrypt(TransitDecrypt),
    /// Transit: re-encrypt a ciphertext with the key's latest version.
    Rewrap(TransitRewrap),
    /// Look up the node's own token (never the token itself).
    LookupToken(LookupToken),
    /// Obtain dynamic credentials: read a secrets engine endpoint that
    /// answers with a lease (`database/creds/ROLE`, `pki/issue/ROLE`, …).
    IssueCredentials(IssueCredentials),
}

/// Whether a read may be served from the node's read cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// From the cache when the node has one and the entry is fresh enough.
    #[default]
    Cached,
    /// Always from Vault (the result refreshes the cache).
    Fresh,
}

impl Consistency {
    fn is_default(&self) -> bool {
        *self == Consistency::Cached
    }
}

/// How a reply carrying secret values delivers them. Omitted: the node's
/// contract decides (`security.default_delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// In the reply, in clear text; only for requesters the access policy allows.
    Clear,
    /// In the reply, sealed to the requester's registered X25519 key.
    Sealed,
    /// Not in the reply: Vault keeps the result behind a single-use
    /// response-wrapping token, which the reply carries.
    Wrapped,
}

impl Delivery {
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Clear => "clear",
            Delivery::Sealed => "sealed",
            Delivery::Wrapped => "wrapped",
        }
    }
}

mod kv;
mod leases;
mod token;
mod transit;

use transit::{is_empty_secret, valid_base64, valid_key_name};

pub use kv::*;
pub use leases::*;
pub use token::*;
pub use transit::*;

// `Operation`, the operations the node knows without their arguments (for
// dispatch, metrics and replies to requests that could not be decoded in
// full), is derived from `VaultRequest` above: one variant each, same names.

impl Operation {
    /// Every operation, in declaration order.
    pub fn all() -> impl Iterator<Item = Operation> {
        <Operation as strum::IntoEnumIterator>::iter()
    }

    /// The wire name, e.g. `get_secret` (the request's `operation` tag).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The operation of a wire name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Operation> {
        name.parse().ok()
    }

    /// The names of omnibase-infra's own Vault handler (0.7.0,
    /// `EnumVaultOperationType`, with and without `vault.`) and the
    /// operations they mean here.
    pub const UPSTREAM_ALIASES: [(&'static str, Operation); 7] = [
        ("vault.read_secret", Operation::GetSecret),
        ("read_secret", Operation::GetSecret),
        ("vault.write_secret", Operation::SetSecret),
        ("write_secret", Operation::SetSecret),
        ("vault.delete_secret", Operation::DeleteSecret),
        ("vault.list_secrets", Operation::ListSecrets),
        ("vault.renew_token", Operation::RenewToken),
    ];

    /// The operation a request's `operation` names: ours, or an upstream alias.
    pub fn from_wire_name(name: &str) -> Option<Operation> {
        Operation::from_name(name)
            .or_else(|| Operation::UPSTREAM_ALIASES.iter().find(|(alias, _)| *alias == name).map(|(_, op)| *op))
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The checks a sealed input passes before the node tries to open it.
fn check_sealed(field: &str, sealed: &SealedInput) -> Result<(), InvalidField> {
    if sealed.scheme != SEALED_BOX_SCHEME {
        return Err(InvalidField::new(format!("payload.{field}.scheme"), format!("must be {SEALED_BOX_SCHEME}")));
    }
    if crate::keys::check_key_id(&sealed.key_id).is_err() {
        return Err(InvalidField::new(format!("payload.{field}.key_id"), "1 to 64 of A-Z a-z 0-9 . _ -"));
    }
    if sealed.ciphertext.len() > MAX_SEALED_INPUT_CHARS || !valid_base64(&sealed.ciphertext) {
        return Err(InvalidField::new(
            format!("payload.{field}.ciphertext"),
            format!("base64 of at most {MAX_SEALED_INPUT_CHARS} characters"),
        ));
    }
    Ok(())
}

fn check_transit(key: &str, context: Option<&str>) -> Result<(), InvalidField> {
    if !valid_key_name(key) {
        return Err(InvalidField::new("payload.key", "a transit key name, 1 to 128 of A-Z a-z 0-9 _ - ."));
    }
    if context.is_some_and(|c| !valid_base64(c)) {
        return Err(InvalidField::new("payload.context", "must be base64"));
    }
    Ok(())
}

/// A value that cannot be used as given: which field (`payload.data`,
/// `payload.sealed_data.key_id`, `payload` for a rule across a request's
/// fields; a contract's `event_bus.max_in_flight`) and what it must be.
/// Shown as `field: problem`, the text a requester gets in its
/// `ONEX_CORE_007_INVALID_INPUT` reply and an operator in a contract error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: String,
    pub problem: String,
}

impl InvalidField {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> InvalidField {
        InvalidField { field: field.into(), problem: problem.into() }
    }
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field.as_str() {
            "" => f.write_str(&self.problem),
            field => write!(f, "{field}: {}", self.problem),
        }
    }
}

impl std::error::Error for InvalidField {}

impl VaultRequest {
    pub fn operation(&self) -> Operation {
        Operation::from(self)
    }

    /// The namespace the request names, relative to the node's; `None`: the
    /// node's own (always, for the token operations: the node's token lives there).
    pub fn namespace(&self) -> Option<&Namespace> {
        match self {
            VaultRequest::GetSecret(r) => r.namespace.as_ref(),
            VaultRequest::SetSecret(r) => r.namespace.as_ref(),
            VaultRequest::DeleteSecret(r) => r.namespace.as_ref(),
            VaultRequest::ListSecrets(r) => r.namespace.as_ref(),
            VaultRequest::RenewLease(r) => r.namespace.as_ref(),
            VaultRequest::LookupLease(r) => r.namespace.as_ref(),
            VaultRequest::RevokeLease(r) => r.namespace.as_ref(),
            VaultRequest::GetSecretsBatch(r) => r.namespace.as_ref(),
            VaultRequest::ReadMetadata(r) => r.namespace.as_ref(),
            VaultRequest::WriteMetadata(r) => r.namespace.as_ref(),
            VaultRequest::UndeleteVersions(r) => r.namespace.as_ref(),
            VaultRequest::RotateSecret(r) => r.namespace.as_ref(),
            VaultRequest::Encrypt(r) => r.namespace.as_ref(),
            VaultRequest::Decrypt(r) => r.namespace.as_ref(),
            VaultRequest::Rewrap(r) => r.namespace.as_ref(),
            VaultRequest::IssueCredentials(r) => r.namespace.as_ref(),
            VaultRequest::RenewToken(_) | VaultRequest::LookupToken(_) => None,
        }
    }

    /// The lease a lease operation names.
    pub fn lease_id(&self) -> Option<&str> {
        match self {
            VaultRequest::RenewLease(r) => Some(&r.lease_id),
            VaultRequest::LookupLease(r) => Some(&r.lease_id),
            VaultRequest::RevokeLease(r) => Some(&r.lease_id),
            _ => None,
        }
    }

    /// For operations whose reply carries secret values: the delivery the
    /// request asks for (`Some(None)`: the contract's default). `None` for
    /// the others.
    pub fn delivery(&self) -> Option<Option<Delivery>> {
        match self {
            VaultRequest::GetSecret(r) => Some(r.delivery),
            VaultRequest::GetSecretsBatch(r) => Some(r.delivery),
            VaultRequest::RotateSecret(r) => Some(r.delivery),
            VaultRequest::Decrypt(r) => Some(r.delivery),
            VaultRequest::IssueCredentials(r) => Some(r.delivery),
            _ => None,
        }
    }

    /// Checks that types alone cannot express. The message names the field.
    pub fn validate(&self) -> Result<(), InvalidField> {
        match self {
            VaultRequest::SetSecret(set) => {
                match (&set.sealed_data, set.data.is_empty()) {
                    (Some(_), false) => {
                        return Err(InvalidField::new("payload.sealed_data", "give data or sealed_data, not both"));
                    }
                    (Some(sealed), true) => return check_sealed("sealed_data", sealed),
                    (None, true) => {
                        return Err(InvalidField::new(
                            "payload.data",
                            "must be a non-empty object (or give sealed_data)",
                        ));
                    }
                    (None, false) => {}
                }
                let size = serde_json::to_vec(set.data.expose_secret()).map_or(0, |v| v.len());
                if size > MAX_SECRET_DATA_BYTES {
                    return Err(InvalidField::new(
                        "payload.data",
                        format!("{size} bytes is over the limit of {MAX_SECRET_DATA_BYTES}"),
                    ));
                }
            }
            VaultRequest::DeleteSecret(delete) => {
                if delete.all_versions && (delete.versions.is_some() || delete.destroy) {
                    return Err(InvalidField::new(
                        "payload.all_versions",
                        "cannot be combined with versions or destroy",
                    ));
                }
                if delete.versions.as_ref().is_some_and(|v| v.is_empty()) {
                    return Err(InvalidField::new("payload.versions", "must not be empty when given"));
                }
                if delete.destroy && delete.versions.is_none() {
                    return Err(InvalidField::new("payload.destroy", "needs the versions to destroy"));
                }
            }
            VaultRequest::RenewLease(_) | VaultRequest::LookupLease(_) | VaultRequest::RevokeLease(_) => {
                let id = self.lease_id().unwrap_or_default();
                if id.is_empty() || id.len() > MAX_LEASE_ID_BYTES {
                    return Err(InvalidField::new("payload.lease_id", "must be 1 to 1024 bytes"));
                }
                if id.chars().any(char::is_control) {
                    return Err(InvalidField::new("payload.lease_id", "must not contain control characters"));
                }
            }
            VaultRequest::GetSecretsBatch(batch) if batch.paths.is_empty() || batch.paths.len() > MAX_BATCH_PATHS => {
                return Err(InvalidField::new("payload.paths", format!("must name 1 to {MAX_BATCH_PATHS} paths")));
            }
            VaultRequest::GetSecretsBatch(batch) if batch.delivery == Some(Delivery::Wrapped) => {
                return Err(InvalidField::new("payload.delivery", "a batch cannot be wrapped; use clear or sealed"));
            }
            VaultRequest::GetSecret(get) if get.version == Some(0) => {
                return Err(InvalidField::new("payload.version", "must be ≥ 1"));
            }
            VaultRequest::UndeleteVersions(r) if r.versions.is_empty() || r.versions.contains(&0) => {
                return Err(InvalidField::new("payload.versions", "one or more versions, each ≥ 1"));
            }
            VaultRequest::WriteMetadata(r)
                if r.custom_metadata.is_none()
                    && r.max_versions.is_none()
                    && r.cas_required.is_none()
                    && r.delete_version_after.is_none() =>
            {
                return Err(InvalidField::new(
                    "payload",
                    "give at least one of custom_metadata, max_versions, cas_required, delete_version_after",
                ));
            }
            VaultRequest::RotateSecret(r) => {
                if r.key.is_empty() || r.key.len() > 256 || r.key.chars().any(char::is_control) {
                    return Err(InvalidField::new("payload.key", "1 to 256 characters, no control characters"));
                }
                if !ROTATE_LENGTH.contains(&r.length) {
                    return Err(InvalidField::new(
                        "payload.length",
                        format!("{} to {}", ROTATE_LENGTH.start(), ROTATE_LENGTH.end()),
                    ));
                }
                r.alphabet.characters()?;
            }
            VaultRequest::Encrypt(r) => {
                check_transit(&r.key, r.context.as_deref())?;
                match (&r.sealed_plaintext, is_empty_secret(&r.plaintext)) {
                    (Some(_), false) => {
                        return Err(InvalidField::new(
                            "payload.sealed_plaintext",
                            "give plaintext or sealed_plaintext, not both",
                        ));
                    }
                    (Some(sealed), true) => check_sealed("sealed_plaintext", sealed)?,
                    (None, true) => {
                        return Err(InvalidField::new("payload.plaintext", "required (or give sealed_plaintext)"))
                    }
                    (None, false) if !valid_base64(r.plaintext.expose_secret()) => {
                        return Err(InvalidField::new("payload.plaintext", "must be base64"));
                    }
                    (None, false) => {}
                }
            }
            VaultRequest::Decrypt(TransitDecrypt { key, ciphertext, context, .. })
            | VaultRequest::Rewrap(TransitRewrap { key, ciphertext, context, .. }) => {
                check_transit(key, context.as_deref())?;
                if !ciphertext.starts_with("vault:v")
                    || ciphertext.len() > 1 << 20
                    || ciphertext.chars().any(char::is_control)
                {
                    return Err(InvalidField::new("payload.ciphertext", "must be a transit ciphertext (vault:v<N>:…)"));
                }
            }
            VaultRequest::IssueCredentials(r) => r.check()?,
            _ => {}
        }
        Ok(())
    }
}
