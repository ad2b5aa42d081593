//! Security in the `strict` profile, attacked through the running node:
//! requests signed as ONEX runtimes sign them (`ModelMessageEnvelope`, Ed25519
//! over the Blake3 hash of the event envelope), forged, tampered, foreign-realm
//! and unknown-runtime ones, replays (to another partition, to a second
//! instance of the group, and after a restart) and stale timestamps, the
//! access policy (default deny), node-signed replies, sealed, wrapped and
//! clear delivery, keys kept in Vault and rotated there, and no secret, token
//! or key in the node's log.

mod support;

use std::time::Duration;

use onex_vault_models::{DenialReason, OperationResult, RuntimeSigner, SealedResult, SealingSecretKey, SignedEnvelope};
use reqwest::Method;
use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{node_identity, node_trust, Node, NodeOptions, Requester, NODE_REALM, REPLY_WAIT};
use support::{servers, vault};
use uuid::Uuid;

const CANARY: &str = "canary-sec-9d1b7e-never-log-me";

/// A requester runtime as the access policy knows it: its runtime id, its
/// signing key and its sealing key (the private halves stay in the test).
struct Identity {
    name: String,
    /// The private signing key (base64 seed), kept to search for it in the log.
    seed: String,
    signer: RuntimeSigner,
    sealer: SealingSecretKey,
}

impl Identity {
    fn new(name: &str) -> Identity {
        Identity::with_keys(name, 1)
    }

    /// `name` with its `n`th keys (a rotation).
    fn with_keys(name: &str, n: u32) -> Identity {
        Identity::in_realm(NODE_REALM, name, &random_seed(), n)
    }

    fn in_realm(realm: &str, name: &str, seed: &str, n: u32) -> Identity {
        Identity {
            name: name.to_owned(),
            seed: seed.to_owned(),
            signer: RuntimeSigner::from_seed_base64(realm, name, seed).expect("signing key"),
            sealer: SealingSecretKey::generate(&format!("{name}-seal-{n}")).expect("sealing key"),
        }
    }

    /// Its `access_policy.requesters` entry.
    fn policy(&self, clear_delivery: bool, grants: Value) -> Value {
        json!({
            "runtime_id": self.name,
            "signing_keys": [{"id": format!("{}-sign", self.name), "public_key": self.signer.public_key_base64()}],
            "sealing_key": {"id": self.sealer.key_id(), "public_key": self.sealer.public_key_base64()},
            "clear_delivery": clear_delivery,
            "grants": grants,
        })
    }

    fn envelope(&self, payload: Value) -> Value {
        let mut envelope = Requester::envelope(payload);
        envelope["source_tool"] = self.name.clone().into();
        envelope
    }

    /// `envelope` wrapped and signed as this runtime signs (`sign_dict`).
    fn sign(&self, envelope: &Value) -> Value {
        let correlation = envelope["correlation_id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        let signed = self.signer.sign(envelope.clone(), "default", correlation.unwrap_or_else(Uuid::new_v4), None);
        serde_json::to_value(signed).expect("a signed envelope is JSON")
    }
}

/// A fresh Ed25519 seed in base64.
fn random_seed() -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The reply inside a node-signed record, after checking the node's
/// signature as a requester's gateway does; panics on anything else.
fn verified_reply(record: &Record) -> Value {
    let signed: SignedEnvelope = serde_json::from_slice(&record.value)
        .unwrap_or_else(|e| panic!("a strict node's reply is a signed ModelMessageEnvelope ({e}): {record:?}"));
    let trust = node_trust();
    let keys_of = |signer: &str| if signer == trust.runtime_id { vec![trust.key.clone()] } else { vec![] };
    signed
        .verify_received(&record.value_str(), NODE_REALM, keys_of)
        .unwrap_or_else(|e| panic!("the node's signature does not verify: {e}"));
    assert_eq!(signed.trace_id.to_string(), signed.payload["correlation_id"].as_str().unwrap_or_default());
    assert_eq!(
        signed.causality_id.map(|id| id.to_string()).as_deref(),
        signed.payload["parent_envelope_id"].as_str(),
        "causality_id is the request's envelope_id"
    );
    signed.payload
}

/// What the test sends and sees: the requester, plus the audit trail.
struct Bus {
    requester: Requester,
    audit: ReplyWatcher,
    /// Correlation ids sent with `send_unanswered`, and how many replies
    /// each may have (a replay shares its original's id and reply).
    unanswered: std::sync::Mutex<Vec<(String, usize)>>,
}

/// The audit record is an unanswered refusal: the node did not know who
/// sent it (see `DenialReason::is_gateway`).
fn unanswered_denial(audit: &Value) -> bool {
    serde_json::from_value::<DenialReason>(audit["denial"].clone()).is_ok_and(DenialReason::is_gateway)
}

impl Bus {
    fn of(node: &Node) -> Bus {
        let requester = node.requester();
        let audit = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.audit));
        Bus { requester, audit, unanswered: Default::default() }
    }

    /// Sends a record anyone could have sent (unsigned, not verified, a
    /// replay) to `partition` (else keyed by nothing): it is refused with
    /// no reply, and audited with `reason`. `replies` is how many replies
    /// its correlation id already has; [`Bus::assert_unanswered`] checks
    /// later that no more came.
    async fn send_unanswered_to(&self, partition: Option<i32>, value: &Value, id: &str, reason: &str, replies: usize) {
        let bytes = value.to_string();
        match partition {
            Some(partition) => {
                self.requester.send_raw_to(partition, bytes.as_bytes()).await;
            }
            None => self.requester.send_raw(None, bytes.as_bytes()).await,
        }
        let audit = self.audit_where(id, |a| a["denial"] == reason).await;
        assert_eq!(audit["error_code"], "ONEX_CORE_025_PERMISSION_DENIED", "audit: {audit}");
        assert!(unanswered_denial(&audit), "{reason} is answered: not a gateway denial");
        self.unanswered.lock().unwrap_or_else(|p| p.into_inner()).push((id.to_owned(), replies));
    }

    async fn send_unanswered(&self, value: &Value, envelope: &Value, reason: &str) {
        let id = envelope["correlation_id"].as_str().expect("correlation_id");
        self.send_unanswered_to(None, value, id, reason, 0).await;
    }

    /// No record sent with `send_unanswered` got a reply (beyond the ones
    /// its id had). Call after a later request was answered: a reply
    /// published with its audit record would have arrived by then.
    fn assert_unanswered(&self) {
        let topics = self.requester.topics();
        let replies: Vec<Record> = (self.requester.watcher.all_records().into_iter())
            .filter(|r| r.topic == topics.completed || r.topic == topics.failed)
            .collect();
        for (id, allowed) in self.unanswered.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let got = replies.iter().filter(|r| r.correlation_id() == Some(id.as_str())).count();
            assert_eq!(got, *allowed, "a refusal of an unknown sender was answered ({id})");
        }
    }

    /// Signs `envelope` as `who`, sends it, and returns its reply, or, when
    /// the node refuses it unanswered, the audit record saying why.
    async fn signed_or_unanswered(&self, who: &Identity, envelope: &Value) -> Result<Value, Value> {
        let id = envelope["correlation_id"].as_str().expect("correlation_id").to_owned();
        self.requester.send_raw(None, who.sign(envelope).to_string().as_bytes()).await;
        let topics = self.requester.topics();
        let (completed, failed) = (topics.completed.clone(), topics.failed.clone());
        let reply_id = id.clone();
        let reply = self.requester.watcher.wait_for(
            move |r| (r.topic == failed || r.topic == completed) && r.correlation_id() == Some(&reply_id),
            REPLY_WAIT,
        );
        let payload = |r: &Record| r.json.as_ref().map(|j| j["payload"].clone()).unwrap_or_default();
        let audit = self
            .audit
            .wait_for(move |r| r.correlation_id() == Some(id.as_str()) && unanswered_denial(&payload(r)), REPLY_WAIT);
        tokio::select! {
            reply = reply => Ok(verified_reply(&reply.expect("a reply or an audit record"))),
            audit = audit => Err(audit.expect("a reply or an audit record").json.map(|j| j["payload"].clone()).unwrap_or_default()),
        }
    }

    /// Sends `value` (to `partition`, else keyed by nothing) and waits for the
    /// node-signed reply with `correlation_id` on the completed or failed
    /// topic (`failed_only`: the failed topic); returns the verified reply.
    async fn send_to(&self, partition: Option<i32>, value: &Value, correlation_id: &str, failed_only: bool) -> Value {
        let bytes = value.to_string();
        match partition {
            Some(partition) => {
                self.requester.send_raw_to(partition, bytes.as_bytes()).await;
            }
            None => self.requester.send_raw(None, bytes.as_bytes()).await,
        }
        let id = correlation_id.to_owned();
        let topics = self.requester.topics();
        let (completed, failed) = (topics.completed.clone(), topics.failed.clone());
        let reply: Record = self
            .requester
            .watcher
            .wait_for(
                move |r| {
                    (r.topic == failed || (!failed_only && r.topic == completed)) && r.correlation_id() == Some(&id)
                },
                REPLY_WAIT,
            )
            .await
            .expect("a reply");
        verified_reply(&reply)
    }

    /// Sends an unsigned or hand-made record whose event envelope is `envelope`.
    async fn send(&self, value: &Value, envelope: &Value) -> Value {
        self.send_to(None, value, envelope["correlation_id"].as_str().expect("correlation_id"), false).await
    }

    /// Signs `envelope` as `who` and sends it.
    async fn signed(&self, who: &Identity, envelope: &Value) -> Value {
        self.send(&who.sign(envelope), envelope).await
    }

    /// The audit record of the request with `correlation_id`.
    async fn audit_of(&self, correlation_id: &str) -> Value {
        self.audit_where(correlation_id, |_| true).await
    }

    /// The audit record of the request with `correlation_id` that `wanted` accepts
    /// (a replay shares the correlation id of the request it replays).
    async fn audit_where(&self, correlation_id: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let id = correlation_id.to_owned();
        let payload = |r: &Record| r.json.as_ref().map(|j| j["payload"].clone()).unwrap_or_default();
        let record = self
            .audit
            .wait_for(move |r| r.correlation_id() == Some(id.as_str()) && wanted(&payload(r)), REPLY_WAIT)
            .await
            .expect("an audit record");
        payload(&record)
    }

    /// Asserts `reply` is the one denial answer and the audit says `reason`.
    async fn assert_denied(&self, reply: &Value, reason: &str) {
        let payload = &reply["payload"];
        assert_eq!(payload["status"], "error", "{reply}");
        assert_eq!(payload["error"]["code"], "ONEX_CORE_025_PERMISSION_DENIED", "{reply}");
        assert_eq!(payload["error"]["retryable"], false, "{reply}");
        let message = payload["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.contains(reason), "the requester must not learn which check failed: {message}");
        let id = reply["correlation_id"].as_str().unwrap_or_default();
        let audit = self.audit_where(id, |a| a["denial"] == reason).await;
        assert_eq!(audit["error_code"], "ONEX_CORE_025_PERMISSION_DENIED", "audit: {audit}");
    }
}

fn sealed_result(reply: &Value) -> SealedResult {
    serde_json::from_value(reply["payload"]["result"].clone()).unwrap_or_else(|e| panic!("not sealed ({e}): {reply}"))
}

fn correlation(reply: &Value) -> Uuid {
    reply["correlation_id"].as_str().and_then(|s| Uuid::parse_str(s).ok()).expect("a correlation id")
}

fn grants_billing() -> Value {
    json!([
        {"operations": ["get_secret", "get_secrets_batch", "list_secrets"], "paths": ["security/billing/*", "security/shared/**"]},
        {"operations": ["renew_token"]},
    ])
}

/// The test matrix of the access policy and of requester authentication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_profile_admits_only_signed_fresh_granted_requests() {
    vault::write_kv("secret", "security/billing/db", &json!({"password": CANARY})).await;
    vault::write_kv("secret", "security/payroll/db", &json!({"password": "payroll"})).await;
    let billing = Identity::new("node_billing");
    let stranger = Identity::new("node_stranger");
    let mut node = Node::start_strict(vec![billing.policy(false, grants_billing())], |_| {}).await;
    let bus = Bus::of(&node);
    let get = |path: &str| json!({"operation": "get_secret", "path": path});

    // Allowed: signed, fresh, granted; the secret comes back sealed.
    let reply = bus.signed(&billing, &billing.envelope(get("security/billing/db"))).await;
    assert_eq!(reply["payload"]["status"], "success", "{reply}");
    assert!(!reply.to_string().contains(CANARY), "a sealed reply shows the secret: {reply}");
    let sealed = sealed_result(&reply);
    assert_eq!(sealed.key_id, billing.sealer.key_id());
    let Ok(OperationResult::GetSecret(opened)) = sealed.open(&billing.sealer, correlation(&reply)) else {
        panic!("the requester cannot open its sealed reply: {reply}")
    };
    assert_eq!(opened.data.expose_secret()["password"], CANARY);
    assert_eq!(bus.audit_of(reply["correlation_id"].as_str().unwrap_or_default()).await["outcome"], "success");
    // A grant without paths for renew_token: admitted, so Vault answers (the
    // test's root token is not renewable: ONEX_CORE_007_INVALID_INPUT, not a denial).
    let reply = bus.signed(&billing, &billing.envelope(json!({"operation": "renew_token"}))).await;
    assert_eq!(reply["payload"]["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{reply}");
    assert_eq!(bus.audit_of(reply["correlation_id"].as_str().unwrap_or_default()).await["denial"], Value::Null);

    // Denied by operation, and the write never reached Vault.
    let set =
        json!({"operation": "set_secret", "path": "security/billing/db", "data": {"password": format!("{CANARY}-2")}});
    let reply = bus.signed(&billing, &billing.envelope(set)).await;
    bus.assert_denied(&reply, "operation_not_granted").await;
    assert_eq!(vault::read_kv("secret", "security/billing/db").await.expect("still there")["password"], CANARY);
    // Denied by path, by mount, and a batch with one path outside the grant.
    let reply = bus.signed(&billing, &billing.envelope(get("security/payroll/db"))).await;
    bus.assert_denied(&reply, "path_not_granted").await;
    let reply = bus
        .signed(
            &billing,
            &billing.envelope(json!({"operation": "get_secret", "mount": "kv", "path": "security/billing/db"})),
        )
        .await;
    bus.assert_denied(&reply, "mount_not_granted").await;
    let batch = json!({"operation": "get_secrets_batch", "paths": ["security/billing/db", "security/payroll/db"]});
    bus.assert_denied(&bus.signed(&billing, &billing.envelope(batch)).await, "path_not_granted").await;

    // Unknown runtime: a valid signature by a runtime the node does not know.
    let envelope = stranger.envelope(get("security/billing/db"));
    bus.send_unanswered(&stranger.sign(&envelope), &envelope, "unknown_signer").await;
    // Forged: claims to be billing, signed by another key.
    let forged = Identity::with_keys(&billing.name, 2);
    let envelope = billing.envelope(get("security/billing/db"));
    bus.send_unanswered(&forged.sign(&envelope), &envelope, "invalid_signature").await;
    // Tampered after signing: the path changed inside the signed payload.
    let envelope = billing.envelope(get("security/billing/db"));
    let mut tampered = billing.sign(&envelope);
    tampered["payload"]["payload"]["path"] = "security/billing/dx".into();
    bus.send_unanswered(&tampered, &envelope, "hash_mismatch").await;
    // Signed in another realm, and a signer that is not the runtime named.
    let elsewhere = Identity::in_realm("other-realm", &billing.name, &billing.seed, 1);
    let envelope = billing.envelope(get("security/billing/db"));
    bus.send_unanswered(&elsewhere.sign(&envelope), &envelope, "realm_mismatch").await;
    let envelope = billing.envelope(get("security/billing/db"));
    let mut mismatched = billing.sign(&envelope);
    mismatched["runtime_id"] = "node_stranger".into();
    bus.send_unanswered(&mismatched, &envelope, "signer_is_not_runtime").await;
    // Not signed at all, and a signed envelope without its own id and timestamp.
    let envelope = billing.envelope(get("security/billing/db"));
    bus.send_unanswered(&envelope, &envelope, "unsigned").await;
    let mut unstamped = billing.envelope(get("security/billing/db"));
    let object = unstamped.as_object_mut().expect("object");
    object.remove("envelope_id");
    object.remove("envelope_timestamp");
    bus.send_unanswered(&billing.sign(&unstamped), &unstamped, "envelope_id_or_timestamp_missing").await;

    // Replayed: the same signed record again, to another partition, is
    // refused; the first succeeded.
    let envelope = billing.envelope(get("security/billing/db"));
    let signed = billing.sign(&envelope);
    let id = envelope["correlation_id"].as_str().expect("id");
    let first = bus.send_to(Some(0), &signed, id, false).await;
    assert_eq!(first["payload"]["status"], "success", "{first}");
    bus.send_unanswered_to(Some(1), &signed, id, "replayed", 1).await;
    let signature = signed["signature"]["signature"].as_str().unwrap_or("-").to_owned();

    // Expired and future timestamps (outside the 120 s window).
    for skew in [-600, 600] {
        let mut envelope = billing.envelope(get("security/billing/db"));
        envelope["envelope_timestamp"] = (chrono::Utc::now() + chrono::TimeDelta::seconds(skew)).to_rfc3339().into();
        bus.send_unanswered(&billing.sign(&envelope), &envelope, "timestamp_outside_window").await;
    }

    // Clear text needs the requester's permission; billing has none.
    let clear = json!({"operation": "get_secret", "path": "security/billing/db", "delivery": "clear"});
    bus.assert_denied(&bus.signed(&billing, &billing.envelope(clear)).await, "clear_delivery_not_allowed").await;
    // Answered after all of them: none of the unknown senders' records was.
    bus.assert_unanswered();

    // None of it reached the log, /metrics, the audit trail or the reply
    // topics: the secret, the keys, the signatures.
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", node.http_port))
        .await
        .expect("/metrics answers")
        .text()
        .await
        .expect("/metrics text");
    let text_of = |records: Vec<Record>| records.iter().map(|r| r.value_str().into_owned()).collect::<String>();
    let audit = text_of(bus.audit.all_records());
    let replies = text_of(bus.requester.watcher.all_records());
    node.stop();
    let log = node.log();
    assert!(log.contains("request denied by the security checks"), "denials are logged");
    for (what, needle) in [
        ("secret value", CANARY.to_owned()),
        ("billing signing key", billing.seed.clone()),
        ("billing sealing key", billing.sealer.private_key_base64()),
        ("a signature", signature.clone()),
    ] {
        for (place, text) in
            [("log", &log), ("/metrics", &metrics), ("audit trail", &audit), ("reply topics", &replies)]
        {
            assert!(!text.contains(&needle), "the {what} appears in the {place}");
        }
    }
    assert!(
        audit.contains("path_not_granted") && replies.contains("ONEX_CORE_025_PERMISSION_DENIED"),
        "the places searched are real"
    );
}

/// The replay ledger: a signed request is admitted once by the whole group,
/// whichever partitions and instances its copies reach (even at the same
/// moment), and a copy sent after every instance restarted is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_request_is_admitted_once_by_the_group_and_after_a_restart() {
    vault::write_kv("secret", "security/replay/db", &json!({"password": "once"})).await;
    let billing = Identity::new("node_billing");
    let policy = || vec![billing.policy(true, json!([{"operations": ["get_secret"], "paths": ["security/replay/*"]}]))];
    let mut first = Node::start_with(NodeOptions::default().strict(policy())).await;
    let mut second = Node::start_with(NodeOptions::default().strict(policy()).join(&first)).await;
    const ASSIGNED: &str = "onex_vault_adapter_assigned_partitions";
    let deadline = tokio::time::Instant::now() + REPLY_WAIT;
    // The group has settled when the two instances share the 3 partitions.
    loop {
        let (a, b) = (first.metric(ASSIGNED).await, second.metric(ASSIGNED).await);
        if a >= 1.0 && b >= 1.0 && a + b == 3.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the two instances never shared the partitions ({a}, {b})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bus = Bus::of(&first);
    let envelope =
        billing.envelope(json!({"operation": "get_secret", "path": "security/replay/db", "delivery": "clear"}));
    let signed = billing.sign(&envelope).to_string();
    let id = envelope["correlation_id"].as_str().expect("id").to_owned();

    // The same signed record on every partition at once: both instances see it.
    let copies = (0..3).map(|partition| bus.requester.send_raw_to(partition, signed.as_bytes()));
    futures_util::future::join_all(copies).await;
    let audits = bus
        .audit
        .wait_for_many(|r| r.correlation_id() == Some(id.as_str()), 3, REPLY_WAIT)
        .await
        .expect("an audit record per copy");
    let payloads: Vec<&Value> = audits.iter().map(|r| &r.json.as_ref().expect("JSON")["payload"]).collect();
    let admitted = payloads.iter().filter(|a| a["outcome"] == "success").count();
    let replayed = payloads.iter().filter(|a| a["denial"] == "replayed").count();
    assert_eq!((admitted, replayed), (1, 2), "exactly one copy admitted: {payloads:?}");
    let instances: std::collections::BTreeSet<&str> =
        payloads.iter().filter_map(|a| a["instance_id"].as_str()).collect();
    assert_eq!(instances.len(), 2, "both instances judged a copy: {payloads:?}");

    // Every instance restarts: the ledger outlives them.
    // One after the other, as a rolling restart (two members leaving within
    // one rebalance can leave a Tansu 0.6 group stuck: see docs/testing.md).
    first.stop();
    second.wait_for_metric(ASSIGNED, |p| p >= 3.0, REPLY_WAIT).await;
    second.stop();
    let third = Node::start_with(NodeOptions::default().strict(policy()).join(&first)).await;
    third.wait_for_metric(ASSIGNED, |p| p >= 3.0, REPLY_WAIT).await;
    bus.requester.send_raw_to(2, signed.as_bytes()).await;
    let audits = bus
        .audit
        .wait_for_many(|r| r.correlation_id() == Some(id.as_str()), 4, REPLY_WAIT)
        .await
        .expect("an audit record for the copy after the restart");
    let after = &audits[3].json.as_ref().expect("JSON")["payload"];
    assert_eq!(after["denial"], "replayed", "{after}");
    let old: std::collections::BTreeSet<&str> = instances.into_iter().collect();
    assert!(!old.contains(after["instance_id"].as_str().unwrap_or_default()), "a new instance refused it: {after}");
}

/// Sealed batches, wrapped replies (unwrapped once, in Vault) and clear
/// delivery for a requester the policy allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_wrapped_and_clear_delivery() {
    vault::write_kv("secret", "security/shared/db/main", &json!({"password": CANARY})).await;
    vault::write_kv("secret", "security/billing/api", &json!({"key": "api-key-1"})).await;
    let billing = Identity::new("node_billing");
    let ops = Identity::new("node_ops");
    let mut billing_policy = billing.policy(false, grants_billing());
    billing_policy["wrapped_delivery"] = true.into();
    let mut node = Node::start_strict(
        vec![billing_policy, ops.policy(true, json!([{"operations": ["get_secret"], "paths": ["security/**"]}]))],
        |_| {},
    )
    .await;
    let bus = Bus::of(&node);

    // A sealed batch: one sealed box holds every path's result.
    let batch = json!({"operation": "get_secrets_batch", "paths": ["security/shared/db/main", "security/billing/api"]});
    let reply = bus.signed(&billing, &billing.envelope(batch)).await;
    assert_eq!(reply["payload"]["status"], "success", "{reply}");
    let Ok(OperationResult::GetSecretsBatch(batch)) = sealed_result(&reply).open(&billing.sealer, correlation(&reply))
    else {
        panic!("a sealed batch does not open: {reply}")
    };
    assert_eq!(batch.results.len(), 2);
    assert_eq!(batch.results[0].data.as_ref().expect("data").expose_secret()["password"], CANARY);

    // Wrapped needs its own grant: whoever reads the reply first can unwrap.
    let wrapped = json!({"operation": "get_secret", "path": "security/shared/db/main", "delivery": "wrapped"});
    let reply = bus.signed(&ops, &ops.envelope(wrapped.clone())).await;
    bus.assert_denied(&reply, "wrapped_delivery_not_allowed").await;
    // Wrapped: only a token in the reply; Vault unwraps it once.
    let reply = bus.signed(&billing, &billing.envelope(wrapped)).await;
    assert_eq!(reply["payload"]["status"], "success", "{reply}");
    let result = &reply["payload"]["result"];
    assert_eq!(result["delivery"], "wrapped", "{reply}");
    assert!(!reply.to_string().contains(CANARY), "{reply}");
    assert!(result["ttl_seconds"].as_u64().is_some_and(|ttl| ttl > 0 && ttl <= 120), "{reply}");
    let token = result["wrap_token"].as_str().expect("a wrapping token").to_owned();
    let unwrapped = vault::request_with_token(&token, Method::POST, "sys/wrapping/unwrap", None).await;
    assert!(unwrapped.is_success(), "first unwrap: {}", unwrapped.errors());
    assert_eq!(unwrapped.body["data"]["data"]["password"], CANARY, "{:?}", unwrapped.body);
    let again = vault::request_with_token(&token, Method::POST, "sys/wrapping/unwrap", None).await;
    assert!(!again.is_success(), "a wrapping token must unwrap only once");

    // Clear, for the requester allowed it, by default of the request too.
    let clear = json!({"operation": "get_secret", "path": "security/shared/db/main", "delivery": "clear"});
    let reply = bus.signed(&ops, &ops.envelope(clear)).await;
    assert_eq!(reply["payload"]["result"]["data"]["password"], CANARY, "{reply}");

    node.stop();
    let log = node.log();
    assert!(!log.contains(CANARY), "the secret value appears in the node log");
    assert!(!log.contains(&token), "the wrapping token appears in the node log");
}

/// Requester keys kept in Vault: read at start, re-read at the interval, so
/// a key rotated in Vault is accepted (and the old one refused) without a
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requester_keys_rotate_through_vault() {
    vault::write_kv("secret", "security/rotating/db", &json!({"password": "rotating"})).await;
    let old = Identity::new("node_rotating");
    let new = Identity::with_keys(&old.name, 2);
    let keys_path = format!("security/requester-keys-{}", Uuid::new_v4().simple());
    let keys_of = |who: &Identity| {
        json!({ who.name.clone(): {
            "signing_keys": [{"id": format!("{}-sign", who.sealer.key_id()), "public_key": who.signer.public_key_base64()}],
            "sealing_key": {"id": who.sealer.key_id(), "public_key": who.sealer.public_key_base64()},
        }})
    };
    vault::write_kv("secret", &keys_path, &keys_of(&old)).await;
    // The contract names the requester and its grants, but no keys.
    // A broad grant too: it must still not reach the node's own key list.
    let policy = json!({"runtime_id": "node_rotating", "grants": [
        {"operations": ["get_secret"], "paths": ["security/rotating/*"]},
        {"operations": ["get_secret", "set_secret", "delete_secret", "undelete_versions", "write_metadata"],
         "mounts": ["*"], "paths": ["**"]}]});
    let source = keys_path.clone();
    let node = Node::start_strict(vec![policy], move |contract| {
        contract["access_policy"]["vault_keys"] = serde_yaml::to_value(
            json!({"mount": "secret", "path": source, "refresh_seconds": 1, "max_stale_seconds": 2}),
        )
        .expect("YAML");
    })
    .await;
    let bus = Bus::of(&node);
    let get = json!({"operation": "get_secret", "path": "security/rotating/db"});

    let reply = bus.signed(&old, &old.envelope(get.clone())).await;
    assert_eq!(reply["payload"]["status"], "success", "the key from Vault is used at start: {reply}");

    vault::write_kv("secret", &keys_path, &keys_of(&new)).await;
    // The node re-reads every second: ask with the new key until it is known.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match bus.signed_or_unanswered(&new, &new.envelope(get.clone())).await {
            Ok(reply) => {
                assert_eq!(reply["payload"]["status"], "success", "{reply}");
                let opened = sealed_result(&reply).open(&new.sealer, correlation(&reply));
                assert!(opened.is_ok(), "sealed to the rotated sealing key: {reply}");
                break;
            }
            Err(audit) => assert_eq!(audit["denial"], "invalid_signature", "{audit}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "the rotated key was never picked up");
    }
    let envelope = old.envelope(get);
    bus.send_unanswered(&old.sign(&envelope), &envelope, "invalid_signature").await;

    // Reserved, whatever the grants: the key list itself (read, overwrite,
    // delete, undelete) and Vault's own mounts through a `*` mount grant.
    let before = vault::read_kv("secret", &keys_path).await.expect("the key list");
    let forged_keys =
        json!({"node_rotating": {"signing_keys": [{"id": "evil", "public_key": old.signer.public_key_base64()}]}});
    for payload in [
        json!({"operation": "get_secret", "path": keys_path}),
        json!({"operation": "set_secret", "path": keys_path, "data": forged_keys}),
        json!({"operation": "delete_secret", "path": keys_path}),
        json!({"operation": "undelete_versions", "path": keys_path, "versions": [1]}),
        json!({"operation": "get_secret", "mount": "cubbyhole", "path": "anything"}),
        json!({"operation": "get_secret", "mount": "sys", "path": "anything"}),
        json!({"operation": "get_secret", "mount": "auth/token", "path": "anything"}),
    ] {
        let reply = bus.signed(&new, &new.envelope(payload.clone())).await;
        bus.assert_denied(&reply, "reserved_path").await;
    }
    assert_eq!(vault::read_kv("secret", &keys_path).await.expect("the key list"), before, "the key list changed");

    // The key list goes away in Vault (refreshes fail): after max_stale_seconds
    // its keys are no longer trusted, and /ready says why.
    vault::request(Method::DELETE, &format!("secret/metadata/{keys_path}"), None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = node.http_get("/ready").await;
        if status == 503 && body["reason"].as_str().is_some_and(|r| r.contains("requester keys")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale keys never made the node unready: {status} {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let envelope = new.envelope(json!({"operation": "get_secret", "path": "security/rotating/db"}));
    bus.send_unanswered(&new.sign(&envelope), &envelope, "unknown_signer").await;
}

/// The dev profile says loudly that it checks nothing, and the health event
/// carries the warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_profile_warns_at_start_and_in_health_events() {
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_SECURITY_PROFILE", "dev")
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1"),
    )
    .await;
    let health = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));
    let event = health
        .wait_for(
            |r| r.json.as_ref().is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["phase"] == "running"),
            REPLY_WAIT,
        )
        .await
        .expect("a periodic health event");
    let security = &event.json.expect("JSON")["payload"]["health_metrics"]["custom_metrics"]["security"];
    assert_eq!(security["profile"], "dev", "{security}");
    assert!(security["warnings"][0].as_str().is_some_and(|w| w.contains("NOT authenticated")), "{security}");
    let log = node.log();
    assert!(log.contains("security profile dev"), "no start-up warning in the log");
}

/// The operator's path: `keygen` writes an identity file (0600) and prints the
/// policy entry; a strict node with that entry answers `send --identity`,
/// whose sealed reply the CLI opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_and_send_with_an_identity_work_against_a_strict_node() {
    use std::os::unix::fs::PermissionsExt as _;
    vault::write_kv("secret", "security/cli/db", &json!({"password": "cli-secret"})).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = env!("CARGO_BIN_EXE_onex-vault-adapter");
    let keygen = std::process::Command::new(bin)
        .args(["keygen", "node_cli", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run keygen");
    assert!(keygen.status.success(), "{}", String::from_utf8_lossy(&keygen.stderr));
    let identity_file = dir.path().join("node_cli.identity.json");
    let mode = std::fs::metadata(&identity_file).expect("identity file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the identity file must be private");
    let printed = String::from_utf8_lossy(&keygen.stdout).to_string();
    let mut entries: Vec<Value> = serde_yaml::from_str(&printed).expect("keygen prints a YAML policy entry");
    entries[0]["grants"] = json!([{"operations": ["get_secret"], "paths": ["security/cli/*"]}]);
    let private = std::fs::read_to_string(&identity_file).expect("read identity");
    assert!(!printed.contains(
        &serde_json::from_str::<Value>(&private).expect("JSON")["signing_key"]["private_key"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    ));

    let node = Node::start_strict(entries, |_| {}).await;
    let request = dir.path().join("get.json");
    std::fs::write(&request, json!({"payload": {"operation": "get_secret", "path": "security/cli/db"}}).to_string())
        .expect("write request");
    let topics = &node.topics;
    let send = |identity: Option<&std::path::Path>, timeout: &str| {
        let mut command = std::process::Command::new(bin);
        command
            .arg("send")
            .arg(&request)
            .args(["--bootstrap-servers", &servers().bootstrap_servers()])
            .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
            .args(["--failed-topic", &topics.failed, "--timeout-seconds", timeout]);
        if let Some(identity) = identity {
            command.arg("--identity").arg(identity).args(["--realm", NODE_REALM]);
            // `=`: a URL-safe base64 key may start with `-`.
            command.arg(format!("--node-key={}", node_identity().public_key_base64()));
            command.arg(format!("--node-runtime-id={}", node_identity().runtime_id));
        }
        command.output().expect("run send")
    };
    let signed = send(Some(&identity_file), "40");
    let stdout = String::from_utf8_lossy(&signed.stdout);
    assert!(signed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&signed.stderr));
    let reply: Value = serde_json::from_str(&stdout).expect("send prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "cli-secret", "the CLI opens the sealed reply: {reply}");
    // Unsigned: the strict node does not answer a sender it cannot name;
    // the CLI gives up at its timeout (exit 2, no reply printed).
    let unsigned = send(None, "3");
    assert_eq!(unsigned.status.code(), Some(2), "{}", String::from_utf8_lossy(&unsigned.stdout));
    assert!(unsigned.stdout.is_empty(), "{}", String::from_utf8_lossy(&unsigned.stdout));
}

/// The shipped Vault policy lets the node read its requester key list
/// (`secret/onex-node/…`) and nothing more there, while it may still write
/// requesters' secrets: even a bug in the node could not rewrite its trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_vault_policy_keeps_the_key_list_read_only() {
    let policy = format!("onex-vault-adapter-shipped-{}", Uuid::new_v4().simple());
    vault::put_policy(&policy, include_str!("../deploy/vault/onex-vault-adapter-policy.hcl")).await;
    let token = vault::create_token(&[&policy], "10m", false).await;
    let keys = format!("onex-node/vault-adapter/keys-{}", Uuid::new_v4().simple());
    vault::write_kv("secret", &keys, &json!({"node_billing": {"signing_keys": []}})).await;

    let read = vault::request_with_token(&token, Method::GET, &format!("secret/data/{keys}"), None).await;
    assert!(read.is_success(), "the node reads its key list: {}", read.errors());
    let body = json!({"data": {"node_billing": {"signing_keys": [{"id": "evil", "public_key": "x"}]}}});
    for (method, path, body) in [
        (Method::POST, format!("secret/data/{keys}"), Some(&body)),
        (Method::DELETE, format!("secret/data/{keys}"), None),
        (Method::POST, format!("secret/undelete/{keys}"), Some(&json!({"versions": [1]}))),
        (Method::POST, format!("secret/destroy/{keys}"), Some(&json!({"versions": [1]}))),
        (Method::DELETE, format!("secret/metadata/{keys}"), None),
    ] {
        let answer = vault::request_with_token(&token, method.clone(), &path, body).await;
        assert_eq!(answer.status.as_u16(), 403, "{method} {path} must be denied: {:?}", answer.body);
    }
    let app = format!("security/policy-check-{}", Uuid::new_v4().simple());
    let write = vault::request_with_token(&token, Method::POST, &format!("secret/data/{app}"), Some(&body)).await;
    assert!(write.is_success(), "requesters' secrets stay writable: {}", write.errors());
}
