//! `rotate_secret`: a new random value for one key of a KV v2 secret,
//! written as a new version with check-and-set on the version it read (a
//! concurrent write makes it `CONFLICT`, never a lost update). The value
//! comes from the OS-seeded CSPRNG and leaves the node only sealed or
//! wrapped (see `security::Delivered`).

use onex_vault_models::{MountName, OperationResult, RotateSecret, RotateSecretResult};
use rand::seq::IndexedRandom as _;
use reqwest::Method;
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

#[derive(Deserialize)]
struct Current {
    data: Option<Map<String, Value>>,
    metadata: Version,
}

#[derive(Deserialize)]
struct Version {
    version: u64,
}

#[derive(Deserialize)]
struct Written {
    version: u64,
    created_time: String,
}

impl Perform for RotateSecret {
    const WORK: Work = Work::WritesSecret;

    fn target(&self, default_mount: &MountName) -> Target {
        Target::kv(&self.mount, default_mount, [&self.path])
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let data_path = format!("{}/data/{}", cx.mount(&self.mount), self.path.as_str());
        // Raw: the data read stays one JSON map until it is written back whole, with the version read as the CAS.
        let current: Current = cx.vault.call(Method::GET, &data_path, None).await?;
        // A deleted or destroyed latest version reads as `data: null`: nothing to rotate.
        let mut data = current.data.ok_or_else(|| VaultError::status(404, &[]))?;
        let value = new_value(self)?;
        data.insert(self.key.clone(), Value::String(value.clone()));
        let body = json!({ "options": { "cas": current.metadata.version }, "data": data });
        let written: Written = cx.vault.call(Method::POST, &data_path, Some(&body)).await?;
        Ok(OperationResult::RotateSecret(RotateSecretResult {
            version: written.version,
            created_time: written.created_time,
            rotated_key: self.key.clone(),
            value: Some(SecretString::from(value)),
        }))
    }
}

/// `length` characters drawn uniformly from the request's alphabet.
fn new_value(request: &RotateSecret) -> Result<String, VaultError> {
    let alphabet = request
        .alphabet
        .characters()
        .map_err(|_| VaultError::Internal("an alphabet the request's validation let through"))?;
    let mut rng = rand::rng();
    Ok((0..request.length).filter_map(|_| alphabet.choose(&mut rng)).collect())
}
