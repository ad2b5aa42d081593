//! Kafka TLS/SASL settings on a running node. Tansu 0.6 (the test broker)
//! has no usable TLS or SASL listener, so this checks what can be checked for
//! real: a node told to use SASL against a plaintext broker reports the
//! failure, stays not ready, and never writes the SASL password to its log or
//! its `check-contract` output. (The settings' mapping to librdkafka is unit
//! tested in `src/contract/tests.rs`.)

mod support;

use std::process::Command;
use std::time::Duration;

use support::node::{Node, NodeOptions};
use support::servers;

const PASSWORD: &str = "canary-sasl-3b7e-never-log-me";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_password_never_reaches_the_log_and_a_failed_handshake_keeps_the_node_unready() {
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")
            .env("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
            .env("KAFKA_SASL_USERNAME", "onex")
            .env("KAFKA_SASL_PASSWORD", PASSWORD),
    )
    .await;
    // librdkafka reports the failed authentication through the consumer.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !node.log().to_ascii_lowercase().contains("sasl") {
        assert!(tokio::time::Instant::now() < deadline, "no SASL failure reported:\n{}", node.log_tail(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = reqwest::get(format!("http://127.0.0.1:{}/ready", node.http_port)).await.expect("/ready answers");
    assert_eq!(ready.status().as_u16(), 503, "a node that cannot authenticate to Kafka is not ready");
    assert!(!node.log().contains(PASSWORD), "the SASL password is in the node log");

    let check = Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .args(["check-contract", concat!(env!("CARGO_MANIFEST_DIR"), "/contract.yaml")])
        .env("KAFKA_BOOTSTRAP_SERVERS", "kafka:9092")
        .env("VAULT_ADDR", "http://vault:8200")
        .env("VAULT_TOKEN", "t")
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
