//! What the node measures about itself, recorded once and read two ways:
//! Prometheus metrics for `/metrics` (cumulative, scraped by operators) and
//! interval statistics for the health event (counts since start, latency
//! percentiles and rates over the last interval, read by orchestrators).
//!
//! Every handled request is recorded by [`Telemetry::record_request`]; the
//! Kafka side reports consumption, replies, dead letters, in-flight, partition
//! assignment and consumer lag; the health reporter sets breaker state and
//! token TTL. Nothing here ever sees a path, a value or a token.
//!
//! Over 500 lines: every metric is declared, recorded and turned into the
//! health event's figures in this one file, so `/metrics` and the health event
//! cannot disagree.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use onex_vault_models::{BreakerState, ErrorCode, LeaseStats, Operation, OperationStats, VaultActivity};

use crate::operations::{work_of, Work};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    /// `success`, or the error code in lower case.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    /// `success` or `failure`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// A step of a record's way through the node, timed for
/// `request_stage_seconds` (where the time of a request goes; the bench
/// reads it, and an operator can too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the request record's timestamp (set by its producer) to the node
    /// taking it off the consumer: the requester's produce, the broker, the
    /// fetch wait and the consumer's queue.
    BusWait,
    /// Waiting behind an earlier record of the same key.
    KeyWait,
    /// Decoding the envelope and the security gate's checks.
    DecodeAndGate,
    /// The Vault call (with its retries), or the read cache.
    Vault,
    /// Building the reply, the audit record and any dead letter.
    Answer,
    /// From producing the reply to the broker's acknowledgement.
    PublishReply,
    /// From producing the audit record to the broker's acknowledgement.
    PublishAudit,
    /// From producing a dead letter to the broker's acknowledgement.
    PublishDeadLetter,
    /// From the last acknowledgement to the offset stored by the main loop.
    OffsetStore,
}

impl Stage {
    pub const ALL: [Stage; 9] = [
        Stage::BusWait,
        Stage::KeyWait,
        Stage::DecodeAndGate,
        Stage::Vault,
        Stage::Answer,
        Stage::PublishReply,
        Stage::PublishAudit,
        Stage::PublishDeadLetter,
        Stage::OffsetStore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::BusWait => "bus_wait",
            Stage::KeyWait => "key_wait",
            Stage::DecodeAndGate => "decode_and_gate",
            Stage::Vault => "vault",
            Stage::Answer => "answer",
            Stage::PublishReply => "publish_reply",
            Stage::PublishAudit => "publish_audit",
            Stage::PublishDeadLetter => "publish_dead_letter",
            Stage::OffsetStore => "offset_store",
        }
    }
}

/// Times consecutive stages of one record: each [`Laps::lap`] records the
/// time since the previous one (or the start) as that stage.
pub struct Laps<'t> {
    telemetry: &'t Telemetry,
    last: Instant,
}

impl Laps<'_> {
    pub fn lap(&mut self, stage: Stage) {
        let now = Instant::now();
        self.telemetry.record_stage(stage, now.saturating_duration_since(self.last));
        self.last = now;
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: String,
}

pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<OperationLabel, Histogram>,
    stages: Family<StageLabel, Histogram>,
    consumed: Counter,
    replied: Counter,
    dead_letters: Counter,
    publishes_refused: Counter,
    given_up: Counter,
    /// When a record last finished (or the node started).
    last_progress: Mutex<std::time::Instant>,
    in_flight: Gauge,
    assigned_partitions: Gauge,
    consumer_lag: Family<PartitionLabels, Gauge>,
    breaker_state: Gauge,
    breaker_opened: Counter,
    token_ttl: Gauge,
    token_renewals: Counter,
    token_renewal_failures: Counter,
    vault_health_checks: Counter,
    leases_registered: Gauge,
    leases_kept_alive: Gauge,
    lease_partitions: Gauge,
    lease_renewals: Counter,
    lease_expirations: Counter,
    lease_renewal_refusals: Counter,
    authentications: Family<OutcomeLabel, Counter>,
    token_lookups: Counter,
    credentials_issued: Counter,
    certificates_issued: Counter,
    kafka_connected: Gauge,
    kafka_link_losses: Counter,
    last_token_renewal: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    last_fault: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    interval: Mutex<IntervalStats>,
    lag: Mutex<BTreeMap<String, i64>>,
    last_breaker_opened: AtomicU64,
}

/// Per-operation figures: counts since start, latencies since the last read.
#[derive(Default)]
struct IntervalStats {
    operations: BTreeMap<String, OperationWindow>,
}

#[derive(Default)]
struct OperationWindow {
    count: u64,
    errors: u64,
    /// Latencies (ms) since the last read; capped so a burst cannot grow it
    /// without bound (beyond the cap, later samples overwrite earlier ones).
    samples: Vec<f64>,
    window: Window,
}

/// One operation over the last interval.
#[derive(Default, Clone, Copy, Debug, PartialEq)]
pub struct Window {
    pub requests: u64,
    /// Every error reply.
    pub errors: u64,
    /// Errors that point at the node or Vault, not at the request: the
    /// retryable codes and `INTERNAL_ERROR`.
    pub faults: u64,
    /// Sum of latencies, for the mean.
    pub total_ms: f64,
}

impl Window {
    pub fn mean_ms(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.total_ms / self.requests as f64)
    }
}

const MAX_SAMPLES: usize = 50_000;

/// What the last interval looked like, for the health event.
pub struct IntervalReport {
    pub operations: BTreeMap<String, OperationStats>,
    /// Each operation over the interval.
    pub window: BTreeMap<String, Window>,
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let mut registry = Registry::with_prefix("onex_vault_adapter");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<OperationLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let stages = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        let t = Telemetry {
            registry: Registry::default(),
            requests,
            durations,
            stages,
            consumed: Counter::default(),
            replied: Counter::default(),
            dead_letters: Counter::default(),
            publishes_refused: Counter::default(),
            given_up: Counter::default(),
            last_progress: Mutex::new(std::time::Instant::now()),
            in_flight: Gauge::default(),
            assigned_partitions: Gauge::default(),
            consumer_lag: Family::default(),
            breaker_state: Gauge::default(),
            breaker_opened: Counter::default(),
            token_ttl: Gauge::default(),
            token_renewals: Counter::default(),
            token_renewal_failures: Counter::default(),
            vault_health_checks: Counter::default(),
            leases_registered: Gauge::default(),
            leases_kept_alive: Gauge::default(),
            lease_partitions: Gauge::default(),
            lease_renewals: Counter::default(),
            lease_expirations: Counter::default(),
            lease_renewal_refusals: Counter::default(),
            authentications: Family::default(),
            token_lookups: Counter::default(),
            credentials_issued: Counter::default(),
            certificates_issued: Counter::default(),
            kafka_connected: Gauge::default(),
            kafka_link_losses: Counter::default(),
            last_token_renewal: Mutex::default(),
            last_fault: Mutex::default(),
            interval: Mutex::default(),
            lag: Mutex::default(),
            last_breaker_opened: AtomicU64::new(0),
        };
        registry.register("requests", "Requests handled, by operation and outcome", t.requests.clone());
        registry.register("request_duration_seconds", "Time to handle a request, by operation", t.durations.clone());
        registry.register(
            "request_stage_seconds",
            "Time a record spends in each stage of its handling (bus_wait, key_wait, decode_and_gate, vault, \
             answer, publish_reply, publish_audit, publish_dead_letter, offset_store)",
            t.stages.clone(),
        );
        for stage in Stage::ALL {
            let _ = t.stages.get_or_create(&StageLabel { stage: stage.as_str() });
        }
        registry.register("records_consumed", "Records taken from the request topic", t.consumed.clone());
        registry.register("replies", "Replies delivered", t.replied.clone());
        registry.register("dead_letters", "Records sent to the dead-letter topic", t.dead_letters.clone());
        registry.register(
            "records_given_up",
            "Records not finished within event_bus.record_deadline_seconds: answered with a timeout and dead-lettered",
            t.given_up.clone(),
        );
        registry.register(
            "publishes_refused",
            "Messages the broker refused for good (too large, unknown topic, not authorised); a smaller stand-in \
             went instead where there is one",
            t.publishes_refused.clone(),
        );
        registry.register("in_flight", "Requests being handled now", t.in_flight.clone());
        registry.register(
            "assigned_partitions",
            "Request-topic partitions this instance holds",
            t.assigned_partitions.clone(),
        );
        registry.register("consumer_lag", "Records behind the end of each assigned partition", t.consumer_lag.clone());
        registry.register("breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open", t.breaker_state.clone());
        registry.register("breaker_opened", "Times the circuit breaker opened", t.breaker_opened.clone());
        registry.register(
            "token_ttl_seconds",
            "Remaining TTL of the node's Vault token (0: no expiry)",
            t.token_ttl.clone(),
        );
        registry.register("token_renewals", "Renewals of the node's own token", t.token_renewals.clone());
        registry.register(
            "token_renewal_failures",
            "Failed renewals of the node's own token",
            t.token_renewal_failures.clone(),
        );
        registry.register("vault_health_checks", "sys/health probes made", t.vault_health_checks.clone());
        registry.register(
            "leases_registered",
            "Leases in the lease registry (kept alive by the group), as this instance read it",
            t.leases_registered.clone(),
        );
        registry.register(
            "leases_kept_alive",
            "Registered leases this instance renews (those of the registry partitions it holds)",
            t.leases_kept_alive.clone(),
        );
        registry.register(
            "lease_registry_partitions",
            "Lease registry partitions this instance holds in group <consumer_group>.leases (it renews their leases)",
            t.lease_partitions.clone(),
        );
        registry.register(
            "lease_renewals",
            "Kept-alive lease renewals made by this instance",
            t.lease_renewals.clone(),
        );
        registry.register(
            "lease_expirations",
            "Kept-alive leases that ran out while this instance renewed them",
            t.lease_expirations.clone(),
        );
        registry.register(
            "lease_renewal_refusals",
            "Kept-alive leases Vault refused to renew (revoked, not renewable, not found)",
            t.lease_renewal_refusals.clone(),
        );
        registry.register(
            "vault_authentications",
            "The node's own logins to Vault (AppRole, the first included), by outcome",
            t.authentications.clone(),
        );
        registry.register(
            "token_lookups",
            "Lookups of the node's own token (lookup_token requests, health probes)",
            t.token_lookups.clone(),
        );
        registry.register(
            "credentials_issued",
            "Dynamic credentials issued through issue_credentials",
            t.credentials_issued.clone(),
        );
        registry.register(
            "certificates_issued",
            "X.509 certificates issued through issue_credentials (PKI issue or sign)",
            t.certificates_issued.clone(),
        );
        registry.register(
            "kafka_connected",
            "1 while the node reaches a Kafka broker, 0 when it has lost them all",
            t.kafka_connected.clone(),
        );
        registry.register("kafka_link_losses", "Times the node lost every Kafka broker", t.kafka_link_losses.clone());
        t.kafka_connected.set(1);
        Telemetry { registry, ..t }
    }

    /// One handled request: its operation as sent, its error code if it
    /// failed, and how long it took.
    pub fn record_request(&self, operation: &str, error: Option<ErrorCode>, duration: Duration) {
        let outcome = error.map_or_else(|| "success".to_owned(), |code| code.name().to_ascii_lowercase());
        let operation = operation.to_owned();
        self.requests.get_or_create(&RequestLabels { operation: operation.clone(), outcome }).inc();
        let seconds = duration.as_secs_f64();
        self.durations.get_or_create(&OperationLabel { operation: operation.clone() }).observe(seconds);
        if operation == "renew_token" {
            self.record_token_renewal(error.is_none());
        }
        let mut stats = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        let window = stats.operations.entry(operation).or_default();
        let ms = seconds * 1000.0;
        window.count += 1;
        window.window.requests += 1;
        window.window.total_ms += ms;
        if let Some(code) = error {
            window.errors += 1;
            window.window.errors += 1;
            if code.retryable() || code == ErrorCode::InternalError {
                window.window.faults += 1;
                *self.last_fault.lock().unwrap_or_else(|p| p.into_inner()) = Some(chrono::Utc::now());
            }
        }
        if window.samples.len() < MAX_SAMPLES {
            window.samples.push(ms);
        } else {
            let slot = (window.window.requests as usize) % MAX_SAMPLES;
            window.samples[slot] = ms;
        }
    }

    /// Time spent in one stage of a record's handling.
    pub fn record_stage(&self, stage: Stage, duration: Duration) {
        self.stages.get_or_create(&StageLabel { stage: stage.as_str() }).observe(duration.as_secs_f64());
    }

    /// Starts timing a record's stages from `start`.
    pub fn laps(&self, start: Instant) -> Laps<'_> {
        Laps { telemetry: self, last: start }
    }

    /// When a request last failed for a reason of Vault's or the node's.
    pub fn last_fault(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.last_fault.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Figures for the health event; starts a new latency window.
    pub fn take_interval(&self) -> IntervalReport {
        let mut stats = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        let mut operations = BTreeMap::new();
        let mut window = BTreeMap::new();
        for (name, op) in stats.operations.iter_mut() {
            let mut samples = std::mem::take(&mut op.samples);
            samples.sort_by(f64::total_cmp);
            operations.insert(
                name.clone(),
                OperationStats {
                    count: op.count,
                    errors: op.errors,
                    p50_ms: percentile(&samples, 0.50),
                    p99_ms: percentile(&samples, 0.99),
                },
            );
            window.insert(name.clone(), std::mem::take(&mut op.window));
        }
        IntervalReport { operations, window }
    }

    /// A renewal of the node's own token, by request or in the background.
    pub fn record_token_renewal(&self, success: bool) {
        if success {
            self.token_renewals.inc();
            *self.last_token_renewal.lock().unwrap_or_else(|p| p.into_inner()) = Some(chrono::Utc::now());
        } else {
            self.token_renewal_failures.inc();
        }
    }

    pub fn last_token_renewal(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        *self.last_token_renewal.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record_consumed(&self) {
        self.consumed.inc();
    }

    pub fn record_replied(&self) {
        self.replied.inc();
    }

    pub fn record_given_up(&self) {
        self.given_up.inc();
    }

    /// A record finished (answered, given up, or kept back for redelivery).
    pub fn record_progress(&self) {
        *self.last_progress.lock().unwrap_or_else(|p| p.into_inner()) = std::time::Instant::now();
    }

    /// Whether records are in flight and none has finished for `limit`.
    pub fn stalled(&self, limit: std::time::Duration) -> bool {
        self.in_flight.get() > 0 && self.last_progress.lock().unwrap_or_else(|p| p.into_inner()).elapsed() > limit
    }

    pub fn record_publish_refused(&self) {
        self.publishes_refused.inc();
    }

    pub fn record_dead_letter(&self) {
        self.dead_letters.inc();
    }

    pub fn set_in_flight(&self, requests: usize) {
        self.in_flight.set(i64::try_from(requests).unwrap_or(i64::MAX));
    }

    /// Leases in the registry, and those of them this instance renews.
    pub fn set_leases(&self, registered: usize, kept_alive_here: usize) {
        self.leases_registered.set(i64::try_from(registered).unwrap_or(i64::MAX));
        self.leases_kept_alive.set(i64::try_from(kept_alive_here).unwrap_or(i64::MAX));
    }

    pub fn set_lease_partitions(&self, partitions: usize) {
        self.lease_partitions.set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    pub fn record_lease_renewal(&self) {
        self.lease_renewals.inc();
    }

    /// A kept-alive lease that ended here: `refused` by Vault, else expired.
    pub fn record_lease_ended(&self, refused: bool) {
        if refused {
            self.lease_renewal_refusals.inc();
        } else {
            self.lease_expirations.inc();
        }
    }

    /// The kept-alive leases as this instance sees them.
    pub fn leases(&self) -> LeaseStats {
        let count = |gauge: &Gauge| u64::try_from(gauge.get()).unwrap_or(0);
        LeaseStats {
            registered: count(&self.leases_registered),
            kept_alive_here: count(&self.leases_kept_alive),
            renewals_total: self.lease_renewals.get(),
            expired_total: self.lease_expirations.get(),
            renewal_refusals_total: self.lease_renewal_refusals.get(),
        }
    }

    /// One login of the node to Vault.
    pub fn record_authentication(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.authentications.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// The node's logins to Vault: (succeeded, failed).
    pub fn authentications(&self) -> (u64, u64) {
        let count = |outcome| self.authentications.get_or_create(&OutcomeLabel { outcome }).get();
        (count("success"), count("failure"))
    }

    pub fn record_token_lookup(&self) {
        self.token_lookups.inc();
    }

    pub fn token_lookups(&self) -> u64 {
        self.token_lookups.get()
    }

    /// Credentials issued; `certificate` when they are an X.509 certificate.
    pub fn record_credentials_issued(&self, certificate: bool) {
        self.credentials_issued.inc();
        if certificate {
            self.certificates_issued.inc();
        }
    }

    /// What the node did in Vault since start: successful requests by the
    /// kind of work their operation does, and the credentials it issued.
    pub fn activity(&self) -> VaultActivity {
        let stats = self.interval.lock().unwrap_or_else(|p| p.into_inner());
        let mut activity = VaultActivity {
            credentials_issued_total: self.credentials_issued.get(),
            certificates_issued_total: self.certificates_issued.get(),
            ..VaultActivity::default()
        };
        for (name, op) in &stats.operations {
            let done = op.count - op.errors;
            match Operation::from_name(name).map(work_of) {
                Some(Work::ReadsSecret) => activity.secrets_read_total += done,
                Some(Work::WritesSecret) => activity.secrets_written_total += done,
                Some(Work::Encrypts) => activity.encryptions_total += done,
                Some(Work::Decrypts) => activity.decryptions_total += done,
                Some(Work::Rewraps) => {
                    activity.encryptions_total += done;
                    activity.decryptions_total += done;
                }
                _ => {}
            }
        }
        activity
    }

    /// What librdkafka says of the node's brokers: whether it reaches one.
    /// Counts a loss when it goes from reaching one to reaching none.
    pub fn set_kafka_connected(&self, connected: bool) {
        let before = self.kafka_connected.set(i64::from(connected));
        if before == 1 && !connected {
            self.kafka_link_losses.inc();
        }
    }

    pub fn kafka_connected(&self) -> bool {
        self.kafka_connected.get() == 1
    }

    pub fn kafka_link_losses(&self) -> u64 {
        self.kafka_link_losses.get()
    }

    pub fn set_assigned_partitions(&self, partitions: usize) {
        self.assigned_partitions.set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// The lag of every assigned partition, replacing the previous picture.
    pub fn set_consumer_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        self.consumer_lag.clear();
        let mut flat = BTreeMap::new();
        for ((topic, partition), records) in lag {
            self.consumer_lag
                .get_or_create(&PartitionLabels { topic: topic.clone(), partition: partition.to_string() })
                .set(records);
            flat.insert(format!("{topic}/{partition}"), records);
        }
        *self.lag.lock().unwrap_or_else(|p| p.into_inner()) = flat;
    }

    pub fn set_breaker(&self, state: BreakerState, opened_total: u64) {
        self.breaker_state.set(match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        });
        let before = self.last_breaker_opened.swap(opened_total, Ordering::Relaxed);
        self.breaker_opened.inc_by(opened_total.saturating_sub(before));
    }

    pub fn set_token_ttl(&self, ttl_seconds: u64) {
        self.token_ttl.set(i64::try_from(ttl_seconds).unwrap_or(i64::MAX));
    }

    pub fn record_vault_health_check(&self) {
        self.vault_health_checks.inc();
    }

    pub fn consumed_total(&self) -> u64 {
        self.consumed.get()
    }

    pub fn replied_total(&self) -> u64 {
        self.replied.get()
    }

    pub fn dead_letters_total(&self) -> u64 {
        self.dead_letters.get()
    }

    pub fn in_flight(&self) -> u64 {
        u64::try_from(self.in_flight.get()).unwrap_or(0)
    }

    pub fn assigned_partitions(&self) -> u64 {
        u64::try_from(self.assigned_partitions.get()).unwrap_or(0)
    }

    pub fn consumer_lag(&self) -> BTreeMap<String, i64> {
        self.lag.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn token_renewals(&self) -> (u64, u64) {
        (self.token_renewals.get(), self.token_renewal_failures.get())
    }

    pub fn vault_health_checks(&self) -> u64 {
        self.vault_health_checks.get()
    }

    /// The metrics in the OpenMetrics text format, for `/metrics`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len() - 1)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_cumulative_and_percentiles_per_interval() {
        let t = Telemetry::new();
        for ms in 1..=100 {
            t.record_request("get_secret", None, Duration::from_millis(ms));
        }
        t.record_request("get_secret", Some(ErrorCode::ResourceNotFound), Duration::from_millis(5));
        let first = t.take_interval();
        let get = &first.operations["get_secret"];
        assert_eq!((get.count, get.errors), (101, 1));
        assert_eq!(get.p50_ms, Some(50.0));
        assert_eq!(get.p99_ms, Some(99.0));
        assert_eq!(first.window["get_secret"].requests, 101);
        assert_eq!(first.window["get_secret"].errors, 1);
        assert_eq!(first.window["get_secret"].faults, 0, "not found is the request's fault");

        let second = t.take_interval();
        let get = &second.operations["get_secret"];
        assert_eq!((get.count, get.errors), (101, 1), "counts stay");
        assert_eq!(get.p99_ms, None, "no requests in this interval");
        assert_eq!(second.window["get_secret"], Window::default());
    }

    #[test]
    fn metrics_text_has_counters_by_operation_and_outcome() {
        let t = Telemetry::new();
        t.record_request("set_secret", None, Duration::from_millis(3));
        t.record_request("set_secret", Some(ErrorCode::InvalidState), Duration::from_millis(3));
        t.set_breaker(BreakerState::Open, 2);
        let text = t.encode();
        assert!(
            text.contains(r#"onex_vault_adapter_requests_total{operation="set_secret",outcome="success"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"onex_vault_adapter_requests_total{operation="set_secret",outcome="invalid_state"} 1"#),
            "{text}"
        );
        assert!(text.contains("onex_vault_adapter_breaker_state 2"), "{text}");
        assert!(text.contains("onex_vault_adapter_breaker_opened_total 2"), "{text}");
    }

    #[test]
    fn activity_counts_what_each_kind_of_operation_did() {
        let t = Telemetry::new();
        for operation in ["set_secret", "rotate_secret", "undelete_versions", "write_metadata", "delete_secret"] {
            t.record_request(operation, None, Duration::from_millis(1));
        }
        t.record_request("set_secret", Some(ErrorCode::PermissionDenied), Duration::from_millis(1));
        t.record_request("get_secrets_batch", None, Duration::from_millis(1));
        t.record_request("rewrap", None, Duration::from_millis(1));
        t.record_request("decrypt", None, Duration::from_millis(1));
        t.record_credentials_issued(true);
        t.record_credentials_issued(false);
        let activity = t.activity();
        assert_eq!(activity.secrets_written_total, 5, "every writing operation, not the denied one");
        assert_eq!(activity.secrets_read_total, 1);
        assert_eq!((activity.encryptions_total, activity.decryptions_total), (1, 2));
        assert_eq!((activity.credentials_issued_total, activity.certificates_issued_total), (2, 1));
        let text = t.encode();
        assert!(text.contains("onex_vault_adapter_certificates_issued_total 1"), "{text}");
    }

    #[test]
    fn a_kafka_link_loss_is_counted_once_per_loss() {
        let t = Telemetry::new();
        assert!(t.kafka_connected(), "connected until librdkafka says otherwise");
        t.set_kafka_connected(false);
        t.set_kafka_connected(false);
        assert!(!t.kafka_connected());
        t.set_kafka_connected(true);
        t.set_kafka_connected(false);
        assert_eq!(t.kafka_link_losses(), 2);
        assert!(t.encode().contains("onex_vault_adapter_kafka_connected 0"));
    }

    #[test]
    fn lag_is_reported_per_partition() {
        let t = Telemetry::new();
        t.set_consumer_lag(BTreeMap::from([(("req".to_owned(), 0), 3), (("req".to_owned(), 1), 0)]));
        assert_eq!(t.consumer_lag(), BTreeMap::from([("req/0".to_owned(), 3), ("req/1".to_owned(), 0)]));
        assert!(t.encode().contains(r#"onex_vault_adapter_consumer_lag{topic="req",partition="0"} 3"#));
    }
}
