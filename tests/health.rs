//! What orchestrators and operators see: health events, `/ready`, `/metrics`
//! and the audit trail, checked against a known workload on the real stack.
//! (A test binary of its own: it may seal this binary's Vault.)

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::node::{Node, NodeOptions, Requester};
use support::{faults, servers, vault};

const CANARY: &str = "canary-health-3a9d-value";
const WAIT: Duration = Duration::from_secs(45);

async fn http_get(port: u16, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder().no_proxy().build().expect("client");
    match client.get(format!("http://127.0.0.1:{port}{path}")).send().await {
        Ok(response) => (response.status().as_u16(), response.text().await.unwrap_or_default()),
        Err(error) => (0, error.to_string()),
    }
}

/// Polls `/ready` until it answers `want` (the consumer group join takes a
/// few seconds), failing after `WAIT`.
async fn wait_ready(port: u16, want: u16) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = http_get(port, "/ready").await;
        if status == want {
            return body;
        }
        assert!(tokio::time::Instant::now() < deadline, "/ready never answered {want}; last: {status} {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn payload(record: &Record) -> &Value {
    &record.json.as_ref().expect("JSON record")["payload"]
}

/// The node's own figures in a health event: the custom metrics of the
/// upstream `ModelNodeHealthEvent` it publishes.
fn health_figures(record: &Record) -> &Value {
    &payload(record)["health_metrics"]["custom_metrics"]
}

#[tokio::test]
async fn health_metrics_and_audit_match_a_known_workload() {
    let _vault = faults::exclusive_vault().await;
    let policy = format!("health-{}", uuid::Uuid::new_v4().simple());
    vault::put_policy(
        &policy,
        r#"
        path "secret/data/health/*" { capabilities = ["read", "create", "update"] }
        path "secret/metadata/health/*" { capabilities = ["read", "create", "update"] }
        path "auth/token/lookup-self" { capabilities = ["read"] }
        "#,
    )
    .await;
    let token = vault::create_token(&[&policy], "1h", true).await;
    vault::write_kv("secret", "health/known", &json!({"k": "v"})).await;
    vault::write_kv("secret", "private/other", &json!({"k": "v"})).await;

    let mut node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", &token)
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
            .env("ONEX_INSTANCE_ID", "health-test-instance"),
    )
    .await;
    let topics = node.topics.clone();
    let events = ReplyWatcher::start(&servers().bootstrap_servers(), &[topics.health.clone(), topics.audit.clone()]);
    let requester = node.requester();
    wait_ready(node.http_port, 200).await;

    // The workload: 4 reads found, 2 not found, 1 denied, 3 writes (one
    // carrying the canary), 1 metadata write, 1 token lookup, 1 invalid
    // path, 1 unreadable record.
    let mut sent = Vec::new();
    let mut call = |payload: Value| {
        let envelope = Requester::envelope(payload);
        sent.push(envelope["correlation_id"].as_str().expect("id").to_owned());
        envelope
    };
    let mut envelopes = Vec::new();
    for _ in 0..4 {
        envelopes.push(call(json!({"operation": "get_secret", "path": "health/known"})));
    }
    for n in 0..2 {
        envelopes.push(call(json!({"operation": "get_secret", "path": format!("health/missing-{n}")})));
    }
    envelopes.push(call(json!({"operation": "get_secret", "path": "private/other"})));
    for n in 0..3 {
        envelopes.push(call(json!({"operation": "set_secret", "path": format!("health/w{n}"), "data": {"v": CANARY}})));
    }
    envelopes.push(call(json!({"operation": "write_metadata", "path": "health/w0", "max_versions": 5})));
    envelopes.push(call(json!({"operation": "lookup_token"})));
    envelopes.push(call(json!({"operation": "get_secret", "path": "../escape"})));
    for envelope in &envelopes {
        let reply = requester.send(envelope).await;
        assert!(reply.json.is_some());
    }
    requester.send_raw(None, b"not json at all").await;
    let total_records = envelopes.len() as u64 + 1;

    // A health event whose counters cover the whole workload.
    let health_topic = topics.health.clone();
    let event = events
        .wait_for(
            move |r| {
                r.topic == health_topic
                    && r.json.as_ref().is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["bus"]["consumed_total"] == total_records)
                    && r.json.as_ref().is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["bus"]["dlq_total"] == 1)
                    && r.json.as_ref().is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["bus"]["in_flight"] == 0)
                    // librdkafka reports lag in its statistics (every second)
                    // once it has fetched: the first events may not have it yet.
                    && r.json.as_ref().is_some_and(|j| {
                        j["payload"]["health_metrics"]["custom_metrics"]["bus"]["consumer_lag"].as_object().is_some_and(|lag| !lag.is_empty())
                    })
            },
            WAIT,
        )
        .await
        .expect("a health event covering the workload");
    let health = health_figures(&event).clone();
    assert_eq!(event.key.as_deref(), Some(&b"health-test-instance"[..]));
    // The upstream shape around the figures (omnibase-core's own models
    // check it in tests/conformance).
    let upstream = &event.json.as_ref().expect("JSON")["payload"];
    assert_eq!(upstream["event_type"], "node_health_event");
    assert_eq!(upstream["node_name"], "node_infrastructure_vault_adapter_effect");
    assert!(upstream["node_id"].as_str().is_some_and(|id| uuid::Uuid::try_parse(id).is_ok()), "{upstream}");
    assert_eq!(upstream["report_interval_seconds"], 1);
    assert!(upstream["next_report_time"].as_str().is_some(), "{upstream}");
    let generic = &upstream["health_metrics"];
    assert!(generic["memory_usage_mb"].as_u64().is_some_and(|mb| mb >= 1), "{generic}");
    assert!(generic["uptime_seconds"].as_u64().is_some(), "{generic}");
    assert!(generic["cpu_usage_percent"].as_f64().is_some_and(|p| (0.0..=100.0).contains(&p)), "{generic}");
    assert!(generic["health_check_latency_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{generic}");
    assert_eq!(health["node_name"], "node_infrastructure_vault_adapter_effect");
    assert_eq!(health["instance_id"], "health-test-instance");
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(health["vault"]["reachable"], true);
    assert_eq!(health["vault"]["sealed"], false);
    assert_eq!(health["circuit_breaker"]["state"], "closed");
    assert!(health["token"]["ttl_seconds"].as_u64().is_some_and(|ttl| ttl > 0 && ttl <= 3600), "{health}");
    let ops = &health["operations"];
    assert_eq!(ops["get_secret"]["count"], 8, "4 found + 2 missing + 1 denied + 1 invalid: {ops}");
    assert_eq!(ops["get_secret"]["errors"], 4, "{ops}");
    assert_eq!(ops["set_secret"]["count"], 3, "{ops}");
    assert_eq!(ops["set_secret"]["errors"], 0, "{ops}");
    assert_eq!(ops["unknown"]["count"], 1, "the unreadable record: {ops}");
    assert_eq!(ops["write_metadata"]["errors"], 0, "{ops}");
    // What the node did, by kind of work: every writing operation counts.
    let activity = &health["activity"];
    assert_eq!(activity["secrets_written_total"], 4, "3 set_secret + 1 write_metadata: {activity}");
    assert_eq!(activity["secrets_read_total"], 4, "successful reads only: {activity}");
    assert_eq!(activity["encryptions_total"], 0, "{activity}");
    assert_eq!(activity["certificates_issued_total"], 0, "{activity}");
    // The lookup_token request and the health probes' lookups; token auth
    // never logs in, so it has no authentication success rate.
    assert!(health["token"]["lookups_total"].as_u64().is_some_and(|n| n >= 2), "{health}");
    assert_eq!(health["token"]["authentications_total"], 0, "{health}");
    assert_eq!(health["vault_metrics"]["authentication_success_rate"], Value::Null, "{health}");
    assert_eq!(health["leases"]["registered"], 0, "{health}");
    assert_eq!(health["bus"]["kafka_connected"], true, "{health}");
    assert_eq!(health["bus"]["kafka_link_losses_total"], 0, "{health}");
    let bus = &health["bus"];
    assert_eq!(bus["replied_total"], envelopes.len() as u64, "{bus}");
    assert_eq!(bus["in_flight"], 0);
    assert!(bus["assigned_partitions"].as_u64().is_some_and(|p| p == 3), "{bus}");
    let lag = bus["consumer_lag"].as_object().expect("consumer_lag map");
    // librdkafka reports a partition's lag once it has fetched from it.
    assert!(!lag.is_empty() && lag.len() <= 3, "lag per assigned partition: {bus}");
    assert!(lag.values().all(|l| l.as_i64().is_some_and(|l| l >= 0)), "{bus}");
    let metrics = &health["vault_metrics"];
    assert!(metrics["memory_usage_mb"].as_f64().is_some_and(|mb| mb > 1.0), "{metrics}");
    assert!(metrics["seal_status_checks"].as_u64().is_some_and(|n| n >= 1));
    assert_eq!(metrics["is_leader"], true);
    assert_eq!(metrics["active_tokens"], Value::Null, "not measurable: must be null");
    assert_eq!(metrics["certificates_issued_total"], 0, "measured: none issued");
    assert!(metrics["token_lookups_per_second"].as_f64().is_some(), "{metrics}");
    assert!(metrics["encryption_operations_per_second"].as_f64().is_some(), "{metrics}");
    assert_eq!(metrics["cluster_nodes"], Value::Null);

    // Periodic events come at the configured interval (1 s), give or take.
    let periodic: Vec<chrono::DateTime<chrono::Utc>> = events
        .all_records()
        .iter()
        .filter(|r| {
            r.topic == topics.health
                && r.json
                    .as_ref()
                    .is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["phase"] == "running")
        })
        .filter_map(|r| r.json.as_ref()?["envelope_timestamp"].as_str()?.parse().ok())
        .collect();
    assert!(periodic.len() >= 2, "at least two periodic events by now");
    for pair in periodic.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!((500..=3000).contains(&gap), "events {gap} ms apart with a 1 s interval");
    }
    assert!(events.all_records().iter().any(|r| r.topic == topics.health
        && r.json.as_ref().is_some_and(|j| j["payload"]["health_metrics"]["custom_metrics"]["phase"] == "started")));

    // /metrics parses as Prometheus text and its counters match the workload.
    let (status, text) = http_get(node.http_port, "/metrics").await;
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text");
    let mut requests: HashMap<(String, String), f64> = HashMap::new();
    for sample in &scrape.samples {
        if sample.metric == "onex_vault_adapter_requests_total" {
            let value = match sample.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
                ref other => panic!("requests_total is {other:?}"),
            };
            let label = |name: &str| sample.labels.get(name).unwrap_or_default().to_owned();
            requests.insert((label("operation"), label("outcome")), value);
        }
    }
    let count = |op: &str, outcome: &str| requests.get(&(op.to_owned(), outcome.to_owned())).copied().unwrap_or(0.0);
    assert_eq!(count("get_secret", "success"), 4.0, "{requests:?}");
    assert_eq!(count("get_secret", "resource_not_found"), 2.0);
    assert_eq!(count("get_secret", "permission_denied"), 1.0);
    assert_eq!(count("get_secret", "invalid_input"), 1.0);
    assert_eq!(count("set_secret", "success"), 3.0);
    assert_eq!(count("unknown", "invalid_input"), 1.0);
    assert_eq!(count("write_metadata", "success"), 1.0);
    for name in [
        "onex_vault_adapter_dead_letters_total",
        "onex_vault_adapter_records_consumed_total",
        "onex_vault_adapter_token_lookups_total",
        "onex_vault_adapter_kafka_connected",
        "onex_vault_adapter_certificates_issued_total",
        "onex_vault_adapter_lease_expirations_total",
    ] {
        assert!(scrape.samples.iter().any(|s| s.metric == name), "{name} missing:\n{text}");
    }
    assert!(!text.contains(CANARY) && !text.contains(&token));

    // Where the time of a request goes: every stage is there, each record
    // was timed on its way in, and the performed requests at Vault.
    let number = |sample: &prometheus_parse::Sample| match sample.value {
        prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{} is {other:?}", sample.metric),
    };
    let stage = |stage: &str, series: &str| {
        let metric = format!("onex_vault_adapter_request_stage_seconds_{series}");
        scrape.samples.iter().find(|s| s.metric == metric && s.labels.get("stage") == Some(stage)).map(number)
    };
    let consumed = scrape.samples.iter().find(|s| s.metric == "onex_vault_adapter_records_consumed_total").map(number);
    for name in
        ["bus_wait", "key_wait", "decode_and_gate", "vault", "answer", "publish_reply", "publish_audit", "offset_store"]
    {
        assert!(stage(name, "count").is_some(), "stage {name} missing:\n{text}");
    }
    assert_eq!(stage("bus_wait", "count"), consumed, "every record timed on its way in");
    let performed = stage("vault", "count").unwrap_or_default();
    assert!(performed >= 8.0 && Some(performed) < consumed, "the performed requests, not the refused: {performed}");
    assert!(stage("vault", "sum").is_some_and(|seconds| seconds > 0.0));

    // The audit trail: one record per request, denied and invalid included.
    let audit_topic = topics.audit.clone();
    for id in &sent {
        let topic = audit_topic.clone();
        let id = id.clone();
        events
            .wait_for(move |r| r.topic == topic && payload(r)["correlation_id"] == id.as_str(), WAIT)
            .await
            .expect("an audit record for every request");
    }
    let audits: Vec<Value> =
        events.all_records().iter().filter(|r| r.topic == audit_topic).map(|r| payload(r).clone()).collect();
    assert_eq!(audits.len() as u64, total_records, "exactly one audit record per record");
    let denied = audits.iter().find(|a| a["path"] == "private/other").expect("denied request audited");
    assert_eq!(denied["error_code"], "ONEX_CORE_025_PERMISSION_DENIED");
    assert_eq!(denied["requester"], "node_test_requester");
    assert_eq!(denied["mount"], "secret");
    assert_eq!(denied["operation"], "get_secret");
    assert_eq!(denied["instance_id"], "health-test-instance");
    assert!(audits.iter().any(|a| a["error_code"] == "ONEX_CORE_007_INVALID_INPUT" && a["correlation_id"].is_string()));
    assert!(
        audits.iter().any(|a| a["correlation_id"].is_null() && a["operation"].is_null()),
        "unreadable record audited"
    );
    for record in events.all_records().iter().filter(|r| r.topic == audit_topic) {
        assert!(!record.value_str().contains(CANARY), "an audit record carries the canary");
    }

    // A clean stop publishes a last `stopping` event.
    assert_eq!(node.stop(), Some(0));
    let topic = topics.health.clone();
    events
        .wait_for(move |r| r.topic == topic && health_figures(r)["phase"] == "stopping", WAIT)
        .await
        .expect("a stopping health event");
}

/// The next health event after `after` (record offset) matching `want`.
async fn next_health(events: &ReplyWatcher, topic: &str, want: impl Fn(&Value) -> bool + Send + 'static) -> Value {
    let topic = topic.to_owned();
    let record = events
        .wait_for(
            move |r| {
                r.topic == topic
                    && r.json.as_ref().is_some_and(|j| want(&j["payload"]["health_metrics"]["custom_metrics"]))
            },
            WAIT,
        )
        .await
        .expect("a matching health event");
    health_figures(&record).clone()
}

#[tokio::test]
async fn status_follows_vault_down_and_back_with_breaker_events_and_readiness() {
    let _vault = faults::exclusive_vault().await;
    let node = Node::start_with(
        NodeOptions::default()
            .env("VAULT_TOKEN", servers().root_token())
            .env("ONEX_HEALTH_INTERVAL_SECONDS", "1")
            .edit(|c| {
                c["vault"]["request_timeout_ms"] = 1000.into();
                c["error_handling"]["retry_policy"]["max_attempts"] = 1.into();
                c["error_handling"]["circuit_breaker"]["failure_threshold"] = 2.into();
                c["error_handling"]["circuit_breaker"]["reset_timeout_ms"] = 500.into();
            }),
    )
    .await;
    let topics = node.topics.clone();
    let events =
        ReplyWatcher::start(&servers().bootstrap_servers(), &[topics.health.clone(), topics.circuit_breaker.clone()]);
    let requester = node.requester();
    vault::write_kv("secret", "outage/probe", &json!({"k": "v"})).await;
    wait_ready(node.http_port, 200).await;
    next_health(&events, &topics.health, |h| h["status"] == "healthy").await;

    // Fault 1: Vault killed.
    let injected = std::time::Instant::now();
    servers().vault_stop();
    eprintln!("injected: OpenBao killed (SIGKILL)");
    let mut codes = Vec::new();
    for _ in 0..4 {
        let reply = requester.call(json!({"operation": "get_secret", "path": "outage/probe"})).await;
        codes.push(reply["error"]["code"].as_str().unwrap_or("success").to_owned());
        if reply["error"]["retry_after_ms"].is_u64() {
            break;
        }
    }
    assert!(codes.iter().all(|c| c == "ONEX_CORE_205_SERVICE_UNAVAILABLE"), "{codes:?}");
    let breaker_topic = topics.circuit_breaker.clone();
    events
        .wait_for(move |r| r.topic == breaker_topic && payload(r)["state"] == "open", WAIT)
        .await
        .expect("a breaker transition to open");
    let down = next_health(&events, &topics.health, |h| h["status"] == "unhealthy").await;
    let reasons = down["status_reasons"].to_string();
    assert!(reasons.contains("vault unreachable"), "{reasons}");
    assert_eq!(down["vault"]["reachable"], false);
    let body = wait_ready(node.http_port, 503).await;
    assert!(body.contains("vault unreachable"), "{body}");
    eprintln!("detected unhealthy after {:?}", injected.elapsed());

    // Vault back (a fresh dev server: the secret is written again).
    servers().vault_start().await;
    vault::write_kv("secret", "outage/probe", &json!({"k": "v"})).await;
    let restored = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = requester.call(json!({"operation": "get_secret", "path": "outage/probe"})).await;
        if reply["status"] == "success" {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "requests never succeeded again: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let breaker_topic = topics.circuit_breaker.clone();
    let closed = events
        .wait_for(move |r| r.topic == breaker_topic && payload(r)["state"] == "closed", WAIT)
        .await
        .expect("a breaker transition back to closed");
    assert_eq!(payload(&closed)["previous_state"], "half_open");
    next_health(&events, &topics.health, |h| h["status"] == "healthy" && h["vault"]["reachable"] == true).await;
    wait_ready(node.http_port, 200).await;
    eprintln!("recovered (requests succeed, healthy, ready) {:?} after Vault returned", restored.elapsed());

    // Fault 2: Vault sealed, then unsealed.
    servers().vault_seal().await;
    eprintln!("injected: Vault sealed");
    let sealed =
        next_health(&events, &topics.health, |h| h["status"] == "unhealthy" && h["vault"]["sealed"] == true).await;
    assert!(sealed["status_reasons"].to_string().contains("vault sealed"));
    let body = wait_ready(node.http_port, 503).await;
    assert!(body.contains("vault sealed"), "{body}");
    let reply = requester.call(json!({"operation": "get_secret", "path": "outage/probe"})).await;
    assert_eq!(reply["error"]["code"], "ONEX_CORE_205_SERVICE_UNAVAILABLE", "{reply}");
    servers().vault_unseal().await;
    next_health(&events, &topics.health, |h| h["status"] != "unhealthy" && h["vault"]["sealed"] == false).await;
    wait_ready(node.http_port, 200).await;
}
