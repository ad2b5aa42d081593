//! `revoke_lease`: revoke a lease now (`PUT sys/leases/revoke`) and stop
//! keeping it alive.

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;
use onex_vault_models::{MountName, OperationResult, RevokeLease, RevokeLeaseResult};

impl Perform for RevokeLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        cx.vault.revoke_lease(&self.lease_id).await?;
        cx.leases.forget(&self.lease_id).await;
        Ok(OperationResult::RevokeLease(RevokeLeaseResult { lease_id: self.lease_id.clone(), revoked: true }))
    }
}
