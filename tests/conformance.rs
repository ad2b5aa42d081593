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
//! The strict half (`the_strict_node_speaks_onex_gateway_trust`) drives a
//! `strict` node with `tests/conformance/conformance_strict.py` (which reuses
//! that script's reader and checks): requests signed by omnibase-infra's
//! `ServiceEnvelopeSigner`, every node-signed reply judged by its
//! `ServiceEnvelopeValidator` and its runtime's inbound gateway, forged,
//! tampered and replayed requests refused, the replays also by a second
//! instance and by the instance that replaced both.
//!
//! Needs `ONEX_UPSTREAM_PYTHON`: the CPython 3.12 venv with omnibase-core 0.47.57
//! and omnibase-infra 0.38.75 that `scripts/install-test-servers.sh` makes.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use onex_vault_models::RuntimeSigner;
use serde_json::{json, Value};
use support::bus::Record;
use support::node::{node_identity, Node, NodeOptions, NODE_REALM};
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

    let mut command = driver(&python, "conformance.py", &node, &secret_path, &secret_value);
    command.args(["--expect-breaker", "--timeout-seconds", "60"]);
    run_driver(command, &[&node]).await;
    println!("conformance test: breaker open/close in {breaker_done:?}, {:?} in all", started.elapsed());
}

/// A conformance driver (a script of `tests/conformance`) for `node`'s topics
/// and the secret the test wrote at `secret/<secret_path>` (`password`).
fn driver(python: &Path, script: &str, node: &Node, secret_path: &str, secret_value: &str) -> Command {
    let topics = &node.topics;
    let mut command = Command::new(python);
    command
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance").join(script))
        .args(["--bootstrap-servers", &servers().bootstrap_servers()])
        .args(["--requests-topic", &topics.requests, "--completed-topic", &topics.completed])
        .args(["--failed-topic", &topics.failed, "--health-topic", &topics.health])
        .args(["--audit-topic", &topics.audit, "--dlq-topic", &topics.dlq])
        .args(["--circuit-breaker-topic", &topics.circuit_breaker, "--lease-events-topic", &topics.lease_events])
        .args(["--mount", "secret", "--secret-path", secret_path, "--secret-key", "password"])
        .args(["--secret-value", secret_value]);
    command
}

/// Runs a driver, prints what it said, and fails unless it reported
/// ` 0 failed` (with the log tails of `nodes`).
async fn run_driver(mut command: Command, nodes: &[&Node]) {
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("run the driver");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    if !stderr.trim().is_empty() {
        println!("--- driver stderr ---\n{stderr}");
    }
    println!("driver ran {:?}", started.elapsed());
    let tails: Vec<String> = nodes.iter().map(|node| node.log_tail(30)).collect();
    assert!(
        output.status.success() && stdout.contains(" 0 failed"),
        "the driver exited {} (see the MISMATCH lines above); node log tails:\n{}",
        output.status,
        tails.join("\n---\n")
    );
}

const ASSIGNED: &str = "onex_vault_adapter_assigned_partitions";

/// The strict profile against ONEX's own gateway trust, driven by
/// `tests/conformance/conformance_strict.py` in three phases: requests signed
/// by omnibase-infra's `ServiceEnvelopeSigner` (good, forged, unknown runtime,
/// tampered, foreign realm, unsigned, renamed, stale, unstamped, replayed),
/// every reply judged by its `ServiceEnvelopeValidator` and runtime gateway;
/// then the answered request replayed to every partition of two instances
/// sharing the group, then to the instance that replaced both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_node_speaks_onex_gateway_trust() {
    let python = tool_path("ONEX_UPSTREAM_PYTHON")
        .expect("ONEX_UPSTREAM_PYTHON is not set: run scripts/install-test-servers.sh (it makes the upstream venv)");
    let started = Instant::now();

    let run = Uuid::new_v4().simple().to_string();
    let secret_path = format!("conformance/{}/strict", &run[..12]);
    let secret_value = format!("conformance-strict-{run}");
    vault::write_kv("secret", &secret_path, &json!({"password": secret_value})).await;

    // The requester runtime: its seed goes to the driver, its public key to the policy.
    let seed = {
        use base64::Engine as _;
        let bytes: Vec<u8> = [Uuid::new_v4(), Uuid::new_v4()].iter().flat_map(|u| *u.as_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    };
    let runtime_id = format!("runtime_conformance_{}", &run[..8]);
    let public_key =
        RuntimeSigner::from_seed_base64(NODE_REALM, &runtime_id, &seed).expect("a key").public_key_base64();
    let policy = json!({
        "runtime_id": runtime_id,
        "signing_keys": [{"id": format!("{runtime_id}-sign"), "public_key": public_key}],
        "clear_delivery": true,
        "grants": [{"operations": ["get_secret"], "paths": [secret_path]}],
    });
    let options = || NodeOptions::default().strict(vec![policy.clone()]).env("ONEX_HEALTH_INTERVAL_SECONDS", "1");

    let state_dir = tempfile::tempdir().expect("a directory for the driver's state");
    let state = state_dir.path().join("state.json");
    let phase = |node: &Node, phase: &str| {
        let mut command = driver(&python, "conformance_strict.py", node, &secret_path, &secret_value);
        command
            .args(["--phase", phase, "--state"])
            .arg(&state)
            .args(["--replay-claims-topic", &node.topics.replay_claims, "--realm", NODE_REALM])
            .args(["--node-runtime-id", &node_identity().runtime_id])
            .args(["--node-public-key", &node_identity().public_key_base64()])
            .args(["--requester-runtime-id", &runtime_id, "--requester-seed", &seed])
            .args(["--requester-public-key", &public_key, "--timeout-seconds", "40"]);
        command
    };

    let mut a = Node::start_with(options()).await;
    run_driver(phase(&a, "first"), &[&a]).await;
    let first_done = started.elapsed();

    // A second instance in the group: the two share the 3 partitions.
    let mut b = Node::start_with(options().join(&a)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (assigned_a, assigned_b) = (a.metric(ASSIGNED).await, b.metric(ASSIGNED).await);
        if assigned_a >= 1.0 && assigned_b >= 1.0 && assigned_a + assigned_b == 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two instances never shared the partitions ({assigned_a}, {assigned_b})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run_driver(phase(&a, "second-instance"), &[&a, &b]).await;
    let second_done = started.elapsed();

    // Both replaced by a third instance: the replay ledger outlives them.
    // One after the other, as a rolling restart: `b` takes over every
    // partition before it stops too. (Two members leaving within one
    // rebalance can leave a Tansu 0.6 group that never assigns again: see
    // docs/testing.md.)
    a.stop();
    b.wait_for_metric(ASSIGNED, |p| p >= 3.0, WAIT).await;
    b.stop();
    let c = Node::start_with(options().join(&a)).await;
    c.wait_for_metric(ASSIGNED, |p| p >= 3.0, WAIT).await;
    run_driver(phase(&c, "restart"), &[&a, &b, &c]).await;
    println!(
        "strict conformance: phase 1 done at {first_done:?}, phase 2 at {second_done:?}, {:?} in all",
        started.elapsed()
    );
}
