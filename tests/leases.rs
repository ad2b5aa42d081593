//! Lease management against real leases (database engine on PostgreSQL):
//! lookup, revoke, and keep-alive with its events.

mod support;

use std::time::Duration;

use serde_json::json;
use support::bus::ReplyWatcher;
use support::node::Node;
use support::{servers, vault};

#[tokio::test]
async fn lookup_and_revoke_a_lease() {
    let node = Node::start().await;
    let requester = node.requester();
    let (lease_id, _) = vault::new_database_lease().await;

    let looked_up = requester.call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["status"], "success", "{looked_up}");
    let result = &looked_up["result"];
    assert_eq!(result["lease_id"], lease_id);
    assert_eq!(result["renewable"], true);
    assert!(result["ttl_seconds"].as_u64().is_some_and(|t| t > 0 && t <= 3600), "{result}");
    assert!(result["expire_time"].is_string());
    assert_eq!(result["kept_alive"], false);

    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"], json!({"lease_id": lease_id, "revoked": true}), "{revoked}");
    let gone = vault::request(reqwest::Method::PUT, "sys/leases/lookup", Some(&json!({"lease_id": lease_id}))).await;
    assert!(!gone.is_success(), "the lease still exists after revoke_lease: {:?}", gone.body);

    let missing = requester.call(json!({"operation": "lookup_lease", "lease_id": "database/creds/app/nope"})).await;
    assert_eq!(missing["status"], "error", "{missing}");
    let bad = requester.call(json!({"operation": "revoke_lease", "lease_id": ""})).await;
    assert_eq!(bad["error"]["code"], "ONEX_CORE_007_INVALID_INPUT");
}

#[tokio::test]
async fn keep_alive_renews_until_max_ttl_then_reports_expiry() {
    let node = Node::start().await;
    let requester = node.requester();
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.lease_events));
    // The lease lives 3 s: first make sure the node is consuming (group joined).
    requester.call(json!({"operation": "list_secrets"})).await;
    // Lives 3 s per renewal, 10 s at most: the node must renew it about every
    // 2 s, then say it is expiring (capped renewal) and expired.
    let (lease_id, duration) = vault::short_database_lease("3s", "10s").await;
    assert_eq!(duration, 3);
    let started = std::time::Instant::now();

    let renewed = requester
        .call(json!({"operation": "renew_lease", "lease_id": lease_id, "increment_seconds": 3, "keep_alive": true}))
        .await;
    assert_eq!(renewed["result"]["kept_alive"], true, "{renewed}");
    let looked_up = requester.call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["result"]["kept_alive"], true);

    // Still alive well past its 3 s duration: the node renewed it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let alive = vault::lease_lookup(&lease_id).await;
    assert!(alive["ttl"].as_u64().is_some_and(|ttl| ttl > 0), "lease not kept alive: {alive}");

    let id = lease_id.clone();
    let expiring = events
        .wait_for(
            move |r| {
                r.json
                    .as_ref()
                    .is_some_and(|j| j["payload"]["lease_id"] == id.as_str() && j["payload"]["event"] == "expiring")
            },
            Duration::from_secs(30),
        )
        .await
        .expect("an expiring event when the max TTL caps the renewal");
    let payload = &expiring.json.expect("json")["payload"];
    assert!(payload["ttl_seconds"].as_u64().is_some_and(|t| t < 3), "{payload}");
    assert!(payload["instance_id"].is_string());
    let id = lease_id.clone();
    events
        .wait_for(
            move |r| {
                r.json
                    .as_ref()
                    .is_some_and(|j| j["payload"]["lease_id"] == id.as_str() && j["payload"]["event"] == "expired")
            },
            Duration::from_secs(30),
        )
        .await
        .expect("an expired event at the max TTL");
    eprintln!("lease kept alive for {:?} (max TTL 10 s)", started.elapsed());
    assert!(started.elapsed() >= Duration::from_secs(8), "expired before its max TTL");
}

#[tokio::test]
async fn revoking_a_kept_lease_stops_the_keep_alive() {
    let node = Node::start().await;
    let requester = node.requester();
    requester.call(json!({"operation": "list_secrets"})).await;
    let (lease_id, _) = vault::short_database_lease("4s", "60s").await;
    let renewed = requester.call(json!({"operation": "renew_lease", "lease_id": lease_id, "keep_alive": true})).await;
    assert_eq!(renewed["result"]["kept_alive"], true, "{renewed}");
    let revoked = requester.call(json!({"operation": "revoke_lease", "lease_id": lease_id})).await;
    assert_eq!(revoked["result"]["revoked"], true);
    let looked_up = requester.call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["status"], "error", "revoked lease still found: {looked_up}");
}
