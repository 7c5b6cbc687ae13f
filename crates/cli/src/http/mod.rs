//! `--metrics-addr`: Prometheus text on `/metrics`, a JSON summary on `/status`.

use anyhow::{Context, Result};
use axum::{routing::get, Json, Router};
use polyrepl_engine::Metrics;
use std::sync::Arc;

mod render;

/// Binds `addr` and serves until the process ends.
pub async fn serve(addr: &str, metrics: Arc<Metrics>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --metrics-addr {addr}: is the address free and local?"))?;
    let m1 = metrics.clone();
    let app = Router::new()
        .route("/metrics", get(move || async move { render::prometheus(&m1) }))
        .route("/status", get(move || async move { Json(render::status(&metrics)) }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(())
}
