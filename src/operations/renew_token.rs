//! `renew_token`: renew the node's own Vault token (`auth/token/renew-self`).

use onex_vault_models::{OperationResult, RenewToken, RenewTokenResult};

use super::Context;
use crate::vault::VaultError;

pub async fn run(cx: &Context<'_>, request: &RenewToken) -> Result<OperationResult, VaultError> {
    let increment = request.increment_seconds.map(|s| format!("{s}s"));
    let client = cx.vault.client()?;
    let auth = vaultrs::token::renew_self(client.as_ref(), increment.as_deref()).await?;
    Ok(OperationResult::RenewToken(RenewTokenResult {
        lease_duration: auth.lease_duration,
        renewable: auth.renewable,
        // Right after a renewal the token lives exactly its new lease.
        ttl_seconds: auth.lease_duration,
    }))
}
