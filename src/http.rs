//! The operator's HTTP endpoint (`health_check.http_port`):
//!
//! - `GET /health` (the contract's `health_check.endpoint`): liveness, 200
//!   while the process runs its loops;
//! - `GET /ready`: 200 only when the consumer holds partitions and Vault is
//!   reachable and unsealed; 503 with a JSON reason otherwise;
//! - `GET /metrics`: Prometheus metrics (OpenMetrics text).
//!
//! The port is bound before anything else starts, so a taken port is a clear
//! start-up error rather than a half-running node. Until the node is built,
//! `/ready` names what start-up waits on: "starting" while it logs in to
//! Vault, then the Kafka topic it reads to its end (the replay ledger, the
//! lease registry), so a node that cannot reach Kafka says so.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::{routing::get, Json, Router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::runtime::Node;

/// The node once it exists, and until then what its start-up waits on.
pub type NodeSlot = Arc<Startup>;

/// Start-up as `/ready` and `/metrics` see it.
#[derive(Default)]
pub struct Startup {
    node: OnceLock<Arc<Node>>,
    waiting_on: Mutex<Option<&'static str>>,
}

impl Startup {
    /// Start-up now waits on `what` (the reason `/ready` gives).
    pub fn waiting_on(&self, what: &'static str) {
        *self.waiting_on.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
    }

    /// The node is built: `/ready` judges it from now on.
    pub fn built(&self, node: Arc<Node>) {
        let _ = self.node.set(node);
    }

    fn node(&self) -> Result<&Arc<Node>, &'static str> {
        self.node.get().ok_or_else(|| self.waiting_on.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or("starting"))
    }
}

/// Binds `port` now and serves until `stop` fires.
pub async fn serve(port: u16, liveness_path: &str, node: NodeSlot, stop: CancellationToken) -> anyhow::Result<()> {
    let address = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address} (health_check.http_port, ONEX_HTTP_PORT)"))?;
    let app = Router::new()
        .route(liveness_path, get(|| async { Json(json!({ "status": "alive" })) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(node);
    tracing::info!(%address, "HTTP endpoint listening (/health, /ready, /metrics)");
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "HTTP endpoint failed");
        }
    });
    Ok(())
}

async fn ready(State(node): State<NodeSlot>) -> impl IntoResponse {
    let not_ready = |reason: &str| (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "reason": reason })));
    let node = match node.node() {
        Ok(node) => node,
        Err(waiting_on) => return not_ready(waiting_on),
    };
    if node.telemetry.assigned_partitions() == 0 {
        return not_ready("no partitions of the request topic assigned yet");
    }
    let deadline = std::time::Duration::from_secs(node.contract.event_bus.record_deadline_seconds);
    if node.telemetry.stalled(deadline) {
        return not_ready("records wait and none has finished within event_bus.record_deadline_seconds");
    }
    if node.gate.keys_stale() {
        return not_ready("requester keys from Vault could not be refreshed: their requests are refused");
    }
    let vault = node.dispatcher.vault();
    match vault.health().await {
        Err(_) => not_ready("vault unreachable"),
        Ok(h) if h.sealed == Some(true) => not_ready("vault sealed"),
        Ok(h) if h.initialized == Some(false) => not_ready("vault not initialized"),
        // A revoked or expired token fails every request, though Vault is fine.
        Ok(_) if vault.token_is_dead().await => not_ready("the node's Vault token is refused (revoked or expired)"),
        Ok(_) => (StatusCode::OK, Json(json!({ "ready": true }))),
    }
}

async fn metrics(State(node): State<NodeSlot>) -> impl IntoResponse {
    let text = node.node().ok().map(|n| n.telemetry.encode()).unwrap_or_else(|| "# EOF\n".to_owned());
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}
