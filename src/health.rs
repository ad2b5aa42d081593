//! The health event orchestrators read: published at start, every
//! `health_check.interval_seconds`, and at clean shutdown.
//!
//! Each event probes Vault (`sys/health`, `auth/token/lookup-self`,
//! `sys/mounts`), reads the breaker and the telemetry, and decides the status:
//!
//! - `unhealthy` when Vault is unreachable, uninitialized or sealed, or the
//!   circuit breaker is open;
//! - `degraded` when the breaker is half-open, or over the last interval the
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
//! its own traffic over the interval, what Vault reports, its own memory and
//! CPU); every other `ModelVaultMetrics` field is null.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use onex_vault_models::{
    BreakerState, BusStats, CircuitBreakerStatus, HealthDetails, HealthMetrics, HealthPhase, HealthStatus,
    NodeHealthEvent, SecurityStatus, TokenStatus, VaultMetrics, VaultStatus, NODE_HEALTH_EVENT_TYPE, NODE_NAME,
};
use reqwest::Method;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::contract::HealthCheck;
use crate::messages;
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
}

impl Reporter {
    fn new(node: Arc<Node>) -> Reporter {
        let now = Instant::now();
        Reporter { node, started: now, last_event: now, cpu: CpuSampler::new(), machine_memory_mb: machine_memory_mb() }
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
        let (status, status_reasons) = status_of(&vault_status, breaker_state, &report, &node.contract.health_check);
        let (renewals, renewal_failures) = telemetry.token_renewals();

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
            },
            read_cache: node.dispatcher.cache().map(|cache| cache.stats()),
            security: SecurityStatus {
                profile: node.gate.profile().as_str().to_owned(),
                requesters: node.gate.requesters() as u64,
                replay_ids_remembered: node.gate.replay_ids_remembered() as u64,
                warnings: node.gate.warnings(),
            },
            vault_metrics: vault_metrics(
                &report,
                elapsed,
                &vault_status,
                mounts,
                telemetry.vault_health_checks(),
                &mut self.cpu,
            ),
            operations: report.operations,
            vault: vault_status,
        }
    }
}

/// The status rules of the module comment, with the reasons that applied.
pub fn status_of(
    vault: &VaultStatus,
    breaker: BreakerState,
    report: &IntervalReport,
    limits: &HealthCheck,
) -> (HealthStatus, Vec<String>) {
    let mut unhealthy = Vec::new();
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
    let rate = |w: Window| Some(w.requests as f64 / elapsed);
    let reads = window(&["get_secret"]);
    let writes = window(&["set_secret", "delete_secret"]);
    let kv = window(&["get_secret", "set_secret", "delete_secret", "list_secrets"]);
    let all = report.window.values().fold(Window::default(), |a, w| Window {
        requests: a.requests + w.requests,
        errors: a.errors + w.errors,
        faults: a.faults + w.faults,
        total_ms: a.total_ms + w.total_ms,
    });
    VaultMetrics {
        token_renewals_per_second: rate(window(&["renew_token"])),
        secret_engines_mounted: mounts,
        secrets_read_per_second: rate(reads),
        secrets_written_per_second: rate(writes),
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

    #[test]
    fn healthy_when_vault_is_up_and_traffic_is_clean() {
        let (status, reasons) = status_of(&up(), BreakerState::Closed, &traffic(100, 1, 20.0), &limits());
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
            let (status, reasons) = status_of(&vault, breaker, &traffic(0, 0, 0.0), &limits());
            assert_eq!(status, HealthStatus::Unhealthy);
            assert_eq!(reasons, vec![reason.to_owned()]);
        }
    }

    #[test]
    fn degraded_on_faults_latency_or_half_open() {
        let (status, _) = status_of(&up(), BreakerState::Closed, &traffic(100, 6, 20.0), &limits());
        assert_eq!(status, HealthStatus::Degraded, "6% faults > 5%");
        let (status, _) = status_of(&up(), BreakerState::Closed, &traffic(100, 0, 1500.0), &limits());
        assert_eq!(status, HealthStatus::Degraded, "p99 over 1000 ms");
        let (status, _) = status_of(&up(), BreakerState::HalfOpen, &traffic(0, 0, 0.0), &limits());
        assert_eq!(status, HealthStatus::Degraded);
    }

    #[test]
    fn process_figures_are_measured() {
        assert!(resident_memory_mb().is_some_and(|mb| mb > 0.0));
        let mut cpu = CpuSampler::new();
        let _ = (0..200_000u64).map(|i| i.wrapping_mul(i)).sum::<u64>();
        assert!(cpu.sample().is_some_and(|p| p >= 0.0));
    }
}
