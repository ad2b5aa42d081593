//! The report: tables per level, ratios to the limits, the targets judged, and the JSON record.

use super::*;

#[derive(Serialize)]
pub(crate) struct Report {
    pub(crate) benchmark: &'static str,
    pub(crate) date: String,
    pub(crate) git_commit: Option<String>,
    /// Median of a few Kafka echo round trips, one at a time, before the levels.
    pub(crate) kafka_echo_alone_ms: f64,
    pub(crate) machine: Machine,
    pub(crate) stack: &'static str,
    pub(crate) node_binary: &'static str,
    pub(crate) settings: ReportSettings,
    pub(crate) levels: Vec<Level>,
    pub(crate) targets: Vec<TargetVerdict>,
    /// What to keep in mind when reading the figures.
    pub(crate) notes: Vec<String>,
    /// What the node costs with nothing to do.
    pub(crate) idle: IdleCost,
}

#[derive(Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) model_name: String,
    pub(crate) kernel: String,
    pub(crate) memory_total_mb: Option<f64>,
    pub(crate) load_average_at_start: String,
}

#[derive(Serialize)]
pub(crate) struct ReportSettings {
    pub(crate) concurrency: Vec<usize>,
    pub(crate) duration_seconds: f64,
    pub(crate) warmup_seconds: f64,
    pub(crate) mix: String,
    pub(crate) secrets: usize,
    pub(crate) folder_size: usize,
    pub(crate) record_key: &'static str,
    pub(crate) node_rust_log: &'static str,
    pub(crate) node_max_in_flight: usize,
    pub(crate) node_health_interval_seconds: u32,
    pub(crate) node_read_cache: bool,
    pub(crate) node_auth: &'static str,
    /// The contract's Kafka pacing, as the node and the bench's clients ran.
    pub(crate) fetch_wait_max_ms: u32,
    pub(crate) linger_ms: u32,
    pub(crate) audit_linger_ms: u32,
    /// Contract settings changed from the shipped ones (`--contract-env`).
    pub(crate) contract_env: Vec<String>,
    /// Whether the node's peak RSS is per level (reset through clear_refs) or since its start.
    pub(crate) node_peak_rss_per_level: bool,
}

#[derive(Serialize)]
pub(crate) struct Level {
    pub(crate) concurrency: usize,
    pub(crate) node: Figures,
    pub(crate) direct_vault: Figures,
    pub(crate) kafka_echo: Figures,
    /// The Python platform's pattern under the same load (when it ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) python_peer: Option<Figures>,
    /// Node throughput as % of the lower limit.
    pub(crate) throughput_pct_of_limit: f64,
    /// 1 / (1/A + 1/B): what a request costing both Vault and the broker can
    /// reach when they share the machine's cores.
    pub(crate) shared_core_limit_rps: f64,
    /// Node throughput as % of the shared-core limit.
    pub(crate) throughput_pct_of_shared_core: f64,
    /// Node throughput over the Python peer's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) times_python_peer: Option<f64>,
    /// The broker's CPU per request (ms of one core) on each Kafka path.
    pub(crate) broker_cpu_ms_per_request: BTreeMap<&'static str, f64>,
    /// Node throughput as % of the Kafka echo alone (the limit of cached reads).
    pub(crate) throughput_pct_of_echo: f64,
    pub(crate) limiting: &'static str,
    /// node p50 − (echo p50 + direct Vault p50).
    pub(crate) added_p50_ms: f64,
    pub(crate) added_p99_ms: f64,
}

impl Level {
    pub(crate) fn new(
        concurrency: usize,
        node: Figures,
        direct_vault: Figures,
        kafka_echo: Figures,
        python_peer: Option<Figures>,
    ) -> Level {
        let (limit, limiting) = if direct_vault.throughput_rps <= kafka_echo.throughput_rps {
            (direct_vault.throughput_rps, "direct Vault")
        } else {
            (kafka_echo.throughput_rps, "Kafka echo")
        };
        let shared_core_limit_rps = 1.0 / (1.0 / direct_vault.throughput_rps + 1.0 / kafka_echo.throughput_rps);
        let broker_cpu = |f: &Figures| f.cpu_percent.get("tansu").map(|pct| pct * 10.0 / f.throughput_rps);
        let broker_cpu_ms_per_request =
            [("node", Some(&node)), ("kafka_echo", Some(&kafka_echo)), ("python_peer", python_peer.as_ref())]
                .into_iter()
                .filter_map(|(name, f)| Some((name, broker_cpu(f?)?)))
                .collect();
        Level {
            concurrency,
            throughput_pct_of_limit: node.throughput_rps / limit * 100.0,
            shared_core_limit_rps,
            throughput_pct_of_shared_core: node.throughput_rps / shared_core_limit_rps * 100.0,
            times_python_peer: python_peer.as_ref().map(|peer| node.throughput_rps / peer.throughput_rps),
            broker_cpu_ms_per_request,
            throughput_pct_of_echo: node.throughput_rps / kafka_echo.throughput_rps * 100.0,
            limiting,
            added_p50_ms: node.p50_ms - (kafka_echo.p50_ms + direct_vault.p50_ms),
            added_p99_ms: node.p99_ms - (kafka_echo.p99_ms + direct_vault.p99_ms),
            node,
            direct_vault,
            kafka_echo,
            python_peer,
        }
    }
}

#[derive(Serialize)]
pub(crate) struct TargetVerdict {
    pub(crate) target: String,
    pub(crate) concurrency: usize,
    pub(crate) measured: Option<f64>,
    pub(crate) unit: &'static str,
    /// `MET`, `MISSED`, `NOT RUN` (no run at that level), or `INCONCLUSIVE`
    /// (the limits were bound by the Kafka fetch cadence; see the notes).
    pub(crate) verdict: &'static str,
}

/// The targets (issue 15), most at [`TARGET_LEVEL`] in flight. When the
/// Kafka hops are bound by the fetch cadence (`fetch_bound`, see
/// [`fetch_wait_note`]) the ratios to the limits say nothing of the node:
/// they are judged INCONCLUSIVE.
pub(crate) fn judge(levels: &[Level], fetch_bound: bool, read_cache: bool) -> Vec<TargetVerdict> {
    let level = |n: usize| levels.iter().find(|l| l.concurrency == n);
    let at = level(TARGET_LEVEL);
    let verdict = |target: String, concurrency: usize, measured: Option<f64>, unit, met: fn(f64) -> bool, ratio| {
        let verdict = match measured {
            None => "NOT RUN",
            Some(_) if ratio && fetch_bound => "INCONCLUSIVE",
            Some(v) if met(v) => "MET",
            Some(_) => "MISSED",
        };
        TargetVerdict { target, concurrency, measured, unit, verdict }
    };
    let rss = verdict(
        format!("node peak RSS <= {TARGET_RSS_MB} MB"),
        TARGET_LEVEL,
        at.and_then(|l| l.node.node_peak_rss_mb),
        "MB",
        |v| v <= TARGET_RSS_MB,
        false,
    );
    if read_cache {
        return vec![
            verdict(
                format!("cached-get throughput >= {TARGET_THROUGHPUT_PCT}% of Kafka echo"),
                TARGET_LEVEL,
                at.map(|l| l.throughput_pct_of_echo),
                "%",
                |v| v >= TARGET_THROUGHPUT_PCT,
                true,
            ),
            rss,
        ];
    }
    vec![
        verdict(
            format!("node throughput >= {TARGET_THROUGHPUT_PCT}% of the shared-core limit 1/(1/A + 1/B)"),
            TARGET_LEVEL,
            at.map(|l| l.throughput_pct_of_shared_core),
            "%",
            |v| v >= TARGET_THROUGHPUT_PCT,
            true,
        ),
        verdict(
            format!("node throughput >= {TARGET_TIMES_PYTHON_PEER}x the Python peer's"),
            TARGET_LEVEL,
            at.and_then(|l| l.times_python_peer),
            "x",
            |v| v >= TARGET_TIMES_PYTHON_PEER,
            false,
        ),
        verdict(
            format!("added p50 <= {TARGET_ADDED_P50_MS} ms over (Kafka echo p50 + direct Vault p50)"),
            TARGET_LEVEL,
            at.map(|l| l.added_p50_ms),
            "ms",
            |v| v <= TARGET_ADDED_P50_MS,
            true,
        ),
        verdict(
            format!("added p50 <= {TARGET_ADDED_P50_ALONE_MS} ms over (Kafka echo p50 + direct Vault p50)"),
            1,
            level(1).map(|l| l.added_p50_ms),
            "ms",
            |v| v <= TARGET_ADDED_P50_ALONE_MS,
            true,
        ),
        rss,
    ]
}

pub(crate) fn level_table(level: &Level, settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} in flight: {:.1} s measured after {:.1} s warm-up, mix {} ==",
        level.concurrency,
        settings.duration.as_secs_f64(),
        settings.warmup.as_secs_f64(),
        settings.mix.describe()
    );
    let _ = writeln!(
        out,
        "{:<18} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>5}",
        "load", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "lost"
    );
    let mut rows =
        vec![("node", &level.node), ("direct Vault (A)", &level.direct_vault), ("Kafka echo (B)", &level.kafka_echo)];
    rows.extend(level.python_peer.as_ref().map(|peer| ("Python peer", peer)));
    for &(name, f) in &rows {
        let _ = writeln!(
            out,
            "{name:<18} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>7} {:>5}",
            f.throughput_rps,
            f.p50_ms,
            f.p95_ms,
            f.p99_ms,
            f.max_ms,
            f.errors.values().sum::<u64>(),
            f.lost
        );
    }
    let (node, vault, echo) = (&level.node, &level.direct_vault, &level.kafka_echo);
    let _ = writeln!(
        out,
        "node throughput {:.1}% of min(A, B) = {:.1} req/s ({}); added p50 = {:.2} − ({:.2} + {:.2}) = {:+.2} ms; \
         added p99 {:+.2} ms",
        level.throughput_pct_of_limit,
        vault.throughput_rps.min(echo.throughput_rps),
        level.limiting,
        node.p50_ms,
        echo.p50_ms,
        vault.p50_ms,
        level.added_p50_ms,
        level.added_p99_ms,
    );
    let _ = writeln!(
        out,
        "shared-core limit 1/(1/A + 1/B) = {:.1} req/s: node {:.1}% of it{}",
        level.shared_core_limit_rps,
        level.throughput_pct_of_shared_core,
        level.times_python_peer.map_or(String::new(), |x| format!("; node {x:.2}x the Python peer")),
    );
    let broker: Vec<String> =
        level.broker_cpu_ms_per_request.iter().map(|(path, ms)| format!("{path} {ms:.3}")).collect();
    let _ = writeln!(out, "broker CPU per request, ms of one core: {}", broker.join(", "));
    if let Some(breakdown) = &node.breakdown {
        out.push_str(&breakdown.table());
    }
    let _ = writeln!(
        out,
        "node peak RSS {} MB, CPU {:.0}% of a core; inside the node (reply duration_ms) p50 {:.2} ms",
        node.node_peak_rss_mb.map_or("?".into(), |mb| format!("{mb:.1}")),
        node.cpu_percent.get("node").copied().unwrap_or(f64::NAN),
        node.node_internal_p50_ms.unwrap_or(f64::NAN),
    );
    let by_kind: Vec<String> = Kind::ALL
        .iter()
        .filter_map(|kind| {
            let (n, v) = (node.by_kind.get(kind.name())?, vault.by_kind.get(kind.name())?);
            Some(format!("{} {:.2} / {:.2}", kind.name(), n.p50_ms, v.p50_ms))
        })
        .collect();
    let _ = writeln!(out, "p50 ms by kind, node / direct Vault: {}", by_kind.join(", "));
    let columns = ["node", "tansu", "bao", "bench", "python"];
    let _ = writeln!(
        out,
        "CPU, % of one core   {}   other  total (of {}; bench = load generator, + the echo in its run; python = the Python peer)",
        columns.map(|c| format!("{c:>6}")).join(""),
        nproc() * 100
    );
    let mut runs = vec![("  node run", node), ("  direct Vault run", vault), ("  Kafka echo run", echo)];
    runs.extend(level.python_peer.as_ref().map(|peer| ("  Python peer run", peer)));
    for (name, f) in runs {
        let cell = |c: &str| f.cpu_percent.get(c).map_or("     -".into(), |p| format!("{p:>6.0}"));
        let other: f64 = f.cpu_percent.iter().filter(|(k, _)| !columns.contains(&k.as_str())).map(|(_, v)| v).sum();
        let total: f64 = f.cpu_percent.values().sum();
        let _ = writeln!(out, "{name:<20} {}  {other:>6.0} {total:>6.0}", columns.map(cell).join(""));
    }
    for (name, f) in rows {
        if f.failures() > 0 {
            let _ = writeln!(
                out,
                "!! {name}: {} failed in the window {:?}, {} lost",
                f.failures() - f.lost,
                f.errors,
                f.lost
            );
        }
    }
    out
}

/// A note when a lone Kafka echo round trip (`echo_alone_ms`, nothing else
/// in flight) is slow: the broker then does not answer a waiting fetch when a
/// record arrives (Tansu; Apache Kafka does), so each hop waits for the
/// consumer's next fetch, paced by `fetch.wait.max.ms`, and that wait, not the
/// node, sets the figures.
pub(crate) fn fetch_wait_note(echo_alone_ms: f64, contract: &Contract) -> Option<String> {
    if echo_alone_ms.is_nan() || echo_alone_ms <= FETCH_BOUND_ECHO_MS {
        return None;
    }
    let wait = bus::consumer_config(contract)
        .get("fetch.wait.max.ms")
        .map_or("unset (librdkafka's default: 500 ms)".to_owned(), |ms| format!("{ms} ms"));
    Some(format!(
        "a lone Kafka echo round trip takes {echo_alone_ms:.0} ms: this broker does not answer a waiting fetch when \
         a record arrives, so every Kafka hop waits for the consumer's next fetch, paced by fetch.wait.max.ms, which \
         is {wait} in the node's consumer settings (shared by the echo and the requester here). The node's figures \
         and ratios then measure that wait, not the node's own cost."
    ))
}

pub(crate) fn targets_table(targets: &[TargetVerdict]) -> String {
    let mut out = "\n== targets (issue 15) ==\n".to_owned();
    for t in targets {
        let measured = t.measured.map_or("-".into(), |v| format!("{v:.2} {}", t.unit));
        let _ = writeln!(out, "{:<76} {:>4} in flight {:>12}  {}", t.target, t.concurrency, measured, t.verdict);
    }
    out
}

pub(crate) fn nproc() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model_name = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown".into(), |(_, v)| v.trim().to_owned());
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default().trim().to_owned();
    let memory_total_mb = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb * 1024.0 / 1e6);
    Machine {
        nproc: nproc(),
        model_name,
        kernel: read("/proc/sys/kernel/osrelease"),
        memory_total_mb,
        load_average_at_start: read("/proc/loadavg"),
    }
}

pub(crate) fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}

/// Where the node's path spends the machine, against what the shared-core
/// limit assumes (a request costs what a direct Vault request and a Kafka
/// echo cost): CPU per request of each process, in ms of one core. When the
/// node run keeps the cores busy, the process whose cost exceeds the limit's
/// is what holds the node below it; when it does not, the wait is in the
/// stages of the breakdown above.
pub(crate) fn limits_explained(level: &Level) -> String {
    let per_request = |f: &Figures, process: &str| {
        f.cpu_percent.get(process).map_or(0.0, |pct| pct * 10.0 / f.throughput_rps.max(f64::MIN_POSITIVE))
    };
    let (node, vault, echo) = (&level.node, &level.direct_vault, &level.kafka_echo);
    let mut processes: Vec<&String> = node.cpu_percent.keys().chain(vault.cpu_percent.keys()).collect();
    processes.extend(echo.cpu_percent.keys());
    processes.sort();
    processes.dedup();
    let mut out = format!(
        "\n== CPU per request at {} in flight, ms of one core: the node's path against the limits' (A + B) ==\n",
        level.concurrency
    );
    let _ = writeln!(out, "{:<10} {:>9} {:>9} {:>11}", "process", "node run", "A + B", "difference");
    let (mut node_total, mut limit_total) = (0.0, 0.0);
    for process in processes {
        let through_node = per_request(node, process);
        let limits = per_request(vault, process) + per_request(echo, process);
        node_total += through_node;
        limit_total += limits;
        if through_node.max(limits) >= 0.0005 {
            let _ = writeln!(out, "{process:<10} {through_node:>9.3} {limits:>9.3} {:>+11.3}", through_node - limits);
        }
    }
    let _ = writeln!(out, "{:<10} {node_total:>9.3} {limit_total:>9.3} {:>+11.3}", "total", node_total - limit_total);
    let busy: f64 = node.cpu_percent.values().sum();
    let cores = nproc() as f64 * 100.0;
    let _ = writeln!(
        out,
        "the node run kept {busy:.0}% of {cores:.0}% busy; at that CPU per request the cores allow {:.0} req/s on the \
         node's path and {:.0} req/s on the limits'",
        cores * 10.0 / node_total.max(f64::MIN_POSITIVE),
        cores * 10.0 / limit_total.max(f64::MIN_POSITIVE),
    );
    out
}

/// The run as Markdown, for `benches/results/` and the docs: the settings,
/// a table per load and level, the breakdown and CPU per request at
/// [`TARGET_LEVEL`], and the targets.
pub(crate) fn markdown(report: &Report) -> String {
    let s = &report.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run {} (commit {}) on {} × {}, stack: {}; mix `{}`, {} s per load and level after {} s warm-up; \
         contract as shipped except: {}; fetch_wait_max_ms {}, linger_ms {}, audit_linger_ms {}, max_in_flight {}.\n",
        &report.date[..19.min(report.date.len())],
        report.git_commit.as_deref().unwrap_or("?"),
        report.machine.nproc,
        report.machine.model_name,
        report.stack,
        s.mix,
        s.duration_seconds,
        s.warmup_seconds,
        if s.contract_env.is_empty() { "nothing".to_owned() } else { s.contract_env.join(", ") },
        s.fetch_wait_max_ms,
        s.linger_ms,
        s.audit_linger_ms,
        s.node_max_in_flight,
    );
    let _ = writeln!(out, "| in flight | load | req/s | p50 ms | p99 ms | broker CPU ms/request |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for level in &report.levels {
        let mut rows = vec![
            ("node", &level.node, level.broker_cpu_ms_per_request.get("node")),
            ("direct Vault (A)", &level.direct_vault, None),
            ("Kafka echo (B)", &level.kafka_echo, level.broker_cpu_ms_per_request.get("kafka_echo")),
        ];
        if let Some(peer) = &level.python_peer {
            rows.push(("Python peer", peer, level.broker_cpu_ms_per_request.get("python_peer")));
        }
        for (name, f, broker) in rows {
            let _ = writeln!(
                out,
                "| {} | {name} | {:.0} | {:.2} | {:.2} | {} |",
                level.concurrency,
                f.throughput_rps,
                f.p50_ms,
                f.p99_ms,
                broker.map_or("-".to_owned(), |ms| format!("{ms:.3}")),
            );
        }
        let _ = writeln!(
            out,
            "| {} | **node vs limits** | {:.1}% of the shared-core limit ({:.0} req/s); {:.1}% of min(A, B) | added \
             p50 {:+.2} ms | {} | |",
            level.concurrency,
            level.throughput_pct_of_shared_core,
            level.shared_core_limit_rps,
            level.throughput_pct_of_limit,
            level.added_p50_ms,
            level.times_python_peer.map_or(String::new(), |x| format!("{x:.2}× the Python peer")),
        );
    }
    if let Some(level) = report.levels.iter().find(|l| l.concurrency == TARGET_LEVEL).or(report.levels.last()) {
        if let Some(breakdown) = &level.node.breakdown {
            let _ = writeln!(
                out,
                "\nWhere a request's time goes at {} in flight (mean ms per request):\n",
                level.concurrency
            );
            let _ = writeln!(out, "| stage | ms | what |\n|---|---|---|");
            for stage in &breakdown.path {
                let _ = writeln!(out, "| {} | {:.2} | {} |", stage.stage, stage.mean_ms, stage.what);
            }
            let _ = writeln!(
                out,
                "| **sum** | **{:.2}** | measured mean round trip {:.2} |",
                breakdown.path_total_ms, breakdown.measured_mean_ms
            );
            for stage in &breakdown.after_reply {
                let _ = writeln!(out, "| ({}) | {:.2} | after the reply: {} |", stage.stage, stage.mean_ms, stage.what);
            }
        }
        let _ = writeln!(out, "\n```text{}```", limits_explained(level));
    }
    let _ = writeln!(out, "\n{}\n", report.idle.line());
    let _ = writeln!(out, "| target | in flight | measured | verdict |\n|---|---|---|---|");
    for t in &report.targets {
        let measured = t.measured.map_or("-".into(), |v| format!("{v:.2} {}", t.unit));
        let _ = writeln!(out, "| {} | {} | {measured} | **{}** |", t.target, t.concurrency, t.verdict);
    }
    for note in &report.notes {
        let _ = writeln!(out, "\nNote: {note}");
    }
    out
}
