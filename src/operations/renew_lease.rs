//! `renew_lease`: extend the lease of a dynamic secret through
//! `PUT sys/leases/renew`; with `keep_alive`,
//! register it with the lease keeper (the lease registry) to keep renewing.

use std::time::Duration;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;
use onex_vault_models::{MountName, OperationResult, RenewLease, RenewLeaseResult};

impl Perform for RenewLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let renewed = cx.vault.renew_lease(&self.lease_id, self.increment_seconds).await?;
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
