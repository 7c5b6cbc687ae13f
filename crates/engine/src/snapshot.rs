//! The initial snapshot: every table not yet copied, chunk by chunk, into the pipeline.
//!
//! Invariants:
//! - The snapshot's SELECTs run inside its consistent-snapshot transaction
//!   ([`polyrepl_mysql::Snapshot`]), so every chunk reflects one instant: the snapshot's position.
//! - Each chunk is one batch whose checkpoint says how far the copy got (tables done, last key of the
//!   current table) at the snapshot's position; the copy ends with the hand-over checkpoint
//!   ([`checkpoints::snapshot_complete`]).
//! - A snapshot resumed after a crash continues after what every sink holds
//!   ([`checkpoints::snapshot_resume_point`]) but keeps the *first* snapshot's position: rows copied
//!   later reflect a newer state, and streaming from the older position replays every change since,
//!   so every row converges to the source's state.

use crate::checkpoints;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::settings::RunConfig;
use crate::sweep;
use polyrepl_core::{Batch, Checkpoint, Position, SnapshotProgress, TableFilter, TableOp, TableSchema};
use polyrepl_mysql::snapshot::Snapshot;
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// How often, at most, a table's copy reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the snapshot starts from: a copy in progress to continue (else a new one at a new position),
/// whether the `--resnapshot` sweep runs first, and the run's selection.
pub struct SnapshotStart {
    pub resume: Option<Checkpoint>,
    pub sweep: bool,
    /// Empty the sink tables instead of sweeping: the sinks hold rows of another binlog history, whose
    /// positions (and Cassandra write timestamps) are not comparable with the new ones.
    pub empty_first: bool,
    /// The run's selection, recorded in the hand-over checkpoint.
    pub selection: TableFilter,
}

/// Copies every table not yet done (after the sweep, when asked), and returns the position streaming
/// must start from; `None` when shut down midway (the checkpoints written so far let the next run
/// resume).
pub async fn run_snapshot(
    cfg: &RunConfig,
    url: &SourceUrl,
    tables: &[Arc<TableSchema>],
    start: SnapshotStart,
    tx: &mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<Option<Position>> {
    // Opening waits while XA transactions are prepared (see `Snapshot::begin`): shutdown ends the wait.
    let mut stop = shutdown.clone();
    let mut snapshot = tokio::select! {
        opened = Snapshot::begin(url, cfg.chunk_rows) => opened?,
        Ok(_) = stop.wait_for(|stop| *stop) => return Ok(None),
    };
    let (position, mut progress) = match start.resume {
        Some(Checkpoint { position, snapshot: Some(p), .. }) => {
            tracing::info!(%position, done = p.done.len(), "resuming the snapshot after its last applied chunk");
            (position, p)
        }
        _ => (snapshot.position().clone(), SnapshotProgress { done: vec![], current: None }),
    };
    tracing::info!(%position, tables = tables.len(), "snapshot begins");
    if start.empty_first {
        let ops = tables.iter().map(|t| TableOp::Truncate(t.clone())).collect();
        if tx.send(Batch::table_ops(ops, checkpoints::nothing_copied(&position))).await.is_err() {
            return Ok(None);
        }
        tracing::info!("--resnapshot from another binlog history: the sink tables were emptied");
    } else if start.sweep {
        match sweep::sweep(cfg, url, tables, &position, tx).await? {
            Some(n) => {
                tracing::info!(rows = n, "--resnapshot: rows the source no longer has are deleted from the sinks")
            }
            None => return Ok(None),
        }
    }
    let started = Instant::now();
    for table in tables {
        if progress.done.contains(&table.id) {
            continue;
        }
        let resume_key = match &progress.current {
            Some((id, key)) if id == &table.id => Some(key.clone()),
            _ => None,
        };
        let estimate = snapshot.estimated_rows(table).await.unwrap_or(0);
        let name = table.id.to_string();
        metrics.snapshot_progress(&name, 0, estimate);
        let mut chunks = snapshot.table_chunks(table.clone(), resume_key);
        let (mut rows, table_start, mut last_note) = (0u64, Instant::now(), Instant::now());
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            let Some(changes) = chunks.next_chunk().await? else { break };
            rows += changes.len() as u64;
            metrics.source.snapshot_rows.fetch_add(changes.len() as u64, Relaxed);
            metrics.snapshot_progress(&name, changes.len() as u64, estimate);
            let last_key = chunks.last_key().map(|k| k.to_vec()).unwrap_or_default();
            progress.current = Some((table.id.clone(), last_key));
            let checkpoint = Checkpoint::snapshotting(position.clone(), progress.clone());
            if tx.send(Batch::new(changes, checkpoint)).await.is_err() {
                return Ok(None);
            }
            if last_note.elapsed() > PROGRESS_EVERY {
                last_note = Instant::now();
                tracing::info!("{}", progress_line(&name, rows, estimate, table_start.elapsed()));
            }
        }
        tracing::info!("{}", progress_line(&name, rows, rows, table_start.elapsed()));
        metrics.snapshot_done(&name);
        progress.done.push(table.id.clone());
        progress.current = None;
    }
    snapshot.finish().await?;
    // The snapshot is complete: from here on, sinks hold a streaming checkpoint.
    if tx.send(Batch::new(vec![], checkpoints::snapshot_complete(&position, &start.selection))).await.is_err() {
        return Ok(None);
    }
    tracing::info!(
        rows = metrics.source.snapshot_rows.load(Relaxed),
        seconds = started.elapsed().as_secs_f64(),
        "snapshot read"
    );
    Ok(Some(position))
}

/// `snapshot db.t: 120000/1000000 rows (12%), 45000 rows/s, ETA 20 s`
fn progress_line(table: &str, rows: u64, estimate: u64, elapsed: Duration) -> String {
    let rate = rows as f64 / elapsed.as_secs_f64().max(0.001);
    let total = estimate.max(rows);
    let eta = if rate > 0.0 { (total - rows) as f64 / rate } else { 0.0 };
    let pct = (rows * 100).checked_div(total).unwrap_or(100);
    format!("snapshot {table}: {rows}/{total} rows ({pct}%), {rate:.0} rows/s, ETA {eta:.0} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_well() {
        assert_eq!(
            progress_line("d.t", 50, 100, Duration::from_secs(1)),
            "snapshot d.t: 50/100 rows (50%), 50 rows/s, ETA 1 s"
        );
        assert_eq!(
            progress_line("d.t", 0, 0, Duration::from_secs(1)),
            "snapshot d.t: 0/0 rows (100%), 0 rows/s, ETA 0 s"
        );
    }
}
