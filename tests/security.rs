//! Security in the `strict` profile, attacked through the running node: signed
//! requests, replays and stale timestamps, the access policy (default deny),
//! sealed, wrapped and clear delivery, keys kept in Vault and rotated there,
//! and no secret, token or key in the node's log.

mod support;

use std::time::Duration;

use onex_vault_models::{OperationResult, RequestSigner, SealedResult, SealingSecretKey, SIGNATURE_HEADER};
use reqwest::Method;
use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{Node, NodeOptions, Requester, REPLY_WAIT};
use support::{servers, vault};
use uuid::Uuid;

const CANARY: &str = "canary-sec-9d1b7e-never-log-me";

/// A requester node as the access policy knows it: its name, its signing key
/// and its sealing key (the private halves stay in the test).
struct Identity {
    name: String,
    signer: RequestSigner,
    sealer: SealingSecretKey,
}

impl Identity {
    fn new(name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            signer: RequestSigner::generate(&format!("{name}-sign-1")).expect("signing key"),
            sealer: SealingSecretKey::generate(&format!("{name}-seal-1")).expect("sealing key"),
        }
    }

    /// Its `access_policy.requesters` entry.
    fn policy(&self, clear_delivery: bool, grants: Value) -> Value {
        json!({
            "name": self.name,
            "signing_keys": [{"id": self.signer.key_id(), "public_key": self.signer.public_key_base64()}],
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
}

/// What the test sends and sees: the requester, plus the audit trail.
struct Bus {
    requester: Requester,
    audit: ReplyWatcher,
}

impl Bus {
    fn of(node: &Node) -> Bus {
        let requester = node.requester();
        let audit = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.audit));
        Bus { requester, audit }
    }

    /// Sends `value` with `signature` (if any) and waits for a reply on the
    /// completed or failed topic (`failed_only`: the failed topic).
    async fn send(&self, value: &[u8], signature: Option<&str>, failed_only: bool) -> Value {
        let headers: Vec<(&str, &str)> = signature.map(|s| (SIGNATURE_HEADER, s)).into_iter().collect();
        self.requester.send_raw_with_headers(None, value, &headers).await;
        let envelope: Value = serde_json::from_slice(value).expect("test envelopes are JSON");
        let id = envelope["correlation_id"].as_str().expect("correlation_id").to_owned();
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
        reply.json.expect("reply is JSON")
    }

    /// Signs `envelope` as `who` and sends it.
    async fn signed(&self, who: &Identity, envelope: &Value) -> Value {
        let value = envelope.to_string();
        let signature = who.signer.sign(&self.requester.topics().requests, value.as_bytes());
        self.send(value.as_bytes(), Some(&signature), false).await
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
        let audit = self.audit_where(id, |a| a["error_code"] == "ONEX_CORE_025_PERMISSION_DENIED").await;
        assert_eq!(audit["denial"], reason, "audit: {audit}");
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

    // Unknown requester: a valid signature by a key the node does not know.
    let reply = bus.signed(&stranger, &stranger.envelope(get("security/billing/db"))).await;
    bus.assert_denied(&reply, "unknown_requester").await;
    // Forged: claims to be billing, signed by another key under billing's key id.
    let forger = RequestSigner::generate(billing.signer.key_id()).expect("key");
    let forged = Identity { name: billing.name.clone(), signer: forger, sealer: Identity::new("x").sealer };
    let reply = bus.signed(&forged, &billing.envelope(get("security/billing/db"))).await;
    bus.assert_denied(&reply, "bad_signature").await;
    // Tampered after signing: the path changed in the signed bytes.
    let value = billing.envelope(get("security/billing/db")).to_string();
    let signature = billing.signer.sign(&bus.requester.topics().requests, value.as_bytes());
    let tampered = value.replace("security/billing/db", "security/billing/dx");
    bus.assert_denied(&bus.send(tampered.as_bytes(), Some(&signature), false).await, "bad_signature").await;
    // Signed for another topic.
    let signature = billing.signer.sign("onex.cmd.other.vault-request.v1", value.as_bytes());
    bus.assert_denied(&bus.send(value.as_bytes(), Some(&signature), false).await, "bad_signature").await;
    // No signature at all, and garbage in the header.
    let value = billing.envelope(get("security/billing/db")).to_string();
    bus.assert_denied(&bus.send(value.as_bytes(), None, false).await, "signature_missing").await;
    let value = billing.envelope(get("security/billing/db")).to_string();
    bus.assert_denied(&bus.send(value.as_bytes(), Some("v1;key_id=x;sig=!!"), false).await, "signature_malformed")
        .await;

    // Replayed: the same signed record again is refused; the first succeeded.
    let value = billing.envelope(get("security/billing/db")).to_string();
    let signature = billing.signer.sign(&bus.requester.topics().requests, value.as_bytes());
    let first = bus.send(value.as_bytes(), Some(&signature), false).await;
    assert_eq!(first["payload"]["status"], "success", "{first}");
    let again = bus.send(value.as_bytes(), Some(&signature), true).await;
    bus.assert_denied(&again, "replayed").await;

    // Expired and future timestamps (outside the 120 s window).
    for skew in [-600, 600] {
        let mut envelope = billing.envelope(get("security/billing/db"));
        envelope["envelope_timestamp"] = (chrono::Utc::now() + chrono::TimeDelta::seconds(skew)).to_rfc3339().into();
        bus.assert_denied(&bus.signed(&billing, &envelope).await, "timestamp_outside_window").await;
    }

    // Clear text needs the requester's permission; billing has none.
    let clear = json!({"operation": "get_secret", "path": "security/billing/db", "delivery": "clear"});
    bus.assert_denied(&bus.signed(&billing, &billing.envelope(clear)).await, "clear_delivery_not_allowed").await;

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
        ("billing signing key", billing.signer.private_key_base64()),
        ("billing sealing key", billing.sealer.private_key_base64()),
        ("a signature", signature.split("sig=").nth(1).unwrap_or("-").to_owned()),
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

/// Sealed batches, wrapped replies (unwrapped once, in Vault) and clear
/// delivery for a requester the policy allows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_wrapped_and_clear_delivery() {
    vault::write_kv("secret", "security/shared/db/main", &json!({"password": CANARY})).await;
    vault::write_kv("secret", "security/billing/api", &json!({"key": "api-key-1"})).await;
    let billing = Identity::new("node_billing");
    let ops = Identity::new("node_ops");
    let mut node = Node::start_strict(
        vec![
            billing.policy(false, grants_billing()),
            ops.policy(true, json!([{"operations": ["get_secret"], "paths": ["security/**"]}])),
        ],
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

    // Wrapped: only a token in the reply; Vault unwraps it once.
    let wrapped = json!({"operation": "get_secret", "path": "security/shared/db/main", "delivery": "wrapped"});
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
    let new = Identity {
        name: old.name.clone(),
        signer: RequestSigner::generate("node_rotating-sign-2").expect("key"),
        sealer: SealingSecretKey::generate("node_rotating-seal-2").expect("key"),
    };
    let keys_path = format!("security/requester-keys-{}", Uuid::new_v4().simple());
    let keys_of = |who: &Identity| {
        json!({ who.name.clone(): {
            "signing_keys": [{"id": who.signer.key_id(), "public_key": who.signer.public_key_base64()}],
            "sealing_key": {"id": who.sealer.key_id(), "public_key": who.sealer.public_key_base64()},
        }})
    };
    vault::write_kv("secret", &keys_path, &keys_of(&old)).await;
    // The contract names the requester and its grants, but no keys.
    let policy =
        json!({"name": "node_rotating", "grants": [{"operations": ["get_secret"], "paths": ["security/rotating/*"]}]});
    let source = keys_path.clone();
    let node = Node::start_strict(vec![policy], move |contract| {
        contract["access_policy"]["vault_keys"] =
            serde_yaml::to_value(json!({"mount": "secret", "path": source, "refresh_seconds": 1})).expect("YAML");
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
        let reply = bus.signed(&new, &new.envelope(get.clone())).await;
        if reply["payload"]["status"] == "success" {
            let opened = sealed_result(&reply).open(&new.sealer, correlation(&reply));
            assert!(opened.is_ok(), "sealed to the rotated sealing key: {reply}");
            break;
        }
        bus.assert_denied(&reply, "unknown_key").await;
        assert!(tokio::time::Instant::now() < deadline, "the rotated key was never picked up");
    }
    let reply = bus.signed(&old, &old.envelope(get)).await;
    bus.assert_denied(&reply, "unknown_key").await;
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
    let send = |identity: Option<&std::path::Path>| {
        let mut command = std::process::Command::new(bin);
        command
            .arg("send")
            .arg(&request)
            .args(["--bootstrap-servers", &servers().bootstrap_servers()])
            .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
            .args(["--failed-topic", &topics.failed, "--timeout-seconds", "40"]);
        if let Some(identity) = identity {
            command.arg("--identity").arg(identity);
        }
        command.output().expect("run send")
    };
    let signed = send(Some(&identity_file));
    let stdout = String::from_utf8_lossy(&signed.stdout);
    assert!(signed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&signed.stderr));
    let reply: Value = serde_json::from_str(&stdout).expect("send prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "cli-secret", "the CLI opens the sealed reply: {reply}");
    let unsigned = send(None);
    assert_eq!(unsigned.status.code(), Some(1), "{}", String::from_utf8_lossy(&unsigned.stdout));
    assert!(String::from_utf8_lossy(&unsigned.stdout).contains("ONEX_CORE_025_PERMISSION_DENIED"));
}
