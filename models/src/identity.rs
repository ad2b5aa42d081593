//! A runtime's identity file: its `runtime_id` and private keys, as
//! `onex-vault-adapter keygen` writes it (mode 0600). A requester loads it to
//! sign its requests (as an ONEX runtime signs its `ModelMessageEnvelope`s)
//! and to open sealed replies; the node loads its own to sign its replies.
//!
//! ```json
//! {"runtime_id": "node_billing",
//!  "signing_key": {"id": "node_billing-sign-20261122", "private_key": "<base64 Ed25519 seed>"},
//!  "sealing_key": {"id": "node_billing-seal-20261122", "private_key": "<base64 X25519 key>"}}
//! ```
//!
//! The realm is not part of the identity: it is where the runtime is
//! deployed, and comes from its configuration ([`RuntimeIdentity::signer`]).

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::gateway::{GatewayKeyError, RuntimeSigner};
use crate::keys::check_key_id;
use crate::request::InvalidField;
use crate::sealing::SealingSecretKey;

/// Who a runtime is, with the private keys that prove it.
pub struct RuntimeIdentity {
    pub runtime_id: String,
    /// Which of the runtime's signing keys this is (operators' bookkeeping:
    /// the wire names the runtime, not the key).
    pub signing_key_id: String,
    signing_seed: SecretString,
    pub sealer: SealingSecretKey,
}

impl fmt::Debug for RuntimeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeIdentity")
            .field("runtime_id", &self.runtime_id)
            .field("signing_key_id", &self.signing_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    runtime_id: String,
    signing_key: PrivateKey,
    sealing_key: PrivateKey,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivateKey {
    id: String,
    #[serde(serialize_with = "crate::secret::expose_string")]
    private_key: SecretString,
}

/// What a runtime id or key id may be.
const KEY_ID_RULE: &str = "must be 1 to 64 of A-Z a-z 0-9 . _ -";

impl RuntimeIdentity {
    /// New keys for `runtime_id`, with ids `<runtime_id>-sign-<suffix>` and
    /// `<runtime_id>-seal-<suffix>`.
    pub fn generate(runtime_id: &str, suffix: &str) -> Result<RuntimeIdentity, InvalidField> {
        check_key_id(runtime_id).map_err(|_| InvalidField::new("runtime_id", KEY_ID_RULE))?;
        let signing_key_id = format!("{runtime_id}-sign-{suffix}");
        check_key_id(&signing_key_id).map_err(|e| InvalidField::new("signing_key.id", e.to_string()))?;
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| InvalidField::new("signing_key", format!("no randomness: {e}")))?;
        let signing_seed = SecretString::from(BASE64.encode(seed));
        seed.fill(0);
        let sealer = SealingSecretKey::generate(&format!("{runtime_id}-seal-{suffix}"))
            .map_err(|e| InvalidField::new("sealing_key", e.to_string()))?;
        Ok(RuntimeIdentity { runtime_id: runtime_id.to_owned(), signing_key_id, signing_seed, sealer })
    }

    /// Reads an identity file's text; a problem names the file's field.
    pub fn from_json(text: &str) -> Result<RuntimeIdentity, InvalidField> {
        let file: File =
            serde_json::from_str(text).map_err(|e| InvalidField::new("", format!("not an identity file: {e}")))?;
        check_key_id(&file.runtime_id).map_err(|_| InvalidField::new("runtime_id", KEY_ID_RULE))?;
        check_key_id(&file.signing_key.id).map_err(|_| InvalidField::new("signing_key.id", KEY_ID_RULE))?;
        // Checked now, so that `signer` cannot fail later on a bad key.
        RuntimeSigner::from_seed_base64("", &file.runtime_id, file.signing_key.private_key.expose_secret())
            .map_err(|e: GatewayKeyError| InvalidField::new("signing_key", e.to_string()))?;
        let sealer = SealingSecretKey::from_base64(&file.sealing_key.id, file.sealing_key.private_key.expose_secret())
            .map_err(|e| InvalidField::new("sealing_key", e.to_string()))?;
        Ok(RuntimeIdentity {
            runtime_id: file.runtime_id,
            signing_key_id: file.signing_key.id,
            signing_seed: file.signing_key.private_key,
            sealer,
        })
    }

    /// The signer of this runtime's envelopes in `realm`.
    pub fn signer(&self, realm: &str) -> Result<RuntimeSigner, GatewayKeyError> {
        RuntimeSigner::from_seed_base64(realm, &self.runtime_id, self.signing_seed.expose_secret())
    }

    /// The public signing key, as access policies and verifiers register it.
    pub fn public_key_base64(&self) -> String {
        self.signer("").map(|s| s.public_key_base64()).unwrap_or_default()
    }

    /// The identity file's text (private keys included: write it 0600).
    pub fn to_json(&self) -> String {
        let file = File {
            runtime_id: self.runtime_id.clone(),
            signing_key: PrivateKey { id: self.signing_key_id.clone(), private_key: self.signing_seed.clone() },
            sealing_key: PrivateKey {
                id: self.sealer.key_id().to_owned(),
                private_key: SecretString::from(self.sealer.private_key_base64()),
            },
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// The node's `access_policy.requesters` entry for it, public keys only
    /// (YAML, grants left for the operator to fill in).
    pub fn policy_entry(&self) -> String {
        format!(
            "- runtime_id: {}\n  signing_keys:\n    - {{ id: {}, public_key: \"{}\" }}\n  sealing_key: {{ id: {}, public_key: \"{}\" }}\n  clear_delivery: false\n  wrapped_delivery: false\n  grants:\n    - operations: [get_secret]\n      paths: [\"CHANGE-ME/*\"]\n",
            self.runtime_id,
            self.signing_key_id,
            self.public_key_base64(),
            self.sealer.key_id(),
            self.sealer.public_key_base64(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_file_round_trips_and_its_policy_entry_has_only_public_keys() {
        let identity = RuntimeIdentity::generate("node_billing", "t1").expect("keys");
        let again = RuntimeIdentity::from_json(&identity.to_json()).expect("reads back");
        assert_eq!(again.runtime_id, "node_billing");
        assert_eq!(again.public_key_base64(), identity.public_key_base64());
        assert_eq!(again.sealer.public_key_base64(), identity.sealer.public_key_base64());
        let entry = identity.policy_entry();
        let seed = identity.signing_seed.expose_secret().to_owned();
        assert!(entry.contains(&identity.public_key_base64()), "{entry}");
        assert!(!entry.contains(&seed), "{entry}");
        assert!(!entry.contains(&identity.sealer.private_key_base64()), "{entry}");
        assert!(!format!("{identity:?}").contains(&seed));
        assert_eq!(identity.signer("prod").expect("signer").realm(), "prod");
    }
}
