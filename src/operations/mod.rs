//! Operations: where a typed request becomes a Vault call.
//!
//! Each operation is one file: [`Perform`] implemented on its request
//! payload says what it does in Vault ([`Work`]: the read cache and the
//! health figures use it), where it points ([`Target`]: what the access
//! policy checks and the audit trail records) and its Vault call. The
//! `operations!` list below generates the central matches from the
//! payload types; [`Dispatcher::handle`] runs the call inside the resilience
//! layers (breaker → retry → timeout), so no operation deals with timeouts,
//! retries or the breaker itself. (Transit's `encrypt`, `decrypt` and
//! `rewrap` share `transit.rs`.)
//!
//! Adding an operation: its payload and result in the models crate (a
//! `VaultRequest` variant, which also makes its `Operation`), one file here
//! implementing [`Perform`], its line in `operations!`, an entry in
//! `contract.yaml`'s `io_operations`, and a test. The compiler refuses a
//! variant missing from `operations!`; `tests/operations_declared.rs` a name
//! missing from the contract, the AsyncAPI document or the schemas.

mod delete_secret;
mod get_secret;
mod get_secrets_batch;
mod issue_credentials;
mod list_secrets;
mod lookup_lease;
mod lookup_token;
mod read_metadata;
mod renew_lease;
mod renew_token;
mod revoke_lease;
mod rotate_secret;
mod sealed_input;
mod set_secret;
mod transit;
mod undelete_versions;
mod write_metadata;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use onex_vault_models::{
    Consistency, DeleteSecret, ErrorCode, ErrorReason, GetSecret, GetSecretsBatch, IssueCredentials, ListSecrets,
    LookupLease, LookupToken, MountName, Operation, OperationResult, ReadMetadata, RenewLease, RenewToken, ReplyError,
    RevokeLease, RotateSecret, RuntimeIdentity, SetSecret, TransitDecrypt, TransitEncrypt, TransitRewrap,
    UndeleteVersions, VaultRequest, WriteMetadata,
};

pub use sealed_input::RequestBinding;

use crate::cache::ReadCache;
use crate::contract::{BatchLimits, Contract};
use crate::leases::LeaseKeeper;
use crate::resilience::{guarded_call, BackoffPolicy, CircuitBreaker, Guarded};
use crate::telemetry::Telemetry;
use crate::vault::{At, Vault, VaultError};

/// One operation, implemented on its request payload in its own file.
pub(crate) trait Perform {
    /// What the operation does in Vault.
    const WORK: Work;

    /// Where the request points (without its namespace, which
    /// [`Target::of`] adds): what the policy checks and the audit records.
    fn target(&self, default_mount: &MountName) -> Target;

    /// One attempt at the Vault call; the resilience layers around it retry.
    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError>;
}

/// The operations: each `VaultRequest` variant with its payload type. From
/// this one list come the dispatch, the kind of work of each [`Operation`]
/// and the target of each request.
macro_rules! operations {
    ($($variant:ident($payload:ty)),* $(,)?) => {
        /// One attempt at `request`: the operation file that serves it.
        async fn dispatch(cx: &Context<'_>, request: &VaultRequest) -> Result<OperationResult, VaultError> {
            match request {
                $(VaultRequest::$variant(payload) => payload.run(cx).await,)*
            }
        }

        /// What `operation` does in Vault.
        pub fn work_of(operation: Operation) -> Work {
            match operation {
                $(Operation::$variant => <$payload as Perform>::WORK,)*
            }
        }

        /// Where `request` points, without its namespace.
        fn target_of(request: &VaultRequest, default_mount: &MountName) -> Target {
            match request {
                $(VaultRequest::$variant(payload) => payload.target(default_mount),)*
            }
        }
    };
}

operations! {
    GetSecret(GetSecret),
    SetSecret(SetSecret),
    DeleteSecret(DeleteSecret),
    ListSecrets(ListSecrets),
    RenewLease(RenewLease),
    RenewToken(RenewToken),
    LookupLease(LookupLease),
    RevokeLease(RevokeLease),
    GetSecretsBatch(GetSecretsBatch),
    ReadMetadata(ReadMetadata),
    WriteMetadata(WriteMetadata),
    UndeleteVersions(UndeleteVersions),
    RotateSecret(RotateSecret),
    Encrypt(TransitEncrypt),
    Decrypt(TransitDecrypt),
    Rewrap(TransitRewrap),
    LookupToken(LookupToken),
    IssueCredentials(IssueCredentials),
}

/// What an operation does in Vault: the read cache forgets what a
/// [`Work::WritesSecret`] touched, and the health figures count each kind
/// (reads, writes, encryptions, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// Returns secret values from a KV mount.
    ReadsSecret,
    /// Changes a KV secret's data, versions or metadata.
    WritesSecret,
    /// Reads KV structure: a folder listing, a secret's metadata.
    ReadsKvMetadata,
    Encrypts,
    Decrypts,
    /// Decrypts and encrypts again inside Vault.
    Rewraps,
    /// Renews, describes or revokes a lease.
    Leases,
    RenewsToken,
    LooksUpToken,
    /// Reads a dynamic secrets endpoint, which mints credentials.
    IssuesCredentials,
}

impl Work {
    /// Work on a KV mount (reads, writes, listings, metadata).
    pub fn on_kv(self) -> bool {
        matches!(self, Work::ReadsSecret | Work::WritesSecret | Work::ReadsKvMetadata)
    }
}

/// What an operation needs to do its work.
pub struct Context<'a> {
    /// Vault in the request's namespace: the only way an operation calls it.
    pub vault: At<'a>,
    pub default_mount: &'a MountName,
    pub leases: &'a Arc<LeaseKeeper>,
    /// Set: a read leaves its secret in Vault behind a wrapping token of this
    /// lifetime (only `get_secret` reads so; see [`Dispatcher::handle`]).
    pub wrap: Option<Duration>,
}

impl Context<'_> {
    /// The request's mount, or the contract's default.
    pub fn mount<'m>(&'m self, mount: &'m Option<MountName>) -> &'m str {
        mount.as_ref().unwrap_or(self.default_mount).as_str()
    }
}

/// Runs requests against Vault through the resilience layers.
pub struct Dispatcher {
    vault: Arc<Vault>,
    default_mount: MountName,
    enabled: BTreeSet<Operation>,
    breaker: Arc<CircuitBreaker>,
    leases: Arc<LeaseKeeper>,
    cache: Option<ReadCache>,
    batch_limits: BatchLimits,
    backoff: BackoffPolicy,
    timeout: Duration,
    /// The node's runtime identity: its sealing key opens sealed input.
    identity: Option<Arc<RuntimeIdentity>>,
    /// Where issued credentials are counted.
    telemetry: Arc<Telemetry>,
}

impl Dispatcher {
    pub fn new(
        contract: &Contract,
        vault: Arc<Vault>,
        breaker: Arc<CircuitBreaker>,
        leases: Arc<LeaseKeeper>,
        telemetry: Arc<Telemetry>,
    ) -> Dispatcher {
        let retry = &contract.error_handling.retry_policy;
        Dispatcher {
            vault,
            default_mount: contract.vault.default_mount.clone(),
            enabled: contract.enabled_operations(),
            breaker,
            leases,
            cache: contract.vault.read_cache.enabled.then(|| {
                let settings = &contract.vault.read_cache;
                ReadCache::new(Duration::from_secs(settings.ttl_seconds), settings.max_entries, settings.max_bytes)
            }),
            batch_limits: contract.vault.batch.clone(),
            backoff: BackoffPolicy {
                max_attempts: retry.max_attempts,
                initial_delay: Duration::from_millis(retry.initial_delay_ms),
                max_delay: Duration::from_millis(retry.max_delay_ms),
                multiplier: retry.exponential_base,
                jitter: retry.jitter,
            },
            timeout: contract.request_timeout(),
            identity: contract.security.identity.clone(),
            telemetry,
        }
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn vault_handle(&self) -> Arc<Vault> {
        self.vault.clone()
    }

    pub fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// The read cache, when the contract enables it.
    pub fn cache(&self) -> Option<&ReadCache> {
        self.cache.as_ref()
    }

    /// Performs `request`; every failure comes back as the reply's error.
    /// With `wrap`, a secret-returning read is left in Vault behind a
    /// response-wrapping token of that lifetime (never cached). Sealed input
    /// opens only if it was sealed for this operation, mount and path and,
    /// when `bound` names them, this correlation id and requester.
    pub async fn handle(
        &self,
        request: &VaultRequest,
        bound: Option<&RequestBinding<'_>>,
        wrap: Option<Duration>,
    ) -> Result<OperationResult, ReplyError> {
        let operation = request.operation();
        if !self.enabled.contains(&operation) {
            return Err(ReplyError::new(
                ErrorCode::UnsupportedOperation,
                format!("operation {operation} is not enabled in this node's contract"),
            ));
        }
        let sealer = self.identity.as_deref().map(|identity| &identity.sealer);
        let opened = sealed_input::open(request, sealer, bound)?;
        let request = opened.as_ref();
        let namespace = self.namespace_of(request);
        let written = (work_of(operation) == Work::WritesSecret).then(|| target_of(request, &self.default_mount));
        let outcome = match (request, wrap) {
            (_, Some(ttl)) => self.wrapped(request, ttl).await,
            (VaultRequest::GetSecret(get), None) => self.read(get).await,
            (VaultRequest::GetSecretsBatch(batch), None) => self.read_batch(batch).await,
            _ => self.call(request, None).await,
        };
        if let (Some(cache), Some(Target { mount: Some(mount), paths, .. })) = (&self.cache, written) {
            // Even a failed write may have reached Vault, and a wrapped
            // rotation writes too: forget the path whatever the delivery.
            let namespace = namespace.as_deref().unwrap_or_default();
            for path in &paths {
                cache.invalidate(namespace, &mount, path);
            }
        }
        outcome
    }

    /// The namespace `request` is performed in, in full (`team-a/app`);
    /// `None`: the node's own.
    pub fn namespace_of(&self, request: &VaultRequest) -> Option<String> {
        request.namespace().map(|namespace| namespace.under(self.vault.namespace().unwrap_or_default()))
    }

    /// A secret-returning request whose result Vault keeps behind a
    /// single-use wrapping token of lifetime `ttl`: a read is wrapped by
    /// Vault as it answers; a result made here (a rotated value, a decrypted
    /// plaintext) is wrapped with `sys/wrapping/wrap`, in a second guarded
    /// call, so a failed wrap never repeats the operation.
    async fn wrapped(&self, request: &VaultRequest, ttl: Duration) -> Result<OperationResult, ReplyError> {
        if let VaultRequest::GetSecret(_) = request {
            return self.call(request, Some(ttl)).await;
        }
        let made = self.call(request, None).await?;
        let lease = match &made {
            OperationResult::IssueCredentials(issued) => issued.lease_id.clone(),
            _ => None,
        };
        let result = serde_json::to_value(made)
            .map_err(|_| ReplyError::new(ErrorCode::InternalError, "the result could not be serialized"));
        let vault = &self.vault.at(self.namespace_of(request));
        let wrapped = match &result {
            Ok(result) => guarded_call(&self.breaker, &self.backoff, self.timeout, move || async move {
                let wrap = vault.wrap_data(result, ttl).await?;
                Ok(get_secret::wrapped_result(wrap))
            })
            .await
            .map_err(|failure| self.reply_error(failure)),
            Err(error) => Err(error.clone()),
        };
        if let (Err(_), Some(lease_id)) = (&wrapped, lease) {
            // Credentials issued but never delivered: revoke them (best
            // effort) rather than leave them living, or kept alive, unseen.
            self.discard_lease(self.namespace_of(request), &lease_id).await;
        }
        wrapped
    }

    /// Revokes a lease nobody will receive and stops keeping it alive.
    async fn discard_lease(&self, namespace: Option<String>, lease_id: &str) {
        self.leases.forget(lease_id).await;
        if let Err(error) = self.vault.at(namespace).revoke_lease(lease_id).await {
            tracing::warn!(%error, "credentials issued for a wrapped reply that failed could not be revoked");
        }
    }

    /// A read, from the cache when allowed and fresh, else from Vault. The
    /// cache keys by namespace too: tenants never see each other's values.
    async fn read(&self, get: &GetSecret) -> Result<OperationResult, ReplyError> {
        let mount = get.mount.as_ref().unwrap_or(&self.default_mount).as_str();
        let path = get.path.as_str();
        let Some(cache) = &self.cache else { return self.call_get(get).await };
        let namespace = get.namespace.as_ref().map(|ns| ns.under(self.vault.namespace().unwrap_or_default()));
        let namespace = namespace.as_deref().unwrap_or_default();
        if get.consistency == Consistency::Cached {
            if let Some(hit) = cache.get(namespace, mount, path, get.version) {
                return Ok(OperationResult::GetSecret(hit));
            }
        }
        let outcome = self.call_get(get).await;
        if let Ok(OperationResult::GetSecret(result)) = &outcome {
            cache.insert(namespace, mount, path, get.version, result);
        }
        outcome
    }

    async fn call_get(&self, get: &GetSecret) -> Result<OperationResult, ReplyError> {
        self.call(&VaultRequest::GetSecret(get.clone()), None).await
    }

    /// One request through the resilience layers, with one new login and
    /// retry if the node's own token turns out to be dead.
    async fn call(&self, request: &VaultRequest, wrap: Option<Duration>) -> Result<OperationResult, ReplyError> {
        let cx = Context {
            vault: self.vault.at(self.namespace_of(request)),
            default_mount: &self.default_mount,
            leases: &self.leases,
            wrap,
        };
        let cx = &cx;
        let generation = self.vault.token_generation();
        let outcome = guarded_call(&self.breaker, &self.backoff, self.timeout, move || dispatch(cx, request)).await;
        let outcome = match outcome {
            // A 403 may be policy, or the node's own token expired or revoked:
            // only in the second case, log in again and try once more.
            Err(Guarded::Inner(VaultError::Status { status: 403, .. }))
                if self.vault.can_log_in_again() && self.vault.token_is_dead().await =>
            {
                tracing::warn!("the node's Vault token is no longer valid; logging in again");
                match self.vault.log_in_again(generation).await {
                    Ok(_) => {
                        guarded_call(&self.breaker, &self.backoff, self.timeout, move || dispatch(cx, request)).await
                    }
                    Err(error) => Err(Guarded::Inner(error)),
                }
            }
            other => other,
        };
        if let Ok(OperationResult::IssueCredentials(issued)) = &outcome {
            self.telemetry.record_credentials_issued(issue_credentials::is_certificate(&issued.data));
        }
        outcome.map_err(|failure| self.reply_error(failure))
    }

    fn reply_error(&self, failure: Guarded<VaultError>) -> ReplyError {
        match failure {
            Guarded::Inner(error) => error.reply_error(),
            Guarded::TimedOut { after } => ReplyError::new(
                ErrorCode::TimeoutError,
                format!(
                    "Vault did not answer within {} ms (up to {} attempts)",
                    after.as_millis(),
                    self.backoff.max_attempts
                ),
            ),
            Guarded::CircuitOpen { retry_after } => {
                ReplyError::new(ErrorCode::ServiceUnavailable, "circuit breaker open: Vault is failing, not calling it")
                    .with_reason(ErrorReason::CircuitOpen)
                    .with_retry_after_ms(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX))
            }
        }
    }
}

/// Where a request points: the mount and the paths (or lease id) it names.
/// The audit trail records it whole, the access policy checks every path,
/// logs use [`Target::masked`].
pub struct Target {
    /// The namespace the request names, relative to the node's; `None`: its own.
    pub namespace: Option<onex_vault_models::Namespace>,
    pub mount: Option<String>,
    /// Secret or folder paths; the lease id for lease operations; none for
    /// `renew_token`.
    pub paths: Vec<String>,
}

impl Target {
    pub fn of(request: &VaultRequest, default_mount: &MountName) -> Target {
        Target { namespace: request.namespace().cloned(), ..target_of(request, default_mount) }
    }

    /// A KV request: its mount (the contract's default when it names none)
    /// and its paths.
    pub fn kv<P: ToString>(
        mount: &Option<MountName>,
        default_mount: &MountName,
        paths: impl IntoIterator<Item = P>,
    ) -> Target {
        Target {
            namespace: None,
            mount: Some(mount.as_ref().unwrap_or(default_mount).to_string()),
            paths: paths.into_iter().map(|path| path.to_string()).collect(),
        }
    }

    /// A transit request: the transit mount, and the key name as its "path".
    pub fn transit(mount: &Option<MountName>, key: &str) -> Target {
        Target { namespace: None, mount: Some(transit::mount(mount).to_owned()), paths: vec![key.to_owned()] }
    }

    /// A lease operation: no mount, the lease id as its "path".
    pub fn lease(lease_id: &str) -> Target {
        Target { namespace: None, mount: None, paths: vec![lease_id.to_owned()] }
    }

    /// A request that names nothing, or could not be read, or the node's token.
    pub fn none() -> Target {
        Target { namespace: None, mount: None, paths: Vec::new() }
    }

    /// The paths as the audit trail records them: comma-separated.
    pub fn audit_path(&self) -> Option<String> {
        (!self.paths.is_empty()).then(|| self.paths.join(","))
    }

    /// Safe for logs: the mount and the first path segment, the rest masked
    /// (`secret:app/***/***`); a lease shows only its engine.
    pub fn masked(&self) -> String {
        let path = self.paths.first().map(String::as_str).unwrap_or_default();
        let masked = onex_vault_models::mask_path(path);
        let engine = path.split('/').next().unwrap_or_default();
        let more = if self.paths.len() > 1 { format!(" (+{} more)", self.paths.len() - 1) } else { String::new() };
        match (&self.mount, self.paths.is_empty()) {
            (Some(mount), _) => format!("{mount}:{masked}{more}"),
            (None, false) => format!("lease:{engine}/***"),
            (None, true) => "token:self".to_owned(),
        }
    }
}
