//! `asyncapi.yaml`: generated from the contract and the models (so it cannot
//! drift; `UPDATE_ASYNCAPI=1` rewrites it), valid against the AsyncAPI 3.0.0
//! JSON Schema (from npm `@asyncapi/specs`, installed by
//! `scripts/install-test-servers.sh`), with every reference resolving and
//! every topic of the contract in it.

mod support;

use std::path::Path;

use serde_json::Value;

fn generated() -> Value {
    let contract = Path::new(env!("CARGO_MANIFEST_DIR")).join("contract.yaml");
    onex_vault_adapter::asyncapi::document_of_file(&contract).expect("the shipped contract is valid")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("asyncapi.yaml");
    let text = serde_yaml::to_string(&generated()).expect("YAML");
    if std::env::var_os("UPDATE_ASYNCAPI").is_some() {
        std::fs::write(&path, &text).expect("write asyncapi.yaml");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "asyncapi.yaml is not what the contract and the models give; regenerate it with \
         `UPDATE_ASYNCAPI=1 cargo test --test asyncapi` (or `onex-vault-adapter asyncapi > asyncapi.yaml`)"
    );
}

#[test]
fn the_document_is_valid_asyncapi_3() {
    let schema_path = support::tool_path("ONEX_ASYNCAPI_SCHEMA")
        .expect("ONEX_ASYNCAPI_SCHEMA is not set: run scripts/install-test-servers.sh");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&schema_path).expect("read the AsyncAPI schema"))
        .expect("the AsyncAPI schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the AsyncAPI schema compiles");
    let document = generated();
    let errors: Vec<String> = validator.iter_errors(&document).map(|e| format!("{}: {e}", e.instance_path)).collect();
    assert!(errors.is_empty(), "asyncapi.yaml is not valid AsyncAPI 3.0.0:\n{}", errors.join("\n"));

    // And a broken document is refused: the check can fail.
    let mut broken = document.clone();
    broken["operations"]["receiveRequests"]["action"] = "consume".into();
    assert!(validator.iter_errors(&broken).next().is_some(), "an invalid action went unnoticed");
}

#[test]
fn every_reference_resolves_and_every_topic_is_a_channel() {
    let document = generated();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    assert!(refs.len() > 20, "too few references: {refs:?}");
    for target in refs {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("an external reference: {target}"));
        assert!(document.pointer(pointer).is_some(), "{target} does not resolve");
    }
    let contract =
        onex_vault_adapter::contract::Contract::from_yaml(include_str!("../contract.yaml"), "contract.yaml", &|name| {
            match name {
                "KAFKA_BOOTSTRAP_SERVERS" => Some("kafka:9092".into()),
                "VAULT_ADDR" => Some("http://vault:8200".into()),
                "VAULT_TOKEN" => Some("t".into()),
                "ONEX_SECURITY_PROFILE" => Some("dev".into()),
                _ => None,
            }
        })
        .expect("valid contract");
    let addresses: Vec<&str> =
        document["channels"].as_object().expect("channels").values().filter_map(|c| c["address"].as_str()).collect();
    for (role, topic) in contract.topics() {
        assert!(addresses.contains(&topic), "{} ({topic}) has no channel", role.field());
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target.clone()),
                    _ => collect_refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, out)),
        _ => {}
    }
}
