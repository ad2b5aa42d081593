//! Every operation against the real stack (OpenBao + Kafka broker), driven
//! over Kafka as another ONEX node would, with effects checked through a
//! direct Vault client rather than through the node.

mod support;

use serde_json::{json, Value};
use support::node::{Node, NodeOptions, Requester};
use support::{servers, vault};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error reply: {reply}"))
}

#[tokio::test]
async fn kv_operations_end_to_end() {
    eprintln!("stack: {}", servers().stack_name());
    let mut node = Node::start().await;
    let requester = node.requester();
    let base = unique("app");

    // A secret written directly into Vault comes back through Kafka.
    vault::write_kv("secret", &format!("{base}/db"), &json!({"user": "svc", "password": "pw-1"})).await;
    let envelope = Requester::envelope(json!({"operation": "get_secret", "path": format!("{base}/db")}));
    let record = requester.send(&envelope).await;
    assert_eq!(record.topic, node.topics.completed, "success goes to the completed topic");
    let reply = record.json.clone().expect("json reply");
    let correlation_id = envelope["correlation_id"].as_str().expect("id");
    assert_eq!(record.key.as_deref(), Some(correlation_id.as_bytes()), "key = correlation_id");
    // Headers as omnibase-infra's Kafka bus writes them (its conformance
    // suite reads them with upstream's own code: tests/conformance).
    assert_eq!(record.header("content_type"), Some("application/json"));
    assert_eq!(record.header("event_type"), Some(node.topics.completed.as_str()));
    assert_eq!(record.header("source"), Some("node_infrastructure_vault_adapter_effect"));
    assert_eq!(record.header("correlation_id"), Some(correlation_id));
    assert_eq!(record.header("message_id"), reply["envelope_id"].as_str());
    assert_eq!(record.header("parent_message_id"), envelope["envelope_id"].as_str());
    assert_eq!(record.header("operation_name"), Some("get_secret"));
    assert_eq!(reply["parent_envelope_id"], envelope["envelope_id"]);
    assert!(reply.get("causation_id").is_none(), "upstream's envelope has no causation_id");
    assert_eq!(
        reply["envelope_version"],
        json!({"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null})
    );
    // `<producer>.<event>` of the topic, as upstream derives it.
    let event = node.topics.completed.split('.').skip(2).take(2).collect::<Vec<_>>().join(".");
    assert_eq!(reply["event_type"], event.as_str());
    assert_eq!(reply["target_tool"], "node_test_requester");
    assert_eq!(reply["source_tool"], "node_infrastructure_vault_adapter_effect");
    assert_eq!(reply["metadata"]["trace_id"], "trace-abc");
    let payload = &reply["payload"];
    assert_eq!(payload["status"], "success");
    assert_eq!(payload["operation"], "get_secret");
    assert_eq!(payload["result"]["data"], json!({"user": "svc", "password": "pw-1"}));
    assert_eq!(payload["result"]["metadata"]["version"], 1);
    assert_eq!(payload["result"]["metadata"]["destroyed"], false);
    assert!(payload["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));

    // set_secret writes a new version, visible to a direct reader.
    let set = requester
        .call(json!({"operation": "set_secret", "path": format!("{base}/db"), "data": {"user": "svc", "password": "pw-2"}}))
        .await;
    assert_eq!(set["status"], "success", "{set}");
    assert_eq!(set["result"]["version"], 2);
    assert_eq!(vault::read_kv("secret", &format!("{base}/db")).await, Some(json!({"user": "svc", "password": "pw-2"})));

    // Check-and-set: create-only on an existing secret is a conflict; the right version passes.
    let conflict = requester
        .call(json!({"operation": "set_secret", "path": format!("{base}/db"), "data": {"x": "y"}, "cas": 0}))
        .await;
    assert_eq!(error_code(&conflict), "ONEX_CORE_086_INVALID_STATE");
    assert_eq!(conflict["error"]["retryable"], false);
    let cas_ok = requester
        .call(json!({"operation": "set_secret", "path": format!("{base}/db"), "data": {"x": "y"}, "cas": 2}))
        .await;
    assert_eq!(cas_ok["result"]["version"], 3, "{cas_ok}");

    // An older version by number.
    let v1 = requester.call(json!({"operation": "get_secret", "path": format!("{base}/db"), "version": 1})).await;
    assert_eq!(v1["result"]["data"]["password"], "pw-1");

    // Listing: a folder, an empty or missing folder, a missing mount.
    vault::write_kv("secret", &format!("{base}/nested/key"), &json!({"k": "v"})).await;
    let listed = requester.call(json!({"operation": "list_secrets", "path": format!("{base}/")})).await;
    assert_eq!(listed["result"]["keys"], json!(["db", "nested/"]), "{listed}");
    let empty = requester.call(json!({"operation": "list_secrets", "path": unique("nothing-here")})).await;
    assert_eq!(empty["status"], "success");
    assert_eq!(empty["result"]["keys"], json!([]));
    let no_mount = requester.call(json!({"operation": "list_secrets", "mount": "no-such-mount", "path": ""})).await;
    assert_eq!(error_code(&no_mount), "ONEX_CORE_085_RESOURCE_NOT_FOUND", "{no_mount}");

    // Soft delete of the latest version, then reading it is not found.
    let deleted = requester.call(json!({"operation": "delete_secret", "path": format!("{base}/db")})).await;
    assert_eq!(deleted["result"], json!({"deleted": true, "versions": [3]}));
    let metadata = vault::kv_metadata("secret", &format!("{base}/db")).await.expect("metadata");
    assert_ne!(metadata["versions"]["3"]["deletion_time"], "", "{metadata}");
    let gone = requester.call(json!({"operation": "get_secret", "path": format!("{base}/db")})).await;
    assert_eq!(error_code(&gone), "ONEX_CORE_085_RESOURCE_NOT_FOUND");

    // Destroying a version for good.
    let destroyed = requester
        .call(json!({"operation": "delete_secret", "path": format!("{base}/db"), "versions": [1], "destroy": true}))
        .await;
    assert_eq!(destroyed["result"]["versions"], json!([1]));
    let metadata = vault::kv_metadata("secret", &format!("{base}/db")).await.expect("metadata");
    assert_eq!(metadata["versions"]["1"]["destroyed"], true);

    // Deleting every version and the metadata.
    let all =
        requester.call(json!({"operation": "delete_secret", "path": format!("{base}/db"), "all_versions": true})).await;
    assert_eq!(all["status"], "success");
    assert!(vault::kv_metadata("secret", &format!("{base}/db")).await.is_none());

    // A secret that never existed.
    let missing = requester.call(json!({"operation": "get_secret", "path": unique("missing")})).await;
    assert_eq!(error_code(&missing), "ONEX_CORE_085_RESOURCE_NOT_FOUND");
    assert_eq!(missing["error"]["retryable"], false);
    let delete_missing = requester.call(json!({"operation": "delete_secret", "path": unique("missing")})).await;
    assert_eq!(error_code(&delete_missing), "ONEX_CORE_085_RESOURCE_NOT_FOUND");

    assert_eq!(node.stop(), Some(0), "clean exit on SIGTERM");
}

#[tokio::test]
async fn other_mounts_are_reachable() {
    let mount = unique("kv");
    vault::enable_kv2(&mount).await;
    vault::write_kv(&mount, "team/api", &json!({"token": "t-1"})).await;
    let node = Node::start().await;
    let reply = node.requester().call(json!({"operation": "get_secret", "mount": mount, "path": "team/api"})).await;
    assert_eq!(reply["result"]["data"]["token"], "t-1", "{reply}");
}

#[tokio::test]
async fn permission_denied_for_paths_outside_the_policy() {
    let policy = unique("narrow");
    vault::put_policy(&policy, r#"path "secret/data/allowed/*" { capabilities = ["read"] }"#).await;
    let token = vault::create_token(&[&policy], "1h", true).await;
    vault::write_kv("secret", "allowed/one", &json!({"a": "1"})).await;
    vault::write_kv("secret", "forbidden/one", &json!({"b": "2"})).await;

    let node = Node::start_with(NodeOptions::default().env("VAULT_TOKEN", &token)).await;
    let requester = node.requester();
    let allowed = requester.call(json!({"operation": "get_secret", "path": "allowed/one"})).await;
    assert_eq!(allowed["status"], "success", "{allowed}");
    let denied = requester.call(json!({"operation": "get_secret", "path": "forbidden/one"})).await;
    assert_eq!(error_code(&denied), "ONEX_CORE_025_PERMISSION_DENIED");
    assert_eq!(denied["error"]["retryable"], false);
    let write = requester.call(json!({"operation": "set_secret", "path": "allowed/one", "data": {"c": "3"}})).await;
    assert_eq!(error_code(&write), "ONEX_CORE_025_PERMISSION_DENIED");
    assert_eq!(vault::read_kv("secret", "allowed/one").await, Some(json!({"a": "1"})), "nothing was written");
}

#[tokio::test]
async fn renew_lease_renewable_and_not() {
    let node = Node::start().await;
    let requester = node.requester();

    let (lease_id, _) = vault::new_database_lease().await;
    let renewed =
        requester.call(json!({"operation": "renew_lease", "lease_id": lease_id, "increment_seconds": 600})).await;
    assert_eq!(renewed["status"], "success", "{renewed}");
    assert_eq!(renewed["result"]["lease_id"], lease_id);
    assert_eq!(renewed["result"]["renewable"], true);
    let duration = renewed["result"]["lease_duration"].as_u64().expect("lease_duration");
    assert!(duration > 0 && duration <= 600, "{renewed}");
    let looked_up = vault::lease_lookup(&lease_id).await;
    assert!(looked_up["ttl"].as_u64().is_some_and(|ttl| ttl <= 600), "{looked_up}");

    let pki_lease = vault::pki_nonrenewable_lease().await;
    let refused = requester.call(json!({"operation": "renew_lease", "lease_id": pki_lease})).await;
    assert_eq!(error_code(&refused), "ONEX_CORE_007_INVALID_INPUT", "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("not renewable")), "{refused}");

    let unknown =
        requester.call(json!({"operation": "renew_lease", "lease_id": "database/creds/app/no-such-lease"})).await;
    assert!(
        ["ONEX_CORE_085_RESOURCE_NOT_FOUND", "ONEX_CORE_007_INVALID_INPUT"].contains(&error_code(&unknown)),
        "{unknown}"
    );
}

#[tokio::test]
async fn renew_token_extends_the_nodes_own_token() {
    let token = vault::create_token(&["default"], "10m", true).await;
    let node = Node::start_with(NodeOptions::default().env("VAULT_TOKEN", &token)).await;
    let renewed = node.requester().call(json!({"operation": "renew_token", "increment_seconds": 1800})).await;
    assert_eq!(renewed["status"], "success", "{renewed}");
    assert_eq!(renewed["result"]["renewable"], true);
    let ttl = renewed["result"]["ttl_seconds"].as_u64().expect("ttl_seconds");
    assert!(ttl > 600 && ttl <= 1800, "renewed beyond the original 10 minutes: {renewed}");
    let lookup = vault::request_with_token(&token, reqwest::Method::GET, "auth/token/lookup-self", None).await;
    assert!(lookup.body["data"]["ttl"].as_u64().is_some_and(|t| t > 600), "{:?}", lookup.body);
}

#[tokio::test]
async fn approle_login_with_secret_id_from_a_file() {
    let policy = unique("app-kv");
    vault::put_policy(&policy, r#"path "secret/data/approle-test/*" { capabilities = ["read", "create", "update"] }"#)
        .await;
    let role = unique("node");
    let (role_id, secret_id) = vault::enable_approle_role(&role, &[&policy], "1h").await;
    vault::write_kv("secret", "approle-test/cfg", &json!({"mode": "approle"})).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_id_file = dir.path().join("secret-id");
    std::fs::write(&secret_id_file, format!("{secret_id}\n")).expect("write secret id");

    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_AUTH_METHOD", "approle")
            .env("VAULT_ROLE_ID", &role_id)
            .env("VAULT_SECRET_ID_FILE", &secret_id_file.display().to_string()),
    )
    .await;
    let reply = node.requester().call(json!({"operation": "get_secret", "path": "approle-test/cfg"})).await;
    assert_eq!(reply["result"]["data"]["mode"], "approle", "{reply}");
    let log = node.log();
    assert!(!log.contains(&secret_id) && !log.contains(&role_id), "AppRole credentials in the log");
}

#[tokio::test]
async fn expired_requests_are_answered_without_touching_vault() {
    let node = Node::start().await;
    let requester = node.requester();
    let path = unique("expired");
    let mut envelope = Requester::envelope(json!({"operation": "set_secret", "path": path, "data": {"a": "b"}}));
    envelope["envelope_timestamp"] = json!((chrono::Utc::now() - chrono::Duration::minutes(10)).to_rfc3339());
    envelope["timeout_seconds"] = json!(30);
    let reply = requester.send(&envelope).await.json.expect("json");
    assert_eq!(reply["payload"]["error"]["code"], "ONEX_CORE_092_TIMEOUT_ERROR", "{reply}");
    assert!(vault::read_kv("secret", &path).await.is_none(), "Vault was written to");
}

#[tokio::test]
async fn writes_to_one_key_apply_in_order() {
    let node = Node::start().await;
    let requester = node.requester();
    let path = unique("ordered");
    let mut ids = Vec::new();
    for n in 0..20 {
        let envelope = Requester::envelope(json!({"operation": "set_secret", "path": path, "data": {"n": n}}));
        requester.send_raw(Some(path.as_bytes()), envelope.to_string().as_bytes()).await;
        ids.push(envelope["correlation_id"].as_str().expect("id").to_owned());
    }
    for (n, id) in ids.iter().enumerate() {
        let reply = requester.reply_to(id).await.json.expect("json");
        assert_eq!(reply["payload"]["result"]["version"], n as u64 + 1, "write {n} applied out of order");
    }
    assert_eq!(vault::read_kv("secret", &path).await, Some(json!({"n": 19})));
}

#[tokio::test]
async fn w3c_trace_context_continues_into_the_reply() {
    let node = Node::start().await;
    let requester = node.requester();
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut envelope = Requester::envelope(json!({"operation": "list_secrets", "path": ""}));
    envelope["metadata"] = json!({"headers": {"traceparent": format!("00-{trace}-00f067aa0ba902b7-01")}});
    let reply = requester.send(&envelope).await;
    let header = reply.header("traceparent").expect("traceparent header on the reply").to_owned();
    assert!(header.starts_with(&format!("00-{trace}-")) && header.ends_with("-01"), "{header}");
    assert!(!header.contains("00f067aa0ba902b7"), "the node's own span, not the requester's");
    let metadata = &reply.json.expect("json")["metadata"];
    assert_eq!(metadata["trace_id"], trace);
    assert_eq!(metadata["headers"]["traceparent"], header.as_str());
}
