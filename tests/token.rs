//! The node's own token over its life: background renewal, a new AppRole
//! login when renewal is capped or the token revoked, and a 403 from policy
//! told apart from a 403 from a dead token. Waits on health events, which
//! report renewals and logins.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::bus::ReplyWatcher;
use support::node::{Node, NodeOptions};
use support::{servers, vault};

const WAIT: Duration = Duration::from_secs(60);

async fn kv_policy(prefix: &str) -> String {
    let name = format!("token-test-{}", uuid::Uuid::new_v4().simple());
    vault::put_policy(&name, &format!(r#"path "secret/data/{prefix}/*" {{ capabilities = ["read"] }}"#)).await;
    vault::write_kv("secret", &format!("{prefix}/value"), &json!({"k": "v"})).await;
    name
}

/// Waits for a health event whose `token` section satisfies `want`.
async fn token_status(node: &Node, events: &ReplyWatcher, want: impl Fn(&Value) -> bool + Send + 'static) -> Value {
    let topic = node.topics.health.clone();
    let record = events
        .wait_for(
            move |r| {
                r.topic == topic
                    && r.json.as_ref().is_some_and(|j| want(&j["payload"]["health_metrics"]["custom_metrics"]["token"]))
            },
            WAIT,
        )
        .await
        .expect("a health event with the expected token state");
    record.json.expect("json")["payload"]["health_metrics"]["custom_metrics"]["token"].clone()
}

fn options() -> NodeOptions {
    NodeOptions::default().env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
}

#[tokio::test]
async fn a_short_lived_token_is_renewed_in_the_background() {
    let policy = kv_policy("renewed").await;
    let token = vault::create_token(&[&policy], "4s", true).await;
    let node = Node::start_with(options().env("VAULT_TOKEN", &token)).await;
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));

    // Three renewals of a 4 s token take about 8 s: the token outlived its TTL twice.
    let status = token_status(&node, &events, |t| t["renewals_total"].as_u64().is_some_and(|n| n >= 3)).await;
    assert_eq!(status["renewal_failures_total"], 0, "{status}");
    assert!(status["last_renewal"].is_string());
    let lookup = vault::request_with_token(&token, reqwest::Method::GET, "auth/token/lookup-self", None).await;
    assert!(lookup.is_success(), "the token expired: {:?}", lookup.body);
    let reply = node.requester().call(json!({"operation": "get_secret", "path": "renewed/value"})).await;
    assert_eq!(reply["status"], "success", "{reply}");
}

#[tokio::test]
async fn a_capped_token_is_replaced_by_a_new_login_without_failing_requests() {
    let policy = kv_policy("capped").await;
    let role = format!("capped-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (role_id, secret_id) = vault::enable_approle_role(&role, &[&policy], "3s").await;
    let update = vault::request(
        reqwest::Method::POST,
        &format!("auth/approle/role/{role}"),
        Some(&json!({"token_ttl": "3s", "token_max_ttl": "5s"})),
    )
    .await;
    assert!(update.is_success(), "{:?}", update.body);
    let node = Node::start_with(
        options().env("VAULT_AUTH_METHOD", "approle").env("VAULT_ROLE_ID", &role_id).env("VAULT_SECRET_ID", &secret_id),
    )
    .await;
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));
    let requester = node.requester();

    // Traffic throughout: tokens of at most 5 s are swapped under it.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut answered = 0;
    loop {
        let reply = requester.call(json!({"operation": "get_secret", "path": "capped/value"})).await;
        assert_eq!(reply["status"], "success", "a request failed across a token swap: {reply}");
        answered += 1;
        let logins = events
            .all_records()
            .iter()
            .filter_map(|r| {
                r.json.as_ref()?["payload"]["health_metrics"]["custom_metrics"]["token"]["logins_total"].as_u64()
            })
            .max()
            .unwrap_or(0);
        if logins >= 2 {
            eprintln!("TOKEN capped: {logins} new logins, {answered} requests answered, none failed");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no new login within {WAIT:?}");
    }
}

#[tokio::test]
async fn a_revoked_token_is_replaced_on_its_first_403_but_policy_denials_are_not() {
    let policy = kv_policy("revoked").await;
    vault::write_kv("secret", "elsewhere/value", &json!({"k": "v"})).await;
    let role = format!("revoked-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (role_id, secret_id) = vault::enable_approle_role(&role, &[&policy], "1h").await;
    let node = Node::start_with(
        options().env("VAULT_AUTH_METHOD", "approle").env("VAULT_ROLE_ID", &role_id).env("VAULT_SECRET_ID", &secret_id),
    )
    .await;
    let requester = node.requester();
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));
    let first = requester.call(json!({"operation": "get_secret", "path": "revoked/value"})).await;
    assert_eq!(first["status"], "success", "{first}");

    // A policy denial: answered at once, no new login.
    let denied = requester.call(json!({"operation": "get_secret", "path": "elsewhere/value"})).await;
    assert_eq!(denied["error"]["code"], "ONEX_CORE_025_PERMISSION_DENIED", "{denied}");
    token_status(&node, &events, |t| t["logins_total"] == 0).await;

    // Revoke every token AppRole gave out: the node's is dead now.
    let revoked = vault::request(reqwest::Method::PUT, "sys/leases/revoke-prefix/auth/approle/login", None).await;
    assert!(revoked.is_success(), "{:?}", revoked.body);
    eprintln!("injected: every AppRole token revoked");
    let after = requester.call(json!({"operation": "get_secret", "path": "revoked/value"})).await;
    assert_eq!(after["status"], "success", "the node did not log in again on its dead token's 403: {after}");
    let status = token_status(&node, &events, |t| t["logins_total"].as_u64().is_some_and(|n| n >= 1)).await;
    eprintln!("TOKEN revoked: answered after a new login; token state {status}");
    // Both logins (at start and after the revocation) are authentications
    // Vault accepted; the token lookups include the dead-token check.
    assert!(status["authentications_total"].as_u64().is_some_and(|n| n >= 2), "{status}");
    assert_eq!(status["authentication_failures_total"], 0, "{status}");
    assert!(status["lookups_total"].as_u64().is_some_and(|n| n >= 2), "{status}");
}

/// With token auth there is no new login: a revoked token fails every
/// request, and `/ready` must say so although Vault itself is healthy.
#[tokio::test]
async fn a_revoked_static_token_makes_the_node_unready() {
    let policy = kv_policy("unready").await;
    let token = vault::create_token(&[&policy], "1h", true).await;
    let node = Node::start_with(options().env("VAULT_TOKEN", &token)).await;
    node.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p >= 1.0, WAIT).await;
    let (status, body) = node.http_get("/ready").await;
    assert_eq!(status, 200, "{body}");
    vault::request(reqwest::Method::POST, "auth/token/revoke", Some(&json!({"token": token}))).await;
    let (status, body) = node.http_get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["reason"].as_str().is_some_and(|r| r.contains("token is refused")), "{body}");
}
