//! Processes: CPU time and peak RSS from /proc.

use super::*;

/// CPU time (utime + stime, in clock ticks) of the bench, the node and the
/// servers the harness started (children of this process), at one instant.
pub(crate) struct CpuSnapshot {
    pub(crate) at: Instant,
    pub(crate) ticks: BTreeMap<String, u64>,
}

impl CpuSnapshot {
    pub(crate) fn take(node_pid: Option<u32>) -> CpuSnapshot {
        let me = std::process::id();
        let mut ticks = BTreeMap::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Some(stat) = ProcStat::read(pid) else { continue };
            let label = if pid == me {
                "bench".to_owned()
            } else if Some(pid) == node_pid {
                "node".to_owned()
            } else if stat.ppid == me {
                server_label(&stat.comm)
            } else {
                continue;
            };
            *ticks.entry(label).or_default() += stat.cpu_ticks;
        }
        CpuSnapshot { at: Instant::now(), ticks }
    }

    /// CPU used by each process since `before`, as % of one core.
    pub(crate) fn percent_since(&self, before: &CpuSnapshot) -> BTreeMap<String, f64> {
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let seconds = self.at.duration_since(before.at).as_secs_f64().max(1e-9);
        self.ticks
            .iter()
            .map(|(label, ticks)| {
                let used = ticks.saturating_sub(before.ticks.get(label).copied().unwrap_or(0));
                (label.clone(), used as f64 / per_second / seconds * 100.0)
            })
            .collect()
    }
}

pub(crate) fn server_label(comm: &str) -> String {
    match comm {
        c if c.starts_with("tansu") => "tansu".into(),
        c if c.starts_with("bao") => "bao".into(),
        c if c.starts_with("python") => "python".into(),
        other => other.into(),
    }
}

pub(crate) struct ProcStat {
    pub(crate) comm: String,
    pub(crate) ppid: u32,
    pub(crate) cpu_ticks: u64,
}

impl ProcStat {
    /// Fields of `/proc/<pid>/stat` (the name may hold spaces; it ends at the last `)`).
    pub(crate) fn read(pid: u32) -> Option<ProcStat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (head, rest) = stat.rsplit_once(')')?;
        let comm = head.split_once('(')?.1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After the name: state(3) ppid(4) … utime(14) stime(15), 1-based in proc(5).
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        Some(ProcStat { comm, ppid: field(4)? as u32, cpu_ticks: field(14)? + field(15)? })
    }
}

/// A `kB` line of `/proc/<pid>/status`, e.g. `VmHWM` (peak RSS), in MB.
pub(crate) fn status_mb(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let kb: f64 = line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024.0 / 1e6)
}

/// Resets the peak RSS (`VmHWM`) of `pid` to its current RSS (`clear_refs` 5).
pub(crate) fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// CPU of each process while the node waits for requests and every other
/// client of the bench is paused: what the node's settings (its fetch
/// wait above all) cost an idle bus.
#[derive(Serialize)]
pub(crate) struct IdleCost {
    pub(crate) seconds: f64,
    pub(crate) cpu_percent: BTreeMap<String, f64>,
}

impl IdleCost {
    pub(crate) fn line(&self) -> String {
        let cpu = |label: &str| self.cpu_percent.get(label).copied().unwrap_or(0.0);
        format!(
            "idle ({:.0} s, no requests): broker {:.1}%, node {:.1}%, Vault {:.1}% of a core",
            self.seconds,
            cpu("tansu"),
            cpu("node"),
            cpu("bao")
        )
    }
}

pub(crate) async fn idle_cost(node: &Node, window: Duration) -> IdleCost {
    let node_pid = node.pid();
    // Paused clients settle (a fetch in progress ends) before the window.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = CpuSnapshot::take(node_pid);
    tokio::time::sleep(window).await;
    let after = CpuSnapshot::take(node_pid);
    IdleCost { seconds: window.as_secs_f64(), cpu_percent: after.percent_since(&before) }
}
