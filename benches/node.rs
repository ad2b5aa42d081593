//! Benchmark of the node against the two limits it cannot beat (issue 6).
//!
//! Starts the real stack with the integration tests' harness (OpenBao, Tansu
//! and PostgreSQL as local processes, or containers), writes `--secrets` KV v2
//! secrets, starts the release node binary, and for each concurrency level runs
//! three closed-loop loads with the same request mix:
//!
//! - **node**: request envelopes through Kafka to the node, replies back;
//! - **direct Vault** (limit A): the same Vault operations over HTTP, root token;
//! - **Kafka echo** (limit B): the same request records through the same broker
//!   to an echo task, built with the node's own Kafka client settings, that
//!   produces each one back unchanged to a reply topic.
//!
//! Closed loop: N workers, each with one request outstanding. A Kafka load's
//! workers share one producer and one reply consumer (partitions assigned by
//! hand, no group) that hands every reply to the worker waiting for its
//! correlation id; both use the node's client settings too. The Kafka clients
//! of the loads not running are paused.
//!
//! Prints a table per level (with the CPU each process used), the node's ratios
//! to the limits and the targets (judged at 64 in flight) as MET or
//! MISSED, or INCONCLUSIVE when the Kafka hops turn out to be bound by the
//! consumers' fetch cadence (a note then says so); `--json PATH` writes every
//! figure with the machine and the date. Run it with `bash scripts/bench.sh
//! [ARGS]` (installs the servers, then `cargo bench --bench node -- ARGS`);
//! `--help` lists the arguments. To add a kind of request, see [`Kind`].
//!
//! The node runs with `RUST_LOG=warn` (logging every request would skew the
//! numbers), `max_in_flight` above the highest level, health events every 10 s,
//! the read cache off, and the root token (as the direct Vault load).

#[path = "../tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::{stream, StreamExt};
use onex_vault_adapter::{bus, contract::Contract};
use rand::{distr::Alphanumeric, rngs::StdRng, Rng, SeedableRng};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
    Message, Offset, TopicPartitionList,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use support::node::{Node, NodeOptions};

/// KV v2 mount of every request (the dev server's, and the node's default).
const MOUNT: &str = "secret";
/// Secrets per folder; a `list` request lists one folder.
const FOLDER_SIZE: usize = 50;
/// Partitions of the echo topics, as the harness gives the node's topics.
const PARTITIONS: i32 = 3;
/// A request without an answer after this long counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The targets, judged at this many requests in flight.
const TARGET_LEVEL: usize = 64;
const TARGET_THROUGHPUT_PCT: f64 = 90.0;
const TARGET_ADDED_P50_MS: f64 = 1.0;
const TARGET_RSS_MB: f64 = 50.0;
/// A lone Kafka echo round trip slower than this is set by the consumers'
/// fetch cadence, not by the broker's speed (see [`fetch_wait_note`]).
const FETCH_BOUND_ECHO_MS: f64 = 50.0;

// ---------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------

#[derive(Parser, Debug)]
#[command(about = "The node against direct Vault and a Kafka echo, closed loop, at several concurrency levels")]
struct Args {
    /// Requests in flight, one run per level [default: 1,16,64,256; 1,8 with --smoke]
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<usize>>,
    /// Measured seconds per level and load, after a warm-up of a fifth of it
    /// (0.5 to 2 s) [default: 10; 2 with --smoke]
    #[arg(long)]
    duration_seconds: Option<f64>,
    /// Request mix, kind=weight; kinds: get, set, list, batch (a
    /// get_secrets_batch of 8 paths; direct Vault: 8 concurrent reads)
    #[arg(long, default_value = "get=90,set=5,list=5")]
    mix: String,
    /// Run the node with its read cache on (judged against the Kafka echo
    /// alone: cached reads do not touch Vault); use with --mix get=100
    #[arg(long)]
    read_cache: bool,
    /// fetch.wait.max.ms of every consumer (the node's and the bench's), via
    /// KAFKA_FETCH_WAIT_MAX_MS [default: the contract's, 100]
    #[arg(long)]
    fetch_wait_ms: Option<u32>,
    /// Secrets written before the runs [default: 1000; 100 with --smoke]
    #[arg(long)]
    secrets: Option<usize>,
    /// Also write the report as JSON to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// A tiny run for CI: levels 1,8 and 2 s each unless given
    #[arg(long)]
    smoke: bool,
    /// Added by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The arguments with their defaults applied.
struct Settings {
    levels: Vec<usize>,
    duration: Duration,
    warmup: Duration,
    mix: Mix,
    secrets: usize,
    json: Option<PathBuf>,
    read_cache: bool,
    fetch_wait_ms: Option<u32>,
}

impl Settings {
    fn from_args(args: Args) -> Result<Settings, String> {
        let levels = args.concurrency.unwrap_or_else(|| if args.smoke { vec![1, 8] } else { vec![1, 16, 64, 256] });
        if levels.is_empty() || levels.contains(&0) {
            return Err("--concurrency: give levels of at least 1, e.g. 1,16,64".into());
        }
        let seconds = args.duration_seconds.unwrap_or(if args.smoke { 2.0 } else { 10.0 });
        if !(seconds.is_finite() && seconds > 0.0) {
            return Err("--duration-seconds: must be above 0".into());
        }
        let duration = Duration::from_secs_f64(seconds);
        let warmup = (duration / 5).clamp(Duration::from_millis(500), Duration::from_secs(2));
        let secrets = args.secrets.unwrap_or(if args.smoke { 100 } else { 1000 });
        if secrets == 0 {
            return Err("--secrets: must be at least 1".into());
        }
        let mix = Mix::parse(&args.mix)?;
        Ok(Settings {
            levels,
            duration,
            warmup,
            mix,
            secrets,
            json: args.json,
            read_cache: args.read_cache,
            fetch_wait_ms: args.fetch_wait_ms,
        })
    }
}

// ---------------------------------------------------------------------------
// The workload: kinds of request, and the concrete requests they make
// ---------------------------------------------------------------------------

/// A kind of request in the mix. To add one: a variant (and its place in
/// `ALL` and `name`), the [`Op`] it makes in `op`, how the node is asked for it
/// ([`Op::node_payload`]) and how Vault is asked directly ([`DirectVault::perform`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Get,
    Set,
    List,
    Batch,
}

/// Paths of one `batch` request.
const BATCH_PATHS: usize = 8;

impl Kind {
    const ALL: [Kind; 4] = [Kind::Get, Kind::Set, Kind::List, Kind::Batch];

    fn name(self) -> &'static str {
        match self {
            Kind::Get => "get",
            Kind::Set => "set",
            Kind::List => "list",
            Kind::Batch => "batch",
        }
    }

    /// One request of this kind on the preloaded secrets, chosen at random.
    fn op(self, secrets: usize, rng: &mut StdRng) -> Op {
        match self {
            Kind::Get => Op::Get { path: secret_path(rng.random_range(0..secrets)) },
            Kind::Set => {
                let n = rng.random_range(0..secrets);
                Op::Set { path: secret_path(n), data: secret_data(n, rng) }
            }
            Kind::List => Op::List { folder: folder_path(rng.random_range(0..secrets.div_ceil(FOLDER_SIZE))) },
            Kind::Batch => {
                Op::Batch { paths: (0..BATCH_PATHS).map(|_| secret_path(rng.random_range(0..secrets))).collect() }
            }
        }
    }
}

/// One concrete request, asked of the node or of Vault.
enum Op {
    Get { path: String },
    Set { path: String, data: Value },
    List { folder: String },
    Batch { paths: Vec<String> },
}

impl Op {
    /// The Kafka record key: the secret path, as requesters key them (so the
    /// node keeps requests on one path in order).
    fn key(&self) -> &str {
        match self {
            Op::Get { path } | Op::Set { path, .. } => path,
            Op::List { folder } => folder,
            Op::Batch { paths } => paths.first().map_or("batch", String::as_str),
        }
    }

    /// The request envelope's `payload`.
    fn node_payload(&self) -> Value {
        match self {
            Op::Get { path } => json!({ "operation": "get_secret", "path": path }),
            Op::Set { path, data } => json!({ "operation": "set_secret", "path": path, "data": data }),
            Op::List { folder } => json!({ "operation": "list_secrets", "path": folder }),
            Op::Batch { paths } => json!({ "operation": "get_secrets_batch", "paths": paths }),
        }
    }
}

fn secret_path(n: usize) -> String {
    format!("{}/s{n:05}", folder_path(n / FOLDER_SIZE))
}

fn folder_path(folder: usize) -> String {
    format!("bench/f{folder:03}")
}

/// A secret's value: a user name and a fresh 24-character password.
fn secret_data(n: usize, rng: &mut StdRng) -> Value {
    let password: String = (0..24).map(|_| char::from(rng.sample(Alphanumeric))).collect();
    json!({ "username": format!("svc-{n}"), "password": password })
}

/// Weights of the kinds in the mix, e.g. `get=90,set=5,list=5`.
#[derive(Clone, Debug)]
struct Mix {
    weights: Vec<(Kind, u32)>,
}

impl Mix {
    fn parse(text: &str) -> Result<Mix, String> {
        let mut weights = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part.split_once('=').ok_or(format!("--mix: {part:?} is not kind=weight"))?;
            let kind = Kind::ALL.into_iter().find(|k| k.name() == name.trim()).ok_or_else(|| {
                let known: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
                format!("--mix: unknown kind {name:?} (known: {})", known.join(", "))
            })?;
            let weight: u32 = weight.trim().parse().map_err(|_| format!("--mix: weight of {name} is not a number"))?;
            if weights.iter().any(|(k, _)| *k == kind) {
                return Err(format!("--mix: {name} given twice"));
            }
            weights.push((kind, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err("--mix: no kind has a weight above 0".into());
        }
        Ok(Mix { weights })
    }

    fn pick(&self, rng: &mut StdRng) -> Kind {
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let mut ticket = rng.random_range(0..total);
        for (kind, weight) in &self.weights {
            if ticket < *weight {
                return *kind;
            }
            ticket -= weight;
        }
        unreachable!("the ticket is below the total weight")
    }

    fn describe(&self) -> String {
        self.weights.iter().map(|(k, w)| format!("{}={w}", k.name())).collect::<Vec<_>>().join(",")
    }
}

// ---------------------------------------------------------------------------
// The three targets of a load
// ---------------------------------------------------------------------------

/// Why a request did not succeed.
enum Failure {
    /// A typed error reply (its code), or a Vault error status.
    Error(String),
    /// No answer within [`REPLY_TIMEOUT`].
    Lost,
    /// The request could not be sent, or the answer not read.
    Transport(String),
}

/// A successful answer.
struct Done {
    at: Instant,
    /// The node's own `duration_ms` in its reply (decode → Vault → reply built).
    node_ms: Option<f64>,
}

/// Where a load's requests go.
#[derive(Clone)]
enum Target {
    Kafka(Arc<BusLoop>),
    Vault(Arc<DirectVault>),
}

impl Target {
    async fn perform(&self, op: &Op) -> Result<Done, Failure> {
        match self {
            Target::Kafka(bus) => bus.call(op, REPLY_TIMEOUT).await,
            Target::Vault(vault) => vault.perform(op).await.map(|()| Done { at: Instant::now(), node_ms: None }),
        }
    }
}

/// Limit A: Vault's HTTP API called directly, with one pooled HTTP client
/// and the root token, as the node calls it.
struct DirectVault {
    http: reqwest::Client,
    addr: String,
    token: String,
}

impl DirectVault {
    fn new(addr: &str, token: &str) -> DirectVault {
        let http =
            reqwest::Client::builder().timeout(REPLY_TIMEOUT).no_proxy().build().expect("building the HTTP client");
        DirectVault { http, addr: addr.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    async fn perform(&self, op: &Op) -> Result<(), Failure> {
        if let Op::Batch { paths } = op {
            // What the node does for a batch: the reads, concurrently.
            let gets: Vec<Op> = paths.iter().map(|path| Op::Get { path: path.clone() }).collect();
            let reads = gets.iter().map(|get| self.perform_one(get));
            return futures_util::future::join_all(reads).await.into_iter().collect();
        }
        self.perform_one(op).await
    }

    async fn perform_one(&self, op: &Op) -> Result<(), Failure> {
        let base = &self.addr;
        let list = reqwest::Method::from_bytes(b"LIST").expect("LIST is a valid method");
        let request = match op {
            Op::Get { path } => self.http.get(format!("{base}/v1/{MOUNT}/data/{path}")),
            Op::Set { path, data } => {
                self.http.post(format!("{base}/v1/{MOUNT}/data/{path}")).json(&json!({ "data": data }))
            }
            Op::List { folder } => self.http.request(list, format!("{base}/v1/{MOUNT}/metadata/{folder}")),
            Op::Batch { .. } => return Err(Failure::Transport("a batch is performed as its reads".into())),
        };
        let response = request.header("X-Vault-Token", &self.token).send().await.map_err(transport)?;
        let status = response.status();
        // Read the whole answer, as any client would.
        response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure::Error(format!("HTTP {}", status.as_u16())))
        }
    }
}

fn transport(error: reqwest::Error) -> Failure {
    Failure::Transport(if error.is_timeout() { "HTTP timeout".into() } else { format!("HTTP: {error}") })
}

/// The requester side of a Kafka round trip, shared by all workers of a load:
/// one producer, and one consumer thread (partitions assigned by hand, no
/// group) that hands each reply to the worker waiting for its correlation id.
struct BusLoop {
    producer: FutureProducer,
    consumer: Arc<BaseConsumer>,
    request_topic: String,
    waiting: Arc<Mutex<HashMap<u128, oneshot::Sender<Reply>>>>,
    stop: Arc<AtomicBool>,
    consumer_thread: Option<thread::JoinHandle<()>>,
}

/// A reply as the consumer thread saw it.
struct Reply {
    received: Instant,
    /// The error code of a reply on the failed topic.
    failed: Option<String>,
    node_ms: Option<f64>,
}

impl BusLoop {
    /// Requests go to `request_topic`; replies come on `reply_topics`, and
    /// those on `failed_topic` are failures. The reply consumer starts at the
    /// topics' current ends.
    fn start(contract: &Contract, request_topic: &str, reply_topics: &[&str], failed_topic: Option<&str>) -> BusLoop {
        let producer: FutureProducer = bus::producer_config(contract).create().expect("creating the bench producer");
        let consumer: Arc<BaseConsumer> = bus::consumer_config(contract)
            // Never joins the group (assign, not subscribe); librdkafka wants an id.
            .set("group.id", format!("onex-bench-replies-{}", Uuid::new_v4().simple()))
            .set("enable.auto.commit", "false")
            .create()
            .map(Arc::new)
            .expect("creating the bench reply consumer");
        let mut assignment = TopicPartitionList::new();
        for topic in reply_topics {
            let metadata =
                consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata of a reply topic");
            for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
                let (_, high) = consumer
                    .fetch_watermarks(topic, partition.id(), Duration::from_secs(10))
                    .expect("watermarks of a reply partition");
                assignment.add_partition_offset(topic, partition.id(), Offset::Offset(high)).expect("assignment");
            }
        }
        consumer.assign(&assignment).expect("assigning the reply partitions");

        let waiting = Arc::new(Mutex::new(HashMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let consumer_thread = {
            let (consumer, waiting, stop) = (consumer.clone(), waiting.clone(), stop.clone());
            let failed_topic = failed_topic.map(str::to_owned);
            thread::Builder::new()
                .name("bench-replies".into())
                .spawn(move || receive_replies(&consumer, &waiting, &stop, failed_topic.as_deref()))
                .expect("starting the reply thread")
        };
        let request_topic = request_topic.to_owned();
        BusLoop { producer, consumer, request_topic, waiting, stop, consumer_thread: Some(consumer_thread) }
    }

    /// Pauses or resumes fetching replies (a load that is not running leaves
    /// the broker alone).
    fn set_fetching(&self, on: bool) {
        set_fetching(self.consumer.as_ref(), on);
    }

    /// Sends `op` in a request envelope and waits up to `wait` for its reply.
    async fn call(&self, op: &Op, wait: Duration) -> Result<Done, Failure> {
        let id = Uuid::new_v4();
        let body = envelope(id, op.node_payload());
        let (answer, answered) = oneshot::channel();
        self.waiting.lock().expect("waiting map").insert(id.as_u128(), answer);
        let id_text = id.to_string();
        let headers = OwnedHeaders::new().insert(Header { key: "correlation_id", value: Some(id_text.as_str()) });
        let record = FutureRecord::to(&self.request_topic).key(op.key()).payload(&body).headers(headers);
        if let Err((error, _)) = self.producer.send(record, Timeout::After(Duration::from_secs(10))).await {
            self.waiting.lock().expect("waiting map").remove(&id.as_u128());
            return Err(Failure::Transport(format!("produce: {error}")));
        }
        match tokio::time::timeout(wait, answered).await {
            Ok(Ok(Reply { failed: Some(code), .. })) => Err(Failure::Error(code)),
            Ok(Ok(Reply { received, node_ms, .. })) => Ok(Done { at: received, node_ms }),
            Ok(Err(_)) | Err(_) => {
                self.waiting.lock().expect("waiting map").remove(&id.as_u128());
                Err(Failure::Lost)
            }
        }
    }

    /// The median of `count` round trips of `op`, one at a time (NaN if any fails).
    async fn median_round_trip_ms(&self, op: &Op, count: usize) -> f64 {
        let mut times = Vec::new();
        for _ in 0..count {
            let sent = Instant::now();
            match self.call(op, REPLY_TIMEOUT).await {
                Ok(done) => times.push(ms(done.at - sent)),
                Err(_) => return f64::NAN,
            }
        }
        times.sort_by(f64::total_cmp);
        percentile(&times, 50.0)
    }

    /// Sends `op` until a reply comes (the node or echo has joined its group and
    /// the reply consumer is positioned); panics after `limit`.
    async fn wait_until_answering(&self, op: &Op, what: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.call(op, Duration::from_secs(3)).await {
                Ok(_) => return,
                Err(Failure::Error(code)) => panic!("{what} answered the probe with {code}"),
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => panic!("{what} did not answer within {limit:?}"),
            }
        }
    }
}

impl Drop for BusLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.consumer_thread.take() {
            let _ = thread.join();
        }
    }
}

fn receive_replies(
    consumer: &BaseConsumer,
    waiting: &Mutex<HashMap<u128, oneshot::Sender<Reply>>>,
    stop: &AtomicBool,
    failed_topic: Option<&str>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let received = Instant::now();
        let id = message
            .headers()
            .and_then(|headers| headers.iter().find(|h| h.key == "correlation_id"))
            .and_then(|h| h.value)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| Uuid::parse_str(v).ok());
        // Replies to a probe or to a request given up on find nobody waiting.
        let Some(answer) = id.and_then(|id| waiting.lock().expect("waiting map").remove(&id.as_u128())) else {
            continue;
        };
        let payload = message.payload().unwrap_or_default();
        let failed = (Some(message.topic()) == failed_topic).then(|| error_code(payload));
        let _ = answer.send(Reply { received, failed, node_ms: duration_ms(payload) });
    }
}

/// `payload.error.code` of a failed reply.
fn error_code(reply: &[u8]) -> String {
    let reply: Value = serde_json::from_slice(reply).unwrap_or_default();
    reply.pointer("/payload/error/code").and_then(Value::as_str).unwrap_or("failed reply").to_owned()
}

/// The reply's `"duration_ms":` number, found without parsing the whole reply
/// (the bench shares the machine's cores with the node).
fn duration_ms(reply: &[u8]) -> Option<f64> {
    const FIELD: &[u8] = b"\"duration_ms\":";
    let at = reply.windows(FIELD.len()).rposition(|w| w == FIELD)? + FIELD.len();
    let number: String = reply[at..]
        .iter()
        .map(|&b| b as char)
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    number.parse().ok()
}

fn envelope(correlation_id: Uuid, payload: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "envelope_id": Uuid::new_v4(),
        "envelope_timestamp": chrono::Utc::now().to_rfc3339(),
        "correlation_id": correlation_id,
        "source_tool": "node_vault_adapter_bench",
        "payload_type": "ModelVaultAdapterRequest",
        "payload": payload,
    }))
    .expect("an envelope serializes")
}

/// Pauses or resumes fetching every partition `consumer` is assigned.
fn set_fetching(consumer: &impl Consumer, on: bool) {
    let assignment = consumer.assignment().expect("a consumer's assignment");
    let done = if on { consumer.resume(&assignment) } else { consumer.pause(&assignment) };
    done.expect("pausing or resuming a consumer");
}

/// Limit B's far end: consumes the echo request topic with the node's
/// consumer settings (as a member of a group) and produces every record,
/// unchanged (key, headers, value), to the echo reply topic with the node's
/// producer settings.
struct Echo {
    consumer: Arc<StreamConsumer>,
}

impl Echo {
    /// Starts echoing in the background until `stop` fires.
    fn start(contract: &Contract, request_topic: &str, reply_topic: &str, stop: CancellationToken) -> Echo {
        let consumer: Arc<StreamConsumer> =
            bus::consumer_config(contract).create().map(Arc::new).expect("creating the echo consumer");
        consumer.subscribe(&[request_topic]).expect("subscribing the echo");
        let producer: FutureProducer = bus::producer_config(contract).create().expect("creating the echo producer");
        tokio::spawn(echo(consumer.clone(), producer, reply_topic.to_owned(), stop));
        Echo { consumer }
    }

    /// Pauses or resumes fetching requests (see [`BusLoop::set_fetching`]).
    fn set_fetching(&self, on: bool) {
        set_fetching(self.consumer.as_ref(), on);
    }
}

async fn echo(consumer: Arc<StreamConsumer>, producer: FutureProducer, reply_topic: String, stop: CancellationToken) {
    loop {
        let received = tokio::select! {
            _ = stop.cancelled() => break,
            received = consumer.recv() => received,
        };
        let Ok(message) = received.map(|m| m.detach()) else { continue };
        let (producer, reply_topic) = (producer.clone(), reply_topic.clone());
        tokio::spawn(async move {
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&reply_topic).payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(headers) = message.headers() {
                record = record.headers(headers.clone());
            }
            let _ = producer.send(record, Timeout::After(REPLY_TIMEOUT)).await;
        });
    }
}

/// The shipped contract with the stack's addresses and a consumer group of
/// its own: the source of the node's Kafka client settings for the bench's
/// clients.
fn bench_contract(group: &str, fetch_wait_ms: Option<u32>) -> Contract {
    let stack = support::servers();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contract.yaml");
    let text = std::fs::read_to_string(path).expect("reading contract.yaml");
    let mut values: HashMap<&str, String> = HashMap::from([
        ("KAFKA_BOOTSTRAP_SERVERS", stack.bootstrap_servers()),
        ("VAULT_ADDR", stack.vault_addr()),
        ("VAULT_TOKEN", stack.root_token().to_owned()),
        ("ONEX_GROUP_ID", group.to_owned()),
        // As the harness starts the node (joins a group on Tansu in seconds).
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        // As the harness starts the node: the bench measures the data path.
        ("ONEX_SECURITY_PROFILE", "dev".to_owned()),
    ]);
    if let Some(ms) = fetch_wait_ms {
        values.insert("KAFKA_FETCH_WAIT_MAX_MS", ms.to_string());
    }
    Contract::from_yaml(&text, path, &|name| values.get(name).cloned()).expect("the bench contract is valid")
}

// ---------------------------------------------------------------------------
// Closed-loop load and its figures
// ---------------------------------------------------------------------------

/// What one load's workers saw inside the measured window.
#[derive(Default)]
struct Tally {
    latencies: Vec<(Kind, Duration)>,
    node_ms: Vec<f64>,
    errors: BTreeMap<String, u64>,
    /// Requests given up on (anywhere in the run, not only the window).
    lost: u64,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.node_ms.extend(other.node_ms);
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        self.lost += other.lost;
    }
}

/// Runs `concurrency` workers against `target` for the warm-up and the
/// measured window; returns the window's tally and the CPU each process
/// (`node_pid` is the node) used during the window.
async fn closed_loop(
    target: &Target,
    settings: &Settings,
    concurrency: usize,
    node_pid: Option<u32>,
) -> (Tally, BTreeMap<String, f64>) {
    let start = Instant::now() + settings.warmup;
    let end = start + settings.duration;
    let mix = Arc::new(settings.mix.clone());
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (target, mix, secrets) = (target.clone(), mix.clone(), settings.secrets);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(worker as u64);
                let mut tally = Tally::default();
                while Instant::now() < end {
                    let kind = mix.pick(&mut rng);
                    let op = kind.op(secrets, &mut rng);
                    let sent = Instant::now();
                    let outcome = target.perform(&op).await;
                    let done = outcome.as_ref().map_or_else(|_| Instant::now(), |d| d.at);
                    let in_window = (start..=end).contains(&done);
                    match outcome {
                        Ok(answer) if in_window => {
                            tally.latencies.push((kind, done - sent));
                            tally.node_ms.extend(answer.node_ms);
                        }
                        Ok(_) => {}
                        Err(Failure::Lost) => tally.lost += 1,
                        Err(Failure::Error(e) | Failure::Transport(e)) if in_window => {
                            *tally.errors.entry(format!("{} {e}", kind.name())).or_default() += 1;
                        }
                        Err(_) => {}
                    }
                }
                tally
            })
        })
        .collect();

    tokio::time::sleep_until(start.into()).await;
    let before = CpuSnapshot::take(node_pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSnapshot::take(node_pid).percent_since(&before);
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a load worker panicked"));
    }
    (tally, cpu)
}

/// One load's figures (latencies in milliseconds).
#[derive(Serialize)]
struct Figures {
    requests: usize,
    throughput_rps: f64,
    p50_ms: f64,
    p95_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    mean_ms: f64,
    /// Failed requests inside the window, by kind and error.
    errors: BTreeMap<String, u64>,
    lost: u64,
    by_kind: BTreeMap<&'static str, KindFigures>,
    /// CPU per process during the window, % of one core.
    cpu_percent: BTreeMap<String, f64>,
    /// Node runs only: the node's own `duration_ms` in its replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_internal_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_peak_rss_mb: Option<f64>,
}

#[derive(Serialize)]
struct KindFigures {
    requests: usize,
    p50_ms: f64,
    p99_ms: f64,
}

impl Figures {
    fn new(tally: Tally, window: Duration, cpu_percent: BTreeMap<String, f64>) -> Figures {
        let mut all: Vec<f64> = tally.latencies.iter().map(|(_, d)| ms(*d)).collect();
        all.sort_by(f64::total_cmp);
        let by_kind = Kind::ALL
            .into_iter()
            .filter_map(|kind| {
                let mut mine: Vec<f64> =
                    tally.latencies.iter().filter(|(k, _)| *k == kind).map(|(_, d)| ms(*d)).collect();
                mine.sort_by(f64::total_cmp);
                let figures = KindFigures {
                    requests: mine.len(),
                    p50_ms: percentile(&mine, 50.0),
                    p99_ms: percentile(&mine, 99.0),
                };
                (!mine.is_empty()).then_some((kind.name(), figures))
            })
            .collect();
        let mut node_ms = tally.node_ms;
        node_ms.sort_by(f64::total_cmp);
        Figures {
            requests: all.len(),
            throughput_rps: all.len() as f64 / window.as_secs_f64(),
            p50_ms: percentile(&all, 50.0),
            p95_ms: percentile(&all, 95.0),
            p99_ms: percentile(&all, 99.0),
            max_ms: all.last().copied().unwrap_or(f64::NAN),
            mean_ms: all.iter().sum::<f64>() / all.len() as f64,
            errors: tally.errors,
            lost: tally.lost,
            by_kind,
            cpu_percent,
            node_internal_p50_ms: (!node_ms.is_empty()).then(|| percentile(&node_ms, 50.0)),
            node_peak_rss_mb: None,
        }
    }

    fn failures(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.lost
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values (NaN when empty).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

// ---------------------------------------------------------------------------
// Processes: CPU time and peak RSS from /proc
// ---------------------------------------------------------------------------

/// CPU time (utime + stime, in clock ticks) of the bench, the node and the
/// servers the harness started (children of this process), at one instant.
struct CpuSnapshot {
    at: Instant,
    ticks: BTreeMap<String, u64>,
}

impl CpuSnapshot {
    fn take(node_pid: Option<u32>) -> CpuSnapshot {
        let me = std::process::id();
        let mut ticks = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some(stat) = ProcStat::read(pid) else { continue };
            let label = if pid == me {
                "bench".to_owned()
            } else if Some(pid) == node_pid {
                "node".to_owned()
            } else if stat.ppid == me {
                server_label(&stat.comm)
            } else {
                continue;
            };
            *ticks.entry(label).or_default() += stat.cpu_ticks;
        }
        CpuSnapshot { at: Instant::now(), ticks }
    }

    /// CPU used by each process since `before`, as % of one core.
    fn percent_since(&self, before: &CpuSnapshot) -> BTreeMap<String, f64> {
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let seconds = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        self.ticks
            .iter()
            .map(|(label, ticks)| {
                let used = ticks.saturating_sub(before.ticks.get(label).copied().unwrap_or(0));
                (label.clone(), used as f64 / per_second / seconds * 100.0)
            })
            .collect()
    }
}

fn server_label(comm: &str) -> String {
    match comm {
        c if c.starts_with("tansu") => "tansu".into(),
        c if c.starts_with("bao") => "bao".into(),
        other => other.into(),
    }
}

struct ProcStat {
    comm: String,
    ppid: u32,
    cpu_ticks: u64,
}

impl ProcStat {
    /// Fields of `/proc/<pid>/stat` (the name may hold spaces; it ends at the last `)`).
    fn read(pid: u32) -> Option<ProcStat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state(3) ppid(4) … utime(14) stime(15), 1-based in proc(5).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        Some(ProcStat { comm, ppid: field(4)? as u32, cpu_ticks: field(14)? + field(15)? })
    }
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM` (peak RSS), in MB.
fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: f64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (`clear_refs` 5).
fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// ---------------------------------------------------------------------------
// The report
// ---------------------------------------------------------------------------

#[derive(Serialize)]
struct Report {
    benchmark: &'static str,
    date: String,
    git_commit: Option<String>,
    /// Median of a few Kafka echo round trips, one at a time, before the levels.
    kafka_echo_alone_ms: f64,
    machine: Machine,
    stack: &'static str,
    node_binary: &'static str,
    settings: ReportSettings,
    levels: Vec<Level>,
    targets: Vec<TargetVerdict>,
    /// What to keep in mind when reading the figures.
    notes: Vec<String>,
}

#[derive(Serialize)]
struct Machine {
    nproc: usize,
    model_name: String,
    kernel: String,
    memory_total_mb: Option<f64>,
    load_average_at_start: String,
}

#[derive(Serialize)]
struct ReportSettings {
    concurrency: Vec<usize>,
    duration_seconds: f64,
    warmup_seconds: f64,
    mix: String,
    secrets: usize,
    folder_size: usize,
    record_key: &'static str,
    node_rust_log: &'static str,
    node_max_in_flight: usize,
    node_health_interval_seconds: u32,
    node_read_cache: bool,
    node_auth: &'static str,
    /// fetch.wait.max.ms of the node's and the bench's consumers.
    fetch_wait_max_ms: Option<String>,
    /// Whether the node's peak RSS is per level (reset through clear_refs) or since its start.
    node_peak_rss_per_level: bool,
}

#[derive(Serialize)]
struct Level {
    concurrency: usize,
    node: Figures,
    direct_vault: Figures,
    kafka_echo: Figures,
    /// Node throughput as % of the lower limit.
    throughput_pct_of_limit: f64,
    /// Node throughput as % of the Kafka echo alone (the limit of cached reads).
    throughput_pct_of_echo: f64,
    limiting: &'static str,
    /// node p50 − (echo p50 + direct Vault p50).
    added_p50_ms: f64,
    added_p99_ms: f64,
}

impl Level {
    fn new(concurrency: usize, node: Figures, direct_vault: Figures, kafka_echo: Figures) -> Level {
        let (limit, limiting) = if direct_vault.throughput_rps <= kafka_echo.throughput_rps {
            (direct_vault.throughput_rps, "direct Vault")
        } else {
            (kafka_echo.throughput_rps, "Kafka echo")
        };
        Level {
            concurrency,
            throughput_pct_of_limit: node.throughput_rps / limit * 100.0,
            throughput_pct_of_echo: node.throughput_rps / kafka_echo.throughput_rps * 100.0,
            limiting,
            added_p50_ms: node.p50_ms - (kafka_echo.p50_ms + direct_vault.p50_ms),
            added_p99_ms: node.p99_ms - (kafka_echo.p99_ms + direct_vault.p99_ms),
            node,
            direct_vault,
            kafka_echo,
        }
    }
}

#[derive(Serialize)]
struct TargetVerdict {
    target: String,
    concurrency: usize,
    measured: Option<f64>,
    unit: &'static str,
    /// `MET`, `MISSED`, `NOT RUN` (no run at that level), or `INCONCLUSIVE`
    /// (the limits were bound by the Kafka fetch cadence; see the notes).
    verdict: &'static str,
}

/// The targets at [`TARGET_LEVEL`]. When the Kafka hops are bound by
/// the fetch cadence (`fetch_bound`, see [`fetch_wait_note`]) the throughput
/// and latency ratios say nothing of the node: they are judged INCONCLUSIVE.
fn judge(levels: &[Level], fetch_bound: bool, read_cache: bool) -> Vec<TargetVerdict> {
    let at = levels.iter().find(|l| l.concurrency == TARGET_LEVEL);
    let judged = |measured: Option<f64>, met: bool| match measured {
        None => "NOT RUN",
        Some(_) if met => "MET",
        Some(_) => "MISSED",
    };
    let ratio = |measured: Option<f64>, met: bool| {
        if fetch_bound && measured.is_some() {
            "INCONCLUSIVE"
        } else {
            judged(measured, met)
        }
    };
    let throughput = at.map(|l| l.throughput_pct_of_limit);
    let added = at.map(|l| l.added_p50_ms);
    let rss = at.and_then(|l| l.node.node_peak_rss_mb);
    let rss_target = TargetVerdict {
        target: format!("node peak RSS <= {TARGET_RSS_MB} MB"),
        concurrency: TARGET_LEVEL,
        measured: rss,
        unit: "MB",
        verdict: judged(rss, rss.is_some_and(|v| v <= TARGET_RSS_MB)),
    };
    if read_cache {
        let of_echo = at.map(|l| l.throughput_pct_of_echo);
        return vec![
            TargetVerdict {
                target: format!("cached-read throughput >= {TARGET_THROUGHPUT_PCT}% of Kafka echo"),
                concurrency: TARGET_LEVEL,
                measured: of_echo,
                unit: "%",
                verdict: ratio(of_echo, of_echo.is_some_and(|v| v >= TARGET_THROUGHPUT_PCT)),
            },
            rss_target,
        ];
    }
    vec![
        TargetVerdict {
            target: format!("node throughput >= {TARGET_THROUGHPUT_PCT}% of min(direct Vault, Kafka echo)"),
            concurrency: TARGET_LEVEL,
            measured: throughput,
            unit: "%",
            verdict: ratio(throughput, throughput.is_some_and(|v| v >= TARGET_THROUGHPUT_PCT)),
        },
        TargetVerdict {
            target: format!("added p50 <= {TARGET_ADDED_P50_MS} ms over (Kafka echo p50 + direct Vault p50)"),
            concurrency: TARGET_LEVEL,
            measured: added,
            unit: "ms",
            verdict: ratio(added, added.is_some_and(|v| v <= TARGET_ADDED_P50_MS)),
        },
        rss_target,
    ]
}

fn level_table(level: &Level, settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} in flight: {:.1} s measured after {:.1} s warm-up, mix {} ==",
        level.concurrency,
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.mix.describe()
    );
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>5}",
        "load", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "lost"
    );
    let rows =
        [("node", &level.node), ("direct Vault (A)", &level.direct_vault), ("Kafka echo (B)", &level.kafka_echo)];
    for (name, f) in rows {
        let _ = writeln!(
            out,
            "{name:<18} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>5}",
            f.throughput_rps,
            f.p50_ms,
            f.p95_ms,
            f.p99_ms,
            f.max_ms,
            f.errors.values().sum::<u64>(),
            f.lost
        );
    }
    let (node, vault, echo) = (&level.node, &level.direct_vault, &level.kafka_echo);
    let _ = writeln!(
        out,
        "node throughput {:.1}% of min(A, B) = {:.1} req/s ({}); added p50 = {:.2} − ({:.2} + {:.2}) = {:+.2} ms; \
         added p99 {:+.2} ms",
        level.throughput_pct_of_limit,
        vault.throughput_rps.min(echo.throughput_rps),
        level.limiting,
        node.p50_ms,
        echo.p50_ms,
        vault.p50_ms,
        level.added_p50_ms,
        level.added_p99_ms,
    );
    let _ = writeln!(
        out,
        "node peak RSS {} MB, CPU {:.0}% of a core; inside the node (reply duration_ms) p50 {:.2} ms",
        node.node_peak_rss_mb.map_or("?".into(), |mb| format!("{mb:.1}")),
        node.cpu_percent.get("node").copied().unwrap_or(f64::NAN),
        node.node_internal_p50_ms.unwrap_or(f64::NAN),
    );
    let by_kind: Vec<String> = Kind::ALL
        .iter()
        .filter_map(|kind| {
            let (n, v) = (node.by_kind.get(kind.name())?, vault.by_kind.get(kind.name())?);
            Some(format!("{} {:.2} / {:.2}", kind.name(), n.p50_ms, v.p50_ms))
        })
        .collect();
    let _ = writeln!(out, "p50 ms by kind, node / direct Vault: {}", by_kind.join(", "));
    let columns = ["node", "tansu", "bao", "bench"];
    let _ = writeln!(
        out,
        "CPU, % of one core   {}   other  total (of {}; bench = load generator, + the echo in its run)",
        columns.map(|c| format!("{c:>6}")).join(""),
        nproc() * 100
    );
    for (name, f) in [("  node run", node), ("  direct Vault run", vault), ("  Kafka echo run", echo)] {
        let cell = |c: &str| f.cpu_percent.get(c).map_or("     -".into(), |p| format!("{p:>6.0}"));
        let other: f64 = f.cpu_percent.iter().filter(|(k, _)| !columns.contains(&k.as_str())).map(|(_, v)| v).sum();
        let total: f64 = f.cpu_percent.values().sum();
        let _ = writeln!(out, "{name:<20} {}  {other:>6.0} {total:>6.0}", columns.map(cell).join(""));
    }
    for (name, f) in rows {
        if f.failures() > 0 {
            let _ = writeln!(
                out,
                "!! {name}: {} failed in the window {:?}, {} lost",
                f.failures() - f.lost,
                f.errors,
                f.lost
            );
        }
    }
    out
}

/// A note when a lone Kafka echo round trip (`echo_alone_ms`, nothing else
/// in flight) is slow: the broker then does not answer a waiting fetch when a
/// record arrives (Tansu; Apache Kafka does), so each hop waits for the
/// consumer's next fetch, paced by `fetch.wait.max.ms`, and that wait, not the
/// node, sets the figures.
fn fetch_wait_note(echo_alone_ms: f64, contract: &Contract) -> Option<String> {
    if echo_alone_ms.is_nan() || echo_alone_ms <= FETCH_BOUND_ECHO_MS {
        return None;
    }
    let wait = bus::consumer_config(contract)
        .get("fetch.wait.max.ms")
        .map_or("unset (librdkafka's default: 500 ms)".to_owned(), |ms| format!("{ms} ms"));
    Some(format!(
        "a lone Kafka echo round trip takes {echo_alone_ms:.0} ms: this broker does not answer a waiting fetch when \
         a record arrives, so every Kafka hop waits for the consumer's next fetch, paced by fetch.wait.max.ms, which \
         is {wait} in the node's consumer settings (shared by the echo and the requester here). The node's figures \
         and ratios then measure that wait, not the node's own cost."
    ))
}

fn targets_table(targets: &[TargetVerdict]) -> String {
    let mut out = format!("\n== targets (issue 6), at {TARGET_LEVEL} in flight ==\n");
    for t in targets {
        let measured = t.measured.map_or("-".into(), |v| format!("{v:.2} {}", t.unit));
        let _ = writeln!(out, "{:<72} {:>12}  {}", t.target, measured, t.verdict);
    }
    out
}

fn nproc() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model_name = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
    let memory_total_mb = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e6);
    Machine {
        nproc: nproc(),
        model_name,
        kernel: read("/proc/sys/kernel/osrelease"),
        memory_total_mb,
        load_average_at_start: read("/proc/loadavg"),
    }
}

fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

fn main() {
    let settings = match Settings::from_args(Args::parse()) {
        Ok(settings) => settings,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    // Starting the servers blocks; do it before the runtime.
    let stack = support::servers();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let report = runtime.block_on(run(&settings, stack));
    for note in &report.notes {
        println!("\nnote: {note}");
    }
    print!("{}", targets_table(&report.targets));
    if let Some(path) = &settings.json {
        let text = serde_json::to_string_pretty(&report).expect("the report serializes");
        std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("JSON report: {}", path.display());
    }
    // Figures are for people; a lost or failed request through the node is a
    // bug, and fails the run (the CI smoke relies on it).
    let broken: Vec<String> = report
        .levels
        .iter()
        .filter(|l| l.node.lost > 0 || !l.node.errors.is_empty() || l.node.throughput_rps <= 0.0)
        .map(|l| format!("at {} in flight: {} lost, errors {:?}", l.concurrency, l.node.lost, l.node.errors))
        .collect();
    if !broken.is_empty() {
        eprintln!("FAILED: the node lost or failed requests: {}", broken.join("; "));
        std::process::exit(1);
    }
}

async fn run(settings: &Settings, stack: &'static support::Servers) -> Report {
    let machine = machine();
    let node_binary = env!("CARGO_BIN_EXE_onex-vault-adapter");
    println!(
        "onex-vault-adapter benchmark — {} × {}, load average {}",
        machine.nproc, machine.model_name, machine.load_average_at_start
    );
    println!("stack: {}; node binary: {node_binary}", stack.stack_name());
    if !node_binary.contains("/release/") {
        println!("!! the node binary is not a release build: its figures mean little (run through cargo bench)");
    }

    let vault = Arc::new(DirectVault::new(&stack.vault_addr(), stack.root_token()));
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(u64::MAX);
    let writes: Vec<Op> =
        (0..settings.secrets).map(|n| Op::Set { path: secret_path(n), data: secret_data(n, &mut rng) }).collect();
    let failed = stream::iter(&writes)
        .map(|op| vault.perform(op))
        .buffer_unordered(32)
        .filter(|outcome| std::future::ready(outcome.is_err()))
        .count()
        .await;
    assert_eq!(failed, 0, "{failed} of {} preload writes failed", settings.secrets);
    println!("preloaded {} secrets in {:.1} s", settings.secrets, started.elapsed().as_secs_f64());

    let max_in_flight = settings.levels.iter().copied().max().unwrap_or(1).max(512);
    let mut options = NodeOptions::default()
        .env("VAULT_TOKEN", stack.root_token())
        .env("RUST_LOG", "warn")
        .env("ONEX_HEALTH_INTERVAL_SECONDS", "10")
        .env("ONEX_READ_CACHE", if settings.read_cache { "true" } else { "false" })
        .edit(move |contract| {
            contract["event_bus"]["max_in_flight"] = serde_yaml::Value::Number((max_in_flight as u64).into());
        });
    if let Some(ms) = settings.fetch_wait_ms {
        options = options.env("KAFKA_FETCH_WAIT_MAX_MS", &ms.to_string());
    }
    let node = Node::start_with(options).await;
    let node_pid = node.pid().expect("the node runs");
    let contract = bench_contract(&format!("onex-bench-echo-{}", Uuid::new_v4().simple()), settings.fetch_wait_ms);
    let topics = &node.topics;
    let node_bus = Arc::new(BusLoop::start(
        &contract,
        &topics.requests,
        &[&topics.completed, &topics.failed],
        Some(&topics.failed),
    ));

    let run_id = Uuid::new_v4().simple().to_string();
    let (echo_requests, echo_replies) = (
        format!("onex.cmd.bench-{}.echo-request.v1", &run_id[..12]),
        format!("onex.evt.bench-{}.echo-reply.v1", &run_id[..12]),
    );
    support::bus::create_topics(&stack.bootstrap_servers(), &[&echo_requests, &echo_replies], PARTITIONS).await;
    let echo_stop = CancellationToken::new();
    let echo = Echo::start(&contract, &echo_requests, &echo_replies, echo_stop.clone());
    let echo_bus = Arc::new(BusLoop::start(&contract, &echo_requests, &[&echo_replies], None));

    let probe = Op::Get { path: secret_path(0) };
    node_bus.wait_until_answering(&probe, "the node", Duration::from_secs(90)).await;
    echo_bus.wait_until_answering(&probe, "the Kafka echo", Duration::from_secs(90)).await;
    let echo_alone_ms = echo_bus.median_round_trip_ms(&probe, 5).await;
    let fetch_note = fetch_wait_note(echo_alone_ms, &contract);
    if let Some(note) = &fetch_note {
        println!("note: {note}");
    }
    println!("node (pid {node_pid}) and Kafka echo answering; {} levels to run\n", settings.levels.len());

    // The bench's Kafka clients fetch only while their load runs, so idle
    // ones cost the broker nothing during the others' runs.
    let kafka_echo_fetching = |on: bool| {
        echo.set_fetching(on);
        echo_bus.set_fetching(on);
    };
    kafka_echo_fetching(false);
    node_bus.set_fetching(false);
    let rss_per_level = reset_peak_rss(node_pid);
    let mut levels = Vec::new();
    for &concurrency in &settings.levels {
        let measure = |target: Target, pid: Option<u32>| async move {
            let (tally, cpu) = closed_loop(&target, settings, concurrency, pid).await;
            Figures::new(tally, settings.duration, cpu)
        };
        kafka_echo_fetching(true);
        // A resumed consumer may take a while to fetch again: not in the figures.
        echo_bus.wait_until_answering(&probe, "the Kafka echo", Duration::from_secs(30)).await;
        let kafka_echo = measure(Target::Kafka(echo_bus.clone()), None).await;
        kafka_echo_fetching(false);

        let direct_vault = measure(Target::Vault(vault.clone()), None).await;

        node_bus.set_fetching(true);
        node_bus.wait_until_answering(&probe, "the node", Duration::from_secs(30)).await;
        reset_peak_rss(node_pid);
        let mut through_node = measure(Target::Kafka(node_bus.clone()), Some(node_pid)).await;
        through_node.node_peak_rss_mb = status_mb(node_pid, "VmHWM");
        node_bus.set_fetching(false);

        let level = Level::new(concurrency, through_node, direct_vault, kafka_echo);
        print!("{}", level_table(&level, settings));
        levels.push(level);
    }
    echo_stop.cancel();

    Report {
        benchmark: "onex-vault-adapter: node vs direct Vault (limit A) and Kafka echo (limit B), closed loop",
        date: chrono::Utc::now().to_rfc3339(),
        git_commit: git_commit(),
        kafka_echo_alone_ms: echo_alone_ms,
        targets: judge(&levels, fetch_note.is_some(), settings.read_cache),
        notes: fetch_note.into_iter().collect(),
        machine,
        stack: stack.stack_name(),
        node_binary,
        settings: ReportSettings {
            concurrency: settings.levels.clone(),
            duration_seconds: settings.duration.as_secs_f64(),
            warmup_seconds: settings.warmup.as_secs_f64(),
            mix: settings.mix.describe(),
            secrets: settings.secrets,
            folder_size: FOLDER_SIZE,
            record_key: "secret path (folder for list)",
            node_rust_log: "warn",
            node_max_in_flight: max_in_flight,
            node_health_interval_seconds: 10,
            node_read_cache: settings.read_cache,
            fetch_wait_max_ms: bus::consumer_config(&contract).get("fetch.wait.max.ms").map(str::to_owned),
            node_auth: "root token",
            node_peak_rss_per_level: rss_per_level,
        },
        levels,
    }
}
