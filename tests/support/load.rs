//! Load for fault tests: send many requests without waiting for each reply, then
//! account for every one of them: answered or lost, how often (duplicates), how
//! fast, and with what outcome.
//!
//! ```ignore
//! let load = Load::new(node.requester());
//! for n in 0..300 { load.send(json!({"operation": "get_secret", "path": "app/x"})).await; }
//! let tally = load.wait_all_answered(Duration::from_secs(60)).await;
//! assert_eq!(tally.unanswered, 0);
//! ```
//!
//! [`Load`] is `Sync`: wrap it in an `Arc` to send from a background task while
//! the test injects faults. Replies are those on the completed and failed topics
//! whose `correlation_id` is one this `Load` sent.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Write,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{
    bus::Record,
    node::{Requester, Topics},
};

/// One request sent.
#[derive(Clone, Debug)]
pub struct Sent {
    pub correlation_id: String,
    /// Just before it was produced.
    pub sent_at: Instant,
}

/// Requests sent and the replies they got.
pub struct Load {
    pub requester: Requester,
    topics: Topics,
    sent: Mutex<Vec<Sent>>,
}

impl Load {
    pub fn new(requester: Requester) -> Load {
        let topics = requester.topics().clone();
        Load { requester, topics, sent: Mutex::new(Vec::new()) }
    }

    /// Sends a request with `payload`, keyed by its path (as `Requester::send`
    /// does), waits only for the broker's ack, and returns its correlation id.
    pub async fn send(&self, payload: Value) -> String {
        let key = payload.get("path").and_then(Value::as_str).unwrap_or("no-path").to_owned();
        self.send_keyed(&key, payload).await
    }

    /// Like [`Load::send`] with an explicit record key.
    pub async fn send_keyed(&self, key: &str, payload: Value) -> String {
        let envelope = Requester::envelope(payload);
        let correlation_id = envelope["correlation_id"].as_str().expect("envelope has a correlation_id").to_owned();
        self.sent
            .lock()
            .expect("sent lock")
            .push(Sent { correlation_id: correlation_id.clone(), sent_at: Instant::now() });
        self.requester.send_raw(Some(key.as_bytes()), envelope.to_string().as_bytes()).await;
        correlation_id
    }

    /// Every request sent so far, in order.
    pub fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("sent lock").clone()
    }

    pub fn sent_count(&self) -> usize {
        self.sent.lock().expect("sent lock").len()
    }

    /// Replies to this load's requests seen so far, by correlation id, in
    /// arrival order.
    pub fn replies(&self) -> HashMap<String, Vec<Record>> {
        let sent: HashMap<String, ()> = self.sent().into_iter().map(|s| (s.correlation_id, ())).collect();
        let mut replies: HashMap<String, Vec<Record>> = HashMap::new();
        for record in self.requester.watcher.all_records() {
            if record.topic != self.topics.completed && record.topic != self.topics.failed {
                continue;
            }
            if let Some(id) = record.correlation_id() {
                if sent.contains_key(id) {
                    replies.entry(id.to_owned()).or_default().push(record);
                }
            }
        }
        replies
    }

    /// How many of the requests sent so far have at least one reply.
    pub fn answered(&self) -> usize {
        self.replies().len()
    }

    /// The accounting right now.
    pub fn tally(&self) -> Tally {
        let sent = self.sent();
        let replies = self.replies();
        let mut tally = Tally { sent: sent.len(), ..Tally::default() };
        for request in &sent {
            match replies.get(&request.correlation_id) {
                None => tally.unanswered.push(request.correlation_id.clone()),
                Some(records) => {
                    tally.answered += 1;
                    tally.duplicates += records.len() - 1;
                    let first = &records[0];
                    *tally.outcomes.entry(outcome(first)).or_default() += 1;
                }
            }
        }
        tally
    }

    /// Polls until at least `count` requests have a reply; panics after `limit`
    /// with the accounting so far.
    pub async fn wait_answered(&self, count: usize, limit: Duration) -> Tally {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let tally = self.tally();
            if tally.answered >= count {
                return tally;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {} of the {count} replies waited for came within {limit:?}: {tally}",
                tally.answered
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until every request sent has a reply; panics after `limit` naming
    /// the requests still unanswered.
    pub async fn wait_all_answered(&self, limit: Duration) -> Tally {
        let count = self.sent_count();
        self.wait_answered(count, limit).await
    }

    /// The first reply to each request, with the request's send time.
    pub fn first_replies(&self) -> Vec<(Sent, Record)> {
        let mut replies = self.replies();
        self.sent()
            .into_iter()
            .filter_map(|sent| {
                let first = replies.remove(&sent.correlation_id)?.into_iter().next()?;
                Some((sent, first))
            })
            .collect()
    }
}

/// What a reply says: `success` or its error code (e.g. `ONEX_CORE_092_TIMEOUT_ERROR`).
pub fn outcome(reply: &Record) -> String {
    let payload = &reply.json.as_ref().map(|j| j["payload"].clone()).unwrap_or_default();
    if payload["status"] == "success" {
        "success".to_owned()
    } else {
        payload["error"]["code"].as_str().unwrap_or("unreadable").to_owned()
    }
}

/// The reply's payload (`status`, `result` or `error`, `duration_ms`).
pub fn reply_payload(reply: &Record) -> Value {
    reply.json.as_ref().map(|j| j["payload"].clone()).unwrap_or_default()
}

/// Accounting of a load: what was sent, answered, duplicated, lost.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub sent: usize,
    /// Requests with at least one reply.
    pub answered: usize,
    /// Replies beyond the first, summed over all requests.
    pub duplicates: usize,
    /// Correlation ids of requests without a reply.
    pub unanswered: Vec<String>,
    /// First replies by outcome (`success` or error code).
    pub outcomes: BTreeMap<String, usize>,
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent={}, answered={}, duplicates={}, unanswered={}, outcomes={:?}",
            self.sent,
            self.answered,
            self.duplicates,
            self.unanswered.len(),
            self.outcomes
        )?;
        if !self.unanswered.is_empty() {
            let shown: Vec<&String> = self.unanswered.iter().take(5).collect();
            write!(f, " (e.g. {shown:?})")?;
        }
        Ok(())
    }
}

/// Prints a fault test's summary line,
/// `FAULT <name>: injected=<what>, sent=N, answered=N, duplicates=N, recovery=<ms>ms[, <extra>]`,
/// straight to stderr so it shows without `--nocapture` (docs/operations.md, "Failure behaviour", quotes it).
pub fn report(name: &str, injected: &str, tally: &Tally, recovery: Duration, extra: &str) {
    let mut line = format!(
        "FAULT {name}: injected={injected}, sent={}, answered={}, duplicates={}, recovery={}ms",
        tally.sent,
        tally.answered,
        tally.duplicates,
        recovery.as_millis()
    );
    if !extra.is_empty() {
        line.push_str(", ");
        line.push_str(extra);
    }
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Latency percentiles of `samples`, as `p50/p99/max` in ms.
pub fn latency_summary(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "n/a".to_owned();
    }
    let mut ms: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    ms.sort_unstable();
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    format!("p50={}ms/p99={}ms/max={}ms", at(0.5), at(0.99), at(1.0))
}
