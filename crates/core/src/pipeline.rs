//! The pipeline: units of committed changes in, batches out to every sink, each at its own pace.
//!
//! Invariants:
//! - A [`Unit`] ends on a transaction boundary (or a snapshot chunk) and carries the checkpoint that is
//!   true once it is applied; batches are whole units, so a batch's checkpoint never points inside a
//!   transaction.
//! - Every sink sees every batch in source order; each sink has a queue bounded by a number of changes
//!   (`queue_changes`), and a full queue makes the batcher (and so the source reader) wait: memory stays
//!   bounded, and a slow or stopped sink holds the others back only once it is that many changes behind.
//! - A sink skips batches it already holds (streaming batches at or before its loaded checkpoint), so a
//!   restart that resumes the source from the smallest checkpoint never applies a change twice.
//! - A transient sink error retries the same batch with capped exponential backoff, logging once per
//!   change of state; a definite error stops the pipeline with that error.

use crate::metrics::{now_millis, Metrics, SinkStats};
use crate::{Batch, Change, Checkpoint, Sink, SinkError};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// A sink's queue: unbounded channel, bounded by a semaphore counting the changes in it.
struct Queue {
    tx: mpsc::UnboundedSender<(Arc<Batch>, OwnedSemaphorePermit)>,
    room: Arc<Semaphore>,
    capacity: usize,
}

impl Queue {
    /// Waits for room for the batch, then enqueues it; false when the sink has stopped.
    async fn send(&self, batch: Arc<Batch>) -> bool {
        let want = batch.changes.len().clamp(1, self.capacity) as u32;
        let Ok(permit) = self.room.clone().acquire_many_owned(want).await else { return false };
        self.tx.send((batch, permit)).is_ok()
    }
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
    /// …or this long after its first unit arrived.
    pub max_batch_delay: Duration,
    /// Changes queued per sink before the source waits (a stopped sink lets the others run this far ahead).
    pub queue_changes: usize,
    /// Longest wait between retries of a failing sink.
    pub max_backoff: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            max_batch_changes: 5_000,
            max_batch_delay: Duration::from_millis(50),
            queue_changes: 100_000,
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
        let stats = metrics.sink(slot.sink.name());
        workers.spawn(sink_worker(slot, rx, stats, cfg.max_backoff));
        queues.push(Queue { tx, room: Arc::new(Semaphore::new(capacity)), capacity });
    }

    let batcher = async {
        while let Some(first) = units.recv().await {
            let mut batch = Batch { changes: first.changes, checkpoint: first.checkpoint };
            let deadline = tokio::time::Instant::now() + cfg.max_batch_delay;
            while batch.changes.len() < cfg.max_batch_changes {
                match tokio::time::timeout_at(deadline, units.recv()).await {
                    Ok(Some(u)) if u.checkpoint.snapshot.is_some() == batch.checkpoint.snapshot.is_some() => {
                        batch.changes.extend(u.changes);
                        batch.checkpoint = u.checkpoint;
                    }
                    Ok(Some(u)) => {
                        // Snapshot and streaming units never share a batch: flush, start anew.
                        send_all(&queues, Arc::new(std::mem::replace(&mut batch, Batch { changes: u.changes, checkpoint: u.checkpoint }))).await;
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            if !send_all(&queues, Arc::new(batch)).await {
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

async fn send_all(queues: &[Queue], batch: Arc<Batch>) -> bool {
    for q in queues {
        if !q.send(batch.clone()).await {
            return false;
        }
    }
    true
}

/// Applies batches to one sink in order, retrying transient failures.
async fn sink_worker(
    mut slot: SinkSlot,
    mut rx: mpsc::UnboundedReceiver<(Arc<Batch>, OwnedSemaphorePermit)>,
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
}
