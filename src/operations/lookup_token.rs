//! `lookup_token`: the node's own token described (TTL, policies,
//! renewability, expiry, entity), never the token or its accessor.

use onex_vault_models::{LookupToken, LookupTokenResult, MountName, OperationResult};
use serde::Deserialize;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    ttl: u64,
    #[serde(default)]
    renewable: bool,
    #[serde(default)]
    policies: Vec<String>,
    expire_time: Option<String>,
    entity_id: Option<String>,
    display_name: Option<String>,
}

impl Perform for LookupToken {
    const WORK: Work = Work::LooksUpToken;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::none()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let token: Token = cx.vault.lookup_self().await?;
        Ok(OperationResult::LookupToken(LookupTokenResult {
            ttl_seconds: token.ttl,
            renewable: token.renewable,
            policies: token.policies,
            expire_time: token.expire_time,
            entity_id: token.entity_id.filter(|e| !e.is_empty()),
            display_name: token.display_name,
        }))
    }
}
