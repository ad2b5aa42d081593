//! The three targets of a load: the node, Vault directly (limit A), a Kafka echo (limit B).

use super::*;

/// Why a request did not succeed.
pub(crate) enum Failure {
    /// A typed error reply (its code), or a Vault error status.
    Error(String),
    /// No answer within [`REPLY_TIMEOUT`].
    Lost,
    /// The request could not be sent, or the answer not read.
    Transport(String),
}

/// A successful answer.
pub(crate) struct Done {
    pub(crate) at: Instant,
    /// The node's own `duration_ms` in its reply (decode → Vault → reply built).
    pub(crate) node_ms: Option<f64>,
    /// Kafka targets: the reply record's timestamp → received.
    pub(crate) reply_hop_ms: Option<f64>,
}

/// Where a load's requests go.
#[derive(Clone)]
pub(crate) enum Target {
    Kafka(Arc<BusLoop>),
    Vault(Arc<DirectVault>),
}

impl Target {
    pub(crate) async fn perform(&self, op: &Op) -> Result<Done, Failure> {
        match self {
            Target::Kafka(bus) => bus.call(op, REPLY_TIMEOUT).await,
            Target::Vault(vault) => {
                vault.perform(op).await.map(|()| Done { at: Instant::now(), node_ms: None, reply_hop_ms: None })
            }
        }
    }
}

/// Limit A: Vault's HTTP API called directly, with one pooled HTTP client
/// and the root token, as the node calls it.
pub(crate) struct DirectVault {
    pub(crate) http: reqwest::Client,
    pub(crate) addr: String,
    pub(crate) token: String,
}

impl DirectVault {
    pub(crate) fn new(addr: &str, token: &str) -> DirectVault {
        let http =
            reqwest::Client::builder().timeout(REPLY_TIMEOUT).no_proxy().build().expect("building the HTTP client");
        DirectVault { http, addr: addr.trim_end_matches('/').to_owned(), token: token.to_owned() }
    }

    pub(crate) async fn perform(&self, op: &Op) -> Result<(), Failure> {
        if let Op::Batch { paths } = op {
            // What the node does for a batch: the reads, concurrently.
            let gets: Vec<Op> = paths.iter().map(|path| Op::Get { path: path.clone() }).collect();
            let reads = gets.iter().map(|get| self.perform_one(get));
            return futures_util::future::join_all(reads).await.into_iter().collect();
        }
        self.perform_one(op).await
    }

    pub(crate) async fn perform_one(&self, op: &Op) -> Result<(), Failure> {
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

pub(crate) fn transport(error: reqwest::Error) -> Failure {
    Failure::Transport(if error.is_timeout() { "HTTP timeout".into() } else { format!("HTTP: {error}") })
}

/// The requester side of a Kafka round trip, shared by all workers of a load:
/// one producer, and one consumer thread (partitions assigned by hand, no
/// group) that hands each reply to the worker waiting for its correlation id.
pub(crate) struct BusLoop {
    pub(crate) producer: FutureProducer,
    pub(crate) consumer: Arc<BaseConsumer>,
    pub(crate) request_topic: String,
    pub(crate) waiting: Arc<Mutex<HashMap<u128, oneshot::Sender<Reply>>>>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) consumer_thread: Option<thread::JoinHandle<()>>,
}

/// A reply as the consumer thread saw it.
pub(crate) struct Reply {
    pub(crate) received: Instant,
    /// The error code of a reply on the failed topic.
    pub(crate) failed: Option<String>,
    pub(crate) node_ms: Option<f64>,
    pub(crate) hop_ms: Option<f64>,
}

impl BusLoop {
    /// Requests go to `request_topic`; replies come on `reply_topics`, and
    /// those on `failed_topic` are failures. The reply consumer starts at the
    /// topics' current ends.
    pub(crate) fn start(
        contract: &Contract,
        request_topic: &str,
        reply_topics: &[&str],
        failed_topic: Option<&str>,
    ) -> BusLoop {
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
    pub(crate) fn set_fetching(&self, on: bool) {
        set_fetching(self.consumer.as_ref(), on);
    }

    /// Sends `op` in a request envelope and waits up to `wait` for its reply.
    pub(crate) async fn call(&self, op: &Op, wait: Duration) -> Result<Done, Failure> {
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
            Ok(Ok(Reply { received, node_ms, hop_ms, .. })) => Ok(Done { at: received, node_ms, reply_hop_ms: hop_ms }),
            Ok(Err(_)) | Err(_) => {
                self.waiting.lock().expect("waiting map").remove(&id.as_u128());
                Err(Failure::Lost)
            }
        }
    }

    /// The median of `count` round trips of `op`, one at a time (NaN if any fails).
    pub(crate) async fn median_round_trip_ms(&self, op: &Op, count: usize) -> f64 {
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
    pub(crate) async fn wait_until_answering(&self, op: &Op, what: &str, limit: Duration) {
        if let Err(problem) = self.answering(op, what, limit).await {
            panic!("{problem}");
        }
    }

    /// [`BusLoop::wait_until_answering`] that says why instead of panicking.
    pub(crate) async fn answering(&self, op: &Op, what: &str, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            match self.call(op, Duration::from_secs(3)).await {
                Ok(_) => return Ok(()),
                Err(Failure::Error(code)) => return Err(format!("{what} answered the probe with {code}")),
                Err(_) if Instant::now() < deadline => continue,
                Err(_) => return Err(format!("{what} did not answer within {limit:?}")),
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

pub(crate) fn receive_replies(
    consumer: &BaseConsumer,
    waiting: &Mutex<HashMap<u128, oneshot::Sender<Reply>>>,
    stop: &AtomicBool,
    failed_topic: Option<&str>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let received = Instant::now();
        let hop_ms = message.timestamp().to_millis().map(|_| ms(bus::age(message.timestamp())));
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
        let _ = answer.send(Reply { received, failed, node_ms: duration_ms(payload), hop_ms });
    }
}

/// `payload.error.code` of a failed reply.
pub(crate) fn error_code(reply: &[u8]) -> String {
    let reply: Value = serde_json::from_slice(reply).unwrap_or_default();
    reply.pointer("/payload/error/code").and_then(Value::as_str).unwrap_or("failed reply").to_owned()
}

/// The reply's `"duration_ms":` number, found without parsing the whole reply
/// (the bench shares the machine's cores with the node).
pub(crate) fn duration_ms(reply: &[u8]) -> Option<f64> {
    pub(crate) const FIELD: &[u8] = b"\"duration_ms\":";
    let at = reply.windows(FIELD.len()).rposition(|w| w == FIELD)? + FIELD.len();
    let number: String = reply[at..]
        .iter()
        .map(|&b| b as char)
        .skip_while(|c| c.is_whitespace())
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
        .collect();
    number.parse().ok()
}

pub(crate) fn envelope(correlation_id: Uuid, payload: Value) -> Vec<u8> {
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
pub(crate) fn set_fetching(consumer: &impl Consumer, on: bool) {
    let assignment = consumer.assignment().expect("a consumer's assignment");
    let done = if on { consumer.resume(&assignment) } else { consumer.pause(&assignment) };
    done.expect("pausing or resuming a consumer");
}

/// Limit B's far end: consumes the echo request topic with the node's
/// consumer settings (as a member of a group) and produces every record,
/// unchanged (key, headers, value), to the echo reply topic with the node's
/// producer settings.
pub(crate) struct Echo {
    pub(crate) consumer: Arc<StreamConsumer>,
}

impl Echo {
    /// Starts echoing in the background until `stop` fires.
    pub(crate) fn start(contract: &Contract, request_topic: &str, reply_topic: &str, stop: CancellationToken) -> Echo {
        let consumer: Arc<StreamConsumer> =
            bus::consumer_config(contract).create().map(Arc::new).expect("creating the echo consumer");
        consumer.subscribe(&[request_topic]).expect("subscribing the echo");
        let producer: FutureProducer = bus::producer_config(contract).create().expect("creating the echo producer");
        tokio::spawn(echo(consumer.clone(), producer, reply_topic.to_owned(), stop));
        Echo { consumer }
    }

    /// Pauses or resumes fetching requests (see [`BusLoop::set_fetching`]).
    pub(crate) fn set_fetching(&self, on: bool) {
        set_fetching(self.consumer.as_ref(), on);
    }
}

pub(crate) async fn echo(
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    reply_topic: String,
    stop: CancellationToken,
) {
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
pub(crate) fn bench_contract(group: &str, contract_env: &[(String, String)]) -> Contract {
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
    for (name, value) in contract_env {
        values.insert(name, value.clone());
    }
    Contract::from_yaml(&text, path, &|name| values.get(name).cloned()).expect("the bench contract is valid")
}
