//! `polyrepl apply`: change events from Kafka into the sinks, as one worker of a consumer group.
//!
//! Kafka spreads the topics' partitions over the group's workers (start one on each machine) and
//! moves a dead worker's partitions to the others within the session timeout. A key's events are in one
//! partition, read by one worker at a time, in order.
//!
//! Exactly-once effect: each sink holds, per topic-partition, the offset after the last event it
//! applied — stored with the data as the checkpoint of pipeline `<group>:<topic>:<partition>` (position
//! `kafka:<topic>:<partition>`, offset = the next event's). A worker that takes a partition over reads
//! from the group's committed offset (committed only once every sink applied, so never ahead of any
//! sink) and each sink skips the events it already holds. Events of partitions a rebalance takes away
//! are dropped unapplied: their new owner reads them again.
//!
//! Each change keeps its source position (file, offset, GTID state) from the event, so sinks order
//! writes as `polyrepl run` would (Cassandra's write timestamps). Table schemas come from the MySQL
//! source (`--schema-source`), read at start-up.
//!
//! Metrics are `run`'s ([`Metrics`]): the source side counts the events read, each sink (one set of
//! counters per --sink, whatever the partitions) what it applied, its state and last position.
//!
//! Not built yet: schemas from the events themselves (a worker without access to the source), and a
//! fence against a worker that lost its partitions while paused longer than the session timeout and
//! then writes once more.

use crate::error::{EngineError, Result};
use crate::metrics::{Metrics, SinkStats};
use crate::pipeline::{record_applied, set_state};
use crate::registry::open_sink_with;
use polyrepl_core::{
    Batch, Change, Checkpoint, OnUnmappable, Position, RowPolicy, Sink, TableFilter, TableId, TableSchema,
};
use polyrepl_kafka::consume::{Event, GroupReader};
use polyrepl_kafka::decode::{self, Decoded};
use polyrepl_mysql::source_url::SourceUrl;
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What `polyrepl apply` is asked to do.
#[derive(Debug, Clone)]
pub struct ApplyConfig {
    /// The Kafka brokers, `kafka://HOST:PORT[,HOST:PORT]` (options after `?` are the sink's, ignored).
    pub source: String,
    /// Topics to read, a glob (`polyrepl.shop.*`).
    pub topics: String,
    /// The consumer group: workers with the same group share the partitions.
    pub group: String,
    /// The MySQL source the events came from, for the tables' schemas.
    pub schema_source: String,
    pub tables: Vec<String>,
    pub exclude: Vec<String>,
    pub sinks: Vec<String>,
    /// Events of one partition applied together at most.
    pub batch_events: usize,
    /// How long an event may wait for more before its batch is applied.
    pub batch_delay: Duration,
    pub on_unmappable: OnUnmappable,
}

/// One partition this worker holds: its sinks with the offset each holds, and the events read since the
/// last apply.
struct Partition {
    /// Each sink with the offset it holds and its counters.
    sinks: Vec<(Box<dyn Sink>, i64, Arc<SinkStats>)>,
    pending: Vec<(i64, Option<Arc<TableSchema>>, Decoded)>,
    oldest: Instant,
}

/// The checkpoint position of a topic-partition at `next_offset`.
fn kafka_position(topic: &str, partition: i32, next_offset: i64) -> Position {
    Position::new(format!("kafka:{topic}:{partition}"), next_offset.max(0) as u64)
}

/// Runs the worker until `shutdown` (the batches read are applied first) or a definite error, counting
/// in `metrics`.
pub async fn apply(cfg: ApplyConfig, metrics: Arc<Metrics>, mut shutdown: watch::Receiver<bool>) -> Result<()> {
    let brokers = polyrepl_kafka::options::parse(&cfg.source).map_err(EngineError::Settings)?.brokers;
    let url = SourceUrl::parse(&cfg.schema_source)?;
    let filter = TableFilter::new(&cfg.tables, &cfg.exclude).map_err(EngineError::Settings)?;
    let report = polyrepl_mysql::checks::run_startup_checks(&url, &filter).await?;
    let tables = report.tables;
    let schemas: HashMap<TableId, Arc<TableSchema>> = tables.iter().map(|t| (t.id.clone(), t.clone())).collect();
    let policy = RowPolicy::new(cfg.on_unmappable);
    let mut stats = Vec::new();
    for sink_url in &cfg.sinks {
        let mut sink = open_sink_with(sink_url, &format!("{}:prepare", cfg.group), policy.clone()).await?;
        sink.prepare(&tables).await.map_err(EngineError::sink_step(format!("preparing the sink {}", sink.name())))?;
        let st = metrics.sink(sink.name());
        set_state(&st, "ok");
        stats.push(st);
    }
    let reader = GroupReader::join(&brokers, &cfg.group, &cfg.topics)
        .map_err(|e| EngineError::Settings(format!("joining consumer group '{}' at {brokers}: {e}", cfg.group)))?;
    tracing::info!(group = %cfg.group, topics = %cfg.topics, tables = tables.len(), "apply: reading change events");
    let mut held: HashMap<(String, i32), Partition> = HashMap::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let event = tokio::select! {
            e = reader.next(Duration::from_millis(50)) => e.map_err(|e| EngineError::Settings(format!("reading from Kafka: {e}")))?,
            _ = shutdown.changed() => None,
        };
        for (topic, partition) in reader.take_revoked() {
            if let Some(p) = held.remove(&(topic.clone(), partition)) {
                tracing::info!(%topic, partition, dropped = p.pending.len(), "partition taken away: its unapplied events are its new owner's");
            }
        }
        if let Some(event) = event {
            let id = (event.topic.clone(), event.partition);
            if !held.contains_key(&id) {
                let p = open_partition(&cfg, &policy, &tables, &stats, &event.topic, event.partition).await?;
                held.insert(id.clone(), p);
            }
            let p = held.get_mut(&id).expect("inserted above");
            if p.pending.is_empty() {
                p.oldest = Instant::now();
            }
            let (table, decoded) = decode_event(&schemas, &event).map_err(EngineError::Settings)?;
            count_read(&metrics, &event, &decoded);
            p.pending.push((event.offset, table, decoded));
            if p.pending.len() >= cfg.batch_events {
                flush(&reader, &id, p, &shutdown).await?;
            }
        }
        for (id, p) in held.iter_mut() {
            if !p.pending.is_empty() && p.oldest.elapsed() >= cfg.batch_delay {
                flush(&reader, id, p, &shutdown).await?;
            }
        }
    }
    for (id, p) in held.iter_mut() {
        flush(&reader, id, p, &shutdown).await?;
    }
    Ok(())
}

/// Counts an event read in the source-side metrics.
fn count_read(metrics: &Metrics, event: &Event, decoded: &Decoded) {
    let source = &metrics.source;
    if let Decoded::Change(c) = decoded {
        source.changes_read.fetch_add(1, Relaxed);
        source.last_source_ts.fetch_max(u64::from(c.source_ts), Relaxed);
        *source.per_table.lock().unwrap().entry(c.table.id.to_string()).or_default() += 1;
    }
    *source.position.lock().unwrap() =
        Some(kafka_position(&event.topic, event.partition, event.offset + 1).to_string());
}

/// Opens every sink for a partition newly read, with the offset each holds.
async fn open_partition(
    cfg: &ApplyConfig,
    policy: &RowPolicy,
    tables: &[Arc<TableSchema>],
    stats: &[Arc<SinkStats>],
    topic: &str,
    partition: i32,
) -> Result<Partition> {
    let pipeline = format!("{}:{topic}:{partition}", cfg.group);
    let file = kafka_position(topic, partition, 0).file;
    let mut sinks = Vec::new();
    for (sink_url, st) in cfg.sinks.iter().zip(stats) {
        let mut sink = open_sink_with(sink_url, &pipeline, policy.clone()).await?;
        let step = |what: &str| EngineError::sink_step(format!("{what} of {} for {topic}/{partition}", sink_url));
        sink.prepare(tables).await.map_err(step("preparing"))?;
        let stored = sink.load_checkpoint(&pipeline).await.map_err(step("reading the offset"))?;
        let offset = stored.filter(|c| c.position.file == file).map_or(0, |c| c.position.offset as i64);
        tracing::info!(sink = sink.name(), %topic, partition, offset, "partition taken: the sink resumes at its own offset");
        sinks.push((sink, offset, st.clone()));
    }
    Ok(Partition { sinks, pending: Vec::new(), oldest: Instant::now() })
}

/// An event → its table (if selected) and what it asks.
fn decode_event(
    schemas: &HashMap<TableId, Arc<TableSchema>>,
    event: &Event,
) -> std::result::Result<(Option<Arc<TableSchema>>, Decoded), String> {
    let Some(value) = &event.value else { return Ok((None, Decoded::Nothing)) };
    let bad = |e: String| format!("{} partition {} offset {}: {e}", event.topic, event.partition, event.offset);
    let value: serde_json::Value = serde_json::from_slice(value).map_err(|e| bad(format!("not JSON: {e}")))?;
    let Some(table) = decode::table_of(&value).and_then(|id| schemas.get(&id).cloned()) else {
        return Ok((None, Decoded::Nothing));
    };
    let key = match &event.key {
        Some(k) => Some(serde_json::from_slice::<serde_json::Value>(k).map_err(|e| bad(format!("key not JSON: {e}")))?),
        None => None,
    };
    let decoded = decode::event(&table, key.as_ref(), &value).map_err(bad)?;
    Ok((Some(table), decoded))
}

/// Applies the partition's pending events to every sink (each from the offset it holds, a truncate as
/// its own step), then commits the group's offset.
async fn flush(
    reader: &GroupReader,
    (topic, partition): &(String, i32),
    p: &mut Partition,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let Some(last) = p.pending.last().map(|(o, _, _)| *o) else { return Ok(()) };
    let next = last + 1;
    // The sinks apply at once, each at its own pace: a batch waits for the slowest, not for the sum.
    let pending = &p.pending;
    futures::future::try_join_all(p.sinks.iter_mut().map(|(sink, held, stats)| {
        apply_pending(sink.as_mut(), held, stats, pending, topic, *partition, next, shutdown)
    }))
    .await?;
    p.pending.clear();
    if let Err(e) = reader.commit(topic, *partition, next) {
        tracing::warn!(%topic, partition, error = %e, "committing the group's offset failed (the sinks hold theirs)");
    }
    Ok(())
}

/// Applies to one sink the pending events after the offset it holds (a truncate as its own step), and
/// moves that offset to `next`.
#[allow(clippy::too_many_arguments)]
async fn apply_pending(
    sink: &mut dyn Sink,
    held: &mut i64,
    stats: &SinkStats,
    pending: &[(i64, Option<Arc<TableSchema>>, Decoded)],
    topic: &str,
    partition: i32,
    next: i64,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let mut changes: Vec<Change> = Vec::new();
    for (offset, table, decoded) in pending.iter().filter(|(o, _, _)| *o >= *held) {
        match (decoded, table) {
            (Decoded::Change(c), _) => changes.push(c.clone()),
            (Decoded::Truncate, Some(table)) => {
                let before = Batch::new(
                    std::mem::take(&mut changes),
                    Checkpoint::streaming(kafka_position(topic, partition, *offset)),
                );
                apply_with_retry(sink, &before, stats, shutdown).await?;
                sink.truncate_table(table).await.map_err(EngineError::sink_step(format!("truncating {}", table.id)))?;
            }
            _ => {}
        }
    }
    let batch = Batch::new(changes, Checkpoint::streaming(kafka_position(topic, partition, next)));
    apply_with_retry(sink, &batch, stats, shutdown).await?;
    *held = next;
    Ok(())
}

/// Applies `batch`, retrying transient failures with backoff until shutdown; counts it in `stats`.
async fn apply_with_retry(
    sink: &mut dyn Sink,
    batch: &Batch,
    stats: &SinkStats,
    shutdown: &watch::Receiver<bool>,
) -> Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match sink.apply(batch).await {
            Ok(()) => {
                record_applied(stats, batch);
                set_state(stats, "ok");
                return Ok(());
            }
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                stats.errors.fetch_add(1, Relaxed);
                set_state(stats, "retrying");
                tracing::warn!(error = %e, "applying failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => {
                stats.errors.fetch_add(1, Relaxed);
                set_state(stats, "failed");
                return Err(EngineError::sink_step(format!("applying to {}", sink.name()))(e));
            }
        }
    }
}
