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
//!
//! Sealed input works the other way: a requester seals the secret material
//! it sends (`set_secret`'s data, `encrypt`'s plaintext) to the node's own
//! X25519 key ([`SealingPublicKey::seal_input`]), so the request topic never
//! carries it in clear. The box holds the material with what it is bound to
//! ([`InputBinding`]: the request's correlation id, the requester, the
//! operation, mount and path or transit key), so a box cut from one request
//! opens for no other. Other languages seal with libsodium's
//! `crypto_box_seal`; the JSON inside is:
//!
//! ```json
//! {"correlation_id": "<uuid>", "requester": "node_billing", "operation": "set_secret",
//!  "mount": null, "target": "billing/db", "data": {"password": "…"}}
//! ```
//!
//! (`encrypt`: `"target"` is the transit key name, `"plaintext"` the base64
//! plaintext instead of `"data"`.)

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use schemars::JsonSchema;
use secrecy::zeroize::Zeroizing;
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::{check_key_id, decode_32, KeyError};
use crate::reply::OperationResult;
use crate::request::MAX_SECRET_DATA_BYTES;
use crate::secret::SecretData;

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

    /// Seals secret material a request sends to the node (this key being
    /// the node's), bound to `binding`.
    pub fn seal_input(
        &self,
        binding: &InputBinding,
        material: &SealedMaterial,
    ) -> Result<SealedInput, serde_json::Error> {
        let (data, plaintext) = match material {
            SealedMaterial::Data(data) => (Some(data), None),
            SealedMaterial::Plaintext(plaintext) => (None, Some(plaintext.expose_secret())),
        };
        let inside = InputInsideRef {
            correlation_id: binding.correlation_id,
            requester: &binding.requester,
            operation: &binding.operation,
            mount: binding.mount.as_deref(),
            target: &binding.target,
            data,
            plaintext,
        };
        let inside = Zeroizing::new(serde_json::to_vec(&inside)?);
        let sealed = self
            .key
            .seal(&mut crypto_box::aead::OsRng, &inside)
            .map_err(|_| serde::ser::Error::custom("sealing failed"))?;
        Ok(SealedInput {
            scheme: SEALED_BOX_SCHEME.to_owned(),
            key_id: self.key_id.clone(),
            ciphertext: BASE64.encode(sealed),
        })
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

/// Longest `ciphertext` of a [`SealedInput`], in characters: the base64 of
/// the largest `set_secret` data with its binding, sealed.
pub const MAX_SEALED_INPUT_CHARS: usize = (MAX_SECRET_DATA_BYTES + 4096 + 48).div_ceil(3) * 4;

/// Secret material of a request, sealed to the node's X25519 key:
/// `set_secret`'s `sealed_data`, `encrypt`'s `sealed_plaintext`. Only the
/// node opens it, and only for the request it was sealed for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SealedInput {
    /// `x25519-xsalsa20poly1305-sealedbox` ([`SEALED_BOX_SCHEME`]).
    pub scheme: String,
    /// Which of the node's keys it is sealed to (the node's `sealing_key.id`).
    pub key_id: String,
    /// Base64 of the sealed box (libsodium `crypto_box_seal`). Inside:
    /// `{"correlation_id", "requester", "operation", "mount", "target", "data" | "plaintext"}`.
    #[schemars(length(max = MAX_SEALED_INPUT_CHARS))]
    pub ciphertext: String,
}

impl fmt::Debug for SealedInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedInput")
            .field("scheme", &self.scheme)
            .field("key_id", &self.key_id)
            .field("ciphertext_chars", &self.ciphertext.len())
            .finish()
    }
}

/// What sealed input is bound to: the request it was sealed for. The node
/// opens it only when every field matches the request it arrives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputBinding {
    /// The request's `correlation_id` (its `envelope_id` when it has none):
    /// every attempt of one call shares it.
    pub correlation_id: Uuid,
    /// Who sends the request: the `runtime_id` that signs it (the node's
    /// strict profile), else its `source_tool`.
    pub requester: String,
    /// The operation's name (`set_secret`, `encrypt`; never an alias).
    pub operation: String,
    /// The request's `mount` as written; `None` when it names none.
    pub mount: Option<String>,
    /// `set_secret`'s path, `encrypt`'s transit key name.
    pub target: String,
}

/// The secret material inside a [`SealedInput`].
#[derive(Debug, Clone)]
pub enum SealedMaterial {
    /// `set_secret`'s data.
    Data(SecretData),
    /// `encrypt`'s base64 plaintext.
    Plaintext(secrecy::SecretString),
}

/// A [`SealedInput`] opened: its material and what it was bound to (for the
/// caller to compare with the request it came in).
#[derive(Debug)]
pub struct OpenedInput {
    pub binding: InputBinding,
    pub material: SealedMaterial,
}

impl SealedInput {
    /// The material and binding inside, if the box was sealed to `key`.
    /// The caller checks the binding ([`SealedInput::open_for`] does both).
    pub fn open(&self, key: &SealingSecretKey) -> Result<OpenedInput, OpenError> {
        if self.scheme != SEALED_BOX_SCHEME {
            return Err(OpenError::UnknownScheme);
        }
        if self.key_id != key.key_id {
            return Err(OpenError::WrongKey);
        }
        if self.ciphertext.len() > MAX_SEALED_INPUT_CHARS {
            return Err(OpenError::CannotOpen);
        }
        let sealed = BASE64.decode(&self.ciphertext).map_err(|_| OpenError::CannotOpen)?;
        let inside = Zeroizing::new(key.key.unseal(&sealed).map_err(|_| OpenError::CannotOpen)?);
        let inside: InputInside = serde_json::from_slice(&inside).map_err(|_| OpenError::CannotOpen)?;
        let material = match (inside.data, inside.plaintext) {
            (Some(data), None) => SealedMaterial::Data(data),
            (None, Some(plaintext)) => SealedMaterial::Plaintext(plaintext),
            _ => return Err(OpenError::CannotOpen),
        };
        let binding = InputBinding {
            correlation_id: inside.correlation_id,
            requester: inside.requester,
            operation: inside.operation,
            mount: inside.mount,
            target: inside.target,
        };
        Ok(OpenedInput { binding, material })
    }

    /// The material inside, if the box was sealed to `key` for `expected`.
    pub fn open_for(&self, key: &SealingSecretKey, expected: &InputBinding) -> Result<SealedMaterial, OpenError> {
        let opened = self.open(key)?;
        if opened.binding != *expected {
            return Err(OpenError::WrongRequest);
        }
        Ok(opened.material)
    }
}

/// What a sealed input's box holds, as the sealer writes it.
#[derive(Serialize)]
struct InputInsideRef<'a> {
    correlation_id: Uuid,
    requester: &'a str,
    operation: &'a str,
    mount: Option<&'a str>,
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a SecretData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<&'a str>,
}

/// What a sealed input's box holds, as the node reads it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputInside {
    correlation_id: Uuid,
    requester: String,
    operation: String,
    #[serde(default)]
    mount: Option<String>,
    target: String,
    #[serde(default)]
    data: Option<SecretData>,
    #[serde(default)]
    plaintext: Option<secrecy::SecretString>,
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

    fn input_binding(target: &str) -> InputBinding {
        InputBinding {
            correlation_id: Uuid::new_v4(),
            requester: "node_billing".into(),
            operation: "set_secret".into(),
            mount: None,
            target: target.into(),
        }
    }

    #[test]
    fn sealed_input_opens_only_with_the_nodes_key_and_for_its_request() {
        let (node, node_public) = pair();
        let data = SecretData::new(json!({"password": "canary-input"}).as_object().cloned().unwrap_or_default());
        let binding = input_binding("billing/db");
        let sealed = node_public.seal_input(&binding, &SealedMaterial::Data(data)).expect("seals");
        let text = serde_json::to_string(&sealed).expect("serializes");
        assert!(!text.contains("canary-input") && !format!("{sealed:?}").contains(&sealed.ciphertext), "{text}");

        let Ok(SealedMaterial::Data(opened)) = sealed.open_for(&node, &binding) else { panic!("does not open") };
        assert_eq!(opened.expose_secret()["password"], "canary-input");
        for other in [
            InputBinding { target: "billing/other".into(), ..binding.clone() },
            InputBinding { correlation_id: Uuid::new_v4(), ..binding.clone() },
            InputBinding { requester: "node_thief".into(), ..binding.clone() },
            InputBinding { mount: Some("kv".into()), ..binding.clone() },
            InputBinding { operation: "encrypt".into(), ..binding.clone() },
        ] {
            assert_eq!(sealed.open_for(&node, &other).err(), Some(OpenError::WrongRequest), "{other:?}");
        }
        let (stranger, _) = pair();
        assert_eq!(sealed.open(&stranger).err(), Some(OpenError::CannotOpen));
        let mut tampered = sealed.clone();
        let mut bytes = BASE64.decode(&tampered.ciphertext).expect("base64");
        bytes[40] ^= 1;
        tampered.ciphertext = BASE64.encode(bytes);
        assert_eq!(tampered.open(&node).err(), Some(OpenError::CannotOpen));
        let elsewhere = SealedInput { key_id: "other-seal".into(), ..sealed.clone() };
        assert_eq!(elsewhere.open(&node).err(), Some(OpenError::WrongKey));
    }

    #[test]
    fn sealed_plaintext_round_trips() {
        let (node, node_public) = pair();
        let binding = InputBinding { operation: "encrypt".into(), ..input_binding("orders") };
        let material = SealedMaterial::Plaintext(secrecy::SecretString::from("aGVsbG8="));
        let sealed = node_public.seal_input(&binding, &material).expect("seals");
        let Ok(SealedMaterial::Plaintext(opened)) = sealed.open_for(&node, &binding) else { panic!("does not open") };
        assert_eq!(opened.expose_secret(), "aGVsbG8=");
    }
}
