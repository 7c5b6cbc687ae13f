//! An in-memory [`Sink`] with fault injection, for testing what drives sinks (the engine's pipeline)
//! without a database: fail the Nth apply transiently or definitely, stall, run slowly, or "die" after
//! writing the data but before the checkpoint.
//!
//! Invariants:
//! - Applying a batch writes its changes in order (last write per key wins) and then the checkpoint,
//!   like a real sink; a replayed batch has the effect of applying it once.
//! - The state lives behind a [`MemoryHandle`] that outlives the sink: a test reopens a sink on the same
//!   state ([`MemoryHandle::reopen`]) to play a restart, and reads rows, checkpoints and the log of
//!   applies while the pipeline owns the sink.
//! - A text or binary value longer than [`MemoryHandle::set_max_value_bytes`] (default: no limit) is a
//!   row the sink cannot hold, treated as the sink's [`RowPolicy`] says, like a real sink's limit.

use crate::collapse::check_change;
use crate::lease::{Lease, LeaseRequest};
use crate::rowhash::row_bytes;
use crate::unmappable::{DeadLetter, RowPolicy, Unmappable};
use crate::{Batch, Change, Checkpoint, Op, Row, Sink, SinkError, StagedBatch, TableId, TableSchema, Value};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the Nth apply does instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with a transient error, writing nothing.
    Transient,
    /// Fails with a definite error, writing nothing.
    Definite,
    /// Writes the batch's changes but not its checkpoint, then fails transiently: a crash between
    /// the data and the checkpoint.
    DieAfterData,
}

/// One successful apply, as the sink saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub checkpoint: Checkpoint,
    pub changes: usize,
}

/// The rows of one table: canonical key bytes → (key, row).
type Rows = BTreeMap<Vec<u8>, (Vec<Value>, Row)>;

#[derive(Debug, Default)]
struct State {
    tables: HashMap<TableId, Rows>,
    prepared: Vec<TableId>,
    checkpoints: HashMap<String, Checkpoint>,
    applied: Vec<Applied>,
    /// Apply calls so far (successful or not).
    calls: u64,
    /// Batches staged ([`Sink::stage`]), sent or not.
    staged: u64,
    /// Faults by 1-based apply call number.
    faults: HashMap<u64, Fault>,
    /// Time each apply takes.
    delay: Duration,
    merges: bool,
    /// Leases by table: (owner, holder, expiry).
    leases: HashMap<TableId, (String, String, Instant)>,
    /// Dead letters by (pipeline, id).
    dead_letters: BTreeMap<(String, String), DeadLetter>,
    /// Longest text or binary value the sink holds.
    max_value_bytes: Option<usize>,
}

/// The shared state of a memory sink, its faults and its records.
#[derive(Clone)]
pub struct MemoryHandle {
    name: String,
    /// The pipeline whose checkpoint this sink stores (real sinks are opened for one pipeline too).
    pipeline: String,
    state: Arc<Mutex<State>>,
    paused: watch::Sender<bool>,
}

/// A sink that keeps its tables in memory.
pub struct MemorySink {
    handle: MemoryHandle,
    paused: watch::Receiver<bool>,
    policy: RowPolicy,
}

impl MemorySink {
    /// A new, empty sink named `name` for the pipeline `pipeline` (merging waiting batches allowed),
    /// and its handle.
    pub fn new(name: &str, pipeline: &str) -> (MemorySink, MemoryHandle) {
        let state = State { merges: true, ..State::default() };
        let (paused, _) = watch::channel(false);
        let handle =
            MemoryHandle { name: name.into(), pipeline: pipeline.into(), state: Arc::new(Mutex::new(state)), paused };
        (handle.reopen(), handle)
    }
}

impl MemoryHandle {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory sink state")
    }

    /// A new sink on the same state: what a restarted process would open.
    pub fn reopen(&self) -> MemorySink {
        self.reopen_with(RowPolicy::default())
    }

    /// [`MemoryHandle::reopen`] with a row policy.
    pub fn reopen_with(&self, policy: RowPolicy) -> MemorySink {
        MemorySink { handle: self.clone(), paused: self.paused.subscribe(), policy }
    }

    /// Text and binary values longer than `bytes` cannot be held (see the module notes).
    pub fn set_max_value_bytes(&self, bytes: usize) {
        self.state().max_value_bytes = Some(bytes);
    }

    /// Makes apply call number `n` (1-based, counting every call so far) fail with `fault`.
    pub fn fail_call(&self, n: u64, fault: Fault) {
        self.state().faults.insert(n, fault);
    }

    /// Makes the next apply call fail with `fault`.
    pub fn fail_next(&self, fault: Fault) {
        let mut s = self.state();
        let n = s.calls + 1;
        s.faults.insert(n, fault);
    }

    /// Every apply takes `delay` (a slow sink).
    pub fn set_delay(&self, delay: Duration) {
        self.state().delay = delay;
    }

    /// Whether the pipeline may merge waiting batches for this sink.
    pub fn set_merges(&self, merges: bool) {
        self.state().merges = merges;
    }

    /// Stalls every apply (before it writes anything) until [`MemoryHandle::resume`].
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Lets stalled applies go on.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Apply calls (sends of a staged batch) so far, successful or not.
    pub fn calls(&self) -> u64 {
        self.state().calls
    }

    /// Batches staged so far, sent or not.
    pub fn staged(&self) -> u64 {
        self.state().staged
    }

    /// Every successful apply, in order.
    pub fn applied(&self) -> Vec<Applied> {
        self.state().applied.clone()
    }

    /// The checkpoint stored for the sink's pipeline.
    pub fn checkpoint(&self) -> Option<Checkpoint> {
        self.state().checkpoints.get(&self.pipeline).cloned()
    }

    /// Stores a checkpoint for the sink's pipeline, as if an earlier run had.
    pub fn set_checkpoint(&self, checkpoint: Checkpoint) {
        let pipeline = self.pipeline.clone();
        self.state().checkpoints.insert(pipeline, checkpoint);
    }

    /// The rows of `table`, in canonical key order.
    pub fn rows(&self, table: &TableId) -> Vec<Row> {
        self.state().tables.get(table).map(|t| t.values().map(|(_, row)| row.clone()).collect()).unwrap_or_default()
    }

    /// The tables `prepare` was called with, in order (repeats kept).
    pub fn prepared(&self) -> Vec<TableId> {
        self.state().prepared.clone()
    }
}

/// The changes of `batch` whose row image (the last of its key in the batch) holds a value longer
/// than `max`.
fn unmappable(batch: &Batch, max: Option<usize>) -> Vec<Unmappable<'_>> {
    let Some(max) = max else { return Vec::new() };
    let mut last: HashMap<(&TableId, Vec<u8>), &Change> = HashMap::new();
    let mut order = Vec::new();
    for change in &batch.changes {
        let id = (&change.table.id, row_bytes(&change.key));
        if last.insert(id.clone(), change).is_none() {
            order.push(id);
        }
    }
    order
        .into_iter()
        .filter_map(|id| {
            let change = last[&id];
            let longest = change
                .after
                .iter()
                .flatten()
                .map(|v| match v {
                    Value::String(s) => s.len(),
                    Value::Bytes(b) => b.len(),
                    _ => 0,
                })
                .max()?;
            (change.op != Op::Delete && longest > max).then(|| Unmappable {
                change,
                reason: format!("a value of {longest} bytes, over this memory sink's {max}-byte limit"),
                remove_key: true,
            })
        })
        .collect()
}

/// Writes the batch's changes in order, after checking every change's shape (nothing is written when
/// one is malformed, as a real sink refuses the whole batch); the keys of `left_out` are deleted
/// instead of written.
fn write_changes(state: &mut State, batch: &Batch, left_out: &[Unmappable]) -> Result<(), String> {
    batch.changes.iter().try_for_each(check_change)?;
    for change in &batch.changes {
        let rows = state.tables.entry(change.table.id.clone()).or_default();
        let key = row_bytes(&change.key);
        match (change.op, &change.after) {
            (Op::Delete, _) => {
                rows.remove(&key);
            }
            (_, Some(row)) => {
                rows.insert(key, (change.key.clone(), row.clone()));
            }
            (op, None) => return Err(format!("table {}: a {op:?} change carries no row image", change.table.id)),
        }
    }
    for row in left_out {
        if let Some(rows) = state.tables.get_mut(&row.change.table.id) {
            rows.remove(&row_bytes(&row.change.key));
        }
    }
    Ok(())
}

/// A batch staged by the memory sink: written when sent (after a pause, a delay or a fault, as asked).
struct MemoryStaged {
    handle: MemoryHandle,
    paused: watch::Receiver<bool>,
    policy: RowPolicy,
    batch: Batch,
}

#[async_trait]
impl StagedBatch for MemoryStaged {
    async fn send(self: Box<Self>) -> Result<(), SinkError> {
        let MemoryStaged { handle, mut paused, policy, batch } = *self;
        let (fault, delay) = {
            let mut s = handle.state();
            s.calls += 1;
            let call = s.calls;
            (s.faults.remove(&call), s.delay)
        };
        let _ = paused.wait_for(|p| !p).await;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let sink = handle.name.clone();
        let mut s = handle.state();
        let left_out = unmappable(&batch, s.max_value_bytes);
        match fault {
            Some(Fault::Transient) => {
                return Err(SinkError::Transient { sink, message: "injected transient fault".into() })
            }
            Some(Fault::Definite) => {
                return Err(SinkError::Definite { sink, message: "injected definite fault".into() })
            }
            Some(Fault::DieAfterData) => {
                write_changes(&mut s, &batch, &left_out)
                    .map_err(|message| SinkError::Definite { sink: sink.clone(), message })?;
                return Err(SinkError::Transient {
                    sink,
                    message: "injected death after the data, before the checkpoint".into(),
                });
            }
            None => {}
        }
        write_changes(&mut s, &batch, &left_out)
            .map_err(|message| SinkError::Definite { sink: sink.clone(), message })?;
        for letter in policy.dead_letters(&sink, &handle.pipeline, &left_out) {
            s.dead_letters.insert((letter.pipeline.clone(), letter.id()), letter);
        }
        s.checkpoints.insert(handle.pipeline.clone(), batch.checkpoint.clone());
        s.applied.push(Applied { checkpoint: batch.checkpoint.clone(), changes: batch.changes.len() });
        drop(s);
        policy.record(&sink, &left_out);
        Ok(())
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.handle.name
    }

    async fn prepare(&mut self, tables: &[Arc<TableSchema>]) -> Result<(), SinkError> {
        let mut s = self.handle.state();
        for t in tables {
            s.prepared.push(t.id.clone());
            s.tables.entry(t.id.clone()).or_default();
        }
        Ok(())
    }

    async fn stage(&mut self, batch: &Batch) -> Result<Box<dyn StagedBatch>, SinkError> {
        // Rows are checked against the policy when staged, as real sinks do before anything is
        // written; a call is counted (and its fault picked) when the batch is sent.
        let max_value_bytes = {
            let mut s = self.handle.state();
            s.staged += 1;
            s.max_value_bytes
        };
        self.policy.check(&self.handle.name, &unmappable(batch, max_value_bytes), "the memory sink's dead letters")?;
        Ok(Box::new(MemoryStaged {
            handle: self.handle.clone(),
            paused: self.paused.clone(),
            policy: self.policy.clone(),
            batch: batch.clone(),
        }))
    }

    fn merges_waiting_batches(&self) -> bool {
        self.handle.state().merges
    }

    async fn load_checkpoint(&mut self, pipeline: &str) -> Result<Option<Checkpoint>, SinkError> {
        Ok(self.handle.state().checkpoints.get(pipeline).cloned())
    }

    async fn read_rows(&mut self, table: &TableSchema, keys: &[Vec<Value>]) -> Result<Vec<Option<Row>>, SinkError> {
        let s = self.handle.state();
        let rows = s.tables.get(&table.id);
        Ok(keys.iter().map(|k| rows.and_then(|r| r.get(&row_bytes(k))).map(|(_, row)| row.clone())).collect())
    }

    async fn truncate_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        if let Some(rows) = self.handle.state().tables.get_mut(&table.id) {
            rows.clear();
        }
        Ok(())
    }

    async fn drop_table(&mut self, table: &TableSchema) -> Result<(), SinkError> {
        self.handle.state().tables.remove(&table.id);
        Ok(())
    }

    async fn scan_keys(
        &mut self,
        table: &TableSchema,
        cursor: Option<Vec<u8>>,
        limit: usize,
    ) -> Result<(Vec<Vec<Value>>, Option<Vec<u8>>), SinkError> {
        let s = self.handle.state();
        let Some(rows) = s.tables.get(&table.id) else { return Ok((vec![], None)) };
        let from = match cursor {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let limit = limit.max(1);
        let page: Vec<(&Vec<u8>, &(Vec<Value>, Row))> = rows.range((from, Bound::Unbounded)).take(limit).collect();
        let next = if page.len() == limit { page.last().map(|(k, _)| (*k).clone()) } else { None };
        Ok((page.into_iter().map(|(_, (key, _))| key.clone()).collect(), next))
    }

    async fn acquire_leases(
        &mut self,
        tables: &[Arc<TableSchema>],
        request: &LeaseRequest,
    ) -> Result<Vec<Lease>, SinkError> {
        let mut s = self.handle.state();
        let now = Instant::now();
        let mut refused = Vec::new();
        for table in tables {
            match s.leases.get(&table.id) {
                Some((owner, holder, expires)) if *expires > now && *owner != request.owner && !request.take_over => {
                    refused.push(Lease {
                        table: table.id.clone(),
                        owner: owner.clone(),
                        holder: holder.clone(),
                        expires_in: *expires - now,
                    });
                }
                _ => {
                    s.leases
                        .insert(table.id.clone(), (request.owner.clone(), request.holder.clone(), now + request.ttl));
                }
            }
        }
        Ok(refused)
    }

    async fn release_leases(&mut self, tables: &[Arc<TableSchema>], owner: &str) -> Result<(), SinkError> {
        let mut s = self.handle.state();
        for table in tables {
            if s.leases.get(&table.id).is_some_and(|(o, _, _)| o == owner) {
                s.leases.remove(&table.id);
            }
        }
        Ok(())
    }

    async fn read_leases(&mut self, tables: &[Arc<TableSchema>]) -> Result<Vec<Lease>, SinkError> {
        let s = self.handle.state();
        let now = Instant::now();
        Ok(tables
            .iter()
            .filter_map(|t| {
                let (owner, holder, expires) = s.leases.get(&t.id)?;
                (*expires > now).then(|| Lease {
                    table: t.id.clone(),
                    owner: owner.clone(),
                    holder: holder.clone(),
                    expires_in: *expires - now,
                })
            })
            .collect())
    }

    fn row_policy(&self) -> &RowPolicy {
        &self.policy
    }

    async fn read_dead_letters(&mut self, pipeline: &str) -> Result<Vec<DeadLetter>, SinkError> {
        let s = self.handle.state();
        Ok(s.dead_letters.iter().filter(|((p, _), _)| p == pipeline).map(|(_, l)| l.clone()).collect())
    }
}
