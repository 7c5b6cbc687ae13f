//! The pipeline: units of committed changes in, batches out to every sink, each at its own pace.
//!
//! Invariants:
//! - A [`Unit`] ends on a transaction boundary (or a snapshot chunk) and carries the checkpoint that is
//!   true once it is applied; batches are whole units, so a batch's checkpoint never points inside a
//!   transaction.
//! - Every sink sees every batch in source order; each sink has a queue bounded by a number of changes
//!   (`queue_changes`) and by an estimate of their bytes in memory (`queue_bytes`), and a full queue
//!   makes the batcher (and so the source reader) wait: memory stays bounded whatever the row size, and
//!   a slow or stopped sink holds the others back only once it is that far behind.
//! - A batch closes by count, by bytes or by time, whichever comes first (`max_batch_*`).
//! - A sink skips batches it already holds (streaming batches at or before its loaded checkpoint), so a
//!   restart that resumes the source from the smallest checkpoint never applies a change twice.
//! - A transient sink error retries the same batch with capped exponential backoff, logging once per
//!   change of state; a definite error stops the pipeline with that error.

use crate::metrics::{now_millis, Metrics, SinkStats};
use crate::{Batch, Change, Checkpoint, Sink, SinkError, Value};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Room a queued batch holds: permits of the change count and of the KiB semaphores.
type Room = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// A sink's queue: unbounded channel, bounded by one semaphore counting the changes in it and one
/// counting their estimated KiB.
struct Queue {
    tx: mpsc::UnboundedSender<(Arc<Batch>, Room)>,
    room: Arc<Semaphore>,
    capacity: usize,
    room_kib: Arc<Semaphore>,
    capacity_kib: usize,
}

impl Queue {
    /// Waits for room for the batch (`kib` its estimated size), then enqueues it; false when the sink
    /// has stopped. A batch larger than the whole queue waits for an empty queue.
    async fn send(&self, batch: Arc<Batch>, kib: usize) -> bool {
        let want = batch.changes.len().clamp(1, self.capacity) as u32;
        let Ok(changes) = self.room.clone().acquire_many_owned(want).await else { return false };
        let Ok(bytes) = self.room_kib.clone().acquire_many_owned(kib.clamp(1, self.capacity_kib) as u32).await else { return false };
        self.tx.send((batch, (changes, bytes))).is_ok()
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
    let value_bytes: usize = values.map(|v| std::mem::size_of::<Value>() + heap(v).next_multiple_of(16) + if heap(v) > 0 { PER_ALLOCATION } else { 0 }).sum();
    let position = change.position.file.len() + change.position.gtid.as_ref().map_or(0, String::len) + 2 * PER_ALLOCATION;
    std::mem::size_of::<Change>() + position + 2 * PER_ALLOCATION + value_bytes
}

fn units_bytes(changes: &[Change]) -> usize {
    changes.iter().map(approx_bytes).sum()
}

/// Committed changes and the checkpoint that holds once they are applied.
#[derive(Debug, Clone)]
pub struct Unit {
    pub changes: Vec<Change>,
    pub checkpoint: Checkpoint,
}

/// Bounds of batching and queueing.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// A batch closes once it holds at least this many changes…
    pub max_batch_changes: usize,
    /// …or once its changes hold about this many bytes in memory…
    pub max_batch_bytes: usize,
    /// …or this long after its first unit arrived.
    pub max_batch_delay: Duration,
    /// Changes queued per sink before the source waits (a stopped sink lets the others run this far ahead).
    pub queue_changes: usize,
    /// Estimated bytes of changes queued per sink before the source waits; with `queue_changes`, what
    /// bounds the pipeline's memory (batches are shared by the sinks' queues, not copied).
    pub queue_bytes: usize,
    /// Longest wait between retries of a failing sink.
    pub max_backoff: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_batch_changes: 5_000,
            max_batch_bytes: 8 << 20,
            max_batch_delay: Duration::from_millis(50),
            queue_changes: 100_000,
            queue_bytes: 32 << 20,
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A sink, and the checkpoint it held when the run started.
pub struct SinkSlot {
    pub sink: Box<dyn Sink>,
    pub resume_from: Option<Checkpoint>,
}

/// True when a sink that holds `held` already has the effect of `batch`.
pub fn already_applied(batch: &Checkpoint, held: &Option<Checkpoint>) -> bool {
    match (held, &batch.snapshot) {
        (None, _) => false,
        // A sink whose snapshot is complete holds every snapshot chunk…
        (Some(h), Some(_)) => h.snapshot.is_none(),
        // …and every streamed transaction up to its position.
        (Some(h), None) => h.snapshot.is_none() && batch.position <= h.position,
    }
}

/// Runs until `units` closes (then drains every sink) or a sink fails definitely.
pub async fn run(
    mut units: mpsc::Receiver<Unit>,
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
        let stats = metrics.sink(slot.sink.name());
        workers.spawn(sink_worker(slot, rx, stats, cfg.max_backoff));
        queues.push(Queue {
            tx,
            room: Arc::new(Semaphore::new(capacity)),
            capacity,
            room_kib: Arc::new(Semaphore::new(capacity_kib)),
            capacity_kib,
        });
    }

    let batcher = async {
        while let Some(first) = units.recv().await {
            let mut bytes = units_bytes(&first.changes);
            let mut batch = Batch { changes: first.changes, checkpoint: first.checkpoint };
            let deadline = tokio::time::Instant::now() + cfg.max_batch_delay;
            while batch.changes.len() < cfg.max_batch_changes && bytes < cfg.max_batch_bytes {
                match tokio::time::timeout_at(deadline, units.recv()).await {
                    Ok(Some(u)) if u.checkpoint.snapshot.is_some() == batch.checkpoint.snapshot.is_some() => {
                        bytes += units_bytes(&u.changes);
                        batch.changes.extend(u.changes);
                        batch.checkpoint = u.checkpoint;
                    }
                    Ok(Some(u)) => {
                        // Snapshot and streaming units never share a batch: flush, start anew.
                        let next_bytes = units_bytes(&u.changes);
                        let full = std::mem::replace(&mut batch, Batch { changes: u.changes, checkpoint: u.checkpoint });
                        send_all(&queues, Arc::new(full), bytes).await;
                        bytes = next_bytes;
                    }
                    Ok(None) | Err(_) => break,
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
                Err(join) => return Some(SinkError::Definite { sink: "pipeline".into(), message: format!("a sink task failed: {join}") }),
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

async fn send_all(queues: &[Queue], batch: Arc<Batch>, bytes: usize) -> bool {
    let kib = bytes.div_ceil(1024);
    for q in queues {
        if !q.send(batch.clone(), kib).await {
            return false;
        }
    }
    true
}

/// Applies batches to one sink in order, retrying transient failures.
async fn sink_worker(
    mut slot: SinkSlot,
    mut rx: mpsc::UnboundedReceiver<(Arc<Batch>, Room)>,
    stats: Arc<SinkStats>,
    max_backoff: Duration,
) -> Result<(), SinkError> {
    let name = slot.sink.name().to_string();
    set_state(&stats, "ok");
    // The permit is released (room made in the queue) when the batch is dropped, applied or skipped.
    while let Some((batch, _permit)) = rx.recv().await {
        if already_applied(&batch.checkpoint, &slot.resume_from) {
            stats.batches_skipped.fetch_add(1, Relaxed);
            continue;
        }
        let mut backoff = Duration::from_millis(100);
        let mut failing = false;
        loop {
            match slot.sink.apply(&batch).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    stats.errors.fetch_add(1, Relaxed);
                    if !failing {
                        tracing::warn!(sink = %name, error = %e, "sink unavailable; retrying with backoff until it is back");
                        set_state(&stats, "retrying");
                        failing = true;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(max_backoff);
                }
                Err(e) => {
                    stats.errors.fetch_add(1, Relaxed);
                    set_state(&stats, "failed");
                    return Err(e);
                }
            }
        }
        if failing {
            tracing::info!(sink = %name, "sink is back; applying again");
            set_state(&stats, "ok");
        }
        record_applied(&stats, &batch);
        // Once the sink holds newer changes than its loaded checkpoint, it skips nothing more.
        slot.resume_from = None;
    }
    Ok(())
}

fn set_state(stats: &SinkStats, s: &str) {
    *stats.state.lock().unwrap() = s.to_string();
}

fn record_applied(stats: &SinkStats, batch: &Batch) {
    stats.changes_applied.fetch_add(batch.changes.len() as u64, Relaxed);
    stats.batches_applied.fetch_add(1, Relaxed);
    stats.last_batch_size.store(batch.changes.len() as u64, Relaxed);
    stats.last_apply_ms.store(now_millis(), Relaxed);
    if let Some(ts) = batch.changes.iter().map(|c| c.source_ts).max() {
        stats.last_source_ts.fetch_max(ts as u64, Relaxed);
    }
    *stats.position.lock().unwrap() = Some(batch.checkpoint.position.to_string());
    let mut per_table = stats.per_table.lock().unwrap();
    for c in &batch.changes {
        *per_table.entry(c.table.id.to_string()).or_default() += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Position, SnapshotProgress};

    fn cp(file: &str, off: u64, snap: bool) -> Checkpoint {
        Checkpoint {
            position: Position::new(file, off),
            snapshot: snap.then(|| SnapshotProgress { done: vec![], current: None }),
        }
    }

    #[test]
    fn skip_rules() {
        let held = Some(cp("b.000002", 500, false));
        assert!(already_applied(&cp("b.000002", 500, false), &held));
        assert!(already_applied(&cp("b.000001", 900, false), &held));
        assert!(!already_applied(&cp("b.000002", 501, false), &held));
        assert!(already_applied(&cp("b.000001", 4, true), &held), "snapshot chunks are held once the snapshot is done");
        let mid_snapshot = Some(cp("b.000001", 4, true));
        assert!(!already_applied(&cp("b.000001", 4, true), &mid_snapshot));
        assert!(!already_applied(&cp("b.000001", 4, false), &mid_snapshot));
        assert!(!already_applied(&cp("b.000001", 4, false), &None));
    }

    #[test]
    fn bigger_rows_count_more_bytes() {
        let table = Arc::new(crate::TableSchema { id: crate::TableId::new("d", "t"), columns: vec![], primary_key: vec![0] });
        let change = |text: &str| Change {
            position: Position::new("b.000001", 4),
            seq: 0,
            table: table.clone(),
            op: crate::Op::Insert,
            key: vec![Value::Int(1)],
            after: Some(vec![Value::Int(1), Value::String(text.into())]),
            source_ts: 0,
        };
        let small = approx_bytes(&change("a"));
        assert!(small > std::mem::size_of::<Change>());
        assert!(approx_bytes(&change(&"x".repeat(10_000))) >= small + 9_900);
    }
}
