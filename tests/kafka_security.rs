//! Kafka TLS/SASL settings on a running node. Tansu (the test broker) has no
//! TLS or SASL listener, so:
//!
//! - TLS is tested end to end through a TLS front (a test CA's certificate) and
//!   a Tansu relay that advertises it: the node's whole Kafka conversation
//!   (metadata, group, fetch, produce) is TLS, and a node trusting another CA
//!   never gets in.
//! - SASL is tested as far as a plaintext broker allows: a node told to use
//!   SASL reports the failure, stays not ready, and never writes the SASL
//!   password to its log or its `check-contract` output.
//!
//! (The settings' mapping to librdkafka is unit tested in `src/contract/tests.rs`.)

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::kafka_link::KafkaLink;
use support::node::{Node, NodeOptions};
use support::servers::Stack;
use support::tls::TestCa;
use support::{servers, vault};

const PASSWORD: &str = "canary-sasl-3b7e-never-log-me";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_password_never_reaches_the_log_and_a_failed_handshake_keeps_the_node_unready() {
    let mut node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
            .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("KAFKA_SASL_USERNAME", "onex")
            .env("KAFKA_SASL_PASSWORD", PASSWORD)
            // How long start-up waits for Kafka (10 s is the floor).
            .env("VAULT_STARTUP_WAIT_SECONDS", "10"),
    )
    .await;
    // librdkafka reports the failed authentication through the consumer.
    node.wait_for_log("sasl", 1, Duration::from_secs(30)).await;
    let (status, body) = node.http_get("/ready").await;
    assert_eq!(status, 503, "a node that cannot authenticate to Kafka is not ready: {body}");
    assert_eq!(body["reason"], "reading the lease registry from Kafka", "/ready names what start-up waits on");
    // Start-up gives up, with a message that names what it could not read.
    let exit = node.wait_exit(Duration::from_secs(40));
    assert_eq!(exit, Some(1), "a node that cannot reach Kafka exits 1 for its restart policy");
    let failure = node.log().lines().filter(|l| l.contains("node failed")).collect::<Vec<_>>().join("\n");
    assert!(failure.contains("lease registry"), "the exit names the lease registry: {}", node.log_tail(5));
    assert!(!node.log().contains(PASSWORD), "the SASL password is in the node log");

    let check = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .args(["check-contract", concat!(env!("CARGO_MANIFEST_DIR"), "/contract.yaml")])
        .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        .env("VAULT_ADDR", "http://vault:8200")
        .env("VAULT_TOKEN", "t")
        .env("ONEX_SECURITY_PROFILE", "dev")
        .env("KAFKA_SECURITY_PROTOCOL", "sasl_ssl")
        .env("KAFKA_SASL_MECHANISM", "PLAIN")
        .env("KAFKA_SASL_USERNAME", "onex")
        .env("KAFKA_SASL_PASSWORD", PASSWORD)
        .output()
        .expect("check-contract");
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    assert!(printed.contains("protocol: sasl_ssl") && printed.contains("sasl_password: <redacted>"), "{printed}");
    assert!(!printed.contains(PASSWORD));
}

const WAIT: Duration = Duration::from_secs(60);

/// Polls `done` every 100 ms until it holds or [`WAIT`] passes.
async fn eventually(what: &str, node: &Node, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}; node log:\n{}", node.log_tail(30));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_talks_tls_to_kafka_with_the_contracts_ca_and_refuses_another() {
    let ca = TestCa::new("ONEX test Kafka CA");
    let link = match KafkaLink::start_tls(&ca) {
        Ok(link) => link,
        // The relay is the local stack's Tansu binary.
        Err(e) if servers().stack() == Stack::Containers => {
            eprintln!("SKIPPED: no Kafka link on the containers stack: {e}");
            return;
        }
        Err(e) => panic!("cannot build the TLS Kafka link: {e}"),
    };
    let front = link.tls_front().expect("a TLS link");
    vault::write_kv("secret", "kafka-tls/app", &json!({"over": "tls"})).await;
    let over_tls = |ca_file: &std::path::Path| {
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .bootstrap_servers(&link.bootstrap_servers())
            .env("KAFKA_SECURITY_PROTOCOL", "ssl")
            .env("KAFKA_SSL_CA_FILE", ca_file.to_str().expect("UTF-8 path"))
    };

    let node = Node::start_with(over_tls(ca.ca_file())).await;
    node.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p >= 3.0, WAIT).await;
    let reply = node.requester().call(json!({"operation": "get_secret", "path": "kafka-tls/app"})).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["result"]["data"]["over"], "tls", "{reply}");
    assert!(front.handshakes() >= 1, "the node reached the broker only through the TLS front");
    assert_eq!(front.failed_handshakes(), 0);
    let handshakes = front.handshakes();

    let stranger = TestCa::new("some other CA");
    let refused = Node::start_with(over_tls(stranger.ca_file())).await;
    eventually("no failed TLS handshake at the front", &refused, || front.failed_handshakes() >= 1).await;
    refused.wait_for_log("certificate verify failed", 1, WAIT).await;
    assert_eq!(refused.http_get("/ready").await.0, 503, "a node that does not trust the broker is not ready");
    println!(
        "FAULT kafka_tls: injected=a broker certificate from an untrusted CA; {handshakes} handshakes with the \
         contract's CA, {} refused with another",
        front.failed_handshakes()
    );
}
