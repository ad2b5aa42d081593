//! The Kafka side: client settings, the publisher of everything the node
//! sends, the per-partition offset tracker and per-key ordering.

mod key_order;
mod offsets;
mod publisher;

pub use key_order::{KeyOrder, Ticket, Turn};
pub use offsets::OffsetTracker;
pub use publisher::{is_permanent, Kind, Outgoing, Published, Publisher};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::contract::Contract;
use crate::logging::Throttle;
use crate::telemetry::Telemetry;

/// librdkafka repeats its errors at every reconnection attempt while a
/// broker is away: a few lines per second at most.
static CLIENT_ERRORS: Throttle = Throttle::new(1, 5);

/// A client-creation error without the value of a secret setting:
/// librdkafka's message quotes the value it refused.
pub fn client_error(error: rdkafka::error::KafkaError, what: &str) -> anyhow::Error {
    match error {
        rdkafka::error::KafkaError::ClientConfig(_, description, key, _) => {
            if crate::contract::is_secret_property(&key) {
                anyhow::anyhow!(
                    "cannot create the Kafka {what}: librdkafka refused the setting {key} (value not shown)"
                )
            } else {
                anyhow::anyhow!("cannot create the Kafka {what}: librdkafka refused the setting {key}: {description}")
            }
        }
        other => anyhow::anyhow!("cannot create the Kafka {what}: {other}"),
    }
}

pub use onex_vault_client::kafka::partitions_of;

/// A topic the node reads by hand from its start (the replay ledger, the
/// lease registry): the partitions to assign, from their low watermarks,
/// and each partition's (low, high) watermarks when it was measured.
pub struct TopicExtent {
    pub assignment: TopicPartitionList,
    pub watermarks: HashMap<i32, (i64, i64)>,
}

/// Measures `topic` (called `what` in errors) for a reader that reads it to
/// its end at start-up. Broker errors (not up yet, refusing the handshake)
/// are retried until `wait` passes or `stop` fires, then named; a topic
/// that does not exist is an error at once, with `create_hint`.
pub fn topic_extent<C: ConsumerContext, T: Consumer<C>>(
    consumer: &T,
    topic: &str,
    what: &str,
    create_hint: &str,
    wait: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<TopicExtent> {
    let deadline = Instant::now() + wait;
    let mut next_warning = Instant::now();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let error = match measure(consumer, topic, left.min(Duration::from_secs(5))) {
            Ok(Some(extent)) => return Ok(extent),
            Ok(None) => anyhow::bail!("the {what} topic {topic} does not exist: {create_hint}"),
            Err(error) => error,
        };
        if left.is_zero() || stop.is_cancelled() {
            anyhow::bail!("cannot read the {what} {topic} within {wait:?}: {error}");
        }
        if Instant::now() >= next_warning {
            tracing::warn!(%error, topic, "cannot read the {what} yet; retrying until start-up gives up");
            next_warning = Instant::now() + Duration::from_secs(5);
        }
        std::thread::sleep(left.min(Duration::from_millis(500)));
    }
}

/// One try of [`topic_extent`]; `None`: the topic does not exist.
fn measure<C: ConsumerContext, T: Consumer<C>>(
    consumer: &T,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicExtent>, KafkaError> {
    let partitions = partitions_of(consumer, topic, timeout)?;
    if partitions.is_empty() {
        return Ok(None);
    }
    let mut extent = TopicExtent { assignment: TopicPartitionList::new(), watermarks: HashMap::new() };
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        extent.assignment.add_partition_offset(topic, partition, Offset::Offset(low))?;
        extent.watermarks.insert(partition, (low, high));
    }
    Ok(Some(extent))
}

/// How long ago a record was stamped: from its timestamp (its producer's
/// clock, milliseconds) to now. Zero when it has none or is from the future.
pub fn age(timestamp: rdkafka::Timestamp) -> Duration {
    let Some(stamped) = timestamp.to_millis().and_then(|ms| u64::try_from(ms).ok()) else {
        return Duration::ZERO;
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    now.saturating_sub(Duration::from_millis(stamped))
}

/// librdkafka settings shared by the consumer and the producer.
fn client_config(contract: &Contract) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &contract.event_bus.bootstrap_servers)
        .set("client.id", onex_vault_models::NODE_NAME)
        // Reconnect within a second of a broker coming back (default: up to 10 s).
        .set("reconnect.backoff.max.ms", "1000")
        // Small requests go out at once, not held for the previous one's ACK.
        .set("socket.nagle.disable", "true");
    for (key, value) in contract.event_bus.security.librdkafka_properties() {
        config.set(key, value);
    }
    config
}

/// The request consumer: a member of the contract's consumer group that
/// stores offsets only when told (after the reply is delivered) and buffers
/// little ahead of the node, so a full in-flight bound really stops fetching.
pub fn consumer_config(contract: &Contract) -> ClientConfig {
    let bus = &contract.event_bus;
    let mut config = client_config(contract);
    config
        .set("group.id", &bus.consumer_group)
        .set("session.timeout.ms", bus.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", (bus.session_timeout_ms / 3).max(100).to_string())
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "4096")
        .set("fetch.max.bytes", (bus.max_record_bytes.max(1 << 20) * 2).to_string())
        .set("max.partition.fetch.bytes", (bus.max_record_bytes.max(1 << 20) + 1024).to_string())
        .set("fetch.wait.max.ms", bus.fetch_wait_max_ms.to_string())
        // Consumer lag for /metrics and the health event, measured by
        // librdkafka every second (a small JSON document; cheap).
        .set("statistics.interval.ms", "1000");
    config
}

/// The replay ledger's reader (see `security::ReplayLedger`): it reads
/// every partition by assignment, never joins a group or commits, and
/// fetches at the request consumer's pace (a claim is read back before its
/// request is admitted, so a broker that answers fetches only at the
/// deadline adds the wait to every signed request).
pub fn ledger_consumer_config(contract: &Contract) -> ClientConfig {
    let mut config = topic_reader_config(contract, "replay-ledger");
    config.set("fetch.wait.max.ms", contract.event_bus.fetch_wait_max_ms.to_string());
    config
}

/// The lease registry's reader (see `leases`): like the replay ledger's,
/// it reads every partition by assignment and never joins a group. Nobody
/// waits on it (a lease is renewed minutes after it is registered), so it
/// polls an idle registry twice a second, not at the request consumer's pace.
pub fn registry_reader_config(contract: &Contract) -> ClientConfig {
    let mut config = topic_reader_config(contract, "lease-registry-reader");
    config.set("fetch.wait.max.ms", "500");
    config
}

/// A reader of a whole topic by assignment (group `<consumer_group>.<role>`,
/// which it never joins): no commits, from the start.
fn topic_reader_config(contract: &Contract, role: &str) -> ClientConfig {
    let mut config = client_config(contract);
    config
        .set("group.id", format!("{}.{role}", contract.event_bus.consumer_group))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("allow.auto.create.topics", "true");
    config
}

/// The lease registry's owners (see `leases`): members of group
/// `<consumer_group>.leases` subscribed to the registry topic, only for the
/// partitions the group hands them (the records are read by
/// [`registry_reader_config`]'s reader). Nothing is committed; records are
/// not needed, so a new assignment starts at the end.
pub fn lease_owner_config(contract: &Contract) -> ClientConfig {
    let bus = &contract.event_bus;
    let mut config = client_config(contract);
    config
        .set("group.id", format!("{}.leases", bus.consumer_group))
        .set("client.id", format!("{}.leases", onex_vault_models::NODE_NAME))
        .set("session.timeout.ms", bus.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", (bus.session_timeout_ms / 3).max(100).to_string())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "latest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "1024");
    config
}

/// The producer of replies, dead letters and events: idempotent (so retries
/// inside librdkafka never duplicate or reorder), `acks=all`.
pub fn producer_config(contract: &Contract) -> ClientConfig {
    let mut config = client_config(contract);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", contract.event_bus.linger_ms.to_string())
        .set("message.timeout.ms", "30000");
    config
}

/// The producer of audit records: the same guarantees, but it waits up to
/// `event_bus.audit_linger_ms` to fill a batch (nobody waits on an audit
/// record; the broker then handles one request for many).
pub fn audit_producer_config(contract: &Contract) -> ClientConfig {
    let mut config = producer_config(contract);
    config
        .set("client.id", format!("{}.audit", onex_vault_models::NODE_NAME))
        .set("linger.ms", contract.event_bus.audit_linger_ms.to_string());
    config
}

/// The request consumer's librdkafka callbacks: partition assignment,
/// consumer lag and whether a broker is reached (from librdkafka's
/// statistics and errors) go to the telemetry, where `/ready`, `/metrics` and
/// the health event read them.
pub struct ConsumerEvents {
    pub telemetry: Arc<Telemetry>,
}

impl ClientContext for ConsumerEvents {
    fn stats(&self, statistics: Statistics) {
        let mut lag = BTreeMap::new();
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // -1 is librdkafka's internal "unassigned" partition.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), *partition), p.consumer_lag);
                }
            }
        }
        self.telemetry.set_consumer_lag(lag);
        // The link is up while librdkafka holds a connection to a known
        // broker (bootstrap entries have node id -1).
        let connected = statistics.brokers.values().any(|broker| broker.nodeid >= 0 && broker.state == "UP");
        self.telemetry.set_kafka_connected(connected);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.telemetry.set_kafka_connected(false);
        }
        if let Some(held_back) = CLIENT_ERRORS.allow() {
            tracing::warn!(%error, reason, held_back, "librdkafka error");
        }
    }
}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions assigned");
                self.telemetry.set_assigned_partitions(partitions.count());
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(partitions = partitions.count(), "partitions revoked");
                self.telemetry.set_assigned_partitions(0);
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
        }
    }
}
