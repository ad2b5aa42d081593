//! `undelete_versions`: restore soft-deleted versions of a KV v2 secret
//! (destroyed versions stay destroyed). Vault answers success even for a
//! secret that does not exist, so the metadata is read first: a missing
//! secret is `ONEX_CORE_085_RESOURCE_NOT_FOUND`, as for every other operation.

use onex_vault_models::{MountName, OperationResult, UndeleteVersions, UndeleteVersionsResult};
use vaultrs::api::kv2::requests::UndeleteSecretVersionsRequest;

use super::{read_metadata, Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for UndeleteVersions {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        read_metadata::fetch(cx, cx.mount(&self.mount), self.path.as_str()).await?;
        let endpoint = UndeleteSecretVersionsRequest {
            mount: cx.mount(&self.mount).to_owned(),
            path: self.path.as_str().to_owned(),
            versions: self.versions.clone(),
        };
        let client = cx.vault.client()?;
        vaultrs::api::exec_with_empty(client.as_ref(), endpoint).await?;
        Ok(OperationResult::UndeleteVersions(UndeleteVersionsResult {
            undeleted: true,
            versions: self.versions.clone(),
        }))
    }
}
