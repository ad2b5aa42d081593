//! `get_secrets_batch`: several secrets in one request, one result per
//! path. It is not one Vault call but many reads, each like a `get_secret`
//! (through the read cache and the resilience layers), so the dispatcher
//! runs it ([`Dispatcher::handle`]) rather than the per-attempt `run`.

use onex_vault_models::{
    BatchItem, ErrorCode, GetSecret, GetSecretsBatch, GetSecretsBatchResult, MountName, OperationResult, ReplyError,
    ReplyStatus, SecretPath,
};

use super::{Context, Dispatcher, Perform, Target, Work};
use crate::vault::VaultError;

impl Perform for GetSecretsBatch {
    const WORK: Work = Work::ReadsSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, &self.paths)
    }

    async fn run(&self, _cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        Err(VaultError::Internal("get_secrets_batch reached a single Vault call; the dispatcher reads its paths"))
    }
}

impl Dispatcher {
    /// Reads every path of a batch, `batch.concurrency` at a time, each like
    /// a `get_secret`; one failing path does not fail the batch.
    pub(super) async fn read_batch(&self, batch: &GetSecretsBatch) -> Result<OperationResult, ReplyError> {
        if batch.paths.len() > self.batch_limits.max_paths {
            return Err(ReplyError::new(
                ErrorCode::InvalidInput,
                format!(
                    "payload.paths: at most {} paths per batch (vault.batch.max_paths)",
                    self.batch_limits.max_paths
                ),
            ));
        }
        let slots = tokio::sync::Semaphore::new(self.batch_limits.concurrency);
        let reads: Vec<_> = batch.paths.iter().map(|path| self.read_in_batch(&slots, batch, path)).collect();
        let results = futures_util::future::join_all(reads).await;
        Ok(OperationResult::GetSecretsBatch(GetSecretsBatchResult { results }))
    }

    /// One path of a batch, read when one of the batch's slots is free.
    async fn read_in_batch(
        &self,
        slots: &tokio::sync::Semaphore,
        batch: &GetSecretsBatch,
        path: &SecretPath,
    ) -> BatchItem {
        let _slot = slots.acquire().await;
        let get = GetSecret {
            mount: batch.mount.clone(),
            path: path.clone(),
            version: None,
            consistency: batch.consistency,
            delivery: None,
            namespace: batch.namespace.clone(),
        };
        let path = path.to_string();
        match self.read(&get).await {
            Ok(OperationResult::GetSecret(found)) => BatchItem {
                path,
                status: ReplyStatus::Success,
                data: Some(found.data),
                metadata: Some(found.metadata),
                error: None,
            },
            Ok(_) => BatchItem {
                path,
                status: ReplyStatus::Error,
                data: None,
                metadata: None,
                error: Some(ReplyError::new(ErrorCode::InternalError, "a bug: a read returned another result")),
            },
            Err(error) => {
                BatchItem { path, status: ReplyStatus::Error, data: None, metadata: None, error: Some(error) }
            }
        }
    }
}
