//! Payloads of the KV v2 operations: read, write, delete, list, batch
//! reads, metadata, undelete, rotate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Consistency, Delivery, InvalidField};
use crate::namespace::Namespace;
use crate::path::{FolderPath, MountName, SecretPath};
use crate::sealing::SealedInput;
use crate::secret::SecretData;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// Replaces the custom metadata (string values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_metadata: Option<std::collections::BTreeMap<String, String>>,
    /// Versions kept; 0 = the mount's setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_versions: Option<u64>,
    /// Whether every write must give `cas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas_required: Option<bool>,
    /// Versions are deleted this long after they are written (`"30d"`, `"0s"` = never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_version_after: Option<String>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UndeleteVersions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    #[schemars(length(min = 1))]
    pub versions: Vec<u64>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

/// The characters a rotated value is drawn from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Alphabet {
    /// A-Z a-z 0-9.
    #[default]
    Alphanumeric,
    /// 0-9 a-f.
    Hex,
    /// A-Z a-z 0-9 - _.
    Base64url,
    /// These characters (2 to 256 distinct, no control characters).
    Custom(String),
}

impl Alphabet {
    /// The characters, or why they cannot be used.
    pub fn characters(&self) -> Result<Vec<char>, InvalidField> {
        let range = |r: std::ops::RangeInclusive<char>| r.collect::<Vec<char>>();
        Ok(match self {
            Alphabet::Alphanumeric => [range('A'..='Z'), range('a'..='z'), range('0'..='9')].concat(),
            Alphabet::Hex => [range('0'..='9'), range('a'..='f')].concat(),
            Alphabet::Base64url => [range('A'..='Z'), range('a'..='z'), range('0'..='9'), vec!['-', '_']].concat(),
            Alphabet::Custom(text) => {
                let mut chars: Vec<char> = text.chars().collect();
                chars.sort_unstable();
                chars.dedup();
                if chars.len() < 2 || chars.len() > 256 || chars.iter().any(|c| c.is_control()) {
                    return Err(InvalidField::new(
                        "payload.alphabet.custom",
                        "2 to 256 distinct characters, none a control character",
                    ));
                }
                chars
            }
        })
    }
}

/// Shortest and longest rotated value.
pub const ROTATE_LENGTH: std::ops::RangeInclusive<u32> = 16..=256;

fn default_rotate_length() -> u32 {
    32
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// The key of the secret's data that gets the new value; other keys are kept.
    #[schemars(length(min = 1, max = 256))]
    pub key: String,
    #[serde(default = "default_rotate_length")]
    #[schemars(range(min = 16, max = 256))]
    pub length: u32,
    #[serde(default)]
    pub alphabet: Alphabet,
    /// The value is secret material: `sealed` or `wrapped` return it; `clear`
    /// returns the new version only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

/// Most paths one batch may name (the contract may set a lower limit).
pub const MAX_BATCH_PATHS: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetSecretsBatch {
    /// KV v2 mount of every path; the contract's default mount when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<MountName>,
    /// The secrets to read (latest versions), at least one.
    #[schemars(length(min = 1, max = 256))]
    pub paths: Vec<SecretPath>,
    #[serde(default, skip_serializing_if = "Consistency::is_default")]
    pub consistency: Consistency,
    /// `clear` or `sealed` (a batch cannot be wrapped).
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
pub struct GetSecret {
    /// KV v2 mount; the contract's default mount when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mount_point")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// A specific version; the latest when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub version: Option<u64>,
    /// `fresh` bypasses the node's read cache.
    #[serde(default, skip_serializing_if = "Consistency::is_default")]
    pub consistency: Consistency,
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
pub struct SetSecret {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mount_point")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// Non-empty key/value data. Omitted when `sealed_data` carries it.
    #[serde(alias = "secret", default, skip_serializing_if = "SecretData::is_empty")]
    pub data: SecretData,
    /// `data`, sealed to the node's X25519 key so the request topic never
    /// carries it in clear (bound to this request: operation `set_secret`,
    /// `mount` as written, `target` the path). Exactly one of `data` and
    /// `sealed_data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed_data: Option<SealedInput>,
    /// Check-and-set: the version the write expects to replace; 0 = create only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cas: Option<u64>,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteSecret {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mount_point")]
    pub mount: Option<MountName>,
    pub path: SecretPath,
    /// Versions to delete; the latest when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versions: Option<Vec<u64>>,
    /// Destroy the versions permanently instead of soft-deleting them.
    #[serde(default)]
    pub destroy: bool,
    /// Delete the metadata and every version.
    #[serde(default)]
    pub all_versions: bool,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListSecrets {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mount_point")]
    pub mount: Option<MountName>,
    /// The folder; `""` (or omitted) for the mount's root.
    #[serde(default = "root_folder")]
    pub path: FolderPath,
    /// Vault namespace relative to the node's own (`app` is `team-a/app` for a
    /// node in `team-a`); the node's own when omitted. The access policy
    /// grants namespaces per requester.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<Namespace>,
}

fn root_folder() -> FolderPath {
    FolderPath::new("").unwrap_or_else(|_| unreachable!("the empty folder is valid"))
}
