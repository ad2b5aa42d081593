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

use super::Context;
use crate::vault::VaultError;

/// The transit mount when a request names none.
pub const DEFAULT_MOUNT: &str = "transit";

fn mount(requested: &Option<MountName>) -> &str {
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

pub async fn encrypt(cx: &Context<'_>, request: &TransitEncrypt) -> Result<OperationResult, VaultError> {
    let body = with_context(json!({ "plaintext": request.plaintext.expose_secret() }), &request.context);
    let path = format!("{}/encrypt/{}", mount(&request.mount), request.key);
    let out: Ciphertext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
    Ok(OperationResult::Ciphertext(CiphertextResult { ciphertext: out.ciphertext, key_version: out.key_version }))
}

pub async fn decrypt(cx: &Context<'_>, request: &TransitDecrypt) -> Result<OperationResult, VaultError> {
    let body = with_context(json!({ "ciphertext": request.ciphertext }), &request.context);
    let path = format!("{}/decrypt/{}", mount(&request.mount), request.key);
    let out: Plaintext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
    Ok(OperationResult::Decrypt(DecryptResult { plaintext: out.plaintext }))
}

pub async fn rewrap(cx: &Context<'_>, request: &TransitRewrap) -> Result<OperationResult, VaultError> {
    let body = with_context(json!({ "ciphertext": request.ciphertext }), &request.context);
    let path = format!("{}/rewrap/{}", mount(&request.mount), request.key);
    let out: Ciphertext = cx.vault.call(Method::POST, &path, Some(&body)).await?;
    Ok(OperationResult::Ciphertext(CiphertextResult { ciphertext: out.ciphertext, key_version: out.key_version }))
}

fn with_context(mut body: serde_json::Value, context: &Option<String>) -> serde_json::Value {
    if let Some(context) = context {
        body["context"] = context.clone().into();
    }
    body
}
