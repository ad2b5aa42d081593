//! Transit: `encrypt`, `decrypt` and `rewrap` with a named key of a transit
//! mount (`transit` unless the request names another). Plaintext travels as
//! base64 and is secret material both ways.

use onex_vault_models::{
    CiphertextResult, DecryptResult, MountName, OperationResult, TransitDecrypt, TransitEncrypt, TransitRewrap,
};
use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use super::{Context, Perform, Target, Work};
use crate::vault::VaultError;

/// The transit mount when a request names none.
pub const DEFAULT_MOUNT: &str = "transit";

pub(super) fn mount(requested: &Option<MountName>) -> &str {
    requested.as_ref().map_or(DEFAULT_MOUNT, MountName::as_str)
}

#[derive(Deserialize)]
struct Ciphertext {
    ciphertext: String,
    key_version: u64,
}

#[derive(Deserialize)]
struct Plaintext {
    plaintext: SecretString,
}

impl Perform for TransitEncrypt {
    const WORK: Work = Work::Encrypts;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::transit(&self.mount, &self.key)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let body = with_context(json!({ "plaintext": self.plaintext.expose_secret() }), &self.context);
        let path = format!("{}/encrypt/{}", mount(&self.mount), self.key);
        // Raw: vaultrs's transit takes the plaintext as a plain `&str` into its own request struct.
        let out: Ciphertext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
        Ok(OperationResult::Ciphertext(CiphertextResult { ciphertext: out.ciphertext, key_version: out.key_version }))
    }
}

impl Perform for TransitDecrypt {
    const WORK: Work = Work::Decrypts;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::transit(&self.mount, &self.key)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let body = with_context(json!({ "ciphertext": self.ciphertext }), &self.context);
        let path = format!("{}/decrypt/{}", mount(&self.mount), self.key);
        // Raw: vaultrs returns the plaintext as a plain `String`; here it lands in a `SecretString`.
        let out: Plaintext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
        Ok(OperationResult::Decrypt(DecryptResult { plaintext: out.plaintext }))
    }
}

impl Perform for TransitRewrap {
    const WORK: Work = Work::Rewraps;

    fn target(&self, _default_mount: &MountName) -> Target {
        Target::transit(&self.mount, &self.key)
    }

    async fn run(&self, cx: &Context<'_>) -> Result<OperationResult, VaultError> {
        let body = with_context(json!({ "ciphertext": self.ciphertext }), &self.context);
        let path = format!("{}/rewrap/{}", mount(&self.mount), self.key);
        // Raw like encrypt and decrypt: one call shape for the three transit operations.
        let out: Ciphertext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
        Ok(OperationResult::Ciphertext(CiphertextResult { ciphertext: out.ciphertext, key_version: out.key_version }))
    }
}

fn with_context(mut body: serde_json::Value, context: &Option<String>) -> serde_json::Value {
    if let Some(context) = context {
        body["context"] = context.clone().into();
    }
    body
}
