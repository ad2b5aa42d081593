//! Circuit breaker: after `failure_threshold` consecutive breaker failures it
//! stops sending calls to Vault for `open_duration`, then lets a limited number
//! of probe calls through (half-open) to decide whether to close again.
//!
//! Each admitted call holds a `Permit` and reports its outcome on it. State
//! lives behind a `std::sync::Mutex` that is only held for a few instructions,
//! never across an `.await`. Time comes from a `Clock` so tests need no sleep.
//!
//! Open → half-open happens lazily, on the first `acquire` after
//! `open_duration` (no timer task); until then `snapshot` reports `Open` with
//! zero seconds left.
//!
//! Over 500 lines only with its unit tests (the state machine, each transition).

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::classify::{Failure, Guarded};

/// How long a caller rejected because all half-open probe slots are taken is
/// told to wait: the probe's verdict is normally only a call away.
const PROBE_WAIT_HINT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive breaker failures that open the circuit (at least 1).
    pub failure_threshold: u32,
    /// How long the circuit stays open before probing.
    pub open_duration: Duration,
    /// Probes allowed concurrently while half-open (at least 1).
    pub half_open_max_probes: u32,
    /// Consecutive probe successes that close the circuit (at least 1).
    pub success_threshold: u32,
}

impl Default for BreakerConfig {
    /// The upstream handler's values: 5 failures, 30 s open, one probe.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_duration: Duration::from_secs(30),
            half_open_max_probes: 1,
            success_threshold: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSnapshot {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub opened_total: u64,
    /// While open: seconds until the next call is let through as a probe.
    pub seconds_until_half_open: Option<f64>,
}

/// A state change, for the node to publish as a circuit-breaker event.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub failure_count: u32,
    pub threshold: u32,
    /// Wall-clock time for the event (the `Clock` only drives the state machine).
    pub at: SystemTime,
}

/// The breaker refused the call; nothing was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

impl<E> From<Rejected> for Guarded<E> {
    fn from(rejected: Rejected) -> Self {
        Guarded::CircuitOpen { retry_after: rejected.retry_after }
    }
}

/// Source of "now" for the state machine.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// Tokio's clock: real time in production, and it follows
/// `tokio::time::pause`/`advance` in tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[derive(Debug, Clone, Copy, Default)]
enum Phase {
    #[default]
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        probes_in_flight: u32,
        successes: u32,
    },
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

#[derive(Default)]
struct Inner {
    phase: Phase,
    /// Bumped on every transition; a permit's outcome only counts in the
    /// epoch it was admitted in (late verdicts from before a transition are
    /// ignored, so they can neither reopen a fresh circuit nor free a probe
    /// slot they never took).
    epoch: u64,
    consecutive_failures: u32,
    opened_total: u64,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Success,
    Failure,
    Ignored,
}

/// Shared by `Arc` between all tasks calling the same backend.
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
    transitions: Option<mpsc::UnboundedSender<Transition>>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self::with_clock(config, Arc::new(TokioClock))
    }

    pub fn with_clock(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            half_open_max_probes: config.half_open_max_probes.max(1),
            success_threshold: config.success_threshold.max(1),
            ..config
        };
        let inner = Mutex::new(Inner::default());
        Self { config, clock, inner, transitions: None }
    }

    /// Sends every transition to `sender`. Unbounded on purpose: the state
    /// machine itself rate-limits transitions (at most three per
    /// `open_duration`), so the queue cannot grow, and `send` never blocks or
    /// fails the caller. Sent under the lock, so events arrive in order.
    pub fn report_transitions(mut self, sender: mpsc::UnboundedSender<Transition>) -> Self {
        self.transitions = Some(sender);
        self
    }

    /// Admits a call, or rejects it while open or while all half-open probe
    /// slots are taken.
    pub fn acquire(&self) -> Result<Permit<'_>, Rejected> {
        let now = self.clock.now();
        let mut inner = self.lock();
        if let Phase::Open { until } = inner.phase {
            if now < until {
                return Err(Rejected { retry_after: until - now });
            }
            let half_open = Phase::HalfOpen { probes_in_flight: 0, successes: 0 };
            self.transition(&mut inner, half_open);
        }
        if let Phase::HalfOpen { probes_in_flight, .. } = &mut inner.phase {
            if *probes_in_flight >= self.config.half_open_max_probes {
                let retry_after = PROBE_WAIT_HINT.min(self.config.open_duration);
                return Err(Rejected { retry_after });
            }
            *probes_in_flight += 1;
        }
        let epoch = inner.epoch;
        Ok(Permit { breaker: self, epoch, settled: false })
    }

    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = self.clock.now();
        let inner = self.lock();
        let seconds_until_half_open = match inner.phase {
            Phase::Open { until } => Some(until.saturating_duration_since(now).as_secs_f64()),
            _ => None,
        };
        BreakerSnapshot {
            state: inner.phase.state(),
            consecutive_failures: inner.consecutive_failures,
            opened_total: inner.opened_total,
            seconds_until_half_open,
        }
    }

    fn settle(&self, epoch: u64, outcome: Outcome) {
        let now = self.clock.now();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.epoch != epoch {
            return;
        }
        // Every permit of a half-open epoch is a probe: free its slot.
        if let Phase::HalfOpen { probes_in_flight, .. } = &mut inner.phase {
            *probes_in_flight = probes_in_flight.saturating_sub(1);
        }
        match outcome {
            Outcome::Ignored => {}
            Outcome::Success => {
                inner.consecutive_failures = 0;
                if let Phase::HalfOpen { successes, .. } = &mut inner.phase {
                    *successes += 1;
                    if *successes >= self.config.success_threshold {
                        self.transition(inner, Phase::Closed);
                    }
                }
            }
            Outcome::Failure => {
                inner.consecutive_failures += 1;
                let probing = matches!(inner.phase, Phase::HalfOpen { .. });
                if probing || inner.consecutive_failures >= self.config.failure_threshold {
                    let until = now + self.config.open_duration;
                    self.transition(inner, Phase::Open { until });
                }
            }
        }
    }

    fn transition(&self, inner: &mut Inner, to: Phase) {
        let from = inner.phase.state();
        inner.phase = to;
        inner.epoch += 1;
        if let Phase::Open { .. } = to {
            inner.opened_total += 1;
        }
        let transition = Transition {
            from,
            to: to.state(),
            failure_count: inner.consecutive_failures,
            threshold: self.config.failure_threshold,
            at: SystemTime::now(),
        };
        tracing::warn!(
            from = ?transition.from,
            to = ?transition.to,
            failure_count = transition.failure_count,
            "circuit breaker transition"
        );
        if let Some(sender) = &self.transitions {
            // A closed receiver means nobody publishes events any more.
            let _ = sender.send(transition);
        }
    }

    /// A panic elsewhere cannot leave `Inner` half-updated in a harmful way,
    /// so a poisoned lock is recovered rather than propagated.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker").field("config", &self.config).field("snapshot", &self.snapshot()).finish()
    }
}

/// Admission of one call. Report the verdict with `success`, `failure`,
/// `ignore` or `record`. Dropping it without a verdict (e.g. the call was
/// cancelled) is the same as `ignore`: it frees its half-open probe slot and
/// counts neither way, since a cancellation says nothing about Vault's health.
#[must_use = "report the call's outcome on the permit"]
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    epoch: u64,
    settled: bool,
}

impl Permit<'_> {
    pub fn success(self) {
        self.settle(Outcome::Success);
    }

    pub fn failure(self) {
        self.settle(Outcome::Failure);
    }

    /// The outcome says nothing about the backend's health (e.g. a 404).
    pub fn ignore(self) {
        self.settle(Outcome::Ignored);
    }

    /// Reports a call's result per its `Failure` classification.
    pub fn record<T, E: Failure>(self, result: &Result<T, E>) {
        match result {
            Ok(_) => self.success(),
            Err(error) if error.counts_against_breaker() => self.failure(),
            Err(_) => self.ignore(),
        }
    }

    fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.breaker.settle(self.epoch, outcome);
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.breaker.settle(self.epoch, Outcome::Ignored);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    /// A clock that only moves when told to.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    struct Harness {
        clock: Arc<ManualClock>,
        breaker: CircuitBreaker,
        events: mpsc::UnboundedReceiver<Transition>,
    }

    impl Harness {
        fn new(config: BreakerConfig) -> Self {
            let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
            let (sender, events) = mpsc::unbounded_channel();
            let breaker = CircuitBreaker::with_clock(config, clock.clone()).report_transitions(sender);
            Self { clock, breaker, events }
        }

        fn fail(&self, times: u32) {
            for _ in 0..times {
                self.breaker.acquire().unwrap().failure();
            }
        }

        fn state(&self) -> BreakerState {
            self.breaker.snapshot().state
        }
    }

    fn next_event(events: &mut mpsc::UnboundedReceiver<Transition>) -> (BreakerState, BreakerState) {
        let event = events.try_recv().expect("a transition was reported");
        (event.from, event.to)
    }

    fn config(failure_threshold: u32, half_open_max_probes: u32, success_threshold: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            open_duration: Duration::from_secs(30),
            half_open_max_probes,
            success_threshold,
        }
    }

    /// Opens the breaker and waits out the open period (the move to half-open
    /// itself happens, and is reported, on the next `acquire`).
    fn half_open(h: &mut Harness) {
        h.fail(h.breaker.config.failure_threshold);
        h.clock.advance(Duration::from_secs(30));
        while h.events.try_recv().is_ok() {}
    }

    #[test]
    fn opens_at_threshold_and_success_resets_count() {
        let mut h = Harness::new(config(3, 1, 1));
        h.fail(2);
        h.breaker.acquire().unwrap().success();
        h.fail(2);
        assert_eq!(h.state(), BreakerState::Closed);
        assert_eq!(h.breaker.snapshot().consecutive_failures, 2);

        h.fail(1);
        assert_eq!(h.state(), BreakerState::Open);
        let event = h.events.try_recv().unwrap();
        assert_eq!((event.from, event.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!((event.failure_count, event.threshold), (3, 3));
    }

    #[test]
    fn open_rejects_with_remaining_time() {
        let h = Harness::new(config(1, 1, 1));
        h.fail(1);
        h.clock.advance(Duration::from_secs(10));
        let rejected = h.breaker.acquire().unwrap_err();
        assert_eq!(rejected.retry_after, Duration::from_secs(20));
        assert_eq!(h.breaker.snapshot().seconds_until_half_open, Some(20.0));
    }

    #[test]
    fn open_turns_half_open_after_open_duration() {
        let mut h = Harness::new(config(1, 1, 1));
        h.fail(1);
        h.clock.advance(Duration::from_secs(29));
        assert!(h.breaker.acquire().is_err());
        h.clock.advance(Duration::from_secs(1));
        let _probe = h.breaker.acquire().expect("first call after the open period is a probe");
        assert_eq!(h.state(), BreakerState::HalfOpen);
        assert_eq!(next_event(&mut h.events), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(next_event(&mut h.events), (BreakerState::Open, BreakerState::HalfOpen));
    }

    #[test]
    fn half_open_admits_exactly_max_probes() {
        let mut h = Harness::new(config(1, 2, 1));
        half_open(&mut h);
        let first = h.breaker.acquire().expect("probe 1");
        let _second = h.breaker.acquire().expect("probe 2");
        for _ in 0..10 {
            let rejected = h.breaker.acquire().expect_err("no third probe");
            assert_eq!(rejected.retry_after, PROBE_WAIT_HINT);
        }
        drop(first); // a cancelled probe frees its slot without a verdict
        assert_eq!(h.state(), BreakerState::HalfOpen);
        let _third = h.breaker.acquire().expect("freed slot admits another probe");
        assert!(h.breaker.acquire().is_err());
    }

    #[test]
    fn half_open_admits_one_probe_under_concurrency() {
        let mut h = Harness::new(config(1, 1, 1));
        half_open(&mut h);
        let barrier = Barrier::new(8);
        let admitted = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        // Keep admitted permits alive: leak them for the test.
                        h.breaker.acquire().map(std::mem::forget).is_ok()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).filter(|admitted| *admitted).count()
        });
        assert_eq!(admitted, 1);
    }

    #[test]
    fn probe_success_closes() {
        let mut h = Harness::new(config(1, 1, 1));
        half_open(&mut h);
        h.breaker.acquire().unwrap().success();
        assert_eq!(h.state(), BreakerState::Closed);
        assert_eq!(h.breaker.snapshot().consecutive_failures, 0);
        assert_eq!(next_event(&mut h.events), (BreakerState::Open, BreakerState::HalfOpen));
        assert_eq!(next_event(&mut h.events), (BreakerState::HalfOpen, BreakerState::Closed));
    }

    #[test]
    fn success_threshold_needs_consecutive_probe_successes() {
        let mut h = Harness::new(config(1, 1, 2));
        half_open(&mut h);
        h.breaker.acquire().unwrap().success();
        assert_eq!(h.state(), BreakerState::HalfOpen);
        h.breaker.acquire().unwrap().success();
        assert_eq!(h.state(), BreakerState::Closed);
    }

    #[test]
    fn probe_failure_reopens_for_full_duration() {
        let mut h = Harness::new(config(1, 1, 1));
        half_open(&mut h);
        h.clock.advance(Duration::from_secs(5));
        h.breaker.acquire().unwrap().failure();
        assert_eq!(next_event(&mut h.events), (BreakerState::Open, BreakerState::HalfOpen));
        assert_eq!(next_event(&mut h.events), (BreakerState::HalfOpen, BreakerState::Open));
        let snapshot = h.breaker.snapshot();
        assert_eq!(snapshot.state, BreakerState::Open);
        assert_eq!(snapshot.seconds_until_half_open, Some(30.0));
        assert_eq!(h.breaker.acquire().unwrap_err().retry_after, Duration::from_secs(30));
    }

    #[test]
    fn ignored_outcomes_do_not_count() {
        let h = Harness::new(config(3, 1, 1));
        h.fail(2);
        h.breaker.acquire().unwrap().ignore();
        drop(h.breaker.acquire().unwrap());
        let snapshot = h.breaker.snapshot();
        assert_eq!((snapshot.state, snapshot.consecutive_failures), (BreakerState::Closed, 2));
        h.fail(1);
        assert_eq!(h.state(), BreakerState::Open, "ignores neither reset nor add");

        h.clock.advance(Duration::from_secs(30));
        h.breaker.acquire().unwrap().ignore();
        assert_eq!(h.state(), BreakerState::HalfOpen, "an ignored probe decides nothing");
        assert!(h.breaker.acquire().is_ok(), "and frees its slot");
    }

    #[test]
    fn record_follows_failure_classification() {
        struct NotFound;
        impl Failure for NotFound {
            fn is_retryable(&self) -> bool {
                false
            }
            fn counts_against_breaker(&self) -> bool {
                false
            }
        }
        let h = Harness::new(config(1, 1, 1));
        h.breaker.acquire().unwrap().record(&Err::<(), _>(NotFound));
        assert_eq!(h.state(), BreakerState::Closed);
        let timeout: Result<(), Guarded<NotFound>> = Err(Guarded::TimedOut { after: Duration::ZERO });
        h.breaker.acquire().unwrap().record(&timeout);
        assert_eq!(h.state(), BreakerState::Open);
    }

    #[test]
    fn late_verdicts_from_before_a_transition_are_ignored() {
        let h = Harness::new(config(1, 1, 1));
        let slow = h.breaker.acquire().unwrap();
        h.fail(1);
        slow.success();
        assert_eq!(h.state(), BreakerState::Open, "a stale success does not close");

        h.clock.advance(Duration::from_secs(30));
        let probe = h.breaker.acquire().unwrap();
        let stale = h.breaker.acquire();
        assert!(stale.is_err());
        probe.success();
        let closed_epoch_call = h.breaker.acquire().unwrap();
        h.fail(1);
        closed_epoch_call.failure();
        assert_eq!(h.breaker.snapshot().opened_total, 2, "the stale failure did not reopen");
    }

    #[test]
    fn opened_total_counts_every_opening() {
        let mut h = Harness::new(config(2, 1, 1));
        assert_eq!(h.breaker.snapshot().opened_total, 0);
        half_open(&mut h);
        h.breaker.acquire().unwrap().failure();
        h.clock.advance(Duration::from_secs(30));
        h.breaker.acquire().unwrap().success();
        h.fail(2);
        assert_eq!(h.breaker.snapshot().opened_total, 3);
    }

    #[test]
    fn breaker_is_shareable_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<CircuitBreaker>();
        assert_send_sync::<Permit<'static>>();
    }
}
