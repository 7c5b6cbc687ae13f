//! The pipeline: committed transactions in, batches out to every sink, each at its own pace.
//!
//! Invariants:
//! - What the source sends is a [`Batch`] of one transaction (or one snapshot chunk) with the checkpoint
//!   that is true once it is applied; the batcher joins whole ones, so a batch's checkpoint never points
//!   inside a transaction.
//! - Every sink sees every batch in source order; each sink has a queue bounded by a number of changes
//!   (`queue_changes`) and by an estimate of their bytes in memory (`queue_bytes`): memory stays
//!   bounded whatever the row size. A sink whose queue is full while another sink keeps up gets the
//!   batches it has no room for through its spill file on disk ([`crate::spill`], up to
//!   `spill_bytes`), so a slow sink never holds the others back. When every sink is behind (the source
//!   is faster than all of them), and for the initial snapshot's batches, the batcher — and so the
//!   source reader — waits instead.
//! - A batch closes by count, by bytes or by time, whichever comes first (`max_batch_*`) — or, when
//!   every sink is idle, with what is already waiting: filling it would only delay it (at 5,000 changes/s
//!   the lag p50 was 33 ms, mostly that wait; now 2–3 ms).
//! - A sink that is behind may apply the batches waiting in its queue as one (`max_merged_*`), if the
//!   sink allows it (`Sink::merges_waiting_batches`): same kind, in order, the last one's checkpoint.
//! - Layout operations (a schema change's, an online copy's) travel in a batch of their own, run in
//!   order with the changes around them, before that batch's checkpoint is stored.
//! - A sink skips batches it already holds (streaming batches at or before its loaded checkpoint), so a
//!   restart that resumes the source from the smallest checkpoint never applies a change twice.
//! - Each sink has at most one batch in flight: its writes are sent by a task of their own while the
//!   worker stages the next batch ([`polyrepl_core::Sink::stage`]: mapping, row policy), and that next
//!   batch is sent only once the one in flight is stored; so batches and checkpoints land in order,
//!   and the sink's server is not left idle while a batch is converted. A batch with layout operations
//!   waits until nothing is in flight.
//! - A transient sink error retries the same batch with capped exponential backoff (staged anew),
//!   logging once per change of state; a definite error stops the pipeline with that error.

use crate::checkpoints::already_applied;
use crate::metrics::{now_millis, Metrics, SinkStats};
use crate::spill::Spill;
use polyrepl_core::{Batch, Change, Checkpoint, Sink, SinkError, TableOp, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Room a queued batch holds: permits of the change count and of the KiB semaphores.
type Room = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// What a sink's queue carries: a batch in memory with the room it holds, or the token of a batch
/// written to the sink's spill file (read back when the sink reaches it, so the order holds).
enum Queued {
    Memory(Arc<Batch>, Room),
    Spilled,
}

/// A sink's queue: unbounded channel, bounded by one semaphore counting the changes in it and one
/// counting their estimated KiB; beyond them, the sink's spill file.
struct Queue {
    tx: mpsc::UnboundedSender<Queued>,
    room: Arc<Semaphore>,
    capacity: usize,
    room_kib: Arc<Semaphore>,
    capacity_kib: usize,
    spill: Option<Arc<Mutex<Spill>>>,
    sink: String,
    stats: Arc<SinkStats>,
}

/// How long the batcher waits for room in a full queue before it looks again whether that sink should
/// spill instead (another sink may have caught up meanwhile).
const RECHECK_ROOM: Duration = Duration::from_millis(100);

impl Queue {
    /// Nothing queued in memory and nothing being written (a batch holds its room until stored).
    fn idle(&self) -> bool {
        self.room.available_permits() == self.capacity && self.room_kib.available_permits() == self.capacity_kib
    }

    /// The permits `batch` (`kib` its estimated size) takes; a batch larger than the whole queue takes
    /// all of it (it waits for an empty queue).
    fn wants(&self, batch: &Batch, kib: usize) -> (u32, u32) {
        (batch.changes.len().clamp(1, self.capacity) as u32, kib.clamp(1, self.capacity_kib) as u32)
    }

    /// Queues `batch` in memory if there is room now; `None` when there is not, else whether the sink
    /// still runs.
    fn try_memory(&self, batch: &Arc<Batch>, kib: usize) -> Option<bool> {
        let (want, want_kib) = self.wants(batch, kib);
        let changes = self.room.clone().try_acquire_many_owned(want).ok()?;
        let bytes = self.room_kib.clone().try_acquire_many_owned(want_kib).ok()?;
        Some(self.tx.send(Queued::Memory(batch.clone(), (changes, bytes))).is_ok())
    }

    /// Waits up to `wait` for room in memory, then queues `batch`; `None` when the wait ran out, else
    /// whether the sink still runs.
    async fn memory_within(&self, batch: &Arc<Batch>, kib: usize, wait: Duration) -> Option<bool> {
        let (want, want_kib) = self.wants(batch, kib);
        let acquire = async {
            let changes = self.room.clone().acquire_many_owned(want).await.ok()?;
            let bytes = self.room_kib.clone().acquire_many_owned(want_kib).await.ok()?;
            Some((changes, bytes))
        };
        match tokio::time::timeout(wait, acquire).await {
            Err(_) => None,
            Ok(None) => Some(false),
            Ok(Some(room)) => Some(self.tx.send(Queued::Memory(batch.clone(), room)).is_ok()),
        }
    }

    /// Writes `batch` to the spill file and queues its token; `None` when there is no spill file, it
    /// is full or cannot be written, else whether the sink still runs.
    fn try_spill(&self, batch: &Batch) -> Option<bool> {
        let spill = self.spill.as_ref()?;
        let pushed = {
            let mut spill = spill.lock().unwrap();
            let was_empty = spill.pending() == 0;
            let pushed = spill.push(batch);
            self.stats.spilled_bytes.store(spill.bytes(), Relaxed);
            if was_empty && matches!(pushed, Ok(true)) {
                tracing::info!(sink = %self.sink, "sink is a full queue behind the others: its batches go to its spill file on disk while it catches up, so the other sinks go on");
            }
            pushed
        };
        match pushed {
            Ok(true) => {
                self.stats.batches_spilled.fetch_add(1, Relaxed);
                Some(self.tx.send(Queued::Spilled).is_ok())
            }
            Ok(false) => None, // full: the batcher waits for room in memory
            Err(e) => {
                tracing::warn!(sink = %self.sink, error = %e, "cannot write the spill file; waiting for room in memory instead");
                None
            }
        }
    }

    /// Whether the sink keeps up: its queue is at most half full.
    fn keeps_up(&self) -> bool {
        self.room.available_permits() * 2 >= self.capacity && self.room_kib.available_permits() * 2 >= self.capacity_kib
    }
}

/// About how many bytes a change holds in memory (struct, row and key vectors, text and binary
/// values); a cheap estimate for bounding queues and batches, not an exact count.
pub fn approx_bytes(change: &Change) -> usize {
    fn heap(v: &Value) -> usize {
        match v {
            Value::String(s) | Value::Decimal(s) | Value::Enum(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::Set(items) => items.iter().map(|s| s.len() + std::mem::size_of::<String>()).sum(),
            // Serialising to measure would cost more than the estimate is worth.
            Value::Json(_) => 256,
            _ => 0,
        }
    }
    // Each heap allocation also costs the allocator's header and rounding: count 32 bytes apiece.
    const PER_ALLOCATION: usize = 32;
    let values = change.key.iter().chain(change.after.iter().flatten());
    let value_bytes: usize = values
        .map(|v| {
            std::mem::size_of::<Value>() + heap(v).next_multiple_of(16) + if heap(v) > 0 { PER_ALLOCATION } else { 0 }
        })
        .sum();
    let position =
        change.position.file.len() + change.position.gtid.as_ref().map_or(0, String::len) + 2 * PER_ALLOCATION;
    std::mem::size_of::<Change>() + position + 2 * PER_ALLOCATION + value_bytes
}

fn changes_bytes(changes: &[Change]) -> usize {
    changes.iter().map(approx_bytes).sum()
}

/// Bounds of batching and queueing.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// A batch closes once it holds at least this many changes…
    pub max_batch_changes: usize,
    /// …or once its changes hold about this many bytes in memory…
    pub max_batch_bytes: usize,
    /// …or this long after its first unit arrived (at once when every sink is idle).
    pub max_batch_delay: Duration,
    /// Changes queued per sink before the source waits (a stopped sink lets the others run this far ahead).
    pub queue_changes: usize,
    /// Estimated bytes of changes queued per sink before the source waits; with `queue_changes`, what
    /// bounds the pipeline's memory (batches are shared by the sinks' queues, not copied).
    pub queue_bytes: usize,
    /// Longest wait between retries of a failing sink.
    pub max_backoff: Duration,
    /// A sink that is behind merges the batches already waiting in its queue into one apply of up to
    /// this many changes…
    pub max_merged_changes: usize,
    /// …and about this many bytes.
    pub max_merged_bytes: usize,
    /// Most bytes of batches a sink with a full queue keeps in its spill file (0: no spill file; a full
    /// queue makes the source wait).
    pub spill_bytes: u64,
    /// Where spill files are created (unlinked at once; `None`: the system's temporary directory).
    pub spill_dir: Option<PathBuf>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_batch_changes: crate::settings::DEFAULT_BATCH_CHANGES,
            max_batch_bytes: 8 << 20,
            max_batch_delay: Duration::from_millis(crate::settings::DEFAULT_BATCH_DELAY_MS),
            queue_changes: crate::settings::DEFAULT_QUEUE_CHANGES,
            queue_bytes: crate::settings::DEFAULT_QUEUE_MIB << 20,
            max_backoff: Duration::from_secs(10),
            max_merged_changes: 20_000,
            max_merged_bytes: 8 << 20,
            spill_bytes: crate::settings::DEFAULT_SPILL_MIB << 20,
            spill_dir: None,
        }
    }
}

/// A sink, and the checkpoint it held when the run started.
pub struct SinkSlot {
    pub sink: Box<dyn Sink>,
    pub resume_from: Option<Checkpoint>,
}

/// Runs until `units` (one batch per source transaction or snapshot chunk) closes (then drains every sink) or a sink fails definitely.
pub async fn run(
    mut units: mpsc::Receiver<Batch>,
    sinks: Vec<SinkSlot>,
    cfg: PipelineConfig,
    metrics: Arc<Metrics>,
) -> Result<(), SinkError> {
    let mut queues = Vec::new();
    let mut workers = tokio::task::JoinSet::new();
    for slot in sinks {
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = cfg.queue_changes.clamp(1, Semaphore::MAX_PERMITS);
        let capacity_kib = (cfg.queue_bytes / 1024).clamp(1, Semaphore::MAX_PERMITS);
        let sink = slot.sink.name().to_string();
        let stats = metrics.sink_with_counts(&sink, slot.sink.row_policy().counts.clone());
        let spill = if cfg.spill_bytes == 0 {
            None
        } else {
            let dir = cfg.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
            match Spill::create(&dir, cfg.spill_bytes) {
                Ok(spill) => Some(Arc::new(Mutex::new(spill))),
                Err(e) => {
                    tracing::warn!(sink = %sink, dir = %dir.display(), error = %e, "cannot create a spill file: a slow sink will hold the others back once its queue is full (set --spill-dir)");
                    None
                }
            }
        };
        workers.spawn(sink_worker(slot, rx, spill.clone(), stats.clone(), cfg.clone()));
        queues.push(Queue {
            tx,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            room_kib: Arc::new(Semaphore::new(capacity_kib)),
            capacity_kib,
            spill,
            sink,
            stats,
        });
    }

    let batcher = async {
        while let Some(first) = units.recv().await {
            let mut bytes = changes_bytes(&first.changes);
            let mut batch = first;
            let deadline = tokio::time::Instant::now() + cfg.max_batch_delay;
            while batch.changes.len() < cfg.max_batch_changes && bytes < cfg.max_batch_bytes {
                if !batch.table_ops.is_empty() {
                    break; // layout operations travel alone
                }
                // Every sink idle (nothing queued, nothing being written): waiting to fill the batch
                // would only delay it, so it takes what is already waiting and closes.
                let next = if queues.iter().all(Queue::idle) {
                    units.try_recv().ok()
                } else {
                    tokio::time::timeout_at(deadline, units.recv()).await.ok().flatten()
                };
                match next {
                    Some(u) if joinable(&batch, &u) => {
                        bytes += changes_bytes(&u.changes);
                        batch.changes.extend(u.changes);
                        batch.checkpoint = u.checkpoint;
                    }
                    Some(u) => {
                        // Snapshot and streaming units (and layout operations) never share a batch:
                        // flush, start anew.
                        let next_bytes = changes_bytes(&u.changes);
                        let full = std::mem::replace(&mut batch, u);
                        send_all(&queues, Arc::new(full), bytes).await;
                        bytes = next_bytes;
                    }
                    None => break,
                }
            }
            if !send_all(&queues, Arc::new(batch), bytes).await {
                break; // a sink stopped; its error is collected below
            }
        }
        drop(queues);
    };

    let mut first_error = None;
    let watch_workers = async {
        while let Some(r) = workers.join_next().await {
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Some(e),
                Err(join) => {
                    return Some(SinkError::Definite {
                        sink: "pipeline".into(),
                        message: format!("a sink task failed: {join}"),
                    })
                }
            }
        }
        None
    };
    tokio::pin!(watch_workers);
    tokio::select! {
        _ = batcher => {
            // Source finished: let every sink drain its queue.
            if let Some(e) = (&mut watch_workers).await { first_error = Some(e); }
        }
        e = &mut watch_workers => { first_error = e; }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether `next` may join `batch`: row changes of the same kind (snapshot or streaming), no layout
/// operation on either side.
fn joinable(batch: &Batch, next: &Batch) -> bool {
    batch.table_ops.is_empty()
        && next.table_ops.is_empty()
        && batch.checkpoint.snapshot.is_some() == next.checkpoint.snapshot.is_some()
}

/// Hands `batch` to every sink: into its queue in memory when there is room; to its spill file when its
/// queue is full while another sink keeps up (it is the one behind: the others must not wait for it) and
/// the batch is not one of the initial snapshot's;
/// else the batcher waits for room (every sink is behind: the source is simply faster than the sinks,
/// and waiting is what bounds memory). False when a sink has stopped.
async fn send_all(queues: &[Queue], batch: Arc<Batch>, bytes: usize) -> bool {
    let kib = bytes.div_ceil(1024);
    for (i, q) in queues.iter().enumerate() {
        let sent = loop {
            if let Some(sent) = q.try_memory(&batch, kib) {
                break sent;
            }
            // Initial-snapshot batches never spill: a copy can wait, and spilling it cost more than it
            // saved (1M rows into FerretDB + Redis + Cassandra: 207 MiB and 103 s with, 91 MiB and 69 s
            // without).
            let streaming = batch.checkpoint.snapshot.is_none();
            let others_keep_up = queues.iter().enumerate().any(|(j, other)| j != i && other.keeps_up());
            if streaming && others_keep_up {
                if let Some(sent) = q.try_spill(&batch) {
                    break sent;
                }
            }
            if let Some(sent) = q.memory_within(&batch, kib, RECHECK_ROOM).await {
                break sent;
            }
        };
        if !sent {
            return false;
        }
    }
    true
}

/// Applies batches to one sink in order, retrying transient failures. One batch may be in flight (its
/// writes sent by a task of their own) while the next is staged ([`Sink::stage`]); that one is sent only
/// once the one in flight is stored.
async fn sink_worker(
    mut slot: SinkSlot,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    spill: Option<Arc<Mutex<Spill>>>,
    stats: Arc<SinkStats>,
    cfg: PipelineConfig,
) -> Result<(), SinkError> {
    let name = slot.sink.name().to_string();
    // The sink says whether its applies may be merged (see `Sink::merges_waiting_batches`).
    let mut cfg = cfg;
    if !slot.sink.merges_waiting_batches() {
        cfg.max_merged_changes = 0;
    }
    let mut source = QueueReader { rx: &mut rx, spill: spill.as_deref(), stats: &stats, sink: &name, next: None };
    let mut worker = Worker { stats: &stats, name: &name, max_backoff: cfg.max_backoff };
    set_state(&stats, "ok");
    let mut in_flight: Option<InFlight> = None;
    loop {
        // While a batch is in flight: whichever comes first, it is stored or the next batch is waiting.
        let taken = match in_flight.as_mut() {
            None => source.next().await?,
            Some(flight) => tokio::select! {
                sent = &mut flight.send => {
                    let flight = in_flight.take().expect("in flight");
                    drop(worker.land(slot.sink.as_mut(), flight, sent).await?);
                    continue;
                }
                taken = source.next() => taken?,
            },
        };
        let Some((first, room)) = taken else {
            break;
        };
        if already_applied(&first.checkpoint, &slot.resume_from) {
            stats.batches_skipped.fetch_add(1, Relaxed);
            continue;
        }
        // Once the sink holds newer changes than its loaded checkpoint, it skips nothing more.
        slot.resume_from = None;
        // The rooms (queue permits) are released once the merged batch is applied.
        let (batch, rooms) = merge_waiting(first, room, &mut source, &cfg)?;
        if !batch.table_ops.is_empty() {
            // Layout operations run with nothing in flight.
            if let Some(flight) = in_flight.take() {
                drop(worker.land_now(slot.sink.as_mut(), flight).await?);
            }
            worker.apply_until_stored(slot.sink.as_mut(), &batch).await?;
            record_applied(&stats, &batch);
            continue;
        }
        // Staged while the previous batch is sent.
        let staged = slot.sink.stage(&batch).await;
        // The batch stored here is freed only once the next send has started: freeing a batch's
        // thousands of rows takes about a millisecond, which the sink would spend waiting.
        let landed = match in_flight.take() {
            Some(flight) => Some(worker.land_now(slot.sink.as_mut(), flight).await?),
            None => None,
        };
        match staged {
            Ok(staged) => {
                in_flight = Some(InFlight { send: tokio::spawn(staged.send()), batch, _rooms: rooms });
                // Let the send start before the next batch is staged: a task spawned from a worker
                // thread waits in that thread's own slot, which no other thread takes from, so without
                // this the send began only once the (CPU-bound) staging of the next batch was done and
                // staging never overlapped sending (a Redis snapshot spent a quarter of its time so).
                tokio::task::yield_now().await;
            }
            Err(e) => {
                worker.retry_until_stored(slot.sink.as_mut(), &batch, e).await?;
                record_applied(&stats, &batch);
            }
        }
        drop(landed);
    }
    if let Some(flight) = in_flight.take() {
        drop(worker.land_now(slot.sink.as_mut(), flight).await?);
    }
    Ok(())
}

/// A staged batch being sent by a task of its own, and the queue room it holds until it is stored.
struct InFlight {
    send: tokio::task::JoinHandle<Result<(), SinkError>>,
    batch: Arc<Batch>,
    _rooms: Vec<Room>,
}

impl Drop for InFlight {
    /// A worker that stops (a definite error elsewhere) does not leave a send running.
    fn drop(&mut self) {
        self.send.abort();
    }
}

/// One sink worker's failure handling: retry with backoff while transient, stop when definite, and
/// the state and log lines that go with it.
struct Worker<'a> {
    stats: &'a SinkStats,
    name: &'a str,
    max_backoff: Duration,
}

impl Worker<'_> {
    /// Waits for `flight`'s send to end, then [`Worker::land`]s it.
    async fn land_now(&mut self, sink: &mut dyn Sink, mut flight: InFlight) -> Result<InFlight, SinkError> {
        let sent = (&mut flight.send).await;
        self.land(sink, flight, sent).await
    }

    /// `flight`'s send ended with `sent`: counted when stored; applied again from the start (staged
    /// anew) until stored when it failed transiently; the worker's error when definitely. Returns the
    /// stored flight for the caller to drop when it suits (freeing a batch takes time).
    async fn land(
        &mut self,
        sink: &mut dyn Sink,
        flight: InFlight,
        sent: Result<Result<(), SinkError>, tokio::task::JoinError>,
    ) -> Result<InFlight, SinkError> {
        let sent = sent.unwrap_or_else(|join| {
            Err(SinkError::definite(self.name, format!("the task sending a batch failed: {join}")))
        });
        if let Err(e) = sent {
            self.retry_until_stored(sink, &flight.batch, e).await?;
        }
        record_applied(self.stats, &flight.batch);
        Ok(flight)
    }

    /// Counts a failure; `Err` (the worker stops) when it is definite.
    fn failed(&mut self, e: &SinkError) -> Result<(), SinkError> {
        self.stats.errors.fetch_add(1, Relaxed);
        *self.stats.last_error.lock().unwrap() = Some(e.to_string());
        if e.is_transient() {
            return Ok(());
        }
        set_state(self.stats, "failed");
        Err(e.clone())
    }

    /// Applies `batch` (layout operations, then stage and send) until it is stored, retrying transient
    /// failures with backoff; the first definite failure is the worker's error.
    async fn apply_until_stored(&mut self, sink: &mut dyn Sink, batch: &Batch) -> Result<(), SinkError> {
        match apply(sink, batch).await {
            Ok(()) => Ok(()),
            Err(e) => self.retry_until_stored(sink, batch, e).await,
        }
    }

    /// `batch` failed with `error`: applied again after a backoff while the failures are transient
    /// (capped exponential, logged once per change of state); the definite one is the worker's error.
    async fn retry_until_stored(
        &mut self,
        sink: &mut dyn Sink,
        batch: &Batch,
        error: SinkError,
    ) -> Result<(), SinkError> {
        self.failed(&error)?;
        tracing::warn!(sink = %self.name, error = %error, "sink unavailable; retrying with backoff until it is back");
        set_state(self.stats, "retrying");
        let mut backoff = Duration::from_millis(100);
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.max_backoff);
            match apply(sink, batch).await {
                Ok(()) => break,
                Err(e) => self.failed(&e)?,
            }
        }
        tracing::info!(sink = %self.name, "sink is back; applying again");
        *self.stats.last_error.lock().unwrap() = None;
        set_state(self.stats, "ok");
        Ok(())
    }
}

/// A batch taken from a sink's queue, with the room it holds in memory (none when read back from the
/// spill file).
type Taken = (Arc<Batch>, Option<Room>);

/// A sink's side of its queue: batches in order, from memory or read back from the spill file.
struct QueueReader<'a> {
    rx: &'a mut mpsc::UnboundedReceiver<Queued>,
    spill: Option<&'a Mutex<Spill>>,
    stats: &'a SinkStats,
    sink: &'a str,
    /// A batch taken from the queue that could not join the previous merge.
    next: Option<Taken>,
}

impl QueueReader<'_> {
    /// The next batch, waiting for one; `None` once the queue is closed and empty.
    async fn next(&mut self) -> Result<Option<Taken>, SinkError> {
        if let Some(waiting) = self.next.take() {
            return Ok(Some(waiting));
        }
        match self.rx.recv().await {
            Some(item) => self.resolve(item).map(Some),
            None => Ok(None),
        }
    }

    /// The next batch already waiting, without waiting.
    fn try_next(&mut self) -> Result<Option<Taken>, SinkError> {
        if let Some(waiting) = self.next.take() {
            return Ok(Some(waiting));
        }
        match self.rx.try_recv() {
            Ok(item) => self.resolve(item).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn resolve(&mut self, item: Queued) -> Result<Taken, SinkError> {
        match item {
            Queued::Memory(batch, room) => Ok((batch, Some(room))),
            Queued::Spilled => {
                let spill = self.spill.expect("a spilled token comes with a spill file");
                let mut spill = spill.lock().unwrap();
                let read = spill.pop();
                self.stats.spilled_bytes.store(spill.bytes(), Relaxed);
                if spill.pending() == 0 {
                    tracing::info!(sink = %self.sink, "sink caught up with its spill file: back to the queue in memory");
                }
                match read {
                    Ok(Some(batch)) => Ok((Arc::new(batch), None)),
                    Ok(None) => Err(SinkError::definite(self.sink, "the spill file lost a batch (a token without a record): restart the run; it resumes from the sink's checkpoint")),
                    Err(e) => Err(SinkError::definite(self.sink, format!("reading a batch back from the spill file failed ({e}): restart the run; it resumes from the sink's checkpoint"))),
                }
            }
        }
    }
}

/// Applies one batch: its layout operations in order, then its changes with its checkpoint. A retry
/// runs the operations again; each is idempotent.
async fn apply(sink: &mut dyn Sink, batch: &Batch) -> Result<(), SinkError> {
    for op in &batch.table_ops {
        match op {
            TableOp::Prepare(table) => sink.prepare(std::slice::from_ref(table)).await?,
            TableOp::Truncate(table) => sink.truncate_table(table).await?,
            TableOp::Drop(table) => sink.drop_table(table).await?,
        }
    }
    sink.apply(batch).await
}

/// `first` plus the batches already waiting behind it, as one batch: a sink that is behind catches up
/// in fewer, larger applies, each of which has a fixed cost (round trips, the checkpoint write), and
/// changes to one key across those batches collapse into one write. Only batches of the same kind
/// (snapshot or streaming) merge, in order, within `max_merged_*`; the merged checkpoint is the last
/// one's, true once all are applied. A batch that does not fit is left in `next`. Nothing waits for more
/// batches to arrive: a sink that keeps up applies batches as they come. Only batches no other sink
/// still holds are merged (their changes move, they are not copied): the slowest sink, the one that
/// needs it, merges. `max_merged_changes == 0` turns merging off.
fn merge_waiting(
    first: Arc<Batch>,
    room: Option<Room>,
    source: &mut QueueReader<'_>,
    cfg: &PipelineConfig,
) -> Result<(Arc<Batch>, Vec<Room>), SinkError> {
    // A batch read back from the spill file holds no room; count its changes' size instead.
    let kib = |batch: &Batch, room: &Option<Room>| match room {
        Some(room) => room.1.num_permits() * 1024,
        None => changes_bytes(&batch.changes),
    };
    // Queued batches are never cloned again, so a count of one stays one.
    let unshared = |batch: &Arc<Batch>| Arc::strong_count(batch) == 1;
    let rooms_of = |room: Option<Room>| room.into_iter().collect::<Vec<_>>();
    if !unshared(&first) || cfg.max_merged_changes == 0 || !first.table_ops.is_empty() {
        return Ok((first, rooms_of(room)));
    }
    let (mut changes, mut bytes) = (first.changes.len(), kib(&first, &room));
    let mut parts = vec![first];
    let mut rooms = rooms_of(room);
    while let Some((batch, room)) = source.try_next()? {
        let same_kind = joinable(&parts[0], &batch);
        let size = kib(&batch, &room);
        let fits = changes + batch.changes.len() <= cfg.max_merged_changes && bytes + size <= cfg.max_merged_bytes;
        if !same_kind || !fits || !unshared(&batch) {
            source.next = Some((batch, room));
            break;
        }
        changes += batch.changes.len();
        bytes += size;
        parts.push(batch);
        rooms.extend(room);
    }
    if parts.len() == 1 {
        return Ok((parts.pop().expect("one batch"), rooms));
    }
    let checkpoint = parts.last().expect("batches").checkpoint.clone();
    let mut merged = Vec::with_capacity(changes);
    for part in parts {
        match Arc::try_unwrap(part) {
            Ok(owned) => merged.extend(owned.changes),
            Err(shared) => merged.extend(shared.changes.iter().cloned()),
        }
    }
    Ok((Arc::new(Batch::new(merged, checkpoint)), rooms))
}

pub(crate) fn set_state(stats: &SinkStats, s: &str) {
    *stats.state.lock().unwrap() = s.to_string();
}

pub(crate) fn record_applied(stats: &SinkStats, batch: &Batch) {
    stats.changes_applied.fetch_add(batch.changes.len() as u64, Relaxed);
    stats.batches_applied.fetch_add(1, Relaxed);
    stats.last_batch_size.store(batch.changes.len() as u64, Relaxed);
    stats.last_apply_ms.store(now_millis(), Relaxed);
    if let Some(ts) = batch.changes.iter().map(|c| c.source_ts).max() {
        stats.last_source_ts.fetch_max(ts as u64, Relaxed);
    }
    *stats.position.lock().unwrap() = Some(batch.checkpoint.position.to_string());
    // Counted per run of changes to one table: naming the table once per change was 4 % of a
    // snapshot's CPU.
    let mut per_table = stats.per_table.lock().unwrap();
    let mut changes = batch.changes.iter().peekable();
    while let Some(first) = changes.next() {
        let mut count = 1;
        let same_table = |c: &&Change| Arc::ptr_eq(&c.table, &first.table) || c.table.id == first.table.id;
        while changes.next_if(same_table).is_some() {
            count += 1;
        }
        *per_table.entry(first.table.id.to_string()).or_default() += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoints::nothing_copied;
    use polyrepl_core::Position;

    /// A streaming checkpoint, or one of a snapshot that has copied nothing yet, at `file:off`.
    fn cp(file: &str, off: u64, snap: bool) -> Checkpoint {
        let position = Position::new(file, off);
        if snap {
            nothing_copied(&position)
        } else {
            Checkpoint::streaming(position)
        }
    }

    #[test]
    fn bigger_rows_count_more_bytes() {
        let table = Arc::new(polyrepl_core::TableSchema {
            id: polyrepl_core::TableId::new("d", "t"),
            columns: vec![],
            primary_key: vec![0],
        });
        let change = |text: &str| Change {
            position: Position::new("b.000001", 4),
            seq: 0,
            table: table.clone(),
            op: polyrepl_core::Op::Insert,
            key: vec![Value::Int(1)],
            after: Some(vec![Value::Int(1), Value::String(text.into())]),
            source_ts: 0,
        };
        let small = approx_bytes(&change("a"));
        assert!(small > std::mem::size_of::<Change>());
        assert!(approx_bytes(&change(&"x".repeat(10_000))) >= small + 9_900);
    }

    /// A batch of `n` one-key inserts at `off`, with its queue room (one KiB permit).
    fn queued(off: u64, n: usize, snap: bool) -> (Arc<Batch>, Room) {
        let table = Arc::new(polyrepl_core::TableSchema {
            id: polyrepl_core::TableId::new("d", "t"),
            columns: vec![],
            primary_key: vec![0],
        });
        let change = |i: usize| Change {
            position: Position::new("b.000001", off),
            seq: i as u32,
            table: table.clone(),
            op: polyrepl_core::Op::Insert,
            key: vec![Value::Int(i as i64)],
            after: Some(vec![Value::Int(i as i64)]),
            source_ts: 0,
        };
        let permits = |n: usize| Arc::new(Semaphore::new(n)).try_acquire_many_owned(n as u32).unwrap();
        (Arc::new(Batch::new((0..n).map(change).collect(), cp("b.000001", off, snap))), (permits(n.max(1)), permits(1)))
    }

    #[test]
    fn a_sink_behind_merges_waiting_batches_of_one_kind_in_order_within_bounds() {
        let cfg = PipelineConfig { max_merged_changes: 25, ..PipelineConfig::default() };
        let (tx, mut rx) = mpsc::unbounded_channel();
        let stats = SinkStats::default();
        let memory = |(b, r): (Arc<Batch>, Room)| Queued::Memory(b, r);
        for b in [queued(20, 10, false), queued(30, 10, false), queued(40, 10, false), queued(50, 1, true)] {
            tx.send(memory(b)).unwrap();
        }
        let mut source = QueueReader { rx: &mut rx, spill: None, stats: &stats, sink: "s", next: None };
        let (first, room) = queued(10, 5, false);
        let (merged, rooms) = merge_waiting(first, Some(room), &mut source, &cfg).unwrap();
        // 5 + 10 + 10 = 25 fit; the third waiting batch would pass the bound and is kept for later.
        assert_eq!(merged.changes.len(), 25);
        assert_eq!(rooms.len(), 3);
        assert_eq!(merged.checkpoint, cp("b.000001", 30, false), "the merged checkpoint is the last batch's");
        let offsets: Vec<u64> = merged.changes.iter().map(|c| c.position.offset).collect();
        assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "order kept: {offsets:?}");
        let (kept, kept_room) = source.next.take().expect("the batch that did not fit");
        assert_eq!(kept.checkpoint.position.offset, 40);
        // A snapshot batch never joins a streaming one.
        let (merged, _) = merge_waiting(kept, kept_room, &mut source, &cfg).unwrap();
        assert_eq!(merged.changes.len(), 10);
        assert!(source.next.as_ref().is_some_and(|(b, _)| b.checkpoint.snapshot.is_some()));
        // A batch another sink still holds is not merged (merging would copy it).
        source.next = None;
        let (shared, room) = queued(70, 2, false);
        let _other_sink = shared.clone();
        tx.send(memory(queued(80, 2, false))).unwrap();
        let (alone, _) = merge_waiting(shared, Some(room), &mut source, &cfg).unwrap();
        assert_eq!(alone.changes.len(), 2);
        let (after, room) = source.try_next().unwrap().expect("left in the queue");
        let (merged, _) = merge_waiting(after, room, &mut source, &cfg).unwrap();
        assert_eq!(merged.changes.len(), 2);
        // A sink that does not allow merging (max_merged_changes 0) gets its batches one by one.
        tx.send(memory(queued(90, 2, false))).unwrap();
        let off = PipelineConfig { max_merged_changes: 0, ..PipelineConfig::default() };
        let (b, r) = queued(85, 2, false);
        let (alone, _) = merge_waiting(b, Some(r), &mut source, &off).unwrap();
        assert_eq!(alone.changes.len(), 2);
        assert!(source.try_next().unwrap().is_some(), "the waiting batch stays queued");
        // Nothing waiting: the batch goes as it is, not copied.
        let (alone, room) = queued(60, 3, false);
        let ptr = Arc::as_ptr(&alone);
        let (same, _) = merge_waiting(alone, Some(room), &mut source, &cfg).unwrap();
        assert_eq!(Arc::as_ptr(&same), ptr);
    }
}
