//! The requester's side of the ONEX Vault adapter node: [`VaultAdapterClient`]
//! sends a request envelope over Kafka (in the node's `strict` profile wrapped
//! in a `ModelMessageEnvelope` signed with the requester's runtime key, as an
//! ONEX runtime's gateway signs), waits for the reply with the same
//! `correlation_id` that names its request as `parent_envelope_id` (and, in
//! `strict`, is signed by the node's runtime key), retries what the node says
//! is retryable, and opens sealed replies.
//!
//! ```no_run
//! use onex_vault_client::{ClientSettings, NodeTrust, VaultAdapterClient};
//! use onex_vault_models::{RuntimeIdentity, RuntimeKey};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let identity = RuntimeIdentity::from_json(&std::fs::read_to_string("node_billing.identity.json")?)?;
//! let node_key = RuntimeKey::from_base64("<the node's public signing key>")?;
//! let node = NodeTrust { runtime_id: "node_infrastructure_vault_adapter_effect".into(), key: node_key };
//! let settings = ClientSettings::new("kafka:9092").identity(identity, "prod", node);
//! let client = VaultAdapterClient::connect(settings).await?;
//! let secret = client.get_secret("billing/database").await?;
//! let password = &secret.data.expose_secret()["password"];
//! # let _ = password; Ok(())
//! # }
//! ```
//!
//! Secret material a request sends (`set_secret` data, `encrypt` plaintext)
//! is sealed to the node's X25519 key when the settings know it
//! ([`ClientSettings::seal_to_node`]): the request topic then carries only
//! a box the node alone opens, and only in this very call (bound to its
//! correlation id, the requester, the operation, mount and path or key).
//!
//! How it works: one producer; one consumer assigned by hand to every
//! partition of the reply topics at their end (no consumer group, so no
//! rebalance wait) whose thread hands each reply to the call waiting for its
//! correlation id. A reply nobody waits for (a duplicate of at-least-once
//! delivery, or one that came after its call gave up) is dropped. A retry is a
//! new envelope (new `envelope_id`, so the node's replay check lets it in)
//! with the same `correlation_id`.

mod inbox;
pub mod kafka;
mod typed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use onex_vault_models::{
    Envelope, ErrorCode, InputBinding, OpenError, OperationResult, ReplyError, RuntimeIdentity, RuntimeKey,
    RuntimeSigner, SealedMaterial, SealingPublicKey, VaultRequest,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use secrecy::ExposeSecret as _;
use uuid::Uuid;

use inbox::Inbox;

/// Payload type of a request envelope.
pub const REQUEST_PAYLOAD_TYPE: &str = "ModelVaultAdapterRequest";

/// The node's topics, as its contract names them (defaults: the wire contract's).
#[derive(Debug, Clone)]
pub struct Topics {
    pub requests: String,
    pub completed: String,
    pub failed: String,
}

impl Topics {
    /// The shipped contract's topic names (`contract.yaml`, `event_bus`; the
    /// node's contract tests keep them equal), for every tool's defaults.
    pub const DEFAULT_REQUESTS: &'static str = "onex.cmd.omnibase-infra.vault-request.v1";
    pub const DEFAULT_COMPLETED: &'static str = "onex.evt.omnibase-infra.vault-completed.v1";
    pub const DEFAULT_FAILED: &'static str = "onex.evt.omnibase-infra.vault-failed.v1";
    /// Where the node's health events go (read by `health`, not by requesters).
    pub const DEFAULT_HEALTH: &'static str = "onex.evt.omnibase-infra.vault-health.v1";
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            requests: Topics::DEFAULT_REQUESTS.into(),
            completed: Topics::DEFAULT_COMPLETED.into(),
            failed: Topics::DEFAULT_FAILED.into(),
        }
    }
}

/// How to reach the node and who the client is.
#[derive(Debug)]
pub struct ClientSettings {
    pub bootstrap_servers: String,
    pub topics: Topics,
    /// Signs requests (in `realm`) and opens sealed replies, and the node
    /// whose signature every reply must carry; without it requests are
    /// unsigned (the node's `dev` profile only) and sent as `source_tool`.
    pub identity: Option<Signing>,
    pub source_tool: String,
    /// How long one attempt waits for its reply (also the envelope's
    /// `timeout_seconds`, so the node drops a request nobody waits for).
    pub call_timeout: Duration,
    /// Attempts for replies the node marks retryable.
    pub max_attempts: u32,
    /// Further librdkafka properties (TLS, SASL, ...).
    pub properties: Vec<(String, String)>,
    /// The node's X25519 sealing key: when known, `set_secret` data and
    /// `encrypt` plaintext travel sealed to it.
    pub node_sealing_key: Option<SealingPublicKey>,
}

impl ClientSettings {
    pub fn new(bootstrap_servers: &str) -> ClientSettings {
        ClientSettings {
            bootstrap_servers: bootstrap_servers.to_owned(),
            topics: Topics::default(),
            identity: None,
            source_tool: "onex_vault_client".into(),
            call_timeout: Duration::from_secs(15),
            max_attempts: 3,
            properties: Vec::new(),
            node_sealing_key: None,
        }
    }

    /// Sign requests as `identity` in `realm`, and accept only replies
    /// signed by `node` (the node's `strict` profile).
    pub fn identity(mut self, identity: RuntimeIdentity, realm: &str, node: NodeTrust) -> Self {
        self.source_tool = identity.runtime_id.clone();
        self.identity = Some(Signing { identity, realm: realm.to_owned(), node });
        self
    }

    /// Seal the secret material of requests (`set_secret` data, `encrypt`
    /// plaintext) to the node's sealing key (the `sealing_key` id and
    /// public key that `keygen` printed for the node), so the request topic
    /// never carries it in clear. The node needs its runtime identity.
    pub fn seal_to_node(mut self, key: SealingPublicKey) -> Self {
        self.node_sealing_key = Some(key);
        self
    }

    pub fn topics(mut self, topics: Topics) -> Self {
        self.topics = topics;
        self
    }

    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    pub fn property(mut self, key: &str, value: &str) -> Self {
        self.properties.push((key.to_owned(), value.to_owned()));
        self
    }

    fn kafka_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap_servers);
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// The requester's side of the strict profile's trust.
#[derive(Debug)]
pub struct Signing {
    pub identity: RuntimeIdentity,
    /// The ONEX realm requests are signed for (the node's `security.realm`).
    pub realm: String,
    pub node: NodeTrust,
}

/// The node's runtime identity, as its replies are verified: its
/// `runtime_id` and public signing key (`onex-vault-adapter keygen` prints it).
#[derive(Debug, Clone)]
pub struct NodeTrust {
    pub runtime_id: String,
    pub key: RuntimeKey,
}

/// `bus_id` of the requests the client signs.
const BUS_ID: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The node answered with an error.
    #[error("{}: {}", .0.code, .0.message)]
    Reply(ReplyError),
    #[error("cannot open the sealed reply: {0}")]
    Open(OpenError),
    #[error("the reply's result is not the one of this operation")]
    UnexpectedResult,
}

impl ClientError {
    /// The node's error code, when the node answered with an error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Reply(error) => Some(error.code),
            _ => None,
        }
    }
}

/// A connected requester. Cheap to share (`Arc`); calls may run concurrently.
pub struct VaultAdapterClient {
    settings: ClientSettings,
    /// Wraps and signs each request (strict profile).
    signer: Option<RuntimeSigner>,
    producer: FutureProducer,
    inbox: Arc<Inbox>,
    stop: Arc<AtomicBool>,
    listener: Option<thread::JoinHandle<()>>,
}

impl VaultAdapterClient {
    /// Creates the producer and the reply consumer (assigned at the reply
    /// topics' current ends, so it sees every reply to a request sent later).
    pub async fn connect(settings: ClientSettings) -> Result<VaultAdapterClient, ClientError> {
        let signer = match &settings.identity {
            Some(signing) => {
                Some(signing.identity.signer(&signing.realm).map_err(|e| ClientError::Invalid(e.to_string()))?)
            }
            None => None,
        };
        let trust = settings.identity.as_ref().map(|s| inbox::Trust { realm: s.realm.clone(), node: s.node.clone() });
        let producer: FutureProducer = settings.kafka_config().set("linger.ms", "1").create()?;
        let config = settings.kafka_config();
        let topics = [settings.topics.completed.clone(), settings.topics.failed.clone()];
        let consumer = tokio::task::spawn_blocking(move || reply_consumer(config, &topics))
            .await
            .map_err(|e| ClientError::Invalid(format!("reply consumer task failed: {e}")))??;
        let inbox = Arc::new(Inbox::new(trust));
        let stop = Arc::new(AtomicBool::new(false));
        let listener = {
            let (inbox, stop) = (inbox.clone(), stop.clone());
            thread::Builder::new()
                .name("onex-vault-client-replies".into())
                .spawn(move || inbox::listen(&consumer, &inbox, &stop))
                .map_err(|e| ClientError::Invalid(format!("cannot start the reply thread: {e}")))?
        };
        Ok(VaultAdapterClient { settings, signer, producer, inbox, stop, listener: Some(listener) })
    }

    /// Sends `request` and returns its result, retrying what the node marks
    /// retryable (after `retry_after_ms` when it says, else a jittered
    /// backoff), with sealed results opened.
    ///
    /// With [`ClientSettings::seal_to_node`], clear `set_secret` data and
    /// `encrypt` plaintext are sealed first (once: every attempt of the
    /// call shares its correlation id).
    pub async fn call(&self, request: VaultRequest) -> Result<OperationResult, ClientError> {
        let correlation_id = Uuid::new_v4();
        let request = self.seal(correlation_id, request)?;
        let mut attempt = 1;
        loop {
            let reply = self.attempt(correlation_id, &request).await?;
            match (reply.payload.result, reply.payload.error) {
                (Some(result), None) => return self.open(correlation_id, result),
                (_, Some(error)) if error.retryable && attempt < self.settings.max_attempts => {
                    let pause = error.retry_after_ms.map(Duration::from_millis).unwrap_or_else(|| backoff(attempt));
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                (_, Some(error)) => return Err(ClientError::Reply(error)),
                (None, None) => return Err(ClientError::UnexpectedResult),
            }
        }
    }

    /// `request` with its secret material sealed to the node's key for the
    /// call `correlation_id`, when the settings know the key.
    fn seal(&self, correlation_id: Uuid, request: VaultRequest) -> Result<VaultRequest, ClientError> {
        let Some(key) = &self.settings.node_sealing_key else { return Ok(request) };
        // Who the node sees asking: the signing runtime, else `source_tool`.
        let requester = match &self.settings.identity {
            Some(signing) => signing.identity.runtime_id.clone(),
            None => self.settings.source_tool.clone(),
        };
        let binding = |operation: &str, mount: &Option<onex_vault_models::MountName>, target: &str| InputBinding {
            correlation_id,
            requester: requester.clone(),
            operation: operation.to_owned(),
            mount: mount.as_ref().map(|m| m.as_str().to_owned()),
            target: target.to_owned(),
        };
        let sealing_failed = |e: serde_json::Error| ClientError::Invalid(format!("cannot seal the request: {e}"));
        Ok(match request {
            VaultRequest::SetSecret(mut set) if set.sealed_data.is_none() && !set.data.is_empty() => {
                let bound = binding("set_secret", &set.mount, set.path.as_str());
                let data = SealedMaterial::Data(std::mem::take(&mut set.data));
                set.sealed_data = Some(key.seal_input(&bound, &data).map_err(sealing_failed)?);
                VaultRequest::SetSecret(set)
            }
            VaultRequest::Encrypt(mut encrypt)
                if encrypt.sealed_plaintext.is_none() && !encrypt.plaintext.expose_secret().is_empty() =>
            {
                let bound = binding("encrypt", &encrypt.mount, &encrypt.key);
                let plaintext = SealedMaterial::Plaintext(std::mem::take(&mut encrypt.plaintext));
                encrypt.sealed_plaintext = Some(key.seal_input(&bound, &plaintext).map_err(sealing_failed)?);
                VaultRequest::Encrypt(encrypt)
            }
            other => other,
        })
    }

    /// One envelope sent, its reply awaited.
    async fn attempt(
        &self,
        correlation_id: Uuid,
        request: &VaultRequest,
    ) -> Result<Envelope<onex_vault_models::VaultReply>, ClientError> {
        let mut envelope = Envelope::new(REQUEST_PAYLOAD_TYPE, request.clone());
        envelope.correlation_id = Some(correlation_id);
        envelope.source_tool = Some(self.settings.source_tool.clone());
        envelope.producer = Some(self.settings.source_tool.clone());
        envelope.timeout_seconds = Some(self.settings.call_timeout.as_secs().max(1));
        let value = serde_json::to_value(&envelope).map_err(|e| ClientError::Invalid(e.to_string()))?;
        self.send_value(value, correlation_id, envelope.envelope_id).await
    }

    /// Sends the event envelope `value` as it is (signed when the client has
    /// an identity) and waits for the reply with `correlation_id`: for tools
    /// that send envelopes they did not build (`onex-vault-adapter send`).
    pub async fn send_record(
        &self,
        value: &[u8],
        correlation_id: Uuid,
    ) -> Result<Envelope<onex_vault_models::VaultReply>, ClientError> {
        let envelope: serde_json::Value =
            serde_json::from_slice(value).map_err(|e| ClientError::Invalid(format!("the record is not JSON: {e}")))?;
        // The reply names the envelope it answers (`parent_envelope_id`).
        let envelope_id = envelope
            .get("envelope_id")
            .and_then(serde_json::Value::as_str)
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or_else(|| ClientError::Invalid("the record is not an envelope with an envelope_id".into()))?;
        self.send_value(envelope, correlation_id, envelope_id).await
    }

    /// Sends the event envelope `envelope` (its id `envelope_id`), wrapped and
    /// signed when the client signs, and waits for its reply.
    async fn send_value(
        &self,
        envelope: serde_json::Value,
        correlation_id: Uuid,
        envelope_id: Uuid,
    ) -> Result<Envelope<onex_vault_models::VaultReply>, ClientError> {
        let value = match &self.signer {
            Some(signer) => serde_json::to_vec(&signer.sign(envelope, BUS_ID, correlation_id, None)),
            None => serde_json::to_vec(&envelope),
        }
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let topic = &self.settings.topics.requests;
        let key = correlation_id.to_string();
        let record = FutureRecord::to(topic).key(&key).payload(&value);
        let waiting = self.inbox.expect(correlation_id, envelope_id);
        self.producer.send(record, self.settings.call_timeout).await.map_err(|(error, _)| {
            self.inbox.forget(correlation_id);
            ClientError::Kafka(error)
        })?;
        match tokio::time::timeout(self.settings.call_timeout, waiting).await {
            Ok(Ok(reply)) => Ok(reply),
            _ => {
                self.inbox.forget(correlation_id);
                Err(ClientError::Timeout(self.settings.call_timeout))
            }
        }
    }

    /// A sealed result opened with this client's identity (others as they are).
    pub fn open_result(&self, correlation_id: Uuid, result: OperationResult) -> Result<OperationResult, ClientError> {
        self.open(correlation_id, result)
    }

    fn open(&self, correlation_id: Uuid, result: OperationResult) -> Result<OperationResult, ClientError> {
        match (result, &self.settings.identity) {
            (OperationResult::Sealed(sealed), Some(signing)) => {
                sealed.open(&signing.identity.sealer, correlation_id).map_err(ClientError::Open)
            }
            (OperationResult::Sealed(_), None) => Err(ClientError::Open(OpenError::WrongKey)),
            (result, _) => Ok(result),
        }
    }
}

impl Drop for VaultAdapterClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
    }
}

/// Pause before retry `attempt + 1` when the node gives no `retry_after_ms`:
/// 200 ms doubling, with equal jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << attempt.min(6));
    Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
}

/// A consumer of `topics` assigned to every partition at its current end.
fn reply_consumer(config: ClientConfig, topics: &[String]) -> Result<BaseConsumer, ClientError> {
    let consumer: BaseConsumer = config
        // librdkafka wants a group id to assign; this one never joins or commits.
        .clone()
        .set("group.id", format!("onex-vault-client-{}", Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    let wait = Duration::from_secs(10);
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), wait)?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(topic, partition.id(), wait)?;
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(high))?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}
