//! Sealed input: secret material a requester sealed to the node's X25519
//! key (`set_secret`'s `sealed_data`, `encrypt`'s `sealed_plaintext`),
//! opened here, just before the Vault call, with the sealing key of the
//! node's runtime identity.
//!
//! A box opens only for the request it was sealed for: the operation, the
//! `mount` as written and the path (or transit key) always; the request's
//! correlation id and its requester (the signing `runtime_id` in the strict
//! profile, `source_tool` otherwise) when the caller knows them
//! ([`RequestBinding`]). Whatever fails (no identity, another key or
//! scheme, a changed byte, another request) is `ONEX_CORE_007_INVALID_INPUT`,
//! not retryable, and nothing reaches Vault: the request was already
//! admitted by the gate, so the fault is in its payload. The opened material
//! lives only in `SecretData` / `SecretString` and is never logged.

use std::borrow::Cow;

use onex_vault_models::{
    ErrorCode, InputBinding, MountName, OpenError, ReplyError, SealedInput, SealedMaterial, SealingSecretKey,
    VaultRequest,
};
use uuid::Uuid;

/// What the node knows of the request a sealed input arrives in, beyond its
/// payload: its correlation id and who sent it.
#[derive(Debug, Clone, Copy)]
pub struct RequestBinding<'a> {
    /// The request's reply correlation id (`Envelope::reply_correlation_id`).
    pub correlation_id: Uuid,
    /// The signing `runtime_id` (strict), else the envelope's `source_tool`.
    pub requester: Option<&'a str>,
}

/// `request` with its sealed input (if any) opened into the clear field,
/// ready for the Vault call; `request` itself when it has none.
pub fn open<'r>(
    request: &'r VaultRequest,
    key: Option<&SealingSecretKey>,
    bound: Option<&RequestBinding<'_>>,
) -> Result<Cow<'r, VaultRequest>, ReplyError> {
    let (field, sealed, mount, target) = match request {
        VaultRequest::SetSecret(set) => match &set.sealed_data {
            Some(sealed) => ("sealed_data", sealed, &set.mount, set.path.as_str()),
            None => return Ok(Cow::Borrowed(request)),
        },
        VaultRequest::Encrypt(encrypt) => match &encrypt.sealed_plaintext {
            Some(sealed) => ("sealed_plaintext", sealed, &encrypt.mount, encrypt.key.as_str()),
            None => return Ok(Cow::Borrowed(request)),
        },
        _ => return Ok(Cow::Borrowed(request)),
    };
    let invalid = |problem: &str| ReplyError::new(ErrorCode::InvalidInput, format!("payload.{field}: {problem}"));
    let key = key.ok_or_else(|| {
        invalid(
            "this node has no runtime identity (security.identity_file), so it has no key to open sealed input; \
             send the material in clear or give the node an identity",
        )
    })?;
    let opened = open_box(sealed, key).map_err(|problem| invalid(&problem))?;
    check_binding(&opened.binding, request, mount, target, bound).map_err(|problem| invalid(&problem))?;
    let opened = match (request, opened.material) {
        (VaultRequest::SetSecret(set), SealedMaterial::Data(data)) => {
            let mut set = set.clone();
            set.data = data;
            set.sealed_data = None;
            VaultRequest::SetSecret(set)
        }
        (VaultRequest::Encrypt(encrypt), SealedMaterial::Plaintext(plaintext)) => {
            let mut encrypt = encrypt.clone();
            encrypt.plaintext = plaintext;
            encrypt.sealed_plaintext = None;
            VaultRequest::Encrypt(encrypt)
        }
        _ => return Err(invalid("the sealed material is not the one of this operation (data or plaintext)")),
    };
    // The material was not seen by the decoder's checks: the same ones now.
    opened.validate().map_err(|problem| invalid(&format!("once opened, {problem}")))?;
    Ok(Cow::Owned(opened))
}

fn open_box(sealed: &SealedInput, key: &SealingSecretKey) -> Result<onex_vault_models::OpenedInput, String> {
    sealed.open(key).map_err(|error| match error {
        OpenError::WrongKey => {
            format!("sealed to key {:?}; this node's sealing key is {:?}", sealed.key_id, key.key_id())
        }
        OpenError::UnknownScheme => format!("unknown scheme; use {}", onex_vault_models::SEALED_BOX_SCHEME),
        OpenError::CannotOpen | OpenError::WrongRequest => {
            "cannot be opened: tampered with, not sealed to this node's key, or not sealed input".to_owned()
        }
    })
}

/// Whether the box was sealed for this request; else which part differs.
fn check_binding(
    inside: &InputBinding,
    request: &VaultRequest,
    mount: &Option<MountName>,
    target: &str,
    bound: Option<&RequestBinding<'_>>,
) -> Result<(), String> {
    let other = |what: &str| Err(format!("sealed for another {what}: it opens only in the request it was sealed for"));
    if inside.operation != request.operation().as_str() {
        return other("operation");
    }
    if inside.mount.as_deref() != mount.as_ref().map(MountName::as_str) {
        return other("mount");
    }
    if inside.target != target {
        return other(match request {
            VaultRequest::Encrypt(_) => "transit key",
            _ => "path",
        });
    }
    if let Some(bound) = bound {
        if inside.correlation_id != bound.correlation_id {
            return other("request (correlation_id)");
        }
        if bound.requester != Some(inside.requester.as_str()) {
            return other("requester");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use onex_vault_models::{SealingPublicKey, SecretData, TransitEncrypt};
    use secrecy::ExposeSecret as _;
    use serde_json::json;

    use super::*;

    fn node_key() -> (SealingSecretKey, SealingPublicKey) {
        let secret = SealingSecretKey::generate("node-seal-t1").expect("key");
        let public = SealingPublicKey::from_base64("node-seal-t1", &secret.public_key_base64()).expect("key");
        (secret, public)
    }

    fn binding(correlation_id: Uuid, operation: &str, target: &str) -> InputBinding {
        InputBinding {
            correlation_id,
            requester: "node_billing".into(),
            operation: operation.into(),
            mount: None,
            target: target.into(),
        }
    }

    fn sealed_set(public: &SealingPublicKey, inside: &InputBinding, path: &str) -> VaultRequest {
        let data = SecretData::new(json!({"password": "canary-open"}).as_object().cloned().unwrap_or_default());
        let sealed = public.seal_input(inside, &SealedMaterial::Data(data)).expect("seals");
        serde_json::from_value(json!({"operation": "set_secret", "path": path, "sealed_data": sealed}))
            .expect("a sealed set_secret")
    }

    #[test]
    fn a_sealed_set_secret_opens_for_its_own_request_only() {
        let (secret, public) = node_key();
        let id = Uuid::new_v4();
        let request = sealed_set(&public, &binding(id, "set_secret", "app/db"), "app/db");
        request.validate().expect("a sealed set_secret is valid before opening");
        let bound = RequestBinding { correlation_id: id, requester: Some("node_billing") };

        let opened = open(&request, Some(&secret), Some(&bound)).expect("opens");
        let VaultRequest::SetSecret(set) = opened.as_ref() else { panic!("a set_secret") };
        assert_eq!(set.data.expose_secret()["password"], "canary-open");
        assert!(set.sealed_data.is_none());
        // Without the envelope's binding, operation, mount and path still hold.
        assert!(open(&request, Some(&secret), None).is_ok());

        let refused = |request: &VaultRequest, bound: &RequestBinding<'_>, key: Option<&SealingSecretKey>| {
            let error = open(request, key, Some(bound)).expect_err("refused");
            assert_eq!(error.code, ErrorCode::InvalidInput);
            assert!(!error.message.contains("canary"), "{}", error.message);
            error.message
        };
        let elsewhere = sealed_set(&public, &binding(id, "set_secret", "app/db"), "app/other");
        assert!(refused(&elsewhere, &bound, Some(&secret)).contains("another path"));
        let other_request = RequestBinding { correlation_id: Uuid::new_v4(), ..bound };
        assert!(refused(&request, &other_request, Some(&secret)).contains("correlation_id"));
        let thief = RequestBinding { requester: Some("node_thief"), ..bound };
        assert!(refused(&request, &thief, Some(&secret)).contains("requester"));
        let unsigned = RequestBinding { requester: None, ..bound };
        assert!(refused(&request, &unsigned, Some(&secret)).contains("requester"));
        let (stranger, _) = node_key();
        assert!(refused(&request, &bound, Some(&stranger)).contains("cannot be opened"));
        assert!(refused(&request, &bound, None).contains("no runtime identity"));
    }

    #[test]
    fn a_sealed_plaintext_opens_into_an_encrypt() {
        let (secret, public) = node_key();
        let id = Uuid::new_v4();
        let plaintext = SealedMaterial::Plaintext(secrecy::SecretString::from("aGVsbG8="));
        let sealed = public.seal_input(&binding(id, "encrypt", "orders"), &plaintext).expect("seals");
        let request = VaultRequest::Encrypt(TransitEncrypt {
            namespace: None,
            mount: None,
            key: "orders".into(),
            plaintext: Default::default(),
            sealed_plaintext: Some(sealed.clone()),
            context: None,
        });
        request.validate().expect("valid");
        let bound = RequestBinding { correlation_id: id, requester: Some("node_billing") };
        let opened = open(&request, Some(&secret), Some(&bound)).expect("opens");
        let VaultRequest::Encrypt(encrypt) = opened.as_ref() else { panic!("an encrypt") };
        assert_eq!(encrypt.plaintext.expose_secret(), "aGVsbG8=");

        // The same box in a set_secret: another operation.
        let pasted: VaultRequest =
            serde_json::from_value(json!({"operation": "set_secret", "path": "orders", "sealed_data": sealed}))
                .expect("request");
        let error = open(&pasted, Some(&secret), Some(&bound)).expect_err("refused");
        assert!(error.message.contains("another operation"), "{}", error.message);
    }
}
