//! How requests decode: strict payloads, lenient envelopes, redacted secrets.

use onex_vault_models::{RequestEnvelope, VaultRequest};
use serde_json::json;

fn envelope(payload: serde_json::Value) -> serde_json::Value {
    json!({
        "envelope_id": "6f1c1c8e-2f5e-4c8a-9d0e-3f7b7f0f6a11",
        "envelope_timestamp": "2026-11-22T06:00:00Z",
        "correlation_id": "0b8f8f62-54a4-4f0c-9b7e-08c2b2a1a0e1",
        "source_tool": "node_billing_effect",
        "payload": payload
    })
}

fn decode(value: serde_json::Value) -> Result<RequestEnvelope, serde_json::Error> {
    serde_json::from_value(value)
}

#[test]
fn decodes_every_operation() {
    let payloads = [
        json!({"operation": "get_secret", "path": "app/db", "version": 2}),
        json!({"operation": "set_secret", "mount": "kv", "path": "app/db", "data": {"k": "v"}, "cas": 0}),
        json!({"operation": "delete_secret", "path": "app/db", "versions": [1, 2], "destroy": true}),
        json!({"operation": "list_secrets", "path": "app/"}),
        json!({"operation": "list_secrets"}),
        json!({"operation": "renew_lease", "lease_id": "database/creds/app/abc", "increment_seconds": 60}),
        json!({"operation": "renew_token"}),
    ];
    for payload in payloads {
        let request = decode(envelope(payload.clone())).expect("decodes");
        request.payload.validate().expect("valid");
        assert_eq!(request.payload.operation().as_str(), payload["operation"]);
    }
}

#[test]
fn unknown_payload_fields_are_rejected_but_unknown_envelope_fields_ignored() {
    let typo = decode(envelope(json!({"operation": "get_secret", "path": "a", "verison": 2})));
    let message = typo.expect_err("typo rejected").to_string();
    assert!(message.contains("unknown field `verison`"), "{message}");

    let mut extra = envelope(json!({"operation": "get_secret", "path": "a"}));
    extra["future_field"] = json!({"anything": true});
    decode(extra).expect("unknown top-level field ignored");
}

#[test]
fn hostile_paths_are_rejected_while_decoding() {
    for path in ["../sys/seal", "/abs", "a//b", "a?x=1"] {
        let result = decode(envelope(json!({"operation": "get_secret", "path": path})));
        assert!(result.is_err(), "{path} accepted");
    }
}

#[test]
fn cross_field_rules() {
    let cases = [
        json!({"operation": "set_secret", "path": "a", "data": {}}),
        json!({"operation": "delete_secret", "path": "a", "all_versions": true, "destroy": true}),
        json!({"operation": "delete_secret", "path": "a", "destroy": true}),
        json!({"operation": "get_secret", "path": "a", "version": 0}),
        json!({"operation": "renew_lease", "lease_id": ""}),
    ];
    for payload in cases {
        let request: RequestEnvelope = decode(envelope(payload.clone())).expect("decodes");
        assert!(request.payload.validate().is_err(), "{payload} passed");
    }
}

#[test]
fn debug_of_a_request_hides_the_secret_value() {
    let request = decode(envelope(json!({
        "operation": "set_secret", "path": "app/db", "data": {"password": "canary-7f3a"}
    })))
    .expect("decodes");
    let debug = format!("{request:?}");
    assert!(!debug.contains("canary-7f3a"), "{debug}");
    assert!(matches!(request.payload, VaultRequest::SetSecret(_)));
}
