//! The Python requester example (`examples/python/requester.py`: omnibase-core's
//! envelopes, omnibase-infra's signer and validator, confluent-kafka, PyNaCl)
//! against a strict node: it builds, validates, signs and sends a request,
//! verifies the node's signed reply and opens the sealed result; a denied
//! path comes back as the one permission error; and a reply forged under the
//! request's correlation id and envelope id, published before the node's,
//! is dropped. Without an identity it talks to a dev node. ONEX nodes are
//! mostly Python; this keeps the example true.
//!
//! Runs with the upstream venv (`ONEX_UPSTREAM_PYTHON`, CPython 3.12) that
//! `scripts/install-test-servers.sh` makes from tests/conformance/requirements.txt.

mod support;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use onex_vault_models::{RuntimeIdentity, RuntimeSigner};
use serde_json::{json, Value};
use support::bus::{BusClient, ReplyWatcher};
use support::node::{node_identity, policy_entry, Node, Topics, NODE_REALM};
use support::proxy::Proxy;
use support::{servers, tool_path, vault};
use uuid::Uuid;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/requester.py");

/// The example's command line against `topics`, as the requester `identity_file`,
/// for `get_secret path`.
fn example(python: &Path, topics: &Topics, identity_file: &Path, path: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(python);
    command
        .arg(EXAMPLE)
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
        .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed])
        .arg("--identity")
        .arg(identity_file)
        .args(["--realm", NODE_REALM])
        // `=`: a URL-safe base64 key may start with `-`.
        .arg(format!("--node-key={}", node_identity().public_key_base64()))
        .args(["--node-runtime-id", &node_identity().runtime_id])
        .args(extra)
        .args(["get_secret", path]);
    command
}

fn upstream_python() -> PathBuf {
    tool_path("ONEX_UPSTREAM_PYTHON")
        .expect("ONEX_UPSTREAM_PYTHON is not set (the CPython 3.12 venv with omnibase-core/-infra): run scripts/install-test-servers.sh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_gets_a_sealed_secret_from_a_strict_node_and_ignores_forged_replies() {
    let python = upstream_python();
    vault::write_kv("secret", "python/orders/db", &json!({"password": "from-python"})).await;
    // Read once, by the forgery test (a path already read may come from the node's cache).
    vault::write_kv("secret", "python/orders/queue", &json!({"password": "queue-from-python"})).await;
    let identity = RuntimeIdentity::generate("node_python_orders", "t1").expect("keys");
    let dir = tempfile::tempdir().expect("temp dir");
    let identity_file = dir.path().join("node_python_orders.identity.json");
    std::fs::write(&identity_file, identity.to_json()).expect("write identity");
    let grants = json!([{"operations": ["get_secret"], "paths": ["python/orders/*"]}]);
    // Vault behind a proxy, so that the node's answer can be held back.
    let proxy = Proxy::start(servers().vault_socket_addr());
    let vault_addr = format!("http://{}", proxy.addr());
    let node = Node::start_strict(vec![policy_entry(&identity, grants)], move |contract| {
        contract["vault"]["address"] = vault_addr.into();
        contract["vault"]["request_timeout_ms"] = 30_000.into();
    })
    .await;
    let topics = &node.topics;

    let sealed = example(&python, topics, &identity_file, "python/orders/db", &[]).output().expect("run the example");
    let stdout = String::from_utf8_lossy(&sealed.stdout);
    assert!(sealed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&sealed.stderr));
    let reply: Value = serde_json::from_str(&stdout).expect("the example prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "from-python", "{reply}");

    let denied = example(&python, topics, &identity_file, "python/payroll/db", &[]).output().expect("run the example");
    assert_eq!(denied.status.code(), Some(1), "{}", String::from_utf8_lossy(&denied.stderr));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("ONEX_CORE_025_PERMISSION_DENIED"));

    // Forged replies under the ids of the next request, on the completed topic
    // before the node's: one unsigned, one signed as the node's runtime but with
    // another key, one signed by another runtime (the requester itself, whom the
    // node trusts but the example does not). Vault is stalled until the example
    // has read (and dropped) them all.
    let (correlation_id, envelope_id) = (Uuid::new_v4(), Uuid::new_v4());
    let mut forged = reply.clone();
    forged["envelope_id"] = json!(Uuid::new_v4());
    forged["correlation_id"] = json!(correlation_id);
    forged["parent_envelope_id"] = json!(envelope_id);
    forged["payload"]["result"]["data"]["password"] = json!("forged");
    let impostor = RuntimeSigner::generate(NODE_REALM, &node_identity().runtime_id).expect("a key");
    let forged_signed = impostor.sign(forged.clone(), "default", correlation_id, Some(envelope_id));
    let other_runtime =
        identity.signer(NODE_REALM).expect("signer").sign(forged.clone(), "default", correlation_id, Some(envelope_id));
    let forgeries = [
        &forged,
        &serde_json::to_value(forged_signed).expect("JSON"),
        &serde_json::to_value(other_runtime).expect("JSON"),
    ]
    .map(|forgery| serde_json::to_vec(forgery).expect("JSON"));

    let requests = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&topics.requests));
    proxy.stall();
    let ids = ["--correlation-id", &correlation_id.to_string(), "--envelope-id", &envelope_id.to_string()];
    let mut child = example(&python, topics, &identity_file, "python/orders/queue", &ids)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the example");
    let (tx, mut stderr_lines) = tokio::sync::mpsc::unbounded_channel();
    let stderr = child.stderr.take().expect("piped stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
            let _ = tx.send(line);
        }
        all
    });
    let child = tokio::task::spawn_blocking(move || child.wait_with_output());

    // The request on the bus: the example listens already (it assigns before it sends).
    let key = correlation_id.to_string();
    requests
        .wait_for(|r| r.key.as_deref() == Some(key.as_bytes()), Duration::from_secs(30))
        .await
        .expect("the example's request on the request topic");
    let bus = BusClient::new(&servers().bootstrap_servers());
    for forgery in &forgeries {
        bus.produce(&topics.completed, Some(key.as_bytes()), forgery, &[]).await;
    }
    // Until all are dropped (or the example exits or stalls: the asserts below say how).
    let mut dropped = 0;
    while dropped < forgeries.len() {
        let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(30), stderr_lines.recv()).await else { break };
        if line.contains("dropped a reply under our correlation id that does not verify") {
            dropped += 1;
        }
    }
    proxy.pass();

    let output = child.await.expect("join").expect("the example ran");
    let stderr = stderr_reader.join().expect("stderr reader");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let reply: Value = serde_json::from_str(&stdout).expect("the example prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "queue-from-python", "{reply}");
    assert_eq!(reply["correlation_id"], json!(correlation_id), "{reply}");
    assert_eq!(reply["parent_envelope_id"], json!(envelope_id), "{reply}");
    assert!(stderr.contains("(not signed)"), "{stderr}");
    assert!(stderr.contains("INVALID_SIGNATURE"), "{stderr}");
    assert!(stderr.contains("UNKNOWN_SIGNER"), "{stderr}");
}

/// Without an identity (the node's dev profile) the example sends the plain
/// event envelope and takes the plain reply: the secret in clear text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_without_an_identity_talks_to_a_dev_node() {
    let python = upstream_python();
    vault::write_kv("secret", "python/dev/db", &json!({"password": "dev-from-python"})).await;
    let node = Node::start().await;
    let topics = &node.topics;
    let output = Command::new(&python)
        .arg(EXAMPLE)
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
        .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed, "get_secret", "python/dev/db"])
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let reply: Value = serde_json::from_str(&stdout).expect("the example prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "dev-from-python", "{reply}");
}
