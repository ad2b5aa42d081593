//! A requester, as another ONEX node would be one: publishes a request
//! envelope and waits for the reply with the same `correlation_id`.
//! Behind the `send` subcommand, for people and scripts.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::Utc;
use onex_vault_models::{RequesterIdentity, SealedResult, SIGNATURE_HEADER};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use uuid::Uuid;

/// Where to send and where replies come from.
pub struct Topics {
    pub requests: String,
    pub replies: Vec<String>,
}

/// Makes a file's envelope ready to send: a fresh `envelope_id`,
/// `correlation_id` and `envelope_timestamp` every time (so repeated sends of
/// one example stay apart), and a `source_tool` if it has none (the
/// identity's requester when signing, which must match).
pub fn complete_envelope(mut envelope: Value, identity: Option<&RequesterIdentity>) -> anyhow::Result<Value> {
    let Some(object) = envelope.as_object_mut() else { bail!("the request must be a JSON object (an envelope)") };
    if !object.contains_key("payload") {
        bail!("the request has no `payload`");
    }
    object.insert("envelope_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("correlation_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("envelope_timestamp".into(), Value::String(Utc::now().to_rfc3339()));
    if let Some(identity) = identity {
        object.insert("source_tool".into(), Value::String(identity.requester.clone()));
    }
    object.entry("source_tool").or_insert_with(|| Value::String("onex_vault_adapter_cli".into()));
    Ok(envelope)
}

/// Reads a requester identity file (see `keygen`).
pub fn read_identity(path: &Path) -> anyhow::Result<RequesterIdentity> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    RequesterIdentity::from_json(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Writes `text` to a new file only its owner can read.
pub fn write_private_file(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())
}

/// A reply whose sealed result is replaced by what it holds, when
/// `identity` can open it (else the reply as it came).
pub fn open_sealed(mut reply: Value, identity: &RequesterIdentity) -> Value {
    let sealed = reply.pointer("/payload/result").cloned().and_then(|r| serde_json::from_value::<SealedResult>(r).ok());
    let correlation_id = reply.get("correlation_id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
    if let (Some(sealed), Some(correlation_id)) = (sealed, correlation_id) {
        match sealed.open(&identity.sealer, correlation_id) {
            Ok(result) => reply["payload"]["result"] = serde_json::to_value(result).unwrap_or_default(),
            Err(error) => reply["payload"]["open_error"] = Value::String(error.to_string()),
        }
    }
    reply
}

/// Sends `envelope` and returns the reply envelope, or an error if none
/// came within `wait`.
/// Signed as `identity` when given (header `onex-signature`).
pub async fn send(
    bootstrap: &str,
    topics: &Topics,
    envelope: &Value,
    identity: Option<&RequesterIdentity>,
    wait: Duration,
) -> anyhow::Result<Value> {
    let correlation_id = envelope
        .get("correlation_id")
        .and_then(Value::as_str)
        .context("the envelope has no correlation_id")?
        .to_owned();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let watcher = reply_watcher(&config, &topics.replies)?;
    let producer: FutureProducer = config.clone().create().context("cannot create the Kafka producer")?;
    let body = serde_json::to_vec(envelope)?;
    let mut record = FutureRecord::to(&topics.requests).key(correlation_id.as_str()).payload(&body);
    if let Some(identity) = identity {
        let signature = identity.signer.sign(&topics.requests, &body);
        record = record.headers(OwnedHeaders::new().insert(Header { key: SIGNATURE_HEADER, value: Some(&signature) }));
    }
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .context("the request was not delivered to Kafka")?;

    let deadline = std::time::Instant::now() + wait;
    tokio::task::spawn_blocking(move || {
        while std::time::Instant::now() < deadline {
            let Some(received) = watcher.poll(Duration::from_millis(200)) else {
                continue;
            };
            let record = received.context("Kafka error while waiting for the reply")?;
            let Some(Ok(value)) = record.payload().map(serde_json::from_slice::<Value>) else {
                continue;
            };
            if value.get("correlation_id").and_then(Value::as_str) == Some(correlation_id.as_str()) {
                return Ok(value);
            }
        }
        bail!("no reply within {} s", wait.as_secs())
    })
    .await?
}

/// A consumer assigned to every partition of the reply topics at their
/// current end, so it sees replies to requests sent from now on.
fn reply_watcher(config: &ClientConfig, topics: &[String]) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = config
        .clone()
        // librdkafka needs a group id to assign; this one never joins or commits.
        .set("group.id", format!("onex-vault-adapter-cli-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .context("cannot create the Kafka consumer")?;
    let mut assignment = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .with_context(|| format!("cannot read metadata of {topic}"))?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (_, high) = consumer.fetch_watermarks(topic, partition.id(), Duration::from_secs(10))?;
            assignment.add_partition_offset(topic, partition.id(), Offset::Offset(high))?;
        }
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}
