//! `revoke_lease`: revoke a lease now (`PUT sys/leases/revoke`) and stop
//! keeping it alive.

use onex_vault_models::{OperationResult, RevokeLease, RevokeLeaseResult};
use reqwest::Method;
use serde_json::{json, Value};

use super::Context;
use crate::vault::VaultError;

pub async fn run(cx: &Context<'_>, request: &RevokeLease) -> Result<OperationResult, VaultError> {
    let body = json!({ "lease_id": request.lease_id });
    // Vault answers 204 with no body; `call` reads that as an empty object.
    let _: Value = cx.vault.call(Method::PUT, "sys/leases/revoke", Some(&body)).await?;
    cx.leases.forget(&request.lease_id).await;
    Ok(OperationResult::RevokeLease(RevokeLeaseResult { lease_id: request.lease_id.clone(), revoked: true }))
}
