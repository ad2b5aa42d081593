//! Waiting for Vault at start.
//!
//! In a fresh stack the node may start before Vault is listening or unsealed.
//! Rather than exit and lean on a restart policy, start-up retries the login
//! with jittered backoff for `vault.startup_wait_seconds`, while `/health`
//! answers (the process is alive) and `/ready` says "starting". Errors that
//! waiting cannot heal (refused credentials, an untrusted certificate, a bad
//! PEM file) end start-up at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{sleep_or_stop, Vault, VaultError};
use crate::contract::VaultSettings;
use crate::resilience::BackoffPolicy;
use crate::telemetry::Telemetry;

/// [`Vault::connect`], retried while Vault is not up yet, for at most
/// `settings.startup_wait_seconds`. `Ok(None)`: `stop` fired while waiting.
pub async fn connect_at_start(
    settings: &VaultSettings,
    telemetry: &Arc<Telemetry>,
    stop: &CancellationToken,
) -> Result<Option<Vault>, VaultError> {
    let backoff = BackoffPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(5),
        multiplier: 2.0,
        jitter: true,
    };
    let patience = Duration::from_secs(settings.startup_wait_seconds);
    let started = Instant::now();
    let mut delays = backoff.delays();
    loop {
        let error = match Vault::connect(settings, telemetry.clone()).await {
            Ok(vault) => return Ok(Some(vault)),
            Err(error) => error,
        };
        if !error.is_vault_not_up() {
            return Err(error);
        }
        let delay = delays.next().unwrap_or(backoff.max_delay);
        let waited = started.elapsed();
        if waited + delay > patience {
            tracing::error!(
                %error,
                waited_seconds = waited.as_secs(),
                "gave up waiting for Vault (vault.startup_wait_seconds, VAULT_STARTUP_WAIT_SECONDS)"
            );
            return Err(error);
        }
        tracing::warn!(
            %error,
            retry_in_ms = delay.as_millis() as u64,
            waited_seconds = waited.as_secs(),
            "Vault is not up yet; waiting for it"
        );
        if sleep_or_stop(delay, stop).await {
            tracing::info!("stopped while waiting for Vault");
            return Ok(None);
        }
    }
}
