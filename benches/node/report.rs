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
    /// fetch.wait.max.ms of the node's and the bench's consumers.
    pub(crate) fetch_wait_max_ms: Option<String>,
    /// Whether the node's peak RSS is per level (reset through clear_refs) or since its start.
    pub(crate) node_peak_rss_per_level: bool,
}

#[derive(Serialize)]
pub(crate) struct Level {
    pub(crate) concurrency: usize,
    pub(crate) node: Figures,
    pub(crate) direct_vault: Figures,
    pub(crate) kafka_echo: Figures,
    /// Node throughput as % of the lower limit.
    pub(crate) throughput_pct_of_limit: f64,
    /// Node throughput as % of the Kafka echo alone (the limit of cached reads).
    pub(crate) throughput_pct_of_echo: f64,
    pub(crate) limiting: &'static str,
    /// node p50 − (echo p50 + direct Vault p50).
    pub(crate) added_p50_ms: f64,
    pub(crate) added_p99_ms: f64,
}

impl Level {
    pub(crate) fn new(concurrency: usize, node: Figures, direct_vault: Figures, kafka_echo: Figures) -> Level {
        let (limit, limiting) = if direct_vault.throughput_rps <= kafka_echo.throughput_rps {
            (direct_vault.throughput_rps, "direct Vault")
        } else {
            (kafka_echo.throughput_rps, "Kafka echo")
        };
        Level {
            concurrency,
            throughput_pct_of_limit: node.throughput_rps / limit * 100.0,
            throughput_pct_of_echo: node.throughput_rps / kafka_echo.throughput_rps * 100.0,
            limiting,
            added_p50_ms: node.p50_ms - (kafka_echo.p50_ms + direct_vault.p50_ms),
            added_p99_ms: node.p99_ms - (kafka_echo.p99_ms + direct_vault.p99_ms),
            node,
            direct_vault,
            kafka_echo,
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

/// The targets at [`TARGET_LEVEL`]. When the Kafka hops are bound by
/// the fetch cadence (`fetch_bound`, see [`fetch_wait_note`]) the throughput
/// and latency ratios say nothing of the node: they are judged INCONCLUSIVE.
pub(crate) fn judge(levels: &[Level], fetch_bound: bool, read_cache: bool) -> Vec<TargetVerdict> {
    let at = levels.iter().find(|l| l.concurrency == TARGET_LEVEL);
    let judged = |measured: Option<f64>, met: bool| match measured {
        None => "NOT RUN",
        Some(_) if met => "MET",
        Some(_) => "MISSED",
    };
    let ratio = |measured: Option<f64>, met: bool| {
        if fetch_bound && measured.is_some() {
            "INCONCLUSIVE"
        } else {
            judged(measured, met)
        }
    };
    let throughput = at.map(|l| l.throughput_pct_of_limit);
    let added = at.map(|l| l.added_p50_ms);
    let rss = at.and_then(|l| l.node.node_peak_rss_mb);
    let rss_target = TargetVerdict {
        target: format!("node peak RSS <= {TARGET_RSS_MB} MB"),
        concurrency: TARGET_LEVEL,
        measured: rss,
        unit: "MB",
        verdict: judged(rss, rss.is_some_and(|v| v <= TARGET_RSS_MB)),
    };
    if read_cache {
        let of_echo = at.map(|l| l.throughput_pct_of_echo);
        return vec![
            TargetVerdict {
                target: format!("cached-read throughput >= {TARGET_THROUGHPUT_PCT}% of Kafka echo"),
                concurrency: TARGET_LEVEL,
                measured: of_echo,
                unit: "%",
                verdict: ratio(of_echo, of_echo.is_some_and(|v| v >= TARGET_THROUGHPUT_PCT)),
            },
            rss_target,
        ];
    }
    vec![
        TargetVerdict {
            target: format!("node throughput >= {TARGET_THROUGHPUT_PCT}% of min(direct Vault, Kafka echo)"),
            concurrency: TARGET_LEVEL,
            measured: throughput,
            unit: "%",
            verdict: ratio(throughput, throughput.is_some_and(|v| v >= TARGET_THROUGHPUT_PCT)),
        },
        TargetVerdict {
            target: format!("added p50 <= {TARGET_ADDED_P50_MS} ms over (Kafka echo p50 + direct Vault p50)"),
            concurrency: TARGET_LEVEL,
            measured: added,
            unit: "ms",
            verdict: ratio(added, added.is_some_and(|v| v <= TARGET_ADDED_P50_MS)),
        },
        rss_target,
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
    let rows =
        [("node", &level.node), ("direct Vault (A)", &level.direct_vault), ("Kafka echo (B)", &level.kafka_echo)];
    for (name, f) in rows {
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
    let columns = ["node", "tansu", "bao", "bench"];
    let _ = writeln!(
        out,
        "CPU, % of one core   {}   other  total (of {}; bench = load generator, + the echo in its run)",
        columns.map(|c| format!("{c:>6}")).join(""),
        nproc() * 100
    );
    for (name, f) in [("  node run", node), ("  direct Vault run", vault), ("  Kafka echo run", echo)] {
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
    let mut out = format!("\n== targets (issue 6), at {TARGET_LEVEL} in flight ==\n");
    for t in targets {
        let measured = t.measured.map_or("-".into(), |v| format!("{v:.2} {}", t.unit));
        let _ = writeln!(out, "{:<72} {:>12}  {}", t.target, measured, t.verdict);
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
