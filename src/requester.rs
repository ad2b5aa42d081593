//! A requester, as another ONEX node would be one: publishes a request
//! envelope and waits for the reply with the same `correlation_id`.
//! Behind the `send` subcommand, for people and scripts.

use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
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
/// one example stay apart), and a `source_tool` if it has none.
pub fn complete_envelope(mut envelope: Value) -> anyhow::Result<Value> {
    let Some(object) = envelope.as_object_mut() else { bail!("the request must be a JSON object (an envelope)") };
    if !object.contains_key("payload") {
        bail!("the request has no `payload`");
    }
    object.insert("envelope_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("correlation_id".into(), Value::String(Uuid::new_v4().to_string()));
    object.insert("envelope_timestamp".into(), Value::String(Utc::now().to_rfc3339()));
    object.entry("source_tool").or_insert_with(|| Value::String("onex_vault_adapter_cli".into()));
    Ok(envelope)
}

/// Sends `envelope` and returns the reply envelope, or an error if none
/// came within `wait`.
pub async fn send(bootstrap: &str, topics: &Topics, envelope: &Value, wait: Duration) -> anyhow::Result<Value> {
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
    producer
        .send(FutureRecord::to(&topics.requests).key(correlation_id.as_str()).payload(&body), Duration::from_secs(10))
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
