//! A requester's identity file: its name and private keys, as
//! `onex-vault-adapter keygen` writes it (mode 0600) and requesters load it
//! to sign requests and open sealed replies.
//!
//! ```json
//! {"requester": "node_billing",
//!  "signing_key": {"id": "node_billing-sign-20261122", "private_key": "<base64>"},
//!  "sealing_key": {"id": "node_billing-seal-20261122", "private_key": "<base64>"}}
//! ```

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::sealing::SealingSecretKey;
use crate::signing::{RequestSigner, SignatureError};

/// Who a requester is, with the private keys that prove it.
pub struct RequesterIdentity {
    pub requester: String,
    pub signer: RequestSigner,
    pub sealer: SealingSecretKey,
}

impl fmt::Debug for RequesterIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequesterIdentity").field("requester", &self.requester).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    requester: String,
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

impl RequesterIdentity {
    /// New keys for `requester`, with ids `<requester>-sign-<suffix>` and
    /// `<requester>-seal-<suffix>`.
    pub fn generate(requester: &str, suffix: &str) -> Result<RequesterIdentity, SignatureError> {
        Ok(RequesterIdentity {
            requester: requester.to_owned(),
            signer: RequestSigner::generate(&format!("{requester}-sign-{suffix}"))?,
            sealer: SealingSecretKey::generate(&format!("{requester}-seal-{suffix}"))?,
        })
    }

    /// Reads an identity file's text.
    pub fn from_json(text: &str) -> Result<RequesterIdentity, String> {
        let file: File = serde_json::from_str(text).map_err(|e| format!("not an identity file: {e}"))?;
        let signer = RequestSigner::from_base64(&file.signing_key.id, file.signing_key.private_key.expose_secret())
            .map_err(|e| format!("signing_key: {e}"))?;
        let sealer = SealingSecretKey::from_base64(&file.sealing_key.id, file.sealing_key.private_key.expose_secret())
            .map_err(|e| format!("sealing_key: {e}"))?;
        Ok(RequesterIdentity { requester: file.requester, signer, sealer })
    }

    /// The identity file's text (private keys included: write it 0600).
    pub fn to_json(&self) -> String {
        let file = File {
            requester: self.requester.clone(),
            signing_key: PrivateKey {
                id: self.signer.key_id().to_owned(),
                private_key: SecretString::from(self.signer.private_key_base64()),
            },
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
            "- name: {}\n  signing_keys:\n    - {{ id: {}, public_key: \"{}\" }}\n  sealing_key: {{ id: {}, public_key: \"{}\" }}\n  clear_delivery: false\n  grants:\n    - operations: [get_secret]\n      paths: [\"CHANGE-ME/*\"]\n",
            self.requester,
            self.signer.key_id(),
            self.signer.public_key_base64(),
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
        let identity = RequesterIdentity::generate("node_billing", "t1").expect("keys");
        let again = RequesterIdentity::from_json(&identity.to_json()).expect("reads back");
        assert_eq!(again.requester, "node_billing");
        assert_eq!(again.signer.public_key_base64(), identity.signer.public_key_base64());
        assert_eq!(again.sealer.public_key_base64(), identity.sealer.public_key_base64());
        let entry = identity.policy_entry();
        assert!(entry.contains(&identity.signer.public_key_base64()), "{entry}");
        assert!(!entry.contains(&identity.signer.private_key_base64()), "{entry}");
        assert!(!entry.contains(&identity.sealer.private_key_base64()), "{entry}");
        assert!(!format!("{identity:?}").contains(&identity.signer.private_key_base64()));
    }
}
