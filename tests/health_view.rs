//! The `health` fleet view against a real Kafka-protocol broker: synthetic
//! health events of two instances (and a garbage record) on a topic of their
//! own, read back by the one-shot `health_view::snapshot`.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use onex_vault_tools::health_view::{self, KafkaUnreachable};
use serde_json::{json, Value};
use support::bus::{create_topics, BusClient};
use support::servers;

/// A health envelope of `instance`, sent at `at`, with
/// `count` get_secret requests (`errors` of them failed) since start.
fn health_event(instance: &str, at: DateTime<Utc>, count: u64, errors: u64) -> Value {
    json!({
        "envelope_id": uuid::Uuid::new_v4(),
        "envelope_timestamp": at,
        "correlation_id": uuid::Uuid::new_v4(),
        "source_tool": "node_infrastructure_vault_adapter_effect",
        "payload_type": "ModelNodeHealthEvent",
        "envelope_version": {"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null},
        "payload": { "event_type": "node_health_event", "node_id": uuid::Uuid::new_v4(),
            "node_name": "node_infrastructure_vault_adapter_effect", "timestamp": at,
            "event_id": uuid::Uuid::new_v4(), "report_interval_seconds": 10, "next_report_time": null,
            "health_metrics": { "custom_metrics": {
            "node_name": "node_infrastructure_vault_adapter_effect",
            "node_version": "0.1.0",
            "instance_id": instance,
            "uptime_seconds": 600.0,
            "status": "healthy",
            "status_reasons": [],
            "phase": "running",
            "interval_seconds": 10,
            "vault": { "reachable": true, "initialized": true, "sealed": false,
                       "standby": false, "version": "2.2.0", "latency_ms": 1.0 },
            "token": { "ttl_seconds": 3600, "renewable": true,
                       "renewals_total": 0, "renewal_failures_total": 0 },
            "circuit_breaker": { "state": "closed", "consecutive_failures": 0,
                                 "opened_total": 0, "seconds_until_half_open": null },
            "operations": {
                "get_secret": { "count": count, "errors": errors, "p50_ms": 1.0, "p99_ms": 8.0 }
            },
            "bus": { "consumed_total": count, "replied_total": count, "dlq_total": 0,
                     "in_flight": 1, "assigned_partitions": 1,
                     "consumer_lag": { "requests/0": 4 } },
            "vault_metrics": {}
        } }
        }
    })
}

#[tokio::test]
async fn snapshot_shows_one_row_per_instance_with_rates() {
    let bootstrap = servers().bootstrap_servers();
    let topic = format!("health-view-{}", uuid::Uuid::new_v4().simple());
    create_topics(&bootstrap, &[&topic], 2).await;

    let bus = BusClient::new(&bootstrap);
    let now = Utc::now();
    let ten_seconds_ago = now - chrono::TimeDelta::seconds(10);
    for (instance, events) in
        [("node-a", [(ten_seconds_ago, 100, 0), (now, 150, 5)]), ("node-b", [(ten_seconds_ago, 0, 0), (now, 20, 0)])]
    {
        for (at, count, errors) in events {
            let body = serde_json::to_vec(&health_event(instance, at, count, errors)).expect("serializable");
            bus.produce(&topic, Some(instance.as_bytes()), &body, &[]).await;
        }
    }
    bus.produce(&topic, Some(b"node-a"), b"not a health event", &[]).await;

    let table = health_view::snapshot(&bootstrap, &topic, 60).await.expect("snapshot of the health topic");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "header, two rows, footer:\n{table}");
    let columns = |line: &str| -> Vec<String> {
        line.split("   ").map(str::trim).filter(|cell| !cell.is_empty()).map(str::to_owned).collect()
    };
    let a = columns(lines[1]);
    let b = columns(lines[2]);
    // INSTANCE STATUS UPTIME BREAKER TTL OPS/S ERR/S P99 IN-FLIGHT LAG AGE
    assert_eq!(a[..10], ["node-a", "healthy", "10m0s", "closed", "1h0m", "5.00", "0.50", "8.0ms", "1", "4"], "{table}");
    assert_eq!(b[..7], ["node-b", "healthy", "10m0s", "closed", "1h0m", "2.00", "0.00"], "{table}");
    assert_eq!(lines[3], "(1 record skipped: not a health event)");
}

#[tokio::test]
async fn an_empty_topic_gives_an_empty_table() {
    let bootstrap = servers().bootstrap_servers();
    let topic = format!("health-view-empty-{}", uuid::Uuid::new_v4().simple());
    create_topics(&bootstrap, &[&topic], 1).await;
    let table = health_view::snapshot(&bootstrap, &topic, 60).await.expect("snapshot of an empty topic");
    assert!(table.ends_with("(no health events)\n"), "{table}");
}

#[tokio::test]
async fn an_unreachable_broker_fails_within_about_ten_seconds() {
    // Nothing listens on port 1 of the loopback interface.
    let started = Instant::now();
    let error = health_view::snapshot("127.0.0.1:1", "onex.evt.any", 60).await.expect_err("no broker there");
    assert!(error.is::<KafkaUnreachable>(), "expected KafkaUnreachable, got {error:#}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

/// `health --follow` against a live node: the instance appears healthy, turns
/// unhealthy while its Vault is cut off, and healthy again once Vault is back.
/// Piped, `--follow` prints a table whenever something changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_a_live_node_through_a_vault_outage() {
    use std::io::BufRead as _;
    use support::node::{Node, NodeOptions};
    use support::proxy::Proxy;

    let proxy = Proxy::start(servers().vault_socket_addr());
    let instance = format!("follow-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
            .env("ONEX_INSTANCE_ID", &instance)
            .vault_addr(&format!("http://{}", proxy.addr())),
    )
    .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onex-vault-adapter"))
        .args(["health", "--follow", "--stale-seconds", "30"])
        .args(["--bootstrap-servers", &servers().bootstrap_servers(), "--topic", &node.topics.health])
        .env_remove("KAFKA_SECURITY_PROTOCOL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start health --follow");
    let stdout = child.stdout.take().expect("piped stdout");
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    // The status column of the instance's row, each time a table shows it.
    let wait_for_status = |wanted: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("health --follow never showed {wanted}"));
            let mut columns = line.split_whitespace();
            if columns.next() == Some(instance.as_str()) && columns.next() == Some(wanted) {
                return line;
            }
        }
    };
    wait_for_status("healthy");
    proxy.cut();
    let down = wait_for_status("unhealthy");
    proxy.pass();
    wait_for_status("healthy");
    let _ = child.kill();
    let _ = child.wait();
    println!("health --follow during the outage: {down}");
}
