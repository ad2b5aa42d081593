//! `renew_token`: renew the node's own Vault token (`auth/token/renew-self`).

use onex_vault_models::{MountName, OperationResult, RenewToken, RenewTokenResult};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for RenewToken {
    const WORK: Work = Work::RenewsToken;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::none()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let increment = self.increment_seconds.map(|s| format!("{s}s"));
        let client = cx.vault.client()?;
        let auth = vaultrs::token::renew_self(client.as_ref(), increment.as_deref()).await?;
        Ok(OperationResult::RenewToken(RenewTokenResult {
            lease_duration: auth.lease_duration,
            renewable: auth.renewable,
            // Right after a renewal the token lives exactly its new lease.
            ttl_seconds: auth.lease_duration,
        }))
    }
}
