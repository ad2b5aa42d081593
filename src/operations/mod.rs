//! Operations: where a typed request becomes a Vault call.
//!
//! Each operation has its own file taking its typed request and returning its
//! typed result. [`Dispatcher::handle`] picks the file by the request's variant
//! and runs it inside the resilience layers (breaker → retry → timeout), so no
//! operation deals with timeouts, retries or the breaker itself.
//!
//! Adding an operation: a payload in the models crate, a file here, an arm in
//! `dispatch`, an entry in `contract.yaml`'s `io_operations`, and a test.

mod delete_secret;
mod get_secret;
mod list_secrets;
mod lookup_lease;
mod renew_lease;
mod renew_token;
mod revoke_lease;
mod set_secret;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use onex_vault_models::{ErrorCode, MountName, Operation, OperationResult, ReplyError, VaultRequest};

use crate::contract::Contract;
use crate::leases::LeaseKeeper;
use crate::resilience::{guarded_call, BackoffPolicy, CircuitBreaker, Guarded};
use crate::vault::{Vault, VaultError};

/// What an operation needs to do its work.
pub struct Context<'a> {
    pub vault: &'a Vault,
    pub default_mount: &'a MountName,
    pub leases: &'a Arc<LeaseKeeper>,
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
    backoff: BackoffPolicy,
    timeout: Duration,
}

impl Dispatcher {
    pub fn new(
        contract: &Contract,
        vault: Arc<Vault>,
        breaker: Arc<CircuitBreaker>,
        leases: Arc<LeaseKeeper>,
    ) -> Dispatcher {
        let retry = &contract.error_handling.retry_policy;
        Dispatcher {
            vault,
            default_mount: contract.vault.default_mount.clone(),
            enabled: contract.enabled_operations(),
            breaker,
            leases,
            backoff: BackoffPolicy {
                max_attempts: retry.max_attempts,
                initial_delay: Duration::from_millis(retry.initial_delay_ms),
                max_delay: Duration::from_millis(retry.max_delay_ms),
                multiplier: retry.exponential_base,
                jitter: retry.jitter,
            },
            timeout: contract.request_timeout(),
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

    /// Performs `request`; every failure comes back as the reply's error.
    pub async fn handle(&self, request: &VaultRequest) -> Result<OperationResult, ReplyError> {
        let operation = request.operation();
        if !self.enabled.contains(&operation) {
            return Err(ReplyError::new(
                ErrorCode::UnsupportedOperation,
                format!("operation {operation} is not enabled in this node's contract"),
            ));
        }
        let cx = Context { vault: &self.vault, default_mount: &self.default_mount, leases: &self.leases };
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
        outcome.map_err(|failure| self.reply_error(failure))
    }

    fn reply_error(&self, failure: Guarded<VaultError>) -> ReplyError {
        match failure {
            Guarded::Inner(error) => ReplyError::new(error.code(), error.to_string()),
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
                    .with_retry_after_ms(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX))
            }
        }
    }
}

/// One attempt at `request`: the operation file that serves it.
async fn dispatch(cx: &Context<'_>, request: &VaultRequest) -> Result<OperationResult, VaultError> {
    match request {
        VaultRequest::GetSecret(r) => get_secret::run(cx, r).await,
        VaultRequest::SetSecret(r) => set_secret::run(cx, r).await,
        VaultRequest::DeleteSecret(r) => delete_secret::run(cx, r).await,
        VaultRequest::ListSecrets(r) => list_secrets::run(cx, r).await,
        VaultRequest::RenewLease(r) => renew_lease::run(cx, r).await,
        VaultRequest::RenewToken(r) => renew_token::run(cx, r).await,
        VaultRequest::LookupLease(r) => lookup_lease::run(cx, r).await,
        VaultRequest::RevokeLease(r) => revoke_lease::run(cx, r).await,
    }
}

/// Where a request points: the mount and the path (or lease id) it names.
/// The audit trail records it whole; logs use [`Target::masked`].
pub struct Target {
    pub mount: Option<String>,
    pub path: Option<String>,
}

impl Target {
    pub fn of(request: &VaultRequest, default_mount: &MountName) -> Target {
        let kv = |mount: &Option<MountName>, path: &str| Target {
            mount: Some(mount.as_ref().unwrap_or(default_mount).to_string()),
            path: Some(path.to_owned()),
        };
        match request {
            VaultRequest::GetSecret(r) => kv(&r.mount, r.path.as_str()),
            VaultRequest::SetSecret(r) => kv(&r.mount, r.path.as_str()),
            VaultRequest::DeleteSecret(r) => kv(&r.mount, r.path.as_str()),
            VaultRequest::ListSecrets(r) => kv(&r.mount, r.path.as_str()),
            VaultRequest::RenewLease(_) | VaultRequest::LookupLease(_) | VaultRequest::RevokeLease(_) => {
                Target { mount: None, path: request.lease_id().map(str::to_owned) }
            }
            VaultRequest::RenewToken(_) => Target { mount: None, path: None },
        }
    }

    /// Safe for logs: the mount and the first path segment, the rest masked
    /// (`secret:app/***/***`); a lease shows only its engine.
    pub fn masked(&self) -> String {
        let path = self.path.as_deref().unwrap_or_default();
        let masked = onex_vault_models::mask_path(path);
        let engine = path.split('/').next().unwrap_or_default();
        match (&self.mount, &self.path) {
            (Some(mount), _) => format!("{mount}:{masked}"),
            (None, Some(_)) => format!("lease:{engine}/***"),
            (None, None) => "token:self".to_owned(),
        }
    }
}
