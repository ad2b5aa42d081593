//! The read cache and batch reads against the real stack: cached reads are
//! served without Vault (even with Vault down), writes through the node
//! invalidate, `fresh` bypasses, staleness is bounded by the TTL; a batch
//! answers per path.

mod support;

use serde_json::json;
use support::bus::ReplyWatcher;
use support::node::{Node, NodeOptions};
use support::{faults, servers, vault};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

#[tokio::test]
async fn cached_reads_skip_vault_and_writes_through_the_node_invalidate() {
    let _vault = faults::exclusive_vault().await;
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_READ_CACHE", "true")
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1"),
    )
    .await;
    let requester = node.requester();
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));
    let path = unique("cached");
    let get = json!({"operation": "get_secret", "path": path});

    vault::write_kv("secret", &path, &json!({"v": "one"})).await;
    assert_eq!(requester.call(get.clone()).await["result"]["data"]["v"], "one", "miss: read from Vault");

    // Written around the node: the cache still answers the old value (the
    // documented staleness), `fresh` reads Vault.
    vault::write_kv("secret", &path, &json!({"v": "two"})).await;
    assert_eq!(requester.call(get.clone()).await["result"]["data"]["v"], "one", "hit: served from the cache");
    let fresh = requester.call(json!({"operation": "get_secret", "path": path, "consistency": "fresh"})).await;
    assert_eq!(fresh["result"]["data"]["v"], "two");
    assert_eq!(requester.call(get.clone()).await["result"]["data"]["v"], "two", "fresh refreshed the cache");

    // A write through the node invalidates.
    let set = requester.call(json!({"operation": "set_secret", "path": path, "data": {"v": "three"}})).await;
    assert_eq!(set["status"], "success");
    assert_eq!(requester.call(get.clone()).await["result"]["data"]["v"], "three");

    // Cached reads never touch Vault: they are answered with Vault down.
    servers().vault_stop();
    eprintln!("injected: Vault stopped");
    let cached = requester.call(get.clone()).await;
    assert_eq!(cached["result"]["data"]["v"], "three", "{cached}");
    let uncached = requester.call(json!({"operation": "get_secret", "path": unique("never-read")})).await;
    assert_eq!(uncached["error"]["code"], "ONEX_CORE_205_SERVICE_UNAVAILABLE", "{uncached}");
    servers().vault_start().await;

    let topic = node.topics.health.clone();
    let record = events
        .wait_for(
            move |r| {
                r.topic == topic
                    && r.json.as_ref().is_some_and(|j| {
                        j["payload"]["health_metrics"]["custom_metrics"]["read_cache"]["hits_total"].as_u64() >= Some(3)
                    })
            },
            std::time::Duration::from_secs(45),
        )
        .await
        .expect("cache figures in a health event");
    let stats = &record.json.expect("json")["payload"]["health_metrics"]["custom_metrics"]["read_cache"];
    assert!(stats["misses_total"].as_u64().is_some_and(|m| m >= 3), "{stats}");
    assert!(stats["entries"].as_u64().is_some_and(|e| e >= 1), "{stats}");
}

#[tokio::test]
async fn a_batch_answers_every_path_and_respects_its_limit() {
    let _vault = faults::exclusive_vault().await;
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .edit(|c| c["vault"]["batch"]["max_paths"] = 4.into()),
    )
    .await;
    let requester = node.requester();
    let base = unique("batch");
    vault::write_kv("secret", &format!("{base}/a"), &json!({"n": 1})).await;
    vault::write_kv("secret", &format!("{base}/b"), &json!({"n": 2})).await;

    let paths = [format!("{base}/a"), format!("{base}/missing"), format!("{base}/b")];
    let reply = requester.call(json!({"operation": "get_secrets_batch", "paths": paths})).await;
    assert_eq!(reply["status"], "success", "{reply}");
    let results = reply["result"]["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["path"], paths[0]);
    assert_eq!(results[0]["data"], json!({"n": 1}));
    assert_eq!(results[1]["status"], "error");
    assert_eq!(results[1]["error"]["code"], "ONEX_CORE_085_RESOURCE_NOT_FOUND");
    assert_eq!(results[2]["data"], json!({"n": 2}));
    assert_eq!(results[2]["metadata"]["version"], 1);

    let too_many: Vec<String> = (0..5).map(|n| format!("{base}/{n}")).collect();
    let refused = requester.call(json!({"operation": "get_secrets_batch", "paths": too_many})).await;
    assert_eq!(refused["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{refused}");
    let hostile = requester.call(json!({"operation": "get_secrets_batch", "paths": ["ok", "../sys"]})).await;
    assert_eq!(hostile["error"]["code"], "ONEX_CORE_007_INVALID_INPUT", "{hostile}");
}
