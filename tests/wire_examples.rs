//! The JSON Schemas in `models/schemas/` accept the example messages of the
//! wire contract (`docs/wire-contract.md`, and any in the README)
//! and the request files in `examples/`, and refuse broken ones: what a
//! non-Rust node would check its own messages with.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn validator(name: &str) -> jsonschema::Validator {
    let path = root().join("models/schemas").join(format!("{name}.schema.json"));
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).expect("schema JSON");
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()))
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{what} does not match its schema: {errors:#?}");
}

/// The documents whose ```json blocks are wire messages.
const DOCUMENTS: [&str; 2] = ["README.md", "docs/wire-contract.md"];

/// The ```json blocks of those documents, in order.
fn example_json_blocks() -> Vec<Value> {
    let documents: String = DOCUMENTS
        .iter()
        .map(|name| std::fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("{name}: {e}")) + "\n")
        .collect();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in documents.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```json") => current = Some(String::new()),
            (Some(text), "```") => {
                blocks.push(
                    serde_json::from_str(text)
                        .unwrap_or_else(|e| panic!("a JSON block of {DOCUMENTS:?} does not parse: {e}\n{text}")),
                );
                current = None;
            }
            (Some(text), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn documented_examples_match_the_schemas() {
    let request = validator("vault-request");
    let reply = validator("vault-reply");
    let blocks = example_json_blocks();
    assert!(blocks.len() >= 3, "the wire contract should show a request, a reply and a failure");
    for block in &blocks {
        if block["payload"].get("status").is_some() {
            assert_valid(&reply, block, "an example reply");
        } else {
            assert_valid(&request, block, "an example request");
        }
    }
}

#[test]
fn example_files_are_valid_requests() {
    let request = validator("vault-request");
    let dir = root().join("examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let value: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("JSON");
            assert_valid(&request, &value, &display(&path));
            seen += 1;
        }
    }
    assert!(seen >= 1, "no example requests in {}", dir.display());
}

#[test]
fn the_request_schema_refuses_what_the_node_refuses() {
    let request = validator("vault-request");
    let base = serde_json::json!({
        "envelope_id": "3f0e8a4c-5d1b-4c8e-9a51-1f2d3c4b5a60",
        "envelope_timestamp": "2026-11-22T09:00:00Z",
        "correlation_id": "8b6f1d2e-7c3a-4e5f-9b0a-2c4d6e8f1a3b",
        "source_tool": "node_example_client",
        "payload": { "operation": "get_secret", "path": "app/database" }
    });
    assert!(request.is_valid(&base));
    for (field, bad) in [
        ("/payload/path", serde_json::json!("/etc/passwd")),
        ("/payload/path", serde_json::json!("a?b")),
        ("/payload/operation", serde_json::json!("drop_everything")),
        ("/payload/verison", serde_json::json!(1)),
    ] {
        let mut broken = base.clone();
        let (parent, key) = field.rsplit_once('/').expect("pointer");
        broken.pointer_mut(parent).expect("parent")[key] = bad.clone();
        assert!(!request.is_valid(&broken), "schema accepted {field} = {bad}");
    }
}

fn display(path: &Path) -> String {
    path.strip_prefix(root()).unwrap_or(path).display().to_string()
}
