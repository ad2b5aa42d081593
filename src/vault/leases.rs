//! Vault's `sys/leases` endpoints, typed: the one way the node renews, looks
//! up and revokes a lease (the lease operations, the lease keeper, and a
//! wrapped reply that failed). Raw HTTP: vaultrs 0.8 has none of them.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{At, VaultError};

/// What `sys/leases/renew` answers.
#[derive(Debug, Deserialize)]
pub struct RenewedLease {
    pub lease_id: String,
    pub lease_duration: u64,
    pub renewable: bool,
}

/// What `sys/leases/lookup` answers.
#[derive(Debug, Deserialize)]
pub struct LeaseInfo {
    pub id: String,
    pub issue_time: Option<String>,
    pub expire_time: Option<String>,
    pub last_renewal: Option<String>,
    #[serde(default)]
    pub renewable: bool,
    #[serde(default)]
    pub ttl: u64,
}

impl At<'_> {
    /// `PUT sys/leases/renew`, asking for `increment_seconds` when given.
    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment_seconds: Option<u64>,
    ) -> Result<RenewedLease, VaultError> {
        let mut body = json!({ "lease_id": lease_id });
        if let Some(increment) = increment_seconds {
            body["increment"] = json!(increment);
        }
        self.call(Method::PUT, "sys/leases/renew", Some(&body)).await
    }

    /// `PUT sys/leases/lookup`.
    pub async fn lookup_lease(&self, lease_id: &str) -> Result<LeaseInfo, VaultError> {
        self.call(Method::PUT, "sys/leases/lookup", Some(&json!({ "lease_id": lease_id }))).await
    }

    /// `PUT sys/leases/revoke` (Vault answers 204, no body).
    pub async fn revoke_lease(&self, lease_id: &str) -> Result<(), VaultError> {
        let _: Value = self.call(Method::PUT, "sys/leases/revoke", Some(&json!({ "lease_id": lease_id }))).await?;
        Ok(())
    }
}
