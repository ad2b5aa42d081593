//! The health event orchestrators read: published at start, every
//! `health_check.interval_seconds`, and at clean shutdown.
//!
//! Each event probes Vault (`sys/health`, `auth/token/lookup-self`,
//! `sys/mounts`), reads the breaker and the telemetry, and decides the status:
//!
//! - `unhealthy` when Vault is unreachable, uninitialized or sealed, the
//!   circuit breaker is open, or the node reaches no Kafka broker;
//! - `degraded` when the breaker is half-open, the node lost every Kafka
//!   broker at some point since the last event, or over the last interval the
//!   share of requests that failed for the node's or Vault's reasons exceeds
//!   `health_check.degraded_fault_ratio`, or an operation's p99 exceeds
//!   `health_check.degraded_p99_ms`;
//! - `healthy` otherwise.
//!
//! The payload is omnibase-core's `ModelNodeHealthEvent`: `health_metrics`
//! holds the generic figures every ONEX orchestrator reads, and
//! `health_metrics.custom_metrics` the node's own ([`HealthDetails`]: the
//! status and its reasons, Vault, token, breaker, bus, cache, security).
//! Its `vault_metrics` carries only what the node truly measures (rates of
//! its own traffic over the interval by kind of work, its own logins and
//! token lookups, the certificates it issued, what Vault reports, its own
//! memory and CPU); the fields only Vault itself knows (tokens, storage,
//! cluster, audit devices, policy evaluations, connections) are null.
//!
//! Over 500 lines only with its unit tests, kept beside the status rules they test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use onex_vault_models::{
    BreakerState, BusStats, CircuitBreakerStatus, HealthDetails, HealthMetrics, HealthPhase, HealthStatus,
    NodeHealthEvent, Operation, SecurityStatus, TokenStatus, VaultMetrics, VaultStatus, NODE_HEALTH_EVENT_TYPE,
    NODE_NAME,
};
use reqwest::Method;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::contract::HealthCheck;
use crate::messages;
use crate::operations::{work_of, Work};
use crate::runtime::Node;
use crate::telemetry::{IntervalReport, Window};

/// Publishes health events until `stop`, then one last `stopping` event.
pub async fn report(node: Arc<Node>, stop: CancellationToken) {
    let mut reporter = Reporter::new(node);
    let interval = Duration::from_secs(reporter.node.contract.health_check.interval_seconds);
    reporter.publish(HealthPhase::Started, &stop).await;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => reporter.publish(HealthPhase::Running, &stop).await,
        }
    }
    // The last event must go out although `stop` has fired: bound it instead.
    let last = CancellationToken::new();
    let cutoff = last.clone();
    let limit = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        cutoff.cancel();
    });
    reporter.publish(HealthPhase::Stopping, &last).await;
    limit.abort();
}

struct Reporter {
    node: Arc<Node>,
    started: Instant,
    last_event: Instant,
    cpu: CpuSampler,
    /// The machine's memory, read once.
    machine_memory_mb: Option<f64>,
    /// Counters as the last event saw them, for rates and "since the last event".
    token_lookups: u64,
    kafka_link_losses: u64,
}

impl Reporter {
    fn new(node: Arc<Node>) -> Reporter {
        let now = Instant::now();
        Reporter {
            node,
            started: now,
            last_event: now,
            cpu: CpuSampler::new(),
            machine_memory_mb: machine_memory_mb(),
            token_lookups: 0,
            kafka_link_losses: 0,
        }
    }

    async fn publish(&mut self, phase: HealthPhase, stop: &CancellationToken) {
        let details = self.details(phase).await;
        tracing::info!(
            status = ?details.status,
            reasons = ?details.status_reasons,
            phase = ?phase,
            "health event"
        );
        for warning in &details.security.warnings {
            tracing::warn!(profile = %details.security.profile, "{warning}");
        }
        let event = self.event(details);
        let message = messages::health(&self.node.contract.event_bus, event);
        crate::runtime::publish(&self.node, &message, stop).await;
    }

    /// The upstream event around `details`: the generic figures derived
    /// from them, the schedule of the next report.
    fn event(&self, details: HealthDetails) -> NodeHealthEvent {
        let interval = self.node.contract.health_check.interval_seconds;
        let now = Utc::now();
        let metrics = &details.vault_metrics;
        // Both rates are over the same interval: their ratio is the share of
        // failed requests.
        let error_rate = match (metrics.operation_errors_per_second, metrics.api_requests_per_second) {
            (Some(errors), Some(requests)) if requests > 0.0 => (errors * 100.0 / requests).clamp(0.0, 100.0),
            _ => 0.0,
        };
        let memory_mb = metrics.memory_usage_mb.unwrap_or(0.0);
        let next_report_time = (details.phase != HealthPhase::Stopping)
            .then(|| now + chrono::TimeDelta::seconds(i64::try_from(interval).unwrap_or(i64::MAX / 1000)));
        NodeHealthEvent {
            event_type: NODE_HEALTH_EVENT_TYPE.to_owned(),
            node_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, details.instance_id.as_bytes()),
            timestamp: now,
            event_id: Uuid::new_v4(),
            node_name: NODE_NAME.to_owned(),
            health_metrics: HealthMetrics {
                cpu_usage_percent: metrics.cpu_usage_percent.unwrap_or(0.0).clamp(0.0, 100.0),
                memory_usage_mb: memory_mb.round() as u64,
                memory_usage_percent: self
                    .machine_memory_mb
                    .map_or(0.0, |total| (memory_mb * 100.0 / total).clamp(0.0, 100.0)),
                response_time_ms: metrics.api_response_time_ms.unwrap_or(0.0),
                error_rate,
                success_rate: 100.0 - error_rate,
                active_connections: details.bus.in_flight,
                requests_per_second: metrics.api_requests_per_second.unwrap_or(0.0),
                uptime_seconds: details.uptime_seconds as u64,
                last_error_timestamp: self.node.telemetry.last_fault(),
                consecutive_errors: u64::from(details.circuit_breaker.consecutive_failures),
                health_check_latency_ms: details.vault.latency_ms,
                custom_metrics: details,
            },
            report_interval_seconds: interval,
            next_report_time,
        }
    }

    async fn details(&mut self, phase: HealthPhase) -> HealthDetails {
        let node = &self.node;
        let vault = node.dispatcher.vault();
        let telemetry = &node.telemetry;

        let probe = Instant::now();
        let sys_health = vault.health().await;
        let latency_ms = probe.elapsed().as_secs_f64() * 1000.0;
        telemetry.record_vault_health_check();
        let vault_status = match &sys_health {
            Ok(h) => VaultStatus {
                reachable: true,
                initialized: h.initialized,
                sealed: h.sealed,
                standby: h.standby,
                version: h.version.clone(),
                latency_ms: Some(latency_ms),
            },
            Err(_) => VaultStatus { reachable: false, ..VaultStatus::default() },
        };
        let usable = vault_status.reachable && vault_status.sealed != Some(true);
        let token_info = if usable { vault.lookup_self().await.ok() } else { None };
        if let Some(info) = token_info {
            telemetry.set_token_ttl(info.ttl);
        }
        // Raw: only the mount names are kept, whatever else the answer holds (vaultrs types every field).
        let mounts = if usable {
            vault
                .call::<serde_json::Map<String, serde_json::Value>>(Method::GET, "sys/mounts", None)
                .await
                .ok()
                .map(|m| m.values().filter(|v| v.get("type").is_some()).count() as u64)
        } else {
            None
        };

        let breaker = node.dispatcher.breaker().snapshot();
        let breaker_state = messages::breaker_state(breaker.state);
        telemetry.set_breaker(breaker_state, breaker.opened_total);

        let elapsed = self.last_event.elapsed().as_secs_f64().max(0.001);
        self.last_event = Instant::now();
        let report = telemetry.take_interval();
        let losses = telemetry.kafka_link_losses();
        let kafka = KafkaLink {
            connected: telemetry.kafka_connected(),
            lost_since_last_event: losses - std::mem::replace(&mut self.kafka_link_losses, losses),
        };
        let (status, status_reasons) =
            status_of(&vault_status, breaker_state, &kafka, &report, &node.contract.health_check);
        let (renewals, renewal_failures) = telemetry.token_renewals();
        let (authentications, authentication_failures) = telemetry.authentications();
        let lookups = telemetry.token_lookups();
        let activity = telemetry.activity();
        let mut vault_metrics =
            vault_metrics(&report, elapsed, &vault_status, mounts, telemetry.vault_health_checks(), &mut self.cpu);
        vault_metrics.token_lookups_per_second =
            Some((lookups - std::mem::replace(&mut self.token_lookups, lookups)) as f64 / elapsed);
        vault_metrics.authentication_success_rate =
            authentication_success_rate(authentications, authentication_failures);
        vault_metrics.certificates_issued_total = Some(activity.certificates_issued_total);

        HealthDetails {
            node_name: NODE_NAME.to_owned(),
            node_version: env!("CARGO_PKG_VERSION").to_owned(),
            instance_id: node.instance_id.clone(),
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            status,
            status_reasons,
            phase,
            interval_seconds: node.contract.health_check.interval_seconds,
            token: TokenStatus {
                ttl_seconds: token_info.map(|t| t.ttl),
                renewable: token_info.map(|t| t.renewable),
                renewals_total: renewals,
                renewal_failures_total: renewal_failures,
                last_renewal: telemetry.last_token_renewal(),
                logins_total: vault.logins_total(),
                authentications_total: authentications,
                authentication_failures_total: authentication_failures,
                lookups_total: lookups,
            },
            circuit_breaker: CircuitBreakerStatus {
                state: breaker_state,
                consecutive_failures: breaker.consecutive_failures,
                opened_total: breaker.opened_total,
                seconds_until_half_open: breaker.seconds_until_half_open,
            },
            bus: BusStats {
                consumed_total: telemetry.consumed_total(),
                replied_total: telemetry.replied_total(),
                dlq_total: telemetry.dead_letters_total(),
                in_flight: telemetry.in_flight(),
                assigned_partitions: telemetry.assigned_partitions(),
                consumer_lag: telemetry.consumer_lag(),
                kafka_connected: kafka.connected,
                kafka_link_losses_total: losses,
            },
            activity,
            leases: telemetry.leases(),
            read_cache: node.dispatcher.cache().map(|cache| cache.stats()),
            security: SecurityStatus {
                profile: node.gate.profile().as_str().to_owned(),
                requesters: node.gate.requesters() as u64,
                replay_ids_remembered: node.gate.replay_ids_remembered() as u64,
                warnings: node.gate.warnings(),
            },
            vault_metrics,
            operations: report.operations,
            vault: vault_status,
        }
    }
}

/// The node's link to Kafka, as the status rules judge it.
pub struct KafkaLink {
    /// librdkafka reaches a broker now.
    pub connected: bool,
    /// Times every broker was lost since the last health event.
    pub lost_since_last_event: u64,
}

/// The status rules of the module comment, with the reasons that applied.
pub fn status_of(
    vault: &VaultStatus,
    breaker: BreakerState,
    kafka: &KafkaLink,
    report: &IntervalReport,
    limits: &HealthCheck,
) -> (HealthStatus, Vec<String>) {
    let mut unhealthy = Vec::new();
    if !kafka.connected {
        unhealthy.push("kafka unreachable: no broker connected".to_owned());
    }
    if !vault.reachable {
        unhealthy.push("vault unreachable".to_owned());
    }
    if vault.initialized == Some(false) {
        unhealthy.push("vault not initialized".to_owned());
    }
    if vault.sealed == Some(true) {
        unhealthy.push("vault sealed".to_owned());
    }
    if breaker == BreakerState::Open {
        unhealthy.push("circuit breaker open".to_owned());
    }
    if !unhealthy.is_empty() {
        return (HealthStatus::Unhealthy, unhealthy);
    }
    let mut degraded = Vec::new();
    if breaker == BreakerState::HalfOpen {
        degraded.push("circuit breaker half-open".to_owned());
    }
    if kafka.lost_since_last_event > 0 {
        degraded.push(format!("kafka link lost {} time(s) since the last health event", kafka.lost_since_last_event));
    }
    let requests: u64 = report.window.values().map(|w| w.requests).sum();
    let faults: u64 = report.window.values().map(|w| w.faults).sum();
    if requests > 0 && faults as f64 / requests as f64 > limits.degraded_fault_ratio {
        degraded.push(format!("{faults} of {requests} requests failed for server-side reasons"));
    }
    for (operation, stats) in &report.operations {
        if let Some(p99) = stats.p99_ms.filter(|p| *p > limits.degraded_p99_ms) {
            degraded.push(format!("{operation} p99 {p99:.0} ms over {:.0} ms", limits.degraded_p99_ms));
        }
    }
    if degraded.is_empty() {
        (HealthStatus::Healthy, degraded)
    } else {
        (HealthStatus::Degraded, degraded)
    }
}

fn vault_metrics(
    report: &IntervalReport,
    elapsed: f64,
    vault: &VaultStatus,
    mounts: Option<u64>,
    health_checks: u64,
    cpu: &mut CpuSampler,
) -> VaultMetrics {
    let window = |names: &[&str]| {
        names.iter().filter_map(|n| report.window.get(*n)).fold(Window::default(), |a, w| Window {
            requests: a.requests + w.requests,
            errors: a.errors + w.errors,
            faults: a.faults + w.faults,
            total_ms: a.total_ms + w.total_ms,
        })
    };
    let doing = |kinds: &[Work]| {
        let names: Vec<&str> =
            Operation::all().filter(|&op| kinds.contains(&work_of(op))).map(Operation::as_str).collect();
        window(&names)
    };
    let rate = |w: Window| Some(w.requests as f64 / elapsed);
    // Reads, writes and transit work count what was done: successful requests.
    let done = |w: Window| Some(w.requests.saturating_sub(w.errors) as f64 / elapsed);
    let reads = doing(&[Work::ReadsSecret]);
    let writes = doing(&[Work::WritesSecret]);
    let kv = doing(&[Work::ReadsSecret, Work::WritesSecret, Work::ReadsKvMetadata]);
    let all = report.window.values().fold(Window::default(), |a, w| Window {
        requests: a.requests + w.requests,
        errors: a.errors + w.errors,
        faults: a.faults + w.faults,
        total_ms: a.total_ms + w.total_ms,
    });
    VaultMetrics {
        token_renewals_per_second: rate(doing(&[Work::RenewsToken])),
        secret_engines_mounted: mounts,
        secrets_read_per_second: done(reads),
        secrets_written_per_second: done(writes),
        encryption_operations_per_second: done(doing(&[Work::Encrypts, Work::Rewraps])),
        decryption_operations_per_second: done(doing(&[Work::Decrypts, Work::Rewraps])),
        kv_operations_per_second: rate(kv),
        avg_secret_read_latency_ms: reads.mean_ms(),
        avg_secret_write_latency_ms: writes.mean_ms(),
        is_leader: vault.standby.map(|standby| !standby),
        operation_errors_per_second: Some(all.errors as f64 / elapsed),
        seal_status_checks: Some(health_checks),
        memory_usage_mb: resident_memory_mb(),
        cpu_usage_percent: cpu.sample(),
        api_requests_per_second: rate(all),
        api_response_time_ms: all.mean_ms(),
        ..VaultMetrics::default()
    }
}

/// The share (0–100) of the node's logins to Vault that succeeded since it
/// started; null when it never logged in (token auth).
fn authentication_success_rate(succeeded: u64, failed: u64) -> Option<f64> {
    let attempts = succeeded + failed;
    (attempts > 0).then(|| succeeded as f64 * 100.0 / attempts as f64)
}

/// Resident memory of this process, from `/proc/self/status` (Linux).
fn resident_memory_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The machine's memory, from `/proc/meminfo` (Linux).
fn machine_memory_mb() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    (kib > 0.0).then_some(kib / 1024.0)
}

/// CPU used by this process between two samples, in percent of one core.
struct CpuSampler {
    last: Option<(Instant, Duration)>,
}

impl CpuSampler {
    fn new() -> CpuSampler {
        CpuSampler { last: process_cpu_time().map(|cpu| (Instant::now(), cpu)) }
    }

    fn sample(&mut self) -> Option<f64> {
        let now = (Instant::now(), process_cpu_time()?);
        let (then, cpu_then) = self.last.replace(now)?;
        let wall = now.0.duration_since(then).as_secs_f64();
        (wall > 0.0).then(|| (now.1.saturating_sub(cpu_then).as_secs_f64() / wall) * 100.0)
    }
}

/// User + system CPU time of the whole process.
fn process_cpu_time() -> Option<Duration> {
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is always valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        (libc::getrusage(libc::RUSAGE_SELF, &mut usage) == 0).then_some(usage)
    }?;
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    Some(time(usage.ru_utime) + time(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use onex_vault_models::OperationStats;

    use super::*;

    fn limits() -> HealthCheck {
        serde_yaml::from_str("{enabled: true, endpoint: /health, interval_seconds: 10, http_port: 8085}")
            .expect("health check")
    }

    fn up() -> VaultStatus {
        VaultStatus {
            reachable: true,
            initialized: Some(true),
            sealed: Some(false),
            standby: Some(false),
            ..VaultStatus::default()
        }
    }

    fn traffic(requests: u64, faults: u64, p99: f64) -> IntervalReport {
        IntervalReport {
            operations: BTreeMap::from([(
                "get_secret".to_owned(),
                OperationStats { count: requests, errors: faults, p50_ms: Some(1.0), p99_ms: Some(p99) },
            )]),
            window: BTreeMap::from([(
                "get_secret".to_owned(),
                Window { requests, errors: faults, faults, total_ms: requests as f64 },
            )]),
        }
    }

    fn linked() -> KafkaLink {
        KafkaLink { connected: true, lost_since_last_event: 0 }
    }

    #[test]
    fn healthy_when_vault_is_up_and_traffic_is_clean() {
        let (status, reasons) = status_of(&up(), BreakerState::Closed, &linked(), &traffic(100, 1, 20.0), &limits());
        assert_eq!(status, HealthStatus::Healthy, "{reasons:?}");
    }

    #[test]
    fn unhealthy_when_vault_is_down_sealed_or_the_breaker_open() {
        let down = VaultStatus { reachable: false, ..VaultStatus::default() };
        let sealed = VaultStatus { sealed: Some(true), ..up() };
        for (vault, breaker, reason) in [
            (down, BreakerState::Closed, "vault unreachable"),
            (sealed, BreakerState::Closed, "vault sealed"),
            (up(), BreakerState::Open, "circuit breaker open"),
        ] {
            let (status, reasons) = status_of(&vault, breaker, &linked(), &traffic(0, 0, 0.0), &limits());
            assert_eq!(status, HealthStatus::Unhealthy);
            assert_eq!(reasons, vec![reason.to_owned()]);
        }
    }

    #[test]
    fn degraded_on_faults_latency_or_half_open() {
        let (status, _) = status_of(&up(), BreakerState::Closed, &linked(), &traffic(100, 6, 20.0), &limits());
        assert_eq!(status, HealthStatus::Degraded, "6% faults > 5%");
        let (status, _) = status_of(&up(), BreakerState::Closed, &linked(), &traffic(100, 0, 1500.0), &limits());
        assert_eq!(status, HealthStatus::Degraded, "p99 over 1000 ms");
        let (status, _) = status_of(&up(), BreakerState::HalfOpen, &linked(), &traffic(0, 0, 0.0), &limits());
        assert_eq!(status, HealthStatus::Degraded);
    }

    #[test]
    fn the_kafka_link_is_judged_now_and_since_the_last_event() {
        let down = KafkaLink { connected: false, lost_since_last_event: 1 };
        let (status, reasons) = status_of(&up(), BreakerState::Closed, &down, &traffic(0, 0, 0.0), &limits());
        assert_eq!(status, HealthStatus::Unhealthy);
        assert_eq!(reasons, vec!["kafka unreachable: no broker connected".to_owned()]);
        let back = KafkaLink { connected: true, lost_since_last_event: 2 };
        let (status, reasons) = status_of(&up(), BreakerState::Closed, &back, &traffic(0, 0, 0.0), &limits());
        assert_eq!(status, HealthStatus::Degraded, "a link that came back still says it was lost");
        assert_eq!(reasons, vec!["kafka link lost 2 time(s) since the last health event".to_owned()]);
    }

    /// One successful request of each operation, over a 1 s interval.
    fn one_of_each() -> IntervalReport {
        let window = Operation::all()
            .map(|op| (op.as_str().to_owned(), Window { requests: 2, errors: 1, faults: 0, total_ms: 2.0 }))
            .collect();
        IntervalReport { operations: BTreeMap::new(), window }
    }

    #[test]
    fn rates_count_every_operation_of_a_kind() {
        let metrics = vault_metrics(&one_of_each(), 1.0, &up(), Some(3), 1, &mut CpuSampler::new());
        // set, delete, rotate, undelete, write_metadata.
        assert_eq!(metrics.secrets_written_per_second, Some(5.0));
        // get_secret and get_secrets_batch.
        assert_eq!(metrics.secrets_read_per_second, Some(2.0));
        // encrypt and rewrap; decrypt and rewrap.
        assert_eq!(metrics.encryption_operations_per_second, Some(2.0));
        assert_eq!(metrics.decryption_operations_per_second, Some(2.0));
        // Every request to KV (reads, writes, list_secrets, read_metadata).
        assert_eq!(metrics.kv_operations_per_second, Some(18.0));
        assert_eq!(metrics.api_requests_per_second, Some(2.0 * Operation::all().count() as f64));
        assert_eq!(metrics.token_renewals_per_second, Some(2.0), "renewals count attempts");
        assert_eq!(metrics.active_tokens, None, "only Vault knows");
    }

    #[test]
    fn authentication_success_rate_is_the_share_of_logins_that_succeeded() {
        assert_eq!(authentication_success_rate(0, 0), None, "token auth never logs in");
        assert_eq!(authentication_success_rate(3, 1), Some(75.0));
        assert_eq!(authentication_success_rate(1, 0), Some(100.0));
    }

    #[test]
    fn process_figures_are_measured() {
        assert!(resident_memory_mb().is_some_and(|mb| mb > 0.0));
        let mut cpu = CpuSampler::new();
        let _ = (0..200_000u64).map(|i| i.wrapping_mul(i)).sum::<u64>();
        assert!(cpu.sample().is_some_and(|p| p >= 0.0));
    }
}
