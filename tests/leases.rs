//! Lease management against real leases (database engine on PostgreSQL):
//! lookup, revoke, and keep-alive with its events; kept-alive leases kept
//! in the lease registry across a restart and a SIGKILLed group member, and
//! taken off it by `revoke_lease`. Renewals are judged by Vault's own view
//! of the lease (`sys/leases/lookup`).

mod support;

use std::time::Duration;

use serde_json::json;
use support::bus::ReplyWatcher;
use support::node::{Node, NodeOptions};
use support::{servers, vault};

/// How long a test waits for the node's figures to settle.
const SETTLE: Duration = Duration::from_secs(60);

fn options(instance: &str) -> NodeOptions {
    NodeOptions::default().env("VAULT_TOKEN", servers().root_token()).env("ONEX_INSTANCE_ID", instance)
}

/// Waits until `node`'s lease keeper renewed a lease (its renewal count,
/// not a `renew_lease` request it may answer again after a rebalance), and
/// fails unless that happens before `expires`; then Vault must show
/// `lease_id` expiring later than `expires`.
async fn renewed_in_time(node: &Node, lease_id: &str, expires: chrono::DateTime<chrono::Utc>) {
    let limit = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    node.wait_for_metric("onex_vault_adapter_lease_renewals_total", |n| n >= 1.0, limit).await;
    let renewed_to = vault::wait_for_lease_renewal(lease_id, expires).await;
    eprintln!("expiry moved from {expires} to {renewed_to}");
}

/// Asks `node` to keep `lease_id` alive.
async fn keep_alive(node: &Node, lease_id: &str) {
    let renewed =
        node.requester().call(json!({"operation": "renew_lease", "lease_id": lease_id, "keep_alive": true})).await;
    assert_eq!(renewed["result"]["kept_alive"], true, "{renewed}");
}

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
    // Counted where operators and orchestrators read them.
    assert_eq!(node.metric("onex_vault_adapter_lease_expirations_total").await, 1.0);
    assert!(node.metric("onex_vault_adapter_lease_renewals_total").await >= 2.0);
    assert_eq!(node.metric("onex_vault_adapter_lease_renewal_refusals_total").await, 0.0);
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

#[tokio::test]
async fn a_kept_lease_is_renewed_by_the_restarted_node() {
    let mut first = Node::start_with(options("restart-first")).await;
    first.requester().call(json!({"operation": "list_secrets"})).await;
    // 30 s per renewal: renewed at 20 s, by the node that comes after the restart.
    let (lease_id, duration) = vault::short_database_lease("30s", "1h").await;
    assert_eq!(duration, 30);
    keep_alive(&first, &lease_id).await;
    first.wait_for_metric("onex_vault_adapter_leases_kept_alive", |n| n == 1.0, SETTLE).await;
    assert_eq!(first.stop(), Some(0), "clean stop");
    // Nothing renews it while no node runs: this is when it would expire.
    let expires = vault::lease_expire_time(&lease_id).await;

    let second = Node::start_with(options("restart-second").join(&first)).await;
    second.wait_for_metric("onex_vault_adapter_leases_registered", |n| n == 1.0, SETTLE).await;
    renewed_in_time(&second, &lease_id, expires).await;
    let looked_up = second.requester().call(json!({"operation": "lookup_lease", "lease_id": lease_id})).await;
    assert_eq!(looked_up["result"]["kept_alive"], true, "{looked_up}");
}

#[tokio::test]
async fn the_survivor_renews_the_leases_of_a_killed_instance() {
    let a = Node::start_with(options("failover-a")).await;
    let b = Node::start_with(options("failover-b").join(&a)).await;
    // Both hold a share of the registry's 3 partitions.
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let on_a = a.metric("onex_vault_adapter_lease_registry_partitions").await;
        let on_b = b.metric("onex_vault_adapter_lease_registry_partitions").await;
        if on_a > 0.0 && on_b > 0.0 && on_a + on_b == 3.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "registry partitions not shared: a={on_a} b={on_b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.requester().call(json!({"operation": "list_secrets"})).await;
    // A third of 45 s (when an owner renews) leaves 15 s for the 6 s session
    // timeout and the rebalance.
    let (lease_id, _) = vault::short_database_lease("45s", "1h").await;
    keep_alive(&a, &lease_id).await;

    // Its owner is the instance holding its registry partition.
    let deadline = tokio::time::Instant::now() + SETTLE;
    let (on_a, on_b) = loop {
        let on_a = a.metric("onex_vault_adapter_leases_kept_alive").await;
        let on_b = b.metric("onex_vault_adapter_leases_kept_alive").await;
        if on_a + on_b == 1.0 {
            break (on_a, on_b);
        }
        assert!(tokio::time::Instant::now() < deadline, "no single owner: a={on_a} b={on_b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut owner, survivor) = if on_a == 1.0 { (a, b) } else { (b, a) };
    eprintln!("owner holds the lease (a={on_a}, b={on_b}); SIGKILL it");
    owner.kill();
    let expires = vault::lease_expire_time(&lease_id).await;

    survivor.wait_for_metric("onex_vault_adapter_lease_registry_partitions", |n| n == 3.0, SETTLE).await;
    survivor.wait_for_metric("onex_vault_adapter_leases_kept_alive", |n| n == 1.0, SETTLE).await;
    // The killed owner may have left the keep_alive request uncommitted; the
    // survivor then answers it again (renewing the lease through the
    // request), which is why the renewal counted is the keeper's.
    renewed_in_time(&survivor, &lease_id, expires).await;
    drop(owner);
}

#[tokio::test]
async fn a_revoked_lease_leaves_the_registry_and_is_not_renewed_after_a_restart() {
    let mut first = Node::start_with(options("revoke-first")).await;
    first.requester().call(json!({"operation": "list_secrets"})).await;
    let (revoked, _) = vault::short_database_lease("20s", "1h").await;
    let (kept, _) = vault::short_database_lease("20s", "1h").await;
    keep_alive(&first, &revoked).await;
    keep_alive(&first, &kept).await;
    let answer = first.requester().call(json!({"operation": "revoke_lease", "lease_id": revoked})).await;
    assert_eq!(answer["result"]["revoked"], true, "{answer}");
    first.wait_for_metric("onex_vault_adapter_leases_registered", |n| n == 1.0, SETTLE).await;
    assert_eq!(first.stop(), Some(0), "clean stop");
    let expires = vault::lease_expire_time(&kept).await;

    let events = ReplyWatcher::start(&servers().bootstrap_servers(), &[first.topics.lease_events.clone()]);
    let second = Node::start_with(options("revoke-second").join(&first)).await;
    // The restarted node renews the kept lease (registered after the revoked
    // one, so due after it) and knows of no other.
    renewed_in_time(&second, &kept, expires).await;
    assert_eq!(second.metric("onex_vault_adapter_leases_registered").await, 1.0);
    assert_eq!(second.metric("onex_vault_adapter_leases_kept_alive").await, 1.0);
    let about_revoked: Vec<_> = events
        .all_records()
        .into_iter()
        .filter(|r| r.json.as_ref().is_some_and(|j| j["payload"]["lease_id"] == revoked.as_str()))
        .collect();
    assert!(about_revoked.is_empty(), "the revoked lease was tried again: {about_revoked:?}");

    // On the registry its last record is a tombstone.
    let registry = ReplyWatcher::start(&servers().bootstrap_servers(), &[first.topics.lease_registry.clone()]);
    let id = revoked.clone();
    let records = registry
        .wait_for_many(move |r| r.key.as_deref() == Some(id.as_bytes()), 2, Duration::from_secs(30))
        .await
        .expect("the registration and the tombstone of the revoked lease");
    let last = records.last().expect("records");
    assert!(last.value.is_empty(), "the revoked lease's last registry record is not a tombstone: {last:?}");
    let registration = records[0].json.as_ref().expect("a JSON registration");
    assert_eq!(registration["payload"]["lease_id"], revoked.as_str(), "{registration}");
}
