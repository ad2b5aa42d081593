//! The Kafka side: client settings, the publisher of everything the node
//! sends, the per-partition offset tracker and per-key ordering.

mod key_order;
mod offsets;
mod publisher;

pub use key_order::{KeyOrder, Ticket, Turn};
pub use offsets::OffsetTracker;
pub use publisher::{Outgoing, Publisher};

use rdkafka::config::ClientConfig;

use crate::contract::Contract;

/// librdkafka settings shared by the consumer and the producer.
fn client_config(contract: &Contract) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &contract.event_bus.bootstrap_servers)
        .set("client.id", onex_vault_models::NODE_NAME);
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
        .set(
            "heartbeat.interval.ms",
            (bus.session_timeout_ms / 3).max(100).to_string(),
        )
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "4096")
        .set(
            "fetch.max.bytes",
            (bus.max_record_bytes.max(1 << 20) * 2).to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            (bus.max_record_bytes.max(1 << 20) + 1024).to_string(),
        );
    config
}

/// The producer of replies, dead letters and events: idempotent (so retries
/// inside librdkafka never duplicate or reorder), `acks=all`.
pub fn producer_config(contract: &Contract) -> ClientConfig {
    let mut config = client_config(contract);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .set("message.timeout.ms", "30000");
    config
}
