//! Retries a call on retryable failures, sleeping per the `BackoffPolicy`
//! between attempts. Non-retryable failures (including `CircuitOpen`, see
//! `Guarded`'s classification) end it at once.

use std::future::Future;

use super::backoff::BackoffPolicy;
use super::classify::Failure;

/// Calls `call` up to `policy.max_attempts` times; returns the first success,
/// the first non-retryable error, or the last error once attempts run out.
///
/// A `retry_after()` hint longer than the scheduled delay is honoured, but no
/// wait ever exceeds `policy.max_delay`.
pub async fn retry<F, Fut, T, E>(policy: &BackoffPolicy, mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Failure,
{
    let mut delays = policy.delays();
    let mut attempt = 1u32;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) if !error.is_retryable() => return Err(error),
            Err(error) => error,
        };
        let Some(scheduled) = delays.next() else {
            return Err(error);
        };
        let delay = match error.retry_after() {
            Some(hint) => scheduled.max(hint).min(policy.max_delay),
            None => scheduled,
        };
        tracing::debug!(attempt, ?delay, "attempt failed, backing off before retry");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resilience::classify::Guarded;
    use std::cell::Cell;
    use std::time::Duration;
    use tokio::time::Instant;

    #[derive(Debug, PartialEq)]
    enum FakeError {
        Unavailable,
        NotFound,
        RateLimited(Duration),
    }

    impl Failure for FakeError {
        fn is_retryable(&self) -> bool {
            !matches!(self, FakeError::NotFound)
        }
        fn counts_against_breaker(&self) -> bool {
            matches!(self, FakeError::Unavailable)
        }
        fn retry_after(&self) -> Option<Duration> {
            match self {
                FakeError::RateLimited(hint) => Some(*hint),
                _ => None,
            }
        }
    }

    fn policy(max_attempts: u32) -> BackoffPolicy {
        BackoffPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retryable_error_is_retried_up_to_max_attempts() {
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result: Result<(), _> = retry(&policy(4), || {
            attempts.set(attempts.get() + 1);
            async { Err(FakeError::Unavailable) }
        })
        .await;
        assert_eq!(result, Err(FakeError::Unavailable));
        assert_eq!(attempts.get(), 4);
        // 100 + 200 + 400 ms of (virtual) backoff between the four attempts.
        assert_eq!(start.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn non_retryable_error_returns_at_once() {
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result: Result<(), _> = retry(&policy(4), || {
            attempts.set(attempts.get() + 1);
            async { Err(FakeError::NotFound) }
        })
        .await;
        assert_eq!(result, Err(FakeError::NotFound));
        assert_eq!(attempts.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_some_failures() {
        let attempts = Cell::new(0);
        let result = retry(&policy(5), || {
            attempts.set(attempts.get() + 1);
            let n = attempts.get();
            async move {
                if n < 3 {
                    Err(FakeError::Unavailable)
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(result, Ok(3));
        assert_eq!(attempts.get(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn single_attempt_policy_never_retries() {
        let attempts = Cell::new(0);
        let _: Result<(), _> = retry(&policy(1), || {
            attempts.set(attempts.get() + 1);
            async { Err(FakeError::Unavailable) }
        })
        .await;
        assert_eq!(attempts.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_hint_is_honoured_but_capped() {
        let start = Instant::now();
        let hint = Duration::from_millis(300);
        let _: Result<(), _> = retry(&policy(2), || async move { Err(FakeError::RateLimited(hint)) }).await;
        assert_eq!(start.elapsed(), hint, "300 ms hint beats the 100 ms schedule");

        let start = Instant::now();
        let huge = Duration::from_secs(60);
        let _: Result<(), _> = retry(&policy(2), || async move { Err(FakeError::RateLimited(huge)) }).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1), "capped at max_delay");
    }

    #[tokio::test(start_paused = true)]
    async fn open_circuit_stops_retrying() {
        let attempts = Cell::new(0);
        let result: Result<(), Guarded<FakeError>> = retry(&policy(5), || {
            attempts.set(attempts.get() + 1);
            async { Err(Guarded::CircuitOpen { retry_after: Duration::from_secs(30) }) }
        })
        .await;
        assert!(matches!(result, Err(Guarded::CircuitOpen { .. })));
        assert_eq!(attempts.get(), 1);
    }
}
