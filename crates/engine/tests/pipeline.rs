//! The pipeline's own behaviour, against in-memory sinks with injected faults (no database): retries
//! with capped backoff, the definite stop, skipping what a sink holds, merging waiting batches,
//! back-pressure, independent sink pace, and a crash between a sink's data and its checkpoint.
//!
//! Time is tokio's paused clock: sleeps (backoff, slow sinks) advance it instantly and exactly, so the
//! waits are asserted to the millisecond without the tests taking that long.

use polyrepl_core::testkit::memory_sink::{Fault, MemoryHandle, MemorySink};
use polyrepl_core::{
    Batch, Change, Checkpoint, Column, ColumnKind, Op, Position, SinkError, SnapshotProgress, TableId, TableOp,
    TableSchema, Value,
};
use polyrepl_engine::pipeline::{self, PipelineConfig, SinkSlot};
use polyrepl_engine::Metrics;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const PIPELINE: &str = "p";

fn table() -> Arc<TableSchema> {
    let column = |name: &str| Column { name: name.into(), kind: ColumnKind::BigInt, unsigned: false, nullable: false };
    Arc::new(TableSchema { id: TableId::new("d", "t"), columns: vec![column("id"), column("v")], primary_key: vec![0] })
}

fn at(offset: u64) -> Position {
    Position::new("binlog.000001", offset)
}

/// One transaction at `offset`: `(op, id, v)` changes.
fn txn(offset: u64, changes: &[(Op, i64, i64)]) -> Batch {
    let table = table();
    let changes = changes
        .iter()
        .enumerate()
        .map(|(seq, &(op, id, v))| Change {
            position: at(offset),
            seq: seq as u32,
            table: table.clone(),
            op,
            key: vec![Value::Int(id)],
            after: (op != Op::Delete).then(|| vec![Value::Int(id), Value::Int(v)]),
            source_ts: offset as u32,
        })
        .collect();
    Batch::new(changes, Checkpoint::streaming(at(offset)))
}

/// `n` one-row insert transactions at offsets 100, 200, …, row `i` = (i, i).
fn inserts(n: i64) -> Vec<Batch> {
    (1..=n).map(|i| txn(100 * i as u64, &[(Op::Insert, i, i)])).collect()
}

fn rows(handle: &MemoryHandle) -> Vec<(i64, i64)> {
    handle
        .rows(&table().id)
        .into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Int(a), Value::Int(b)) => (*a, *b),
            other => panic!("unexpected row {other:?}"),
        })
        .collect()
}

/// A config whose batches are each one transaction (no delay to wait for company), applied one by
/// one (no merging of waiting batches), so that apply calls match batches.
fn one_per_batch() -> PipelineConfig {
    PipelineConfig {
        max_batch_changes: 1,
        max_batch_delay: Duration::ZERO,
        max_merged_changes: 0,
        ..PipelineConfig::default()
    }
}

struct Running {
    tx: mpsc::Sender<Batch>,
    task: JoinHandle<Result<(), SinkError>>,
    metrics: Arc<Metrics>,
}

fn start(slots: Vec<SinkSlot>, cfg: PipelineConfig) -> Running {
    let (tx, rx) = mpsc::channel(4);
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(pipeline::run(rx, slots, cfg, metrics.clone()));
    Running { tx, task, metrics }
}

fn slot(handle: &MemoryHandle) -> SinkSlot {
    SinkSlot { sink: Box::new(handle.reopen()), resume_from: handle.checkpoint() }
}

async fn feed_and_finish(run: Running, batches: Vec<Batch>) -> (Result<(), SinkError>, Arc<Metrics>) {
    for b in batches {
        if run.tx.send(b).await.is_err() {
            break;
        }
    }
    drop(run.tx);
    (run.task.await.expect("pipeline task"), run.metrics)
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_retries_the_same_batch_with_capped_exponential_backoff() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    for call in 1..=5 {
        sink.fail_call(call, Fault::Transient);
    }
    let cfg = PipelineConfig { max_backoff: Duration::from_millis(250), ..one_per_batch() };
    let started = Instant::now();
    let (result, metrics) = feed_and_finish(start(vec![slot(&sink)], cfg), inserts(2)).await;
    result.expect("transient failures are retried, not fatal");
    // 100 ms, doubling, capped at 250 ms: 100 + 200 + 250 + 250 + 250.
    assert_eq!(started.elapsed(), Duration::from_millis(1050), "backoff waits");
    assert_eq!(sink.calls(), 7, "5 failures + 2 batches");
    assert_eq!(rows(&sink), vec![(1, 1), (2, 2)]);
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(200))));
    let stats = metrics.sinks.lock().unwrap()[0].1.clone();
    assert_eq!(stats.errors.load(Relaxed), 5);
    assert_eq!(*stats.state.lock().unwrap(), "ok", "back to ok once it applies again");
}

#[tokio::test(start_paused = true)]
async fn a_definite_failure_stops_the_pipeline_with_that_error_and_applies_nothing_after_it() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    sink.fail_call(2, Fault::Definite);
    let (result, metrics) = feed_and_finish(start(vec![slot(&sink)], one_per_batch()), inserts(5)).await;
    let err = result.expect_err("a definite error stops the run");
    assert!(!err.is_transient() && err.to_string().contains("injected definite fault"), "{err}");
    assert_eq!(rows(&sink), vec![(1, 1)], "nothing after the failed batch");
    assert_eq!(
        sink.checkpoint(),
        Some(Checkpoint::streaming(at(100))),
        "the checkpoint stays at the last applied batch"
    );
    assert_eq!(sink.calls(), 2, "no retry of a definite failure");
    assert_eq!(*metrics.sinks.lock().unwrap()[0].1.state.lock().unwrap(), "failed");
}

#[tokio::test(start_paused = true)]
async fn a_definite_failure_of_one_sink_stops_the_run_even_while_another_sink_is_stalled() {
    let (_, bad) = MemorySink::new("bad", PIPELINE);
    let (_, stalled) = MemorySink::new("stalled", PIPELINE);
    bad.fail_call(1, Fault::Definite);
    stalled.pause();
    let run = start(vec![slot(&bad), slot(&stalled)], one_per_batch());
    run.tx.send(txn(100, &[(Op::Insert, 1, 1)])).await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), run.task).await.expect("the run stops by itself");
    let err = result.unwrap().expect_err("the definite error is the run's result");
    assert!(err.to_string().starts_with("bad:"), "{err}");
    assert_eq!(stalled.checkpoint(), None);
}

#[tokio::test(start_paused = true)]
async fn a_sink_skips_the_batches_its_checkpoint_already_holds() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    sink.set_checkpoint(Checkpoint::streaming(at(300)));
    let snapshot_chunk = Batch {
        checkpoint: Checkpoint::snapshotting(at(50), SnapshotProgress { done: vec![], current: None }),
        ..txn(50, &[(Op::Insert, 9, 9)])
    };
    let mut batches = vec![snapshot_chunk];
    batches.extend(inserts(5));
    let (result, metrics) = feed_and_finish(start(vec![slot(&sink)], one_per_batch()), batches).await;
    result.unwrap();
    assert_eq!(rows(&sink), vec![(4, 4), (5, 5)], "only the transactions after offset 300");
    let stats = metrics.sinks.lock().unwrap()[0].1.clone();
    assert_eq!(stats.batches_skipped.load(Relaxed), 4, "the snapshot chunk and transactions at 100, 200, 300");
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(500))));
}

#[tokio::test(start_paused = true)]
async fn a_sink_behind_merges_the_batches_waiting_in_its_queue_in_order() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    sink.pause();
    let merging = PipelineConfig { max_merged_changes: 20_000, ..one_per_batch() };
    let run = start(vec![slot(&sink)], merging.clone());
    // Key 1 changes in several transactions: the last value must win.
    let batches: Vec<Batch> =
        (1..=20).map(|i| txn(100 * i, &[(Op::Update, 1, i as i64), (Op::Insert, i as i64 + 1, 0)])).collect();
    for b in batches {
        run.tx.send(b).await.unwrap();
    }
    // Let the batcher hand every batch to the (stalled) sink's queue, then let it go on.
    tokio::time::sleep(Duration::from_millis(10)).await;
    sink.resume();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    let applied = sink.applied();
    assert!(applied.len() < 20, "waiting batches were merged: {} applies for 20 batches", applied.len());
    assert_eq!(applied.iter().map(|a| a.changes).sum::<usize>(), 40, "no change lost or doubled");
    let offsets: Vec<u64> = applied.iter().map(|a| a.checkpoint.position.offset).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "checkpoints in order: {offsets:?}");
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(2000))));
    assert_eq!(rows(&sink)[0], (1, 20), "the last update of key 1 wins");

    // A sink that does not allow merging gets every batch on its own.
    let (_, plain) = MemorySink::new("plain", PIPELINE);
    plain.set_merges(false);
    plain.pause();
    let run = start(vec![slot(&plain)], merging);
    for b in inserts(20) {
        run.tx.send(b).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    plain.resume();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(plain.applied().len(), 20);
}

#[tokio::test(start_paused = true)]
async fn a_stalled_sink_makes_the_source_wait_once_its_queue_is_full() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    sink.pause();
    let cfg = PipelineConfig { queue_changes: 10, ..one_per_batch() };
    let run = start(vec![slot(&sink)], cfg);
    let tx = run.tx.clone();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = tokio::spawn(async move {
        for b in inserts(1000) {
            if tx.send(b).await.is_err() {
                return;
            }
            counter.fetch_add(1, Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = sent.load(Relaxed);
    // The queue (10 changes), the batch the batcher waits to hand over, the channel (4), the one being
    // applied: far from the 1000 the producer wants to send.
    assert!(held <= 20, "the source was not held back: {held} batches accepted");
    assert!(held >= 10, "the queue takes what it bounds: {held}");
    sink.resume();
    producer.await.unwrap();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(rows(&sink).len(), 1000, "every batch arrives once the sink goes on");
}

#[tokio::test(start_paused = true)]
async fn a_slow_sink_does_not_hold_back_a_fast_one_within_its_queue() {
    let (_, slow) = MemorySink::new("slow", PIPELINE);
    let (_, fast) = MemorySink::new("fast", PIPELINE);
    slow.pause();
    let run = start(vec![slot(&slow), slot(&fast)], one_per_batch());
    for b in inserts(200) {
        run.tx.send(b).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fast.checkpoint(), Some(Checkpoint::streaming(at(20_000))), "the fast sink has everything");
    assert_eq!(slow.checkpoint(), None, "the slow sink has nothing yet");
    slow.resume();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(rows(&slow), rows(&fast));
}

#[tokio::test(start_paused = true)]
async fn a_crash_between_data_and_checkpoint_replays_the_batch_with_no_double_effect() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    let batches = vec![
        txn(100, &[(Op::Insert, 1, 1), (Op::Insert, 2, 2)]),
        txn(200, &[(Op::Update, 1, 10), (Op::Delete, 2, 0)]),
        txn(300, &[(Op::Insert, 2, 20)]),
    ];
    // First run: the second batch's data lands, then the process "dies" before its checkpoint.
    sink.fail_call(2, Fault::DieAfterData);
    let run = start(vec![slot(&sink)], one_per_batch());
    for b in batches.clone() {
        run.tx.send(b).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    run.task.abort(); // kill -9 while the pipeline waits to retry
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(100))), "the checkpoint lags the data");
    assert_eq!(rows(&sink), vec![(1, 10)], "the second batch's data is there");

    // Restart: the source resumes from the checkpoint; the sink gets batch 2 again, then 3.
    let run = start(vec![slot(&sink)], one_per_batch());
    let (result, metrics) = feed_and_finish(run, batches).await;
    result.unwrap();
    assert_eq!(rows(&sink), vec![(1, 10), (2, 20)]);
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(300))));
    assert_eq!(metrics.sinks.lock().unwrap()[0].1.batches_skipped.load(Relaxed), 1, "batch 1 skipped");
}

#[tokio::test(start_paused = true)]
async fn layout_operations_run_in_order_with_the_changes_and_never_share_a_batch() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    let t = table();
    let truncate = Batch::table_ops(vec![TableOp::Truncate(t.clone())], Checkpoint::streaming(at(250)));
    let drop_and_prepare =
        Batch::table_ops(vec![TableOp::Drop(t.clone()), TableOp::Prepare(t.clone())], Checkpoint::streaming(at(450)));
    let batches = vec![
        txn(100, &[(Op::Insert, 1, 1)]),
        txn(200, &[(Op::Insert, 2, 2)]),
        truncate,
        txn(300, &[(Op::Insert, 3, 3)]),
        txn(400, &[(Op::Insert, 4, 4)]),
        drop_and_prepare,
        txn(500, &[(Op::Insert, 5, 5)]),
    ];
    // Batches as large as they come, merged when waiting: layout operations still split them.
    let cfg = PipelineConfig { max_batch_delay: Duration::from_millis(50), ..PipelineConfig::default() };
    let (result, _) = feed_and_finish(start(vec![slot(&sink)], cfg), batches).await;
    result.unwrap();
    assert_eq!(rows(&sink), vec![(5, 5)], "rows before each operation are gone, rows after it stay");
    assert_eq!(sink.checkpoint(), Some(Checkpoint::streaming(at(500))));
    // A sink that already holds the truncation (its checkpoint is past it) does not run it again.
    let (_, ahead) = MemorySink::new("ahead", PIPELINE);
    polyrepl_core::Sink::apply(&mut ahead.reopen(), &txn(300, &[(Op::Insert, 9, 9)])).await.unwrap();
    let batches = vec![
        Batch::table_ops(vec![TableOp::Truncate(t.clone())], Checkpoint::streaming(at(250))),
        txn(350, &[(Op::Insert, 6, 6)]),
    ];
    let (result, _) = feed_and_finish(start(vec![slot(&ahead)], one_per_batch()), batches).await;
    result.unwrap();
    assert_eq!(rows(&ahead), vec![(6, 6), (9, 9)], "row 9 was written after the truncation it holds");
}

#[tokio::test(start_paused = true)]
async fn a_paused_sink_beyond_its_queue_spills_and_the_other_gets_everything() {
    let (_, slow) = MemorySink::new("slow", PIPELINE);
    let (_, fast) = MemorySink::new("fast", PIPELINE);
    slow.pause();
    let cfg = PipelineConfig { queue_changes: 10, ..one_per_batch() };
    let run = start(vec![slot(&slow), slot(&fast)], cfg);
    for b in inserts(500) {
        run.tx.send(b).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(fast.checkpoint(), Some(Checkpoint::streaming(at(50_000))), "the fast sink has all 500");
    let stats = run.metrics.sinks.lock().unwrap()[0].1.clone();
    let spilled = stats.batches_spilled.load(Relaxed);
    assert!(spilled >= 480, "the paused sink's batches beyond its queue went to disk: {spilled}");
    slow.resume();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(rows(&slow), rows(&fast), "the spilled batches arrive, in order");
    assert_eq!(rows(&slow).len(), 500);
    assert_eq!(stats.spilled_bytes.load(Relaxed), 0, "the spill file is emptied once read back");
}

#[tokio::test(start_paused = true)]
async fn when_every_sink_is_behind_the_source_waits_and_nothing_is_spilled() {
    let (_, a) = MemorySink::new("a", PIPELINE);
    let (_, b) = MemorySink::new("b", PIPELINE);
    a.pause();
    b.pause();
    let cfg = PipelineConfig { queue_changes: 10, ..one_per_batch() };
    let run = start(vec![slot(&a), slot(&b)], cfg);
    let tx = run.tx.clone();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = tokio::spawn(async move {
        for batch in inserts(300) {
            if tx.send(batch).await.is_err() {
                return;
            }
            counter.fetch_add(1, Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = sent.load(Relaxed);
    assert!(held <= 20, "the source was not held back: {held} batches accepted");
    for (_, stats) in run.metrics.sinks.lock().unwrap().iter() {
        assert_eq!(stats.batches_spilled.load(Relaxed), 0, "no sink spills when none keeps up");
    }
    a.resume();
    b.resume();
    producer.await.unwrap();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(rows(&a).len(), 300);
    assert_eq!(rows(&a), rows(&b));
}

#[tokio::test(start_paused = true)]
async fn initial_snapshot_batches_never_spill() {
    let (_, slow) = MemorySink::new("slow", PIPELINE);
    let (_, fast) = MemorySink::new("fast", PIPELINE);
    slow.pause();
    let cfg = PipelineConfig { queue_changes: 10, ..one_per_batch() };
    let run = start(vec![slot(&slow), slot(&fast)], cfg);
    let tx = run.tx.clone();
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = sent.clone();
    let producer = tokio::spawn(async move {
        for mut batch in inserts(300) {
            let progress = polyrepl_core::SnapshotProgress { done: vec![], current: None };
            batch.checkpoint = Checkpoint::snapshotting(at(1), progress);
            if tx.send(batch).await.is_err() {
                return;
            }
            counter.fetch_add(1, Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_secs(5)).await;
    let held = sent.load(Relaxed);
    assert!(held <= 20, "a copy waits for its slowest sink: {held} batches accepted");
    let stats = run.metrics.sinks.lock().unwrap()[0].1.clone();
    assert_eq!(stats.batches_spilled.load(Relaxed), 0, "snapshot batches are not spilled");
    slow.resume();
    producer.await.unwrap();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    assert_eq!(rows(&slow).len(), 300);
    assert_eq!(rows(&slow), rows(&fast));
}

#[tokio::test(start_paused = true)]
async fn the_next_batch_is_staged_while_one_is_sent_and_they_land_in_order() {
    let (_, sink) = MemorySink::new("mem", PIPELINE);
    sink.pause();
    let run = start(vec![slot(&sink)], one_per_batch());
    for b in inserts(3) {
        run.tx.send(b).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Batch 1 is being sent (its send waits on the pause), batch 2 is staged behind it; batch 3 waits
    // in the queue until batch 1 is stored.
    assert_eq!((sink.staged(), sink.calls()), (2, 1), "one batch staged while one is in flight");
    assert_eq!(sink.checkpoint(), None, "nothing stored while paused");
    sink.resume();
    drop(run.tx);
    run.task.await.unwrap().unwrap();
    let order: Vec<Checkpoint> = sink.applied().into_iter().map(|a| a.checkpoint).collect();
    assert_eq!(
        order,
        vec![Checkpoint::streaming(at(100)), Checkpoint::streaming(at(200)), Checkpoint::streaming(at(300))]
    );
    assert_eq!(rows(&sink), vec![(1, 1), (2, 2), (3, 3)]);
}
