//! `read_metadata`: a KV v2 secret's metadata (versions, times, settings,
//! custom metadata), never its data.

use std::collections::BTreeMap;

use onex_vault_models::{MountName, OperationResult, ReadMetadata, ReadMetadataResult, VersionState};
use reqwest::Method;
use serde::Deserialize;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

#[derive(Deserialize)]
pub(super) struct Metadata {
    pub current_version: u64,
    pub oldest_version: u64,
    pub max_versions: u64,
    pub cas_required: bool,
    #[serde(default)]
    pub delete_version_after: String,
    pub created_time: String,
    pub updated_time: String,
    pub custom_metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    versions: BTreeMap<String, Version>,
}

#[derive(Deserialize)]
struct Version {
    created_time: String,
    #[serde(default)]
    deletion_time: String,
    #[serde(default)]
    destroyed: bool,
}

/// `GET <mount>/metadata/<path>`, shared with `undelete_versions`.
pub(super) async fn fetch(cx: &Context<'_>, mount: &str, path: &str) -> Result<Metadata, VaultError> {
    // Raw: vaultrs's metadata answer type requires every field; `Metadata` takes absent ones as defaults.
    cx.vault.call(Method::GET, &format!("{mount}/metadata/{path}"), None).await
}

impl Perform for ReadMetadata {
    const WORK: Work = Work::ReadsKvMetadata;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let m = fetch(cx, cx.mount(&self.mount), self.path.as_str()).await?;
        Ok(OperationResult::ReadMetadata(ReadMetadataResult {
            current_version: m.current_version,
            oldest_version: m.oldest_version,
            max_versions: m.max_versions,
            cas_required: m.cas_required,
            delete_version_after: m.delete_version_after,
            created_time: m.created_time,
            updated_time: m.updated_time,
            custom_metadata: m.custom_metadata,
            versions: m
                .versions
                .into_iter()
                .map(|(n, v)| {
                    let deletion_time = Some(v.deletion_time).filter(|t| !t.is_empty());
                    (n, VersionState { created_time: v.created_time, deletion_time, destroyed: v.destroyed })
                })
                .collect(),
        }))
    }
}
