//! `polyrepl run`: start-up checks, the initial snapshot where a sink needs one, then binlog streaming,
//! all feeding the pipeline.
//!
//! Invariants:
//! - Streaming starts at the smallest position any sink needs: a sink's streaming checkpoint, or the
//!   position of the snapshot that sink is (or was) receiving. Sinks skip what they already hold.
//! - A snapshot resumed after a crash continues after the last key *every* sink applied (see
//!   [`crate::resume`]: sinks apply independently and may stand at different chunks) but keeps the *first*
//!   snapshot's position as its checkpoint: rows copied later reflect a newer state, and streaming from
//!   the older position replays every change since, so every row converges to the source's state.
//! - The snapshot's SELECTs run inside its consistent-snapshot transaction (polyrepl_mysql::Snapshot).
//! - A lost source connection is retried with backoff from the last position handed to the pipeline.

use crate::config::RunConfig;
use crate::{resnapshot, resume};
use anyhow::{anyhow, bail, Context, Result};
use polyrepl_core::metrics::Metrics;
use polyrepl_core::pipeline::{self, PipelineConfig, SinkSlot, Unit};
use polyrepl_core::{Checkpoint, Position, Sink, SnapshotProgress, TableFilter, TableSchema};
use polyrepl_mysql::binlog::{BinlogOptions, BinlogReader, SourceEvent};
use polyrepl_mysql::snapshot::Snapshot;
use polyrepl_mysql::source_url::SourceUrl;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Opens the sink a URL names.
pub async fn open_sink(url: &str, pipeline_name: &str) -> Result<Box<dyn Sink>> {
    let scheme = url.split("://").next().unwrap_or("");
    match scheme {
        "mongodb" | "mongodb+srv" => Ok(Box::new(polyrepl_mongo::MongoSink::connect(url, pipeline_name).await?)),
        "redis" | "rediss" | "redis+cluster" | "valkey+cluster" => Ok(Box::new(
            polyrepl_redis::RedisSink::connect(url, pipeline_name, Default::default()).await?,
        )),
        "cassandra" => Ok(Box::new(
            polyrepl_cassandra::CassandraSink::connect(url, pipeline_name, Default::default()).await?,
        )),
        _ => bail!("'{}' is not a sink URL polyrepl knows: expected mongodb://HOST:PORT, redis://HOST:PORT, redis+cluster://HOST:PORT[,HOST:PORT] or cassandra://HOST:PORT", redact(url)),
    }
}

/// A URL with any password replaced by ***.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..s + 3], user, &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Everything `run` needs, checked and connected.
pub struct Prepared {
    pub url: SourceUrl,
    pub filter: TableFilter,
    pub tables: Vec<Arc<TableSchema>>,
    pub slots: Vec<SinkSlot>,
}

/// Start-up: source checks, sinks connected and prepared, checkpoints loaded. Nothing is written to
/// the source; sinks only get their collections/tables created.
pub async fn prepare(cfg: &RunConfig) -> Result<Prepared> {
    let url = SourceUrl::parse(&cfg.source).map_err(|e| anyhow!("{e}"))?;
    let filter = TableFilter::new(&cfg.tables, &cfg.exclude).map_err(|e| anyhow!("{e}"))?;
    let report = polyrepl_mysql::checks::run_startup_checks(&url, &filter).await?;
    // Connect every sink before preparing any: a wrong URL must not leave collections half-created.
    let mut sinks = Vec::new();
    for sink_url in &cfg.sinks {
        sinks.push(open_sink(sink_url, &cfg.name).await?);
    }
    for sink in sinks.iter_mut() {
        sink.prepare(&report.tables).await.with_context(|| format!("preparing the sink {}", sink.name()))?;
    }
    let mut slots = Vec::new();
    for mut sink in sinks {
        let held = sink
            .load_checkpoint(&cfg.name)
            .await
            .with_context(|| format!("reading the checkpoint of {}", sink.name()))?;
        let resume_from = if cfg.resnapshot { None } else { held.clone() };
        match &resume_from {
            _ if cfg.resnapshot => {
                tracing::info!(sink = sink.name(), held = ?held.map(|c| c.position.to_string()), "--resnapshot: copying every table again")
            }
            Some(c) => {
                tracing::info!(sink = sink.name(), position = %c.position, snapshot_in_progress = c.snapshot.is_some(), "resuming")
            }
            None => tracing::info!(sink = sink.name(), "no checkpoint: starting with a snapshot"),
        }
        slots.push(SinkSlot { sink, resume_from });
    }
    Ok(Prepared { url, filter, tables: report.tables, slots })
}

/// Runs the pipeline until the source ends (`--stop-at-end`), `shutdown` turns true, or an error.
pub async fn run(
    cfg: RunConfig,
    prepared: Prepared,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let Prepared { url, filter, tables, slots } = prepared;
    let checkpoints: Vec<Option<Checkpoint>> = slots.iter().map(|s| s.resume_from.clone()).collect();
    let (tx, rx) = mpsc::channel::<Unit>(4);
    let pcfg = PipelineConfig {
        max_batch_changes: cfg.batch_changes,
        max_batch_delay: Duration::from_millis(cfg.batch_delay_ms),
        ..PipelineConfig::default()
    };
    let mut pipeline_task = tokio::spawn(pipeline::run(rx, slots, pcfg, metrics.clone()));

    let source = drive_source(&cfg, &url, &filter, &tables, &checkpoints, tx, &metrics, &mut shutdown);
    tokio::pin!(source);
    tokio::select! {
        r = &mut source => {
            // Source done (or failed): the sender is dropped, the pipeline drains what it holds.
            let drained = pipeline_task.await.context("pipeline task")?;
            r?;
            drained?;
        }
        r = &mut pipeline_task => {
            r.context("pipeline task")??;
            bail!("the pipeline stopped unexpectedly");
        }
    }
    Ok(())
}

/// Snapshot (where needed) then streaming, feeding `tx`.
#[allow(clippy::too_many_arguments)]
async fn drive_source(
    cfg: &RunConfig,
    url: &SourceUrl,
    filter: &TableFilter,
    tables: &[Arc<TableSchema>],
    checkpoints: &[Option<Checkpoint>],
    tx: mpsc::Sender<Unit>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<()> {
    let needs_snapshot = checkpoints.iter().any(|c| c.as_ref().is_none_or(|c| c.snapshot.is_some()));
    let mut stream_from: Option<Position> =
        checkpoints.iter().flatten().filter(|c| c.snapshot.is_none()).map(|c| c.position.clone()).min();

    if needs_snapshot {
        let resumed = resume::snapshot_resume_point(checkpoints);
        let sweep_cut_short =
            checkpoints.iter().flatten().any(|c| c.snapshot.as_ref().is_some_and(resnapshot::is_nothing_copied));
        let snap_position = run_snapshot(cfg, url, tables, resumed, sweep_cut_short, &tx, metrics, shutdown).await?;
        let Some(snap_position) = snap_position else { return Ok(()) }; // shut down mid-snapshot
        stream_from = Some(stream_from.map_or(snap_position.clone(), |p| p.min(snap_position)));
    }
    let mut from = stream_from.expect("a position: every sink has a checkpoint or got a snapshot");
    let mut backoff = Duration::from_millis(200);
    let mut last_heartbeat_unit = Instant::now();
    loop {
        let mut options = BinlogOptions::new(cfg.server_id);
        if cfg.stop_at_end {
            options = options.stop_at_end();
        }
        let mut reader = match BinlogReader::start(url, &from, filter.clone(), options).await {
            Ok(r) => r,
            Err(e) if e.is_transient() && !*shutdown.borrow() => {
                tracing::warn!(error = %e, "source unavailable; retrying");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.changed() => return Ok(()) }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(position = %from, "streaming from the binlog");
        loop {
            let event = tokio::select! {
                e = reader.next_event() => e,
                _ = shutdown.changed() => {
                    // Final checkpoint: the last position handed over.
                    let _ = tx.send(Unit { changes: vec![], checkpoint: Checkpoint::streaming(from.clone()) }).await;
                    return Ok(());
                }
            };
            match event {
                Ok(Some(SourceEvent::Transaction { position, changes })) => {
                    backoff = Duration::from_millis(200);
                    record_read(metrics, &changes, &position);
                    from = position.clone();
                    if tx.send(Unit { changes, checkpoint: Checkpoint::streaming(position) }).await.is_err() {
                        return Ok(()); // the pipeline stopped; its error is reported by `run`
                    }
                }
                Ok(Some(SourceEvent::Heartbeat { position })) => {
                    metrics.source.heartbeats.fetch_add(1, Relaxed);
                    *metrics.source.position.lock().unwrap() = Some(position.to_string());
                    if position > from && last_heartbeat_unit.elapsed() > Duration::from_secs(5) {
                        // Move checkpoints past transactions on other tables, so a restart need not re-read them.
                        from = position.clone();
                        last_heartbeat_unit = Instant::now();
                        if tx.send(Unit { changes: vec![], checkpoint: Checkpoint::streaming(position) }).await.is_err()
                        {
                            return Ok(());
                        }
                    }
                }
                Ok(Some(SourceEvent::Ddl { position, database, statement })) => {
                    tracing::info!(%position, %database, statement = %statement.chars().take(200).collect::<String>(), "DDL on the source");
                }
                Ok(None) if cfg.stop_at_end => return Ok(()), // end of binlog with --stop-at-end
                // A transient error, or (following the binlog) a stream the server closed, e.g. on a
                // shutdown or restart: a lost source, not the end of the work. Reconnect from `from`.
                Err(e) if !e.is_transient() => return Err(e.into()),
                lost @ (Ok(None) | Err(_)) => {
                    let reason =
                        lost.err().map_or_else(|| "the server closed the binlog stream".to_string(), |e| e.to_string());
                    tracing::warn!(%reason, position = %from, "lost the source; reconnecting");
                    tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = shutdown.changed() => return Ok(()) }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    break;
                }
            }
        }
    }
}

fn record_read(metrics: &Metrics, changes: &[polyrepl_core::Change], position: &Position) {
    let s = &metrics.source;
    s.changes_read.fetch_add(changes.len() as u64, Relaxed);
    s.transactions_read.fetch_add(1, Relaxed);
    if let Some(ts) = changes.iter().map(|c| c.source_ts).max() {
        s.last_source_ts.fetch_max(ts as u64, Relaxed);
    }
    *s.position.lock().unwrap() = Some(position.to_string());
    let mut per_table = s.per_table.lock().unwrap();
    for c in changes {
        *per_table.entry(c.table.id.to_string()).or_default() += 1;
    }
}

/// Copies every table not yet done, chunk by chunk (`resumed`: where every sink's copy stands; see
/// [`resume`]), after the `--resnapshot` sweep when asked or cut short; returns the position streaming must start from
/// (`None` when shut down midway: the checkpoints written so far let the next run resume).
#[allow(clippy::too_many_arguments)]
async fn run_snapshot(
    cfg: &RunConfig,
    url: &SourceUrl,
    tables: &[Arc<TableSchema>],
    resumed: Option<Checkpoint>,
    sweep_cut_short: bool,
    tx: &mpsc::Sender<Unit>,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Position>> {
    let mut snapshot = Snapshot::begin(url).await?.with_chunk_rows(cfg.chunk_rows);
    let (position, mut progress) = match resumed {
        Some(Checkpoint { position, snapshot: Some(p) }) => {
            tracing::info!(%position, done = p.done.len(), "resuming the snapshot after its last applied chunk");
            (position, p)
        }
        _ => (snapshot.position().clone(), SnapshotProgress { done: vec![], current: None }),
    };
    tracing::info!(%position, tables = tables.len(), "snapshot begins");
    if cfg.resnapshot || sweep_cut_short {
        // Remove what the sinks hold beyond the source before copying again; also after a crash
        // during that sweep (a checkpoint that has copied nothing yet).
        match resnapshot::sweep(cfg, url, tables, &position, tx).await? {
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
        let mut chunks = snapshot.table_chunks(table.clone(), resume_key);
        let (mut rows, table_start, mut last_note) = (0u64, Instant::now(), Instant::now());
        loop {
            if *shutdown.borrow() {
                return Ok(None);
            }
            let Some(changes) = chunks.next_chunk().await? else { break };
            rows += changes.len() as u64;
            metrics.source.snapshot_rows.fetch_add(changes.len() as u64, Relaxed);
            let last_key = chunks.last_key().map(|k| k.to_vec()).unwrap_or_default();
            progress.current = Some((table.id.clone(), last_key));
            let unit = Unit {
                changes,
                checkpoint: Checkpoint { position: position.clone(), snapshot: Some(progress.clone()) },
            };
            if tx.send(unit).await.is_err() {
                return Ok(None);
            }
            if last_note.elapsed() > Duration::from_secs(2) {
                last_note = Instant::now();
                eprintln!("  {}", progress_line(&table.id.to_string(), rows, estimate, table_start.elapsed()));
            }
        }
        eprintln!("  {}", progress_line(&table.id.to_string(), rows, rows, table_start.elapsed()));
        progress.done.push(table.id.clone());
        progress.current = None;
    }
    snapshot.finish().await?;
    // The snapshot is complete: from here on, sinks hold a streaming checkpoint.
    if tx.send(Unit { changes: vec![], checkpoint: Checkpoint::streaming(position.clone()) }).await.is_err() {
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
    fn passwords_are_redacted() {
        assert_eq!(redact("mysql://u:secret@h:1/db"), "mysql://u:***@h:1/db");
        assert_eq!(redact("mongodb://h:1"), "mongodb://h:1");
        assert_eq!(redact("mongodb://u@h:1"), "mongodb://u@h:1");
    }

    #[test]
    fn progress_reads_well() {
        assert_eq!(
            progress_line("d.t", 50, 100, Duration::from_secs(1)),
            "snapshot d.t: 50/100 rows (50%), 50 rows/s, ETA 1 s"
        );
    }
}
