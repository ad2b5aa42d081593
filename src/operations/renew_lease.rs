//! `renew_lease`: extend the lease of a dynamic secret through
//! `PUT sys/leases/renew` (vaultrs has no wrapper for it); with `keep_alive`,
//! register it with the lease keeper (the lease registry) to keep renewing.

use std::time::Duration;

use onex_vault_models::{OperationResult, RenewLease, RenewLeaseResult};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::vault::VaultError;

#[derive(Deserialize)]
struct Renewed {
    lease_id: String,
    lease_duration: u64,
    renewable: bool,
}

pub async fn run(cx: &Context<'_>, request: &RenewLease) -> Result<OperationResult, VaultError> {
    let mut body = json!({ "lease_id": request.lease_id });
    if let Some(increment) = request.increment_seconds {
        body["increment"] = json!(increment);
    }
    let renewed: Renewed = cx.vault.call(Method::PUT, "sys/leases/renew", Some(&body)).await?;
    let kept_alive = request.keep_alive
        && renewed.renewable
        && cx.leases.track(&renewed.lease_id, cx.vault.namespace(), Duration::from_secs(renewed.lease_duration)).await;
    Ok(OperationResult::RenewLease(RenewLeaseResult {
        lease_id: renewed.lease_id,
        lease_duration: renewed.lease_duration,
        renewable: renewed.renewable,
        kept_alive,
    }))
}
