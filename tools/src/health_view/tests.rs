//! Unit tests of the fleet view: decoding, the fleet, the figures, the table.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::fleet::*;
use super::kafka::Screen;
use super::render::*;
use super::MAX_INSTANCE_CHARS;

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + seconds, 0).expect("valid timestamp")
}

/// A health envelope as a node publishes it, as JSON to tweak.
fn event_json(instance: &str, at_seconds: i64, uptime: f64, get: (u64, u64)) -> Value {
    json!({
        "envelope_id": uuid::Uuid::new_v4(),
        "envelope_timestamp": at(at_seconds),
        "correlation_id": uuid::Uuid::new_v4(),
        "source_tool": "node_infrastructure_vault_adapter_effect",
        "payload_type": "ModelNodeHealthEvent",
        "envelope_version": {"major": 2, "minor": 3, "patch": 0, "prerelease": null, "build": null},
        "payload": {
            "node_name": "node_infrastructure_vault_adapter_effect",
            "node_version": "0.1.0",
            "instance_id": instance,
            "uptime_seconds": uptime,
            "status": "healthy",
            "status_reasons": [],
            "phase": "running",
            "interval_seconds": 10,
            "vault": { "reachable": true, "initialized": true, "sealed": false,
                       "standby": false, "version": "2.2.0", "latency_ms": 1.5 },
            "token": { "ttl_seconds": 2712, "renewable": true,
                       "renewals_total": 0, "renewal_failures_total": 0 },
            "circuit_breaker": { "state": "closed", "consecutive_failures": 0,
                                 "opened_total": 0, "seconds_until_half_open": null },
            "operations": {
                "get_secret": { "count": get.0, "errors": get.1,
                                "p50_ms": 1.0, "p99_ms": 4.25 },
            },
            "bus": { "consumed_total": 0, "replied_total": 0, "dlq_total": 0,
                     "in_flight": 2, "assigned_partitions": 1,
                     "consumer_lag": { "requests/0": 3 } },
            "vault_metrics": {}
        }
    })
}

/// Sends the fixture as the node publishes it: its figures in the
/// custom metrics of an upstream `ModelNodeHealthEvent`.
fn feed(fleet: &mut Fleet, event: &Value) {
    let mut event = event.clone();
    let details = event["payload"].take();
    event["payload"] = json!({
        "event_type": "node_health_event", "node_id": uuid::Uuid::new_v4(), "node_name": "n",
        "timestamp": "2026-11-29T00:00:00Z", "event_id": uuid::Uuid::new_v4(),
        "health_metrics": {"custom_metrics": details}, "report_interval_seconds": 10
    });
    let bytes = serde_json::to_vec(&event).expect("serializable");
    ingest(fleet, Some(&bytes));
}

fn cells(fleet: &Fleet, id: &str, now: DateTime<Utc>) -> [String; COLUMNS.len()] {
    let instance = fleet.instances.get(id).expect("instance present");
    row(fleet, id, instance, now)
}

#[test]
fn rates_come_from_the_last_two_events() {
    let mut fleet = Fleet::new(60);
    let mut first = event_json("a", 0, 100.0, (10, 1));
    first["payload"]["operations"]["set_secret"] = json!({ "count": 5, "errors": 0 });
    let mut second = event_json("a", 10, 110.0, (30, 3));
    second["payload"]["operations"]["set_secret"] = json!({ "count": 15, "errors": 0 });
    feed(&mut fleet, &first);
    let one = cells(&fleet, "a", at(10));
    assert_eq!((one[5].as_str(), one[6].as_str()), ("-", "-"));

    feed(&mut fleet, &second);
    let instance = &fleet.instances["a"];
    assert_eq!(rates(instance), Some((3.0, 0.2)));
    let two = cells(&fleet, "a", at(12));
    assert_eq!((two[5].as_str(), two[6].as_str()), ("3.00", "0.20"));

    // A third event: rates from the second and third only.
    let mut third = event_json("a", 20, 120.0, (1030, 3));
    third["payload"]["operations"]["set_secret"] = json!({ "count": 15, "errors": 0 });
    feed(&mut fleet, &third);
    assert_eq!(rates(&fleet.instances["a"]), Some((100.0, 0.0)));
    // An operation gone from the counters means they were reset: no rate.
    feed(&mut fleet, &event_json("a", 30, 130.0, (1040, 3)));
    assert_eq!(rates(&fleet.instances["a"]), None);
}

#[test]
fn a_restart_or_a_repeat_gives_no_rate() {
    let mut fleet = Fleet::new(60);
    let first = event_json("a", 0, 500.0, (50, 0));
    feed(&mut fleet, &first);
    // The same event again (redelivered) and an older one change nothing.
    feed(&mut fleet, &first);
    feed(&mut fleet, &event_json("a", -10, 490.0, (40, 0)));
    assert!(fleet.instances["a"].previous.is_none());
    // Restarted: uptime and counters start over.
    feed(&mut fleet, &event_json("a", 10, 5.0, (2, 0)));
    assert_eq!(rates(&fleet.instances["a"]), None);
}

#[test]
fn instances_past_the_limit_are_stale() {
    let mut fleet = Fleet::new(60);
    feed(&mut fleet, &event_json("a", 0, 100.0, (1, 0)));
    feed(&mut fleet, &event_json("b", 50, 100.0, (1, 0)));
    let now = at(61);
    assert_eq!(cells(&fleet, "a", now)[1], "stale");
    assert_eq!(cells(&fleet, "a", now)[10], "1m1s");
    assert_eq!(cells(&fleet, "b", now)[1], "healthy");
    assert_eq!(fleet.stale_instances(now), vec!["a"]);
    assert_eq!(cells(&fleet, "a", at(60))[1], "healthy");
}

#[test]
fn the_table_is_aligned() {
    let mut fleet = Fleet::new(60);
    feed(&mut fleet, &event_json("node-a-1f2e3d4c", 0, 3725.0, (100, 2)));
    feed(&mut fleet, &event_json("node-a-1f2e3d4c", 10, 3735.0, (225, 4)));
    let mut b = event_json("b", 5, 42.0, (0, 0));
    b["payload"]["status"] = json!("degraded");
    b["payload"]["circuit_breaker"]["state"] = json!("half_open");
    b["payload"]["token"]["ttl_seconds"] = json!(null);
    b["payload"]["operations"] = json!({});
    b["payload"]["bus"]["consumer_lag"] = json!({});
    b["payload"]["bus"]["in_flight"] = json!(0);
    feed(&mut fleet, &b);
    ingest(&mut fleet, Some(b"garbage"));

    let expected = "\
INSTANCE          STATUS     UPTIME   BREAKER     TOKEN TTL   OPS/S   ERR/S     P99   IN-FLIGHT   LAG   AGE
b                 degraded      42s   half_open           -       -       -       -           0     -    7s
node-a-1f2e3d4c   healthy      1h2m   closed         45m12s    12.5    0.20   4.2ms           2     3    2s
(1 record skipped: not a health event)
";
    assert_eq!(render(&fleet, at(12)), expected);
    // Every line of the table proper is as long as the header line, once
    // trailing spaces are put back: the columns line up.
    let lines: Vec<&str> = expected.lines().take(3).collect();
    let header = lines[0].chars().count();
    assert!(lines.iter().all(|l| l.chars().count() == header));
}

#[test]
fn an_empty_fleet_says_so() {
    let text = render(&Fleet::new(60), at(0));
    assert!(text.starts_with("INSTANCE   STATUS   UPTIME"));
    assert!(text.ends_with("(no health events)\n"));
}

#[test]
fn garbage_and_unknown_records_are_skipped_and_counted() {
    let mut fleet = Fleet::new(60);
    ingest(&mut fleet, None);
    ingest(&mut fleet, Some(b"\xff\xfe not json"));
    ingest(&mut fleet, Some(b"[1, 2, 3]"));
    ingest(&mut fleet, Some(br#"{"envelope_id": "x"}"#));
    // A reply envelope, not a health event.
    let mut reply = event_json("a", 0, 1.0, (0, 0));
    reply["payload"] = json!({ "operation": "get_secret", "status": "success" });
    feed(&mut fleet, &reply);
    // A health event with a wrong field type, and one without instance id.
    let mut bad = event_json("a", 0, 1.0, (0, 0));
    bad["payload"]["uptime_seconds"] = json!("long");
    feed(&mut fleet, &bad);
    feed(&mut fleet, &event_json("  ", 0, 1.0, (0, 0)));
    // Deep nesting is refused by serde_json, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    ingest(&mut fleet, Some(deep.as_bytes()));

    assert!(fleet.is_empty());
    assert_eq!(fleet.skipped(), 8);
    assert!(render(&fleet, at(0)).ends_with("(8 records skipped: not a health event)\n"));
}

#[test]
fn extra_fields_and_other_lag_shapes_are_tolerated() {
    let mut event = event_json("a", 0, 1.0, (0, 0));
    event["new_envelope_field"] = json!(true);
    event["payload"]["future_field"] = json!({ "x": 1 });
    event["payload"]["bus"]["consumer_lag"] = json!(17);
    let mut fleet = Fleet::new(60);
    feed(&mut fleet, &event);
    assert_eq!(cells(&fleet, "a", at(0))[9], "17");

    event["envelope_id"] = json!(uuid::Uuid::new_v4());
    event["envelope_timestamp"] = json!(at(1));
    event["payload"]["bus"]["consumer_lag"] = json!({ "t/0": 5, "t/1": 2.0, "t/2": -1, "t/3": "n/a" });
    feed(&mut fleet, &event);
    assert_eq!(cells(&fleet, "a", at(1))[9], "7");

    event["envelope_id"] = json!(uuid::Uuid::new_v4());
    event["envelope_timestamp"] = json!(at(2));
    event["payload"]["bus"]["consumer_lag"] = json!("lots");
    feed(&mut fleet, &event);
    event["envelope_id"] = json!(uuid::Uuid::new_v4());
    event["envelope_timestamp"] = json!(at(3));
    event["payload"]["bus"].as_object_mut().expect("bus object").remove("consumer_lag");
    feed(&mut fleet, &event);
    assert_eq!(cells(&fleet, "a", at(3))[9], "-");
    assert_eq!(fleet.skipped(), 0);
}

#[test]
fn hostile_values_render_safely() {
    let mut event = event_json("evil\x1b[2Jid", 0, -5.0, (0, 0));
    event["payload"]["operations"]["get_secret"]["p99_ms"] = json!(1e308);
    event["payload"]["token"]["ttl_seconds"] = json!(u64::MAX);
    let mut fleet = Fleet::new(u64::MAX);
    feed(&mut fleet, &event);
    let long = "x".repeat(200);
    feed(&mut fleet, &event_json(&long, 0, 1.0, (0, 0)));
    let text = render(&fleet, at(0));
    assert!(!text.contains('\x1b'));
    assert!(text.contains("evil?[2Jid"));
    assert!(text.contains(&format!("{}…", "x".repeat(MAX_INSTANCE_CHARS - 1))));
    assert_eq!(cells(&fleet, "evil\x1b[2Jid", at(0))[2], "0s");
}

#[test]
fn stopping_instances_say_so() {
    let mut event = event_json("a", 0, 1.0, (0, 0));
    event["payload"]["phase"] = json!("stopping");
    let mut fleet = Fleet::new(60);
    feed(&mut fleet, &event);
    assert_eq!(cells(&fleet, "a", at(1))[1], "stopping");
    assert_eq!(cells(&fleet, "a", at(100))[1], "stale");
}

#[test]
fn durations_and_rates_are_compact() {
    assert_eq!(duration(0.4), "0s");
    assert_eq!(duration(59.9), "59s");
    assert_eq!(duration(61.0), "1m1s");
    assert_eq!(duration(7_260.0), "2h1m");
    assert_eq!(duration(90_000.0), "1d1h");
    assert_eq!(duration(f64::NAN), "0s");
    assert_eq!(rate(0.0), "0.00");
    assert_eq!(rate(12.345), "12.3");
    assert_eq!(rate(1234.5), "1234");
}

#[test]
fn off_a_terminal_a_table_is_written_only_on_change() {
    let mut fleet = Fleet::new(60);
    let mut screen = Screen { topic: "t", terminal: false, shown: None };
    let mut out = Vec::new();
    screen.draw(&mut out, &fleet, None).expect("write");
    screen.draw(&mut out, &fleet, None).expect("write");
    let once = String::from_utf8(out.clone()).expect("utf-8");
    assert_eq!(once.matches("INSTANCE").count(), 1);

    feed(&mut fleet, &event_json("a", 0, 1.0, (0, 0)));
    screen.draw(&mut out, &fleet, None).expect("write");
    let twice = String::from_utf8(out).expect("utf-8");
    assert_eq!(twice.matches("INSTANCE").count(), 2);
    assert!(twice.contains("(no health events)\n\nINSTANCE"));
    assert!(!twice.contains('\x1b'));
}
