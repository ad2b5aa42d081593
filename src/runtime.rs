//! The node's main loop, in one place:
//!
//! record in → envelope decoded → operation dispatched → reply out → offset stored.
//!
//! Records are handled concurrently up to `event_bus.max_in_flight` (records
//! with the same key one after another, in order: see `bus::KeyOrder`); at the
//! bound the loop stops taking records (so librdkafka stops fetching once its
//! small queue is full). An offset is stored only after everything the record
//! caused (reply, dead letter, audit record) was delivered, and never past an
//! unfinished record of its partition. On shutdown the loop stops taking
//! records, lets in-flight ones finish within the deadline, commits, flushes
//! and leaves the group.
//!
//! Each record's way is timed stage by stage (`telemetry::Stage`: bus wait,
//! key wait, decode and gate, Vault, answer, each publish, offset store) for
//! `/metrics` and the benchmark's breakdown.
//!
//! Over 500 lines on purpose: the whole record → reply → offset path stays in
//! one file, read top-down, as in rust-rdkafka's `at_least_once` example.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use onex_vault_models::{
    AuditRecord, Envelope, ErrorCode, ErrorReason, LeaseEvent, Operation, ReplyError, ReplyStatus, VaultReply,
    VaultRequest, REPLY_PAYLOAD_TYPE,
};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::bus::{self, ConsumerEvents, KeyOrder, Kind, OffsetTracker, Outgoing, Published, Publisher, Ticket};
use crate::contract::{Contract, EventBus};
use crate::decode::{decode, Decoded, Provenance, Refusal, Sizes};
use crate::messages;
use crate::operations::{Dispatcher, RequestBinding, Target};
use crate::resilience::Transition;
use crate::security::{Delivered, Denial, Gate, Position};
use crate::telemetry::{Laps, Stage, Telemetry};
use crate::trace::TraceContext;

/// Everything a record's handling needs, shared by all in-flight records.
pub struct Node {
    pub contract: Contract,
    pub dispatcher: Dispatcher,
    pub publisher: Publisher,
    pub gate: Gate,
    pub telemetry: Arc<Telemetry>,
    /// This process's name in health events and audit records.
    pub instance_id: String,
}

type RequestConsumer = StreamConsumer<ConsumerEvents>;

/// Runs the node until `stop` fires, then shuts down cleanly.
pub async fn run(node: Arc<Node>, stop: CancellationToken) -> anyhow::Result<()> {
    let bus_settings = &node.contract.event_bus;
    let events = ConsumerEvents { telemetry: node.telemetry.clone() };
    let consumer: RequestConsumer = bus::consumer_config(&node.contract)
        .create_with_context(events)
        .map_err(|e| bus::client_error(e, "consumer"))?;
    consumer
        .subscribe(&[bus_settings.subscribe_topics.requests.as_str()])
        .context("cannot subscribe to the request topic")?;
    tracing::info!(
        topic = %bus_settings.subscribe_topics.requests,
        group = %bus_settings.consumer_group,
        max_in_flight = bus_settings.max_in_flight,
        "consuming requests"
    );

    let slots = Arc::new(Semaphore::new(bus_settings.max_in_flight));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
    let mut offsets = OffsetTracker::default();
    let mut key_order = KeyOrder::default();
    // Answers of in-flight records may still be delivered during shutdown;
    // `abandon` cuts them off at the deadline.
    let abandon = CancellationToken::new();

    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            Some(finished) = done_rx.recv() => finish(&node, &consumer, &mut offsets, &mut key_order, finished),
            // Waits for a free slot, then a record; both waits are
            // cancellation safe, so a finishing record can interrupt them.
            next = next_record(&slots, &consumer) => {
                let (slot, record) = match next {
                    Ok(next) => next,
                    Err(error) => {
                        tracing::warn!(%error, "Kafka consumer error");
                        continue;
                    }
                };
                let received = Instant::now();
                node.telemetry.record_consumed();
                node.telemetry.record_stage(Stage::BusWait, bus::age(record.timestamp()));
                offsets.begin(record.topic(), record.partition(), record.offset());
                node.telemetry.set_in_flight(offsets.in_flight());
                let mut turn = key_order.enter(record.partition(), record.key());
                let node = node.clone();
                let done = done_tx.clone();
                let abandon = abandon.clone();
                tokio::spawn(async move {
                    let delivered = handle_within_deadline(&node, &mut turn, &record, received, &abandon).await;
                    let ticket = turn.finish();
                    // The slot goes back in `finish`, with the in-flight count.
                    let _ = done.send(Finished { record, delivered, ticket, slot, answered: Instant::now() });
                });
            }
        }
    }

    // Shutdown: no new records; wait for the in-flight ones, then commit,
    // flush and leave, all within the deadline.
    let total = Duration::from_secs(bus_settings.shutdown_timeout_seconds);
    let deadline = Instant::now() + total;
    let in_flight_deadline = deadline - leave_reserve(total);
    tracing::info!(in_flight = offsets.in_flight(), "stopping: finishing in-flight requests");
    while offsets.in_flight() > 0 {
        match tokio::time::timeout_at(in_flight_deadline.into(), done_rx.recv()).await {
            Ok(Some(finished)) => finish(&node, &consumer, &mut offsets, &mut key_order, finished),
            Ok(None) => break,
            Err(_) => {
                tracing::warn!(
                    in_flight = offsets.in_flight(),
                    "shutdown deadline reached; unanswered requests will be redelivered"
                );
                abandon.cancel();
                break;
            }
        }
    }
    leave_bus(node, consumer, deadline).await;
    Ok(())
}

/// Of the shutdown deadline, the part kept for [`leave_bus`] after the
/// in-flight records are done or abandoned.
fn leave_reserve(total: Duration) -> Duration {
    (total / 2).min(Duration::from_secs(5))
}

/// Commits the stored offsets, flushes the producer and leaves the group.
/// With the broker unreachable each of these blocks (librdkafka's own limits
/// are a minute or more), so they run on a thread of their own and the node
/// stops at `deadline` whatever they do; what was not committed is answered
/// again by the group's next member.
async fn leave_bus(node: Arc<Node>, consumer: RequestConsumer, deadline: Instant) {
    let (left_tx, left) = tokio::sync::oneshot::channel();
    let leaving = std::thread::Builder::new().name("leave-bus".to_owned()).spawn(move || {
        if let Err(error) = consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(%error, "final commit had nothing to commit or failed");
        }
        node.publisher.flush(deadline.saturating_duration_since(Instant::now()));
        consumer.unsubscribe();
        drop(consumer);
        let _ = left_tx.send(());
    });
    if let Err(error) = leaving {
        tracing::warn!(%error, "cannot start the thread that leaves the bus; stopping without a final commit");
        return;
    }
    match tokio::time::timeout_at(deadline.into(), left).await {
        Ok(_) => tracing::info!("stopped consuming"),
        Err(_) => tracing::warn!(
            "shutdown deadline reached before the final commit and group leave (is Kafka reachable?); \
             requests answered since the last commit will be answered again by the group's next member"
        ),
    }
}

/// A free in-flight slot and the next record. At the bound this waits for a
/// slot without taking records, so librdkafka's small queue fills and it
/// stops fetching.
async fn next_record(
    slots: &Arc<Semaphore>,
    consumer: &RequestConsumer,
) -> Result<(OwnedSemaphorePermit, OwnedMessage), rdkafka::error::KafkaError> {
    let slot = slots.clone().acquire_owned().await.map_err(|_| rdkafka::error::KafkaError::Canceled)?;
    let record = consumer.recv().await?.detach();
    Ok((slot, record))
}

struct Finished {
    record: OwnedMessage,
    delivered: bool,
    ticket: Option<Ticket>,
    slot: OwnedSemaphorePermit,
    /// When its handling ended (for [`Stage::OffsetStore`]).
    answered: Instant,
}

/// A record is done: release its key and store the offset it allows, if its
/// answers were delivered.
fn finish(
    node: &Node,
    consumer: &RequestConsumer,
    offsets: &mut OffsetTracker,
    keys: &mut KeyOrder,
    finished: Finished,
) {
    keys.leave(finished.ticket);
    let record = &finished.record;
    if !finished.delivered {
        // Leave the offset unstored (and so every later one of the
        // partition): the record is redelivered after a restart or rebalance.
        tracing::warn!(
            partition = record.partition(),
            offset = record.offset(),
            "answer not delivered; offset kept back"
        );
        return;
    }
    if let Some(offset) = offsets.finish(record.topic(), record.partition(), record.offset()) {
        if let Err(error) = consumer.store_offset(record.topic(), record.partition(), offset) {
            // A partition revoked while its record was in flight: benign.
            tracing::debug!(%error, partition = record.partition(), offset, "offset not stored");
        }
    }
    node.telemetry.record_stage(Stage::OffsetStore, finished.answered.elapsed());
    node.telemetry.set_in_flight(offsets.in_flight());
    drop(finished.slot);
}

/// How long the answers to a record given up may take to publish.
const GIVE_UP_PUBLISH: Duration = Duration::from_secs(10);

/// Waits for the record's key turn and handles it, within the contract's
/// record deadline; a record not finished by then is given up: answered
/// with a timeout and dead-lettered (each publish bounded), so one record
/// cannot hold its slot, and its partition's offsets, for ever.
async fn handle_within_deadline(
    node: &Node,
    turn: &mut bus::Turn,
    record: &OwnedMessage,
    received: Instant,
    stop: &CancellationToken,
) -> bool {
    let started = Instant::now();
    let deadline = Duration::from_secs(node.contract.event_bus.record_deadline_seconds);
    let handled = tokio::time::timeout(deadline, async {
        let mut laps = node.telemetry.laps(received);
        turn.wait().await;
        laps.lap(Stage::KeyWait);
        handle_record(node, record, &mut laps, stop).await
    })
    .await;
    let delivered = match handled {
        Ok(delivered) => delivered,
        Err(_) => give_up(node, record, started, stop).await,
    };
    if delivered {
        node.telemetry.record_progress();
    }
    delivered
}

/// The answers to a record not finished within its deadline: a failed
/// reply (`ONEX_CORE_092_TIMEOUT_ERROR`), a dead letter and an audit record.
/// Delivered when the dead letter is: the offset may then move on.
async fn give_up(node: &Node, record: &OwnedMessage, started: Instant, stop: &CancellationToken) -> bool {
    node.telemetry.record_given_up();
    tracing::error!(
        partition = record.partition(),
        offset = record.offset(),
        deadline_seconds = node.contract.event_bus.record_deadline_seconds,
        "record not finished within event_bus.record_deadline_seconds: given up and dead-lettered"
    );
    let mut refusal = crate::decode::given_up(record.payload().unwrap_or_default());
    let header_id = |name| record_header(record, name).and_then(|v| uuid::Uuid::parse_str(v.trim()).ok());
    refusal.correlation_id = refusal.correlation_id.or_else(|| header_id("correlation_id"));
    // It got as far as the node's handling: answered as a known sender's.
    let answers = refuse(node, record, refusal, Ok(()), started);
    let mut dead_lettered = false;
    for message in answers.messages(&node.contract.event_bus) {
        let published = tokio::time::timeout(GIVE_UP_PUBLISH, publish(node, &message, stop)).await;
        if message.kind == Kind::DeadLetter {
            dead_lettered = matches!(published, Ok(Published::Delivered));
        }
    }
    dead_lettered
}

/// What a record caused: the replies and dead letters to publish, and its
/// audit record, published beside them unless `audited` is false (a
/// dead letter is then the one record of it).
struct Answers {
    outgoing: Vec<Outgoing>,
    audit: AuditRecord,
    audited: bool,
}

impl Answers {
    fn messages(self, bus: &EventBus) -> Vec<Outgoing> {
        let mut messages = self.outgoing;
        if self.audited {
            messages.push(messages::audit(bus, self.audit));
        }
        messages
    }
}

/// Handles one record end to end; returns whether all it caused was delivered.
async fn handle_record(node: &Node, record: &OwnedMessage, laps: &mut Laps<'_>, stop: &CancellationToken) -> bool {
    let started = Instant::now();
    let bus = &node.contract.event_bus;
    let value = record.payload().unwrap_or_default();
    let sizes = Sizes {
        key: record.key().map_or(0, <[u8]>::len),
        headers: record
            .headers()
            .map_or(0, |headers| headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len)).sum()),
    };
    let answers = match decode(value, sizes, &bus.limits()) {
        Decoded::Request(request, provenance) => answer(node, record, value, &request, provenance, laps, started).await,
        Decoded::Refused(mut refusal) => {
            // The body wins; omnibase-infra's `correlation_id` and
            // `message_id` headers name the requester when the body cannot.
            let header_id = |name| record_header(record, name).and_then(|v| uuid::Uuid::parse_str(v.trim()).ok());
            refusal.correlation_id = refusal.correlation_id.or_else(|| header_id("correlation_id"));
            refusal.envelope_id = refusal.envelope_id.or_else(|| header_id("message_id"));
            let sender = node.gate.authenticate(value, refusal.signed.as_deref());
            laps.lap(Stage::DecodeAndGate);
            refuse(node, record, refusal, sender, started)
        }
    };
    let audit = &answers.audit;
    node.telemetry.record_request(&operation_label(audit.operation.as_deref()), audit.error_code, started.elapsed());
    let messages = answers.messages(bus);
    laps.lap(Stage::Answer);
    publish_answers(node, record, messages, stop).await
}

/// A decoded request through the gate, performed if admitted: its reply
/// (none when the gate does not know who sent it) and audit record.
async fn answer(
    node: &Node,
    record: &OwnedMessage,
    value: &[u8],
    request: &Envelope<VaultRequest>,
    provenance: Provenance,
    laps: &mut Laps<'_>,
    started: Instant,
) -> Answers {
    let bus = &node.contract.event_bus;
    let target = Target::of(&request.payload, &node.contract.vault.default_mount);
    let trace = TraceContext::continue_from(request, record_header(record, "traceparent"));
    let span = tracing::info_span!(
        "request",
        correlation_id = %request.reply_correlation_id(),
        requester = request.source_tool.as_deref().unwrap_or("unknown"),
        runtime_id = provenance.signed.as_ref().map_or("unsigned", |signed| signed.runtime_id.as_str()),
        operation = %request.payload.operation(),
        namespace = target.namespace.as_ref().map_or("", |ns| ns.as_str()),
        target = %target.masked(),
        trace_id = %trace.trace_id,
        span_id = %trace.span_id,
    );
    let position =
        Position { topic: record.topic().to_owned(), partition: record.partition(), offset: record.offset() };
    let admitted = node.gate.admit(&position, value, &provenance, request, &target).instrument(span.clone()).await;
    let denial = admitted.as_ref().err().copied();
    laps.lap(Stage::DecodeAndGate);
    let mut reply = match admitted {
        Ok(delivered) => {
            let signer = provenance.signed.as_ref().map(|signed| signed.runtime_id.as_str());
            let reply = perform(node, request, signer, &delivered, started).instrument(span).await;
            laps.lap(Stage::Vault);
            reply
        }
        Err(denial) => span.in_scope(|| deny(request, denial, started)),
    };
    trace.apply_to(&mut reply);
    let mut audit = audit_record(node, record, Some(request), target, &reply.payload, started);
    audit.denial = denial.map(|d| d.reason);
    audit.runtime_id = provenance.signed.map(|signed| signed.runtime_id);
    // A sender the gate could not name (or a replay) is not answered.
    let outgoing = match denial {
        Some(denial) if denial.reason.is_gateway() => Vec::new(),
        _ => vec![messages::reply(bus, node.gate.reply_signer(), reply)],
    };
    Answers { outgoing, audit, audited: true }
}

/// Publishes a record's answers all at once (librdkafka batches what is
/// queued together) and waits for every one; true when the record's offset
/// may be stored.
async fn publish_answers(
    node: &Node,
    record: &OwnedMessage,
    outgoing: Vec<Outgoing>,
    stop: &CancellationToken,
) -> bool {
    let published =
        futures_util::future::join_all(outgoing.iter().map(|m| publish_answer(node, record, m, stop))).await;
    published.into_iter().all(|delivered| delivered)
}

/// Publishes one answer; if the broker refuses it for good, a small
/// stand-in goes instead (and if that is refused too, the request is
/// answered as far as the bus allows and its offset moves on). False only
/// when `stop` fired first.
async fn publish_answer(node: &Node, record: &OwnedMessage, message: &Outgoing, stop: &CancellationToken) -> bool {
    let sent = Instant::now();
    let delivered = match publish(node, message, stop).await {
        Published::Delivered => true,
        Published::Stopped => return false,
        Published::Refused(_) => match stand_in(node, record, message) {
            Some(stand_in) => match publish(node, &stand_in, stop).await {
                Published::Delivered => true,
                Published::Stopped => return false,
                Published::Refused(_) => false,
            },
            None => false,
        },
    };
    if delivered {
        let took = sent.elapsed();
        match message.kind {
            Kind::Reply => {
                node.telemetry.record_replied();
                node.telemetry.record_stage(Stage::PublishReply, took);
            }
            Kind::DeadLetter => {
                node.telemetry.record_dead_letter();
                node.telemetry.record_stage(Stage::PublishDeadLetter, took);
            }
            Kind::Audit => node.telemetry.record_stage(Stage::PublishAudit, took),
            Kind::Event => {}
        }
    }
    true
}

/// Publishes `message` (see [`Publisher::deliver`]); a message the broker
/// refuses for good is counted and logged.
pub async fn publish(node: &Node, message: &Outgoing, stop: &CancellationToken) -> Published {
    let published = node.publisher.deliver(message, stop).await;
    if let Published::Refused(error) = &published {
        node.telemetry.record_publish_refused();
        tracing::error!(
            topic = %message.topic,
            kind = ?message.kind,
            bytes = message.body.len(),
            %error,
            "the broker refuses this message for good; not retried"
        );
    }
    published
}

/// What goes instead of a reply or dead letter the broker refused: a failed
/// reply saying so, or a dead letter without the record's key and value.
fn stand_in(node: &Node, record: &OwnedMessage, refused: &Outgoing) -> Option<Outgoing> {
    let bus = &node.contract.event_bus;
    match refused.kind {
        Kind::Reply => messages::unpublishable_reply(bus, node.gate.reply_signer(), refused),
        Kind::DeadLetter => Some(messages::bare_dead_letter(bus, record, refused)),
        Kind::Audit | Kind::Event => None,
    }
}

/// Performs an admitted request and builds its reply, its secret values
/// delivered as the gate decided.
async fn perform(
    node: &Node,
    request: &Envelope<VaultRequest>,
    signer: Option<&str>,
    delivered: &Delivered,
    started: Instant,
) -> Envelope<VaultReply> {
    let operation = request.payload.operation();
    let outcome = match request.deadline() {
        Some(deadline) if deadline < Utc::now() => Err(ReplyError::new(
            ErrorCode::TimeoutError,
            "request expired (envelope_timestamp + timeout_seconds) before the node reached it",
        )
        .with_reason(ErrorReason::RequestExpired)),
        _ => {
            // Sealed input opens only for this request and this requester.
            let bound = RequestBinding {
                correlation_id: request.reply_correlation_id(),
                requester: signer.or(request.source_tool.as_deref()),
            };
            node.dispatcher.handle(&request.payload, Some(&bound), delivered.wrap_ttl()).await
        }
    };
    let outcome = outcome.and_then(|result| delivered.deliver(request.reply_correlation_id(), result));
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reply = match outcome {
        Ok(result) => {
            tracing::info!(outcome = "success", duration_ms, "request answered");
            VaultReply::success(operation.as_str(), result, duration_ms)
        }
        Err(error) => {
            tracing::info!(outcome = "error", code = %error.code, reason = %error.message, duration_ms, "request answered");
            VaultReply::failure(operation.as_str(), error, duration_ms)
        }
    };
    Envelope::answering(request, REPLY_PAYLOAD_TYPE, reply)
}

/// The reply to a request the gate refused. The log line and the audit
/// record say why; the requester only learns that it was refused.
fn deny(request: &Envelope<VaultRequest>, denial: Denial, started: Instant) -> Envelope<VaultReply> {
    if let Some(held_back) = crate::logging::REFUSALS.allow() {
        tracing::warn!(reason = denial.reason.as_str(), held_back, "request denied by the security checks");
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let reply = VaultReply::failure(request.payload.operation().as_str(), denial.reply_error(), duration_ms);
    Envelope::answering(request, REPLY_PAYLOAD_TYPE, reply)
}

/// The answers to a record the node will not perform. To a `sender` the
/// gate knows (any sender, in the dev profile): a failed reply when it can
/// be named, a dead letter when the record itself is unusable, and the
/// audit record. To an unknown one, a single output: the dead letter if the
/// record is unusable, else the audit record, saying why.
fn refuse(
    node: &Node,
    record: &OwnedMessage,
    refusal: Refusal,
    sender: Result<(), Denial>,
    started: Instant,
) -> Answers {
    let bus = &node.contract.event_bus;
    if let Some(held_back) = crate::logging::REFUSALS.allow() {
        tracing::warn!(
            correlation_id = ?refusal.correlation_id,
            requester = refusal.source_tool.as_deref().unwrap_or("unknown"),
            partition = record.partition(),
            offset = record.offset(),
            code = %refusal.error.code,
            reason = %refusal.error.message,
            dead_letter = refusal.dead_letter,
            unknown_sender = sender.err().map(|denial| denial.reason.as_str()),
            held_back,
            "request refused"
        );
    }
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut outgoing = Vec::new();
    if sender.is_ok() {
        outgoing.extend(messages::refusal_reply(bus, node.gate.reply_signer(), &refusal, duration_ms));
    }
    if refusal.dead_letter {
        outgoing.push(messages::dead_letter(bus, record, &refusal));
    }
    let failure =
        VaultReply::failure(refusal.operation.as_deref().unwrap_or("unknown"), refusal.error.clone(), duration_ms);
    let mut audit = audit_record(node, record, None, Target::none(), &failure, started);
    audit.requester = refusal.source_tool;
    audit.operation = refusal.operation;
    audit.correlation_id = refusal.correlation_id;
    audit.denial = sender.err().map(|denial| denial.reason);
    audit.runtime_id = refusal.signed.map(|signed| signed.runtime_id);
    let audited = sender.is_ok() || !refusal.dead_letter;
    Answers { outgoing, audit, audited }
}

/// The audit record of a handled request (the caller fills in what a
/// refused record could not give).
fn audit_record(
    node: &Node,
    record: &OwnedMessage,
    request: Option<&Envelope<VaultRequest>>,
    target: Target,
    reply: &VaultReply,
    started: Instant,
) -> AuditRecord {
    let own = node.contract.vault.namespace.trim_matches('/');
    let namespace = match &target.namespace {
        Some(child) => Some(child.under(own)),
        None => (!own.is_empty()).then(|| own.to_owned()),
    };
    AuditRecord {
        requester: request.and_then(|r| r.source_tool.clone()),
        runtime_id: None,
        operation: Some(reply.operation.clone()),
        path: target.audit_path(),
        namespace,
        mount: target.mount,
        outcome: reply.status,
        error_code: reply.error.as_ref().map(|e| e.code).filter(|_| reply.status == ReplyStatus::Error),
        correlation_id: request.map(Envelope::reply_correlation_id),
        duration_ms: started.elapsed().as_secs_f64() * 1000.0,
        instance_id: node.instance_id.clone(),
        timestamp: Utc::now(),
        source_record: format!("{}/{}@{}", record.topic(), record.partition(), record.offset()),
        denial: None,
    }
}

/// Metric label for an operation: its name if the node knows it, else
/// `unknown` (so hostile input cannot create unbounded label values).
fn operation_label(operation: Option<&str>) -> String {
    operation.and_then(Operation::from_name).map_or("unknown", Operation::as_str).to_owned()
}

/// A record header's value (the first, if it is repeated), if it is there
/// and UTF-8.
fn record_header<'r>(record: &'r OwnedMessage, name: &str) -> Option<&'r str> {
    let headers = record.headers()?;
    headers.iter().find(|h| h.key == name).and_then(|h| h.value).and_then(|v| std::str::from_utf8(v).ok())
}

/// Publishes a circuit-breaker event at every state change of the breaker.
pub async fn publish_breaker_transitions(
    node: Arc<Node>,
    mut transitions: mpsc::UnboundedReceiver<Transition>,
    stop: CancellationToken,
) {
    while let Some(change) = tokio::select! { t = transitions.recv() => t, _ = stop.cancelled() => None } {
        tracing::warn!(
            from = messages::breaker_state(change.from).as_str(),
            to = messages::breaker_state(change.to).as_str(),
            failures = change.failure_count,
            "circuit breaker changed state"
        );
        let message = messages::breaker_transition(&node.contract.event_bus, &change);
        publish(&node, &message, &stop).await;
    }
}

/// Publishes the lease keeper's events (lease expiring, expired, not renewable).
pub async fn publish_lease_events(
    node: Arc<Node>,
    mut events: mpsc::UnboundedReceiver<LeaseEvent>,
    stop: CancellationToken,
) {
    while let Some(event) = tokio::select! { e = events.recv() => e, _ = stop.cancelled() => None } {
        tracing::warn!(event = ?event.event, ttl_seconds = event.ttl_seconds, "kept-alive lease can be renewed no more");
        let message = messages::lease_event(&node.contract.event_bus, event, &node.instance_id);
        publish(&node, &message, &stop).await;
    }
}

/// Builds the publisher of everything the node sends (its two producers).
pub fn publisher(contract: &Contract) -> anyhow::Result<Publisher> {
    let producer: FutureProducer =
        bus::producer_config(contract).create().map_err(|e| bus::client_error(e, "producer"))?;
    let bus = &contract.event_bus;
    // With the same linger the audit records gain nothing from a second
    // producer (and its threads): they share the first.
    let audit = if bus.audit_linger_ms == bus.linger_ms {
        producer.clone()
    } else {
        bus::audit_producer_config(contract).create().map_err(|e| bus::client_error(e, "audit producer"))?
    };
    Ok(Publisher::new(producer, audit))
}
