//! Keeping the node's own token alive in the background.
//!
//! The keeper looks the token up, sleeps until `renew_at_fraction` of its TTL
//! (2/3 by default, as Vault Agent does), and renews it. When Vault refuses
//! (not renewable, revoked) or caps the renewal (the token's max TTL is near)
//! and AppRole credentials are configured, it logs in again; calls in flight
//! keep the token they started with. Failures are retried with jittered
//! backoff, never later than the token's remaining life allows. A token
//! without expiry (a root token) needs nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{sleep_or_stop, Vault, VaultError};
use crate::resilience::BackoffPolicy;
use crate::telemetry::Telemetry;

/// Shortest sleep between two renewals, so a tiny TTL cannot spin.
const MIN_WAIT: Duration = Duration::from_millis(500);

pub async fn keep_token_alive(
    vault: Arc<Vault>,
    telemetry: Arc<Telemetry>,
    renew_at_fraction: f64,
    stop: CancellationToken,
) {
    let backoff = BackoffPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(300),
        multiplier: 2.0,
        jitter: true,
    };
    let mut delays = backoff.delays();
    loop {
        let generation = vault.token_generation();
        let info = match vault.lookup_self().await {
            Ok(info) => info,
            Err(error) => {
                telemetry.record_token_renewal(false);
                tracing::warn!(%error, "cannot look up the node's token");
                if matches!(error, VaultError::Status { status: 403, .. }) && log_in_again(&vault, generation).await {
                    continue;
                }
                let wait = delays.next().unwrap_or(backoff.max_delay);
                if sleep_or_stop(wait, &stop).await {
                    return;
                }
                continue;
            }
        };
        telemetry.set_token_ttl(info.ttl);
        if info.ttl == 0 {
            tracing::info!("the node's token has no expiry: nothing to renew");
            return;
        }
        let wait = Duration::from_secs(info.ttl).mul_f64(renew_at_fraction).max(MIN_WAIT);
        if sleep_or_stop(wait, &stop).await {
            return;
        }
        if !info.renewable {
            if !log_in_again(&vault, generation).await {
                tracing::warn!("the node's token is not renewable and cannot be replaced; it will expire");
                // Check again later: an operator may restart with new credentials.
                if sleep_or_stop(Duration::from_secs(info.ttl).max(MIN_WAIT), &stop).await {
                    return;
                }
            }
            continue;
        }
        let client = vault.client();
        match vaultrs::token::renew_self(client.as_ref(), None).await.map_err(VaultError::from) {
            Ok(renewed) => {
                telemetry.record_token_renewal(true);
                delays = backoff.delays();
                let capped = info.creation_ttl > 0 && renewed.lease_duration < info.creation_ttl;
                tracing::info!(ttl_seconds = renewed.lease_duration, capped, "renewed the node's token");
                telemetry.set_token_ttl(renewed.lease_duration);
                if capped {
                    // The max TTL is near: a fresh login now, while the old
                    // token still serves the calls in flight.
                    log_in_again(&vault, generation).await;
                }
            }
            Err(error @ VaultError::Status { status: 400 | 403, .. }) => {
                telemetry.record_token_renewal(false);
                tracing::warn!(%error, "Vault refused to renew the node's token");
                if !log_in_again(&vault, generation).await {
                    let wait = delays.next().unwrap_or(backoff.max_delay);
                    if sleep_or_stop(wait, &stop).await {
                        return;
                    }
                }
            }
            Err(error) => {
                telemetry.record_token_renewal(false);
                tracing::warn!(%error, "renewing the node's token failed; retrying");
                let wait = delays.next().unwrap_or(backoff.max_delay);
                if sleep_or_stop(wait, &stop).await {
                    return;
                }
            }
        }
    }
}

/// Logs in again if AppRole is configured; true if the node has a new token.
async fn log_in_again(vault: &Vault, generation: u64) -> bool {
    if !vault.can_log_in_again() {
        return false;
    }
    match vault.log_in_again(generation).await {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(%error, "logging in to Vault again failed");
            false
        }
    }
}
