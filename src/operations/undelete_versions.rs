//! `undelete_versions`: restore soft-deleted versions of a KV v2 secret
//! (destroyed versions stay destroyed). Vault answers success even for a
//! secret that does not exist, so the metadata is read first: a missing
//! secret is `ONEX_CORE_085_RESOURCE_NOT_FOUND`, as for every other operation.

use onex_vault_models::{OperationResult, UndeleteVersions, UndeleteVersionsResult};
use reqwest::Method;
use serde_json::json;

use super::{read_metadata, Context};
use crate::vault::VaultError;

pub async fn run(cx: &Context<'_>, request: &UndeleteVersions) -> Result<OperationResult, VaultError> {
    read_metadata::fetch(cx, cx.mount(&request.mount), request.path.as_str()).await?;
    let path = format!("{}/undelete/{}", cx.mount(&request.mount), request.path.as_str());
    let body = json!({ "versions": request.versions });
    let _: serde_json::Value = cx.vault.call(Method::POST, &path, Some(&body)).await?;
    Ok(OperationResult::UndeleteVersions(UndeleteVersionsResult {
        undeleted: true,
        versions: request.versions.clone(),
    }))
}
