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
//! - With `--snapshot-parallelism` N ≥ 2 the tables are cut into key ranges read on N connections at
//!   once, each in a consistent snapshot of its own opened right after this one, and handed over in
//!   the same order with the same checkpoints ([`parallel`], whose notes say why rows read there
//!   converge too).

pub mod parallel;

use crate::checkpoints;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::settings::RunConfig;
use crate::sweep;
use polyrepl_core::{Batch, Checkpoint, Position, SnapshotProgress, TableFilter, TableId, TableOp, TableSchema};
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
    // The parallel copy's readers open right after the first snapshot, as close to its position as can be.
    let done = start.resume.as_ref().and_then(|c| c.snapshot.as_ref()).map(|p| p.done.as_slice()).unwrap_or_default();
    let copies_left = tables.iter().any(|t| !done.contains(&t.id));
    let readers = if cfg.snapshot_parallelism > 1 && copies_left {
        parallel::open_readers(url, cfg.chunk_rows, cfg.snapshot_parallelism).await?
    } else {
        vec![]
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
    if readers.is_empty() {
        if !copy_in_one_transaction(&mut snapshot, tables, &position, &mut progress, tx, metrics, shutdown).await? {
            return Ok(None);
        }
        snapshot.finish().await?;
    } else {
        tracing::info!(readers = readers.len(), "the snapshot reads key ranges on several connections at once");
        let copied =
            parallel::copy(snapshot, readers, tables, &position, &mut progress, cfg.chunk_rows, tx, metrics, shutdown)
                .await?;
        if !copied {
            return Ok(None);
        }
    }
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

/// Copies every table `progress` does not list as done in `snapshot`'s one transaction, chunk after
/// chunk; false when shut down or when the pipeline is gone.
async fn copy_in_one_transaction(
    snapshot: &mut Snapshot,
    tables: &[Arc<TableSchema>],
    position: &Position,
    progress: &mut SnapshotProgress,
    tx: &mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<bool> {
    for table in tables {
        if progress.done.contains(&table.id) {
            continue;
        }
        let resume_key = match &progress.current {
            Some((id, key)) if id == &table.id => Some(key.clone()),
            _ => None,
        };
        let estimate = snapshot.estimated_rows(table).await.unwrap_or(0);
        let mut count = TableCount::start(table, estimate, metrics);
        let mut chunks = snapshot.table_chunks(table.clone(), resume_key);
        loop {
            if *shutdown.borrow() {
                return Ok(false);
            }
            let Some(changes) = chunks.next_chunk().await? else { break };
            let rows = changes.len();
            let last_key = chunks.last_key().map(|k| k.to_vec()).unwrap_or_default();
            progress.current = Some((table.id.clone(), last_key));
            let checkpoint = Checkpoint::snapshotting(position.clone(), progress.clone());
            if tx.send(Batch::new(changes, checkpoint)).await.is_err() {
                return Ok(false);
            }
            count.chunk(rows, metrics);
        }
        count.done(metrics);
        progress.done.push(table.id.clone());
        progress.current = None;
    }
    Ok(true)
}

/// One table's copy as handed over so far: its metrics and progress lines.
struct TableCount {
    id: TableId,
    name: String,
    estimate: u64,
    rows: u64,
    started: Instant,
    last_note: Instant,
}

impl TableCount {
    fn start(table: &TableSchema, estimate: u64, metrics: &Metrics) -> TableCount {
        let name = table.id.to_string();
        metrics.snapshot_progress(&name, 0, estimate);
        let now = Instant::now();
        TableCount { id: table.id.clone(), name, estimate, rows: 0, started: now, last_note: now }
    }

    /// A chunk of `rows` rows was handed over.
    fn chunk(&mut self, rows: usize, metrics: &Metrics) {
        self.rows += rows as u64;
        metrics.source.snapshot_rows.fetch_add(rows as u64, Relaxed);
        metrics.snapshot_progress(&self.name, rows as u64, self.estimate);
        if self.last_note.elapsed() > PROGRESS_EVERY {
            self.last_note = Instant::now();
            tracing::info!("{}", progress_line(&self.name, self.rows, self.estimate, self.started.elapsed()));
        }
    }

    /// Every row of the table was handed over.
    fn done(self, metrics: &Metrics) {
        tracing::info!("{}", progress_line(&self.name, self.rows, self.rows, self.started.elapsed()));
        metrics.snapshot_done(&self.name);
    }
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
