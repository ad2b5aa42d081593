//! `lookup_lease`: a lease's TTL, expiry and renewability
//! (`PUT sys/leases/lookup`), and whether this node keeps it alive.

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;
use onex_vault_models::{LookupLease, LookupLeaseResult, MountName, OperationResult};

impl Perform for LookupLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let lease = cx.vault.lookup_lease(&self.lease_id).await?;
        Ok(OperationResult::LookupLease(LookupLeaseResult {
            kept_alive: cx.leases.is_tracked(&lease.id),
            lease_id: lease.id,
            issue_time: lease.issue_time,
            expire_time: lease.expire_time,
            last_renewal: lease.last_renewal,
            renewable: lease.renewable,
            ttl_seconds: lease.ttl,
        }))
    }
}
