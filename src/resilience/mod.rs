//! Resilience layers every Vault call goes through, each a small piece that
//! wraps a call (in the spirit of `tower`): circuit breaker, retry with
//! backoff, and a per-attempt timeout, composed by [`guarded_call`].
//! Pure logic: no Vault or Kafka types here; the call's error type plugs in
//! by implementing [`Failure`].

pub mod backoff;
pub mod breaker;
pub mod classify;
pub mod retry;
pub mod timeout;

use std::future::Future;
use std::time::Duration;

pub use backoff::BackoffPolicy;
pub use breaker::{
    BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker, Clock, Permit, Rejected, TokioClock, Transition,
};
pub use classify::{Failure, Guarded};
pub use retry::retry;
pub use timeout::with_timeout;

/// Runs `call` through all layers, outermost first:
/// breaker check (per attempt) → retry → timeout → call.
///
/// Each attempt asks the breaker for a permit; a refusal ends the whole call
/// with `CircuitOpen` (not retryable, so retrying stops). An admitted attempt
/// runs under `timeout`, and its result is recorded on the permit according to
/// its `Failure` classification. Retryable failures are retried per `policy`.
pub async fn guarded_call<T, E, F, Fut>(
    breaker: &CircuitBreaker,
    policy: &BackoffPolicy,
    timeout: Duration,
    mut call: F,
) -> Result<T, Guarded<E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Failure,
{
    retry(policy, || {
        let admitted = breaker.acquire().map(|permit| (permit, call()));
        async move {
            let (permit, attempt) = admitted?;
            let result = with_timeout(timeout, attempt).await;
            permit.record(&result);
            result
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use tokio::time::Instant;

    #[derive(Debug, PartialEq)]
    enum VaultLike {
        Unavailable,
        NotFound,
    }

    impl Failure for VaultLike {
        fn is_retryable(&self) -> bool {
            *self == VaultLike::Unavailable
        }
        fn counts_against_breaker(&self) -> bool {
            *self == VaultLike::Unavailable
        }
    }

    const TIMEOUT: Duration = Duration::from_secs(1);

    fn policy(max_attempts: u32) -> BackoffPolicy {
        BackoffPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            jitter: false,
        }
    }

    fn breaker(failure_threshold: u32) -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            failure_threshold,
            open_duration: Duration::from_secs(30),
            ..BreakerConfig::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn opens_breaker_across_retries_then_rejects_fast() {
        let breaker = breaker(3);
        let attempts = Cell::new(0);
        let failing = || {
            attempts.set(attempts.get() + 1);
            async { Err::<(), _>(VaultLike::Unavailable) }
        };

        let start = Instant::now();
        let result = guarded_call(&breaker, &policy(5), TIMEOUT, failing).await;
        assert!(matches!(result, Err(Guarded::CircuitOpen { .. })), "{result:?}");
        assert_eq!(attempts.get(), 3, "the 4th attempt was refused by the open breaker");
        assert_eq!(start.elapsed(), Duration::from_millis(700));
        assert_eq!(breaker.snapshot().state, BreakerState::Open);

        let start = Instant::now();
        let result = guarded_call(&breaker, &policy(5), TIMEOUT, failing).await;
        assert!(matches!(result, Err(Guarded::CircuitOpen { retry_after }) if retry_after > Duration::from_secs(29)));
        assert_eq!(attempts.get(), 3, "no call reached the backend");
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn recovers_through_a_half_open_probe() {
        let breaker = breaker(1);
        let failed =
            guarded_call(&breaker, &policy(1), TIMEOUT, || async { Err::<(), _>(VaultLike::Unavailable) }).await;
        assert!(matches!(failed, Err(Guarded::Inner(VaultLike::Unavailable))));
        assert_eq!(breaker.snapshot().state, BreakerState::Open);

        tokio::time::advance(Duration::from_secs(30)).await;
        let probed = guarded_call(&breaker, &policy(1), TIMEOUT, || async { Ok::<_, VaultLike>(42) }).await;
        assert!(matches!(probed, Ok(42)));
        assert_eq!(breaker.snapshot().state, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn timeouts_are_retried_and_count_against_the_breaker() {
        let breaker = breaker(2);
        let attempts = Cell::new(0);
        let start = Instant::now();
        let result = guarded_call(&breaker, &policy(2), TIMEOUT, || {
            attempts.set(attempts.get() + 1);
            async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok::<(), VaultLike>(())
            }
        })
        .await;
        assert!(matches!(result, Err(Guarded::TimedOut { after: TIMEOUT })), "{result:?}");
        assert_eq!(attempts.get(), 2);
        assert_eq!(start.elapsed(), Duration::from_millis(2100));
        assert_eq!(breaker.snapshot().state, BreakerState::Open);
    }

    #[tokio::test(start_paused = true)]
    async fn not_found_is_returned_at_once_and_not_counted() {
        let breaker = breaker(1);
        let attempts = Cell::new(0);
        let result = guarded_call(&breaker, &policy(5), TIMEOUT, || {
            attempts.set(attempts.get() + 1);
            async { Err::<(), _>(VaultLike::NotFound) }
        })
        .await;
        assert!(matches!(result, Err(Guarded::Inner(VaultLike::NotFound))));
        assert_eq!(attempts.get(), 1);
        let snapshot = breaker.snapshot();
        assert_eq!((snapshot.state, snapshot.consecutive_failures), (BreakerState::Closed, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_transient_failures_resets_the_count() {
        let breaker = breaker(3);
        let attempts = Cell::new(0);
        let result = guarded_call(&breaker, &policy(5), TIMEOUT, || {
            attempts.set(attempts.get() + 1);
            let attempt = attempts.get();
            async move {
                if attempt < 3 {
                    Err(VaultLike::Unavailable)
                } else {
                    Ok(attempt)
                }
            }
        })
        .await;
        assert!(matches!(result, Ok(3)));
        assert_eq!(breaker.snapshot().consecutive_failures, 0);
    }
}
