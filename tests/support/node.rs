//! The node under test: the real `onex-vault-adapter` binary, started as a
//! child process with its own copy of `contract.yaml` whose seven topics and
//! consumer group are unique to the test, so tests never see each other's
//! messages. Its log (JSON lines) is captured to a file the test can read.
//!
//! [`Requester`] talks to it exactly as another ONEX node would: it produces
//! request envelopes and waits for the reply with the same `correlation_id`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use super::bus::{self, BusClient, Record, ReplyWatcher};
use super::servers;

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
            dlq: name("dlq", "vault-request"),
        }
    }

    fn all(&self) -> [&str; 8] {
        [
            &self.requests,
            &self.completed,
            &self.failed,
            &self.health,
            &self.circuit_breaker,
            &self.audit,
            &self.lease_events,
            &self.dlq,
        ]
    }
}

/// A change to the test's copy of the contract (a YAML tree).
pub type ContractEdit = Box<dyn FnOnce(&mut serde_yaml::Value)>;

/// How to start the node; `NodeOptions::default()` uses the root token.
#[derive(Default)]
pub struct NodeOptions {
    /// Environment for the node on top of the stack's addresses.
    pub env: Vec<(String, String)>,
    /// Edits to the contract before it is written (a YAML tree).
    pub contract_edits: Vec<ContractEdit>,
}

impl NodeOptions {
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn edit(mut self, edit: impl FnOnce(&mut serde_yaml::Value) + 'static) -> Self {
        self.contract_edits.push(Box::new(edit));
        self
    }
}

pub struct Node {
    child: Option<Child>,
    pub topics: Topics,
    pub http_port: u16,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Node {
    /// Starts a node with the root token.
    pub async fn start() -> Node {
        Node::start_with(NodeOptions::default().env("VAULT_TOKEN", servers().root_token())).await
    }

    /// Starts a node with `options`, and waits until its HTTP endpoint answers.
    pub async fn start_with(options: NodeOptions) -> Node {
        let stack = servers();
        let topics = Topics::unique();
        bus::create_topics(&stack.bootstrap_servers(), &topics.all(), 3).await;

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
        bus_section["dlq_topics"]["requests"] = topics.dlq.clone().into();
        for edit in options.contract_edits {
            edit(&mut contract);
        }
        std::fs::write(&contract_path, serde_yaml::to_string(&contract).expect("contract YAML"))
            .expect("write the test contract");

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
            .env("ONEX_GROUP_ID", format!("group-{}", Uuid::new_v4().simple()))
            .env("KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("ONEX_HTTP_PORT", http_port.to_string())
            .env("ONEX_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log);
        for (key, value) in &options.env {
            command.env(key, value);
        }
        let child = command.spawn().expect("start onex-vault-adapter");
        let mut node = Node { child: Some(child), topics, http_port, log_path, _dir: dir };
        node.wait_until_alive().await;
        node
    }

    async fn wait_until_alive(&mut self) {
        let url = format!("http://127.0.0.1:{}/health", self.http_port);
        let client = reqwest::Client::builder().no_proxy().build().expect("http client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("the node exited ({status}) during start-up; log:\n{}", self.log());
            }
            if client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "node not alive after 30 s; log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
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
