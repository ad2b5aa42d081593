//! The Python requester example (`examples/python/requester.py`, confluent-kafka
//! and PyNaCl) against a strict node: it builds, validates, signs and sends a
//! request, and opens the sealed reply. ONEX nodes are mostly Python; this
//! keeps the example true.

mod support;

use std::process::Command;

use onex_vault_models::RuntimeIdentity;
use serde_json::{json, Value};
use support::node::{policy_entry, Node};
use support::{servers, tool_path, vault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_example_gets_a_sealed_secret_from_a_strict_node() {
    let python = tool_path("ONEX_PYTHON").expect("ONEX_PYTHON is not set: run scripts/install-test-servers.sh");
    vault::write_kv("secret", "python/orders/db", &json!({"password": "from-python"})).await;
    let identity = RuntimeIdentity::generate("node_python_orders", "t1").expect("keys");
    let dir = tempfile::tempdir().expect("temp dir");
    let identity_file = dir.path().join("node_python_orders.identity.json");
    std::fs::write(&identity_file, identity.to_json()).expect("write identity");
    let grants = json!([{"operations": ["get_secret"], "paths": ["python/orders/*"]}]);
    let node = Node::start_strict(vec![policy_entry(&identity, grants)], |_| {}).await;

    let topics = &node.topics;
    let run = |extra: &[&str], path: &str| {
        Command::new(&python)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python/requester.py"))
            .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--timeout-seconds", "40"])
            .args(["--request-topic", &topics.requests, "--completed-topic", &topics.completed])
            .args(["--failed-topic", &topics.failed])
            .args(extra)
            .args(["get_secret", path])
            .output()
            .expect("run the Python example")
    };
    let signed = run(&["--identity", identity_file.to_str().expect("UTF-8 path")], "python/orders/db");
    let stdout = String::from_utf8_lossy(&signed.stdout);
    assert!(signed.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&signed.stderr));
    let reply: Value = serde_json::from_str(&stdout).expect("the example prints the reply");
    assert_eq!(reply["payload"]["result"]["data"]["password"], "from-python", "{reply}");

    let denied = run(&["--identity", identity_file.to_str().expect("UTF-8 path")], "python/payroll/db");
    assert_eq!(denied.status.code(), Some(1), "{}", String::from_utf8_lossy(&denied.stderr));
    assert!(String::from_utf8_lossy(&denied.stdout).contains("ONEX_CORE_025_PERMISSION_DENIED"));
}
