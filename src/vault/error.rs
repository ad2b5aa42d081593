//! What can go wrong talking to Vault, classified by HTTP status as the wire
//! contract says, and how each kind maps to a reply error code.
//!
//! A `VaultError` never holds Vault's raw answer: the classification reads it
//! once (to tell a check-and-set mismatch from other 400s, say) and keeps only
//! the verdict, so no path, value or token can leak through an error message.

use std::fmt;

use onex_vault_models::{ErrorCode, ErrorReason, ReplyError};
use vaultrs::error::ClientError;

use crate::resilience::Failure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultError {
    /// Vault answered with an error status.
    Status { status: u16, hint: Hint },
    /// No answer: connection refused or reset, DNS.
    Transport,
    /// The TLS handshake failed. Not retried: it will not heal.
    Tls(TlsFailure),
    /// An answer we could not read.
    Malformed,
    /// A fault of the node's own, not Vault's: a request it could not build,
    /// a client it could not make, a routing bug. Says what, never a value.
    Internal(&'static str),
    /// Our own login failed (bad credentials, or the token was refused at start).
    Login { status: Option<u16> },
    /// A `vault.tls` file is not PEM of the right kind.
    TlsFile,
}

/// Which side of a TLS handshake gave up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// The node does not trust Vault's certificate.
    VaultUntrusted,
    /// Vault refused the node with an alert, most often over its client
    /// certificate (missing, or of a CA Vault does not trust).
    NodeRefused,
}

/// What the body of a 400 or 404 told us, reduced to a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    None,
    /// KV v2 "check-and-set parameter did not match the current version".
    CasMismatch,
    /// A lease or token that cannot be renewed.
    NotRenewable,
    /// "lease not found" or an invalid lease id.
    LeaseNotFound,
    /// Transit: "encryption key not found".
    KeyNotFound,
    /// 404 "no handler for route": the mount does not exist.
    NoSuchMount,
    /// 404 with an empty error list: nothing at that path.
    EmptyNotFound,
    /// 503 "Vault is sealed".
    Sealed,
}

impl Hint {
    /// Reads Vault's error strings once and keeps only the verdict.
    pub fn from_errors(status: u16, errors: &[String]) -> Hint {
        let text = errors.join(" ").to_ascii_lowercase();
        match status {
            404 if errors.is_empty() => Hint::EmptyNotFound,
            404 if text.contains("no handler for route") => Hint::NoSuchMount,
            400 if text.contains("check-and-set") || text.contains("cas") && text.contains("did not match") => {
                Hint::CasMismatch
            }
            400 if text.contains("not renewable") => Hint::NotRenewable,
            400 if text.contains("lease not found") || text.contains("invalid lease") => Hint::LeaseNotFound,
            400 if text.contains("key not found") => Hint::KeyNotFound,
            503 if text.contains("sealed") => Hint::Sealed,
            _ => Hint::None,
        }
    }
}

impl VaultError {
    pub fn status(status: u16, errors: &[String]) -> VaultError {
        VaultError::Status { status, hint: Hint::from_errors(status, errors) }
    }

    /// The failed reply's `error` for this error: its code, the finer reason
    /// where there is one, and a message without Vault's raw text.
    pub fn reply_error(&self) -> ReplyError {
        let error = ReplyError::new(self.code(), self.to_string());
        match self {
            VaultError::Status { hint: Hint::CasMismatch, .. } => error.with_reason(ErrorReason::CasMismatch),
            VaultError::Status { hint: Hint::NotRenewable, .. } => error.with_reason(ErrorReason::NotRenewable),
            VaultError::Status { hint: Hint::Sealed, .. } => error.with_reason(ErrorReason::VaultSealed),
            VaultError::Transport => error.with_reason(ErrorReason::VaultUnreachable),
            _ => error,
        }
    }

    /// The ONEX error code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            VaultError::Status { status, hint } => match (status, hint) {
                (400, Hint::CasMismatch) => ErrorCode::InvalidState,
                (400, Hint::LeaseNotFound | Hint::KeyNotFound) => ErrorCode::ResourceNotFound,
                (400 | 405 | 413 | 422, _) => ErrorCode::InvalidInput,
                (401, _) => ErrorCode::AuthenticationError,
                (403, _) => ErrorCode::PermissionDenied,
                (404, _) => ErrorCode::ResourceNotFound,
                (429, _) => ErrorCode::RateLimitError,
                (408, _) => ErrorCode::TimeoutError,
                _ => ErrorCode::ServiceUnavailable,
            },
            VaultError::Transport | VaultError::Tls(_) => ErrorCode::ServiceUnavailable,
            VaultError::Malformed | VaultError::Internal(_) | VaultError::TlsFile => ErrorCode::InternalError,
            VaultError::Login { .. } => ErrorCode::AuthenticationError,
        }
    }
}

impl fmt::Display for VaultError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VaultError::Status { status, hint } => match hint {
                Hint::CasMismatch => {
                    write!(f, "check-and-set version did not match the current version (Vault {status})")
                }
                Hint::NotRenewable => write!(f, "not renewable (Vault {status})"),
                Hint::LeaseNotFound => write!(f, "lease not found (Vault {status})"),
                Hint::KeyNotFound => write!(f, "transit key not found (Vault {status})"),
                Hint::NoSuchMount => write!(f, "no such mount (Vault {status})"),
                Hint::Sealed => write!(f, "Vault is sealed ({status})"),
                Hint::EmptyNotFound | Hint::None => match status {
                    403 => write!(f, "permission denied (Vault 403)"),
                    404 => write!(f, "not found (Vault 404)"),
                    429 => write!(f, "rate limited (Vault 429)"),
                    503 => write!(f, "Vault is sealed or unavailable (503)"),
                    500..=599 => write!(f, "Vault server error ({status})"),
                    _ => write!(f, "Vault refused the request ({status})"),
                },
            },
            VaultError::Transport => f.write_str("Vault is unreachable"),
            VaultError::Tls(TlsFailure::VaultUntrusted) => {
                f.write_str("TLS with Vault failed: its certificate is not trusted by vault.tls.ca_cert (VAULT_CACERT)")
            }
            VaultError::Tls(TlsFailure::NodeRefused) => f.write_str(
                "TLS with Vault failed: Vault refused the handshake, most often over the node's client certificate \
                 (missing, or not from a CA it trusts: vault.tls.client_cert, VAULT_CLIENT_CERT)",
            ),
            VaultError::Malformed => {
                f.write_str("Vault sent an answer the node could not read (a bug or an incompatible server)")
            }
            VaultError::Internal(what) => write!(f, "internal error in the node (a bug): {what}"),
            VaultError::Login { status: Some(s) } => {
                write!(f, "the node's Vault login failed (Vault {s})")
            }
            VaultError::Login { status: None } => f.write_str("the node's Vault login failed"),
            VaultError::TlsFile => f.write_str(
                "vault.tls: a file is not PEM (ca_cert: certificates; client_cert + client_key: a certificate and its key)",
            ),
        }
    }
}

impl std::error::Error for VaultError {}

impl VaultError {
    /// Whether this says Vault is not up yet (unreachable, sealed, starting,
    /// overloaded) rather than that the node is set up wrong: worth waiting
    /// for at start. That is what a retry would heal, also for a login (a
    /// refused login or an untrusted certificate is not).
    pub fn is_vault_not_up(&self) -> bool {
        match *self {
            VaultError::Login { status: Some(status) } => {
                VaultError::Status { status, hint: Hint::None }.is_retryable()
            }
            ref other => other.is_retryable(),
        }
    }
}

impl Failure for VaultError {
    /// Transport errors, 412 (eventual consistency), 429 and 5xx may succeed
    /// on another try; 4xx answers will not.
    fn is_retryable(&self) -> bool {
        match self {
            VaultError::Transport => true,
            VaultError::Status { status, .. } => matches!(status, 408 | 412 | 429 | 500..=599),
            VaultError::Tls(_)
            | VaultError::TlsFile
            | VaultError::Malformed
            | VaultError::Internal(_)
            | VaultError::Login { .. } => false,
        }
    }

    /// Only signs that Vault itself is in trouble open the breaker: a 403 or
    /// 404 is a healthy Vault answering.
    fn counts_against_breaker(&self) -> bool {
        match self {
            VaultError::Transport | VaultError::Tls(_) => true,
            VaultError::Status { status, .. } => matches!(status, 408 | 429 | 500..=599),
            VaultError::TlsFile | VaultError::Malformed | VaultError::Internal(_) | VaultError::Login { .. } => false,
        }
    }
}

impl From<ClientError> for VaultError {
    fn from(error: ClientError) -> Self {
        use rustify::errors::ClientError as Rest;
        match error {
            ClientError::APIError { code, errors } => VaultError::status(code, &errors),
            ClientError::RestClientError { source } => match source {
                Rest::ServerResponseError { code, .. } => VaultError::status(code, &[]),
                Rest::RequestError { .. } | Rest::ResponseError { .. } => {
                    tls_failure(&source).unwrap_or(VaultError::Transport)
                }
                _ => VaultError::Malformed,
            },
            ClientError::ResponseEmptyError
            | ClientError::ResponseDataEmptyError
            | ClientError::JsonParseError { .. } => VaultError::Malformed,
            _ => VaultError::Malformed,
        }
    }
}

impl From<reqwest::Error> for VaultError {
    fn from(error: reqwest::Error) -> Self {
        if error.is_decode() {
            VaultError::Malformed
        } else {
            tls_failure(&error).unwrap_or(VaultError::Transport)
        }
    }
}

/// Whether a transport error (or one it wraps) is a failed TLS handshake, and
/// whose doing: an alert *received* is Vault refusing the node (its client
/// certificate, mostly); a certificate the node could not verify is Vault not
/// being trusted.
fn tls_failure(error: &(dyn std::error::Error + 'static)) -> Option<VaultError> {
    let mut current = Some(error);
    while let Some(error) = current {
        let text = error.to_string().to_ascii_lowercase();
        if text.contains("received fatal alert") {
            return Some(VaultError::Tls(TlsFailure::NodeRefused));
        }
        if text.contains("certificate") || text.contains("handshake") || text.contains("unknownissuer") {
            return Some(VaultError::Tls(TlsFailure::VaultUntrusted));
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, errors: &[&str]) -> VaultError {
        let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        VaultError::status(code, &errors)
    }

    #[test]
    fn classification_follows_the_wire_contract() {
        let cases = [
            (
                status(400, &["check-and-set parameter did not match the current version"]),
                ErrorCode::InvalidState,
                false,
                false,
            ),
            (status(400, &["invalid request"]), ErrorCode::InvalidInput, false, false),
            (status(403, &["permission denied"]), ErrorCode::PermissionDenied, false, false),
            (status(404, &[]), ErrorCode::ResourceNotFound, false, false),
            (status(429, &[]), ErrorCode::RateLimitError, true, true),
            (status(412, &[]), ErrorCode::ServiceUnavailable, true, false),
            (status(500, &["internal"]), ErrorCode::ServiceUnavailable, true, true),
            (status(503, &["Vault is sealed"]), ErrorCode::ServiceUnavailable, true, true),
            (VaultError::Transport, ErrorCode::ServiceUnavailable, true, true),
            (status(400, &["lease not found"]), ErrorCode::ResourceNotFound, false, false),
            (status(400, &["encryption key not found"]), ErrorCode::ResourceNotFound, false, false),
        ];
        for (error, code, retryable, breaker) in cases {
            assert_eq!(error.code(), code, "{error:?}");
            assert_eq!(error.is_retryable(), retryable, "{error:?}");
            assert_eq!(error.counts_against_breaker(), breaker, "{error:?}");
        }
    }

    #[test]
    fn start_up_waits_only_for_a_vault_that_is_not_up() {
        let wait = [
            VaultError::Transport,
            status(503, &["Vault is sealed"]),
            status(500, &[]),
            status(429, &[]),
            VaultError::Login { status: Some(503) },
        ];
        let stop = [
            VaultError::Login { status: Some(403) },
            VaultError::Login { status: Some(400) },
            VaultError::Login { status: None },
            VaultError::Tls(TlsFailure::VaultUntrusted),
            VaultError::Tls(TlsFailure::NodeRefused),
            VaultError::TlsFile,
            VaultError::Malformed,
            VaultError::Internal("a bug"),
            status(403, &["permission denied"]),
        ];
        for error in wait {
            assert!(error.is_vault_not_up(), "{error:?}");
        }
        for error in stop {
            assert!(!error.is_vault_not_up(), "{error:?}");
        }
    }

    #[test]
    fn messages_never_repeat_vaults_text() {
        let error = status(403, &["permission denied on secret/data/billing/stripe token=hvs.canary"]);
        let text = error.to_string();
        assert!(!text.contains("billing") && !text.contains("canary"), "{text}");
    }

    #[test]
    fn empty_list_and_missing_mount_are_told_apart() {
        assert_eq!(Hint::from_errors(404, &[]), Hint::EmptyNotFound);
        assert_eq!(Hint::from_errors(404, &["no handler for route \"nope/metadata\"".into()]), Hint::NoSuchMount);
    }
}
