//! What every key in this crate shares: key ids, and 32-byte keys in base64.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

/// Longest key id, in bytes.
const MAX_KEY_ID_BYTES: usize = 64;

/// A key or key id that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError;

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unusable key or key id")
    }
}

impl std::error::Error for KeyError {}

/// Key ids (and runtime ids): 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn check_key_id(key_id: &str) -> Result<(), KeyError> {
    let ok = !key_id.is_empty()
        && key_id.len() <= MAX_KEY_ID_BYTES
        && key_id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(KeyError)
    }
}

/// A 32-byte key from standard base64.
pub(crate) fn decode_32(text: &str) -> Result<[u8; 32], KeyError> {
    BASE64.decode(text.trim()).ok().and_then(|b| b.try_into().ok()).ok_or(KeyError)
}
