//! A run: the pipeline started, then the snapshot where a sink needs one, then streaming.
//!
//! Invariants:
//! - How the run starts is decided once, from the checkpoints the sinks held at start-up
//!   ([`StartPlan`]); streaming starts at the smallest position any sink needs, and each sink skips
//!   what it already holds.
//! - The source side ends (end of binlog with `--stop-at-end`, shutdown, or an error) by dropping its
//!   sender: the pipeline then drains what it holds, so every batch handed over is applied or its
//!   sink's error reported.

use crate::checkpoints::StartPlan;
use crate::control::Inbox;
use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use crate::online::OnlineCopies;
use crate::pipeline;
use crate::settings::RunConfig;
use crate::snapshot::{run_snapshot, SnapshotStart};
use crate::startup::Prepared;
use crate::stream::stream;
use polyrepl_core::{Batch, Checkpoint, TableFilter, TableSchema};
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// Runs until the source ends (`--stop-at-end`), `shutdown` turns true, or an error; takes the
/// requests sent to `inbox` while streaming ([`crate::control`]).
pub async fn run(
    cfg: RunConfig,
    prepared: Prepared,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
    inbox: Inbox,
) -> Result<()> {
    let Prepared { url, filter, tables, slots, mut leases, history_changed } = prepared;
    let checkpoints: Vec<Option<Checkpoint>> = slots.iter().map(|s| s.resume_from.clone()).collect();
    let ids: Vec<_> = tables.iter().map(|t| t.id.clone()).collect();
    let plan = StartPlan::from_checkpoints(&checkpoints).with_online_copies(&checkpoints, &ids);
    let (tx, rx) = mpsc::channel::<Batch>(4);
    let mut pipeline_task = tokio::spawn(pipeline::run(rx, slots, cfg.pipeline(), metrics.clone()));

    let source = drive_source(&cfg, &url, &filter, &tables, plan, history_changed, inbox, tx, &metrics, &mut shutdown);
    tokio::pin!(source);
    let task_failed = |e: tokio::task::JoinError| EngineError::Internal(format!("the pipeline task failed: {e}"));
    {
        // Renews the sink tables' leases; ends only when one is lost to another pipeline.
        let lost = leases.keep();
        tokio::pin!(lost);
        tokio::select! {
            r = &mut source => {
                // Source done (or failed): the sender is dropped, the pipeline drains what it holds.
                let drained = tokio::select! {
                    d = &mut pipeline_task => d.map_err(task_failed)?,
                    e = &mut lost => return Err(e),
                };
                r?;
                drained?;
            }
            r = &mut pipeline_task => {
                r.map_err(task_failed)??;
                return Err(EngineError::Internal("the pipeline stopped while the source was still running".into()));
            }
            e = &mut lost => return Err(e),
        }
    }
    // A clean stop: the tables are free for another pipeline at once.
    leases.release().await;
    Ok(())
}

/// Snapshot (where needed) then streaming, feeding `tx`.
#[allow(clippy::too_many_arguments)]
async fn drive_source(
    cfg: &RunConfig,
    url: &SourceUrl,
    filter: &TableFilter,
    tables: &[Arc<TableSchema>],
    plan: StartPlan,
    history_changed: bool,
    mut inbox: Inbox,
    tx: mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    let mut snapshot_position = None;
    if plan.needs_snapshot {
        let start = SnapshotStart {
            resume: plan.resume_snapshot.clone(),
            sweep: cfg.resnapshot || plan.sweep_again,
            empty_first: cfg.resnapshot && history_changed,
            selection: filter.clone(),
        };
        match run_snapshot(cfg, url, tables, start, &tx, metrics, shutdown).await? {
            Some(position) => snapshot_position = Some(position),
            None => return Ok(()), // shut down mid-snapshot
        }
    }
    let no_position = || EngineError::Internal("no position to stream from: no checkpoint and no snapshot".into());
    let from = plan.stream_from(snapshot_position.as_ref()).ok_or_else(no_position)?;
    let read_from = plan.read_from(snapshot_position.as_ref()).ok_or_else(no_position)?;
    for copy in &plan.copies {
        tracing::info!(table = %copy.table, resume_after = ?copy.after, "online copy planned: the table is copied while streaming goes on");
    }
    let mut online = OnlineCopies::new(url, cfg.chunk_rows, tables, plan.copies.clone(), filter.spec());
    let streamed = stream(cfg, url, filter, from, read_from, &mut online, &mut inbox, &tx, metrics, shutdown).await;
    online.close().await;
    streamed
}
