//! Closed-loop load and its figures.

use super::*;

/// What one load's workers saw inside the measured window.
#[derive(Default)]
pub(crate) struct Tally {
    pub(crate) latencies: Vec<(Kind, Duration)>,
    pub(crate) node_ms: Vec<f64>,
    /// Reply record's timestamp → received here, per answer.
    pub(crate) reply_hop_ms: Vec<f64>,
    pub(crate) errors: BTreeMap<String, u64>,
    /// Requests given up on (anywhere in the run, not only the window).
    pub(crate) lost: u64,
}

impl Tally {
    pub(crate) fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.node_ms.extend(other.node_ms);
        self.reply_hop_ms.extend(other.reply_hop_ms);
        for (error, count) in other.errors {
            *self.errors.entry(error).or_default() += count;
        }
        self.lost += other.lost;
    }
}

/// Runs `concurrency` workers against `target` for the warm-up and the
/// measured window; returns the window's figures, with the CPU each process
/// used during the window (the node's labelled `node`, busy or idle) and,
/// when the node is the target (`through_node`), where its requests' time
/// went.
pub(crate) async fn closed_loop(
    target: &Target,
    settings: &Settings,
    concurrency: usize,
    node: &Node,
    through_node: bool,
) -> Figures {
    let node_pid = node.pid();
    let node = through_node.then_some(node);
    let start = Instant::now() + settings.warmup;
    let end = start + settings.duration;
    let mix = Arc::new(settings.mix.clone());
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (target, mix, secrets) = (target.clone(), mix.clone(), settings.secrets);
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(worker as u64);
                let mut tally = Tally::default();
                while Instant::now() < end {
                    let kind = mix.pick(&mut rng);
                    let op = kind.op(secrets, &mut rng);
                    let sent = Instant::now();
                    let outcome = target.perform(&op).await;
                    let done = outcome.as_ref().map_or_else(|_| Instant::now(), |d| d.at);
                    let in_window = (start..=end).contains(&done);
                    match outcome {
                        Ok(answer) if in_window => {
                            tally.latencies.push((kind, done - sent));
                            tally.node_ms.extend(answer.node_ms);
                            tally.reply_hop_ms.extend(answer.reply_hop_ms);
                        }
                        Ok(_) => {}
                        Err(Failure::Lost) => tally.lost += 1,
                        Err(Failure::Error(e) | Failure::Transport(e)) if in_window => {
                            *tally.errors.entry(format!("{} {e}", kind.name())).or_default() += 1;
                        }
                        Err(_) => {}
                    }
                }
                tally
            })
        })
        .collect();

    tokio::time::sleep_until(start.into()).await;
    let stages_before = match node {
        Some(node) => Some(StageScrape::take(node).await),
        None => None,
    };
    let before = CpuSnapshot::take(node_pid);
    tokio::time::sleep_until(end.into()).await;
    let cpu = CpuSnapshot::take(node_pid).percent_since(&before);
    let stages = match (node, stages_before) {
        (Some(node), Some(before)) => Some(StageScrape::take(node).await.means_since(&before)),
        _ => None,
    };
    let mut tally = Tally::default();
    for worker in workers {
        tally.merge(worker.await.expect("a load worker panicked"));
    }
    Figures::new(tally, settings.duration, cpu, stages)
}

/// One load's figures (latencies in milliseconds).
#[derive(Serialize)]
pub(crate) struct Figures {
    pub(crate) requests: usize,
    pub(crate) throughput_rps: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) mean_ms: f64,
    /// Failed requests inside the window, by kind and error.
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) lost: u64,
    pub(crate) by_kind: BTreeMap<&'static str, KindFigures>,
    /// CPU per process during the window, % of one core.
    pub(crate) cpu_percent: BTreeMap<String, f64>,
    /// Node runs only: the node's own `duration_ms` in its replies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node_internal_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node_peak_rss_mb: Option<f64>,
    /// Kafka loads: reply record's timestamp → received, mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reply_hop_mean_ms: Option<f64>,
    /// Node runs only: where the time of a request went.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) breakdown: Option<Breakdown>,
}

#[derive(Serialize)]
pub(crate) struct KindFigures {
    pub(crate) requests: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
}

impl Figures {
    pub(crate) fn new(
        tally: Tally,
        window: Duration,
        cpu_percent: BTreeMap<String, f64>,
        stages: Option<BTreeMap<&'static str, f64>>,
    ) -> Figures {
        let mut all: Vec<f64> = tally.latencies.iter().map(|(_, d)| ms(*d)).collect();
        all.sort_by(f64::total_cmp);
        let by_kind = Kind::ALL
            .into_iter()
            .filter_map(|kind| {
                let mut mine: Vec<f64> =
                    tally.latencies.iter().filter(|(k, _)| *k == kind).map(|(_, d)| ms(*d)).collect();
                mine.sort_by(f64::total_cmp);
                let figures = KindFigures {
                    requests: mine.len(),
                    p50_ms: percentile(&mine, 50.0),
                    p99_ms: percentile(&mine, 99.0),
                };
                (!mine.is_empty()).then_some((kind.name(), figures))
            })
            .collect();
        let mut node_ms = tally.node_ms;
        node_ms.sort_by(f64::total_cmp);
        let hops = &tally.reply_hop_ms;
        let reply_hop_mean_ms = (!hops.is_empty()).then(|| hops.iter().sum::<f64>() / hops.len() as f64);
        let mean_ms = all.iter().sum::<f64>() / all.len() as f64;
        let breakdown = stages.map(|stages| Breakdown::new(&stages, reply_hop_mean_ms.unwrap_or(f64::NAN), mean_ms));
        Figures {
            requests: all.len(),
            throughput_rps: all.len() as f64 / window.as_secs_f64(),
            p50_ms: percentile(&all, 50.0),
            p95_ms: percentile(&all, 95.0),
            p99_ms: percentile(&all, 99.0),
            max_ms: all.last().copied().unwrap_or(f64::NAN),
            mean_ms,
            errors: tally.errors,
            lost: tally.lost,
            by_kind,
            cpu_percent,
            node_internal_p50_ms: (!node_ms.is_empty()).then(|| percentile(&node_ms, 50.0)),
            node_peak_rss_mb: None,
            reply_hop_mean_ms,
            breakdown,
        }
    }

    pub(crate) fn failures(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.lost
    }
}

pub(crate) fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of sorted values (NaN when empty).
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
