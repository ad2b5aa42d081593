//! `renew_lease`: extend the lease of a dynamic secret through
//! `PUT sys/leases/renew` (vaultrs has no wrapper for it); with `keep_alive`,
//! register it with the lease keeper (the lease registry) to keep renewing.

use std::time::Duration;

use onex_vault_models::{MountName, OperationResult, RenewLease, RenewLeaseResult};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

#[derive(Deserialize)]
struct Renewed {
    lease_id: String,
    lease_duration: u64,
    renewable: bool,
}

impl Perform for RenewLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let mut body = json!({ "lease_id": self.lease_id });
        if let Some(increment) = self.increment_seconds {
            body["increment"] = json!(increment);
        }
        // Raw: vaultrs 0.8 has no sys/leases endpoints.
        let renewed: Renewed = cx.vault.call(Method::PUT, "sys/leases/renew", Some(&body)).await?;
        let kept_alive = self.keep_alive
            && renewed.renewable
            && cx
                .leases
                .track(&renewed.lease_id, cx.vault.namespace(), Duration::from_secs(renewed.lease_duration))
                .await;
        Ok(OperationResult::RenewLease(RenewLeaseResult {
            lease_id: renewed.lease_id,
            lease_duration: renewed.lease_duration,
            renewable: renewed.renewable,
            kept_alive,
        }))
    }
}
