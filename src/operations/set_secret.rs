//! `set_secret`: write a new version of a KV v2 secret, optionally check-and-set.

use onex_vault_models::{MountName, OperationResult, SetSecret, SetSecretResult};
use serde_json::Value;
use vaultrs::api::kv2::requests::{SetSecretRequest, SetSecretRequestOptions};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for SetSecret {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let mut endpoint = SetSecretRequest::builder();
        endpoint
            .mount(cx.mount(&self.mount))
            .path(self.path.as_str())
            .data(Value::Object(self.data.expose_secret().clone()));
        if let Some(cas) = self.cas {
            // vaultrs takes the CAS version as u32; larger ones cannot exist in practice.
            let cas = u32::try_from(cas).map_err(|_| VaultError::status(400, &[]))?;
            endpoint.options(SetSecretRequestOptions { cas });
        }
        let endpoint = endpoint.build().map_err(|_| VaultError::Internal("a vaultrs request could not be built"))?;
        let client = cx.vault.client()?;
        let written = vaultrs::api::exec_with_result(client.as_ref(), endpoint).await?;
        Ok(OperationResult::SetSecret(SetSecretResult { version: written.version, created_time: written.created_time }))
    }
}
