//! How a failed call is judged by the resilience layers: whether it is worth
//! retrying and whether it says something about the health of the backend
//! (and so counts against the circuit breaker). Also the error the layers
//! themselves add around the wrapped call's error.

use std::error::Error;
use std::fmt;
use std::time::Duration;

/// Classification implemented by the wrapped call's error type.
///
/// For Vault: transport errors, timeouts, 412, 429 and 5xx are retryable and
/// breaker failures; 400, 403 and 404 are neither.
pub trait Failure {
    /// Another attempt may succeed.
    fn is_retryable(&self) -> bool;
    /// The failure says the backend is unhealthy.
    fn counts_against_breaker(&self) -> bool;
    /// The backend asked us to wait at least this long (e.g. `Retry-After`).
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

/// The wrapped call's error, or a failure added by a layer.
///
/// One enum generic over the inner error (rather than a boxed error or a
/// separate error type per layer) so the handler matches every outcome in one
/// place, and so the layers compose without converting between error types.
#[derive(Debug)]
pub enum Guarded<E> {
    /// The call itself failed.
    Inner(E),
    /// The call did not finish within the time limit.
    TimedOut { after: Duration },
    /// The circuit breaker refused the call without running it.
    CircuitOpen { retry_after: Duration },
}

impl<E: Failure> Failure for Guarded<E> {
    fn is_retryable(&self) -> bool {
        match self {
            Guarded::Inner(e) => e.is_retryable(),
            Guarded::TimedOut { .. } => true,
            // Retrying into an open breaker only hammers it: stop at once.
            Guarded::CircuitOpen { .. } => false,
        }
    }

    fn counts_against_breaker(&self) -> bool {
        match self {
            Guarded::Inner(e) => e.counts_against_breaker(),
            Guarded::TimedOut { .. } => true,
            Guarded::CircuitOpen { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Guarded::Inner(e) => e.retry_after(),
            Guarded::TimedOut { .. } => None,
            Guarded::CircuitOpen { retry_after } => Some(*retry_after),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Guarded<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Guarded::Inner(e) => e.fmt(f),
            Guarded::TimedOut { after } => write!(f, "call timed out after {after:?}"),
            Guarded::CircuitOpen { retry_after } => {
                write!(f, "circuit breaker open, retry after {retry_after:?}")
            }
        }
    }
}

impl<E: Error + 'static> Error for Guarded<E> {
    // `Inner` is transparent (like thiserror's `#[error(transparent)]`): its
    // Display is the inner error's, so its source is the inner error's source.
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Guarded::Inner(e) => e.source(),
            _ => None,
        }
    }
}
