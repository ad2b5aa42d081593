//! The compose file and the deploy scripts agree with `contract.yaml`: the
//! topics kafka-init creates are the contract's seven, and the node service
//! sets exactly environment variables the node reads, including every one
//! the contract requires.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(file: &str) -> Value {
    let text = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"))
}

/// The contract's topic names, from its `event_bus` section.
fn contract_topics() -> BTreeSet<String> {
    let contract = yaml("contract.yaml");
    let bus = &contract["event_bus"];
    ["subscribe_topics", "publish_topics", "dlq_topics"]
        .iter()
        .flat_map(|section| bus[*section].as_mapping().expect("topic map").values())
        .map(|topic| topic.as_str().expect("topic name").to_owned())
        .collect()
}

/// `${env.NAME}` and `${env.NAME:-default}` references in the contract's
/// values: (name, has a default).
fn contract_variables() -> Vec<(String, bool)> {
    fn walk(node: &Value, found: &mut Vec<(String, bool)>) {
        match node {
            Value::String(text) => {
                for rest in text.split("${env.").skip(1) {
                    if let Some((expr, _)) = rest.split_once('}') {
                        found.push(match expr.split_once(":-") {
                            Some((name, _)) => (name.to_owned(), true),
                            None => (expr.to_owned(), false),
                        });
                    }
                }
            }
            Value::Mapping(map) => map.values().for_each(|v| walk(v, found)),
            Value::Sequence(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    walk(&yaml("contract.yaml"), &mut found);
    assert!(found.len() > 5, "the contract reads its settings from the environment");
    found
}

/// Variables the node reads itself, outside the contract.
const PROCESS_VARIABLES: &[&str] = &["ONEX_CONTRACT", "RUST_LOG", "ONEX_LOG_FORMAT", "ONEX_INSTANCE_ID"];

#[test]
fn kafka_init_creates_exactly_the_contract_topics() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let init = &compose["services"]["kafka-init"];
    let mounts: Vec<&str> = init["volumes"].as_sequence().expect("volumes").iter().filter_map(Value::as_str).collect();
    assert!(mounts.iter().any(|m| m.starts_with("./contract.yaml:")), "kafka-init must read the contract: {mounts:?}");

    let output = Command::new("sh")
        .arg(root().join("deploy/kafka/contract-topics.sh"))
        .arg(root().join("contract.yaml"))
        .output()
        .expect("run contract-topics.sh");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: BTreeSet<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
    assert_eq!(listed, contract_topics());
    assert_eq!(listed.len(), 9);
}

#[test]
fn the_node_service_sets_what_the_node_reads() {
    let compose = yaml("docker-compose.infrastructure.yml");
    let node = &compose["services"]["vault-adapter"];
    let environment: BTreeSet<String> = node["environment"]
        .as_mapping()
        .expect("environment as a map")
        .keys()
        .map(|k| k.as_str().expect("name").to_owned())
        .collect();
    let variables = contract_variables();
    let known: BTreeSet<String> =
        variables.iter().map(|(name, _)| name.clone()).chain(PROCESS_VARIABLES.iter().map(|v| v.to_string())).collect();
    let unknown: Vec<&String> = environment.difference(&known).collect();
    assert!(unknown.is_empty(), "compose sets variables the node never reads: {unknown:?}");
    for (name, has_default) in &variables {
        if !has_default {
            assert!(environment.contains(name), "compose must set {name}: the contract requires it");
        }
    }
    assert_eq!(
        node["environment"]["VAULT_AUTH_METHOD"].as_str(),
        Some("approle"),
        "the node never uses the root token"
    );
    assert!(!environment.contains("VAULT_TOKEN"));
}

#[test]
fn every_service_has_a_healthcheck_or_is_a_one_shot() {
    let compose = yaml("docker-compose.infrastructure.yml");
    for (name, service) in compose["services"].as_mapping().expect("services") {
        let name = name.as_str().expect("name");
        let one_shot = service["restart"].as_str() == Some("no");
        assert!(one_shot || !service["healthcheck"].is_null(), "{name} has no healthcheck");
        if let Some(depends) = service["depends_on"].as_mapping() {
            for (dependency, rule) in depends {
                let condition = rule["condition"].as_str().unwrap_or_default();
                assert!(
                    matches!(condition, "service_healthy" | "service_completed_successfully"),
                    "{name} depends on {dependency:?} without a health condition"
                );
            }
        }
    }
}
