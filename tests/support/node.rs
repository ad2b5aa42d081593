//! The node under test: the real `onex-vault-adapter` binary, started as a
//! child process with its own copy of `contract.yaml` whose topics and
//! consumer group are unique to the test, so tests never see each other's
//! messages. Its log (JSON lines) is captured to a file the test can read.
//!
//! [`Requester`] talks to it exactly as another ONEX node would: it produces
//! request envelopes and waits for the reply with the same `correlation_id`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::bus::{self, BusClient, Record, ReplyWatcher};
use super::servers;

/// The realm of every test node (the strict profile checks it).
pub const NODE_REALM: &str = "test-realm";

/// The runtime identity every test node signs its replies with.
pub fn node_identity() -> &'static onex_vault_models::RuntimeIdentity {
    static IDENTITY: std::sync::OnceLock<onex_vault_models::RuntimeIdentity> = std::sync::OnceLock::new();
    IDENTITY.get_or_init(|| onex_vault_models::RuntimeIdentity::generate("node_under_test", "t1").expect("keys"))
}

/// How requesters trust the test nodes' replies.
#[allow(dead_code)]
pub fn node_trust() -> onex_vault_client::NodeTrust {
    let key = onex_vault_models::RuntimeKey::from_base64(&node_identity().public_key_base64()).expect("node key");
    onex_vault_client::NodeTrust { runtime_id: node_identity().runtime_id.clone(), key }
}

/// How long a test waits for a reply before failing.
pub const REPLY_WAIT: Duration = Duration::from_secs(45);

/// The node's topics, by role.
#[derive(Clone, Debug)]
pub struct Topics {
    pub requests: String,
    pub completed: String,
    pub failed: String,
    pub health: String,
    pub circuit_breaker: String,
    pub audit: String,
    pub lease_events: String,
    pub replay_claims: String,
    pub lease_registry: String,
    pub dlq: String,
}

impl Topics {
    fn unique() -> Topics {
        let run = Uuid::new_v4().simple().to_string();
        let domain = format!("test-{}", &run[..12]);
        let name = |kind: &str, event: &str| format!("onex.{kind}.{domain}.{event}.v1");
        Topics {
            requests: name("cmd", "vault-request"),
            completed: name("evt", "vault-completed"),
            failed: name("evt", "vault-failed"),
            health: name("evt", "vault-health"),
            circuit_breaker: name("evt", "circuit-breaker"),
            audit: name("evt", "vault-audit"),
            lease_events: name("evt", "vault-lease"),
            replay_claims: name("evt", "vault-replay-claim"),
            lease_registry: name("evt", "vault-lease-keepalive"),
            dlq: name("dlq", "vault-request"),
        }
    }

    fn all(&self) -> [&str; 10] {
        [
            &self.requests,
            &self.completed,
            &self.failed,
            &self.health,
            &self.circuit_breaker,
            &self.audit,
            &self.lease_events,
            &self.replay_claims,
            &self.lease_registry,
            &self.dlq,
        ]
    }
}

/// A change to the test's copy of the contract (a YAML tree).
pub type ContractEdit = Box<dyn FnOnce(&mut serde_yaml::Value)>;

/// How to start the node; `NodeOptions::default()` uses the root token.
#[derive(Default)]
pub struct NodeOptions {
    /// Environment for the node on top of the stack's addresses (a key set here
    /// wins over the harness's own, e.g. `VAULT_ADDR` to point the node at a
    /// `proxy::Proxy`, or `KAFKA_BOOTSTRAP_SERVERS`).
    pub env: Vec<(String, String)>,
    /// Edits to the contract before it is written (a YAML tree).
    pub contract_edits: Vec<ContractEdit>,
    /// Topics to use instead of fresh unique ones (see [`NodeOptions::join`]).
    pub topics: Option<Topics>,
    /// Consumer group to use instead of a fresh unique one.
    pub group_id: Option<String>,
}

impl NodeOptions {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Uses `node`'s topics and consumer group: a second instance beside it, or
    /// its successor after a kill or stop (the restarted node resumes from the
    /// offsets the group committed).
    pub fn join(mut self, node: &Node) -> Self {
        self.topics = Some(node.topics.clone());
        self.group_id = Some(node.group_id.clone());
        self
    }

    /// Points the node at another Vault address, e.g. `http://<proxy addr>`.
    pub fn vault_addr(self, addr: &str) -> Self {
        self.env("VAULT_ADDR", addr)
    }

    /// Points the node at other Kafka bootstrap servers (e.g. a proxied link).
    pub fn bootstrap_servers(self, servers: &str) -> Self {
        self.env("KAFKA_BOOTSTRAP_SERVERS", servers)
    }

    /// The `strict` security profile (root token) with `requesters` (entries
    /// as in the contract's `access_policy.requesters`).
    pub fn strict(self, requesters: Vec<Value>) -> Self {
        let requesters: serde_yaml::Value =
            serde_json::from_value(Value::Array(requesters)).expect("requesters as YAML");
        self.env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_SECURITY_PROFILE", "strict")
            // The test stack is plain http:// and plaintext Kafka.
            .env("ONEX_ALLOW_INSECURE_TRANSPORT", "true")
            .edit(move |contract| contract["access_policy"]["requesters"] = requesters)
    }

    pub fn edit(mut self, edit: impl FnOnce(&mut serde_yaml::Value) + 'static) -> Self {
        self.contract_edits.push(Box::new(edit));
        self
    }
}

pub struct Node {
    child: Option<Child>,
    pub topics: Topics,
    /// The node's Kafka consumer group.
    pub group_id: String,
    pub http_port: u16,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node with the root token.
    pub async fn start() -> Node {
        Node::start_with(NodeOptions::default().env("VAULT_TOKEN", servers().root_token())).await
    }

    /// Starts a node with `options`, and waits until it has started (see
    /// [`Node::wait_until_started`]).
    pub async fn start_with(options: NodeOptions) -> Node {
        let mut node = Node::spawn_with(options).await;
        node.wait_until_started().await;
        node
    }

    /// Starts a node with `options` without waiting for it to start.
    pub async fn spawn_with(options: NodeOptions) -> Node {
        let stack = servers();
        let topics = match options.topics {
            Some(topics) => topics,
            None => {
                let topics = Topics::unique();
                bus::create_topics(&stack.bootstrap_servers(), &topics.all(), 3).await;
                topics
            }
        };
        let group_id = options.group_id.unwrap_or_else(|| format!("group-{}", Uuid::new_v4().simple()));

        let dir = tempfile::tempdir().expect("temp dir for the node");
        let contract_path = dir.path().join("contract.yaml");
        let mut contract = shipped_contract();
        let bus_section = &mut contract["event_bus"];
        bus_section["subscribe_topics"]["requests"] = topics.requests.clone().into();
        let publish = &mut bus_section["publish_topics"];
        publish["completed"] = topics.completed.clone().into();
        publish["failed"] = topics.failed.clone().into();
        publish["health"] = topics.health.clone().into();
        publish["circuit_breaker"] = topics.circuit_breaker.clone().into();
        publish["audit"] = topics.audit.clone().into();
        publish["lease_events"] = topics.lease_events.clone().into();
        publish["replay_claims"] = topics.replay_claims.clone().into();
        publish["lease_registry"] = topics.lease_registry.clone().into();
        bus_section["dlq_topics"]["requests"] = topics.dlq.clone().into();
        for edit in options.contract_edits {
            edit(&mut contract);
        }
        std::fs::write(&contract_path, serde_yaml::to_string(&contract).expect("contract YAML"))
            .expect("write the test contract");

        let identity_path = dir.path().join("node.identity.json");
        std::fs::write(&identity_path, node_identity().to_json()).expect("write the node's identity file");

        let http_port = free_port();
        let log_path = dir.path().join("node.log");
        let log = std::fs::File::create(&log_path).expect("node log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"));
        command
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("ONEX_CONTRACT", &contract_path)
            .env("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers())
            .env("VAULT_ADDR", stack.vault_addr())
            .env("ONEX_GROUP_ID", &group_id)
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("ONEX_HTTP_PORT", http_port.to_string())
            .env("ONEX_LOG_FORMAT", "json")
            // Tests of everything but security run without its checks;
            // tests/security.rs sets `strict` (options.env wins).
            .env("ONEX_SECURITY_PROFILE", "dev")
            .env("ONEX_REALM", NODE_REALM)
            .env("ONEX_NODE_IDENTITY_FILE", &identity_path)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start onex-vault-adapter");
        Node { child: Some(child), topics, group_id, http_port, log_path, _dir: dir }
    }

    /// Starts a node in the `strict` security profile (root token) with
    /// `requesters` (entries as in the contract's `access_policy.requesters`)
    /// and further contract `edit`s.
    pub async fn start_strict(requesters: Vec<Value>, edit: impl FnOnce(&mut serde_yaml::Value) + 'static) -> Node {
        Node::start_with(NodeOptions::default().strict(requesters).edit(edit)).await
    }

    /// Waits until the node has built itself (Vault login, policy, producer):
    /// `/ready` answers anything but "starting" (after the Vault login it
    /// names the Kafka topic start-up reads, then the node's own reasons).
    /// `/health` alone is not enough:
    /// it answers while the node still logs in to Vault, so a test that broke
    /// Vault right after start could kill the start-up instead of a request.
    pub async fn wait_until_started(&mut self) {
        let url = format!("http://127.0.0.1:{}/ready", self.http_port);
        // `/ready` asks Vault once started; a test's stalled Vault must not hold the poll.
        let client =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(2)).build().expect("http client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the node exited ({status}) during start-up; log:\n{}", self.log());
            }
            match client.get(&url).send().await {
                Ok(response) => {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    if body["reason"] != "starting" {
                        return;
                    }
                }
                // Listening, but `/ready` is waiting on Vault: started.
                Err(error) if error.is_timeout() => return,
                Err(_) => {}
            }
            assert!(tokio::time::Instant::now() < deadline, "node not started after 30 s; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the node logged about each of `ids` (correlation ids), for a
    /// failed tally: a request no log mentions never reached a node, one
    /// handled but unanswered lost its reply.
    pub fn explain(ids: &[String], nodes: &[(&str, &Node)]) -> String {
        let logs: Vec<(&str, String)> = nodes.iter().map(|(name, node)| (*name, node.log())).collect();
        let mut explained = String::new();
        for id in ids {
            explained.push_str(&format!("\n{id}:"));
            let mut mentioned = false;
            for (member, log) in &logs {
                for line in log.lines().filter(|line| line.contains(id.as_str())).take(4) {
                    mentioned = true;
                    let line: String = line.chars().take(400).collect();
                    explained.push_str(&format!("\n  [{member}] {line}"));
                }
            }
            if !mentioned {
                explained.push_str(" in no node's log");
            }
        }
        explained
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits (at most 60 s) for the exit; returns the exit code.
    /// The log stays readable until the `Node` is dropped.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("node ignored SIGTERM for 60 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the process dies at once, with whatever it had in flight
    /// (nothing flushed, committed or left). Returns once it is reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // std's `Child::kill` sends SIGKILL.
            child.kill().expect("SIGKILL the node");
            child.wait().expect("reap the killed node");
        }
    }

    /// Sends SIGTERM without waiting for the exit (see [`Node::wait_exit`]).
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("the node is running");
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }

    /// Waits (at most `limit`) for the node to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let mut child = self.child.take()?;
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("node still running {limit:?} after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id while the node runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path` (`/ready`, `/health`, ...) of the node's HTTP endpoint:
    /// the status and the body as text; `None` when the node does not answer
    /// within 5 s.
    async fn http_text(&self, path: &str) -> Option<(u16, String)> {
        let client =
            reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().expect("http client");
        let response = client.get(format!("http://127.0.0.1:{}{path}", self.http_port)).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.unwrap_or_default()))
    }

    /// `GET path` of the node's HTTP endpoint: the status and the JSON body
    /// (null when there is none). Panics when the node does not answer.
    pub async fn http_get(&self, path: &str) -> (u16, Value) {
        let (status, body) = self.http_text(path).await.unwrap_or_else(|| panic!("the node's {path} does not answer"));
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Polls the node's log until `needle` (any case) appears `times` times,
    /// failing after `limit`.
    pub async fn wait_for_log(&self, needle: &str, times: usize, limit: Duration) {
        let needle = needle.to_lowercase();
        let deadline = tokio::time::Instant::now() + limit;
        while self.log().to_lowercase().matches(&needle).count() < times {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {times}× {needle:?} in the node log after {limit:?}:\n{}",
                self.log_tail(120)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `GET /metrics`, every sample summed per metric name over its labels
    /// (e.g. `onex_vault_adapter_in_flight`). Empty when the node does not answer.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let mut metrics = HashMap::new();
        for (series, value) in self.metric_series().await {
            let name = series.split('{').next().unwrap_or(&series);
            *metrics.entry(name.to_owned()).or_insert(0.0) += value;
        }
        metrics
    }

    /// `GET /metrics`, one entry per series with its labels as written
    /// (e.g. `onex_vault_adapter_request_stage_seconds_sum{stage="vault"}`).
    /// Empty when the node does not answer.
    pub async fn metric_series(&self) -> HashMap<String, f64> {
        let Some((_, text)) = self.http_text("/metrics").await else {
            return HashMap::new();
        };
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| line.rsplit_once(' '))
            .filter_map(|(series, value)| Some((series.to_owned(), value.parse::<f64>().ok()?)))
            .collect()
    }

    /// One metric from [`Node::metrics`] (0 when absent).
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics().await.get(name).copied().unwrap_or(0.0)
    }

    /// Polls `/metrics` until `metric` satisfies `want`, failing after `limit`.
    /// Returns the value seen.
    pub async fn wait_for_metric(&self, metric: &str, want: impl Fn(f64) -> bool, limit: Duration) -> f64 {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let value = self.metric(metric).await;
            if want(value) {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{metric} was {value} after {limit:?}; log tail:\n{}",
                self.log_tail(120)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Settings of the client library for this node's topics (30 s a call).
    #[allow(dead_code)]
    pub fn client_settings(&self) -> onex_vault_client::ClientSettings {
        let topics = &self.topics;
        onex_vault_client::ClientSettings::new(&servers().bootstrap_servers())
            .topics(onex_vault_client::Topics {
                requests: topics.requests.clone(),
                completed: topics.completed.clone(),
                failed: topics.failed.clone(),
            })
            .call_timeout(Duration::from_secs(30))
    }

    pub fn requester(&self) -> Requester {
        Requester::new(&self.topics)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The repository's `contract.yaml` as a YAML tree.
pub fn shipped_contract() -> serde_yaml::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contract.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).expect("read contract.yaml")).expect("contract.yaml parses")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// Another ONEX node's view of the adapter: send envelopes, await replies.
pub struct Requester {
    topics: Topics,
    client: BusClient,
    pub watcher: ReplyWatcher,
}

impl Requester {
    pub fn new(topics: &Topics) -> Requester {
        let bootstrap = servers().bootstrap_servers();
        let watch =
            vec![topics.completed.clone(), topics.failed.clone(), topics.dlq.clone(), topics.circuit_breaker.clone()];
        Requester {
            topics: topics.clone(),
            client: BusClient::new(&bootstrap),
            watcher: ReplyWatcher::start(&bootstrap, &watch),
        }
    }

    /// A request envelope around `payload`, with fresh ids.
    pub fn envelope(payload: Value) -> Value {
        json!({
            "envelope_id": Uuid::new_v4(),
            "envelope_timestamp": chrono::Utc::now().to_rfc3339(),
            "correlation_id": Uuid::new_v4(),
            "source_tool": "node_test_requester",
            "payload_type": "ModelVaultAdapterRequest",
            "metadata": { "trace_id": "trace-abc", "span_id": "span-1" },
            "payload": payload,
        })
    }

    /// Sends raw bytes to the request topic.
    pub async fn send_raw(&self, key: Option<&[u8]>, value: &[u8]) {
        self.client.produce(&self.topics.requests, key, value, &[]).await;
    }

    /// Sends raw bytes to one partition of the request topic.
    #[allow(dead_code)]
    pub async fn send_raw_to(&self, partition: i32, value: &[u8]) -> (i32, i64) {
        self.client.produce_to(&self.topics.requests, Some(partition), None, value, &[]).await
    }

    /// Sends raw bytes with record headers to the request topic.
    pub async fn send_raw_with_headers(&self, key: Option<&[u8]>, value: &[u8], headers: &[(&str, &str)]) {
        self.client.produce(&self.topics.requests, key, value, headers).await;
    }

    /// Sends `envelope` keyed by its payload path and waits for its reply.
    pub async fn send(&self, envelope: &Value) -> Record {
        let key = envelope.pointer("/payload/path").and_then(Value::as_str).unwrap_or("no-path");
        self.send_raw(Some(key.as_bytes()), envelope.to_string().as_bytes()).await;
        let correlation_id = envelope["correlation_id"].as_str().expect("correlation_id").to_owned();
        self.reply_to(&correlation_id).await
    }

    /// The reply (completed or failed topic) with `correlation_id`.
    pub async fn reply_to(&self, correlation_id: &str) -> Record {
        let (completed, failed) = (self.topics.completed.clone(), self.topics.failed.clone());
        let id = correlation_id.to_owned();
        self.watcher
            .wait_for(
                move |r| (r.topic == completed || r.topic == failed) && r.correlation_id() == Some(id.as_str()),
                REPLY_WAIT,
            )
            .await
            .unwrap_or_else(|e| panic!("no reply to {correlation_id}: {e}"))
    }

    /// Sends a request with `payload` and returns the reply's payload.
    pub async fn call(&self, payload: Value) -> Value {
        let reply = self.send(&Requester::envelope(payload)).await;
        reply.json.expect("reply is JSON")["payload"].clone()
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }
}

/// `identity`'s access-policy entry (as `keygen` prints it) with `grants`.
pub fn policy_entry(identity: &onex_vault_models::RuntimeIdentity, grants: Value) -> Value {
    let mut entries: Vec<Value> = serde_yaml::from_str(&identity.policy_entry()).expect("a YAML policy entry");
    let mut entry = entries.remove(0);
    entry["grants"] = grants;
    entry
}
