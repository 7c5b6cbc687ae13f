//! Online copies: tables copied chunk by chunk while streaming goes on, with no lock and no pause.
//!
//! Invariants:
//! - Each chunk is read in its own consistent-snapshot transaction, whose binlog position `P` is exactly
//!   the state it reflects (MariaDB `binlog_snapshot_file/position`). The chunk enters the stream as if
//!   it were a transaction committed at `P`: after every transaction committed at or before `P`, before
//!   any later one ([`OnlineCopies::due_before`], [`OnlineCopies::due_at`]). So no sink ever receives an
//!   older row image after a newer change, and a row changed while its range waits for its chunk is
//!   overwritten by the chunk with a state at least as new.
//! - A chunk is read only at a transaction boundary of the stream, so `P` is never before what was
//!   already handed over: the stream's last position ≤ `P`.
//! - At most one chunk is in memory: the next one is read once the previous one is handed over.
//! - No transaction stays open between chunks: its metadata lock would make an ALTER TABLE wait, and
//!   every writer of the table wait behind the ALTER.
//! - What the checkpoints say ([`OnlineCopies::checkpoint_at`]) is the progress handed over, never the
//!   progress of a chunk still waiting: a sink that stores it holds every chunk up to its key.
//! - A repair ([`crate::control`]) is read the same way (its keys, in a consistent snapshot) and enters
//!   the stream at its position; repairs go before the next chunk.
//! - A chunk whose table vanished or changed shape under it (its DDL not streamed yet) is thrown away
//!   and read again once the stream has passed its position, by when the DDL has re-planned the copy.

use crate::error::Result;
use crate::metrics::Metrics;
use polyrepl_core::{Batch, Change, Checkpoint, Op, Position, TableCopy, TableId, TableSchema, Value};
use polyrepl_mysql::snapshot::Snapshot;
use polyrepl_mysql::source_url::SourceUrl;
use polyrepl_mysql::{SourceError, SourceReader};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Rows read at `position`, waiting for the stream to get there.
struct Chunk {
    table: TableId,
    position: Position,
    changes: Vec<Change>,
    kind: ChunkKind,
}

enum ChunkKind {
    /// A copy's chunk, and the copy's progress once it is applied (`None`: the table is done).
    Copy { after: Option<Vec<Value>> },
    /// Rows a repair asked for ([`crate::control::Request::Repair`]).
    Repair,
}

/// A repair waiting to be read.
struct Repair {
    table: Arc<TableSchema>,
    keys: Vec<Vec<Value>>,
    reply: oneshot::Sender<Result<Vec<bool>, String>>,
}

/// The online copies of one run, and the tables they can copy.
pub struct OnlineCopies {
    url: SourceUrl,
    chunk_rows: usize,
    /// Every selected table the run knows, by id (kept up to date by schema changes).
    pub schemas: HashMap<TableId, Arc<TableSchema>>,
    /// Copies in progress, in order, with the progress handed over so far.
    copies: Vec<TableCopy>,
    /// The selection spec recorded in every checkpoint.
    selection: String,
    /// The connection chunks are read on, opened on first use.
    snapshot: Option<Snapshot>,
    pending: Option<Chunk>,
    /// No chunk is read until the stream has passed this position (see the module invariants).
    paused_until: Option<Position>,
    /// Repairs to read, before any further chunk.
    repairs: VecDeque<Repair>,
    /// The connection repairs read keys on, opened on first use.
    keys_reader: Option<SourceReader>,
}

impl OnlineCopies {
    pub fn new(
        url: &SourceUrl,
        chunk_rows: usize,
        tables: &[Arc<TableSchema>],
        copies: Vec<TableCopy>,
        selection: String,
    ) -> Self {
        OnlineCopies {
            url: url.clone(),
            chunk_rows: chunk_rows.max(1),
            schemas: tables.iter().map(|t| (t.id.clone(), t.clone())).collect(),
            copies,
            selection,
            snapshot: None,
            pending: None,
            paused_until: None,
            repairs: VecDeque::new(),
            keys_reader: None,
        }
    }

    /// The checkpoint that is true once everything up to `position` is applied.
    pub fn checkpoint_at(&self, position: Position) -> Checkpoint {
        Checkpoint {
            position,
            snapshot: None,
            copies: self.copies.clone(),
            selection: Some(self.selection.clone()),
            resume: None,
        }
    }

    /// True while some table is being copied or rows wait to be repaired.
    pub fn busy(&self) -> bool {
        !self.copies.is_empty() || !self.repairs.is_empty() || self.pending.is_some()
    }

    /// Queues a repair of `keys` of `table`; the answer goes to `reply` once the rows are read. An error
    /// answer at once when the run does not replicate the table.
    pub fn queue_repair(
        &mut self,
        table: &TableId,
        keys: Vec<Vec<Value>>,
        reply: oneshot::Sender<Result<Vec<bool>, String>>,
    ) {
        match self.schemas.get(table) {
            Some(schema) => self.repairs.push_back(Repair { table: schema.clone(), keys, reply }),
            None => {
                let _ = reply.send(Err(format!("not replicated by this pipeline: {table}")));
            }
        }
    }

    /// The position the stream must reach before the next step of the copies: the waiting chunk's, or
    /// the one a paused copy waits for.
    pub fn waiting_at(&self) -> Option<&Position> {
        self.pending.as_ref().map(|c| &c.position).or(self.paused_until.as_ref())
    }

    /// Copies `table` from its first row (again, if it was being copied), after the copies already
    /// planned. A waiting chunk of it is thrown away: it may predate the change that re-plans the copy.
    pub fn restart(&mut self, table: Arc<TableSchema>) {
        self.forget(&table.id);
        self.copies.push(TableCopy { table: table.id.clone(), after: None });
        self.schemas.insert(table.id.clone(), table);
    }

    /// Copies a known table again in place (no drop first), unless it is being copied; `false` when the
    /// run does not replicate it.
    pub fn copy_again(&mut self, table: &TableId) -> bool {
        if !self.schemas.contains_key(table) {
            return false;
        }
        if !self.copies.iter().any(|c| &c.table == table) {
            self.copies.push(TableCopy { table: table.clone(), after: None });
        }
        true
    }

    /// Stops copying `table` and forgets it (it was dropped or renamed away).
    pub fn forget(&mut self, table: &TableId) {
        self.copies.retain(|c| &c.table != table);
        if self.pending.as_ref().is_some_and(|c| &c.table == table) {
            self.pending = None;
        }
        self.paused_until = None;
    }

    /// The waiting chunk, when something at `next` is about to be handed over and the chunk comes first
    /// (its position is before `next`); `handed` is the last position handed over.
    pub fn due_before(&mut self, next: &Position, handed: &Position, metrics: &Metrics) -> Option<Batch> {
        if self.pending.as_ref().is_some_and(|c| c.position < *next) {
            return self.hand_over(None, handed, metrics);
        }
        None
    }

    /// The waiting chunk, once everything up to `streamed` is handed over and the chunk is not later;
    /// `handed` is the last position handed over.
    pub fn due_at(&mut self, streamed: &Position, handed: &Position, metrics: &Metrics) -> Option<Batch> {
        if self.pending.as_ref().is_some_and(|c| c.position <= *streamed) {
            return self.hand_over(Some(streamed), handed, metrics);
        }
        None
    }

    /// The waiting chunk as a batch at its position, its progress now in the checkpoints.
    ///
    /// The chunk's position has no GTID state ([`Snapshot::renew`]). The stream's position, when it is
    /// the same point, gives it one; else the last position handed over (`handed`) does: every
    /// transaction on a replicated table before the chunk was handed over before it, so that state
    /// orders the chunk after all of them and before every later one — positions order by GTID, and
    /// Cassandra's write timestamps come from it, so a chunk without one would sort below every
    /// streamed write. Its rows get the same position.
    fn hand_over(&mut self, streamed: Option<&Position>, handed: &Position, metrics: &Metrics) -> Option<Batch> {
        let mut chunk = self.pending.take()?;
        if let Some(at) = streamed.filter(|at| at.file == chunk.position.file && at.offset == chunk.position.offset) {
            chunk.position = at.clone();
        }
        if chunk.position.gtid.is_none() && handed.gtid_ordinal().is_some() {
            chunk.position.gtid = handed.gtid.clone();
        }
        for change in &mut chunk.changes {
            change.position = chunk.position.clone();
        }
        if let ChunkKind::Copy { after } = chunk.kind {
            let copy = self.copies.iter_mut().find(|c| c.table == chunk.table)?;
            metrics.source.snapshot_rows.fetch_add(chunk.changes.len() as u64, Relaxed);
            metrics.copy_progress(&chunk.table.to_string(), chunk.changes.len() as u64);
            match after {
                Some(key) => copy.after = Some(key),
                None => {
                    tracing::info!(table = %chunk.table, "online copy complete");
                    metrics.copy_done(&chunk.table.to_string());
                    self.copies.retain(|c| c.table != chunk.table);
                }
            }
        }
        let checkpoint = self.checkpoint_at(chunk.position);
        Some(Batch::new(chunk.changes, checkpoint))
    }

    /// A table's current schema as the server describes it (`None`: it does not exist).
    pub async fn discover(&mut self, id: &TableId) -> Result<Option<Arc<TableSchema>>> {
        let snapshot = self.connection().await?;
        Ok(snapshot.discover(id).await?.map(Arc::new))
    }

    /// The chunk connection, opened on first use.
    async fn connection(&mut self) -> Result<&mut Snapshot> {
        if self.snapshot.is_none() {
            self.snapshot = Some(Snapshot::for_chunks(&self.url, self.chunk_rows).await?);
        }
        Ok(self.snapshot.as_mut().expect("opened above"))
    }

    /// Reads the next chunk of the first copy (or a repair's rows), once the stream has handed over
    /// everything up to `streamed` and no chunk waits. Returns the position the stream must reach next
    /// (where the rows read wait, or where a paused copy tries again), or `None` when there is nothing
    /// to read now.
    pub async fn read_next(&mut self, streamed: &Position) -> Result<Option<Position>> {
        if self.pending.is_some() {
            return Ok(None);
        }
        if let Some(repair) = self.repairs.pop_front() {
            return self.read_repair(repair).await;
        }
        if self.copies.is_empty() {
            return Ok(None);
        }
        if self.paused_until.as_ref().is_some_and(|p| streamed < p) {
            return Ok(None);
        }
        let copy = self.copies[0].clone();
        let Some(schema) = self.schemas.get(&copy.table).cloned() else {
            // A copy of a table the run no longer knows (dropped while nobody streamed): nothing to copy.
            self.copies.remove(0);
            return Ok(None);
        };
        let snapshot = self.connection().await?;
        snapshot.renew().await?;
        let position = snapshot.position().clone();
        let read = snapshot.read_chunk(&schema, copy.after.as_deref()).await;
        snapshot.end_transaction().await?;
        let changes = match read {
            Ok(changes) => changes,
            // Once only: a second failure after the stream passed the first one's position is real.
            Err(e) if table_changed_under_us(&e) && self.paused_until.is_none() => {
                tracing::debug!(table = %copy.table, error = %e, %streamed, %position, "online copy waits for the stream to pass a schema change");
                self.paused_until = Some(position.clone());
                return Ok(Some(position));
            }
            Err(e) => return Err(e.into()),
        };
        self.paused_until = None;
        let after = if changes.len() < self.chunk_rows { None } else { changes.last().map(|c| c.key.clone()) };
        self.pending =
            Some(Chunk { table: copy.table, position: position.clone(), changes, kind: ChunkKind::Copy { after } });
        Ok(Some(position))
    }

    /// Reads a repair's rows in a consistent snapshot; they wait at its position like a chunk. A failed
    /// read is the requester's error, not the run's.
    async fn read_repair(&mut self, repair: Repair) -> Result<Option<Position>> {
        let Repair { table, keys, reply } = repair;
        let reader = match self.keys_reader.as_mut() {
            Some(reader) => reader,
            None => self.keys_reader.insert(SourceReader::connect(&self.url).await?),
        };
        let (position, rows) = match reader.read_keys_at(&[(&*table, keys.clone())]).await {
            Ok((position, mut rows)) => (position, rows.pop().unwrap_or_default()),
            Err(e) => {
                let _ = reply.send(Err(format!("reading the rows to repair from the source: {e}")));
                return Ok(None);
            }
        };
        let present: Vec<bool> = rows.iter().map(Option::is_some).collect();
        let changes = keys
            .into_iter()
            .zip(rows)
            .enumerate()
            .map(|(seq, (key, row))| Change {
                position: position.clone(),
                seq: seq as u32,
                table: table.clone(),
                op: if row.is_some() { Op::Update } else { Op::Delete },
                key,
                after: row,
                source_ts: 0,
            })
            .collect();
        tracing::info!(table = %table.id, rows = present.len(), %position, "repair read: its rows enter the stream there");
        let _ = reply.send(Ok(present));
        self.pending =
            Some(Chunk { table: table.id.clone(), position: position.clone(), changes, kind: ChunkKind::Repair });
        Ok(Some(position))
    }

    /// Closes the connections; repairs not read yet are answered with an error.
    pub async fn close(self) {
        if let Some(s) = self.snapshot {
            let _ = s.finish().await;
        }
        if let Some(reader) = self.keys_reader {
            reader.close().await;
        }
        for repair in self.repairs {
            let _ = repair.reply.send(Err("the pipeline stopped before reading the rows".into()));
        }
    }
}

/// A chunk read failed because its table was dropped, renamed or altered since the copy was planned.
fn table_changed_under_us(e: &SourceError) -> bool {
    // 1146 no such table, 1054 unknown column, 1412 table definition changed since the snapshot began.
    [1146, 1054, 1412].iter().any(|code| e.server_code() == Some(*code))
}
