//! `lookup_lease`: a lease's TTL, expiry and renewability
//! (`PUT sys/leases/lookup`), and whether this node keeps it alive.

use onex_vault_models::{LookupLease, LookupLeaseResult, MountName, OperationResult};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

#[derive(Deserialize)]
struct Lease {
    id: String,
    issue_time: Option<String>,
    expire_time: Option<String>,
    last_renewal: Option<String>,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    ttl: u64,
}

impl Perform for LookupLease {
    const WORK: Work = Work::Leases;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::lease(&self.lease_id)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let body = json!({ "lease_id": self.lease_id });
        // Raw: vaultrs 0.8 has no sys/leases endpoints.
        let lease: Lease = cx.vault.call(Method::PUT, "sys/leases/lookup", Some(&body)).await?;
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
