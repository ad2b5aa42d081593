//! The Kafka side of the view: a snapshot of the health topic from its
//! beginning to its current end, or a follow loop that redraws every second.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::fleet::{ingest, Fleet};
use super::render::render;
use super::{CLEAR_SCREEN, KAFKA_TIMEOUT, REDRAW_EVERY};

/// Kafka did not answer: the subcommand exits 2 on this error.
#[derive(Debug, thiserror::Error)]
#[error("Kafka at {bootstrap} is unreachable: {reason}")]
pub struct KafkaUnreachable {
    pub bootstrap: String,
    pub reason: String,
}

/// The health table of `topic` as of its current end: reads every record
/// from the beginning up to the high watermarks found at start, renders once.
/// Fails with [`KafkaUnreachable`] when Kafka does not answer within ~10 s.
pub async fn snapshot(bootstrap: &str, topic: &str, stale_seconds: u64) -> anyhow::Result<String> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&bootstrap, &topic)?;
        let mut fleet = Fleet::new(stale_seconds);
        reader.catch_up(&mut fleet)?;
        Ok(render(&fleet, Utc::now()))
    })
    .await
    .context("the Kafka reader stopped")?
}

/// Reads `topic` from its beginning and keeps reading, writing the table to
/// `out` every second until `stop`. On a terminal (`terminal`), each table
/// replaces the last; otherwise a table is written only when an event came,
/// a record was skipped or an instance turned stale, tables apart by a blank
/// line. Fails with [`KafkaUnreachable`] when Kafka does not answer at start.
pub async fn follow(
    bootstrap: &str,
    topic: &str,
    stale_seconds: u64,
    mut out: Box<dyn Write + Send>,
    terminal: bool,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let reader = Reader::open(&bootstrap, &topic)?;
        let mut fleet = Fleet::new(stale_seconds);
        reader.catch_up(&mut fleet)?;
        let mut screen = Screen { topic: &topic, terminal, shown: None };
        let mut next_draw = Instant::now();
        let mut last_error: Option<(Instant, String)> = None;
        while !stop.is_cancelled() {
            if Instant::now() >= next_draw {
                let error = last_error.as_ref().filter(|(at, _)| at.elapsed() < KAFKA_TIMEOUT).map(|(_, e)| e.as_str());
                match screen.draw(&mut out, &fleet, error) {
                    Ok(()) => {}
                    // `| head` and the like: the reader has gone, so stop.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("cannot write the table"),
                }
                next_draw += REDRAW_EVERY;
            }
            match reader.consumer.poll(Duration::from_millis(100)) {
                None | Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Ok(record)) => ingest(&mut fleet, record.payload()),
                Some(Err(e)) => last_error = Some((Instant::now(), e.to_string())),
            }
        }
        Ok(())
    })
    .await
    .context("the Kafka reader stopped")?
}

/// What `--follow` last wrote, to write again only on change off a terminal.
pub(super) struct Screen<'a> {
    pub(super) topic: &'a str,
    pub(super) terminal: bool,
    pub(super) shown: Option<(u64, Vec<String>, Option<String>)>,
}

impl Screen<'_> {
    pub(super) fn draw(
        &mut self,
        out: &mut dyn Write,
        fleet: &Fleet,
        kafka_error: Option<&str>,
    ) -> std::io::Result<()> {
        let now = Utc::now();
        let mut text = render(fleet, now);
        if let Some(error) = kafka_error {
            text.push_str(&format!("(kafka: {error}; retrying)\n"));
        }
        if self.terminal {
            let title = format!(
                "{}  every {}s  {}  (Ctrl-C to stop)\n\n",
                self.topic,
                REDRAW_EVERY.as_secs(),
                now.format("%H:%M:%S")
            );
            write!(out, "{CLEAR_SCREEN}{title}{text}")?;
        } else {
            let state = (
                fleet.revision(),
                fleet.stale_instances(now).into_iter().map(str::to_owned).collect(),
                kafka_error.map(str::to_owned),
            );
            if self.shown.as_ref() == Some(&state) {
                return Ok(());
            }
            let separator = if self.shown.is_some() { "\n" } else { "" };
            write!(out, "{separator}{text}")?;
            self.shown = Some(state);
        }
        out.flush()
    }
}

/// A consumer assigned every partition of the health topic from its
/// beginning, in no consumer group (nothing joins, nothing is committed), and
/// the high watermark of each partition at start.
struct Reader {
    consumer: BaseConsumer,
    bootstrap: String,
    topic: String,
    /// Partitions with records, and the end offset to read up to.
    ends: HashMap<i32, i64>,
}

impl Reader {
    fn open(bootstrap: &str, topic: &str) -> anyhow::Result<Reader> {
        let mut config = ClientConfig::new();
        // TLS and SASL from the node's variables, as `request` does.
        for (key, value) in
            onex_vault_client::kafka::KafkaSecurity::from_env().map_err(anyhow::Error::msg)?.librdkafka_properties()
        {
            config.set(key, value);
        }
        let consumer: BaseConsumer = config
            .set("bootstrap.servers", bootstrap)
            .set("client.id", "onex-vault-adapter-health")
            // librdkafka needs a group id to assign(); this one never joins
            // a group or commits.
            .set("group.id", format!("onex-vault-adapter-health-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "250")
            .create()
            .context("cannot create the Kafka consumer")?;
        let unreachable = |e: KafkaError| KafkaUnreachable { bootstrap: bootstrap.to_owned(), reason: e.to_string() };
        let partitions =
            onex_vault_client::kafka::partitions_of(&consumer, topic, KAFKA_TIMEOUT).map_err(unreachable)?;
        if partitions.is_empty() {
            return Err(anyhow!("topic {topic} does not exist on {bootstrap}"));
        }
        let mut assignment = TopicPartitionList::new();
        let mut ends = HashMap::new();
        for partition in partitions {
            let (low, high) = consumer.fetch_watermarks(topic, partition, KAFKA_TIMEOUT).map_err(unreachable)?;
            if high > low {
                ends.insert(partition, high);
            }
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment).context("cannot assign the topic's partitions")?;
        Ok(Reader { consumer, bootstrap: bootstrap.to_owned(), topic: topic.to_owned(), ends })
    }

    /// Reads every partition up to its end offset at start. Fails when no
    /// record or end-of-partition came for `KAFKA_TIMEOUT`.
    fn catch_up(&self, fleet: &mut Fleet) -> anyhow::Result<()> {
        let mut pending = self.ends.clone();
        let mut progress = Instant::now();
        let mut last_error = None;
        while !pending.is_empty() {
            if progress.elapsed() > KAFKA_TIMEOUT {
                let reason = format!(
                    "stopped delivering {} within {} s{}",
                    self.topic,
                    KAFKA_TIMEOUT.as_secs(),
                    last_error.map(|e: KafkaError| format!(" (last error: {e})")).unwrap_or_default()
                );
                return Err(KafkaUnreachable { bootstrap: self.bootstrap.clone(), reason }.into());
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(record)) => {
                    progress = Instant::now();
                    ingest(fleet, record.payload());
                    let partition = record.partition();
                    if pending.get(&partition).is_some_and(|end| record.offset() + 1 >= *end) {
                        pending.remove(&partition);
                    }
                }
                // The end can lie past the last record (transaction markers,
                // compaction); end-of-partition says it is reached.
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    progress = Instant::now();
                    pending.remove(&partition);
                }
                Some(Err(e)) => last_error = Some(e),
            }
        }
        Ok(())
    }
}
