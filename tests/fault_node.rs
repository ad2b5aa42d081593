//! Fault injection on the node itself, under load: SIGKILL and restart, a
//! member of a two-instance consumer group killed, SIGTERM and restart. Every
//! request must be answered at least once; duplicates are counted (and must be
//! zero after a clean stop).
//!
//! A test binary of its own: fault tests must not share servers with others.
//! These tests break no server, so they run in parallel.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::bus::{Record, ReplyWatcher};
use support::load::{self, Load};
use support::node::{Node, NodeOptions};
use support::{servers, vault};

const WAIT: Duration = Duration::from_secs(90);
/// Distinct secret paths (record keys) a load spreads over, so every partition
/// of the request topic gets records.
const KEYS: usize = 12;
const PARTITIONS: f64 = 3.0;

/// Writes the `KEYS` secrets under `prefix` a load reads.
async fn seed(prefix: &str) {
    for key in 0..KEYS {
        vault::write_kv("secret", &format!("{prefix}/k{key}"), &json!({"n": key})).await;
    }
}

fn get(prefix: &str, n: usize) -> Value {
    json!({"operation": "get_secret", "path": format!("{prefix}/k{}", n % KEYS)})
}

fn options(instance: &str) -> NodeOptions {
    NodeOptions::default().env("VAULT_TOKEN", servers().root_token()).env("ONEX_INSTANCE_ID", instance)
}

/// Sends `count` requests as fast as the broker acknowledges them.
async fn send_burst(load: &Load, prefix: &str, count: usize) {
    for n in 0..count {
        load.send(get(prefix, n)).await;
    }
}

fn payload(record: &Record) -> &Value {
    &record.json.as_ref().expect("JSON record")["payload"]
}

/// The audit records on `topic` by the instance that wrote them:
/// `(correlation id, partition)` of each record handled.
fn audits_by_instance(audits: &ReplyWatcher, topic: &str) -> HashMap<String, Vec<(String, i32)>> {
    let mut by_instance: HashMap<String, Vec<(String, i32)>> = HashMap::new();
    for record in audits.all_records().iter().filter(|r| r.topic == topic) {
        let audit = payload(record);
        let partition = audit["source_record"]
            .as_str()
            .and_then(|s| s.rsplit_once('/'))
            .and_then(|(_, p)| p.split('@').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or(-1);
        by_instance
            .entry(audit["instance_id"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .push((audit["correlation_id"].as_str().unwrap_or("-").to_owned(), partition));
    }
    by_instance
}

#[tokio::test]
async fn sigkill_with_hundreds_in_flight_then_restart_answers_every_request() {
    const REQUESTS: usize = 300;
    let prefix = "node-kill";
    seed(prefix).await;
    let mut first = Node::start_with(options("kill-first")).await;
    let load = Load::new(first.requester());
    // Sent while the node is still joining its group, so they are all waiting
    // in the topic when it starts taking them.
    send_burst(&load, prefix, REQUESTS).await;
    load.wait_answered(20, WAIT).await;
    let in_flight = first.metric("onex_vault_adapter_in_flight").await;
    let killed = Instant::now();
    first.kill();
    let at_kill = load.tally();
    eprintln!(
        "SIGKILL with {} of {REQUESTS} requests unanswered ({in_flight} in the node's hands)",
        REQUESTS - at_kill.answered
    );
    assert!(at_kill.answered < REQUESTS, "every request was answered before the kill: nothing was in flight");

    let second = Node::start_with(options("kill-second").join(&first)).await;
    let tally = load.wait_all_answered(WAIT).await;
    let recovery = killed.elapsed();
    let logs = [("kill-first", &first), ("kill-second", &second)];
    assert!(tally.unanswered.is_empty(), "{tally}{}", Node::explain(&tally.unanswered, &logs));
    assert_eq!(tally.outcomes.get("success"), Some(&REQUESTS), "{tally}");
    // Duplicates are allowed (at-least-once) but bounded: only what the killed
    // node had taken since its last offset commit can be answered twice.
    assert!(tally.duplicates < REQUESTS, "{tally}");
    drop(second);

    load::report(
        "node_sigkill",
        &format!(
            "SIGKILL with {} of {REQUESTS} requests unanswered ({in_flight} in flight), then a restart in the same group",
            REQUESTS - at_kill.answered
        ),
        &tally,
        recovery,
        "recovery measured from the kill to the last first reply, restart included",
    );
}

#[tokio::test]
async fn two_instances_share_partitions_and_the_survivor_takes_over() {
    const REQUESTS: usize = 200;
    let prefix = "node-pair";
    seed(prefix).await;
    let mut a = Node::start_with(options("pair-a")).await;
    let b = Node::start_with(options("pair-b").join(&a)).await;
    let audits = ReplyWatcher::start(&servers().bootstrap_servers(), &[a.topics.audit.clone()]);

    // Both take a share of the 3 partitions.
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut on_a, mut on_b);
    loop {
        on_a = a.metric("onex_vault_adapter_assigned_partitions").await;
        on_b = b.metric("onex_vault_adapter_assigned_partitions").await;
        if on_a > 0.0 && on_b > 0.0 && on_a + on_b == PARTITIONS {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "partitions not shared: a={on_a} b={on_b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("partitions: pair-a {on_a}, pair-b {on_b}");

    // pair-a is killed while the burst is still being sent, so records of
    // its partitions come after it is gone (however fast it answers) and
    // only pair-b can answer them.
    let load = Load::new(a.requester());
    let kill_a = async {
        load.wait_answered(REQUESTS / 4, WAIT).await;
        let killed = Instant::now();
        a.kill();
        (killed, load.tally())
    };
    let ((), (killed, at_kill)) = tokio::join!(send_burst(&load, prefix, REQUESTS), kill_a);
    eprintln!("SIGKILL pair-a with {} of {REQUESTS} unanswered", REQUESTS - at_kill.answered);

    // The survivor takes every partition and answers what was left.
    b.wait_for_metric("onex_vault_adapter_assigned_partitions", |p| p == PARTITIONS, WAIT).await;
    let took_over = killed.elapsed();
    let tally = load.wait_all_answered(WAIT).await;
    let recovery = killed.elapsed();
    assert!(
        tally.unanswered.is_empty(),
        "{tally}{}",
        Node::explain(&tally.unanswered, &[("pair-a", &a), ("pair-b", &b)])
    );
    assert_eq!(tally.outcomes.get("success"), Some(&REQUESTS), "{tally}");

    // Who answered what: both before the kill, and pair-b on every partition after.
    let by_instance = audits_by_instance(&audits, &a.topics.audit);
    let count = |instance: &str| by_instance.get(instance).map_or(0, Vec::len);
    let b_partitions: BTreeSet<i32> =
        by_instance.get("pair-b").map(|handled| handled.iter().map(|(_, p)| *p).collect()).unwrap_or_default();
    assert!(count("pair-a") > 0, "pair-a answered nothing before the kill");
    assert_eq!(b_partitions, BTreeSet::from([0, 1, 2]), "pair-b handled records of every partition, pair-a's included");

    load::report(
        "group_member_sigkill",
        &format!(
            "one of two group members SIGKILLed ({on_a}+{on_b} partitions) with {} of {REQUESTS} unanswered",
            REQUESTS - at_kill.answered
        ),
        &tally,
        recovery,
        &format!(
            "survivor held all partitions after {} ms; handled by pair-a={}, pair-b={}",
            took_over.as_millis(),
            count("pair-a"),
            count("pair-b")
        ),
    );
}

#[tokio::test]
async fn sigterm_under_load_answers_in_flight_and_commits_then_no_duplicate_after_restart() {
    const REQUESTS: usize = 300;
    let prefix = "node-term";
    seed(prefix).await;
    let mut first = Node::start_with(options("term-first")).await;
    let audits =
        ReplyWatcher::start(&servers().bootstrap_servers(), &[first.topics.audit.clone(), first.topics.health.clone()]);
    let load = Load::new(first.requester());
    send_burst(&load, prefix, REQUESTS).await;
    load.wait_answered(20, WAIT).await;

    let signalled = Instant::now();
    first.terminate();
    let code = first.wait_exit(Duration::from_secs(45));
    let shutdown = signalled.elapsed();
    assert_eq!(code, Some(0), "clean exit; log:\n{}", first.log_tail(30));
    // The node's own account of its shutdown: how many it was finishing, and
    // that it finished them within the deadline.
    let log = first.log();
    let stopping = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["message"] == "stopping: finishing in-flight requests")
        .unwrap_or_else(|| panic!("no 'stopping' line in the log:\n{}", first.log_tail(30)));
    let finishing = stopping["in_flight"].as_u64().unwrap_or(0);
    assert!(!log.contains("shutdown deadline reached"), "the shutdown deadline cut requests off");
    assert!(log.contains("stopped consuming"), "no clean end of the loop:\n{}", first.log_tail(30));

    // Every record the node took was answered before it exited: the audit
    // records (one per handled record, published after its reply) and the
    // replies name the same requests. (The node is gone: all it sent is in
    // Kafka, the watchers only need to catch up.)
    let topic = first.topics.health.clone();
    audits
        .wait_for(
            move |r| r.topic == topic && payload(r)["health_metrics"]["custom_metrics"]["phase"] == "stopping",
            WAIT,
        )
        .await
        .expect("a stopping health event");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let at_exit = loop {
        let replies = load.replies();
        let handled: BTreeSet<String> = audits_by_instance(&audits, &first.topics.audit)
            .remove("term-first")
            .unwrap_or_default()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let answered: BTreeSet<String> = replies.keys().cloned().collect();
        if handled == answered {
            break load.tally();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "handled but unanswered: {:?}; answered but not audited: {:?}",
            handled.difference(&answered).collect::<Vec<_>>(),
            answered.difference(&handled).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(at_exit.duplicates, 0, "{at_exit}");

    // A clean restart in the same group resumes after the committed offsets:
    // the rest is answered, nothing twice.
    let restarted = Instant::now();
    let second = Node::start_with(options("term-second").join(&first)).await;
    let tally = load.wait_all_answered(WAIT).await;
    let recovery = restarted.elapsed();
    let logs = [("term-first", &first), ("term-second", &second)];
    assert!(tally.unanswered.is_empty(), "{tally}{}", Node::explain(&tally.unanswered, &logs));
    assert_eq!(tally.outcomes.get("success"), Some(&REQUESTS), "{tally}");
    // The second node took exactly the records the first had not answered:
    // its committed offsets were right, nothing is redelivered.
    let left = (REQUESTS - at_exit.answered) as f64;
    second.wait_for_metric("onex_vault_adapter_replies_total", |n| n >= left, WAIT).await;
    let consumed = second.metric("onex_vault_adapter_records_consumed_total").await;
    let tally = load.tally();
    assert_eq!(tally.duplicates, 0, "answered twice after a clean stop and restart: {tally}");
    assert_eq!(consumed, left, "the restarted node took {consumed} records, {left} were left unanswered");

    load::report(
        "node_sigterm",
        &format!(
            "SIGTERM with {finishing} in flight and {} of {REQUESTS} unanswered; exit 0 after {} ms; restart in the same group",
            REQUESTS - at_exit.answered,
            shutdown.as_millis()
        ),
        &tally,
        recovery,
        &format!(
            "answered before exit={}, recovery measured from the restart to the last reply",
            at_exit.answered
        ),
    );
}
