//! Where a request's time goes: the node's own stage timings (its
//! `request_stage_seconds` metric, read before and after a run) beside the
//! reply's hop back to the requester, measured here from the reply record's
//! timestamp.

use onex_vault_adapter::telemetry::Stage;

use super::*;

/// The node's stage sums and its record count at one instant.
pub(crate) struct StageScrape {
    seconds: BTreeMap<&'static str, f64>,
    records: f64,
}

impl StageScrape {
    pub(crate) async fn take(node: &Node) -> StageScrape {
        let series = node.metric_series().await;
        let seconds = Stage::ALL
            .into_iter()
            .map(|stage| {
                let name = format!("onex_vault_adapter_request_stage_seconds_sum{{stage=\"{}\"}}", stage.as_str());
                (stage.as_str(), series.get(&name).copied().unwrap_or(0.0))
            })
            .collect();
        let records = series.get("onex_vault_adapter_records_consumed_total").copied().unwrap_or(0.0);
        StageScrape { seconds, records }
    }

    /// Mean milliseconds per record of each stage since `before`.
    pub(crate) fn means_since(&self, before: &StageScrape) -> BTreeMap<&'static str, f64> {
        let records = (self.records - before.records).max(1.0);
        self.seconds
            .iter()
            .map(|(stage, total)| {
                let spent = total - before.seconds.get(stage).copied().unwrap_or(0.0);
                (*stage, spent * 1000.0 / records)
            })
            .collect()
    }
}

/// A request's way through the node, as mean milliseconds per request.
#[derive(Serialize)]
pub(crate) struct Breakdown {
    /// On the requester's path, in order; their sum is close to the mean
    /// round trip (`path_total_ms` against `measured_mean_ms`).
    pub(crate) path: Vec<StageFigure>,
    pub(crate) path_total_ms: f64,
    pub(crate) measured_mean_ms: f64,
    /// After the reply is produced, while the record holds its in-flight
    /// slot: the broker's acknowledgements (reply and audit record are
    /// produced together, so they overlap each other and the reply hop) and
    /// the offset store.
    pub(crate) after_reply: Vec<StageFigure>,
}

#[derive(Serialize)]
pub(crate) struct StageFigure {
    pub(crate) stage: &'static str,
    pub(crate) what: &'static str,
    pub(crate) mean_ms: f64,
}

impl Breakdown {
    /// From the node's stage means and the reply hops the requester saw.
    pub(crate) fn new(node: &BTreeMap<&'static str, f64>, reply_hop_ms: f64, measured_mean_ms: f64) -> Breakdown {
        let figure = |stage: &'static str, what: &'static str| StageFigure {
            stage,
            what,
            mean_ms: node.get(stage).copied().unwrap_or(f64::NAN),
        };
        let path = vec![
            figure("bus_wait", "request record's timestamp → the node takes it (produce, broker, fetch wait)"),
            figure("key_wait", "behind an earlier request on the same key"),
            figure("decode_and_gate", "envelope decoded, security checks"),
            figure("vault", "the Vault call (timeout, retries, breaker)"),
            figure("answer", "reply and audit record built and signed"),
            StageFigure {
                stage: "reply_hop",
                what: "reply record's timestamp → the requester has it (measured by the bench)",
                mean_ms: reply_hop_ms,
            },
        ];
        let after_reply = vec![
            figure("publish_reply", "reply produced → broker's ack"),
            figure("publish_audit", "audit record produced → broker's ack"),
            figure("offset_store", "last ack → offset stored by the main loop"),
        ];
        let path_total_ms = path.iter().map(|s| s.mean_ms).filter(|ms| ms.is_finite()).sum();
        Breakdown { path, path_total_ms, measured_mean_ms, after_reply }
    }

    pub(crate) fn table(&self) -> String {
        let mut out = String::from("where a request's time goes through the node (mean ms per request):\n");
        for stage in &self.path {
            let _ = writeln!(out, "  {:<16} {:>8.2}  {}", stage.stage, stage.mean_ms, stage.what);
        }
        let _ = writeln!(
            out,
            "  {:<16} {:>8.2}  (measured mean round trip {:.2})",
            "= sum", self.path_total_ms, self.measured_mean_ms
        );
        let _ = writeln!(out, "  after the reply, holding the request's slot:");
        for stage in &self.after_reply {
            let _ = writeln!(out, "  {:<16} {:>8.2}  {}", stage.stage, stage.mean_ms, stage.what);
        }
        out
    }
}
