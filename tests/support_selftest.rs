//! Self-test of the real-server test harness in `tests/support`: starts the servers
//! and exercises each helper against them. If this fails, other integration tests
//! will too; fix the harness (or run `scripts/install-test-servers.sh`) first.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{
    bus::{self, BusClient, ReplyWatcher},
    servers, vault,
};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn servers_start_once_and_report_their_stack() {
    let first = servers();
    let second = servers();
    assert!(std::ptr::eq(first, second), "servers() must start one stack");
    assert!(["local processes", "containers"].contains(&first.stack_name()));
    assert!(first.vault_addr().starts_with("http://127.0.0.1:"));
    assert!(!first.root_token().is_empty());
    assert!(first.postgres_port() > 0);
    assert!(first.unseal_key().is_some(), "dev server printed no unseal key");
}

#[tokio::test]
async fn produce_and_watch_a_record() {
    let bootstrap = servers().bootstrap_servers();
    let topic = format!("selftest-{}", uuid::Uuid::new_v4().simple());
    bus::create_topics(&bootstrap, &[&topic], 2).await;
    // Started before the record exists: it must still see it.
    let watcher = ReplyWatcher::start(&bootstrap, std::slice::from_ref(&topic));

    let client = BusClient::new(&bootstrap);
    let body = json!({ "correlation_id": "json-corr", "hello": "bus" });
    client.produce(&topic, Some(b"key-1"), body.to_string().as_bytes(), &[("correlation_id", "header-corr")]).await;
    client.produce(&topic, None, br#"{"correlation_id":"json-only"}"#, &[]).await;

    let by_header =
        watcher.wait_for_correlation("header-corr", WAIT).await.expect("record with the correlation_id header");
    assert_eq!(by_header.key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(by_header.json.as_ref(), Some(&body));
    assert_eq!(by_header.header("correlation_id"), Some("header-corr"));

    let by_json =
        watcher.wait_for_correlation("json-only", WAIT).await.expect("record with the correlation_id JSON field");
    assert_eq!(by_json.key, None);

    let missing = watcher
        .wait_for_correlation("never-sent", Duration::from_millis(300))
        .await
        .expect_err("nothing was sent with this correlation id");
    assert!(format!("{missing:#}").contains("2 record(s) seen"), "{missing:#}");
    assert_eq!(watcher.all_records().len(), 2);
}

#[tokio::test]
async fn kv_write_read_and_metadata() {
    vault::enable_kv2("selftest-kv").await;
    vault::enable_kv2("selftest-kv").await; // idempotent

    assert_eq!(vault::read_kv("selftest-kv", "app/db").await, None);
    let v1 = vault::write_kv("selftest-kv", "app/db", &json!({ "password": "one" })).await;
    let v2 = vault::write_kv("selftest-kv", "app/db", &json!({ "password": "two" })).await;
    assert_eq!((v1, v2), (1, 2));
    assert_eq!(vault::read_kv("selftest-kv", "app/db").await, Some(json!({ "password": "two" })));
    let metadata = vault::kv_metadata("selftest-kv", "app/db").await.expect("metadata of a written secret");
    assert_eq!(metadata["current_version"], 2);
    assert_eq!(vault::kv_metadata("selftest-kv", "nope").await, None);
}

#[tokio::test]
async fn database_lease_is_renewable() {
    let (lease_id, duration) = vault::new_database_lease().await;
    assert!(lease_id.starts_with("database/creds/app/"), "{lease_id}");
    assert_eq!(duration, 3600);

    let lookup = vault::lease_lookup(&lease_id).await;
    assert_eq!(lookup["renewable"], true, "{lookup}");

    let renewed = vault::renew_lease(&lease_id, Some(7200)).await;
    assert_eq!(renewed.status, StatusCode::OK, "{:?}", renewed);
    assert_eq!(renewed.body["lease_id"], lease_id.as_str());
    assert!(renewed.body["lease_duration"].as_u64() >= Some(3600), "{:?}", renewed);
}

#[tokio::test]
async fn pki_lease_is_not_renewable() {
    let lease_id = vault::pki_nonrenewable_lease().await;
    assert!(lease_id.starts_with("pki/issue/"), "{lease_id}");
    assert_eq!(vault::lease_lookup(&lease_id).await["renewable"], false);

    let renewed = vault::renew_lease(&lease_id, None).await;
    assert_eq!(renewed.status, StatusCode::BAD_REQUEST, "{:?}", renewed);
    assert!(renewed.errors().contains("lease is not renewable"), "{:?}", renewed);
}

#[tokio::test]
async fn approle_login_and_child_token() {
    vault::enable_kv2("selftest-approle").await;
    vault::write_kv("selftest-approle", "svc", &json!({ "k": "v" })).await;
    vault::put_policy("selftest-reader", r#"path "selftest-approle/data/*" { capabilities = ["read"] }"#).await;

    let (role_id, secret_id) = vault::enable_approle_role("selftest", &["selftest-reader"], "20m").await;
    let auth = vault::approle_login(&role_id, &secret_id).await;
    assert_eq!(auth["lease_duration"], 1200);
    assert_eq!(auth["renewable"], true);
    let token = auth["client_token"].as_str().expect("client_token");

    let read = vault::request_with_token(token, Method::GET, "selftest-approle/data/svc", None).await;
    assert_eq!(read.status, StatusCode::OK, "{read:?}");
    assert_eq!(read.body["data"]["data"]["k"], "v");
    let denied = vault::request_with_token(token, Method::GET, "secret/data/anything", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");

    // A child token with a TTL is renewable (the dev root token is not).
    let child = vault::create_token(&["selftest-reader"], "10m", true).await;
    let renewed = vault::request_with_token(&child, Method::POST, "auth/token/renew-self", None).await;
    assert_eq!(renewed.status, StatusCode::OK, "{renewed:?}");
}
