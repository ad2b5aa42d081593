//! Time limit for one attempt: the call either finishes in time or is dropped
//! (cancelled) and reported as `Guarded::TimedOut`, which is retryable and a
//! breaker failure.

use std::future::Future;
use std::time::Duration;

use super::classify::Guarded;

/// Runs `call` for at most `limit`.
pub async fn with_timeout<T, E>(limit: Duration, call: impl Future<Output = Result<T, E>>) -> Result<T, Guarded<E>> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(Guarded::Inner),
        Err(_elapsed) => Err(Guarded::TimedOut { after: limit }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fast_call_passes_through() {
        let ok: Result<u8, Guarded<&str>> = with_timeout(Duration::from_secs(1), async { Ok(7) }).await;
        assert!(matches!(ok, Ok(7)));
        let err = with_timeout(Duration::from_secs(1), async { Err::<u8, _>("boom") }).await;
        assert!(matches!(err, Err(Guarded::Inner("boom"))));
    }

    #[tokio::test(start_paused = true)]
    async fn slow_call_times_out() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<u8, &str>(1)
        };
        let result = with_timeout(Duration::from_secs(2), slow).await;
        assert!(matches!(result, Err(Guarded::TimedOut { after }) if after == Duration::from_secs(2)));
    }
}
