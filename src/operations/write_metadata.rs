//! `write_metadata`: change a KV v2 secret's settings or custom metadata.
//!
//! Only the fields the request gives are sent, and Vault changes only the
//! fields it is sent (the others keep their values; a secret without metadata
//! yet starts from Vault's defaults). So the update is one atomic call, with
//! no read-then-write for a concurrent writer to slip between.

use onex_vault_models::{MountName, OperationResult, WriteMetadata, WriteMetadataResult};
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for WriteMetadata {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let (mount, path) = (cx.mount(&self.mount), self.path.as_str());
        let mut body = Map::new();
        if let Some(custom) = &self.custom_metadata {
            body.insert("custom_metadata".into(), json!(custom));
        }
        if let Some(max_versions) = self.max_versions {
            body.insert("max_versions".into(), json!(max_versions));
        }
        if let Some(cas_required) = self.cas_required {
            body.insert("cas_required".into(), json!(cas_required));
        }
        if let Some(after) = &self.delete_version_after {
            body.insert("delete_version_after".into(), json!(after));
        }
        let _: Value =
            cx.vault.call(Method::POST, &format!("{mount}/metadata/{path}"), Some(&Value::Object(body))).await?;
        Ok(OperationResult::WriteMetadata(WriteMetadataResult { metadata_written: true }))
    }
}
