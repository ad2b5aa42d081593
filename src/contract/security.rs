//! The contract's `security` and `access_policy` sections: who may ask the
//! node for what, and how secret values leave it. `security::Gate` enforces
//! them; here they are only read and checked.

use std::collections::BTreeSet;

use onex_vault_models::{
    check_key_id, Delivery, InvalidField, Operation, RuntimeIdentity, RuntimeKey, SealingPublicKey,
};
use serde::{Deserialize, Serialize};

use super::{require, scalar_string};

/// `strict` admits only requests signed by a trusted ONEX runtime (a
/// `ModelMessageEnvelope`), enforces the access policy, signs its replies and
/// never sends secret values in clear unless a requester is allowed to have
/// them so; `dev` does none of that and is for a developer's machine only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProfile {
    Strict,
    Dev,
}

impl SecurityProfile {
    /// The wire name, as the contract and the health event spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProfile::Strict => "strict",
            SecurityProfile::Dev => "dev",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Security {
    pub profile: SecurityProfile,
    /// The ONEX realm (`ModelMessageEnvelope.realm`) a signed request must
    /// name; the node's signed replies carry it too. Required in `strict`.
    #[serde(deserialize_with = "super::scalar_string")]
    pub realm: String,
    /// The node's own runtime identity file (`onex-vault-adapter keygen`
    /// writes it): its `runtime_id` and Ed25519 key sign the node's replies.
    /// Required in `strict`.
    #[serde(deserialize_with = "super::scalar_string")]
    pub identity_file: String,
    /// The identity read from `identity_file`.
    #[serde(skip)]
    pub identity: Option<std::sync::Arc<RuntimeIdentity>>,
    /// `bus_id` of the node's signed replies (an ONEX runtime's default).
    #[serde(deserialize_with = "super::scalar_string")]
    pub bus_id: String,
    /// The strict profile refuses to start with Vault over `http://`,
    /// Kafka without TLS, or librdkafka properties that switch certificate
    /// checks off, unless this says so (then it warns at start and in every
    /// health event). For test and development stacks only.
    pub allow_insecure_transport: bool,
    /// A request's `envelope_timestamp` may be this far from the node's clock.
    pub max_clock_skew_seconds: u64,
    /// Envelope ids remembered to refuse replays (each until its timestamp
    /// leaves the skew window). When full of live ids, new requests are
    /// refused: size it to at least (peak requests per second of the whole
    /// group) × 2 × max_clock_skew_seconds.
    pub replay_cache_max_entries: usize,
    /// Delivery of secret values when a request does not ask (strict only;
    /// the dev profile defaults to clear).
    pub default_delivery: Delivery,
    /// Lifetime of the wrapping token of a `delivery: wrapped` reply.
    pub wrap_ttl_seconds: u64,
}

impl Default for Security {
    fn default() -> Self {
        Security {
            profile: SecurityProfile::Strict,
            realm: String::new(),
            identity_file: String::new(),
            identity: None,
            bus_id: "default".to_owned(),
            allow_insecure_transport: false,
            max_clock_skew_seconds: 120,
            replay_cache_max_entries: 500_000,
            default_delivery: Delivery::Sealed,
            wrap_ttl_seconds: 120,
        }
    }
}

/// Requesters, their keys and what they may do; everything else is denied.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicySettings {
    #[serde(default)]
    pub requesters: Vec<RequesterPolicy>,
    /// A YAML file holding more requesters (a list, same shape), so the
    /// policy can be mounted apart from the contract. Empty for none.
    #[serde(default, deserialize_with = "scalar_string")]
    pub requesters_file: String,
    /// Requester keys kept in Vault, read at start and every
    /// `refresh_seconds` (rotation without a restart).
    #[serde(default)]
    pub vault_keys: Option<VaultKeySource>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequesterPolicy {
    /// The signing runtime's `runtime_id` (`signature.signer` of its
    /// `ModelMessageEnvelope`s).
    pub runtime_id: String,
    /// Ed25519 public keys its envelopes may be signed with (several while a
    /// key is being rotated).
    #[serde(default)]
    pub signing_keys: Vec<KeyRef>,
    /// X25519 public key its sealed replies are sealed to.
    #[serde(default)]
    pub sealing_key: Option<KeyRef>,
    /// Whether it may receive secret values in clear text.
    #[serde(default)]
    pub clear_delivery: bool,
    /// Whether it may receive them wrapped (a Vault wrapping token in the
    /// reply: whoever reads the reply topic first can unwrap it).
    #[serde(default)]
    pub wrapped_delivery: bool,
    /// Vault namespaces its requests may name, as patterns relative to the
    /// node's namespace (`app`, `billing/*`, `tenants/**`); `""` is the
    /// node's own. Omitted: the node's own only. Given: exactly these (list
    /// `""` too for the node's own). Its grants apply in each of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// A public key, inline (base64 of 32 bytes) or in a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    pub id: String,
    #[serde(default, deserialize_with = "scalar_string")]
    pub public_key: String,
    #[serde(default, deserialize_with = "scalar_string")]
    pub public_key_file: String,
}

/// Operations allowed on paths of some mounts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub operations: Vec<Operation>,
    /// KV mounts the paths are in (`*`: any); the default mount when omitted.
    #[serde(default)]
    pub mounts: Vec<String>,
    /// Path patterns: `*` matches within one segment, a `**` segment any
    /// number of segments. For lease operations they match the lease id.
    /// Not needed for `renew_token`.
    #[serde(default)]
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultKeySource {
    pub mount: String,
    pub path: String,
    pub refresh_seconds: u64,
    /// How long keys read from Vault stay trusted while refreshes fail
    /// (a revoked key must not live forever); then only the contract's own
    /// keys are, and `/ready` says why. Default: 3 × `refresh_seconds`.
    #[serde(default)]
    pub max_stale_seconds: Option<u64>,
}

impl VaultKeySource {
    pub fn max_stale(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.max_stale_seconds.unwrap_or(self.refresh_seconds.saturating_mul(3)))
    }
}

impl AccessPolicySettings {
    /// Reads `requesters_file` and every `public_key_file` into the policy.
    pub(super) fn read_files(&mut self) -> Result<(), InvalidField> {
        if !self.requesters_file.is_empty() {
            let file = &self.requesters_file;
            let text = std::fs::read_to_string(file).map_err(|e| {
                InvalidField::new("access_policy.requesters_file", format!("cannot read {file}: {}", e.kind()))
            })?;
            let more: Vec<RequesterPolicy> = serde_yaml::from_str(&text).map_err(|e| {
                InvalidField::new("access_policy.requesters_file", format!("{file} is not a list of requesters: {e}"))
            })?;
            self.requesters.extend(more);
        }
        for (i, requester) in self.requesters.iter_mut().enumerate() {
            let keys = requester
                .signing_keys
                .iter_mut()
                .enumerate()
                .map(|(k, key)| (format!("access_policy.requesters[{i}].signing_keys[{k}]"), key))
                .chain(
                    requester
                        .sealing_key
                        .iter_mut()
                        .map(|key| (format!("access_policy.requesters[{i}].sealing_key"), key)),
                );
            for (field, key) in keys {
                if key.public_key.is_empty() && !key.public_key_file.is_empty() {
                    let file = &key.public_key_file;
                    key.public_key = std::fs::read_to_string(file)
                        .map_err(|e| {
                            InvalidField::new(
                                format!("{field}.public_key_file"),
                                format!("cannot read {file}: {}", e.kind()),
                            )
                        })?
                        .trim()
                        .to_owned();
                }
            }
        }
        Ok(())
    }

    /// Rules the types do not express, as `field.path: problem` lines.
    pub(super) fn problems(&self, p: &mut Vec<InvalidField>) {
        let mut names = BTreeSet::new();
        for (i, requester) in self.requesters.iter().enumerate() {
            let at = format!("access_policy.requesters[{i}]");
            require(p, !requester.runtime_id.trim().is_empty(), format!("{at}.runtime_id"), "must not be empty");
            if !names.insert(requester.runtime_id.as_str()) {
                p.push(InvalidField::new(
                    format!("{at}.runtime_id"),
                    format!("{:?} is listed twice", requester.runtime_id),
                ));
            }
            let mut ids = BTreeSet::new();
            for (k, key) in requester.signing_keys.iter().enumerate() {
                let field = format!("{at}.signing_keys[{k}]");
                key_problems(p, &field, key, |k| RuntimeKey::from_base64(k).is_ok());
                if !ids.insert(key.id.as_str()) {
                    p.push(InvalidField::new(format!("{field}.id"), format!("{:?} is listed twice", key.id)));
                }
            }
            if let Some(key) = &requester.sealing_key {
                key_problems(p, &format!("{at}.sealing_key"), key, |k| SealingPublicKey::from_base64("k", k).is_ok());
            }
            for pattern in requester.namespaces.iter().flatten() {
                if let Err(problem) = namespace_pattern_problem(pattern) {
                    p.push(InvalidField::new(format!("{at}.namespaces"), format!("{pattern:?} {problem}")));
                }
            }
            for (g, grant) in requester.grants.iter().enumerate() {
                let field = format!("{at}.grants[{g}]");
                require(p, !grant.operations.is_empty(), format!("{field}.operations"), "must list at least one");
                let needs_paths = grant.operations.iter().any(|&op| op != Operation::RenewToken);
                require(
                    p,
                    !needs_paths || !grant.paths.is_empty(),
                    format!("{field}.paths"),
                    "must list at least one pattern (e.g. \"app/*\")",
                );
                for pattern in &grant.paths {
                    if let Err(problem) = crate::security::PathPattern::parse(pattern) {
                        p.push(InvalidField::new(format!("{field}.paths"), format!("{pattern:?} {problem}")));
                    }
                }
            }
        }
        if let Some(source) = &self.vault_keys {
            require(p, !source.path.trim().is_empty(), "access_policy.vault_keys.path", "must not be empty");
            require(p, source.refresh_seconds >= 1, "access_policy.vault_keys.refresh_seconds", "must be ≥ 1");
        }
    }
}

/// Why a `namespaces` pattern cannot be used: it must read as a namespace
/// relative to the node's (`""` for its own), `*` and `**` allowed as in paths.
fn namespace_pattern_problem(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Ok(());
    }
    if pattern.ends_with('/') {
        return Err("must not end with '/'".to_owned());
    }
    crate::security::PathPattern::parse(pattern).map_err(str::to_owned)?;
    for segment in pattern.split('/') {
        let name = segment.replace('*', "");
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err("may hold only A-Z a-z 0-9 _ - * and '/' between segments".to_owned());
        }
        if onex_vault_models::RESERVED_NAMESPACE_NAMES.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
            return Err(format!("names the reserved namespace {name:?}"));
        }
    }
    Ok(())
}

fn key_problems(p: &mut Vec<InvalidField>, field: &str, key: &KeyRef, valid: impl Fn(&str) -> bool) {
    require(p, check_key_id(&key.id).is_ok(), format!("{field}.id"), "must be 1 to 64 of A-Z a-z 0-9 . _ -");
    if key.public_key.is_empty() {
        p.push(InvalidField::new(field, "needs public_key or public_key_file"));
    } else if !valid(&key.public_key) {
        p.push(InvalidField::new(format!("{field}.public_key"), "not a usable 32-byte Ed25519 key in base64"));
    }
}

impl Security {
    /// Reads `identity_file` into `identity`.
    pub(super) fn read_files(&mut self) -> Result<(), InvalidField> {
        if self.identity_file.is_empty() {
            return Ok(());
        }
        let file = &self.identity_file;
        let text = std::fs::read_to_string(file)
            .map_err(|e| InvalidField::new("security.identity_file", format!("cannot read {file}: {}", e.kind())))?;
        let identity = RuntimeIdentity::from_json(&text)
            .map_err(|e| InvalidField::new("security.identity_file", format!("{file}: {e}")))?;
        self.identity = Some(std::sync::Arc::new(identity));
        Ok(())
    }

    pub(super) fn problems(&self, p: &mut Vec<InvalidField>) {
        if self.profile == SecurityProfile::Strict {
            require(
                p,
                !self.realm.trim().is_empty(),
                "security.realm",
                "required in the strict profile (the ONEX realm signed requests name; env ONEX_REALM)",
            );
            require(
                p,
                self.identity.is_some(),
                "security.identity_file",
                "required in the strict profile (the node's runtime identity, written by `onex-vault-adapter \
                 keygen`; env ONEX_NODE_IDENTITY_FILE)",
            );
        }
        require(p, !self.bus_id.trim().is_empty(), "security.bus_id", "must not be empty");
        require(p, self.max_clock_skew_seconds >= 1, "security.max_clock_skew_seconds", "must be ≥ 1");
        require(p, self.replay_cache_max_entries >= 1, "security.replay_cache_max_entries", "must be ≥ 1");
        require(p, self.wrap_ttl_seconds >= 1, "security.wrap_ttl_seconds", "must be ≥ 1");
    }
}
