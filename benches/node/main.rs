//! Benchmark of the node against the limits it cannot beat (issues 6 and 15).
//!
//! Starts the real stack with the integration tests' harness (OpenBao, Tansu
//! and PostgreSQL as local processes, or containers), writes `--secrets` KV v2
//! secrets, starts the release node binary with the shipped contract, and for
//! each concurrency level runs closed-loop loads with the same request mix:
//!
//! - **node**: request envelopes through Kafka to the node, replies back;
//! - **direct Vault** (limit A): the same Vault operations over HTTP, root token;
//! - **Kafka echo** (limit B): the same request records through the same broker
//!   to an echo task, built with the node's own Kafka client settings, that
//!   produces each one back unchanged to a reply topic;
//! - **Python peer** (`peer.rs`): the Python platform's own pattern for a
//!   Vault node, when its script is there.
//!
//! Closed loop: N workers, each with one request outstanding. A Kafka load's
//! workers share one producer and one reply consumer (partitions assigned by
//! hand, no group) that hands every reply to the worker waiting for its
//! correlation id; both use the node's client settings too. The clients of
//! the loads not running are paused (the Python peer stopped).
//!
//! Prints a table per level (with the CPU each process used), where a
//! request's time goes in the node (`stages.rs`: its `request_stage_seconds`
//! metric and the reply's hop), the shared-core limit 1/(1/A + 1/B), the
//! broker's CPU per request on each path, the idle cost, and the issue's
//! targets as MET or MISSED, or INCONCLUSIVE when the Kafka hops turn out to
//! be bound by the consumers' fetch cadence (a note then says so); `--json`
//! and `--markdown` write the report. Run it with `bash scripts/bench.sh
//! [ARGS]` (installs the servers, then `cargo bench --bench node -- ARGS`);
//! `--help` lists the arguments. To add a kind of request, see [`Kind`].
//!
//! The node runs with `RUST_LOG=warn` (logging every request would skew the
//! numbers), the shipped `max_in_flight` (raised to the highest level if that
//! is above it), health events every 10 s, the read cache off unless
//! `--read-cache`, and the root token (as the direct Vault load).

#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use clap::Parser;
use futures_util::{stream, StreamExt};
use onex_vault_adapter::{bus, contract::Contract};
use rand::{distr::Alphanumeric, rngs::StdRng, Rng, SeedableRng};
use rdkafka::{
    consumer::{BaseConsumer, Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
    util::Timeout,
    Message, Offset, TopicPartitionList,
};
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use support::node::{Node, NodeOptions};

/// KV v2 mount of every request (the dev server's, and the node's default).
const MOUNT: &str = "secret";
/// Secrets per folder; a `list` request lists one folder.
const FOLDER_SIZE: usize = 50;
/// Partitions of the echo topics, as the harness gives the node's topics.
const PARTITIONS: i32 = 3;
/// A request without an answer after this long counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// The targets, judged at this many requests in flight.
const TARGET_LEVEL: usize = 64;
const TARGET_THROUGHPUT_PCT: f64 = 90.0;
const TARGET_ADDED_P50_MS: f64 = 5.0;
/// Added p50 at one request in flight.
const TARGET_ADDED_P50_ALONE_MS: f64 = 1.0;
const TARGET_TIMES_PYTHON_PEER: f64 = 3.0;
const TARGET_RSS_MB: f64 = 50.0;
/// A lone Kafka echo round trip slower than this is set by the consumers'
/// fetch cadence, not by the broker's speed (see [`fetch_wait_note`]).
const FETCH_BOUND_ECHO_MS: f64 = 50.0;

// One file per part, along the sections the program always had: arguments,
// workload, the three targets, the closed loop, /proc figures, the report.
mod args;
mod load;
mod peer;
mod procs;
mod report;
mod stages;
mod targets;
mod workload;

use args::*;
use load::*;
use peer::PythonPeer;
use procs::*;
use report::*;
use stages::*;
use targets::*;
use workload::*;

fn main() {
    let settings = match Settings::from_args(Args::parse()) {
        Ok(settings) => settings,
        Err(problem) => {
            eprintln!("error: {problem}");
            std::process::exit(2);
        }
    };
    // Starting the servers blocks; do it before the runtime.
    let stack = support::servers();
    let runtime = tokio::runtime::Runtime::new().expect("starting the tokio runtime");
    let report = runtime.block_on(run(&settings, stack));
    for note in &report.notes {
        println!("\nnote: {note}");
    }
    print!("{}", targets_table(&report.targets));
    if let Some(at) = report.levels.iter().find(|l| l.concurrency == TARGET_LEVEL) {
        print!("{}", limits_explained(at));
    }
    if let Some(path) = &settings.json {
        let text = serde_json::to_string_pretty(&report).expect("the report serializes");
        std::fs::write(path, text + "\n").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("JSON report: {}", path.display());
    }
    if let Some(path) = &settings.markdown {
        std::fs::write(path, markdown(&report)).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        println!("Markdown report: {}", path.display());
    }
    // Figures are for people; a lost or failed request through the node is a
    // bug, and fails the run (the CI smoke relies on it).
    // So is a node whose stage timings could not be read: the breakdown
    // would be missing from the report without anyone noticing.
    let mut broken: Vec<String> = report
        .levels
        .iter()
        .filter(|l| l.node.lost > 0 || !l.node.errors.is_empty() || l.node.throughput_rps <= 0.0)
        .map(|l| format!("at {} in flight: {} lost, errors {:?}", l.concurrency, l.node.lost, l.node.errors))
        .collect();
    let untimed = report.levels.iter().filter(|l| {
        let vault = l.node.breakdown.as_ref().and_then(|b| b.path.iter().find(|s| s.stage == "vault"));
        !vault.is_some_and(|stage| stage.mean_ms > 0.0)
    });
    broken.extend(untimed.map(|l| format!("at {} in flight: no stage timings from /metrics", l.concurrency)));
    if !broken.is_empty() {
        eprintln!("FAILED: {}", broken.join("; "));
        std::process::exit(1);
    }
}

async fn run(settings: &Settings, stack: &'static support::Servers) -> Report {
    let machine = machine();
    let node_binary = env!("CARGO_BIN_EXE_onex-vault-adapter");
    println!(
        "onex-vault-adapter benchmark — {} × {}, load average {}",
        machine.nproc, machine.model_name, machine.load_average_at_start
    );
    println!("stack: {}; node binary: {node_binary}", stack.stack_name());
    if !node_binary.contains("/release/") {
        println!("!! the node binary is not a release build: its figures mean little (run through cargo bench)");
    }

    let vault = Arc::new(DirectVault::new(&stack.vault_addr(), stack.root_token()));
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(u64::MAX);
    let writes: Vec<Op> =
        (0..settings.secrets).map(|n| Op::Set { path: secret_path(n), data: secret_data(n, &mut rng) }).collect();
    let failed = stream::iter(&writes)
        .map(|op| vault.perform(op))
        .buffer_unordered(32)
        .filter(|outcome| std::future::ready(outcome.is_err()))
        .count()
        .await;
    assert_eq!(failed, 0, "{failed} of {} preload writes failed", settings.secrets);
    println!("preloaded {} secrets in {:.1} s", settings.secrets, started.elapsed().as_secs_f64());
    let changed: Vec<String> = settings.contract_env.iter().map(|(name, value)| format!("{name}={value}")).collect();

    let contract = bench_contract(&format!("onex-bench-echo-{}", Uuid::new_v4().simple()), &settings.contract_env);
    // The shipped bound, unless a level needs more.
    let shipped_max_in_flight = contract.event_bus.max_in_flight;
    let max_in_flight = settings.levels.iter().copied().max().unwrap_or(1).max(shipped_max_in_flight);
    let mut options = NodeOptions::default()
        .env("VAULT_TOKEN", stack.root_token())
        .env("RUST_LOG", "warn")
        .env("ONEX_HEALTH_INTERVAL_SECONDS", "10")
        .env("ONEX_READ_CACHE", if settings.read_cache { "true" } else { "false" });
    if max_in_flight > shipped_max_in_flight {
        options = options.edit(move |contract| {
            contract["event_bus"]["max_in_flight"] = serde_yaml::Value::Number((max_in_flight as u64).into());
        });
    }
    for (name, value) in &settings.contract_env {
        options = options.env(name, value);
    }
    let node = Node::start_with(options).await;
    let bus_settings = &contract.event_bus;
    println!(
        "contract: fetch_wait_max_ms {}, linger_ms {}, audit_linger_ms {}, max_in_flight {max_in_flight} ({})",
        bus_settings.fetch_wait_max_ms,
        bus_settings.linger_ms,
        bus_settings.audit_linger_ms,
        if changed.is_empty() { "as shipped".to_owned() } else { format!("changed: {}", changed.join(" ")) }
    );
    let node_pid = node.pid().expect("the node runs");
    let topics = &node.topics;
    let node_bus = Arc::new(BusLoop::start(
        &contract,
        &topics.requests,
        &[&topics.completed, &topics.failed],
        Some(&topics.failed),
    ));

    let run_id = Uuid::new_v4().simple().to_string();
    let (echo_requests, echo_replies) = (
        format!("onex.cmd.bench-{}.echo-request.v1", &run_id[..12]),
        format!("onex.evt.bench-{}.echo-reply.v1", &run_id[..12]),
    );
    support::bus::create_topics(&stack.bootstrap_servers(), &[&echo_requests, &echo_replies], PARTITIONS).await;
    let echo_stop = CancellationToken::new();
    let echo = Echo::start(&contract, &echo_requests, &echo_replies, echo_stop.clone());
    let echo_bus = Arc::new(BusLoop::start(&contract, &echo_requests, &[&echo_replies], None));

    let probe = Op::Get { path: secret_path(0) };
    node_bus.wait_until_answering(&probe, "the node", Duration::from_secs(90)).await;
    echo_bus.wait_until_answering(&probe, "the Kafka echo", Duration::from_secs(90)).await;
    let echo_alone_ms = echo_bus.median_round_trip_ms(&probe, 5).await;
    let mut notes: Vec<String> = fetch_wait_note(echo_alone_ms, &contract).into_iter().collect();
    let fetch_bound = !notes.is_empty();
    let python_peer = match &settings.python_peer {
        None => None,
        Some(script) => match PythonPeer::start(script, &contract).await {
            Ok(peer) => match peer.bus.answering(&probe, "the Python peer", Duration::from_secs(90)).await {
                Ok(()) => Some(peer),
                Err(problem) => {
                    notes.push(format!("Python peer not measured: {problem}"));
                    None
                }
            },
            Err(problem) => {
                notes.push(format!("Python peer not measured: {problem}"));
                None
            }
        },
    };
    for note in &notes {
        println!("note: {note}");
    }
    println!("node (pid {node_pid}) and Kafka echo answering; {} levels to run\n", settings.levels.len());

    // The bench's Kafka clients fetch only while their load runs, so idle
    // ones cost the broker nothing during the others' runs.
    let kafka_echo_fetching = |on: bool| {
        echo.set_fetching(on);
        echo_bus.set_fetching(on);
    };
    kafka_echo_fetching(false);
    node_bus.set_fetching(false);
    if let Some(peer) = &python_peer {
        peer.set_running(false);
    }
    let idle = idle_cost(&node, settings.duration).await;
    println!("{}", idle.line());
    let rss_per_level = reset_peak_rss(node_pid);
    let mut levels = Vec::new();
    for &concurrency in &settings.levels {
        kafka_echo_fetching(true);
        // A resumed consumer may take a while to fetch again: not in the figures.
        echo_bus.wait_until_answering(&probe, "the Kafka echo", Duration::from_secs(30)).await;
        let kafka_echo = closed_loop(&Target::Kafka(echo_bus.clone()), settings, concurrency, &node, false).await;
        kafka_echo_fetching(false);

        let direct_vault = closed_loop(&Target::Vault(vault.clone()), settings, concurrency, &node, false).await;

        node_bus.set_fetching(true);
        node_bus.wait_until_answering(&probe, "the node", Duration::from_secs(30)).await;
        reset_peak_rss(node_pid);
        let mut through_node = closed_loop(&Target::Kafka(node_bus.clone()), settings, concurrency, &node, true).await;
        through_node.node_peak_rss_mb = status_mb(node_pid, "VmHWM");
        node_bus.set_fetching(false);

        let mut python = None;
        if let Some(peer) = &python_peer {
            peer.set_running(true);
            if peer.bus.answering(&probe, "the Python peer", Duration::from_secs(60)).await.is_ok() {
                python = Some(closed_loop(&Target::Kafka(peer.bus.clone()), settings, concurrency, &node, false).await);
            }
            peer.set_running(false);
        }

        let level = Level::new(concurrency, through_node, direct_vault, kafka_echo, python);
        print!("{}", level_table(&level, settings));
        levels.push(level);
    }
    echo_stop.cancel();

    Report {
        benchmark: "onex-vault-adapter: node vs direct Vault (limit A) and Kafka echo (limit B), closed loop",
        date: chrono::Utc::now().to_rfc3339(),
        git_commit: git_commit(),
        kafka_echo_alone_ms: echo_alone_ms,
        targets: judge(&levels, fetch_bound, settings.read_cache),
        notes,
        idle,
        machine,
        stack: stack.stack_name(),
        node_binary,
        settings: ReportSettings {
            concurrency: settings.levels.clone(),
            duration_seconds: settings.duration.as_secs_f64(),
            warmup_seconds: settings.warmup.as_secs_f64(),
            mix: settings.mix.describe(),
            secrets: settings.secrets,
            folder_size: FOLDER_SIZE,
            record_key: "secret path (folder for list)",
            node_rust_log: "warn",
            node_max_in_flight: max_in_flight,
            node_health_interval_seconds: 10,
            node_read_cache: settings.read_cache,
            fetch_wait_max_ms: contract.event_bus.fetch_wait_max_ms,
            linger_ms: contract.event_bus.linger_ms,
            audit_linger_ms: contract.event_bus.audit_linger_ms,
            contract_env: settings.contract_env.iter().map(|(name, value)| format!("{name}={value}")).collect(),
            node_auth: "root token",
            node_peak_rss_per_level: rss_per_level,
        },
        levels,
    }
}
