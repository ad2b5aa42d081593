//! `get_secret`: read one version of a KV v2 secret with its metadata, or
//! have Vault wrap it in a single-use token (`delivery: wrapped`).

use std::time::Duration;

use onex_vault_models::{
    GetSecret, GetSecretResult, MountName, OperationResult, SecretData, SecretVersionMetadata, WrappedResult,
    WrappedTag,
};
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::api::kv2::responses::ReadSecretResponse;

use super::{Context, Perform, Target, Work};
use crate::vault::{VaultError, WrapInfo};

impl Perform for GetSecret {
    const WORK: Work = Work::ReadsSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        match cx.wrap {
            Some(ttl) => read_wrapped(cx, self, ttl).await,
            None => read(cx, self).await,
        }
    }
}

async fn read(cx: &Context<'_>, request: &GetSecret) -> Result<OperationResult, VaultError> {
    let endpoint = ReadSecretRequest::builder()
        .mount(cx.mount(&request.mount))
        .path(request.path.as_str())
        .version(request.version)
        .build()
        .map_err(|_| VaultError::Internal("a vaultrs request could not be built"))?;
    let client = cx.vault.client()?;
    let ReadSecretResponse { data, metadata } = vaultrs::api::exec_with_result(client.as_ref(), endpoint).await?;
    let serde_json::Value::Object(data) = data else {
        // A destroyed or deleted version reads as `data: null`.
        return Err(VaultError::status(404, &[]));
    };
    Ok(OperationResult::GetSecret(GetSecretResult {
        data: SecretData::new(data),
        metadata: SecretVersionMetadata {
            version: metadata.version,
            created_time: metadata.created_time,
            deletion_time: Some(metadata.deletion_time).filter(|t| !t.is_empty()),
            destroyed: metadata.destroyed,
            custom_metadata: metadata.custom_metadata.map(|m| m.into_iter().collect()),
        },
    }))
}

/// The same read, answered by Vault with a wrapping token instead of the
/// secret: the node never sees the value.
async fn read_wrapped(cx: &Context<'_>, request: &GetSecret, ttl: Duration) -> Result<OperationResult, VaultError> {
    let mount = cx.mount(&request.mount);
    let mut path = format!("{mount}/data/{}", request.path.as_str());
    if let Some(version) = request.version {
        path.push_str(&format!("?version={version}"));
    }
    Ok(wrapped_result(cx.vault.wrapped(&path, ttl).await?))
}

/// The reply's result for a wrapping token Vault made.
pub(super) fn wrapped_result(wrap: WrapInfo) -> OperationResult {
    OperationResult::Wrapped(WrappedResult {
        delivery: WrappedTag::Wrapped,
        wrap_token: wrap.token,
        wrap_accessor: wrap.accessor,
        ttl_seconds: wrap.ttl,
        creation_time: wrap.creation_time,
    })
}
