//! `delete_secret`: soft-delete versions (the latest by default), destroy
//! them for good, or delete the metadata and every version.

use onex_vault_models::{DeleteSecret, DeleteSecretResult, MountName, OperationResult};
use vaultrs::api::kv2::requests::{
    DeleteSecretMetadataRequest, DeleteSecretVersionsRequest, DestroySecretVersionsRequest, ReadSecretMetadataRequest,
};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for DeleteSecret {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let mount = cx.mount(&self.mount);
        let path = self.path.as_str();
        let client = cx.vault.client()?;
        let client = client.as_ref();

        if self.all_versions {
            let endpoint = DeleteSecretMetadataRequest::builder().mount(mount).path(path).build().map_err(malformed)?;
            vaultrs::api::exec_with_empty(client, endpoint).await?;
            return Ok(deleted(Vec::new()));
        }

        // Without explicit versions, name the latest one, so the reply can say
        // which version went and a missing secret is reported as such.
        let versions = match &self.versions {
            Some(versions) => versions.clone(),
            None => {
                let endpoint =
                    ReadSecretMetadataRequest::builder().mount(mount).path(path).build().map_err(malformed)?;
                let metadata = vaultrs::api::exec_with_result(client, endpoint).await?;
                vec![metadata.current_version]
            }
        };
        if self.destroy {
            let endpoint = DestroySecretVersionsRequest::builder()
                .mount(mount)
                .path(path)
                .versions(versions.clone())
                .build()
                .map_err(malformed)?;
            vaultrs::api::exec_with_empty(client, endpoint).await?;
        } else {
            let endpoint = DeleteSecretVersionsRequest::builder()
                .mount(mount)
                .path(path)
                .versions(versions.clone())
                .build()
                .map_err(malformed)?;
            vaultrs::api::exec_with_empty(client, endpoint).await?;
        }
        Ok(deleted(versions))
    }
}

/// An endpoint that cannot be built is a bug, not Vault's answer.
fn malformed<E>(_: E) -> VaultError {
    VaultError::Internal("a vaultrs request could not be built")
}

fn deleted(versions: Vec<u64>) -> OperationResult {
    OperationResult::DeleteSecret(DeleteSecretResult { deleted: true, versions })
}
