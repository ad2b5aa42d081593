//! Conformance to the upstream ONEX wire, judged by the real packages: a `dev`
//! node (plain, unsigned envelopes) is driven by `tests/conformance/conformance.py`,
//! which builds and publishes requests with omnibase-core's `ModelEventEnvelope`
//! and omnibase-infra's `EventBusKafka`, then reads back every record the node
//! published (replies, failures, health, audit, dead letters, breaker events) and
//! judges each with upstream code (`decode_inbound_envelope`,
//! `_kafka_headers_to_model`, `EnumCoreErrorCode`, `ModelNodeHealthEvent`,
//! `ModelCircuitBreakerStateEvent`). See that script for the checks.
//!
//! Before it runs, the test makes the node's circuit breaker open and close once,
//! by cutting a loopback proxy that only this node talks to Vault through (the
//! shared Vault itself is untouched), so breaker events are judged too.
//!
//! Needs `ONEX_UPSTREAM_PYTHON`: the CPython 3.12 venv with omnibase-core 0.47.57
//! and omnibase-infra 0.38.75 that `scripts/install-test-servers.sh` makes.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bus::Record;
use support::node::{Node, NodeOptions};
use support::proxy::Proxy;
use support::{servers, tool_path, vault};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(45);
/// Breaker settings for the test (the contract's defaults: 5 failures, 30 s open).
const FAILURE_THRESHOLD: u64 = 3;
const OPEN_MS: u64 = 1000;

fn payload(record: &Record) -> &Value {
    &record.json.as_ref().expect("JSON record")["payload"]
}

/// Cuts the node's link to Vault until its breaker opens, restores it, and sends
/// requests until a half-open probe closes it again; waits for both events.
async fn open_and_close_the_breaker(node: &Node, proxy: &Proxy, readable_path: &str) {
    let requester = node.requester();
    let breaker_topic = node.topics.circuit_breaker.clone();
    let breaker_event = |state: &'static str| {
        let topic = breaker_topic.clone();
        move |r: &Record| r.topic == topic && payload(r)["state"] == state
    };

    proxy.cut();
    for n in 0..FAILURE_THRESHOLD {
        let reply = requester.call(json!({"operation": "get_secret", "path": format!("conformance/cut-{n}")})).await;
        assert_eq!(reply["status"], "error", "Vault is cut off: {reply}");
    }
    requester.watcher.wait_for(breaker_event("open"), WAIT).await.expect("a breaker event: open");

    proxy.pass();
    let deadline = Instant::now() + WAIT;
    loop {
        tokio::time::sleep(Duration::from_millis(OPEN_MS)).await;
        let reply = requester.call(json!({"operation": "get_secret", "path": readable_path})).await;
        if reply["status"] == "success" {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker did not close after Vault came back: {reply}");
    }
    requester.watcher.wait_for(breaker_event("closed"), WAIT).await.expect("a breaker event: closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_speaks_the_upstream_onex_wire() {
    let python = tool_path("ONEX_UPSTREAM_PYTHON")
        .expect("ONEX_UPSTREAM_PYTHON is not set: run scripts/install-test-servers.sh (it makes the upstream venv)");
    let started = Instant::now();

    let run = Uuid::new_v4().simple().to_string();
    let secret_path = format!("conformance/{}/db", &run[..12]);
    let secret_value = format!("conformance-{run}");
    vault::write_kv("secret", &secret_path, &json!({"password": secret_value})).await;

    // The node reaches Vault only through this proxy (pass mode: it logs in at start).
    let proxy = Proxy::start(servers().vault_socket_addr());
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
            .vault_addr(&format!("http://{}", proxy.addr()))
            .edit(|contract| {
                // Every read must reach Vault, or a cached read could stand in for the half-open probe.
                contract["vault"]["read_cache"]["enabled"] = false.into();
                let breaker = &mut contract["error_handling"]["circuit_breaker"];
                breaker["failure_threshold"] = FAILURE_THRESHOLD.into();
                breaker["reset_timeout_ms"] = OPEN_MS.into();
            }),
    )
    .await;
    // A request the node answers first, so the consumer group has joined before Vault is cut.
    let warm_up = node.requester().call(json!({"operation": "get_secret", "path": secret_path})).await;
    assert_eq!(warm_up["status"], "success", "{warm_up}");
    open_and_close_the_breaker(&node, &proxy, &secret_path).await;
    let breaker_done = started.elapsed();

    let topics = node.topics.clone();
    let mut command = Command::new(&python);
    command
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance/conformance.py"))
        .args(["--bootstrap-servers", &servers().bootstrap_servers()])
        .args(["--requests-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed, "--health-topic", &topics.health])
        .args(["--audit-topic", &topics.audit, "--dlq-topic", &topics.dlq])
        .args(["--circuit-breaker-topic", &topics.circuit_breaker, "--lease-events-topic", &topics.lease_events])
        .args(["--mount", "secret", "--secret-path", &secret_path, "--secret-key", "password"])
        .args(["--secret-value", &secret_value, "--expect-breaker", "--timeout-seconds", "60"]);
    let output =
        tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- conformance.py stderr ---\n{stderr}");
    }
    println!("conformance test: breaker open/close in {breaker_done:?}, {:?} in all", started.elapsed());
    assert!(
        output.status.success() && stdout.contains(" 0 failed"),
        "conformance.py exited {} (see the MISMATCH lines above); node log tail:\n{}",
        output.status,
        node.log_tail(30)
    );
}
