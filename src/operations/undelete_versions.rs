//! `undelete_versions`: restore soft-deleted versions of a KV v2 secret
//! (destroyed versions stay destroyed). Vault answers success even for a
//! secret that does not exist, so the metadata is read first: a missing
//! secret is `ONEX_CORE_085_RESOURCE_NOT_FOUND`, as for every other operation.

use onex_vault_models::{MountName, OperationResult, UndeleteVersions, UndeleteVersionsResult};
use reqwest::Method;
use serde_json::json;

use super::{read_metadata, Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for UndeleteVersions {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        read_metadata::fetch(cx, cx.mount(&self.mount), self.path.as_str()).await?;
        let path = format!("{}/undelete/{}", cx.mount(&self.mount), self.path.as_str());
        let body = json!({ "versions": self.versions });
        let _: serde_json::Value = cx.vault.call(Method::POST, &path, Some(&body)).await?;
        Ok(OperationResult::UndeleteVersions(UndeleteVersionsResult {
            undeleted: true,
            versions: self.versions.clone(),
        }))
    }
}
