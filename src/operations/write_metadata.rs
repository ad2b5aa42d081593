//! `write_metadata`: change a KV v2 secret's settings or custom metadata.
//!
//! Only the fields the request gives are sent, and Vault changes only the
//! fields it is sent (the others keep their values; a secret without metadata
//! yet starts from Vault's defaults). So the update is one atomic call, with
//! no read-then-write for a concurrent writer to slip between.

use onex_vault_models::{OperationResult, WriteMetadata, WriteMetadataResult};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::Context;
use crate::vault::VaultError;

pub async fn run(cx: &Context<'_>, request: &WriteMetadata) -> Result<OperationResult, VaultError> {
    let (mount, path) = (cx.mount(&request.mount), request.path.as_str());
    let mut body = Map::new();
    if let Some(custom) = &request.custom_metadata {
        body.insert("custom_metadata".into(), json!(custom));
    }
    if let Some(max_versions) = request.max_versions {
        body.insert("max_versions".into(), json!(max_versions));
    }
    if let Some(cas_required) = request.cas_required {
        body.insert("cas_required".into(), json!(cas_required));
    }
    if let Some(after) = &request.delete_version_after {
        body.insert("delete_version_after".into(), json!(after));
    }
    let _: Value = cx.vault.call(Method::POST, &format!("{mount}/metadata/{path}"), Some(&Value::Object(body))).await?;
    Ok(OperationResult::WriteMetadata(WriteMetadataResult { metadata_written: true }))
}
