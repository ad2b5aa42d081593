//! Every operation the models declare (`Operation`, derived from
//! `VaultRequest`) is declared everywhere a requester or an operator reads
//! about it: the contract's `io_operations`, the AsyncAPI document and the
//! operation table of `docs/wire-contract.md`. (The JSON Schemas are checked
//! in `models/tests/schemas.rs`; the node's dispatch by the compiler.)
//! No servers: these read committed files.

use std::collections::BTreeSet;
use std::path::Path;

use onex_vault_models::Operation;
use serde_yaml::Value;

fn read(file: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).expect("a committed file")
}

fn declared() -> BTreeSet<String> {
    Operation::all().map(|op| op.as_str().to_owned()).collect()
}

#[test]
fn the_contract_lists_every_operation_and_no_other() {
    let contract: Value = serde_yaml::from_str(&read("contract.yaml")).expect("contract.yaml is YAML");
    let listed: BTreeSet<String> = contract["io_operations"]
        .as_sequence()
        .expect("io_operations is a list")
        .iter()
        .map(|entry| entry["operation"].as_str().expect("an operation name").to_owned())
        .collect();
    assert_eq!(listed, declared());
}

/// The `const` of every `operation` property in `value`.
fn operation_tags(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            if let Some(tag) = map.get("operation").and_then(|op| op.get("const")).and_then(Value::as_str) {
                out.insert(tag.to_owned());
            }
            map.values().for_each(|v| operation_tags(v, out));
        }
        Value::Sequence(items) => items.iter().for_each(|v| operation_tags(v, out)),
        _ => {}
    }
}

#[test]
fn the_asyncapi_document_offers_every_operation() {
    let document: Value = serde_yaml::from_str(&read("asyncapi.yaml")).expect("asyncapi.yaml is YAML");
    let mut offered = BTreeSet::new();
    operation_tags(&document, &mut offered);
    assert_eq!(offered, declared());
}

#[test]
fn the_wire_contract_has_a_row_for_every_operation() {
    let text = read("docs/wire-contract.md");
    let rows: BTreeSet<String> = text
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .filter(|name| Operation::from_name(name).is_some())
        .collect();
    let missing: Vec<String> = declared().difference(&rows).cloned().collect();
    assert!(missing.is_empty(), "docs/wire-contract.md has no table row for {missing:?}");
}
