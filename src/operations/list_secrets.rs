//! `list_secrets`: the keys of a KV v2 folder. Vault answers an empty or
//! missing folder with 404 and no errors: that is an empty list, not an error.
//! A 404 naming no handler means the mount itself is missing: that is one.

use onex_vault_models::{ListSecrets, ListSecretsResult, MountName, OperationResult};
use vaultrs::api::kv2::requests::ListSecretsRequest;

use super::{Context, Perform, Target, Work};
use crate::vault::{Hint, VaultError};

impl Perform for ListSecrets {
    const WORK: Work = Work::ReadsKvMetadata;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let endpoint = ListSecretsRequest::builder()
            .mount(cx.mount(&self.mount))
            .path(self.path.as_str())
            .build()
            .map_err(|_| VaultError::Internal("a vaultrs request could not be built"))?;
        let client = cx.vault.client()?;
        let keys = match vaultrs::api::exec_with_result(client.as_ref(), endpoint).await {
            Ok(listed) => listed.keys,
            Err(error) => match VaultError::from(error) {
                VaultError::Status { status: 404, hint: Hint::EmptyNotFound } => Vec::new(),
                other => return Err(other),
            },
        };
        Ok(OperationResult::ListSecrets(ListSecretsResult { keys }))
    }
}
