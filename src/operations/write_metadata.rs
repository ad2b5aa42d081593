//! `write_metadata`: change a KV v2 secret's settings or custom metadata;
//! only the fields the request gives change (the others are read first and
//! written back as they were).

use onex_vault_models::{OperationResult, WriteMetadata, WriteMetadataResult};
use reqwest::Method;
use serde_json::json;

use super::{read_metadata, Context};
use crate::vault::VaultError;

pub async fn run(cx: &Context<'_>, request: &WriteMetadata) -> Result<OperationResult, VaultError> {
    let (mount, path) = (cx.mount(&request.mount), request.path.as_str());
    // A secret that does not exist yet has no metadata: start from Vault's defaults.
    let current = match read_metadata::fetch(cx, mount, path).await {
        Ok(current) => Some(current),
        Err(VaultError::Status { status: 404, .. }) => None,
        Err(other) => return Err(other),
    };
    let body = json!({
        "max_versions": request.max_versions.or(current.as_ref().map(|c| c.max_versions)).unwrap_or(0),
        "cas_required": request.cas_required.or(current.as_ref().map(|c| c.cas_required)).unwrap_or(false),
        "delete_version_after": request
            .delete_version_after
            .clone()
            .or(current.as_ref().map(|c| c.delete_version_after.clone()))
            .unwrap_or_else(|| "0s".into()),
        "custom_metadata": request
            .custom_metadata
            .clone()
            .or(current.and_then(|c| c.custom_metadata))
            .unwrap_or_default(),
    });
    let _: serde_json::Value = cx.vault.call(Method::POST, &format!("{mount}/metadata/{path}"), Some(&body)).await?;
    Ok(OperationResult::WriteMetadata(WriteMetadataResult { metadata_written: true }))
}
