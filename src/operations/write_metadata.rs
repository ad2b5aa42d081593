//! `write_metadata`: change a KV v2 secret's settings or custom metadata.
//!
//! Only the fields the request gives are sent, and Vault changes only the
//! fields it is sent (the others keep their values; a secret without metadata
//! yet starts from Vault's defaults). So the update is one atomic call, with
//! no read-then-write for a concurrent writer to slip between.

use onex_vault_models::{MountName, OperationResult, WriteMetadata, WriteMetadataResult};
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for WriteMetadata {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        // vaultrs sends only the fields that are set: the others keep their values.
        let endpoint = SetSecretMetadataRequest {
            mount: cx.mount(&self.mount).to_owned(),
            path: self.path.as_str().to_owned(),
            max_versions: self.max_versions,
            cas_required: self.cas_required,
            delete_version_after: self.delete_version_after.clone(),
            custom_metadata: self.custom_metadata.as_ref().map(|m| m.clone().into_iter().collect()),
        };
        let client = cx.vault.client()?;
        vaultrs::api::exec_with_empty(client.as_ref(), endpoint).await?;
        Ok(OperationResult::WriteMetadata(WriteMetadataResult { metadata_written: true }))
    }
}
