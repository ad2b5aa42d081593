//! The node's `contract.yaml`: its types, loading with `${env.X}` resolution,
//! and validation that names the field at fault.
//!
//! Everything the node does that an operator may want to change lives here;
//! the rest of the code receives a validated [`Contract`] and never reads the
//! environment itself.
//!
//! Over 500 lines: every contract section's type sits beside its checks, so a
//! setting and what it may hold are read together (TLS/SASL settings live in
//! the client crate's `kafka` module, the access policy in `security.rs`).

mod interpolate;
mod security;

pub use onex_vault_client::kafka::{is_secret_property, KafkaProtocol, KafkaSecurity};
use onex_vault_client::kafka::{redacted, require, scalar_string};
pub use security::{AccessPolicySettings, Grant, KeyRef, RequesterPolicy, Security, SecurityProfile, VaultKeySource};

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use onex_vault_models::{InvalidField, MountName, Operation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use strum::IntoEnumIterator as _;

/// Why a contract could not be used: every problem names its field path
/// (none for a file that could not be read or parsed).
#[derive(Debug, thiserror::Error)]
#[error("invalid contract {source_name}:{}", problems.iter().map(|p| format!("\n  {p}")).collect::<String>())]
pub struct ContractError {
    pub source_name: String,
    pub problems: Vec<InvalidField>,
}

/// What a topic is for: each role is one contract field under `event_bus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum TopicRole {
    Requests,
    Completed,
    Failed,
    Health,
    CircuitBreaker,
    Audit,
    LeaseEvents,
    ReplayClaims,
    LeaseRegistry,
    DeadLetters,
}

impl TopicRole {
    /// The contract field that names the topic.
    pub fn field(self) -> &'static str {
        match self {
            TopicRole::Requests => "event_bus.subscribe_topics.requests",
            TopicRole::Completed => "event_bus.publish_topics.completed",
            TopicRole::Failed => "event_bus.publish_topics.failed",
            TopicRole::Health => "event_bus.publish_topics.health",
            TopicRole::CircuitBreaker => "event_bus.publish_topics.circuit_breaker",
            TopicRole::Audit => "event_bus.publish_topics.audit",
            TopicRole::LeaseEvents => "event_bus.publish_topics.lease_events",
            TopicRole::ReplayClaims => "event_bus.publish_topics.replay_claims",
            TopicRole::LeaseRegistry => "event_bus.publish_topics.lease_registry",
            TopicRole::DeadLetters => "event_bus.dlq_topics.requests",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub name: String,
    pub node_type: String,
    pub contract_version: ContractVersion,
    pub node_version: String,
    pub description: String,
    pub input_model: ModelRef,
    pub output_model: ModelRef,
    pub event_bus: EventBus,
    pub io_operations: Vec<IoOperation>,
    pub vault: VaultSettings,
    pub error_handling: ErrorHandling,
    pub health_check: HealthCheck,
    #[serde(default)]
    pub security: Security,
    /// Requesters and what they may do; default deny (strict profile).
    #[serde(default)]
    pub access_policy: AccessPolicySettings,
    #[serde(default)]
    pub dependencies: Vec<Dependency>,
    /// Free-form: transport, tags, features. Not interpreted by the node.
    #[serde(default)]
    pub metadata: serde_yaml::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    pub name: String,
    pub module: String,
    /// JSON Schema file, relative to the repository root.
    pub schema: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBus {
    #[serde(deserialize_with = "scalar_string")]
    pub bootstrap_servers: String,
    #[serde(deserialize_with = "scalar_string")]
    pub consumer_group: String,
    pub session_timeout_ms: u32,
    pub subscribe_topics: SubscribeTopics,
    pub publish_topics: PublishTopics,
    pub dlq_topics: DlqTopics,
    pub max_in_flight: usize,
    pub max_record_bytes: usize,
    /// Longest record key accepted (keys are copied into dead letters).
    #[serde(default = "default_max_key_bytes")]
    pub max_key_bytes: usize,
    /// Most bytes of record headers (names and values) accepted.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    pub dlq_value_limit_bytes: usize,
    pub shutdown_timeout_seconds: u64,
    /// A record not finished within this long (its key's turn, the Vault
    /// call, every publish) is given up: dead-lettered and answered with
    /// `ONEX_CORE_092_TIMEOUT_ERROR`, and its slot goes back. `/ready` says
    /// so when records wait and none has finished for this long.
    #[serde(default = "default_record_deadline_seconds")]
    pub record_deadline_seconds: u64,
    /// librdkafka `fetch.wait.max.ms` of the request consumer: how long a
    /// fetch may wait for records. Apache Kafka answers as soon as a record
    /// arrives, so this only paces idle polling; brokers that answer only at
    /// the deadline (Tansu) add it to every hop.
    #[serde(default = "default_fetch_wait_max_ms")]
    pub fetch_wait_max_ms: u32,
    /// librdkafka `linger.ms` of the producer of replies, dead letters and
    /// events: how long a message may wait for others to share its batch.
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// `linger.ms` of audit records. Other than `linger_ms`, they get a
    /// producer of their own (nobody waits on them: fewer, larger batches);
    /// equal, they share the one producer.
    #[serde(default = "default_audit_linger_ms")]
    pub audit_linger_ms: u32,
    /// TLS and SASL to the brokers, and further librdkafka properties.
    #[serde(default)]
    pub security: KafkaSecurity,
}

fn default_record_deadline_seconds() -> u64 {
    120
}

fn default_max_key_bytes() -> usize {
    1024
}

fn default_max_header_bytes() -> usize {
    16 * 1024
}

impl EventBus {
    /// The bounds a request record must keep before it is parsed.
    pub fn limits(&self) -> crate::decode::Limits {
        crate::decode::Limits {
            max_record_bytes: self.max_record_bytes,
            max_key_bytes: self.max_key_bytes,
            max_header_bytes: self.max_header_bytes,
        }
    }
}

fn default_fetch_wait_max_ms() -> u32 {
    10
}

fn default_linger_ms() -> u32 {
    1
}

fn default_audit_linger_ms() -> u32 {
    default_linger_ms()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeTopics {
    #[serde(deserialize_with = "scalar_string")]
    pub requests: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishTopics {
    #[serde(deserialize_with = "scalar_string")]
    pub completed: String,
    #[serde(deserialize_with = "scalar_string")]
    pub failed: String,
    #[serde(deserialize_with = "scalar_string")]
    pub health: String,
    #[serde(deserialize_with = "scalar_string")]
    pub circuit_breaker: String,
    #[serde(deserialize_with = "scalar_string")]
    pub audit: String,
    #[serde(deserialize_with = "scalar_string")]
    pub lease_events: String,
    /// The replay ledger (strict profile): claims of signed requests' ids,
    /// written and read by every instance of the group.
    #[serde(deserialize_with = "scalar_string")]
    pub replay_claims: String,
    /// The lease registry: leases the group keeps alive, keyed by lease id
    /// (compacted; a tombstone takes a lease off). Every instance reads all
    /// of it; each renews the leases of the partitions its `.leases` group
    /// membership holds (see `leases`).
    #[serde(deserialize_with = "scalar_string")]
    pub lease_registry: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqTopics {
    #[serde(deserialize_with = "scalar_string")]
    pub requests: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IoOperation {
    pub operation: Operation,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub input_fields: Vec<String>,
    #[serde(default)]
    pub output_fields: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSettings {
    #[serde(deserialize_with = "scalar_string")]
    pub address: String,
    /// Empty for none.
    #[serde(default, deserialize_with = "scalar_string")]
    pub namespace: String,
    pub default_mount: MountName,
    pub request_timeout_ms: u64,
    /// How long start-up keeps trying to reach a Vault that is not there yet
    /// (unreachable, sealed, 5xx) before the node gives up; 0: one attempt.
    #[serde(default = "default_startup_wait_seconds")]
    pub startup_wait_seconds: u64,
    pub auth: VaultAuth,
    #[serde(default)]
    pub token_renewal: TokenRenewal,
    #[serde(default)]
    pub lease_keep_alive: LeaseKeepAlive,
    #[serde(default)]
    pub read_cache: ReadCacheSettings,
    #[serde(default)]
    pub batch: BatchLimits,
    #[serde(default)]
    pub tls: VaultTls,
}

/// TLS to Vault beyond the system's trusted roots: PEM files. Empty: unset.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultTls {
    /// CA bundle that signs Vault's certificate (VAULT_CACERT).
    #[serde(default, deserialize_with = "scalar_string")]
    pub ca_cert: String,
    /// The node's client certificate and key, for Vault's TLS client auth
    /// (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY); both or neither.
    #[serde(default, deserialize_with = "scalar_string")]
    pub client_cert: String,
    #[serde(default, deserialize_with = "scalar_string")]
    pub client_key: String,
}

/// The optional `get_secret` cache (see `cache.rs`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadCacheSettings {
    pub enabled: bool,
    pub ttl_seconds: u64,
    pub max_entries: usize,
    pub max_bytes: usize,
}

impl Default for ReadCacheSettings {
    fn default() -> Self {
        ReadCacheSettings { enabled: false, ttl_seconds: 300, max_entries: 10_000, max_bytes: 16 << 20 }
    }
}

/// `get_secrets_batch` limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchLimits {
    /// Most paths one batch may name.
    pub max_paths: usize,
    /// Paths of one batch read at once.
    pub concurrency: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits { max_paths: 64, concurrency: 8 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRenewal {
    pub enabled: bool,
    /// Renew when this fraction of the token's TTL has passed.
    pub renew_at_fraction: f64,
}

impl Default for TokenRenewal {
    fn default() -> Self {
        TokenRenewal { enabled: true, renew_at_fraction: 0.667 }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseKeepAlive {
    /// Leases kept alive at once; further `keep_alive` requests are renewed
    /// once but not tracked.
    pub max_tracked: usize,
}

impl Default for LeaseKeepAlive {
    fn default() -> Self {
        LeaseKeepAlive { max_tracked: 1000 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    Token,
    Approle,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultAuth {
    pub method: AuthMethod,
    #[serde(default, with = "redacted")]
    pub token: Option<SecretString>,
    #[serde(default, with = "redacted")]
    pub role_id: Option<SecretString>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub role_id_file: String,
    #[serde(default, with = "redacted")]
    pub secret_id: Option<SecretString>,
    #[serde(default, deserialize_with = "scalar_string")]
    pub secret_id_file: String,
    #[serde(default = "default_approle_mount")]
    pub approle_mount: String,
}

fn default_startup_wait_seconds() -> u64 {
    60
}

fn default_approle_mount() -> String {
    "approle".into()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorHandling {
    pub retry_policy: RetryPolicy,
    pub circuit_breaker: CircuitBreakerPolicy,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
    pub exponential_base: f64,
    #[serde(default = "yes")]
    pub jitter: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerPolicy {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub reset_timeout_ms: u64,
    #[serde(default = "one")]
    pub half_open_max_probes: u32,
    #[serde(default = "one")]
    pub success_threshold: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    pub enabled: bool,
    pub endpoint: String,
    pub interval_seconds: u64,
    pub http_port: u16,
    #[serde(default = "default_fault_ratio")]
    pub degraded_fault_ratio: f64,
    #[serde(default = "default_p99_ms")]
    pub degraded_p99_ms: f64,
}

fn default_fault_ratio() -> f64 {
    0.05
}

fn default_p99_ms() -> f64 {
    1000.0
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

impl Contract {
    /// Reads, resolves and validates the contract at `path`, taking
    /// environment variables from the process.
    pub fn load(path: &Path) -> Result<Contract, ContractError> {
        let text = std::fs::read_to_string(path).map_err(|e| ContractError {
            source_name: path.display().to_string(),
            problems: vec![InvalidField::new("", format!("cannot read the file: {e}"))],
        })?;
        Contract::from_yaml(&text, &path.display().to_string(), &|name| std::env::var(name).ok())
    }

    /// Parses, resolves and validates contract text; `lookup` reads variables.
    pub fn from_yaml(
        text: &str,
        source_name: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Contract, ContractError> {
        let fail = |problems: Vec<InvalidField>| ContractError { source_name: source_name.to_owned(), problems };
        let mut tree: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| fail(vec![InvalidField::new("", format!("not valid YAML: {e}"))]))?;
        let unresolved = interpolate::resolve(&mut tree, lookup);
        if !unresolved.is_empty() {
            return Err(fail(unresolved.into_iter().map(|u| InvalidField::new(u.field, u.problem)).collect()));
        }
        let mut contract: Contract = serde_path_to_error::deserialize(tree).map_err(|e| {
            let field = e.path().to_string();
            fail(vec![InvalidField::new(field, e.into_inner().to_string())])
        })?;
        contract.read_credential_files().map_err(|p| fail(vec![p]))?;
        contract.access_policy.read_files().map_err(|p| fail(vec![p]))?;
        contract.security.read_files().map_err(|p| fail(vec![p]))?;
        contract.event_bus.security.read_files().map_err(|p| fail(vec![p]))?;
        let problems = contract.problems();
        if problems.is_empty() {
            Ok(contract)
        } else {
            Err(fail(problems))
        }
    }

    /// Fills `role_id` and `secret_id` from their files when only a file is set.
    fn read_credential_files(&mut self) -> Result<(), InvalidField> {
        let auth = &mut self.vault.auth;
        for (field, value, file) in [
            ("role_id_file", &mut auth.role_id, &auth.role_id_file),
            ("secret_id_file", &mut auth.secret_id, &auth.secret_id_file),
        ] {
            if value.is_some() || file.is_empty() {
                continue;
            }
            let text = std::fs::read_to_string(file).map_err(|e| {
                InvalidField::new(format!("vault.auth.{field}"), format!("cannot read {file}: {}", e.kind()))
            })?;
            *value = Some(SecretString::from(text.trim().to_owned()));
        }
        Ok(())
    }

    /// Every rule the types do not express, each naming its field path.
    fn problems(&self) -> Vec<InvalidField> {
        let mut p = Vec::new();
        require(
            &mut p,
            self.name == onex_vault_models::NODE_NAME,
            "name",
            format!("must be {}", onex_vault_models::NODE_NAME),
        );
        require(&mut p, self.node_type == "EFFECT_GENERIC", "node_type", "must be EFFECT_GENERIC");

        let bus = &self.event_bus;
        require(
            &mut p,
            !bus.bootstrap_servers.trim().is_empty(),
            "event_bus.bootstrap_servers",
            "must not be empty (set KAFKA_BOOTSTRAP_SERVERS)",
        );
        require(&mut p, !bus.consumer_group.trim().is_empty(), "event_bus.consumer_group", "must not be empty");
        require(&mut p, bus.session_timeout_ms >= 1000, "event_bus.session_timeout_ms", "must be ≥ 1000");
        require(&mut p, bus.max_in_flight >= 1, "event_bus.max_in_flight", "must be ≥ 1");
        require(&mut p, bus.max_record_bytes >= 1024, "event_bus.max_record_bytes", "must be ≥ 1024");
        require(&mut p, bus.dlq_value_limit_bytes >= 1, "event_bus.dlq_value_limit_bytes", "must be ≥ 1");
        require(&mut p, bus.max_key_bytes >= 64, "event_bus.max_key_bytes", "must be ≥ 64");
        require(&mut p, bus.max_header_bytes >= 1024, "event_bus.max_header_bytes", "must be ≥ 1024");
        require(&mut p, bus.shutdown_timeout_seconds >= 1, "event_bus.shutdown_timeout_seconds", "must be ≥ 1");
        require(
            &mut p,
            bus.record_deadline_seconds * 1000 > self.vault.request_timeout_ms,
            "event_bus.record_deadline_seconds",
            "must be longer than vault.request_timeout_ms",
        );
        require(
            &mut p,
            (1..=10_000).contains(&bus.fetch_wait_max_ms),
            "event_bus.fetch_wait_max_ms",
            "must be 1 to 10000",
        );
        require(&mut p, bus.linger_ms <= 1000, "event_bus.linger_ms", "must be 0 to 1000");
        require(&mut p, bus.audit_linger_ms <= 1000, "event_bus.audit_linger_ms", "must be 0 to 1000");
        let mut seen = BTreeSet::new();
        for (role, topic) in self.topics() {
            let field = role.field();
            if !is_onex_topic(topic) {
                p.push(InvalidField::new(
                    field,
                    format!("{topic:?} does not match the ONEX topic pattern onex.<kind>.<domain>.<event>.v<N>"),
                ));
            }
            if !seen.insert(topic) {
                p.push(InvalidField::new(field, format!("{topic:?} is used for two roles")));
            }
        }

        let mut names = BTreeSet::new();
        for (i, op) in self.io_operations.iter().enumerate() {
            if !names.insert(op.operation) {
                p.push(InvalidField::new(
                    format!("io_operations[{i}].operation"),
                    format!("{:?} is listed twice", op.operation.as_str()),
                ));
            }
        }
        require(&mut p, !self.io_operations.is_empty(), "io_operations", "must list at least one operation");

        let vault = &self.vault;
        let address_ok = reqwest::Url::parse(&vault.address)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
        require(&mut p, address_ok, "vault.address", "must be an http(s) URL with a host (set VAULT_ADDR)");
        require(&mut p, vault.request_timeout_ms >= 1, "vault.request_timeout_ms", "must be ≥ 1");
        let tls = &vault.tls;
        for (field, variable, file) in [
            ("ca_cert", "VAULT_CACERT", &tls.ca_cert),
            ("client_cert", "VAULT_CLIENT_CERT", &tls.client_cert),
            ("client_key", "VAULT_CLIENT_KEY", &tls.client_key),
        ] {
            if !file.is_empty() && !Path::new(file).is_file() {
                p.push(InvalidField::new(
                    format!("vault.tls.{field}"),
                    format!("cannot read {file} (set {variable} to a PEM file)"),
                ));
            }
        }
        require(
            &mut p,
            tls.client_cert.is_empty() == tls.client_key.is_empty(),
            "vault.tls.client_cert, vault.tls.client_key",
            "set both (VAULT_CLIENT_CERT and VAULT_CLIENT_KEY) or neither",
        );
        let filled = |s: &Option<SecretString>| s.as_ref().is_some_and(|s| !s.expose_secret().is_empty());
        match vault.auth.method {
            AuthMethod::Token => require(
                &mut p,
                filled(&vault.auth.token),
                "vault.auth.token",
                "required when vault.auth.method is token (set VAULT_TOKEN)",
            ),
            AuthMethod::Approle => {
                require(
                    &mut p,
                    filled(&vault.auth.role_id),
                    "vault.auth.role_id",
                    "required when vault.auth.method is approle (set VAULT_ROLE_ID or VAULT_ROLE_ID_FILE)",
                );
                require(
                    &mut p,
                    filled(&vault.auth.secret_id),
                    "vault.auth.secret_id",
                    "required when vault.auth.method is approle (set VAULT_SECRET_ID or VAULT_SECRET_ID_FILE)",
                );
            }
        }

        let retry = &self.error_handling.retry_policy;
        require(&mut p, retry.max_attempts >= 1, "error_handling.retry_policy.max_attempts", "must be ≥ 1");
        require(&mut p, retry.max_attempts <= 20, "error_handling.retry_policy.max_attempts", "must be ≤ 20");
        require(&mut p, retry.initial_delay_ms >= 1, "error_handling.retry_policy.initial_delay_ms", "must be ≥ 1");
        require(
            &mut p,
            retry.max_delay_ms >= retry.initial_delay_ms,
            "error_handling.retry_policy.max_delay_ms",
            "must be ≥ initial_delay_ms",
        );
        require(
            &mut p,
            retry.exponential_base >= 1.0 && retry.exponential_base.is_finite(),
            "error_handling.retry_policy.exponential_base",
            "must be ≥ 1.0",
        );
        let breaker = &self.error_handling.circuit_breaker;
        require(
            &mut p,
            breaker.failure_threshold >= 1,
            "error_handling.circuit_breaker.failure_threshold",
            "must be ≥ 1",
        );
        require(
            &mut p,
            breaker.reset_timeout_ms >= 1,
            "error_handling.circuit_breaker.reset_timeout_ms",
            "must be ≥ 1",
        );
        require(
            &mut p,
            breaker.half_open_max_probes >= 1,
            "error_handling.circuit_breaker.half_open_max_probes",
            "must be ≥ 1",
        );
        require(
            &mut p,
            breaker.success_threshold >= 1,
            "error_handling.circuit_breaker.success_threshold",
            "must be ≥ 1",
        );
        let renewal = &self.vault.token_renewal;
        require(
            &mut p,
            renewal.renew_at_fraction > 0.0 && renewal.renew_at_fraction < 1.0,
            "vault.token_renewal.renew_at_fraction",
            "must be between 0 and 1 (exclusive)",
        );
        require(
            &mut p,
            self.vault.lease_keep_alive.max_tracked >= 1,
            "vault.lease_keep_alive.max_tracked",
            "must be ≥ 1",
        );
        let health = &self.health_check;
        require(&mut p, health.endpoint.starts_with('/'), "health_check.endpoint", "must start with '/'");
        require(
            &mut p,
            (0.0..=1.0).contains(&health.degraded_fault_ratio),
            "health_check.degraded_fault_ratio",
            "must be between 0 and 1",
        );
        require(&mut p, health.degraded_p99_ms > 0.0, "health_check.degraded_p99_ms", "must be > 0");
        require(&mut p, self.health_check.interval_seconds >= 1, "health_check.interval_seconds", "must be ≥ 1");
        self.security.problems(&mut p);
        if self.security.profile == SecurityProfile::Strict && !self.security.allow_insecure_transport {
            for weakness in self.insecure_transport() {
                p.push(InvalidField::new(
                    weakness.field,
                    format!(
                        "{} in the strict profile: refused (security.allow_insecure_transport, env \
                         ONEX_ALLOW_INSECURE_TRANSPORT, accepts it for a test stack)",
                        weakness.problem
                    ),
                ));
            }
        }
        self.event_bus.security.problems(&mut p);
        self.access_policy.problems(&mut p);
        p
    }

    /// What leaves secrets or tokens readable or forgeable on the wire, each
    /// as `field: what`.
    pub fn insecure_transport(&self) -> Vec<InvalidField> {
        let mut weaknesses = Vec::new();
        if self.vault.address.trim().to_ascii_lowercase().starts_with("http://") {
            weaknesses
                .push(InvalidField::new("vault.address", "Vault over http:// (the token and every secret in clear)"));
        }
        let kafka = &self.event_bus.security;
        if matches!(kafka.protocol, KafkaProtocol::Plaintext | KafkaProtocol::SaslPlaintext) {
            weaknesses.push(InvalidField::new("event_bus.security.protocol", "Kafka without TLS"));
        }
        for (key, value) in kafka.librdkafka_properties() {
            let off = match key.as_str() {
                "enable.ssl.certificate.verification" => value.eq_ignore_ascii_case("false"),
                "ssl.endpoint.identification.algorithm" => value.eq_ignore_ascii_case("none") || value.is_empty(),
                _ => false,
            };
            if off {
                weaknesses.push(InvalidField::new(
                    format!("event_bus.security.properties.{key}"),
                    "switches certificate checks off",
                ));
            }
        }
        weaknesses
    }

    /// The topic the contract names for `role`.
    pub fn topic(&self, role: TopicRole) -> &str {
        let bus = &self.event_bus;
        match role {
            TopicRole::Requests => &bus.subscribe_topics.requests,
            TopicRole::Completed => &bus.publish_topics.completed,
            TopicRole::Failed => &bus.publish_topics.failed,
            TopicRole::Health => &bus.publish_topics.health,
            TopicRole::CircuitBreaker => &bus.publish_topics.circuit_breaker,
            TopicRole::Audit => &bus.publish_topics.audit,
            TopicRole::LeaseEvents => &bus.publish_topics.lease_events,
            TopicRole::ReplayClaims => &bus.publish_topics.replay_claims,
            TopicRole::LeaseRegistry => &bus.publish_topics.lease_registry,
            TopicRole::DeadLetters => &bus.dlq_topics.requests,
        }
    }

    /// Every topic with its role.
    pub fn topics(&self) -> impl Iterator<Item = (TopicRole, &str)> {
        TopicRole::iter().map(move |role| (role, self.topic(role)))
    }

    /// The operations this node instance serves (`io_operations`).
    pub fn enabled_operations(&self) -> BTreeSet<Operation> {
        self.io_operations.iter().map(|op| op.operation).collect()
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.vault.request_timeout_ms)
    }

    /// The resolved contract as YAML, every secret shown as `<redacted>`.
    pub fn to_redacted_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_else(|e| format!("# cannot render the contract: {e}\n"))
    }
}

/// `^onex\.(evt|cmd|intent|snapshot|dlq)\.[a-z][a-z0-9-]*\.[a-z][a-z0-9-]*\.v[0-9]+$`
pub fn is_onex_topic(topic: &str) -> bool {
    let word = |s: &str| {
        s.starts_with(|c: char| c.is_ascii_lowercase())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let parts: Vec<&str> = topic.split('.').collect();
    matches!(
        parts.as_slice(),
        ["onex", kind, domain, event, version]
            if matches!(*kind, "evt" | "cmd" | "intent" | "snapshot" | "dlq")
                && word(domain)
                && word(event)
                && version.strip_prefix('v').is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    )
}

#[cfg(test)]
mod tests;
