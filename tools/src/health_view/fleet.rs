//! The fleet: the last two health events of every instance seen, and the
//! figures of one instance (rates, p99, lag, status) drawn from them.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use onex_vault_models::{Envelope, HealthDetails, HealthPhase, HealthStatus};
use serde_json::Value;

/// What the view knows: the last two health events of every instance seen,
/// and how many records were not health events.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub(super) instances: BTreeMap<String, Instance>,
    pub(super) skipped: u64,
    stale_after: TimeDelta,
    /// Bumped by every accepted event and every skipped record.
    revision: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Instance {
    pub(super) last: Seen,
    pub(super) previous: Option<Seen>,
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

/// Time since the instance's last event (never negative).
pub(super) fn age(instance: &Instance, now: DateTime<Utc>) -> TimeDelta {
    now.signed_duration_since(instance.last.envelope_timestamp).max(TimeDelta::zero())
}

/// Operations and errors per second between the last two events, or `None`
/// with one event, no time between them, or counters that went backwards (a
/// restart).
pub(super) fn rates(instance: &Instance) -> Option<(f64, f64)> {
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
pub(super) fn p99_ms(instance: &Instance) -> Option<f64> {
    instance.last.payload.operations.values().filter_map(|s| s.p99_ms).filter(|p| p.is_finite()).reduce(f64::max)
}

/// Total consumer lag of the last event; `None` when it reported none.
pub(super) fn lag(instance: &Instance) -> Option<i64> {
    let lag = &instance.last.payload.bus.consumer_lag;
    let known: Vec<i64> = lag.values().copied().filter(|n| *n >= 0).collect();
    (!known.is_empty()).then(|| known.iter().fold(0i64, |sum, n| sum.saturating_add(*n)))
}

/// The STATUS cell: `stale` past the limit, `stopping` after a clean
/// shutdown's last event, else the reported status.
pub(super) fn status(fleet: &Fleet, instance: &Instance, now: DateTime<Utc>) -> &'static str {
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
