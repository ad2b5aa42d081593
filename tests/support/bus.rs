//! Kafka helpers for tests (rdkafka): create topics, produce records and wait for
//! their delivery, and watch topics for replies.
//!
//! [`ReplyWatcher`] joins no consumer group: it assigns itself every partition of
//! its topics from the beginning, so it sees records produced before it started and
//! never waits for a group rebalance. It collects every record in the background;
//! tests then wait for the one they expect.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::Duration,
};

use anyhow::{anyhow, bail, Context};
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer},
    error::RDKafkaErrorCode,
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    ClientConfig, Message, Offset, TopicPartitionList,
};
use serde_json::Value;
use tokio::sync::watch;

/// How long topic creation may take before it counts as failed.
const TOPIC_TIMEOUT: Duration = Duration::from_secs(15);

/// Base client settings for the test broker.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap).set("socket.connection.setup.timeout.ms", "3000");
    config
}

/// Settings for a consumer in group `group_id` that joins quickly: librdkafka's
/// default `session.timeout.ms` (45 s) makes the first join on Tansu take ~23 s;
/// 6 s brings it to ~3 s.
pub fn group_consumer_config(bootstrap: &str, group_id: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group_id)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .set("auto.offset.reset", "earliest");
    config
}

/// Creates `topics` with `partitions` partitions each (replication 1) and waits
/// until the broker's metadata lists all their partitions. Existing topics are fine.
pub async fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("creating the Kafka admin client");
    let new_topics: Vec<NewTopic<'_>> =
        topics.iter().map(|topic| NewTopic::new(topic, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(TOPIC_TIMEOUT)).request_timeout(Some(TOPIC_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .unwrap_or_else(|e| panic!("CreateTopics request for {topics:?} failed: {e}"));
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating topic {topic} failed: {code}"),
        }
    }

    // Wait until every partition has a leader, so producing works right away.
    let bootstrap = bootstrap.to_owned();
    let topics: Vec<String> = topics.iter().map(|topic| (*topic).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create().expect("creating a Kafka metadata client");
        let deadline = std::time::Instant::now() + TOPIC_TIMEOUT;
        for topic in &topics {
            loop {
                match partitions_of(&consumer, topic) {
                    Ok(found) if found.len() >= partitions as usize => break,
                    outcome => assert!(
                        std::time::Instant::now() < deadline,
                        "topic {topic} has not appeared with {partitions} partitions after \
                         {TOPIC_TIMEOUT:?}: {outcome:?}"
                    ),
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
    })
    .await
    .expect("waiting for the new topics' metadata");
}

/// Partition ids of `topic` that have a leader, per the broker's metadata.
fn partitions_of(consumer: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .with_context(|| format!("metadata request for topic {topic}"))?;
    let topic_metadata = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic {topic} missing from metadata"))?;
    if let Some(error) = topic_metadata.error() {
        bail!("topic {topic}: {:?}", RDKafkaErrorCode::from(error));
    }
    Ok(topic_metadata
        .partitions()
        .iter()
        .filter(|partition| partition.leader() >= 0)
        .map(|partition| partition.id())
        .collect())
}

// ---------------------------------------------------------------------------
// Producing
// ---------------------------------------------------------------------------

/// A producer for tests. Each [`BusClient::produce`] waits for the broker's ack.
pub struct BusClient {
    producer: FutureProducer,
}

impl BusClient {
    pub fn new(bootstrap: &str) -> BusClient {
        let producer = client_config(bootstrap)
            .set("message.timeout.ms", "10000")
            .set("linger.ms", "0")
            .create()
            .expect("creating the Kafka test producer");
        BusClient { producer }
    }

    /// Produces one record and waits until it is delivered. Returns `(partition, offset)`.
    pub async fn produce(&self, topic: &str, key: Option<&[u8]>, value: &[u8], headers: &[(&str, &str)]) -> (i32, i64) {
        self.produce_to(topic, None, key, value, headers).await
    }

    /// [`BusClient::produce`] to `partition` when given (else by key).
    pub async fn produce_to(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: &[u8],
        headers: &[(&str, &str)],
    ) -> (i32, i64) {
        let headers = headers
            .iter()
            .fold(OwnedHeaders::new(), |all, (name, value)| all.insert(Header { key: name, value: Some(*value) }));
        let mut record = FutureRecord::to(topic).payload(value).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        let delivery = self
            .producer
            .send(record, Duration::from_secs(10))
            .await
            .unwrap_or_else(|(e, _)| panic!("producing to {topic} failed: {e}"));
        (delivery.partition, delivery.offset)
    }
}

// ---------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------

/// One record seen by a [`ReplyWatcher`].
#[derive(Clone)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// Header values as (lossy) UTF-8; a header without value maps to "".
    pub headers: HashMap<String, String>,
    pub value: Vec<u8>,
    /// The value parsed as JSON, when it is JSON: the event envelope, taken
    /// out of its signed `ModelMessageEnvelope` when it came in one (see
    /// `signed`; tests of the signature read `value`).
    pub json: Option<Value>,
    /// Whether the value was a signed `ModelMessageEnvelope`.
    pub signed: bool,
    /// When the watcher received it (fault tests measure reply latency with it).
    pub received_at: std::time::Instant,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    pub fn value_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }

    /// The `correlation_id` header, else the JSON body's top-level `correlation_id`.
    pub fn correlation_id(&self) -> Option<&str> {
        self.header("correlation_id")
            .or_else(|| self.json.as_ref().and_then(|json| json.get("correlation_id")).and_then(Value::as_str))
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value_str();
        let shown: String = value.chars().take(300).collect();
        write!(
            f,
            "{}/{}@{} key={:?} headers={:?} value={}{}",
            self.topic,
            self.partition,
            self.offset,
            self.key.as_deref().map(String::from_utf8_lossy),
            self.headers,
            shown,
            if value.chars().count() > 300 { "…" } else { "" }
        )
    }
}

/// What the background thread shares with the waiters.
struct Seen {
    records: Mutex<Vec<Record>>,
    /// Consumer errors (broker gone, ...), shown when a wait times out.
    errors: Mutex<Vec<String>>,
    /// Bumped after every new record; waiters sleep on it.
    count: watch::Sender<usize>,
}

/// Collects every record on some topics, in the background, from their beginning.
pub struct ReplyWatcher {
    topics: Vec<String>,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl ReplyWatcher {
    /// Starts watching `topics`, which must already exist (see [`create_topics`]).
    pub fn start(bootstrap: &str, topics: &[String]) -> ReplyWatcher {
        // No group membership: partitions are assigned by hand (never `subscribe`), so
        // nothing joins or rebalances, and nothing is committed. librdkafka still
        // wants a group.id for `assign()` ("Unknown group" without one), so it gets a
        // unique one that the broker never hears of.
        let consumer: BaseConsumer = client_config(bootstrap)
            .set("group.id", format!("onex-reply-watcher-{}", uuid::Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("fetch.wait.max.ms", "50")
            .create()
            .expect("creating the reply-watcher consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            let partitions = partitions_of(&consumer, topic).unwrap_or_else(|e| {
                panic!("ReplyWatcher: cannot watch {topic} (create it first with create_topics): {e:#}")
            });
            assert!(!partitions.is_empty(), "ReplyWatcher: topic {topic} has no partitions");
            for partition in partitions {
                assignment
                    .add_partition_offset(topic, partition, Offset::Beginning)
                    .expect("adding a partition to the watcher's assignment");
            }
        }
        consumer.assign(&assignment).expect("assigning the watched partitions");

        let seen = Arc::new(Seen {
            records: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let seen = Arc::clone(&seen);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("reply-watcher".to_owned())
                .spawn(move || collect(consumer, &seen, &stop))
                .expect("starting the reply-watcher thread")
        };
        ReplyWatcher { topics: topics.to_vec(), seen, stop, thread: Some(thread) }
    }

    /// Waits until a record (already seen or arriving later) satisfies `predicate`.
    /// On timeout the error lists the topics, consumer errors and the last records seen.
    pub async fn wait_for(&self, predicate: impl Fn(&Record) -> bool, timeout: Duration) -> anyhow::Result<Record> {
        let mut found = self.wait_for_many(predicate, 1, timeout).await?;
        Ok(found.remove(0))
    }

    /// Waits until `n` records (already seen or arriving later) satisfy
    /// `predicate`; returns them in arrival order.
    pub async fn wait_for_many(
        &self,
        predicate: impl Fn(&Record) -> bool,
        n: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Record>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.seen.count.subscribe();
        let mut checked = 0;
        let mut found = Vec::new();
        loop {
            // Mark the current count as seen *before* looking, so a record that
            // arrives while we look wakes the wait below.
            changes.borrow_and_update();
            {
                let records = self.seen.records.lock().expect("watcher records poisoned");
                found.extend(records[checked..].iter().filter(|r| predicate(r)).take(n - found.len()).cloned());
                if found.len() == n {
                    return Ok(found);
                }
                checked = records.len();
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => bail!("the reply watcher stopped"),
                Err(_) => return Err(anyhow!(self.timeout_report(timeout))),
            }
        }
    }

    /// Waits for a record whose `correlation_id` header or JSON field equals `correlation_id`.
    pub async fn wait_for_correlation(&self, correlation_id: &str, timeout: Duration) -> anyhow::Result<Record> {
        self.wait_for(|r| r.correlation_id() == Some(correlation_id), timeout)
            .await
            .with_context(|| format!("waiting for correlation_id {correlation_id}"))
    }

    /// Every record seen so far, in arrival order.
    pub fn all_records(&self) -> Vec<Record> {
        self.seen.records.lock().expect("watcher records poisoned").clone()
    }

    fn timeout_report(&self, timeout: Duration) -> String {
        let records = self.all_records();
        let errors = self.seen.errors.lock().expect("watcher errors poisoned");
        let mut report =
            format!("no matching record on {:?} within {timeout:?}; {} record(s) seen", self.topics, records.len());
        if !errors.is_empty() {
            report.push_str(&format!("; consumer errors: {:?}", &*errors));
        }
        for record in records.iter().rev().take(10).rev() {
            report.push_str(&format!("\n  {record:?}"));
        }
        report
    }
}

impl Drop for ReplyWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Background loop: poll, convert, store, notify; until told to stop.
fn collect(consumer: BaseConsumer, seen: &Seen, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(e)) => seen.errors.lock().expect("watcher errors poisoned").push(e.to_string()),
            Some(Ok(message)) => {
                let value = message.payload().unwrap_or_default().to_vec();
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|header| {
                                let value =
                                    header.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
                                (header.key.to_owned(), value)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let parsed: Option<Value> = serde_json::from_slice(&value).ok();
                let signed = parsed.as_ref().is_some_and(onex_vault_models::SignedEnvelope::looks_signed);
                let json = if signed { parsed.and_then(|mut v| v.get_mut("payload").map(Value::take)) } else { parsed };
                let record = Record {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    headers,
                    json,
                    signed,
                    value,
                    received_at: std::time::Instant::now(),
                };
                let mut records = seen.records.lock().expect("watcher records poisoned");
                records.push(record);
                let count = records.len();
                drop(records);
                seen.count.send_replace(count);
            }
        }
    }
}
