//! Error codes and the `error` object of a failed reply.
//!
//! Codes are values of omnibase-core's `EnumCoreErrorCode` (0.47.57), the
//! only codes an ONEX requester knows; the node sends no other. Where the
//! node knows more than the code can say (a check-and-set mismatch, a sealed
//! Vault), `reason` says it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest error message a reply carries, in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// Why a request failed, as an `EnumCoreErrorCode` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ErrorCode {
    /// Schema violation, bad path, oversized message, unknown field.
    #[serde(rename = "ONEX_CORE_007_INVALID_INPUT")]
    InvalidInput,
    /// Unknown `operation`.
    #[serde(rename = "ONEX_CORE_084_UNSUPPORTED_OPERATION")]
    UnsupportedOperation,
    /// Vault 403, or the node's access policy refuses the requester.
    #[serde(rename = "ONEX_CORE_025_PERMISSION_DENIED")]
    PermissionDenied,
    /// Secret, version, key or lease not found.
    #[serde(rename = "ONEX_CORE_085_RESOURCE_NOT_FOUND")]
    ResourceNotFound,
    /// The secret is not in the state the request assumed (`reason`:
    /// `cas_mismatch`).
    #[serde(rename = "ONEX_CORE_086_INVALID_STATE")]
    InvalidState,
    /// Vault 429.
    #[serde(rename = "ONEX_CORE_162_RATE_LIMIT_ERROR")]
    RateLimitError,
    /// Vault call timed out after retries, or the request expired.
    #[serde(rename = "ONEX_CORE_092_TIMEOUT_ERROR")]
    TimeoutError,
    /// Circuit open, Vault sealed, unreachable, 5xx after retries.
    #[serde(rename = "ONEX_CORE_205_SERVICE_UNAVAILABLE")]
    ServiceUnavailable,
    /// The node's own Vault login or token failed.
    #[serde(rename = "ONEX_CORE_163_AUTHENTICATION_ERROR")]
    AuthenticationError,
    /// A bug in the node.
    #[serde(rename = "ONEX_CORE_089_INTERNAL_ERROR")]
    InternalError,
}

impl ErrorCode {
    /// Whether the requester may retry the same request later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimitError
                | ErrorCode::TimeoutError
                | ErrorCode::ServiceUnavailable
                | ErrorCode::AuthenticationError
        )
    }

    /// The code as it appears on the wire, e.g. `ONEX_CORE_085_RESOURCE_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "ONEX_CORE_007_INVALID_INPUT",
            ErrorCode::UnsupportedOperation => "ONEX_CORE_084_UNSUPPORTED_OPERATION",
            ErrorCode::PermissionDenied => "ONEX_CORE_025_PERMISSION_DENIED",
            ErrorCode::ResourceNotFound => "ONEX_CORE_085_RESOURCE_NOT_FOUND",
            ErrorCode::InvalidState => "ONEX_CORE_086_INVALID_STATE",
            ErrorCode::RateLimitError => "ONEX_CORE_162_RATE_LIMIT_ERROR",
            ErrorCode::TimeoutError => "ONEX_CORE_092_TIMEOUT_ERROR",
            ErrorCode::ServiceUnavailable => "ONEX_CORE_205_SERVICE_UNAVAILABLE",
            ErrorCode::AuthenticationError => "ONEX_CORE_163_AUTHENTICATION_ERROR",
            ErrorCode::InternalError => "ONEX_CORE_089_INTERNAL_ERROR",
        }
    }

    /// The short name (`RESOURCE_NOT_FOUND`), for metric labels and logs.
    pub fn name(self) -> &'static str {
        let code = self.as_str();
        // "ONEX_CORE_085_" is 14 characters.
        code.get(14..).unwrap_or(code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the node knows beyond the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReason {
    /// `set_secret`/`rotate_secret` with a `cas` that is not the current version.
    CasMismatch,
    /// Vault answered that it is sealed.
    VaultSealed,
    /// The node could not reach Vault.
    VaultUnreachable,
    /// The node's circuit breaker is open: Vault was not called.
    CircuitOpen,
    /// `envelope_timestamp + timeout_seconds` had passed when the node reached it.
    RequestExpired,
    /// The lease cannot be renewed.
    NotRenewable,
    /// The record was not a usable envelope (it was also dead-lettered).
    UnusableRecord,
}

/// The `error` object of a failed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyError {
    pub code: ErrorCode,
    /// The finer cause, where the node knows one the code cannot say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<ErrorReason>,
    /// Human text; never a secret value, a token or Vault's raw answer.
    pub message: String,
    pub retryable: bool,
    /// When to retry, set when the node's circuit breaker is open.
    pub retry_after_ms: Option<u64>,
}

impl ReplyError {
    /// An error of `code`; `message` is cut at [`MAX_ERROR_MESSAGE_BYTES`]
    /// (it may name fields of a hostile record, and travels in replies, dead
    /// letters and logs).
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_BYTES {
            let mut end = MAX_ERROR_MESSAGE_BYTES - '…'.len_utf8();
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        ReplyError { code, reason: None, message, retryable: code.retryable(), retry_after_ms: None }
    }

    pub fn with_reason(mut self, reason: ErrorReason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with_retry_after_ms(mut self, retry_after_ms: u64) -> Self {
        self.retry_after_ms = Some(retry_after_ms);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_at_a_char_boundary() {
        let error = ReplyError::new(ErrorCode::InvalidInput, "é".repeat(MAX_ERROR_MESSAGE_BYTES));
        assert!(error.message.len() <= MAX_ERROR_MESSAGE_BYTES, "{}", error.message.len());
        assert!(error.message.ends_with('…'));
        assert_eq!(ReplyError::new(ErrorCode::InvalidInput, "short").message, "short");
    }
}
