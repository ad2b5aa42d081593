//! The gate every decoded request passes before it may reach Vault, and the
//! delivery of the secret values a reply carries.
//!
//! In the `strict` profile a request is admitted only when, in this order:
//! its record carries a valid Ed25519 signature (header `onex-signature`)
//! by a key registered for the envelope's `source_tool`; its
//! `envelope_timestamp` is within the clock-skew window; its `envelope_id`
//! was not seen before in another record; a grant of the access policy
//! covers its operation, mount and every path; and the delivery of any
//! secret values is one the requester may have. Any failure is one and the
//! same `ONEX_CORE_025_PERMISSION_DENIED` for the requester; the audit record and a log
//! line say which check failed.
//!
//! The `dev` profile skips all of it and defaults to clear-text delivery.

mod policy;
mod replay;

pub use policy::{AccessPolicy, NotGranted, PathPattern};
pub use replay::{Position, Replay, ReplayGuard};

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use onex_vault_models::{
    Delivery, ErrorCode, OperationResult, ReplyError, RequestEnvelope, RequestSignature, SealingPublicKey,
};
use serde::Deserialize;

use crate::contract::{Contract, KeyRef, RequesterPolicy, SecurityProfile, VaultKeySource};
use crate::decode::Stamped;
use crate::operations::Target;
use crate::vault::{Vault, VaultError};

/// What the gate knows of the record a request came in.
pub struct RecordFacts<'a> {
    pub topic: &'a str,
    pub position: Position,
    pub value: &'a [u8],
    /// The `onex-signature` header, if any.
    pub signature: Option<&'a [u8]>,
    /// Whether the record carried its own `envelope_id` and timestamp.
    pub stamped: Stamped,
}

/// How the secret values of an admitted request's reply leave the node.
#[derive(Debug, Clone)]
pub enum Delivered {
    /// The operation returns no secret values.
    NoSecrets,
    Clear,
    Sealed(SealingPublicKey),
    /// Vault wraps the result in a token living this long.
    Wrapped(Duration),
}

/// A refused request; `reason` is for the audit trail and logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    pub reason: &'static str,
}

impl Denial {
    /// The one answer every denial gets: nothing that helps an attacker.
    pub fn reply_error(&self) -> ReplyError {
        ReplyError::new(ErrorCode::PermissionDenied, "request not authorised (the node's audit trail has the reason)")
    }
}

fn deny(reason: &'static str) -> Denial {
    Denial { reason }
}

pub struct Gate {
    profile: SecurityProfile,
    skew: TimeDelta,
    default_delivery: Delivery,
    wrap_ttl: Duration,
    policy: RwLock<Arc<AccessPolicy>>,
    replay: Mutex<ReplayGuard>,
}

impl Gate {
    /// The gate of `contract`, with `policy` (see [`load_policy`]).
    pub fn new(contract: &Contract, policy: AccessPolicy) -> Gate {
        let security = &contract.security;
        Gate {
            profile: security.profile,
            skew: TimeDelta::seconds(i64::try_from(security.max_clock_skew_seconds).unwrap_or(i64::MAX / 1000)),
            default_delivery: security.default_delivery,
            wrap_ttl: Duration::from_secs(security.wrap_ttl_seconds),
            policy: RwLock::new(Arc::new(policy)),
            replay: Mutex::new(ReplayGuard::new(security.replay_cache_max_entries)),
        }
    }

    pub fn profile(&self) -> SecurityProfile {
        self.profile
    }

    /// What an operator must know about the node's security settings: said
    /// at start and in every health event.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match self.profile {
            SecurityProfile::Dev => warnings.push(
                "security profile dev: requests are NOT authenticated, the access policy is NOT enforced and \
                 secret values may be sent in clear text; never run it beside real secrets"
                    .to_owned(),
            ),
            SecurityProfile::Strict if self.policy().is_empty() => warnings.push(
                "security profile strict with no requesters in access_policy: every request is denied".to_owned(),
            ),
            SecurityProfile::Strict => {}
        }
        warnings
    }

    fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admits `request` from `record`, or says why not.
    pub fn admit(&self, record: &RecordFacts, request: &RequestEnvelope, target: &Target) -> Result<Delivered, Denial> {
        let policy = self.policy();
        let requester = request.source_tool.as_deref().and_then(|name| policy.requester(name));
        if self.profile == SecurityProfile::Strict {
            let signature = RequestSignature::parse(record.signature.ok_or(deny("signature_missing"))?)
                .map_err(|_| deny("signature_malformed"))?;
            let requester = requester.ok_or(deny("unknown_requester"))?;
            let key = requester.signing_key(&signature.key_id).ok_or(deny("unknown_key"))?;
            signature.verify(key, record.topic, record.value).map_err(|_| deny("bad_signature"))?;

            // Upstream fills a missing id or timestamp with a new one; a
            // signed record without them could be replayed as new.
            if record.stamped != Stamped(true) {
                return Err(deny("envelope_id_or_timestamp_missing"));
            }

            let now = Utc::now();
            let stamped = request.envelope_timestamp;
            if stamped < now - self.skew || stamped > now + self.skew {
                return Err(deny("timestamp_outside_window"));
            }
            let mut replay = self.replay.lock().unwrap_or_else(|p| p.into_inner());
            match replay.check(request.envelope_id, record.position, stamped + self.skew, now) {
                Replay::Fresh => {}
                Replay::Replayed => return Err(deny("replayed")),
                Replay::Full => return Err(deny("replay_cache_full")),
            }
            drop(replay);

            let operation = request.payload.operation();
            requester.allows(operation, target.mount.as_deref(), &target.paths).map_err(|n| deny(n.reason()))?;
        }
        let Some(asked) = request.payload.delivery() else { return Ok(Delivered::NoSecrets) };
        let delivery = asked.unwrap_or(match self.profile {
            SecurityProfile::Strict => self.default_delivery,
            SecurityProfile::Dev => Delivery::Clear,
        });
        match delivery {
            Delivery::Clear if self.profile == SecurityProfile::Dev || requester.is_some_and(|r| r.clear_delivery) => {
                Ok(Delivered::Clear)
            }
            Delivery::Clear => Err(deny("clear_delivery_not_allowed")),
            Delivery::Sealed => match requester.and_then(|r| r.sealing_key.clone()) {
                Some(key) => Ok(Delivered::Sealed(key)),
                None => Err(deny("no_sealing_key")),
            },
            Delivery::Wrapped => Ok(Delivered::Wrapped(self.wrap_ttl)),
        }
    }

    /// A refreshed policy (see [`refresh_policy`]).
    pub fn use_policy(&self, policy: AccessPolicy) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
    }

    /// Requesters known now.
    pub fn requesters(&self) -> usize {
        self.policy().len()
    }
}

impl Delivered {
    /// The result as the reply carries it: sealed when it must be.
    pub fn deliver(&self, correlation_id: uuid::Uuid, result: OperationResult) -> Result<OperationResult, ReplyError> {
        match (self, result) {
            (Delivered::Sealed(key), result) => {
                key.seal(correlation_id, &result).map(OperationResult::Sealed).map_err(|_| {
                    ReplyError::new(ErrorCode::InternalError, "the result could not be sealed to the requester's key")
                })
            }
            // A rotated value never travels in clear: the new version only.
            (Delivered::Clear, OperationResult::RotateSecret(mut rotated)) => {
                rotated.value = None;
                Ok(OperationResult::RotateSecret(rotated))
            }
            (_, result) => Ok(result),
        }
    }

    /// How long Vault should keep a wrapped result, when it is wrapped.
    pub fn wrap_ttl(&self) -> Option<Duration> {
        match self {
            Delivered::Wrapped(ttl) => Some(*ttl),
            _ => None,
        }
    }
}

/// The access policy of `contract`, with the keys kept in Vault added when
/// the contract names a source. Names in Vault that the contract does not
/// know get no access (grants live in the contract only) and are logged.
pub async fn load_policy(contract: &Contract, vault: &Vault) -> Result<AccessPolicy, VaultError> {
    let mut policy = AccessPolicy::from_settings(&contract.access_policy, contract.vault.default_mount.as_str());
    if let Some(source) = &contract.access_policy.vault_keys {
        let extra = read_vault_keys(vault, source).await?;
        let unknown = policy.add_keys(&extra);
        if !unknown.is_empty() {
            tracing::warn!(?unknown, "requester keys in Vault for requesters the contract does not name: ignored");
        }
    }
    Ok(policy)
}

/// Reads `{requester: {signing_keys: [{id, public_key}], sealing_key: {id, public_key}}}`
/// from the KV v2 secret `source`.
async fn read_vault_keys(vault: &Vault, source: &VaultKeySource) -> Result<Vec<RequesterPolicy>, VaultError> {
    #[derive(Deserialize)]
    struct Kv {
        data: std::collections::BTreeMap<String, Keys>,
    }
    #[derive(Deserialize)]
    struct Keys {
        #[serde(default)]
        signing_keys: Vec<KeyRef>,
        #[serde(default)]
        sealing_key: Option<KeyRef>,
    }
    let path = format!("{}/data/{}", source.mount, source.path.trim_matches('/'));
    let kv: Kv = vault.call(reqwest::Method::GET, &path, None).await?;
    Ok(kv
        .data
        .into_iter()
        .map(|(name, keys)| RequesterPolicy {
            name,
            signing_keys: keys.signing_keys,
            sealing_key: keys.sealing_key,
            clear_delivery: false,
            grants: Vec::new(),
        })
        .collect())
}

/// Re-reads the keys kept in Vault every `refresh_seconds` until `stop`;
/// a failed read keeps the keys the node has.
pub async fn refresh_policy(node: Arc<crate::runtime::Node>, stop: tokio_util::sync::CancellationToken) {
    let Some(source) = &node.contract.access_policy.vault_keys else { return };
    let mut ticks = tokio::time::interval(Duration::from_secs(source.refresh_seconds));
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => match load_policy(&node.contract, node.dispatcher.vault()).await {
                Ok(policy) => {
                    node.gate.use_policy(policy);
                    tracing::debug!("requester keys refreshed from Vault");
                }
                Err(error) => tracing::warn!(%error, "cannot refresh requester keys from Vault; keeping the current ones"),
            },
        }
    }
}
