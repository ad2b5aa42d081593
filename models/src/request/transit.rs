//! Payloads of the transit operations: `encrypt`, `decrypt`, `rewrap`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use secrecy::ExposeSecret as _;

use super::Delivery;
use crate::namespace::Namespace;
use crate::path::MountName;
use crate::sealing::SealedInput;

/// A transit key name: 1 to 128 of `A-Z a-z 0-9 _ - .`.
pub(super) fn valid_key_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name != "."
        && name != ".."
}

pub(super) fn valid_base64(text: &str) -> bool {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).is_ok()
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitEncrypt {
    /// Transit mount; `transit` when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub key: String,
    /// Base64 of the data to encrypt (secret: never logged). Omitted when
    /// `sealed_plaintext` carries it.
    #[serde(default, skip_serializing_if = "is_empty_secret", serialize_with = "crate::secret::expose_string")]
    #[schemars(with = "String")]
    pub plaintext: secrecy::SecretString,
    /// `plaintext`, sealed to the node's X25519 key so the request topic
    /// never carries it in clear (bound to this request: operation `encrypt`,
    /// `mount` as written, `target` the key name). Exactly one of
    /// `plaintext` and `sealed_plaintext`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_plaintext: Option<SealedInput>,
    /// Base64 key-derivation context, for derived keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitDecrypt {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub key: String,
    /// `vault:v<N>:…` as `encrypt` returned it.
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The plaintext is secret material: sealed, wrapped or (if allowed) clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitRewrap {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub key: String,
    pub ciphertext: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

pub(super) fn is_empty_secret(secret: &secrecy::SecretString) -> bool {
    secret.expose_secret().is_empty()
}
