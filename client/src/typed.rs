//! Typed calls: one method per operation, each building its request and
//! unpacking its result around [`VaultAdapterClient::call`].

use onex_vault_models::{
    Alphabet, CiphertextResult, DecryptResult, DeleteSecret, DeleteSecretResult, Delivery, FolderPath, GetSecret,
    GetSecretResult, GetSecretsBatch, GetSecretsBatchResult, IssueCredentials, IssueCredentialsResult, ListSecrets,
    LookupLease, LookupLeaseResult, LookupToken, LookupTokenResult, MountName, OperationResult, ReadMetadata,
    ReadMetadataResult, RenewLease, RenewLeaseResult, RenewToken, RenewTokenResult, RevokeLease, RevokeLeaseResult,
    RotateSecret, RotateSecretResult, SecretData, SecretPath, SetSecret, SetSecretResult, TransitDecrypt,
    TransitEncrypt, VaultRequest,
};
use secrecy::SecretString;

use crate::{ClientError, VaultAdapterClient};

impl VaultAdapterClient {
    pub async fn get_secret(&self, path: &str) -> Result<GetSecretResult, ClientError> {
        let request = GetSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            version: None,
            consistency: Default::default(),
            delivery: None,
        };
        match self.call(VaultRequest::GetSecret(request)).await? {
            OperationResult::GetSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn get_secrets_batch(&self, paths: &[&str]) -> Result<GetSecretsBatchResult, ClientError> {
        let paths = paths.iter().map(|p| secret_path(p)).collect::<Result<_, _>>()?;
        let request =
            GetSecretsBatch { namespace: None, mount: None, paths, consistency: Default::default(), delivery: None };
        match self.call(VaultRequest::GetSecretsBatch(request)).await? {
            OperationResult::GetSecretsBatch(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn set_secret(
        &self,
        path: &str,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SetSecretResult, ClientError> {
        let request = SetSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            data: SecretData::new(data),
            sealed_data: None,
            cas: None,
        };
        match self.call(VaultRequest::SetSecret(request)).await? {
            OperationResult::SetSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Soft-deletes the latest version.
    pub async fn delete_secret(&self, path: &str) -> Result<DeleteSecretResult, ClientError> {
        let request = DeleteSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            versions: None,
            destroy: false,
            all_versions: false,
        };
        match self.call(VaultRequest::DeleteSecret(request)).await? {
            OperationResult::DeleteSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// The keys of a folder (`""` for the mount's root).
    pub async fn list_secrets(&self, folder: &str) -> Result<Vec<String>, ClientError> {
        let path = FolderPath::new(folder).map_err(|e| ClientError::Invalid(format!("path: {e}")))?;
        match self.call(VaultRequest::ListSecrets(ListSecrets { namespace: None, mount: None, path })).await? {
            OperationResult::ListSecrets(result) => Ok(result.keys),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment_seconds: Option<u64>,
        keep_alive: bool,
    ) -> Result<RenewLeaseResult, ClientError> {
        let request = RenewLease { namespace: None, lease_id: lease_id.to_owned(), increment_seconds, keep_alive };
        match self.call(VaultRequest::RenewLease(request)).await? {
            OperationResult::RenewLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn lookup_lease(&self, lease_id: &str) -> Result<LookupLeaseResult, ClientError> {
        match self
            .call(VaultRequest::LookupLease(LookupLease { namespace: None, lease_id: lease_id.to_owned() }))
            .await?
        {
            OperationResult::LookupLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn revoke_lease(&self, lease_id: &str) -> Result<RevokeLeaseResult, ClientError> {
        match self
            .call(VaultRequest::RevokeLease(RevokeLease { namespace: None, lease_id: lease_id.to_owned() }))
            .await?
        {
            OperationResult::RevokeLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Renews the node's own Vault token.
    pub async fn renew_token(&self, increment_seconds: Option<u64>) -> Result<RenewTokenResult, ClientError> {
        match self.call(VaultRequest::RenewToken(RenewToken { increment_seconds })).await? {
            OperationResult::RenewToken(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn read_metadata(&self, path: &str) -> Result<ReadMetadataResult, ClientError> {
        let request = ReadMetadata { namespace: None, mount: None, path: secret_path(path)? };
        match self.call(VaultRequest::ReadMetadata(request)).await? {
            OperationResult::ReadMetadata(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// A new random `length`-character alphanumeric value for `key`; sealed
    /// (with an identity) the result carries the value.
    pub async fn rotate_secret(&self, path: &str, key: &str, length: u32) -> Result<RotateSecretResult, ClientError> {
        let request = RotateSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            key: key.to_owned(),
            length,
            alphabet: Alphabet::Alphanumeric,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        match self.call(VaultRequest::RotateSecret(request)).await? {
            OperationResult::RotateSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Transit encryption of `plaintext` (raw bytes; base64 on the wire).
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<CiphertextResult, ClientError> {
        use base64::Engine as _;
        let plaintext = SecretString::from(base64::engine::general_purpose::STANDARD.encode(plaintext));
        let request = TransitEncrypt {
            namespace: None,
            mount: None,
            key: key.to_owned(),
            plaintext,
            sealed_plaintext: None,
            context: None,
        };
        match self.call(VaultRequest::Encrypt(request)).await? {
            OperationResult::Ciphertext(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Transit decryption; the plaintext as base64, in a secret box.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<DecryptResult, ClientError> {
        let request = TransitDecrypt {
            namespace: None,
            mount: None,
            key: key.to_owned(),
            ciphertext: ciphertext.to_owned(),
            context: None,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        match self.call(VaultRequest::Decrypt(request)).await? {
            OperationResult::Decrypt(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Dynamic credentials from the engine mounted at `mount`: `path` is the
    /// endpoint (`creds/app` of a database engine, `issue/web` of a PKI
    /// engine); `parameters`, when given, go as a `POST` body (a PKI
    /// `common_name`, `ttl`). Sealed with an identity, else the node's
    /// default delivery. With `keep_alive`, the node keeps the lease renewed.
    pub async fn issue_credentials(
        &self,
        mount: &str,
        path: &str,
        parameters: Option<serde_json::Map<String, serde_json::Value>>,
        keep_alive: bool,
    ) -> Result<IssueCredentialsResult, ClientError> {
        let request = IssueCredentials {
            namespace: None,
            mount: MountName::new(mount).map_err(|e| ClientError::Invalid(format!("mount: {e}")))?,
            path: secret_path(path)?,
            parameters,
            keep_alive,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        request.check().map_err(|e| ClientError::Invalid(e.to_string()))?;
        match self.call(VaultRequest::IssueCredentials(request)).await? {
            OperationResult::IssueCredentials(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn lookup_token(&self) -> Result<LookupTokenResult, ClientError> {
        match self.call(VaultRequest::LookupToken(LookupToken {})).await? {
            OperationResult::LookupToken(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }
}

fn secret_path(path: &str) -> Result<SecretPath, ClientError> {
    SecretPath::new(path).map_err(|e| ClientError::Invalid(format!("path: {e}")))
}
