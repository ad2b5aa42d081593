//! Lease keep-alive: leases a requester asked the node to keep renewing
//! (`renew_lease` with `keep_alive: true`).
//!
//! Each tracked lease has a small task that renews it at 2/3 of its current
//! duration (retrying failed renewals with jittered backoff while the lease
//! still lives), and publishes a lease event when the node can renew it no
//! more: `expiring` when Vault caps a renewal (max TTL reached), `expired`
//! when it ran out, `renewal_failed` when Vault refuses to renew it (not
//! renewable, not found). `revoke_lease` stops the tracking. At most
//! `vault.lease_keep_alive.max_tracked` leases are tracked at once.
//!
//! A lease is renewed in the Vault namespace it was issued or renewed in (a
//! request's child namespace, or the node's own).
//!
//! Tracked leases live in this process only: they are not stored anywhere,
//! so they do not survive a restart, and another instance of the group does
//! not take them over. Requesters that need a lease kept across node
//! restarts renew it again with `keep_alive` after seeing the node restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use onex_vault_models::{LeaseEvent, LeaseEventKind};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::resilience::BackoffPolicy;
use crate::vault::{Hint, Vault, VaultError};

pub struct LeaseKeeper {
    vault: Arc<Vault>,
    tracked: Mutex<HashMap<String, CancellationToken>>,
    max_tracked: usize,
    events: mpsc::UnboundedSender<LeaseEvent>,
    stop: CancellationToken,
}

#[derive(Deserialize)]
struct Renewed {
    lease_duration: u64,
}

impl LeaseKeeper {
    pub fn new(
        vault: Arc<Vault>,
        max_tracked: usize,
        events: mpsc::UnboundedSender<LeaseEvent>,
        stop: CancellationToken,
    ) -> Arc<LeaseKeeper> {
        Arc::new(LeaseKeeper { vault, tracked: Mutex::default(), max_tracked, events, stop })
    }

    /// Starts keeping `lease_id` alive (it was just renewed for `duration`)
    /// in `namespace` (in full; `None`: the node's own). Returns whether it
    /// is tracked: false at the limit.
    pub fn track(self: &Arc<Self>, lease_id: &str, namespace: Option<&str>, duration: Duration) -> bool {
        let mut tracked = self.tracked.lock().unwrap_or_else(|p| p.into_inner());
        if tracked.contains_key(lease_id) {
            return true;
        }
        if tracked.len() >= self.max_tracked {
            tracing::warn!(limit = self.max_tracked, "lease not kept alive: tracking limit reached");
            return false;
        }
        let cancel = self.stop.child_token();
        tracked.insert(lease_id.to_owned(), cancel.clone());
        let keeper = self.clone();
        let lease_id = lease_id.to_owned();
        let namespace = namespace.map(str::to_owned);
        tokio::spawn(async move {
            keeper.keep_alive(&lease_id, namespace, duration, cancel).await;
            keeper.tracked.lock().unwrap_or_else(|p| p.into_inner()).remove(&lease_id);
        });
        true
    }

    pub fn is_tracked(&self, lease_id: &str) -> bool {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner()).contains_key(lease_id)
    }

    /// Stops keeping `lease_id` alive (it was revoked).
    pub fn forget(&self, lease_id: &str) {
        if let Some(cancel) = self.tracked.lock().unwrap_or_else(|p| p.into_inner()).remove(lease_id) {
            cancel.cancel();
        }
    }

    pub fn tracked_count(&self) -> usize {
        self.tracked.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    async fn keep_alive(
        &self,
        lease_id: &str,
        namespace: Option<String>,
        mut duration: Duration,
        cancel: CancellationToken,
    ) {
        let vault = self.vault.at(namespace);
        let engine = lease_id.split('/').next().unwrap_or_default().to_owned();
        let retry = BackoffPolicy {
            max_attempts: u32::MAX,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: true,
        };
        loop {
            // Renew at 2/3 of the current duration.
            let mut expires_in = duration;
            let mut wait = duration.mul_f64(2.0 / 3.0);
            let mut delays = retry.delays();
            let renewed = loop {
                if sleep_or_cancel(wait, &cancel).await {
                    return;
                }
                expires_in = expires_in.saturating_sub(wait);
                let body = json!({ "lease_id": lease_id, "increment": duration.as_secs() });
                match vault.call::<Renewed>(Method::PUT, "sys/leases/renew", Some(&body)).await {
                    Ok(renewed) => break renewed,
                    Err(VaultError::Status { hint: Hint::NotRenewable | Hint::LeaseNotFound, .. }) => {
                        self.publish(lease_id, LeaseEventKind::RenewalFailed, 0, "Vault refuses to renew the lease");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(lease = %engine, %error, "lease renewal failed; retrying");
                        let next = delays.next().unwrap_or(retry.max_delay);
                        if expires_in <= next {
                            if !sleep_or_cancel(expires_in, &cancel).await {
                                self.publish(
                                    lease_id,
                                    LeaseEventKind::Expired,
                                    0,
                                    "renewals failed until the lease ran out",
                                );
                            }
                            return;
                        }
                        wait = next;
                    }
                }
            };
            let granted = Duration::from_secs(renewed.lease_duration);
            tracing::debug!(lease = %engine, granted_seconds = renewed.lease_duration, "lease renewed");
            if granted < duration {
                // Vault capped the renewal: the lease's max TTL is near.
                self.publish(
                    lease_id,
                    LeaseEventKind::Expiring,
                    granted.as_secs(),
                    "max TTL reached; the lease cannot be extended further",
                );
                if !sleep_or_cancel(granted, &cancel).await {
                    self.publish(lease_id, LeaseEventKind::Expired, 0, "the lease reached its max TTL");
                }
                return;
            }
            duration = granted;
        }
    }

    fn publish(&self, lease_id: &str, kind: LeaseEventKind, ttl_seconds: u64, reason: &str) {
        let event = LeaseEvent {
            lease_id: lease_id.to_owned(),
            event: kind,
            ttl_seconds,
            reason: reason.to_owned(),
            instance_id: None,
            timestamp: Utc::now(),
        };
        let _ = self.events.send(event);
    }
}

/// Sleeps for `duration`; true if cancelled first.
async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
