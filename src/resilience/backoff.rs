//! The retry schedule: how long to wait before each retry of a failed call.
//!
//! Written by hand (with `rand`) rather than with `backon::ExponentialBuilder`:
//! backon's jitter *adds* a random `[0, d)` on top of the delay `d`, so a
//! jittered delay lies in `[d, 2d)` and can exceed `max_delay`. The schedule
//! here needs jitter that stays under the cap.

use std::time::Duration;

/// Exponential backoff: the delay before retry `n` (0-based) is
/// `initial_delay * multiplier^n`, capped at `max_delay`.
///
/// With `jitter` on, each delay `d` is drawn uniformly from `[d/2, d]`
/// ("equal jitter"). Equal rather than full jitter (`[0, d]`): full jitter can
/// draw a near-zero delay and re-hit a Vault that just answered 429 or 503,
/// while equal jitter keeps at least half the backoff and still spreads
/// concurrent clients apart. With only a few attempts per call, that floor
/// matters more than the slightly lower total load of full jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Total attempts, the first one included; 1 (or 0) means no retries.
    pub max_attempts: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Growth factor per retry; expected to be at least 1.
    pub multiplier: f64,
    pub jitter: bool,
}

impl Default for BackoffPolicy {
    /// The upstream handler's values (3 attempts, 100 ms, cap 10 s, base 2),
    /// with jitter added.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl BackoffPolicy {
    /// The delays to sleep between attempts: at most `max_attempts - 1` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let policy = *self;
        (0..policy.max_attempts.saturating_sub(1)).map(move |retry| {
            let delay = policy.capped_delay(retry);
            if policy.jitter {
                delay.mul_f64(rand::random_range(0.5..=1.0))
            } else {
                delay
            }
        })
    }

    /// The un-jittered delay before retry `retry` (0-based).
    fn capped_delay(&self, retry: u32) -> Duration {
        let secs = self.initial_delay.as_secs_f64() * self.multiplier.powf(f64::from(retry));
        // Overflow, a negative or a NaN factor all fall back to the cap.
        Duration::try_from_secs_f64(secs).unwrap_or(self.max_delay).min(self.max_delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, jitter: bool) -> BackoffPolicy {
        BackoffPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            multiplier: 2.0,
            jitter,
        }
    }

    #[test]
    fn yields_one_delay_fewer_than_attempts() {
        assert_eq!(policy(4, false).delays().count(), 3);
        assert_eq!(policy(4, true).delays().count(), 3);
    }

    #[test]
    fn single_attempt_means_no_retries() {
        assert_eq!(policy(1, false).delays().count(), 0);
        assert_eq!(policy(0, false).delays().count(), 0);
    }

    #[test]
    fn grows_exponentially_then_stays_at_cap() {
        let delays: Vec<_> = policy(8, false).delays().collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]);
    }

    #[test]
    fn cap_holds_for_huge_growth() {
        let wild = BackoffPolicy { multiplier: 1e300, ..policy(6, true) };
        assert!(wild.delays().all(|d| d <= wild.max_delay));
    }

    #[test]
    fn equal_jitter_stays_between_half_and_full_delay() {
        let plain: Vec<_> = policy(8, false).delays().collect();
        for _ in 0..200 {
            for (jittered, full) in policy(8, true).delays().zip(&plain) {
                assert!(jittered >= *full / 2 && jittered <= *full, "{jittered:?} vs {full:?}");
            }
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let draws: std::collections::HashSet<_> = (0..50).map(|_| policy(2, true).delays().next()).collect();
        assert!(draws.len() > 1);
    }
}
