//! The initial snapshot read on several connections at once (`--snapshot-parallelism N`, N ≥ 2).
//!
//! Invariants:
//! - Key ranges: a planner walks each table's primary key on the first snapshot's connection
//!   ([`Snapshot::next_boundary`]: the key `chunk_rows` rows further on), cutting every table not yet
//!   copied into ranges `(after, upto]` that cover its key space once, with no gap and no overlap,
//!   whatever state the boundaries were read in; a table's last range is open-ended, so a table with
//!   fewer than `chunk_rows` rows is one range. A boundary is a key tuple compared by the server (its
//!   collations, its row comparison for composite keys), exactly as the reads compare it, so every
//!   key type works.
//! - Readers: N connections, each in a consistent-snapshot transaction of its own
//!   ([`Snapshot::alongside`]) opened right after the first snapshot's, so at a position `Pi` at or
//!   after its position `P0`, and kept until the copy ends. A range is read on one reader, in chunks
//!   of at most `chunk_rows` rows (keyset pagination bounded above by the range's end).
//! - Convergence: every row carries `P0` (on a resumed copy, the first snapshot's position), from
//!   which streaming starts, although its reader saw the state at `Pi ≥ P0`. Streaming from `P0`
//!   replays every change after it, in order, each a whole row image or a delete, so every row ends
//!   at the source's state: the argument that makes a resumed snapshot converge (rows read later,
//!   under the first position). Until the stream has passed the largest `Pi`, a sink may show a row
//!   in an older state than one it already held (a replayed change the copy had already seen);
//!   a snapshot is not consistent before the stream catches up in any case. Cassandra: every change
//!   streamed after `P0` has a later write timestamp than the copied rows, so it wins over them.
//! - Order: ranges are handed to the pipeline in key order, table after table, as the sequential copy
//!   hands its chunks over; so a checkpoint's progress keeps its meaning (tables done + last key of
//!   the current table) and a crash resumes after what every sink holds
//!   ([`crate::checkpoints::snapshot_resume_point`]) with or without parallelism.
//! - Memory: at most 2N ranges are planned and not yet handed over (N being read, N read and waiting
//!   for one before them). A range holds about `chunk_rows` rows: more only by the rows inserted into
//!   it between the planner's snapshot and its reader's, opened milliseconds apart.
//! - Why walk the key one range ahead rather than cut a whole table first (one pass over its key, or
//!   `OFFSET k·chunk_rows` per boundary): the first delays every read by a full scan and holds every
//!   boundary, the second costs a quadratic scan; a boundary one range ahead costs the server a skip
//!   over `chunk_rows` key entries, sends one key, and runs while the readers read. Ranges of the
//!   next table are planned while the last ones of a table are read, so tables are read at once too.
//! - Why parallelism 1 keeps the one-transaction copy: with one reader the planner's walk is pure
//!   cost, and that copy reads every row at `P0` exactly.

use super::TableCount;
use crate::error::{EngineError, Result};
use crate::metrics::Metrics;
use polyrepl_core::{Batch, Change, Checkpoint, Position, SnapshotProgress, TableSchema, Value};
use polyrepl_mysql::snapshot::Snapshot;
use polyrepl_mysql::source_url::SourceUrl;
use polyrepl_mysql::SourceError;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

/// Opens `n` readers, each in a consistent snapshot of its own; call right after the first snapshot
/// opened, so that their positions are at or after its position and as close to it as can be.
pub async fn open_readers(url: &SourceUrl, chunk_rows: usize, n: usize) -> Result<Vec<Snapshot>> {
    let readers = futures::future::try_join_all((0..n).map(|_| Snapshot::alongside(url, chunk_rows))).await?;
    for (i, reader) in readers.iter().enumerate() {
        tracing::debug!(reader = i, position = %reader.position(), "parallel snapshot reader opened");
    }
    Ok(readers)
}

/// Rows of one table with a key after `after` (from the first row when `None`), up to `upto`
/// included (to the last row when `None`: the table's last range).
#[derive(Debug, Clone, PartialEq)]
pub struct Range {
    pub table: Arc<TableSchema>,
    pub after: Option<Vec<Value>>,
    pub upto: Option<Vec<Value>>,
}

/// A range as read: its rows in chunks of at most `chunk_rows`, in key order (none when it is empty).
struct RangeRead {
    range: Range,
    chunks: Vec<Vec<Change>>,
}

/// The readers not reading now; `free` counts them.
struct Readers {
    idle: Mutex<Vec<Snapshot>>,
    free: Semaphore,
}

/// A spawned task aborted when dropped (on an error or shutdown, nothing is left reading).
struct Task<T>(JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Copies `tables` (those `progress` does not list as done, the current one from its last key) with
/// `readers`, ranges planned on `planner` (the first snapshot, finished here), every batch at
/// `position` with its progress; returns false when shut down or when the pipeline is gone.
#[allow(clippy::too_many_arguments)]
pub async fn copy(
    mut planner: Snapshot,
    readers: Vec<Snapshot>,
    tables: &[Arc<TableSchema>],
    position: &Position,
    progress: &mut SnapshotProgress,
    chunk_rows: usize,
    tx: &mpsc::Sender<Batch>,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> Result<bool> {
    let n = readers.len().max(1);
    let mut todo = Vec::new();
    for table in tables.iter().filter(|t| !progress.done.contains(&t.id)) {
        let resume = match &progress.current {
            Some((id, key)) if id == &table.id => Some(key.clone()),
            _ => None,
        };
        let estimate = planner.estimated_rows(table).await.unwrap_or(0);
        todo.push((table.clone(), resume, estimate));
    }
    let estimates: Vec<u64> = todo.iter().map(|(_, _, e)| *e).collect();
    let (plan_tx, mut planned) = mpsc::channel(n);
    let _planning = Task(tokio::spawn(plan(planner, todo.into_iter().map(|(t, r, _)| (t, r)).collect(), plan_tx)));
    let pool = Arc::new(Readers { free: Semaphore::new(readers.len()), idle: Mutex::new(readers) });
    let mut reading: VecDeque<Task<std::result::Result<RangeRead, SourceError>>> = VecDeque::new();
    let (mut planned_all, mut table_index) = (false, 0usize);
    let mut count: Option<TableCount> = None;
    loop {
        if *shutdown.borrow() {
            return Ok(false);
        }
        if planned_all && reading.is_empty() {
            break;
        }
        let room = reading.len() < 2 * n;
        tokio::select! {
            next = planned.recv(), if room && !planned_all => match next {
                Some(range) => {
                    let range = range?;
                    reading.push_back(Task(tokio::spawn(read(pool.clone(), range, chunk_rows, position.clone()))));
                }
                None => planned_all = true,
            },
            read = async {
                match reading.front_mut() {
                    Some(task) => (&mut task.0).await,
                    None => std::future::pending().await,
                }
            } => {
                reading.pop_front();
                let read = read.map_err(|e| EngineError::Internal(format!("a snapshot reader failed: {e}")))??;
                let table = read.range.table.clone();
                if count.as_ref().is_none_or(|c| c.id != table.id) {
                    count = Some(TableCount::start(&table, estimates.get(table_index).copied().unwrap_or(0), metrics));
                    table_index += 1;
                }
                let counted = count.as_mut().expect("set above");
                for chunk in read.chunks {
                    let rows = chunk.len();
                    let last_key = chunk.last().map(|c| c.key.clone()).unwrap_or_default();
                    progress.current = Some((table.id.clone(), last_key));
                    let checkpoint = Checkpoint::snapshotting(position.clone(), progress.clone());
                    if tx.send(Batch::new(chunk, checkpoint)).await.is_err() {
                        return Ok(false);
                    }
                    counted.chunk(rows, metrics);
                }
                if read.range.upto.is_none() {
                    count.take().expect("set above").done(metrics);
                    progress.done.push(table.id.clone());
                    progress.current = None;
                }
            }
        }
    }
    let readers = std::mem::take(&mut *pool.idle.lock().unwrap());
    for reader in readers {
        reader.finish().await?;
    }
    Ok(true)
}

/// Sends the ranges of every table of `tables` (each after its resume key, if any) to `out`, in key
/// order, table after table; then finishes `snapshot`. An error is sent as the last item.
async fn plan(
    mut snapshot: Snapshot,
    tables: Vec<(Arc<TableSchema>, Option<Vec<Value>>)>,
    out: mpsc::Sender<std::result::Result<Range, SourceError>>,
) {
    let planned = async {
        for (table, resume) in tables {
            let mut after = resume;
            loop {
                let upto = snapshot.next_boundary(&table, after.as_deref()).await?;
                let last = upto.is_none();
                let range = Range { table: table.clone(), after: after.take(), upto: upto.clone() };
                if out.send(Ok(range)).await.is_err() {
                    return Ok(()); // the copy stopped
                }
                if last {
                    break;
                }
                after = upto;
            }
        }
        snapshot.finish().await
    };
    if let Err(e) = planned.await {
        let _ = out.send(Err(e)).await;
    }
}

/// Reads `range` on an idle reader, in chunks of at most `chunk_rows` rows, every row at `position`.
async fn read(
    pool: Arc<Readers>,
    range: Range,
    chunk_rows: usize,
    position: Position,
) -> std::result::Result<RangeRead, SourceError> {
    let _permit = pool.free.acquire().await.expect("the semaphore is never closed");
    let mut reader = pool.idle.lock().unwrap().pop().expect("a permit means an idle reader");
    let mut chunks = Vec::new();
    let mut after = range.after.clone();
    let read = loop {
        match reader.read_range(&range.table, after.as_deref(), range.upto.as_deref(), &position).await {
            Err(e) => break Err(e),
            Ok(chunk) => {
                let full = chunk.len() >= chunk_rows;
                if let Some(last) = chunk.last() {
                    after = Some(last.key.clone());
                    chunks.push(chunk);
                }
                if !full {
                    break Ok(());
                }
            }
        }
    };
    pool.idle.lock().unwrap().push(reader);
    read.map(|()| RangeRead { range, chunks })
}
