//! Fault injection between the node and Kafka: the node's link to the broker is
//! cut and restored while requests keep coming (see `support::kafka_link` for
//! how only the node's link is cut while the test's own clients keep working).
//!
//! A test binary of its own: fault tests must not share servers with others.
//! Each test has its own link and node, so they run in parallel.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;
use support::bus::ReplyWatcher;
use support::kafka_link::KafkaLink;
use support::load::{self, Load};
use support::node::{Node, NodeOptions};
use support::servers::Stack;
use support::{servers, vault};

const WAIT: Duration = Duration::from_secs(90);
/// The node's group session timeout in tests (`KAFKA_SESSION_TIMEOUT_MS`).
const SESSION: Duration = Duration::from_secs(6);
const BEFORE: usize = 40;
const DURING: usize = 40;

/// Cuts the node's Kafka link for `cut` right after the first of a batch of
/// requests is answered, sends more during the cut, restores the link, and
/// checks that every request is answered by the same node process.
async fn cut_and_restore(name: &str, path: &str, cut: Duration) {
    let link = match KafkaLink::start() {
        Ok(link) => link,
        // The relay is the local stack's Tansu binary; a containers-only
        // machine may not have it.
        Err(e) if servers().stack() == Stack::Containers => {
            let _ = writeln!(std::io::stderr(), "SKIPPED {name}: no Kafka link on the containers stack: {e}");
            return;
        }
        Err(e) => panic!("cannot build the Kafka link: {e}"),
    };
    vault::write_kv("secret", path, &json!({"k": "v"})).await;
    let node = Node::start_with(
        NodeOptions::default().env("VAULT_TOKEN", servers().root_token()).bootstrap_servers(&link.bootstrap_servers()),
    )
    .await;
    node.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p >= 3.0, WAIT).await;
    let pid = node.pid();
    let load = Load::new(node.requester());
    let get = || json!({"operation": "get_secret", "path": path});

    // Before: a batch; the cut comes as soon as its first reply is back, so
    // the rest are in the node, or on their way to it, when the link goes.
    for _ in 0..BEFORE {
        load.send(get()).await;
    }
    load.wait_answered(1, WAIT).await;
    let cut_at = Instant::now();
    link.proxy.cut();
    let answered_at_cut = load.answered();

    // During: more requests, produced straight to the broker while the node's
    // link is down.
    let mut during = Vec::new();
    for _ in 0..DURING {
        during.push(load.send(get()).await);
    }
    tokio::time::sleep(cut.saturating_sub(cut_at.elapsed())).await;
    let replies = load.replies();
    let answered_during_cut = during.iter().filter(|id| replies.contains_key(*id)).count();
    assert_eq!(answered_during_cut, 0, "requests sent during the cut were answered: the node bypassed the proxy");

    // Restore: everything is answered, without touching the node.
    let restored = Instant::now();
    link.proxy.pass();
    let tally = load.wait_all_answered(WAIT).await;
    let recovery = restored.elapsed();
    assert!(tally.unanswered.is_empty(), "{tally}");
    assert_eq!(tally.outcomes.get("success"), Some(&(BEFORE + DURING)), "{tally}");
    assert_eq!(node.pid(), pid, "the same node process answered (no restart)");

    load::report(
        name,
        &format!(
            "node's Kafka link reset and refused for {} ms ({answered_at_cut} of {BEFORE} earlier requests answered at \
             the cut, {DURING} sent during it)",
            cut.as_millis()
        ),
        &tally,
        recovery,
        "recovery measured from the restore to the last first reply; duplicates are records answered before the cut \
         whose offsets could not be committed",
    );
}

/// A cut longer than the session timeout: the broker drops the node from its
/// group, so on reconnection it rejoins and resumes from the last committed
/// offsets (records answered but not committed are answered again).
#[tokio::test]
async fn kafka_link_cut_longer_than_the_session_loses_no_request() {
    cut_and_restore("kafka_link_cut", "kafka-cut/long", SESSION + Duration::from_secs(2)).await;
}

/// A blip shorter than the session timeout.
#[tokio::test]
async fn kafka_link_blip_loses_no_request() {
    cut_and_restore("kafka_link_blip", "kafka-cut/blip", Duration::from_secs(2)).await;
}

/// SIGTERM while the broker is unreachable: the node cannot commit or leave
/// its group, but it still stops within its shutdown deadline and says what
/// it abandoned (redelivery to the group's next member is `fault_node`'s).
#[tokio::test]
async fn sigterm_with_kafka_unreachable_stops_within_the_deadline() {
    let link = match KafkaLink::start() {
        Ok(link) => link,
        Err(e) if servers().stack() == Stack::Containers => {
            let _ = writeln!(std::io::stderr(), "SKIPPED: no Kafka link on the containers stack: {e}");
            return;
        }
        Err(e) => panic!("cannot build the Kafka link: {e}"),
    };
    const DEADLINE_SECONDS: u64 = 4;
    let mut node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .bootstrap_servers(&link.bootstrap_servers())
            .edit(|c| c["event_bus"]["shutdown_timeout_seconds"] = DEADLINE_SECONDS.into()),
    )
    .await;
    node.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p >= 3.0, WAIT).await;
    // One request answered: the node has offsets to commit.
    let answered = node.requester().call(json!({"operation": "list_secrets"})).await;
    assert_eq!(answered["status"], "success", "{answered}");

    link.proxy.cut();
    let stopping = Instant::now();
    node.terminate();
    // The deadline covers in-flight work, the final commit and the group
    // leave; the last health event has its own 5 s bound, run beside them.
    let limit = Duration::from_secs(DEADLINE_SECONDS.max(5) + 5);
    let code = node.wait_exit(limit);
    let took = stopping.elapsed();
    assert_eq!(code, Some(0), "a clean stop, even without the broker; log:\n{}", node.log_tail(30));
    let log = node.log();
    assert!(
        log.contains("shutdown deadline reached before the final commit"),
        "the node says what it abandoned; log:\n{}",
        node.log_tail(30)
    );
    let _ = writeln!(std::io::stderr(), "stop with Kafka unreachable took {took:?}");
}

/// The health status judges the Kafka link: while the node reaches no broker
/// `/metrics` says so, and a health event reports the loss (unhealthy when
/// computed during the cut, or degraded when the link came back since the
/// last one) instead of a plain `healthy` once the link is back.
#[tokio::test]
async fn a_lost_kafka_link_shows_in_metrics_and_in_the_health_status() {
    let link = match KafkaLink::start() {
        Ok(link) => link,
        Err(e) if servers().stack() == Stack::Containers => {
            let _ = writeln!(std::io::stderr(), "SKIPPED: no Kafka link on the containers stack: {e}");
            return;
        }
        Err(e) => panic!("cannot build the Kafka link: {e}"),
    };
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
            .bootstrap_servers(&link.bootstrap_servers()),
    )
    .await;
    node.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p >= 3.0, WAIT).await;
    // The test reads the health topic straight from the broker.
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), std::slice::from_ref(&node.topics.health));
    assert_eq!(node.metric("onex_vault_adapter_kafka_connected").await, 1.0);

    link.proxy.cut();
    node.wait_for_metric("onex_vault_adapter_kafka_connected", |up| up == 0.0, WAIT).await;
    assert!(node.metric("onex_vault_adapter_kafka_link_losses_total").await >= 1.0);
    link.proxy.pass();
    node.wait_for_metric("onex_vault_adapter_kafka_connected", |up| up == 1.0, WAIT).await;

    let reported = events
        .wait_for(
            |r| {
                let figures = &r.json.as_ref().map_or(&serde_json::Value::Null, |j| j)["payload"]["health_metrics"]
                    ["custom_metrics"];
                figures["bus"]["kafka_link_losses_total"].as_u64().is_some_and(|n| n >= 1)
                    && figures["status"] != "healthy"
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("no health event reports the lost link: {e}; log:\n{}", node.log_tail(60)));
    let figures = &reported.json.as_ref().expect("JSON")["payload"]["health_metrics"]["custom_metrics"];
    let reasons = figures["status_reasons"].to_string();
    assert!(
        reasons.contains("kafka unreachable") || reasons.contains("kafka link lost"),
        "the status names the Kafka link: {figures}"
    );
}
