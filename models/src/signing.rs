//! Request signatures: how a requester proves that a request record is its own.
//!
//! The requester signs, with its Ed25519 key, the exact bytes of the record
//! value together with the topic it sends them to, and puts the signature in
//! the record header [`SIGNATURE_HEADER`]:
//!
//! ```text
//! onex-signature: v1;key_id=node_billing-2026-11;sig=<base64 of the 64-byte signature>
//! ```
//!
//! The signed message is `onex-vault-request/v1\n<topic>\n<record value>`: the
//! prefix keeps the signature from meaning anything to another protocol, the
//! topic keeps a record from being replayed onto another topic. Keys are
//! 32-byte Ed25519 keys in standard base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, Verifier as _};

/// The record header that carries the signature.
pub const SIGNATURE_HEADER: &str = "onex-signature";
/// What the signed message starts with.
const DOMAIN: &[u8] = b"onex-vault-request/v1\n";
/// Longest key id, in bytes.
const MAX_KEY_ID_BYTES: usize = 64;

/// Why a signature header could not be used. Deliberately coarse: the node
/// answers every one of them with the same `ONEX_CORE_025_PERMISSION_DENIED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// No header, or not in the `v1;key_id=…;sig=…` form.
    Malformed,
    /// The signature does not match the record under the named key.
    Invalid,
    /// A key or key id that cannot be used.
    BadKey,
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureError::Malformed => "signature header missing or malformed",
            SignatureError::Invalid => "signature does not match the record",
            SignatureError::BadKey => "unusable key",
        })
    }
}

impl std::error::Error for SignatureError {}

/// A requester's private signing key and the id the node knows it by.
pub struct RequestSigner {
    key_id: String,
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer from a 32-byte Ed25519 private key (seed) in base64.
    pub fn from_base64(key_id: &str, private_key: &str) -> Result<RequestSigner, SignatureError> {
        check_key_id(key_id)?;
        let bytes = decode_32(private_key)?;
        Ok(RequestSigner { key_id: key_id.to_owned(), key: ed25519_dalek::SigningKey::from_bytes(&bytes) })
    }

    /// A new random key pair, e.g. for `onex-vault-adapter keygen` and tests.
    pub fn generate(key_id: &str) -> Result<RequestSigner, SignatureError> {
        check_key_id(key_id)?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|_| SignatureError::BadKey)?;
        Ok(RequestSigner { key_id: key_id.to_owned(), key: ed25519_dalek::SigningKey::from_bytes(&seed) })
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
        BASE64.encode(self.key.verifying_key().to_bytes())
    }

    /// The header value that signs `value` sent to `topic`.
    pub fn sign(&self, topic: &str, value: &[u8]) -> String {
        let signature = self.key.sign(&message(topic, value));
        format!("v1;key_id={};sig={}", self.key_id, BASE64.encode(signature.to_bytes()))
    }
}

/// A signature header, parsed: which key signed, and the signature.
#[derive(Debug, Clone)]
pub struct RequestSignature {
    pub key_id: String,
    signature: ed25519_dalek::Signature,
}

impl RequestSignature {
    /// Parses `v1;key_id=<id>;sig=<base64>`.
    pub fn parse(header: &[u8]) -> Result<RequestSignature, SignatureError> {
        let text = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?;
        let mut parts = text.trim().split(';');
        if parts.next() != Some("v1") {
            return Err(SignatureError::Malformed);
        }
        let key_id = parts.next().and_then(|p| p.strip_prefix("key_id=")).ok_or(SignatureError::Malformed)?;
        let sig = parts.next().and_then(|p| p.strip_prefix("sig=")).ok_or(SignatureError::Malformed)?;
        if parts.next().is_some() {
            return Err(SignatureError::Malformed);
        }
        check_key_id(key_id).map_err(|_| SignatureError::Malformed)?;
        let bytes: [u8; 64] =
            BASE64.decode(sig).ok().and_then(|b| b.try_into().ok()).ok_or(SignatureError::Malformed)?;
        Ok(RequestSignature { key_id: key_id.to_owned(), signature: ed25519_dalek::Signature::from_bytes(&bytes) })
    }

    /// Checks the signature over `value` sent to `topic` against `key`.
    pub fn verify(&self, key: &VerifyingKey, topic: &str, value: &[u8]) -> Result<(), SignatureError> {
        key.0.verify(&message(topic, value), &self.signature).map_err(|_| SignatureError::Invalid)
    }
}

/// A requester's public signing key, as registered in the access policy.
#[derive(Clone, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({})", BASE64.encode(self.0.to_bytes()))
    }
}

impl VerifyingKey {
    /// A public key from its 32 bytes in base64.
    pub fn from_base64(public_key: &str) -> Result<VerifyingKey, SignatureError> {
        let bytes = decode_32(public_key)?;
        ed25519_dalek::VerifyingKey::from_bytes(&bytes).map(VerifyingKey).map_err(|_| SignatureError::BadKey)
    }
}

fn message(topic: &str, value: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + topic.len() + 1 + value.len());
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(topic.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(value);
    message
}

/// Key ids: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_key_id(key_id: &str) -> Result<(), SignatureError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_BYTES
        && key_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(SignatureError::BadKey)
    }
}

pub(crate) fn decode_32(text: &str) -> Result<[u8; 32], SignatureError> {
    BASE64.decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(SignatureError::BadKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> RequestSigner {
        RequestSigner::generate("billing-1").expect("key")
    }

    fn verify(signer: &RequestSigner, header: &str, topic: &str, value: &[u8]) -> Result<(), SignatureError> {
        let key = VerifyingKey::from_base64(&signer.public_key_base64())?;
        RequestSignature::parse(header.as_bytes())?.verify(&key, topic, value)
    }

    #[test]
    fn a_signature_verifies_for_its_record_and_topic_only() {
        let s = signer();
        let header = s.sign("onex.cmd.a.b.v1", b"{\"x\":1}");
        assert!(header.starts_with("v1;key_id=billing-1;sig="), "{header}");
        assert_eq!(verify(&s, &header, "onex.cmd.a.b.v1", b"{\"x\":1}"), Ok(()));
        assert_eq!(verify(&s, &header, "onex.cmd.a.b.v1", b"{\"x\":2}"), Err(SignatureError::Invalid));
        assert_eq!(verify(&s, &header, "onex.cmd.a.c.v1", b"{\"x\":1}"), Err(SignatureError::Invalid));
        assert_eq!(verify(&signer(), &header, "onex.cmd.a.b.v1", b"{\"x\":1}"), Err(SignatureError::Invalid));
    }

    #[test]
    fn a_key_survives_base64() {
        let s = signer();
        let again = RequestSigner::from_base64("billing-1", &s.private_key_base64()).expect("key");
        assert_eq!(again.public_key_base64(), s.public_key_base64());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for header in ["", "v2;key_id=a;sig=AAAA", "v1;key_id=a", "v1;sig=AAAA;key_id=a", "v1;key_id=a b;sig=AAAA"] {
            assert_eq!(RequestSignature::parse(header.as_bytes()).err(), Some(SignatureError::Malformed), "{header}");
        }
        assert!(RequestSignature::parse(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let s = signer();
        assert!(!format!("{s:?}").contains(&s.private_key_base64()));
    }
}
