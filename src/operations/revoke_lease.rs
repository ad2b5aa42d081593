//! `revoke_lease`: revoke a lease now (`PUT sys/leases/revoke`) and stop
//! keeping it alive.

use onex_vault_models::{MountName, OperationResult, RevokeLease, RevokeLeaseResult};
use reqwest::Method;
use serde_json::{json, Value};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for RevokeLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let body = json!({ "lease_id": self.lease_id });
        // Raw: vaultrs 0.8 has no sys/leases endpoints.
        // Vault answers 204 with no body; `call` reads that as an empty object.
        let _: Value = cx.vault.call(Method::PUT, "sys/leases/revoke", Some(&body)).await?;
        cx.leases.forget(&self.lease_id).await;
        Ok(OperationResult::RevokeLease(RevokeLeaseResult { lease_id: self.lease_id.clone(), revoked: true }))
    }
}
