//! The requester's side against the running node: the client library's typed
//! calls, signing and sealed replies with a strict node, retries of retryable
//! replies through a real Vault outage (a stalled proxy), and the operator
//! CLI `request` built on it.

mod support;

use std::process::Command;
use std::time::Duration;

use onex_vault_client::{ClientError, VaultAdapterClient};
use onex_vault_models::{ErrorCode, RuntimeIdentity};
use serde_json::{json, Map, Value};
use support::bus::ReplyWatcher;
use support::node::{node_trust, policy_entry, Node, NodeOptions, NODE_REALM, REPLY_WAIT};
use support::proxy::Proxy;
use support::{servers, vault};

fn data(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_round_trip_through_the_node() {
    let node = Node::start().await;
    let client = VaultAdapterClient::connect(node.client_settings()).await.expect("client connects");

    let written =
        client.set_secret("client/app/db", data(json!({"user": "app", "password": "p1"}))).await.expect("set");
    let read = client.get_secret("client/app/db").await.expect("get");
    assert_eq!(read.metadata.version, written.version);
    assert_eq!(read.data.expose_secret()["password"], "p1");
    assert_eq!(client.list_secrets("client/app/").await.expect("list"), vec!["db".to_owned()]);
    let batch = client.get_secrets_batch(&["client/app/db", "client/app/missing"]).await.expect("batch");
    assert_eq!(batch.results.len(), 2);
    assert!(batch.results[1].error.as_ref().is_some_and(|e| e.code == ErrorCode::ResourceNotFound));
    client.delete_secret("client/app/db").await.expect("delete");
    let gone = client.get_secret("client/app/db").await.expect_err("deleted");
    assert_eq!(gone.code(), Some(ErrorCode::ResourceNotFound), "{gone}");
    let invalid = client.get_secret("../etc/passwd").await.expect_err("a hostile path never leaves the client");
    assert!(invalid.to_string().contains("path"), "{invalid}");

    // Concurrent calls on one client each get their own reply.
    let calls = (0..16).map(|n| {
        let client = &client;
        async move {
            client.set_secret(&format!("client/many/s{n}"), data(json!({"n": n.to_string()}))).await.expect("set");
            client.get_secret(&format!("client/many/s{n}")).await.expect("get")
        }
    });
    for (n, read) in futures_util::future::join_all(calls).await.into_iter().enumerate() {
        assert_eq!(read.data.expose_secret()["n"], n.to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_an_identity_is_let_in_by_a_strict_node_and_opens_its_sealed_replies() {
    vault::write_kv("secret", "client/billing/db", &json!({"password": "sealed-for-client"})).await;
    let identity = RuntimeIdentity::generate("node_client_billing", "t1").expect("keys");
    let grants = json!([{"operations": ["get_secret"], "paths": ["client/billing/*"]}]);
    let node = Node::start_strict(vec![policy_entry(&identity, grants)], |_| {}).await;
    let signed = VaultAdapterClient::connect(node.client_settings().identity(identity, NODE_REALM, node_trust()))
        .await
        .expect("client connects");
    let read = signed.get_secret("client/billing/db").await.expect("a signed get is let in");
    assert_eq!(read.data.expose_secret()["password"], "sealed-for-client");

    // Unsigned: the strict node does not answer a sender it cannot name
    // (as upstream's gateway); the client gives up at its call timeout.
    let settings = node.client_settings().call_timeout(Duration::from_secs(3)).max_attempts(1);
    let anonymous = VaultAdapterClient::connect(settings).await.expect("client connects");
    let refused = anonymous.get_secret("client/billing/db").await.expect_err("unsigned");
    assert!(matches!(refused, ClientError::Timeout(_)), "{refused}");
}

/// Vault stalls behind a proxy: the node answers ONEX_CORE_092_TIMEOUT_ERROR (retryable);
/// the client tries again and, once Vault flows, gets the secret. The audit
/// trail shows both attempts under one correlation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_retries_what_the_node_marks_retryable() {
    vault::write_kv("secret", "client/retry/db", &json!({"password": "after-retry"})).await;
    let proxy = Proxy::start(servers().vault_socket_addr());
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .vault_addr(&format!("http://{}", proxy.addr()))
            .edit(|c| {
                c["vault"]["request_timeout_ms"] = 300.into();
                c["error_handling"]["retry_policy"]["max_attempts"] = 1.into();
                c["error_handling"]["circuit_breaker"]["enabled"] = false.into();
            }),
    )
    .await;
    let failed = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.failed));
    let client = VaultAdapterClient::connect(node.client_settings().max_attempts(10)).await.expect("client connects");

    proxy.stall();
    let call = tokio::spawn(async move { client.get_secret("client/retry/db").await });
    let timeout = failed
        .wait_for(
            |r| r.json.as_ref().is_some_and(|j| j["payload"]["error"]["code"] == "ONEX_CORE_092_TIMEOUT_ERROR"),
            REPLY_WAIT,
        )
        .await
        .expect("the node answers the stalled attempt ONEX_CORE_092_TIMEOUT_ERROR");
    proxy.pass();
    let read = call.await.expect("the call task").expect("a retry succeeds once Vault flows");
    assert_eq!(read.data.expose_secret()["password"], "after-retry");
    assert!(timeout.correlation_id().is_some());
}

fn adapter(node: &Node, args: &[&str]) -> (Option<i32>, String, String) {
    let topics = &node.topics;
    let output = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .arg("request")
        .args(args)
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
        .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed])
        .output()
        .expect("run onex-vault-adapter request");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code(), text(&output.stdout), text(&output.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_cli_prints_tables_or_json_with_clear_exit_codes() {
    let node = Node::start().await;
    let (code, out, err) = adapter(&node, &["set", "cli/app/db", "user=app", "password=cli-pass"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("version"), "{out}");
    let (code, out, err) = adapter(&node, &["get", "cli/app/db"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("data.password") && l.ends_with("cli-pass")), "{out}");
    let (code, out, _) = adapter(&node, &["get", "cli/app/db", "--json"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&out).expect("--json prints JSON");
    assert_eq!(json["data"]["user"], "app");
    let (code, out, _) = adapter(&node, &["list", "cli/app/"]);
    assert_eq!((code, out.trim()), (Some(0), "db"));
    let (code, _, err) = adapter(&node, &["get", "cli/app/missing"]);
    assert_eq!(code, Some(1), "an error reply exits 1");
    assert!(err.starts_with("ONEX_CORE_085_RESOURCE_NOT_FOUND"), "{err}");
    let (code, _, err) = adapter(&node, &["get", "../escape"]);
    assert_eq!(code, Some(2), "bad usage exits 2: {err}");
    // The operations beyond the basic six.
    let (code, out, err) = adapter(&node, &["write-metadata", "cli/app/db", "--custom", "owner=ops"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, _) = adapter(&node, &["read-metadata", "cli/app/db", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&out).expect("JSON")["custom_metadata"]["owner"], "ops");
    let (code, out, err) =
        adapter(&node, &["rotate", "cli/app/db", "password", "--length", "20", "--delivery", "wrapped"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.lines().any(|l| l.starts_with("wrap_token")), "{out}");
    let (code, out, _) = adapter(&node, &["lookup-token"]);
    assert_eq!(code, Some(0));
    assert!(out.lines().any(|l| l.starts_with("policies")), "{out}");
    let (code, _, err) = adapter(&node, &["rotate", "cli/app/db", "password", "--length", "3"]);
    assert_eq!(code, Some(2), "a length the node refuses is caught before sending: {err}");
    let (code, out, _) = adapter(&node, &["delete", "cli/app/db"]);
    assert_eq!(code, Some(0), "{out}");
}
