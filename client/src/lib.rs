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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use onex_vault_models::{
    Alphabet, CiphertextResult, DecryptResult, DeleteSecret, DeleteSecretResult, Delivery, Envelope, ErrorCode,
    FolderPath, GetSecret, GetSecretResult, GetSecretsBatch, GetSecretsBatchResult, InputBinding, IssueCredentials,
    IssueCredentialsResult, ListSecrets, LookupLease, LookupLeaseResult, LookupToken, LookupTokenResult, MountName,
    OpenError, OperationResult, ReadMetadata, ReadMetadataResult, RenewLease, RenewLeaseResult, RenewToken,
    RenewTokenResult, ReplyError, RevokeLease, RevokeLeaseResult, RotateSecret, RotateSecretResult, RuntimeIdentity,
    RuntimeKey, RuntimeSigner, SealedMaterial, SealingPublicKey, SecretData, SecretPath, SetSecret, SetSecretResult,
    TransitDecrypt, TransitEncrypt, VaultRequest,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use secrecy::{ExposeSecret as _, SecretString};
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

    pub async fn get_secret(&self, path: &str) -> Result<GetSecretResult, ClientError> {
        let request = GetSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            version: None,
            consistency: Default::default(),
            delivery: None,
        };
        match self.call(VaultRequest::GetSecret(request)).await? {
            OperationResult::GetSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn get_secrets_batch(&self, paths: &[&str]) -> Result<GetSecretsBatchResult, ClientError> {
        let paths = paths.iter().map(|p| secret_path(p)).collect::<Result<_, _>>()?;
        let request =
            GetSecretsBatch { namespace: None, mount: None, paths, consistency: Default::default(), delivery: None };
        match self.call(VaultRequest::GetSecretsBatch(request)).await? {
            OperationResult::GetSecretsBatch(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn set_secret(
        &self,
        path: &str,
        data: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SetSecretResult, ClientError> {
        let request = SetSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            data: SecretData::new(data),
            sealed_data: None,
            cas: None,
        };
        match self.call(VaultRequest::SetSecret(request)).await? {
            OperationResult::SetSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Soft-deletes the latest version.
    pub async fn delete_secret(&self, path: &str) -> Result<DeleteSecretResult, ClientError> {
        let request = DeleteSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            versions: None,
            destroy: false,
            all_versions: false,
        };
        match self.call(VaultRequest::DeleteSecret(request)).await? {
            OperationResult::DeleteSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// The keys of a folder (`""` for the mount's root).
    pub async fn list_secrets(&self, folder: &str) -> Result<Vec<String>, ClientError> {
        let path = FolderPath::new(folder).map_err(|e| ClientError::Invalid(format!("path: {e}")))?;
        match self.call(VaultRequest::ListSecrets(ListSecrets { namespace: None, mount: None, path })).await? {
            OperationResult::ListSecrets(result) => Ok(result.keys),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn renew_lease(
        &self,
        lease_id: &str,
        increment_seconds: Option<u64>,
        keep_alive: bool,
    ) -> Result<RenewLeaseResult, ClientError> {
        let request = RenewLease { namespace: None, lease_id: lease_id.to_owned(), increment_seconds, keep_alive };
        match self.call(VaultRequest::RenewLease(request)).await? {
            OperationResult::RenewLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn lookup_lease(&self, lease_id: &str) -> Result<LookupLeaseResult, ClientError> {
        match self
            .call(VaultRequest::LookupLease(LookupLease { namespace: None, lease_id: lease_id.to_owned() }))
            .await?
        {
            OperationResult::LookupLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn revoke_lease(&self, lease_id: &str) -> Result<RevokeLeaseResult, ClientError> {
        match self
            .call(VaultRequest::RevokeLease(RevokeLease { namespace: None, lease_id: lease_id.to_owned() }))
            .await?
        {
            OperationResult::RevokeLease(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Renews the node's own Vault token.
    pub async fn renew_token(&self, increment_seconds: Option<u64>) -> Result<RenewTokenResult, ClientError> {
        match self.call(VaultRequest::RenewToken(RenewToken { increment_seconds })).await? {
            OperationResult::RenewToken(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }
}

/// The operations beyond the basic six.
impl VaultAdapterClient {
    pub async fn read_metadata(&self, path: &str) -> Result<ReadMetadataResult, ClientError> {
        let request = ReadMetadata { namespace: None, mount: None, path: secret_path(path)? };
        match self.call(VaultRequest::ReadMetadata(request)).await? {
            OperationResult::ReadMetadata(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// A new random `length`-character alphanumeric value for `key`; sealed
    /// (with an identity) the result carries the value.
    pub async fn rotate_secret(&self, path: &str, key: &str, length: u32) -> Result<RotateSecretResult, ClientError> {
        let request = RotateSecret {
            namespace: None,
            mount: None,
            path: secret_path(path)?,
            key: key.to_owned(),
            length,
            alphabet: Alphabet::Alphanumeric,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        match self.call(VaultRequest::RotateSecret(request)).await? {
            OperationResult::RotateSecret(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Transit encryption of `plaintext` (raw bytes; base64 on the wire).
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<CiphertextResult, ClientError> {
        use base64::Engine as _;
        let plaintext = SecretString::from(base64::engine::general_purpose::STANDARD.encode(plaintext));
        let request = TransitEncrypt {
            namespace: None,
            mount: None,
            key: key.to_owned(),
            plaintext,
            sealed_plaintext: None,
            context: None,
        };
        match self.call(VaultRequest::Encrypt(request)).await? {
            OperationResult::Ciphertext(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Transit decryption; the plaintext as base64, in a secret box.
    pub async fn decrypt(&self, key: &str, ciphertext: &str) -> Result<DecryptResult, ClientError> {
        let request = TransitDecrypt {
            namespace: None,
            mount: None,
            key: key.to_owned(),
            ciphertext: ciphertext.to_owned(),
            context: None,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        match self.call(VaultRequest::Decrypt(request)).await? {
            OperationResult::Decrypt(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    /// Dynamic credentials from the engine mounted at `mount`: `path` is the
    /// endpoint (`creds/app` of a database engine, `issue/web` of a PKI
    /// engine); `parameters`, when given, go as a `POST` body (a PKI
    /// `common_name`, `ttl`). Sealed with an identity, else the node's
    /// default delivery. With `keep_alive`, the node keeps the lease renewed.
    pub async fn issue_credentials(
        &self,
        mount: &str,
        path: &str,
        parameters: Option<serde_json::Map<String, serde_json::Value>>,
        keep_alive: bool,
    ) -> Result<IssueCredentialsResult, ClientError> {
        let request = IssueCredentials {
            namespace: None,
            mount: MountName::new(mount).map_err(|e| ClientError::Invalid(format!("mount: {e}")))?,
            path: secret_path(path)?,
            parameters,
            keep_alive,
            delivery: self.settings.identity.as_ref().map(|_| Delivery::Sealed),
        };
        request.check().map_err(|e| ClientError::Invalid(e.to_string()))?;
        match self.call(VaultRequest::IssueCredentials(request)).await? {
            OperationResult::IssueCredentials(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
        }
    }

    pub async fn lookup_token(&self) -> Result<LookupTokenResult, ClientError> {
        match self.call(VaultRequest::LookupToken(LookupToken {})).await? {
            OperationResult::LookupToken(result) => Ok(result),
            _ => Err(ClientError::UnexpectedResult),
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

fn secret_path(path: &str) -> Result<SecretPath, ClientError> {
    SecretPath::new(path).map_err(|e| ClientError::Invalid(format!("path: {e}")))
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
