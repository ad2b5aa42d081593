//! `onex-vault-adapter health`: the operator's view of a fleet of nodes, one
//! row per instance like `kubectl top`, built from the health events the
//! nodes publish on the health topic.
//!
//! The pure part, unit-tested without Kafka: [`decode`] turns a record into a
//! [`Seen`], [`update`] keeps the last two events per instance in a
//! [`Fleet`], and [`render`] draws the table (rates come from the operation
//! counts of an instance's last two events). Around it, a thin Kafka loop:
//! [`snapshot`] reads the topic from its beginning to its current end and
//! renders once; [`follow`] keeps reading and redraws every second.
//! [`run`] is the subcommand behind both.

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal as _, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use chrono::{DateTime, TimeDelta, Utc};
use onex_vault_models::{Envelope, HealthDetails, HealthPhase, HealthStatus};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The health topic of the wire contract.
pub const DEFAULT_TOPIC: &str = "onex.evt.omnibase-infra.vault-health.v1";

/// How long Kafka may stay silent (at start, or while catching up) before the
/// view gives up.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `--follow` redraws.
const REDRAW_EVERY: Duration = Duration::from_secs(1);
/// Longest instance id shown; longer ones are cut with `…`.
const MAX_INSTANCE_CHARS: usize = 48;
/// Spaces between columns.
const GAP: &str = "   ";
/// ANSI: cursor home, clear screen.
const CLEAR_SCREEN: &str = "\x1b[H\x1b[2J";

/// Arguments of the `health` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct HealthArgs {
    /// Keep reading and redraw the table every second, until Ctrl-C.
    #[arg(long)]
    pub follow: bool,
    /// Kafka bootstrap servers, e.g. `127.0.0.1:9092`.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// The health topic.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub topic: String,
    /// Instances whose last event is older than this are shown as `stale`.
    #[arg(long, default_value_t = 60)]
    pub stale_seconds: u64,
}

// ---------------------------------------------------------------------------
// The fleet: last two events per instance
// ---------------------------------------------------------------------------

/// What the view knows: the last two health events of every instance seen,
/// and how many records were not health events.
#[derive(Debug, Clone)]
pub struct Fleet {
    instances: BTreeMap<String, Instance>,
    skipped: u64,
    stale_after: TimeDelta,
    /// Bumped by every accepted event and every skipped record.
    revision: u64,
}

#[derive(Debug, Clone)]
struct Instance {
    last: Seen,
    previous: Option<Seen>,
}

impl Fleet {
    /// An empty fleet; instances silent for more than `stale_seconds` are stale.
    pub fn new(stale_seconds: u64) -> Fleet {
        Fleet {
            instances: BTreeMap::new(),
            skipped: 0,
            stale_after: TimeDelta::try_seconds(i64::try_from(stale_seconds).unwrap_or(i64::MAX))
                .unwrap_or(TimeDelta::MAX),
            revision: 0,
        }
    }

    /// Instances seen so far.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Records that were not decodable health events.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Changes with every event taken in and every record skipped.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The instances whose last event is older than the stale limit at `now`.
    pub fn stale_instances(&self, now: DateTime<Utc>) -> Vec<&str> {
        self.instances.iter().filter(|(_, instance)| self.is_stale(instance, now)).map(|(id, _)| id.as_str()).collect()
    }

    fn is_stale(&self, instance: &Instance, now: DateTime<Utc>) -> bool {
        age(instance, now) > self.stale_after
    }

    fn skip(&mut self) {
        self.skipped = self.skipped.saturating_add(1);
        self.revision = self.revision.wrapping_add(1);
    }
}

/// Takes one health event in: it becomes its instance's last event, and the
/// one before becomes the previous. A repeat of the last event (same
/// `envelope_id`) or an event older than the last is ignored; an event without
/// an instance id counts as skipped.
pub fn update(fleet: &mut Fleet, envelope: &Seen) {
    let id = envelope.payload.instance_id.trim();
    if id.is_empty() {
        fleet.skip();
        return;
    }
    match fleet.instances.get_mut(id) {
        None => {
            fleet.instances.insert(id.to_owned(), Instance { last: envelope.clone(), previous: None });
        }
        Some(instance) => {
            let last = &instance.last;
            if last.envelope_id == envelope.envelope_id || envelope.envelope_timestamp < last.envelope_timestamp {
                return;
            }
            let before = std::mem::replace(&mut instance.last, envelope.clone());
            instance.previous = Some(before);
        }
    }
    fleet.revision = fleet.revision.wrapping_add(1);
}

/// Takes one Kafka record value in: a health event is passed to [`update`],
/// anything else (no value, not JSON, not a health envelope) is counted as
/// skipped.
pub fn ingest(fleet: &mut Fleet, value: Option<&[u8]>) {
    match value.map(decode) {
        Some(Ok(envelope)) => update(fleet, &envelope),
        Some(Err(_)) | None => fleet.skip(),
    }
}

/// What the view keeps of a health event: its envelope around the node's
/// own figures (`health_metrics.custom_metrics`).
pub type Seen = Envelope<HealthDetails>;

/// Decodes a health envelope, tolerating fields it does not know. The bus
/// stats' `consumer_lag` is accepted as a map of numbers (`topic/partition` →
/// records) or as one number (kept as the single entry `"*"`); any other
/// shape of it is dropped rather than failing the whole event.
pub fn decode(bytes: &[u8]) -> Result<Seen, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(bytes)?;
    // The view reads the node's own figures: the event's custom metrics.
    let details = value.pointer_mut("/payload/health_metrics/custom_metrics").map(Value::take).unwrap_or_default();
    if let Some(envelope) = value.as_object_mut() {
        envelope.insert("payload".to_owned(), details);
    }
    if let Some(bus) = value.pointer_mut("/payload/bus").and_then(Value::as_object_mut) {
        let lag = bus.remove("consumer_lag").and_then(lag_map);
        if let Some(lag) = lag {
            bus.insert("consumer_lag".to_owned(), lag);
        }
    }
    serde_json::from_value(value)
}

/// `consumer_lag` as a JSON map of integers, from a number or a map of numbers.
fn lag_map(raw: Value) -> Option<Value> {
    let as_records = |v: &Value| v.as_i64().or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f.round() as i64));
    match raw {
        Value::Object(map) => Some(Value::Object(
            map.into_iter().filter_map(|(k, v)| as_records(&v).map(|n| (k, Value::from(n)))).collect(),
        )),
        number @ Value::Number(_) => as_records(&number).map(|n| serde_json::json!({ "*": n })),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Figures of one instance
// ---------------------------------------------------------------------------

/// Time since the instance's last event (never negative).
fn age(instance: &Instance, now: DateTime<Utc>) -> TimeDelta {
    now.signed_duration_since(instance.last.envelope_timestamp).max(TimeDelta::zero())
}

/// Operations and errors per second between the last two events, or `None`
/// with one event, no time between them, or counters that went backwards (a
/// restart).
fn rates(instance: &Instance) -> Option<(f64, f64)> {
    let previous = instance.previous.as_ref()?;
    let (now, before) = (&instance.last.payload, &previous.payload);
    if now.uptime_seconds < before.uptime_seconds {
        return None;
    }
    let seconds = instance.last.envelope_timestamp.signed_duration_since(previous.envelope_timestamp).num_milliseconds()
        as f64
        / 1000.0;
    if seconds <= 0.0 {
        return None;
    }
    // An operation that vanished from the counters means they were reset.
    if before.operations.keys().any(|name| !now.operations.contains_key(name)) {
        return None;
    }
    let (mut ops, mut errors) = (0u64, 0u64);
    for (name, stats) in &now.operations {
        let (count0, errors0) = before.operations.get(name).map_or((0, 0), |s| (s.count, s.errors));
        ops = ops.saturating_add(stats.count.checked_sub(count0)?);
        errors = errors.saturating_add(stats.errors.checked_sub(errors0)?);
    }
    Some((ops as f64 / seconds, errors as f64 / seconds))
}

/// Highest p99 latency over the operations of the last event.
fn p99_ms(instance: &Instance) -> Option<f64> {
    instance.last.payload.operations.values().filter_map(|s| s.p99_ms).filter(|p| p.is_finite()).reduce(f64::max)
}

/// Total consumer lag of the last event; `None` when it reported none.
fn lag(instance: &Instance) -> Option<i64> {
    let lag = &instance.last.payload.bus.consumer_lag;
    let known: Vec<i64> = lag.values().copied().filter(|n| *n >= 0).collect();
    (!known.is_empty()).then(|| known.iter().fold(0i64, |sum, n| sum.saturating_add(*n)))
}

/// The STATUS cell: `stale` past the limit, `stopping` after a clean
/// shutdown's last event, else the reported status.
fn status(fleet: &Fleet, instance: &Instance, now: DateTime<Utc>) -> &'static str {
    if fleet.is_stale(instance, now) {
        return "stale";
    }
    let event = &instance.last.payload;
    if event.phase == HealthPhase::Stopping {
        return "stopping";
    }
    match event.status {
        HealthStatus::Healthy => "healthy",
        HealthStatus::Degraded => "degraded",
        HealthStatus::Unhealthy => "unhealthy",
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

const COLUMNS: [(&str, Align); 11] = [
    ("INSTANCE", Align::Left),
    ("STATUS", Align::Left),
    ("UPTIME", Align::Right),
    ("BREAKER", Align::Left),
    ("TOKEN TTL", Align::Right),
    ("OPS/S", Align::Right),
    ("ERR/S", Align::Right),
    ("P99", Align::Right),
    ("IN-FLIGHT", Align::Right),
    ("LAG", Align::Right),
    ("AGE", Align::Right),
];

/// The table at `now`: a header, one row per instance (by instance id), and a
/// footer when there is nothing to show or records were skipped.
pub fn render(fleet: &Fleet, now: DateTime<Utc>) -> String {
    let rows: Vec<[String; COLUMNS.len()]> =
        fleet.instances.iter().map(|(id, instance)| row(fleet, id, instance, now)).collect();
    let mut out = table(&rows);
    if fleet.is_empty() {
        out.push_str("(no health events)\n");
    }
    if fleet.skipped > 0 {
        let s = if fleet.skipped == 1 { "" } else { "s" };
        out.push_str(&format!("({} record{s} skipped: not a health event)\n", fleet.skipped));
    }
    out
}

fn row(fleet: &Fleet, id: &str, instance: &Instance, now: DateTime<Utc>) -> [String; COLUMNS.len()] {
    let event = &instance.last.payload;
    let rates = rates(instance);
    [
        display_id(id),
        status(fleet, instance, now).to_owned(),
        duration(event.uptime_seconds),
        event.circuit_breaker.state.as_str().to_owned(),
        event.token.ttl_seconds.map_or_else(dash, |ttl| duration(ttl as f64)),
        rates.map_or_else(dash, |(ops, _)| rate(ops)),
        rates.map_or_else(dash, |(_, errors)| rate(errors)),
        p99_ms(instance).map_or_else(dash, |p| format!("{p:.1}ms")),
        event.bus.in_flight.to_string(),
        lag(instance).map_or_else(dash, |n| n.to_string()),
        duration(age(instance, now).num_milliseconds() as f64 / 1000.0),
    ]
}

/// Header and rows, each column as wide as its widest cell.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let headers: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let padded: Vec<String> = cells
            .zip(&widths)
            .zip(COLUMNS.iter().map(|(_, align)| *align))
            .map(|((cell, &width), align)| match align {
                Align::Left => format!("{cell:<width$}"),
                Align::Right => format!("{cell:>width$}"),
            })
            .collect();
        let mut text = padded.join(GAP).trim_end().to_owned();
        text.push('\n');
        text
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn dash() -> String {
    "-".to_owned()
}

/// An instance id fit for a terminal: control characters (escape sequences)
/// replaced, long ids cut.
fn display_id(id: &str) -> String {
    let clean: String = id.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    if clean.chars().count() > MAX_INSTANCE_CHARS {
        let mut cut: String = clean.chars().take(MAX_INSTANCE_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

/// `42s`, `5m3s`, `2h10m`, `3d4h`.
fn duration(seconds: f64) -> String {
    // `as` saturates: NaN and negatives become 0, huge values u64::MAX.
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// A per-second rate with about three significant digits.
fn rate(per_second: f64) -> String {
    if per_second >= 100.0 {
        format!("{per_second:.0}")
    } else if per_second >= 10.0 {
        format!("{per_second:.1}")
    } else {
        format!("{per_second:.2}")
    }
}

// ---------------------------------------------------------------------------
// Kafka
// ---------------------------------------------------------------------------

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
struct Screen<'a> {
    topic: &'a str,
    terminal: bool,
    shown: Option<(u64, Vec<String>, Option<String>)>,
}

impl Screen<'_> {
    fn draw(&mut self, out: &mut dyn Write, fleet: &Fleet, kafka_error: Option<&str>) -> std::io::Result<()> {
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
            crate::contract::KafkaSecurity::from_env().map_err(anyhow::Error::msg)?.librdkafka_properties()
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
        let partitions = crate::bus::partitions_of(&consumer, topic, KAFKA_TIMEOUT).map_err(unreachable)?;
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

/// The `health` subcommand: exit 0 after printing (or after Ctrl-C with
/// `--follow`), 2 when Kafka is unreachable, 1 on any other failure.
pub fn run(args: HealthArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        if args.follow {
            let stop = crate::shutdown::on_signal();
            let terminal = std::io::stdout().is_terminal();
            follow(
                &args.bootstrap_servers,
                &args.topic,
                args.stale_seconds,
                Box::new(std::io::stdout()),
                terminal,
                stop,
            )
            .await
        } else {
            let table = snapshot(&args.bootstrap_servers, &args.topic, args.stale_seconds).await?;
            let mut stdout = std::io::stdout().lock();
            match stdout.write_all(table.as_bytes()).and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("cannot write the table"),
                _ => Ok(()),
            }
        }
    });
    // Do not wait for a blocked Kafka poll to notice the end.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.is::<KafkaUnreachable>() => {
            eprintln!("health: {error:#}");
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("health: {error:#}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid timestamp")
    }

    /// A health envelope as a node publishes it, as JSON to tweak.
    fn event_json(instance: &str, at_seconds: i64, uptime: f64, get: (u64, u64)) -> Value {
        json!({
            "envelope_id": uuid::Uuid::new_v4(),
            "envelope_timestamp": at(at_seconds),
            "correlation_id": uuid::Uuid::new_v4(),
            "source_tool": "node_infrastructure_vault_adapter_effect",
            "payload_type": "ModelNodeHealthEvent",
            "envelope_version": {"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null},
            "payload": {
                "node_name": "node_infrastructure_vault_adapter_effect",
                "node_version": "0.1.0",
                "instance_id": instance,
                "uptime_seconds": uptime,
                "status": "healthy",
                "status_reasons": [],
                "phase": "running",
                "interval_seconds": 10,
                "vault": { "reachable": true, "initialized": true, "sealed": false,
                           "standby": false, "version": "2.2.0", "latency_ms": 1.5 },
                "token": { "ttl_seconds": 2712, "renewable": true,
                           "renewals_total": 0, "renewal_failures_total": 0 },
                "circuit_breaker": { "state": "closed", "consecutive_failures": 0,
                                     "opened_total": 0, "seconds_until_half_open": null },
                "operations": {
                    "get_secret": { "count": get.0, "errors": get.1,
                                    "p50_ms": 1.0, "p99_ms": 4.25 },
                },
                "bus": { "consumed_total": 0, "replied_total": 0, "dlq_total": 0,
                         "in_flight": 2, "assigned_partitions": 1,
                         "consumer_lag": { "requests/0": 3 } },
                "vault_metrics": {}
            }
        })
    }

    /// Sends the fixture as the node publishes it: its figures in the
    /// custom metrics of an upstream `ModelNodeHealthEvent`.
    fn feed(fleet: &mut Fleet, event: &Value) {
        let mut event = event.clone();
        let details = event["payload"].take();
        event["payload"] = json!({
            "event_type": "node_health_event", "node_id": uuid::Uuid::new_v4(), "node_name": "n",
            "timestamp": "2026-11-29T00:00:00Z", "event_id": uuid::Uuid::new_v4(),
            "health_metrics": {"custom_metrics": details}, "report_interval_seconds": 10
        });
        let bytes = serde_json::to_vec(&event).expect("serializable");
        ingest(fleet, Some(&bytes));
    }

    fn cells(fleet: &Fleet, id: &str, now: DateTime<Utc>) -> [String; COLUMNS.len()] {
        let instance = fleet.instances.get(id).expect("instance present");
        row(fleet, id, instance, now)
    }

    #[test]
    fn rates_come_from_the_last_two_events() {
        let mut fleet = Fleet::new(60);
        let mut first = event_json("a", 0, 100.0, (10, 1));
        first["payload"]["operations"]["set_secret"] = json!({ "count": 5, "errors": 0 });
        let mut second = event_json("a", 10, 110.0, (30, 3));
        second["payload"]["operations"]["set_secret"] = json!({ "count": 15, "errors": 0 });
        feed(&mut fleet, &first);
        let one = cells(&fleet, "a", at(10));
        assert_eq!((one[5].as_str(), one[6].as_str()), ("-", "-"));

        feed(&mut fleet, &second);
        let instance = &fleet.instances["a"];
        assert_eq!(rates(instance), Some((3.0, 0.2)));
        let two = cells(&fleet, "a", at(12));
        assert_eq!((two[5].as_str(), two[6].as_str()), ("3.00", "0.20"));

        // A third event: rates from the second and third only.
        let mut third = event_json("a", 20, 120.0, (1030, 3));
        third["payload"]["operations"]["set_secret"] = json!({ "count": 15, "errors": 0 });
        feed(&mut fleet, &third);
        assert_eq!(rates(&fleet.instances["a"]), Some((100.0, 0.0)));
        // An operation gone from the counters means they were reset: no rate.
        feed(&mut fleet, &event_json("a", 30, 130.0, (1040, 3)));
        assert_eq!(rates(&fleet.instances["a"]), None);
    }

    #[test]
    fn a_restart_or_a_repeat_gives_no_rate() {
        let mut fleet = Fleet::new(60);
        let first = event_json("a", 0, 500.0, (50, 0));
        feed(&mut fleet, &first);
        // The same event again (redelivered) and an older one change nothing.
        feed(&mut fleet, &first);
        feed(&mut fleet, &event_json("a", -10, 490.0, (40, 0)));
        assert!(fleet.instances["a"].previous.is_none());
        // Restarted: uptime and counters start over.
        feed(&mut fleet, &event_json("a", 10, 5.0, (2, 0)));
        assert_eq!(rates(&fleet.instances["a"]), None);
    }

    #[test]
    fn instances_past_the_limit_are_stale() {
        let mut fleet = Fleet::new(60);
        feed(&mut fleet, &event_json("a", 0, 100.0, (1, 0)));
        feed(&mut fleet, &event_json("b", 50, 100.0, (1, 0)));
        let now = at(61);
        assert_eq!(cells(&fleet, "a", now)[1], "stale");
        assert_eq!(cells(&fleet, "a", now)[10], "1m1s");
        assert_eq!(cells(&fleet, "b", now)[1], "healthy");
        assert_eq!(fleet.stale_instances(now), vec!["a"]);
        assert_eq!(cells(&fleet, "a", at(60))[1], "healthy");
    }

    #[test]
    fn the_table_is_aligned() {
        let mut fleet = Fleet::new(60);
        feed(&mut fleet, &event_json("node-a-1f2e3d4c", 0, 3725.0, (100, 2)));
        feed(&mut fleet, &event_json("node-a-1f2e3d4c", 10, 3735.0, (225, 4)));
        let mut b = event_json("b", 5, 42.0, (0, 0));
        b["payload"]["status"] = json!("degraded");
        b["payload"]["circuit_breaker"]["state"] = json!("half_open");
        b["payload"]["token"]["ttl_seconds"] = json!(null);
        b["payload"]["operations"] = json!({});
        b["payload"]["bus"]["consumer_lag"] = json!({});
        b["payload"]["bus"]["in_flight"] = json!(0);
        feed(&mut fleet, &b);
        ingest(&mut fleet, Some(b"garbage"));

        let expected = "\
INSTANCE          STATUS     UPTIME   BREAKER     TOKEN TTL   OPS/S   ERR/S     P99   IN-FLIGHT   LAG   AGE
b                 degraded      42s   half_open           -       -       -       -           0     -    7s
node-a-1f2e3d4c   healthy      1h2m   closed         45m12s    12.5    0.20   4.2ms           2     3    2s
(1 record skipped: not a health event)
";
        assert_eq!(render(&fleet, at(12)), expected);
        // Every line of the table proper is as long as the header line, once
        // trailing spaces are put back: the columns line up.
        let lines: Vec<&str> = expected.lines().take(3).collect();
        let header = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == header));
    }

    #[test]
    fn an_empty_fleet_says_so() {
        let text = render(&Fleet::new(60), at(0));
        assert!(text.starts_with("INSTANCE   STATUS   UPTIME"));
        assert!(text.ends_with("(no health events)\n"));
    }

    #[test]
    fn garbage_and_unknown_records_are_skipped_and_counted() {
        let mut fleet = Fleet::new(60);
        ingest(&mut fleet, None);
        ingest(&mut fleet, Some(b"\xff\xfe not json"));
        ingest(&mut fleet, Some(b"[1, 2, 3]"));
        ingest(&mut fleet, Some(br#"{"envelope_id": "x"}"#));
        // A reply envelope, not a health event.
        let mut reply = event_json("a", 0, 1.0, (0, 0));
        reply["payload"] = json!({ "operation": "get_secret", "status": "success" });
        feed(&mut fleet, &reply);
        // A health event with a wrong field type, and one without instance id.
        let mut bad = event_json("a", 0, 1.0, (0, 0));
        bad["payload"]["uptime_seconds"] = json!("long");
        feed(&mut fleet, &bad);
        feed(&mut fleet, &event_json("  ", 0, 1.0, (0, 0)));
        // Deep nesting is refused by serde_json, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        ingest(&mut fleet, Some(deep.as_bytes()));

        assert!(fleet.is_empty());
        assert_eq!(fleet.skipped(), 8);
        assert!(render(&fleet, at(0)).ends_with("(8 records skipped: not a health event)\n"));
    }

    #[test]
    fn extra_fields_and_other_lag_shapes_are_tolerated() {
        let mut event = event_json("a", 0, 1.0, (0, 0));
        event["new_envelope_field"] = json!(true);
        event["payload"]["future_field"] = json!({ "x": 1 });
        event["payload"]["bus"]["consumer_lag"] = json!(17);
        let mut fleet = Fleet::new(60);
        feed(&mut fleet, &event);
        assert_eq!(cells(&fleet, "a", at(0))[9], "17");

        event["envelope_id"] = json!(uuid::Uuid::new_v4());
        event["envelope_timestamp"] = json!(at(1));
        event["payload"]["bus"]["consumer_lag"] = json!({ "t/0": 5, "t/1": 2.0, "t/2": -1, "t/3": "n/a" });
        feed(&mut fleet, &event);
        assert_eq!(cells(&fleet, "a", at(1))[9], "7");

        event["envelope_id"] = json!(uuid::Uuid::new_v4());
        event["envelope_timestamp"] = json!(at(2));
        event["payload"]["bus"]["consumer_lag"] = json!("lots");
        feed(&mut fleet, &event);
        event["envelope_id"] = json!(uuid::Uuid::new_v4());
        event["envelope_timestamp"] = json!(at(3));
        event["payload"]["bus"].as_object_mut().expect("bus object").remove("consumer_lag");
        feed(&mut fleet, &event);
        assert_eq!(cells(&fleet, "a", at(3))[9], "-");
        assert_eq!(fleet.skipped(), 0);
    }

    #[test]
    fn hostile_values_render_safely() {
        let mut event = event_json("evil\x1b[2Jid", 0, -5.0, (0, 0));
        event["payload"]["operations"]["get_secret"]["p99_ms"] = json!(1e308);
        event["payload"]["token"]["ttl_seconds"] = json!(u64::MAX);
        let mut fleet = Fleet::new(u64::MAX);
        feed(&mut fleet, &event);
        let long = "x".repeat(200);
        feed(&mut fleet, &event_json(&long, 0, 1.0, (0, 0)));
        let text = render(&fleet, at(0));
        assert!(!text.contains('\x1b'));
        assert!(text.contains("evil?[2Jid"));
        assert!(text.contains(&format!("{}…", "x".repeat(MAX_INSTANCE_CHARS - 1))));
        assert_eq!(cells(&fleet, "evil\x1b[2Jid", at(0))[2], "0s");
    }

    #[test]
    fn stopping_instances_say_so() {
        let mut event = event_json("a", 0, 1.0, (0, 0));
        event["payload"]["phase"] = json!("stopping");
        let mut fleet = Fleet::new(60);
        feed(&mut fleet, &event);
        assert_eq!(cells(&fleet, "a", at(1))[1], "stopping");
        assert_eq!(cells(&fleet, "a", at(100))[1], "stale");
    }

    #[test]
    fn durations_and_rates_are_compact() {
        assert_eq!(duration(0.4), "0s");
        assert_eq!(duration(59.9), "59s");
        assert_eq!(duration(61.0), "1m1s");
        assert_eq!(duration(7_260.0), "2h1m");
        assert_eq!(duration(90_000.0), "1d1h");
        assert_eq!(duration(f64::NAN), "0s");
        assert_eq!(rate(0.0), "0.00");
        assert_eq!(rate(12.345), "12.3");
        assert_eq!(rate(1234.5), "1234");
    }

    #[test]
    fn off_a_terminal_a_table_is_written_only_on_change() {
        let mut fleet = Fleet::new(60);
        let mut screen = Screen { topic: "t", terminal: false, shown: None };
        let mut out = Vec::new();
        screen.draw(&mut out, &fleet, None).expect("write");
        screen.draw(&mut out, &fleet, None).expect("write");
        let once = String::from_utf8(out.clone()).expect("utf-8");
        assert_eq!(once.matches("INSTANCE").count(), 1);

        feed(&mut fleet, &event_json("a", 0, 1.0, (0, 0)));
        screen.draw(&mut out, &fleet, None).expect("write");
        let twice = String::from_utf8(out).expect("utf-8");
        assert_eq!(twice.matches("INSTANCE").count(), 2);
        assert!(twice.contains("(no health events)\n\nINSTANCE"));
        assert!(!twice.contains('\x1b'));
    }
}
