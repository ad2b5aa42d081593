//! Events the node publishes on its own: the periodic health event (an
//! omnibase-core `ModelNodeHealthEvent`, the node's own figures in its
//! `health_metrics.custom_metrics`), the circuit-breaker transition event
//! (omnibase-infra's `ModelCircuitBreakerStateEvent`) and lease events.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Payload type name of a health event.
pub const HEALTH_PAYLOAD_TYPE: &str = "ModelNodeHealthEvent";
/// Upstream's `event_type` of a node health event (`NODE_HEALTH_EVENT`).
pub const NODE_HEALTH_EVENT_TYPE: &str = "node_health_event";
/// Payload type name of a breaker transition.
pub const CIRCUIT_BREAKER_PAYLOAD_TYPE: &str = "ModelCircuitBreakerStateEvent";

/// The health event payload: omnibase-core's `ModelNodeHealthEvent`
/// (0.47.57, `models/discovery/model_nodehealthevent.py`), which refuses any
/// field it does not declare. Orchestrators read the generic figures in
/// `health_metrics`; the node's own (Vault, token, breaker, bus) are in
/// `health_metrics.custom_metrics`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NodeHealthEvent {
    /// Always `node_health_event`.
    pub event_type: String,
    /// This instance, as a UUID (v5 of its instance id).
    pub node_id: Uuid,
    pub timestamp: DateTime<Utc>,
    pub event_id: Uuid,
    /// `node_infrastructure_vault_adapter_effect`.
    pub node_name: String,
    pub health_metrics: HealthMetrics,
    /// Seconds between periodic events.
    pub report_interval_seconds: u64,
    /// When the next periodic event is due; null in the last one, at shutdown.
    pub next_report_time: Option<DateTime<Utc>>,
}

/// omnibase-core's `ModelHealthMetrics`: percentages are 0 to 100.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealthMetrics {
    /// Of one core, capped at 100.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub cpu_usage_percent: f64,
    /// Resident memory.
    pub memory_usage_mb: u64,
    /// Resident memory, of the machine's.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub memory_usage_percent: f64,
    /// Mean time to answer a request over the last interval.
    pub response_time_ms: f64,
    /// Failed requests over the last interval, percent.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub error_rate: f64,
    #[schemars(range(min = 0.0, max = 100.0))]
    pub success_rate: f64,
    /// Requests in flight.
    pub active_connections: u64,
    pub requests_per_second: f64,
    pub uptime_seconds: u64,
    /// When a request last failed for a reason of Vault's or the node's
    /// (not the requester's); null if none has since start.
    pub last_error_timestamp: Option<DateTime<Utc>>,
    /// Consecutive failed Vault calls (the circuit breaker's count).
    pub consecutive_errors: u64,
    /// How long Vault's `sys/health` took to answer.
    pub health_check_latency_ms: Option<f64>,
    /// Everything the node knows of itself and Vault.
    pub custom_metrics: HealthDetails,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// Where in its life the node was when it published a health event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthPhase {
    /// The first event, published at start.
    Started,
    /// A periodic event.
    Running,
    /// The last event, published at clean shutdown.
    Stopping,
}

/// The node's own health figures (`health_metrics.custom_metrics` of its
/// health event), published every `health_check.interval_seconds`, at start
/// and at clean shutdown (`phase` says which).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HealthDetails {
    pub node_name: String,
    pub node_version: String,
    pub instance_id: String,
    pub uptime_seconds: f64,
    pub status: HealthStatus,
    /// Why the status is not `healthy` (empty when it is).
    #[serde(default)]
    pub status_reasons: Vec<String>,
    pub phase: HealthPhase,
    /// Seconds between periodic events.
    pub interval_seconds: u64,
    pub vault: VaultStatus,
    pub token: TokenStatus,
    pub circuit_breaker: CircuitBreakerStatus,
    /// Per operation name (`get_secret`, ...).
    pub operations: BTreeMap<String, OperationStats>,
    pub bus: BusStats,
    /// What the node did in Vault since it started, by kind of work.
    #[serde(default)]
    pub activity: VaultActivity,
    /// The leases this node's group keeps alive.
    #[serde(default)]
    pub leases: LeaseStats,
    /// The read cache, when the contract enables it.
    #[serde(default)]
    pub read_cache: Option<CacheStats>,
    #[serde(default)]
    pub security: SecurityStatus,
    pub vault_metrics: VaultMetrics,
}

/// The node's security settings, so an orchestrator notices a node that runs
/// without them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct SecurityStatus {
    /// `strict` or `dev`.
    pub profile: String,
    /// Requesters in the access policy.
    pub requesters: u64,
    /// Signed-request ids the replay ledger holds now (group-wide, live ones).
    #[serde(default)]
    pub replay_ids_remembered: u64,
    /// Loud warnings, e.g. that the `dev` profile checks nothing.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// The node's read cache for `get_secret` (never its contents).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct CacheStats {
    pub entries: u64,
    pub bytes: u64,
    pub hits_total: u64,
    pub misses_total: u64,
    pub evictions_total: u64,
}

/// What `sys/health` said; null fields were not reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VaultStatus {
    pub reachable: bool,
    pub initialized: Option<bool>,
    pub sealed: Option<bool>,
    pub standby: Option<bool>,
    pub version: Option<String>,
    pub latency_ms: Option<f64>,
}

/// The node's own Vault token (never the token itself). Renewals count both
/// the background renewals and `renew_token` operations.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct TokenStatus {
    /// Remaining time to live; null for a token without expiry.
    pub ttl_seconds: Option<u64>,
    pub renewable: Option<bool>,
    pub renewals_total: u64,
    pub renewal_failures_total: u64,
    /// When the node last renewed its token.
    #[serde(default)]
    pub last_renewal: Option<DateTime<Utc>>,
    /// Logins after the first: the token could not be renewed or was revoked.
    #[serde(default)]
    pub logins_total: u64,
    /// Authentications of the node to Vault (AppRole logins, the first
    /// included) that succeeded; 0 with token auth, which never logs in.
    #[serde(default)]
    pub authentications_total: u64,
    /// AppRole logins Vault refused or that failed on the way.
    #[serde(default)]
    pub authentication_failures_total: u64,
    /// Lookups of the node's token (`lookup_token` requests, health probes,
    /// the dead-token check).
    #[serde(default)]
    pub lookups_total: u64,
}

// Each operation declares its kind of work once, in its file in the
// node's `src/operations/` (`Perform::WORK`).
/// What the node did in Vault since it started: successful requests by
/// kind of work, and what issued credentials were.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VaultActivity {
    /// Reads of secret values (`get_secret`, `get_secrets_batch`).
    pub secrets_read_total: u64,
    /// Requests that changed a secret's data or metadata (`set_secret`,
    /// `delete_secret`, `rotate_secret`, `undelete_versions`, `write_metadata`).
    pub secrets_written_total: u64,
    /// Transit encryptions (`encrypt`; a `rewrap` counts as one of each).
    pub encryptions_total: u64,
    /// Transit decryptions (`decrypt`, `rewrap`).
    pub decryptions_total: u64,
    /// Dynamic credentials issued (`issue_credentials`).
    pub credentials_issued_total: u64,
    /// Of those, X.509 certificates (a PKI `issue` or `sign`).
    pub certificates_issued_total: u64,
}

/// The kept-alive leases of the node's group, as this instance sees them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct LeaseStats {
    /// Leases in the lease registry (kept alive by the group).
    pub registered: u64,
    /// Those this instance renews (the registry partitions it holds).
    pub kept_alive_here: u64,
    /// Renewals this instance made.
    pub renewals_total: u64,
    /// Leases that ran out while this instance kept them (max TTL reached,
    /// or renewals failed until the end).
    pub expired_total: u64,
    /// Leases Vault refused to renew (revoked, not renewable, not found).
    pub renewal_refusals_total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CircuitBreakerStatus {
    pub state: BreakerState,
    pub consecutive_failures: u32,
    pub opened_total: u64,
    pub seconds_until_half_open: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct OperationStats {
    /// Requests since start.
    pub count: u64,
    /// Failed requests since start.
    pub errors: u64,
    /// Latency percentiles over the last interval; null when it had none.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct BusStats {
    pub consumed_total: u64,
    pub replied_total: u64,
    pub dlq_total: u64,
    pub in_flight: u64,
    /// Partitions of the request topic this instance holds.
    pub assigned_partitions: u64,
    /// Records behind the end of each assigned partition (`topic/partition`),
    /// as librdkafka last measured it.
    #[serde(default)]
    pub consumer_lag: BTreeMap<String, i64>,
    /// Whether the node reaches a Kafka broker now (librdkafka's view).
    #[serde(default = "connected")]
    pub kafka_connected: bool,
    /// Times the node lost every broker since it started.
    #[serde(default)]
    pub kafka_link_losses_total: u64,
}

fn connected() -> bool {
    true
}

/// The fields of ONEX `ModelVaultMetrics` the node can truly measure; every
/// field it cannot measure is null, never invented.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct VaultMetrics {
    pub active_tokens: Option<u64>,
    pub token_lookups_per_second: Option<f64>,
    pub authentication_success_rate: Option<f64>,
    pub token_renewals_per_second: Option<f64>,
    pub secret_engines_mounted: Option<u64>,
    pub secrets_read_per_second: Option<f64>,
    pub secrets_written_per_second: Option<f64>,
    pub kv_operations_per_second: Option<f64>,
    pub avg_secret_read_latency_ms: Option<f64>,
    pub avg_secret_write_latency_ms: Option<f64>,
    pub policy_evaluations_per_second: Option<f64>,
    pub storage_operations_per_second: Option<f64>,
    pub storage_size_mb: Option<f64>,
    pub is_leader: Option<bool>,
    pub cluster_nodes: Option<u64>,
    pub unsealed_nodes: Option<u64>,
    pub operation_errors_per_second: Option<f64>,
    pub audit_log_failures: Option<u64>,
    pub seal_status_checks: Option<u64>,
    pub memory_usage_mb: Option<f64>,
    pub cpu_usage_percent: Option<f64>,
    pub certificates_issued_total: Option<u64>,
    pub certificates_revoked_total: Option<u64>,
    pub encryption_operations_per_second: Option<f64>,
    pub decryption_operations_per_second: Option<f64>,
    pub client_connections: Option<u64>,
    pub api_requests_per_second: Option<f64>,
    pub api_response_time_ms: Option<f64>,
}

/// A change of the node's circuit-breaker state, published at every change.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CircuitBreakerEvent {
    pub service_name: String,
    pub state: BreakerState,
    pub previous_state: BreakerState,
    pub failure_count: u32,
    pub threshold: u32,
    pub timestamp: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
}

/// Payload type name of a lease event.
pub const LEASE_EVENT_PAYLOAD_TYPE: &str = "ModelVaultLeaseEvent";

/// What happened to a lease the node was keeping alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LeaseEventKind {
    /// Vault capped the last renewal: the lease ends in `ttl_seconds`.
    Expiring,
    /// The lease ran out.
    Expired,
    /// Vault refused to renew it (not renewable, not found).
    RenewalFailed,
}

/// A kept-alive lease the node can renew no more (lease-events topic).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LeaseEvent {
    pub lease_id: String,
    pub event: LeaseEventKind,
    /// Seconds the lease has left (0 when expired).
    pub ttl_seconds: u64,
    pub reason: String,
    /// The node instance that kept the lease.
    pub instance_id: Option<String>,
    pub timestamp: DateTime<Utc>,
}
