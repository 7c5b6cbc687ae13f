//! `run --http-addr`: the live web view on `/` (with `/history`, the last minutes sampled each second),
//! Prometheus text on `/metrics`, a JSON summary on `/status`, and `POST /snapshot`
//! (`{"tables": ["db.t"]}`) to copy tables again while the run streams (`polyrepl snapshot`).

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Json;
use polyrepl_core::TableId;
use polyrepl_engine::control::Controller;
use polyrepl_engine::Metrics;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub mod client;
mod history;
mod page;
mod render;

/// The body of `POST /repair`: keys (values in key order, as polyrepl serialises them) of one table.
#[derive(Deserialize, serde::Serialize)]
pub struct RepairRequest {
    pub table: String,
    pub keys: Vec<Vec<polyrepl_core::Value>>,
}

/// The body of `POST /snapshot`.
#[derive(Deserialize)]
pub struct CopyRequest {
    pub tables: Vec<String>,
}

/// Binds `addr` and serves until the process ends; `POST /snapshot` needs a `controller`.
pub async fn serve(addr: &str, metrics: Arc<Metrics>, controller: Option<Controller>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on --http-addr {addr}: is the address free and local?"))?;
    serve_on(listener, metrics, controller)
}

/// Serves on a bound `listener` until the process ends; returns the address it listens on.
pub fn serve_on(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    controller: Option<Controller>,
) -> Result<SocketAddr> {
    let local = listener.local_addr().context("the address of the HTTP listener")?;
    let m1 = metrics.clone();
    let history = history::History::spawn(metrics.clone());
    let app = page::routes()
        .route("/history", get(move || async move { Json(history.json()) }))
        .route("/metrics", get(move || async move { render::prometheus(&m1) }))
        .route("/status", get(move || async move { Json(render::status(&metrics)) }))
        .route(
            "/snapshot",
            post({
                let controller = controller.clone();
                move |Json(request): Json<CopyRequest>| copy(controller.clone(), request)
            }),
        )
        .route("/repair", post(move |Json(request): Json<RepairRequest>| repair(controller.clone(), request)));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(local)
}

/// `POST /snapshot`: 200 with the tables whose copy started, 400 for a malformed name, 409 when the
/// pipeline refuses, 202 when it has not taken the request yet (initial snapshot), 503 when this
/// process takes none.
async fn copy(controller: Option<Controller>, request: CopyRequest) -> (StatusCode, Json<serde_json::Value>) {
    let answer = |code: StatusCode, body: serde_json::Value| (code, Json(body));
    let Some(controller) = controller else {
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "this process takes no copy requests"}),
        );
    };
    let mut tables = Vec::new();
    for name in &request.tables {
        match table_id(name) {
            Ok(id) => tables.push(id),
            Err(error) => return answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": error })),
        }
    }
    // The stream takes requests between events; during the initial snapshot it takes none.
    match tokio::time::timeout(Duration::from_secs(30), controller.copy(tables)).await {
        Ok(Ok(copying)) => {
            let names: Vec<String> = copying.iter().map(ToString::to_string).collect();
            answer(StatusCode::OK, serde_json::json!({ "copying": names }))
        }
        Ok(Err(error)) => answer(StatusCode::CONFLICT, serde_json::json!({ "error": error })),
        Err(_) => answer(
            StatusCode::ACCEPTED,
            serde_json::json!({"queued": request.tables, "note": "the pipeline has not taken the request within 30 s (it is still in its initial snapshot): it takes it once it streams"}),
        ),
    }
}

/// `db.table` as a table id.
fn table_id(name: &str) -> Result<TableId, String> {
    match name.split_once('.') {
        Some((db, t)) if !db.is_empty() && !t.is_empty() => Ok(TableId::new(db, t)),
        _ => Err(format!("'{name}' is not of the form db.table")),
    }
}

/// `POST /repair`: 200 with `present` (per key, whether the source has the row) once the pipeline has
/// read the rows; 400 for a malformed name, 409 when refused, 503 when not taken within 60 s.
async fn repair(controller: Option<Controller>, request: RepairRequest) -> (StatusCode, Json<serde_json::Value>) {
    let answer = |code: StatusCode, body: serde_json::Value| (code, Json(body));
    let Some(controller) = controller else {
        return answer(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({"error": "this process takes no repairs"}));
    };
    let table = match table_id(&request.table) {
        Ok(id) => id,
        Err(error) => return answer(StatusCode::BAD_REQUEST, serde_json::json!({ "error": error })),
    };
    match tokio::time::timeout(Duration::from_secs(60), controller.repair(table, request.keys)).await {
        Ok(Ok(present)) => answer(StatusCode::OK, serde_json::json!({ "present": present })),
        Ok(Err(error)) => answer(StatusCode::CONFLICT, serde_json::json!({ "error": error })),
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"error": "the pipeline did not read the rows within 60 s (is it still in its initial snapshot?); it will still repair them once it streams"}),
        ),
    }
}
