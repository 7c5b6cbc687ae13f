//! The phases that drive polyrepl's own code: decode (the binlog reader alone), snapshot and cdc (the
//! real `run`: [`polyrepl_engine::prepare`] untimed, then [`polyrepl_engine::run`] with `--stop-at-end`,
//! timed), and the helpers every phase shares: reading the source rows, resetting a sink, dropping
//! everything (the sinks' tables through their own `Sink::drop_table`, never by hand).

use super::data::Generated;
use super::raw::Rounds;
use super::{Bench, SinkKind};
use crate::config::{PipelineArgs, RunArgs};
use anyhow::{anyhow, bail, Context, Result};
use mongodb::bson::{doc, Document};
use mysql_async::prelude::*;
use polyrepl_core::{Batch, Checkpoint, Position, Row, TableFilter, TableSchema};
use polyrepl_engine::control::Inbox;
use polyrepl_engine::Metrics;
use polyrepl_mysql::binlog::{BinlogOptions, BinlogReader, SourceEvent};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The schema of a bench table, as `run` sees it (same start-up checks).
pub async fn table_schema(bench: &Bench, table: &str) -> Result<Arc<TableSchema>> {
    let filter = TableFilter::new(&[format!("{}.{table}", bench.db)], &[]).map_err(|e| anyhow!("{e}"))?;
    let report = polyrepl_mysql::checks::run_startup_checks(&bench.url, &filter).await?;
    report.tables.into_iter().next().ok_or_else(|| anyhow!("table {}.{table} not found", bench.db))
}

/// Every row of a bench table, read with polyrepl's own snapshot reader.
pub async fn load_rows(bench: &Bench, table: &str) -> Result<(Arc<TableSchema>, Vec<Row>)> {
    let schema = table_schema(bench, table).await?;
    let mut snapshot =
        polyrepl_mysql::snapshot::Snapshot::begin(&bench.url, polyrepl_engine::settings::DEFAULT_CHUNK_ROWS).await?;
    let mut rows = Vec::new();
    {
        let mut chunks = snapshot.table_chunks(schema.clone(), None);
        while let Some(changes) = chunks.next_chunk().await? {
            rows.extend(changes.into_iter().filter_map(|c| c.after));
        }
    }
    snapshot.finish().await?;
    Ok((schema, rows))
}

/// Empties what a sink holds of a bench table where that state would change the work of the next
/// round: MongoDB (FerretDB turns inserts of existing keys into delete + insert) and Redis (DEL of an
/// existing hash costs more), with the sink's own [`polyrepl_core::Sink::drop_table`] (the raw MongoDB
/// round creates the collection again itself; `run` prepares it). Cassandra writes cost the same either
/// way and every write carries its position's timestamp, so its table is left as it is.
pub async fn reset_sink(bench: &Bench, kind: SinkKind, table: &str) -> Result<()> {
    if kind == SinkKind::Cassandra {
        return Ok(());
    }
    let schema = table_schema(bench, table).await?;
    let mut sink = polyrepl_engine::open_sink(bench.sink_url(kind), "polyrepl_bench").await?;
    sink.drop_table(&schema).await.with_context(|| format!("resetting {} in {}", schema.id, kind.label()))?;
    Ok(())
}

/// The settings of a `run` of `table` (comma-separated names for several) into `kinds` under pipeline
/// `name`.
pub fn run_config(
    bench: &Bench,
    table: &str,
    kinds: &[SinkKind],
    name: &str,
    stop_at_end: bool,
) -> Result<polyrepl_engine::RunConfig> {
    let sinks = kinds.iter().map(|&k| bench.sink_url(k).to_string()).collect();
    run_config_into(bench, table, sinks, name, stop_at_end)
}

/// [`run_config`] into the sinks at `sinks` (URLs).
pub fn run_config_into(
    bench: &Bench,
    table: &str,
    sinks: Vec<String>,
    name: &str,
    stop_at_end: bool,
) -> Result<polyrepl_engine::RunConfig> {
    RunArgs {
        pipeline: PipelineArgs {
            source: Some(bench.args.source.clone()),
            tables: table.split(',').map(|t| format!("{}.{t}", bench.db)).collect(),
            sinks,
            name: Some(name.to_string()),
            ..Default::default()
        },
        stop_at_end,
        ..Default::default()
    }
    .resolve()
    .map(|r| r.run)
}

/// Stores a streaming checkpoint at `position` for pipeline `name` in each sink, so `run` streams
/// from there without a snapshot (an empty batch carries only the checkpoint).
pub async fn prestore_checkpoint(bench: &Bench, kinds: &[SinkKind], name: &str, position: &Position) -> Result<()> {
    for &kind in kinds {
        prestore_checkpoint_in(bench.sink_url(kind), name, position).await?;
    }
    Ok(())
}

/// [`prestore_checkpoint`] in the sink at `url`.
pub async fn prestore_checkpoint_in(url: &str, name: &str, position: &Position) -> Result<()> {
    let mut sink = polyrepl_engine::open_sink(url, name).await?;
    sink.apply(&Batch::new(vec![], Checkpoint::streaming(position.clone()))).await?;
    Ok(())
}

/// Runs `run` to the end of the binlog; returns the time of `run::run` (after checks and connections)
/// and its metrics.
pub async fn run_to_end(cfg: polyrepl_engine::RunConfig) -> Result<(Duration, Arc<Metrics>)> {
    let prepared = polyrepl_engine::prepare(&cfg).await?;
    let metrics = Arc::new(Metrics::default());
    let (_keep_open, never) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    polyrepl_engine::run(cfg, prepared, metrics.clone(), never, Inbox::none()).await?;
    Ok((started.elapsed(), metrics))
}

/// Snapshot phase: `run` copies `snap` into `kind` alone, `--rounds` times from an emptied sink, with
/// `parallelism` snapshot readers (`None`: `run`'s default).
pub async fn snapshot(bench: &Bench, kind: SinkKind, parallelism: Option<usize>) -> Result<Rounds> {
    let mut rounds = Vec::new();
    for round in 1..=bench.args.rounds {
        rounds.push(snapshot_round(bench, kind, parallelism, round).await?);
    }
    Ok(rounds)
}

/// One round of the snapshot phase (see [`snapshot`]): rows/s.
pub async fn snapshot_round(bench: &Bench, kind: SinkKind, parallelism: Option<usize>, round: usize) -> Result<f64> {
    let with = parallelism.map_or(String::new(), |p| format!(" parallelism {p}"));
    reset_sink(bench, kind, "snap").await?;
    let mut cfg = run_config(bench, "snap", &[kind], &bench.pipeline("snap"), true)?;
    if let Some(p) = parallelism {
        cfg.snapshot_parallelism = p;
    }
    let (elapsed, metrics) = run_to_end(cfg).await?;
    let rows = metrics.source.snapshot_rows.load(Relaxed);
    if rows != bench.args.rows as u64 {
        bail!("the snapshot read {rows} rows, expected {}", bench.args.rows);
    }
    let rate = rows as f64 / elapsed.as_secs_f64();
    bench.note(format!(
        "snapshot {}{with} round {round}: {rate:.0} rows/s ({:.2} s)",
        kind.label(),
        elapsed.as_secs_f64()
    ));
    Ok(rate)
}

/// Cdc phase: `run` streams the pre-generated `cdc` range into `kinds` (one sink, or all at once),
/// each round from a pre-stored checkpoint at the start of the range into emptied sinks.
pub async fn cdc(bench: &Bench, kinds: &[SinkKind], generated: &Generated) -> Result<Rounds> {
    let mut rounds = Vec::new();
    for round in 1..=bench.args.rounds {
        rounds.push(cdc_round(bench, kinds, generated, round).await?);
    }
    Ok(rounds)
}

/// One round of the cdc phase (see [`cdc`]): changes/s.
pub async fn cdc_round(bench: &Bench, kinds: &[SinkKind], generated: &Generated, round: usize) -> Result<f64> {
    let label = kinds.iter().map(|k| k.label()).collect::<Vec<_>>().join("+");
    for &kind in kinds {
        reset_sink(bench, kind, "cdc").await?;
    }
    let name = bench.pipeline("cdc");
    prestore_checkpoint(bench, kinds, &name, &generated.cdc_from).await?;
    let (elapsed, metrics) = run_to_end(run_config(bench, "cdc", kinds, &name, true)?).await?;
    let read = metrics.source.changes_read.load(Relaxed);
    if read != generated.cdc_changes {
        bail!("the cdc run read {read} changes, expected {}", generated.cdc_changes);
    }
    for (sink, stats) in metrics.sinks.lock().unwrap().iter() {
        let applied = stats.changes_applied.load(Relaxed);
        if applied != read {
            bail!("{sink} applied {applied} of {read} changes");
        }
    }
    let rate = read as f64 / elapsed.as_secs_f64();
    bench.note(format!("cdc {label} round {round}: {rate:.0} changes/s ({:.2} s)", elapsed.as_secs_f64()));
    Ok(rate)
}

/// What the decode phase measured, per round.
pub struct DecodeRounds {
    /// Row changes decoded per second, end to end (server + network + decode).
    pub changes_per_s: Rounds,
    /// Transactions decoded per second, end to end.
    pub transactions_per_s: Rounds,
    /// Row changes decoded per second from the range's raw events held in memory (the reader's
    /// own ceiling on one core: event parsing + row decoding, no server, no network).
    pub cpu_changes_per_s: Rounds,
    /// Events and bytes of the recorded range.
    pub recorded_events: usize,
    pub recorded_bytes: usize,
}

/// Decode phase: the binlog reader alone over the `cdc` range, no sink, one untimed warm-up pass
/// that also records the range's raw events; then the same range decoded in memory by the same code
/// ([`polyrepl_mysql::binlog::RecordedBinlog::replay`]), one untimed warm-up and `--rounds` timed passes.
pub async fn decode(bench: &Bench, generated: &Generated) -> Result<DecodeRounds> {
    let filter = TableFilter::new(&[format!("{}.cdc", bench.db)], &[]).map_err(|e| anyhow!("{e}"))?;
    let mut out = DecodeRounds {
        changes_per_s: vec![],
        transactions_per_s: vec![],
        cpu_changes_per_s: vec![],
        recorded_events: 0,
        recorded_bytes: 0,
    };
    let mut recorded = None;
    for round in 0..=bench.args.rounds {
        // A server id of its own per pass (two readers with one id kick each other out).
        let server_id = 3_000_000 + (std::process::id() % 100_000) * 10 + round as u32;
        let mut reader = BinlogReader::start(
            &bench.url,
            &generated.cdc_from,
            filter.clone(),
            BinlogOptions::new(server_id).stop_at_end(),
        )
        .await?;
        if round == 0 {
            reader.record();
        }
        let (mut changes, mut transactions) = (0u64, 0u64);
        let started = Instant::now();
        while let Some(event) = reader.next_event().await? {
            match &event {
                SourceEvent::Transaction { changes: c, .. } => {
                    changes += c.len() as u64;
                    transactions += 1;
                }
                SourceEvent::Part { changes: c, .. } => changes += c.len() as u64,
                _ => {}
            }
            if event.position() >= &generated.cdc_to {
                break;
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        if round == 0 {
            recorded = reader.take_recording();
        }
        let _ = reader.close().await;
        if changes != generated.cdc_changes {
            bail!("the decode pass read {changes} changes, expected {}", generated.cdc_changes);
        }
        if round == 0 {
            continue; // warm-up
        }
        out.changes_per_s.push(changes as f64 / elapsed);
        out.transactions_per_s.push(transactions as f64 / elapsed);
        bench.note(format!(
            "decode round {round}: {:.0} changes/s, {:.0} transactions/s",
            changes as f64 / elapsed,
            transactions as f64 / elapsed
        ));
    }
    let recorded = recorded.ok_or_else(|| anyhow!("the warm-up decode pass recorded nothing"))?;
    out.recorded_events = recorded.events();
    out.recorded_bytes = recorded.bytes();
    for round in 0..=bench.args.rounds {
        let mut changes = 0u64;
        let started = Instant::now();
        recorded.replay(|event| {
            if let SourceEvent::Transaction { changes: c, .. } | SourceEvent::Part { changes: c, .. } = event {
                changes += c.len() as u64;
            }
            event.position() < &generated.cdc_to
        })?;
        let elapsed = started.elapsed().as_secs_f64();
        if changes != generated.cdc_changes {
            bail!("the in-memory decode pass read {changes} changes, expected {}", generated.cdc_changes);
        }
        if round == 0 {
            continue; // warm-up
        }
        out.cpu_changes_per_s.push(changes as f64 / elapsed);
        bench.note(format!("decode in memory round {round}: {:.0} changes/s", changes as f64 / elapsed));
    }
    Ok(out)
}

/// Drops the bench database from the source and every selected sink, and the checkpoints of the
/// pipelines the bench used. Every table of the bench database leaves each sink through the sink's own
/// [`polyrepl_core::Sink::drop_table`]; what the trait does not cover is removed here: the (then empty)
/// MongoDB database and Cassandra keyspace, and the checkpoints. Tries every step and reports the first
/// failure.
pub async fn drop_everything(bench: &Bench) -> Result<()> {
    let mut first_error: Option<anyhow::Error> = None;
    let mut keep = |r: Result<()>| {
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    };
    // The bench tables' schemas, read before the source database goes (no sink holds a table the source
    // never had).
    let mut tables: Vec<TableSchema> = Vec::new();
    keep(
        async {
            let mut conn = mysql_async::Conn::new(bench.url.opts(false)).await?;
            if !bench.args.sinks.is_empty() {
                let filter = TableFilter::new(&[format!("{}.*", bench.db)], &[]).map_err(|e| anyhow!("{e}"))?;
                tables = polyrepl_mysql::schema::discover_tables(&mut conn, &filter, &bench.url.redacted()).await?;
            }
            conn.query_drop(format!("DROP DATABASE IF EXISTS `{}`", bench.db)).await?;
            conn.disconnect().await?;
            Ok::<(), anyhow::Error>(())
        }
        .await
        .context("dropping the source database"),
    );
    let names: Vec<String> = bench.pipelines.lock().unwrap().clone();
    for &kind in &bench.args.sinks {
        let dropped = async {
            let mut sink = polyrepl_engine::open_sink(bench.sink_url(kind), "polyrepl_bench").await?;
            for table in &tables {
                sink.drop_table(table).await.with_context(|| format!("dropping {}", table.id))?;
            }
            Ok::<(), anyhow::Error>(())
        }
        .await;
        keep(dropped.with_context(|| format!("dropping the bench tables from {}", kind.label())));
        let r = match kind {
            SinkKind::Mongodb | SinkKind::MongoJava => {
                async {
                    let client = mongodb::Client::with_uri_str(bench.sink_url(kind)).await?;
                    client.database(&bench.db).drop().await?;
                    let checkpoints = client
                        .database(polyrepl_mongo::checkpoint::CHECKPOINT_DATABASE)
                        .collection::<Document>(polyrepl_mongo::checkpoint::CHECKPOINT_COLLECTION);
                    checkpoints.delete_many(doc! { "_id": { "$in": names.clone() } }).await?;
                    Ok::<(), anyhow::Error>(())
                }
                .await
            }
            SinkKind::Redis => {
                async {
                    let client = redis::Client::open(bench.sink_url(kind))?;
                    let mut conn = client.get_multiplexed_async_connection().await?;
                    let keys: Vec<String> = names.iter().map(|n| polyrepl_redis::naming::checkpoint_key(n)).collect();
                    if !keys.is_empty() {
                        redis::cmd("UNLINK").arg(&keys).query_async::<()>(&mut conn).await?;
                    }
                    Ok::<(), anyhow::Error>(())
                }
                .await
            }
            SinkKind::Cassandra => {
                async {
                    let sink = polyrepl_cassandra::CassandraSink::connect(
                        bench.sink_url(kind),
                        "polyrepl_bench",
                        Default::default(),
                    )
                    .await?;
                    let session = sink.session();
                    session.query_unpaged(format!("DROP KEYSPACE IF EXISTS \"{}\"", bench.db), &[]).await?;
                    for name in &names {
                        session
                            .query_unpaged(
                                format!(
                                    "DELETE FROM {}.{} WHERE pipeline = ?",
                                    polyrepl_cassandra::checkpoint::CHECKPOINT_KEYSPACE,
                                    polyrepl_cassandra::checkpoint::CHECKPOINT_TABLE
                                ),
                                (name.as_str(),),
                            )
                            .await?;
                    }
                    Ok::<(), anyhow::Error>(())
                }
                .await
            }
        };
        keep(r.with_context(|| format!("dropping the bench data from {}", kind.label())));
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
