//! Sealed replies: secret material encrypted to the requester's X25519 key.
//!
//! When a reply would carry secret values (a `get_secret` result, a batch of
//! them), the node replaces the whole `result` with a [`SealedResult`]: the
//! result as JSON, bound to the request's `correlation_id`, in a NaCl sealed
//! box (`crypto_box`: X25519 + XSalsa20-Poly1305, anonymous sender) to the
//! requester's registered public key. Only the holder of the private key can
//! open it; a changed byte makes opening fail. A Rust requester calls
//! [`SealedResult::open`]; other languages use libsodium's
//! `crypto_box_seal_open` and parse the JSON inside.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use schemars::JsonSchema;
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{check_key_id, decode_32, KeyError};
use crate::reply::OperationResult;

/// The scheme name a sealed reply carries.
pub const SEALED_BOX_SCHEME: &str = "x25519-xsalsa20poly1305-sealedbox";

/// A result only its requester can read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedResult {
    /// Always `sealed`: tells a sealed result from a clear one.
    pub delivery: SealedTag,
    /// [`SEALED_BOX_SCHEME`].
    pub scheme: String,
    /// Which of the requester's keys it is sealed to.
    pub key_id: String,
    /// Base64 of the sealed box. Inside: `{"correlation_id": …, "result": …}`.
    pub ciphertext: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SealedTag {
    Sealed,
}

/// Why a sealed result could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Another scheme than [`SEALED_BOX_SCHEME`].
    UnknownScheme,
    /// Sealed to another key than the one given.
    WrongKey,
    /// Not base64, tampered with, or not sealed to this key.
    CannotOpen,
    /// Opened, but sealed for another request.
    WrongRequest,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpenError::UnknownScheme => "unknown sealing scheme",
            OpenError::WrongKey => "sealed to another key",
            OpenError::CannotOpen => "cannot open: tampered with or not sealed to this key",
            OpenError::WrongRequest => "sealed for another request",
        })
    }
}

impl std::error::Error for OpenError {}

/// A requester's X25519 public key, as the access policy registers it.
#[derive(Clone)]
pub struct SealingPublicKey {
    key_id: String,
    key: crypto_box::PublicKey,
}

impl fmt::Debug for SealingPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingPublicKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SealingPublicKey {
    /// A public key from its 32 bytes in base64.
    pub fn from_base64(key_id: &str, public_key: &str) -> Result<SealingPublicKey, KeyError> {
        check_key_id(key_id)?;
        Ok(SealingPublicKey { key_id: key_id.to_owned(), key: crypto_box::PublicKey::from(decode_32(public_key)?) })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `result`, answering request `correlation_id`, to this key.
    pub fn seal(&self, correlation_id: Uuid, result: &OperationResult) -> Result<SealedResult, serde_json::Error> {
        let inside = Zeroizing::new(serde_json::to_vec(&Inside { correlation_id, result: result.clone() })?);
        let sealed = self
            .key
            .seal(&mut crypto_box::aead::OsRng, &inside)
            .map_err(|_| serde::ser::Error::custom("sealing failed"))?;
        Ok(SealedResult {
            delivery: SealedTag::Sealed,
            scheme: SEALED_BOX_SCHEME.to_owned(),
            key_id: self.key_id.clone(),
            ciphertext: BASE64.encode(sealed),
        })
    }
}

/// A requester's X25519 private key: opens the results sealed to it.
pub struct SealingSecretKey {
    key_id: String,
    key: crypto_box::SecretKey,
}

impl fmt::Debug for SealingSecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingSecretKey").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl SealingSecretKey {
    /// A private key from its 32 bytes in base64.
    pub fn from_base64(key_id: &str, private_key: &str) -> Result<SealingSecretKey, KeyError> {
        check_key_id(key_id)?;
        Ok(SealingSecretKey { key_id: key_id.to_owned(), key: crypto_box::SecretKey::from(decode_32(private_key)?) })
    }

    /// A new random key pair.
    pub fn generate(key_id: &str) -> Result<SealingSecretKey, KeyError> {
        check_key_id(key_id)?;
        Ok(SealingSecretKey {
            key_id: key_id.to_owned(),
            key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
        })
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The private key in base64: only for writing it to a key file.
    pub fn private_key_base64(&self) -> String {
        BASE64.encode(self.key.to_bytes())
    }

    /// The public key in base64, as the node's access policy registers it.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.key.public_key().as_bytes())
    }
}

impl SealedResult {
    /// The result inside, if it was sealed to `key` for request `correlation_id`.
    pub fn open(&self, key: &SealingSecretKey, correlation_id: Uuid) -> Result<OperationResult, OpenError> {
        if self.scheme != SEALED_BOX_SCHEME {
            return Err(OpenError::UnknownScheme);
        }
        if self.key_id != key.key_id {
            return Err(OpenError::WrongKey);
        }
        let sealed = BASE64.decode(&self.ciphertext).map_err(|_| OpenError::CannotOpen)?;
        let inside = Zeroizing::new(key.key.unseal(&sealed).map_err(|_| OpenError::CannotOpen)?);
        let inside: Inside = serde_json::from_slice(&inside).map_err(|_| OpenError::CannotOpen)?;
        if inside.correlation_id != correlation_id {
            return Err(OpenError::WrongRequest);
        }
        Ok(inside.result)
    }
}

/// What a sealed box holds.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Inside {
    correlation_id: Uuid,
    result: OperationResult,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{GetSecretResult, SecretData, SecretVersionMetadata};

    fn secret_result() -> OperationResult {
        OperationResult::GetSecret(GetSecretResult {
            data: SecretData::new(json!({"password": "canary-sealed"}).as_object().cloned().unwrap_or_default()),
            metadata: SecretVersionMetadata {
                version: 3,
                created_time: "2026-11-22T00:00:00Z".into(),
                deletion_time: None,
                destroyed: false,
                custom_metadata: None,
            },
        })
    }

    fn pair() -> (SealingSecretKey, SealingPublicKey) {
        let secret = SealingSecretKey::generate("billing-seal").expect("key");
        let public = SealingPublicKey::from_base64("billing-seal", &secret.public_key_base64()).expect("key");
        (secret, public)
    }

    #[test]
    fn only_the_requester_opens_a_sealed_result() {
        let (secret, public) = pair();
        let id = Uuid::new_v4();
        let sealed = public.seal(id, &secret_result()).expect("seals");
        let text = serde_json::to_string(&sealed).expect("serializes");
        assert!(!text.contains("canary-sealed"), "{text}");
        assert!(text.contains(SEALED_BOX_SCHEME) && text.contains("billing-seal"), "{text}");

        let Ok(OperationResult::GetSecret(opened)) = sealed.open(&secret, id) else { panic!("does not open") };
        assert_eq!(opened.data.expose_secret()["password"], "canary-sealed");

        let (other, _) = pair();
        assert_eq!(sealed.open(&other, id).err(), Some(OpenError::CannotOpen));
        assert_eq!(sealed.open(&secret, Uuid::new_v4()).err(), Some(OpenError::WrongRequest));
    }

    #[test]
    fn a_tampered_box_does_not_open() {
        let (secret, public) = pair();
        let id = Uuid::new_v4();
        let mut sealed = public.seal(id, &secret_result()).expect("seals");
        let mut bytes = BASE64.decode(&sealed.ciphertext).expect("base64");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        sealed.ciphertext = BASE64.encode(bytes);
        assert_eq!(sealed.open(&secret, id).err(), Some(OpenError::CannotOpen));
    }
}
