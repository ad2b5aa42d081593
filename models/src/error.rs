//! Error codes of the wire contract and the `error` object of a failed reply.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a request failed. The set and meaning are fixed by the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// Schema violation, bad path, oversized message, unknown field.
    InvalidRequest,
    /// Unknown `operation`.
    UnsupportedOperation,
    /// Vault 403, or the node's access policy refuses the requester.
    PermissionDenied,
    /// Secret, version or lease not found.
    ResourceNotFound,
    /// Check-and-set mismatch.
    Conflict,
    /// Vault 429.
    RateLimited,
    /// Vault call timed out after retries, or the request expired.
    TimeoutError,
    /// Circuit open, Vault sealed, unreachable, 5xx after retries.
    ServiceUnavailable,
    /// The node's own Vault login or token failed.
    AuthenticationError,
    /// A bug in the node.
    InternalError,
}

impl ErrorCode {
    /// Whether the requester may retry the same request later.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::TimeoutError
                | ErrorCode::ServiceUnavailable
                | ErrorCode::AuthenticationError
        )
    }

    /// The code as it appears on the wire, e.g. `RESOURCE_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::UnsupportedOperation => "UNSUPPORTED_OPERATION",
            ErrorCode::PermissionDenied => "PERMISSION_DENIED",
            ErrorCode::ResourceNotFound => "RESOURCE_NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::TimeoutError => "TIMEOUT_ERROR",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::AuthenticationError => "AUTHENTICATION_ERROR",
            ErrorCode::InternalError => "INTERNAL_ERROR",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplyError {
    pub code: ErrorCode,
    /// Human text; never a secret value, a token or Vault's raw answer.
    pub message: String,
    pub retryable: bool,
    /// When to retry, set when the node's circuit breaker is open.
    pub retry_after_ms: Option<u64>,
}

impl ReplyError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ReplyError { code, message: message.into(), retryable: code.retryable(), retry_after_ms: None }
    }

    pub fn with_retry_after_ms(mut self, retry_after_ms: u64) -> Self {
        self.retry_after_ms = Some(retry_after_ms);
        self
    }
}
