//! The operations beyond the basic six, against the real OpenBao: KV v2
//! metadata (read, write, undelete), `rotate_secret` (CAS, value only sealed
//! or wrapped), transit (`encrypt`, `decrypt`, `rewrap`) and `lookup_token`;
//! with their main errors, and no rotated value or plaintext in the log.

mod support;

use base64::Engine as _;
use onex_vault_models::{OperationResult, RuntimeIdentity};
use reqwest::Method;
use serde_json::{json, Value};
use support::node::{node_trust, policy_entry, Node, NODE_REALM};
use support::vault;

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A transit mount with key `onex-test` (idempotent across test runs).
async fn transit_key() {
    let _ = vault::request(Method::POST, "sys/mounts/transit", Some(&json!({"type": "transit"}))).await;
    let created = vault::request(Method::POST, "transit/keys/onex-test", None).await;
    assert!(created.is_success(), "creating the transit key: {}", created.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_operations_read_write_and_undelete() {
    vault::write_kv("secret", "more/meta/db", &json!({"v": "1"})).await;
    vault::write_kv("secret", "more/meta/db", &json!({"v": "2"})).await;
    let node = Node::start().await;
    let requester = node.requester();

    let written = requester
        .call(json!({"operation": "write_metadata", "path": "more/meta/db",
            "custom_metadata": {"owner": "billing"}, "max_versions": 5}))
        .await;
    assert_eq!(written["result"]["metadata_written"], true, "{written}");
    // Only the fields given change: cas_required stays, max_versions changed.
    let read = requester.call(json!({"operation": "read_metadata", "path": "more/meta/db"})).await;
    let result = &read["result"];
    assert_eq!(result["current_version"], 2, "{read}");
    assert_eq!(result["max_versions"], 5, "{read}");
    assert_eq!(result["cas_required"], false, "{read}");
    assert_eq!(result["custom_metadata"]["owner"], "billing", "{read}");
    assert_eq!(result["versions"]["1"]["destroyed"], false, "{read}");
    assert!(read.to_string().find("\"v\"").is_none(), "metadata carries no data: {read}");
    // A second write of one field leaves the others as the first one set them.
    let written =
        requester.call(json!({"operation": "write_metadata", "path": "more/meta/db", "cas_required": true})).await;
    assert_eq!(written["result"]["metadata_written"], true, "{written}");
    let read = requester.call(json!({"operation": "read_metadata", "path": "more/meta/db"})).await;
    let result = &read["result"];
    assert_eq!(result["cas_required"], true, "{read}");
    assert_eq!(result["max_versions"], 5, "{read}");
    assert_eq!(result["custom_metadata"]["owner"], "billing", "{read}");
    requester.call(json!({"operation": "write_metadata", "path": "more/meta/db", "cas_required": false})).await;

    let deleted = requester.call(json!({"operation": "delete_secret", "path": "more/meta/db", "versions": [2]})).await;
    assert_eq!(deleted["status"], "success", "{deleted}");
    let read = requester.call(json!({"operation": "read_metadata", "path": "more/meta/db"})).await;
    assert!(read["result"]["versions"]["2"]["deletion_time"].is_string(), "{read}");
    let undeleted =
        requester.call(json!({"operation": "undelete_versions", "path": "more/meta/db", "versions": [2]})).await;
    assert_eq!(undeleted["result"], json!({"undeleted": true, "versions": [2]}), "{undeleted}");
    let got = requester.call(json!({"operation": "get_secret", "path": "more/meta/db"})).await;
    assert_eq!(got["result"]["data"]["v"], "2", "{got}");

    let missing = requester.call(json!({"operation": "read_metadata", "path": "more/meta/none"})).await;
    assert_eq!(missing["error"]["code"], "ONEX_CORE_085_RESOURCE_NOT_FOUND", "{missing}");
    let missing =
        requester.call(json!({"operation": "undelete_versions", "path": "more/meta/none", "versions": [1]})).await;
    assert_eq!(
        missing["error"]["code"], "ONEX_CORE_085_RESOURCE_NOT_FOUND",
        "Vault says yes to a missing secret; the node not: {missing}"
    );
    let empty = requester.call(json!({"operation": "write_metadata", "path": "more/meta/db"})).await;
    assert_eq!(empty["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{empty}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_secret_writes_a_new_version_and_returns_the_value_only_sealed_or_wrapped() {
    vault::write_kv("secret", "more/rotate/db", &json!({"user": "app", "password": "old"})).await;
    let identity = RuntimeIdentity::generate("node_rotator", "t1").expect("keys");
    let grants = json!([{"operations": ["rotate_secret", "get_secret", "decrypt", "encrypt"], "paths": ["**"],
        "mounts": ["*"]}]);
    let mut entry = policy_entry(&identity, grants);
    entry["clear_delivery"] = true.into();
    entry["wrapped_delivery"] = true.into();
    let mut node = Node::start_strict(vec![entry], |_| {}).await;
    let client = onex_vault_client::VaultAdapterClient::connect(node.client_settings().identity(
        identity,
        NODE_REALM,
        node_trust(),
    ))
    .await
    .expect("client");
    let rotate = |delivery: &str, alphabet: Value| {
        serde_json::from_value::<onex_vault_models::VaultRequest>(json!({"operation": "rotate_secret",
            "path": "more/rotate/db", "key": "password", "length": 40, "alphabet": alphabet, "delivery": delivery}))
        .expect("a valid request")
    };

    // Sealed: the value comes back, is in Vault, and the other keys are kept.
    let Ok(OperationResult::RotateSecret(rotated)) = client.call(rotate("sealed", json!("hex"))).await else {
        panic!("a sealed rotation")
    };
    let value = rotated.value.as_ref().map(|v| secrecy::ExposeSecret::expose_secret(v).to_owned()).expect("value");
    assert_eq!(value.len(), 40);
    assert!(value.chars().all(|c| c.is_ascii_hexdigit()), "{value}");
    let stored = vault::read_kv("secret", "more/rotate/db").await.expect("stored");
    assert_eq!(stored["password"], value.as_str());
    assert_eq!(stored["user"], "app", "other keys are kept");
    assert_eq!(rotated.version, 2);

    // Clear: the new version only, never the value.
    let Ok(OperationResult::RotateSecret(clear)) = client.call(rotate("clear", json!({"custom": "ab"}))).await else {
        panic!("a clear rotation")
    };
    assert!(clear.value.is_none(), "a rotated value must not travel in clear");
    assert_eq!(clear.version, 3);

    // Read once, so the node's read cache holds the current value.
    let read =
        serde_json::from_value(json!({"operation": "get_secret", "path": "more/rotate/db", "delivery": "clear"}))
            .expect("request");
    assert!(matches!(client.call(read).await, Ok(OperationResult::GetSecret(_))), "a read before the wrapped rotation");

    // Wrapped: Vault keeps the new value behind a single-use token.
    let Ok(OperationResult::Wrapped(wrapped)) = client.call(rotate("wrapped", json!("alphanumeric"))).await else {
        panic!("a wrapped rotation")
    };
    let token = secrecy::ExposeSecret::expose_secret(&wrapped.wrap_token).to_owned();
    let unwrapped = vault::request_with_token(&token, Method::POST, "sys/wrapping/unwrap", None).await;
    assert!(unwrapped.is_success(), "{}", unwrapped.errors());
    let wrapped_value = unwrapped.body["data"]["value"].as_str().expect("the value inside").to_owned();
    assert_eq!(vault::read_kv("secret", "more/rotate/db").await.expect("stored")["password"], wrapped_value.as_str());
    // A wrapped rotation is a write too: the node's read cache forgot the path.
    let read =
        serde_json::from_value(json!({"operation": "get_secret", "path": "more/rotate/db", "delivery": "clear"}))
            .expect("request");
    let Ok(OperationResult::GetSecret(read)) = client.call(read).await else { panic!("a read after rotation") };
    assert_eq!(read.data.expose_secret()["password"], wrapped_value.as_str(), "the cache served the old value");

    // Transit through the same strict node: decrypt is sealed to us.
    transit_key().await;
    let encrypt = serde_json::from_value(json!({"operation": "encrypt", "key": "onex-test",
        "plaintext": b64("transit-canary-91")}))
    .expect("request");
    let Ok(OperationResult::Ciphertext(encrypted)) = client.call(encrypt).await else { panic!("encrypt") };
    assert!(encrypted.ciphertext.starts_with("vault:v1:"), "{encrypted:?}");
    let decrypt = serde_json::from_value(json!({"operation": "decrypt", "key": "onex-test",
        "ciphertext": encrypted.ciphertext, "delivery": "sealed"}))
    .expect("request");
    let Ok(OperationResult::Decrypt(plain)) = client.call(decrypt).await else { panic!("decrypt") };
    assert_eq!(secrecy::ExposeSecret::expose_secret(&plain.plaintext), b64("transit-canary-91"));

    node.stop();
    let log = node.log();
    for secret in [value.as_str(), wrapped_value.as_str(), &token, &b64("transit-canary-91")] {
        assert!(!log.contains(secret), "a secret reached the node log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transit_and_token_lookup_in_the_dev_profile() {
    transit_key().await;
    let node = Node::start().await;
    let requester = node.requester();
    let encrypted = requester
        .call(json!({"operation": "encrypt", "key": "onex-test", "plaintext": b64("hello"), "mount": "transit"}))
        .await;
    let ciphertext = encrypted["result"]["ciphertext"].as_str().expect("ciphertext").to_owned();
    assert_eq!(encrypted["result"]["key_version"], 1, "{encrypted}");

    let rotated = vault::request(Method::POST, "transit/keys/onex-test/rotate", None).await;
    assert!(rotated.is_success(), "{}", rotated.errors());
    let rewrapped = requester.call(json!({"operation": "rewrap", "key": "onex-test", "ciphertext": ciphertext})).await;
    assert!(rewrapped["result"]["key_version"].as_u64().is_some_and(|v| v >= 2), "{rewrapped}");
    let decrypted = requester
        .call(json!({"operation": "decrypt", "key": "onex-test", "ciphertext": rewrapped["result"]["ciphertext"]}))
        .await;
    assert_eq!(decrypted["result"]["plaintext"], b64("hello"), "dev profile delivers in clear: {decrypted}");

    // (encrypt would create a missing key: Vault's upsert; decrypt does not.)
    let unknown =
        requester.call(json!({"operation": "decrypt", "key": "no-such-key-x", "ciphertext": ciphertext})).await;
    assert_eq!(unknown["status"], "error", "{unknown}");
    assert_eq!(unknown["error"]["code"], "ONEX_CORE_085_RESOURCE_NOT_FOUND", "{unknown}");
    let bad = requester.call(json!({"operation": "encrypt", "key": "onex-test", "plaintext": "not base64!"})).await;
    assert_eq!(bad["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{bad}");
    let bad = requester.call(json!({"operation": "decrypt", "key": "../sys", "ciphertext": "vault:v1:x"})).await;
    assert_eq!(bad["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{bad}");

    let token = requester.call(json!({"operation": "lookup_token"})).await;
    assert_eq!(token["status"], "success", "{token}");
    assert!(token["result"]["policies"].as_array().is_some_and(|p| p.iter().any(|p| p == "root")), "{token}");
    let text = token.to_string();
    assert!(!text.contains(support::servers().root_token()), "the token itself must never be in a reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_sends_cas_so_cas_required_secrets_rotate_and_missing_ones_are_not_found() {
    // rotate_secret writes with cas = the version it read, so a concurrent
    // write makes it CONFLICT (classification tested in vault/error.rs); the
    // race itself cannot be forced from outside. What can: a secret that
    // requires cas still rotates, a plain write to it does not.
    vault::write_kv("secret", "more/cas/db", &json!({"password": "x"})).await;
    let node = Node::start().await;
    let requester = node.requester();
    let cas = requester.call(json!({"operation": "write_metadata", "path": "more/cas/db", "cas_required": true})).await;
    assert_eq!(cas["status"], "success", "{cas}");
    let rotated = requester
        .call(json!({"operation": "rotate_secret", "path": "more/cas/db", "key": "password", "delivery": "wrapped"}))
        .await;
    assert_eq!(rotated["status"], "success", "rotate sends cas, so cas_required does not stop it: {rotated}");
    let set =
        requester.call(json!({"operation": "set_secret", "path": "more/cas/db", "data": {"password": "y"}})).await;
    assert_eq!(set["error"]["code"], "ONEX_CORE_086_INVALID_STATE", "a write without cas is refused here: {set}");
    let missing =
        requester.call(json!({"operation": "rotate_secret", "path": "more/cas/none", "key": "password"})).await;
    assert_eq!(missing["error"]["code"], "ONEX_CORE_085_RESOURCE_NOT_FOUND", "{missing}");
}
