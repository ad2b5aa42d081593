//! The gate every decoded request passes before it may reach Vault, the
//! delivery of the secret values a reply carries, and the signing of replies.
//!
//! In the `strict` profile a request is admitted only when, in this order:
//! its record is a `ModelMessageEnvelope` that verifies exactly as
//! omnibase-infra's `ServiceEnvelopeValidator` verifies one (the contract's
//! realm, a signer listed in the access policy, the Blake3 hash of the inner
//! event envelope, the Ed25519 signature over that hash); the inner envelope
//! has its own `envelope_id` and `envelope_timestamp` (both covered by the
//! signature), the timestamp within the clock-skew window; the replay ledger
//! says no other record claimed that `envelope_id` first; the target is not
//! the node's own configuration (reserved mounts, the requester keys); a
//! grant of the signing runtime covers the operation, mount and every path;
//! and the delivery of any secret values is one the requester may have.
//! A failure up to the replay check is not answered at all (the sender is
//! not known: see `DenialReason::is_gateway`; omnibase-infra's gateway drops
//! such records too): its audit record is its one output. Any later failure
//! is one and the same `ONEX_CORE_025_PERMISSION_DENIED` for the requester.
//! The audit record and a (rate-limited) log line say which check failed.
//! Every reply is signed with the node's own runtime key ([`ReplySigner`]).
//!
//! The `dev` profile skips all of it, unwraps a signed envelope unchecked,
//! signs nothing and defaults to clear-text delivery.

mod policy;
mod replay;

pub use policy::{AccessPolicy, NotGranted, PathPattern};
pub use replay::{Position, Replay, ReplayLedger};

use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use onex_vault_models::{
    is_reserved_mount, Delivery, DenialReason, ErrorCode, GatewayRefusal, OperationResult, ReplyError, RequestEnvelope,
    RuntimeSigner, SealingPublicKey, SignedEnvelope, RESERVED_MOUNTS,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::bus::Outgoing;
use crate::contract::{Contract, KeyRef, RequesterPolicy, SecurityProfile, VaultKeySource};
use crate::decode::Provenance;
use crate::operations::Target;
use crate::vault::{Vault, VaultError};

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
    pub reason: DenialReason,
}

impl Denial {
    /// The one answer every denial gets: nothing that helps an attacker.
    pub fn reply_error(&self) -> ReplyError {
        ReplyError::new(ErrorCode::PermissionDenied, "request not authorised (the node's audit trail has the reason)")
    }
}

fn deny(reason: DenialReason) -> Denial {
    Denial { reason }
}

/// Why a signed envelope did not verify, as the audit trail names it
/// (upstream's `EnumValidationErrorCode`, in lower case).
fn gateway_denial(refusal: GatewayRefusal) -> Denial {
    deny(match refusal {
        GatewayRefusal::Malformed => DenialReason::MalformedSignedEnvelope,
        GatewayRefusal::EmitterNotInRealm => DenialReason::EmitterNotInRealm,
        GatewayRefusal::RealmMismatch => DenialReason::RealmMismatch,
        GatewayRefusal::UnknownSigner => DenialReason::UnknownSigner,
        GatewayRefusal::SignerIsNotRuntime => DenialReason::SignerIsNotRuntime,
        GatewayRefusal::HashMismatch => DenialReason::HashMismatch,
        GatewayRefusal::InvalidSignature => DenialReason::InvalidSignature,
    })
}

pub struct Gate {
    profile: SecurityProfile,
    realm: String,
    skew: TimeDelta,
    default_delivery: Delivery,
    wrap_ttl: Duration,
    policy: RwLock<Arc<AccessPolicy>>,
    /// The replay ledger (strict only).
    ledger: Option<ReplayLedger>,
    /// Signs every reply (strict only).
    reply_signer: Option<ReplySigner>,
    /// What the contract's transport leaves readable (warned about).
    insecure_transport: Vec<onex_vault_models::InvalidField>,
    /// Where the node's requester keys live in Vault (mount, path), if
    /// there: no request may touch it.
    key_source: Option<(String, String)>,
    /// Set while Vault's requester keys are dropped for staleness.
    keys_stale: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// The gate of `contract`, with `policy` (see [`load_policy`]) and, in the
    /// strict profile, the replay ledger.
    pub fn new(contract: &Contract, policy: AccessPolicy, ledger: Option<ReplayLedger>) -> anyhow::Result<Gate> {
        let security = &contract.security;
        let reply_signer = match (security.profile, &security.identity) {
            (SecurityProfile::Strict, Some(identity)) => Some(ReplySigner {
                signer: identity.signer(&security.realm).map_err(|e| anyhow::anyhow!("security.identity_file: {e}"))?,
                bus_id: security.bus_id.clone(),
            }),
            (SecurityProfile::Strict, None) => anyhow::bail!("security.identity_file: required in the strict profile"),
            (SecurityProfile::Dev, _) => None,
        };
        if security.profile == SecurityProfile::Strict && ledger.is_none() {
            anyhow::bail!("the strict profile needs the replay ledger");
        }
        Ok(Gate {
            profile: security.profile,
            realm: security.realm.clone(),
            skew: TimeDelta::seconds(i64::try_from(security.max_clock_skew_seconds).unwrap_or(i64::MAX / 1000)),
            default_delivery: security.default_delivery,
            wrap_ttl: Duration::from_secs(security.wrap_ttl_seconds),
            policy: RwLock::new(Arc::new(policy)),
            ledger,
            reply_signer,
            insecure_transport: contract.insecure_transport(),
            key_source: contract
                .access_policy
                .vault_keys
                .as_ref()
                .map(|source| (source.mount.clone(), source.path.trim_matches('/').to_owned())),
            keys_stale: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn profile(&self) -> SecurityProfile {
        self.profile
    }

    /// Signs replies, in the strict profile.
    pub fn reply_signer(&self) -> Option<&ReplySigner> {
        self.reply_signer.as_ref()
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
        warnings.extend(
            self.insecure_transport
                .iter()
                .map(|weakness| format!("insecure transport: {weakness}; secrets and tokens can be read on the wire")),
        );
        warnings
    }

    fn policy(&self) -> Arc<AccessPolicy> {
        self.policy.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Admits `request`, which came as `provenance` says in the record
    /// `value` at `position`, or says why not.
    pub async fn admit(
        &self,
        position: &Position,
        value: &[u8],
        provenance: &Provenance,
        request: &RequestEnvelope,
        target: &Target,
    ) -> Result<Delivered, Denial> {
        let policy = self.policy();
        // Who is asking: the signing runtime; in dev, whoever the envelope says.
        let name = provenance.signed.as_ref().map(|s| s.runtime_id.as_str()).or(request.source_tool.as_deref());
        let requester = name.and_then(|name| policy.requester(name));
        if self.profile == SecurityProfile::Strict {
            // First who is asking, and that this record is new: until then
            // the request is anyone's (see `DenialReason::is_gateway`).
            let signed = provenance.signed.as_deref().ok_or(deny(DenialReason::Unsigned))?;
            self.verify(&policy, value, signed)?;
            let requester = requester.ok_or(deny(DenialReason::UnknownSigner))?;

            // Upstream fills a missing id or timestamp with a new one; a
            // signed request without them could be replayed as new.
            if !provenance.stamped {
                return Err(deny(DenialReason::EnvelopeIdOrTimestampMissing));
            }
            let now = Utc::now();
            let stamped = request.envelope_timestamp;
            if stamped < now - self.skew || stamped > now + self.skew {
                return Err(deny(DenialReason::TimestampOutsideWindow));
            }
            let ledger = self.ledger.as_ref().ok_or(deny(DenialReason::ReplayLedgerUnavailable))?;
            match ledger.claim(request.envelope_id, position, stamped + self.skew).await {
                Replay::Fresh => {}
                Replay::Replayed => return Err(deny(DenialReason::Replayed)),
                Replay::Full => return Err(deny(DenialReason::ReplayCacheFull)),
                Replay::Unavailable => return Err(deny(DenialReason::ReplayLedgerUnavailable)),
            }

            // Then what it may do. Whatever the grants: never the node's own
            // configuration.
            if self.is_reserved(target) {
                return Err(deny(DenialReason::ReservedPath));
            }
            let operation = request.payload.operation();
            requester
                .allows(operation, target.namespace.as_ref(), target.mount.as_deref(), &target.paths)
                .map_err(|n| deny(n.reason()))?;
        } else if self.is_reserved(target) {
            return Err(deny(DenialReason::ReservedPath));
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
            Delivery::Clear => Err(deny(DenialReason::ClearDeliveryNotAllowed)),
            Delivery::Sealed => match requester.and_then(|r| r.sealing_key.clone()) {
                Some(key) => Ok(Delivered::Sealed(key)),
                None => Err(deny(DenialReason::NoSealingKey)),
            },
            Delivery::Wrapped
                if self.profile == SecurityProfile::Dev || requester.is_some_and(|r| r.wrapped_delivery) =>
            {
                Ok(Delivered::Wrapped(self.wrap_ttl))
            }
            Delivery::Wrapped => Err(deny(DenialReason::WrappedDeliveryNotAllowed)),
        }
    }

    /// Whether `target` reaches what no request may: a reserved mount, the
    /// node's requester keys (the path and anything under it), or a lease
    /// of Vault's own (`auth/…`, `sys/…`: tokens, among them the node's).
    fn is_reserved(&self, target: &Target) -> bool {
        match &target.mount {
            // `auth/token` is under `auth`: judged by the first segment.
            Some(mount) if is_reserved_mount(mount) => true,
            // The keys live in the node's own namespace: a child's same path is another secret.
            Some(mount) => self.key_source.as_ref().is_some_and(|(source_mount, source_path)| {
                target.namespace.is_none()
                    && mount == source_mount
                    && target.paths.iter().any(|path| {
                        let path = path.trim_matches('/');
                        path == source_path || path.starts_with(&format!("{source_path}/"))
                    })
            }),
            None => target
                .paths
                .iter()
                .any(|lease| RESERVED_MOUNTS.iter().any(|reserved| lease.starts_with(&format!("{reserved}/")))),
        }
    }

    /// Who sent a record the node refused before the gate saw it (see
    /// `decode`): in the strict profile it must be a signed envelope that
    /// verifies, from a runtime the access policy lists, to be answered at
    /// all; the dev profile answers everyone.
    pub fn authenticate(&self, value: &[u8], signed: Option<&SignedEnvelope>) -> Result<(), Denial> {
        if self.profile == SecurityProfile::Dev {
            return Ok(());
        }
        let policy = self.policy();
        let signed = signed.ok_or(deny(DenialReason::Unsigned))?;
        self.verify(&policy, value, signed)?;
        policy.requester(&signed.runtime_id).map(|_| ()).ok_or(deny(DenialReason::UnknownSigner))
    }

    /// `ServiceEnvelopeValidator.validate_envelope` with `reject_unsigned`,
    /// the payload hashed from the record's own text (as Python reads it:
    /// serde_json's float parsing is not exact enough to re-hash from).
    fn verify(&self, policy: &AccessPolicy, value: &[u8], signed: &SignedEnvelope) -> Result<(), Denial> {
        let record = std::str::from_utf8(value).map_err(|_| deny(DenialReason::MalformedSignedEnvelope))?;
        let keys_of =
            |signer: &str| policy.requester(signer).map(|r| r.signing_keys().cloned().collect()).unwrap_or_default();
        signed.verify_received(record, &self.realm, keys_of).map_err(gateway_denial)
    }

    /// A refreshed policy (see [`refresh_policy`]); `stale` when it holds
    /// only the contract's keys because Vault's could not be refreshed.
    pub fn use_policy(&self, policy: AccessPolicy, stale: bool) {
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        self.keys_stale.store(stale, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the requester keys kept in Vault were dropped (see
    /// [`refresh_policy`]): `/ready` says so.
    pub fn keys_stale(&self) -> bool {
        self.keys_stale.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requesters known now.
    pub fn requesters(&self) -> usize {
        self.policy().len()
    }

    /// Signed-request ids the replay ledger remembers now.
    pub fn replay_ids_remembered(&self) -> usize {
        self.ledger.as_ref().map_or(0, ReplayLedger::remembered)
    }
}

/// The node's runtime signer: wraps each reply in a `ModelMessageEnvelope`
/// signed with the node's key, as an ONEX runtime's gateway signs what it
/// publishes (`ServiceEnvelopeSigner.sign_dict`), so requesters can tell the
/// node's replies from anyone else's.
pub struct ReplySigner {
    signer: RuntimeSigner,
    bus_id: String,
}

impl ReplySigner {
    /// `message` with its body wrapped and signed; `trace_id` is the reply's
    /// `correlation_id` (an ONEX runtime's gateway restores the correlation
    /// from it), `causality_id` the request's `envelope_id`.
    pub fn sign(&self, message: Outgoing) -> Outgoing {
        message.map_body(|envelope| {
            let uuid = |key: &str| envelope.get(key).and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok());
            let trace_id = uuid("correlation_id").unwrap_or_else(Uuid::new_v4);
            let causality_id = uuid("parent_envelope_id");
            serde_json::to_value(self.signer.sign(envelope, &self.bus_id, trace_id, causality_id)).ok()
        })
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

/// Reads `{runtime_id: {signing_keys: [{id, public_key}], sealing_key: {id, public_key}}}`
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
    // Raw: one typed read of the key list (data and all); vaultrs would add nothing here.
    let kv: Kv = vault.call(reqwest::Method::GET, &path, None).await?;
    Ok(kv
        .data
        .into_iter()
        .map(|(runtime_id, keys)| RequesterPolicy {
            runtime_id,
            signing_keys: keys.signing_keys,
            sealing_key: keys.sealing_key,
            clear_delivery: false,
            wrapped_delivery: false,
            namespaces: None,
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
    let mut last_refresh = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = ticks.tick() => match load_policy(&node.contract, node.dispatcher.vault()).await {
                Ok(policy) => {
                    node.gate.use_policy(policy, false);
                    last_refresh = std::time::Instant::now();
                    tracing::debug!("requester keys refreshed from Vault");
                }
                Err(error) if last_refresh.elapsed() <= source.max_stale() => {
                    tracing::warn!(%error, "cannot refresh requester keys from Vault; keeping the current ones for now")
                }
                Err(error) => {
                    // Fail closed: a key revoked in Vault must not stay trusted.
                    let contract_only =
                        AccessPolicy::from_settings(&node.contract.access_policy, node.contract.vault.default_mount.as_str());
                    node.gate.use_policy(contract_only, true);
                    tracing::error!(
                        %error,
                        stale_for = ?last_refresh.elapsed(),
                        "requester keys from Vault not refreshed for longer than max_stale_seconds: dropped; only \
                         the contract's own keys are trusted until a refresh succeeds"
                    );
                }
            },
        }
    }
}
