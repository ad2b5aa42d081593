//! Hostile and broken input: each record gets its typed error reply or dead
//! letter, the very next valid request is still answered, and no secret value
//! or token ever reaches a log line.

mod support;

use base64::Engine as _;
use serde_json::{json, Value};
use support::node::{Node, NodeOptions, Requester};
use support::{servers, vault};

const CANARY: &str = "canary-5e1f0c7a-never-log-me";

/// Sends a valid request and checks it is answered: the node goes on.
async fn still_answers(requester: &Requester, path: &str) {
    let reply = requester.call(json!({"operation": "get_secret", "path": path})).await;
    assert_eq!(reply["status"], "success", "the node stopped answering valid requests: {reply}");
}

fn dead_letter_for(requester: &Requester, marker: &'static str) -> impl Fn(&support::bus::Record) -> bool {
    let dlq = requester.topics().dlq.clone();
    move |record| {
        record.topic == dlq
            && record.json.as_ref().is_some_and(|j| {
                let value = j["payload"]["original_value"].as_str().unwrap_or_default();
                let decoded = base64::engine::general_purpose::STANDARD.decode(value).unwrap_or_default();
                String::from_utf8_lossy(&decoded).contains(marker)
            })
    }
}

#[tokio::test]
async fn bad_records_are_answered_or_dead_lettered_and_the_node_goes_on() {
    let probe = "bad-input/probe";
    vault::write_kv("secret", probe, &json!({"ok": "yes"})).await;
    let mut node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .edit(|contract| contract["event_bus"]["max_record_bytes"] = 4096.into()),
    )
    .await;
    let requester = node.requester();
    let wait = support::node::REPLY_WAIT;

    // Not JSON: dead letter (no correlation id, so no reply), original kept.
    requester.send_raw(Some(b"raw-key"), b"this is not json {marker-1").await;
    let letter = requester.watcher.wait_for(dead_letter_for(&requester, "marker-1"), wait).await.expect("dead letter");
    let body = letter.json.clone().expect("json");
    let dead = &body["payload"];
    assert_eq!(dead["error_type"], "ONEX_CORE_007_INVALID_INPUT");
    assert_eq!(dead["original_topic"], requester.topics().requests);
    assert!(dead["original_offset"].as_i64().is_some());
    assert_eq!(dead["original_key"], base64::engine::general_purpose::STANDARD.encode("raw-key"));
    assert!(dead["failure_reason"].as_str().is_some_and(|r| r.contains("not JSON")), "{dead}");
    assert_eq!(dead["correlation_id"], Value::Null);
    assert_eq!(letter.key.as_deref(), Some(&b"raw-key"[..]), "dead letter keeps the original key");
    still_answers(&requester, probe).await;

    // A broken envelope (an envelope_id that is not a UUID) with a readable
    // correlation id: dead letter and a failed reply.
    let mut broken = Requester::envelope(json!({"operation": "get_secret", "path": "marker-2"}));
    broken["envelope_id"] = json!(7);
    requester.send_raw(None, broken.to_string().as_bytes()).await;
    let reply = requester.reply_to(broken["correlation_id"].as_str().expect("id")).await;
    assert_eq!(reply.topic, requester.topics().failed);
    let reply = reply.json.expect("json");
    assert_eq!(reply["payload"]["error"]["code"], "ONEX_CORE_007_INVALID_INPUT");
    assert!(reply["payload"]["error"]["message"].as_str().is_some_and(|m| m.contains("envelope_id")), "{reply}");
    requester.watcher.wait_for(dead_letter_for(&requester, "marker-2"), wait).await.expect("dead letter");
    still_answers(&requester, probe).await;

    // Payload problems: a typed error reply each, no dead letter.
    let cases = [
        (json!({"operation": "get_secret"}), "ONEX_CORE_007_INVALID_INPUT", "missing field `path`"),
        (
            json!({"operation": "get_secret", "path": "a", "verison": 2}),
            "ONEX_CORE_007_INVALID_INPUT",
            "unknown field `verison`",
        ),
        (
            json!({"operation": "drop_all_secrets", "path": "a"}),
            "ONEX_CORE_084_UNSUPPORTED_OPERATION",
            "drop_all_secrets",
        ),
        (json!({"operation": "get_secret", "path": "../../sys/seal"}), "ONEX_CORE_007_INVALID_INPUT", "'..'"),
        (
            json!({"operation": "get_secret", "path": "/etc/passwd"}),
            "ONEX_CORE_007_INVALID_INPUT",
            "must not start with '/'",
        ),
        (
            json!({"operation": "get_secret", "path": "a?list=true"}),
            "ONEX_CORE_007_INVALID_INPUT",
            "control character or one of",
        ),
        (
            json!({"operation": "get_secret", "mount": "sys/../x", "path": "a"}),
            "ONEX_CORE_007_INVALID_INPUT",
            "`mount`",
        ),
        (json!({"operation": "get_secret", "path": 42}), "ONEX_CORE_007_INVALID_INPUT", "invalid type"),
        (json!({"operation": "set_secret", "path": "a", "data": {}}), "ONEX_CORE_007_INVALID_INPUT", "payload.data"),
    ];
    for (payload, code, detail) in cases {
        let reply = requester.call(payload.clone()).await;
        assert_eq!(reply["error"]["code"], code, "{payload} → {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(detail), "{payload}: {message:?} should mention {detail:?}");
        assert_eq!(reply["error"]["retryable"], false);
    }
    still_answers(&requester, probe).await;

    // Oversized record: refused from its length alone, before any parsing, so
    // the reply finds its requester through the correlation_id header (as
    // omnibase-infra's bus writes it); a dead letter with the data redacted.
    let big = Requester::envelope(json!({
        "operation": "set_secret", "path": "marker-3", "data": {"blob": "x".repeat(8192)}
    }));
    let big_id = big["correlation_id"].as_str().expect("id").to_owned();
    requester
        .send_raw_with_headers(Some(b"marker-3"), big.to_string().as_bytes(), &[("correlation_id", &big_id)])
        .await;
    let reply = requester.reply_to(big["correlation_id"].as_str().expect("id")).await.json.expect("json");
    assert_eq!(reply["payload"]["error"]["code"], "ONEX_CORE_007_INVALID_INPUT");
    assert!(reply["payload"]["error"]["message"].as_str().is_some_and(|m| m.contains("over the limit")), "{reply}");
    let letter = requester.watcher.wait_for(dead_letter_for(&requester, "marker-3"), wait).await.expect("dead letter");
    let dead = &letter.json.expect("json")["payload"];
    assert!(dead["original_value_bytes"].as_u64().is_some_and(|n| n > 8192));
    assert_eq!(dead["original_value_truncated"], false, "limit is 64 KiB by default: kept whole");
    assert_eq!(dead["original_value_redacted"], true, "the data is not copied");
    assert!(vault::read_kv("secret", "marker-3").await.is_none(), "an oversized write reached Vault");
    still_answers(&requester, probe).await;

    // Not JSON, but a correlation_id header: the requester still hears back.
    let header_id = uuid::Uuid::new_v4().to_string();
    requester.send_raw_with_headers(None, b"{garbled marker-5", &[("correlation_id", &header_id)]).await;
    let reply = requester.reply_to(&header_id).await.json.expect("json");
    assert_eq!(reply["payload"]["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{reply}");
    requester.watcher.wait_for(dead_letter_for(&requester, "marker-5"), wait).await.expect("dead letter");

    // An empty record and a JSON array.
    requester.send_raw(None, b"").await;
    requester.send_raw(None, b"[\"marker-4\"]").await;
    requester.watcher.wait_for(dead_letter_for(&requester, "marker-4"), wait).await.expect("dead letter");
    still_answers(&requester, probe).await;
    assert_eq!(node.stop(), Some(0));
}

#[tokio::test]
async fn a_canary_secret_never_appears_in_the_log() {
    let root_token = servers().root_token().to_owned();
    let mut node = Node::start().await;
    let requester = node.requester();

    // The canary goes through every path a value can take: written, read,
    // listed, refused as a wrong type, refused in a bad path, and dead-lettered.
    let written =
        requester.call(json!({"operation": "set_secret", "path": "canary/app", "data": {"password": CANARY}})).await;
    assert_eq!(written["status"], "success", "{written}");
    let read = requester.call(json!({"operation": "get_secret", "path": "canary/app"})).await;
    assert_eq!(read["result"]["data"]["password"], CANARY, "the reply carries the value");
    requester.call(json!({"operation": "get_secret", "path": "canary/app", "version": CANARY})).await;
    requester.call(json!({"operation": "get_secret", "path": format!("../{CANARY}")})).await;
    requester.call(json!({"operation": "set_secret", "path": "canary/app", "data": {"p": CANARY}, "cas": 0})).await;
    requester.call(json!({"operation": "list_secrets", "path": "canary/"})).await;
    let mut broken = Requester::envelope(json!({"operation": "set_secret", "path": "canary/x", "data": {"p": CANARY}}));
    broken["envelope_timestamp"] = json!(CANARY);
    requester.send_raw(None, broken.to_string().as_bytes()).await;
    requester.reply_to(broken["correlation_id"].as_str().expect("id")).await;
    requester.send_raw(None, format!("{{\"password\": \"{CANARY}\"").as_bytes()).await;
    still_answers(&requester, "canary/app").await;

    assert_eq!(node.stop(), Some(0));
    let log = node.log();
    let lines = log.lines().count();
    assert!(lines > 10, "the node logged too little to prove anything ({lines} lines):\n{log}");
    for (number, line) in log.lines().enumerate() {
        assert!(!line.contains(CANARY), "line {number} of the log carries the canary: {line}");
        assert!(!line.contains(&root_token), "line {number} of the log carries the Vault token: {line}");
        assert!(!line.contains("canary/app"), "line {number} carries an unmasked path: {line}");
    }
}
