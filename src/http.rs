//! The operator's HTTP endpoint (`health_check.http_port`): `GET /health`
//! answers 200 while the node's loops run, for container health checks.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::{routing::get, Json, Router};
use tokio_util::sync::CancellationToken;

/// Binds the port now (a taken port is a start-up error, not a half-running
/// node) and serves until `stop` fires.
pub async fn serve(port: u16, endpoint: &str, stop: CancellationToken) -> anyhow::Result<()> {
    let address = SocketAddr::from(([0, 0, 0, 0], port));
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| {
            format!("cannot listen on {address} (health_check.http_port, ONEX_HTTP_PORT)")
        })?;
    let app = Router::new().route(
        endpoint,
        get(|| async { Json(serde_json::json!({ "status": "alive" })) }),
    );
    tracing::info!(%address, endpoint, "HTTP endpoint listening");
    tokio::spawn(async move {
        let shutdown = async move { stop.cancelled().await };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(%error, "HTTP endpoint failed");
        }
    });
    Ok(())
}
