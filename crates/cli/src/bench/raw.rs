//! The raw phase: each sink's own ingest limit. The `snap` rows are read from the source and converted
//! with the sink crate's own mapping and naming before the clock starts; the timed part only sends,
//! with the sink's best bulk path and `--writers` concurrent writers, no polyrepl pipeline in between:
//! - MongoDB: unordered `insert` commands into an empty collection; the command size and the number of
//!   concurrent writers are chosen by a trial of [`MONGO_SHAPES`] after the warm-up (FerretDB on SQLite,
//!   for one, is fastest with one writer: its backend serialises writes);
//! - Redis: pipelines of [`REDIS_HSETS_PER_PIPELINE`] `HSET`s;
//! - Cassandra: prepared unlogged batches of [`CASSANDRA_ROWS_PER_BATCH`] INSERTs,
//!   [`CASSANDRA_BATCHES_IN_FLIGHT`] in flight.

use super::{phases, Bench, SinkKind};
use anyhow::{anyhow, bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongodb::bson::{RawArrayBuf, RawDocumentBuf};
use polyrepl_core::{Change, Row, Sink, TableSchema};
use std::sync::Arc;
use std::time::Instant;

/// (documents per `insert` command, concurrent writers) tried for MongoDB; `0` writers = `--writers`.
pub const MONGO_SHAPES: [(usize, usize); 3] = [(5_000, 1), (2_000, 2), (1_000, 0)];
/// Rows each MongoDB shape is tried on.
const MONGO_TRIAL_ROWS: usize = 40_000;
/// `HSET`s per Redis pipeline.
pub const REDIS_HSETS_PER_PIPELINE: usize = 1_000;
/// INSERTs per Cassandra unlogged batch (the sink's own bound: no more than 10 partitions per batch).
pub const CASSANDRA_ROWS_PER_BATCH: usize = polyrepl_cassandra::write::STATEMENTS_PER_BATCH;
/// Cassandra batches in flight at once.
pub const CASSANDRA_BATCHES_IN_FLIGHT: usize = 32;
/// Rows written untimed before the rounds, to warm connections, caches and the JIT.
const WARM_UP_ROWS: usize = 10_000;

/// Rows/s of each timed round.
pub type Rounds = Vec<f64>;

/// Measures `kind`'s raw ingest rate over `--rounds` rounds, calling `after_round(round)` after each
/// timed round (the snapshot phase's round of the same number runs there, so that each ratio compares
/// two rounds measured under the same conditions of a shared machine).
pub async fn measure<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    kind: SinkKind,
    mut after_round: A,
) -> Result<Rounds> {
    let (table, rows) = phases::load_rows(bench, "snap").await?;
    bench.note(format!("raw {}: {} rows read and converting", kind.label(), rows.len()));
    let after_round = &mut after_round;
    let rounds = match kind {
        SinkKind::Mongodb | SinkKind::MongoJava => mongo(bench, kind, &table, &rows, after_round).await?,
        SinkKind::Redis => redis(bench, &table, &rows, after_round).await?,
        SinkKind::Cassandra => cassandra(bench, &table, &rows, after_round).await?,
    };
    // The snapshot phase starts from an empty sink.
    phases::reset_sink(bench, kind, "snap").await?;
    Ok(rounds)
}

fn rate(rows: usize, started: Instant) -> f64 {
    rows as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

async fn mongo<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    kind: SinkKind,
    table: &Arc<TableSchema>,
    rows: &[Row],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_mongo::naming::{document_id, row_document};
    let sink = polyrepl_mongo::MongoSink::connect(bench.sink_url(kind), "polyrepl_bench").await?;
    let mapping = polyrepl_mongo::Mapping::new(sink.server().features, Default::default());
    let documents = rows
        .iter()
        .map(|row| {
            let id = document_id(&mapping, table, &Change::key_of(table, row)).map_err(|m| anyhow!(m))?;
            let document = row_document(&mapping, table, id, row).map_err(|m| anyhow!(m))?;
            RawDocumentBuf::from_document(&document).context("encoding a document")
        })
        .collect::<Result<Vec<_>>>()?;
    let database = sink.client().database(&bench.db);
    // One insert command per chunk, built before the clock starts (the command is consumed by sending).
    let commands = |documents: &[RawDocumentBuf], per_insert: usize| -> Vec<(usize, RawDocumentBuf)> {
        documents
            .chunks(per_insert)
            .map(|chunk| {
                let mut array = RawArrayBuf::new();
                for d in chunk {
                    array.push(d.clone());
                }
                let mut body = RawDocumentBuf::new();
                body.append("insert", "snap");
                body.append("documents", array);
                body.append("ordered", false);
                (chunk.len(), body)
            })
            .collect()
    };
    let send = |commands: Vec<(usize, RawDocumentBuf)>, writers: usize| {
        let database = database.clone();
        async move {
            stream::iter(commands)
                .map(|(count, body)| {
                    let database = database.clone();
                    async move {
                        let reply = database.run_raw_command(body).await.context("raw insert")?;
                        let n = reply.get_i32("n").unwrap_or(0) as usize;
                        if n != count || reply.get("writeErrors").is_some() {
                            bail!("raw insert stored {n} of {count} documents: {reply:?}");
                        }
                        Ok(())
                    }
                })
                .buffer_unordered(writers)
                .try_collect::<Vec<()>>()
                .await
        }
    };
    let warm = &documents[..documents.len().min(WARM_UP_ROWS)];
    phases::reset_sink(bench, kind, "snap").await?;
    send(commands(warm, 1_000), 1).await?;
    // The fastest shape on a trial, then the timed rounds with it.
    let trial = &documents[..documents.len().min(MONGO_TRIAL_ROWS)];
    let mut best = (0.0, MONGO_SHAPES[0]);
    for (per_insert, writers) in MONGO_SHAPES {
        let writers = if writers == 0 { bench.args.writers } else { writers };
        phases::reset_sink(bench, kind, "snap").await?;
        database.create_collection("snap").await.context("creating the raw collection")?;
        let commands = commands(trial, per_insert);
        let started = Instant::now();
        send(commands, writers).await?;
        let r = rate(trial.len(), started);
        bench.note(format!(
            "raw {} trial: {per_insert} documents per insert, {writers} writer(s): {r:.0} rows/s",
            kind.label()
        ));
        if r > best.0 {
            best = (r, (per_insert, writers));
        }
    }
    let (per_insert, writers) = best.1;
    let mut rounds = Vec::new();
    for round in 1..=bench.args.rounds {
        phases::reset_sink(bench, kind, "snap").await?;
        database.create_collection("snap").await.context("creating the raw collection")?;
        let commands = commands(&documents, per_insert);
        let started = Instant::now();
        send(commands, writers).await?;
        rounds.push(rate(documents.len(), started));
        bench.note(format!("raw {} round {round}: {:.0} rows/s", kind.label(), rounds.last().unwrap()));
        after_round(round).await?;
    }
    Ok(rounds)
}

async fn redis<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    table: &Arc<TableSchema>,
    rows: &[Row],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_redis::mapping::to_field;
    use polyrepl_redis::naming::row_key;
    let client = redis::Client::open(bench.sink_url(SinkKind::Redis)).context("the Redis URL")?;
    let mut connections = Vec::new();
    for _ in 0..bench.args.writers {
        connections.push(client.get_multiplexed_async_connection().await.context("connecting to Redis")?);
    }
    let mut pipelines = Vec::new();
    for chunk in rows.chunks(REDIS_HSETS_PER_PIPELINE) {
        let mut p = redis::pipe();
        for row in chunk {
            let key = row_key(None, table, &Change::key_of(table, row)).map_err(|m| anyhow!(m))?;
            p.cmd("HSET").arg(key);
            for (column, value) in table.columns.iter().zip(row) {
                if let Some(bytes) = to_field(value) {
                    p.arg(&column.name).arg(bytes);
                }
            }
            p.ignore();
        }
        pipelines.push(p);
    }
    // Takes the pipelines by value: cloning them is not part of the timed write.
    let send = |pipelines: Vec<redis::Pipeline>| {
        let connections = connections.clone();
        async move {
            stream::iter(pipelines.into_iter().enumerate())
                .map(|(i, p)| {
                    let mut conn = connections[i % connections.len()].clone();
                    async move { p.query_async::<()>(&mut conn).await.context("raw HSET pipeline") }
                })
                .buffer_unordered(connections.len())
                .try_collect::<Vec<()>>()
                .await
        }
    };
    let warm = WARM_UP_ROWS.div_ceil(REDIS_HSETS_PER_PIPELINE).min(pipelines.len());
    send(pipelines[..warm].to_vec()).await?;
    let mut rounds = Vec::new();
    for round in 1..=bench.args.rounds {
        phases::reset_sink(bench, SinkKind::Redis, "snap").await?;
        let owned = pipelines.clone();
        let started = Instant::now();
        send(owned).await?;
        rounds.push(rate(rows.len(), started));
        bench.note(format!("raw redis round {round}: {:.0} rows/s", rounds.last().unwrap()));
        after_round(round).await?;
    }
    Ok(rounds)
}

async fn cassandra<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    table: &Arc<TableSchema>,
    rows: &[Row],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_cassandra::mapping::MappingStats;
    use polyrepl_cassandra::write::row_values;
    use scylla::statement::batch::{Batch, BatchType};
    use scylla::value::CqlValue;
    let (sink, insert) = cassandra_table(bench, table).await?;
    let session = sink.session();
    let stats = MappingStats::default();
    // Timestamp 1: older than anything the pipeline writes later, so raw rows never shadow its rows.
    let values = rows
        .iter()
        .map(|row| {
            let mut v = row_values(table, row, &stats).map_err(|m| anyhow!(m))?;
            v.push(Some(CqlValue::BigInt(1)));
            Ok(v)
        })
        .collect::<Result<Vec<_>>>()?;
    let batch_of = |n: usize| {
        let mut b = Batch::new(BatchType::Unlogged);
        for _ in 0..n {
            b.append_statement(insert.clone());
        }
        b
    };
    let full = batch_of(CASSANDRA_ROWS_PER_BATCH);
    send_batches(session, &full, &batch_of, &values[..values.len().min(WARM_UP_ROWS)]).await?;
    let mut rounds = Vec::new();
    for round in 1..=bench.args.rounds {
        let started = Instant::now();
        send_batches(session, &full, &batch_of, &values).await?;
        rounds.push(rate(rows.len(), started));
        bench.note(format!("raw cassandra round {round}: {:.0} rows/s", rounds.last().unwrap()));
        after_round(round).await?;
    }
    Ok(rounds)
}

/// A Cassandra sink with `table` prepared, and its prepared raw `INSERT … USING TIMESTAMP ?`.
pub async fn cassandra_table(
    bench: &Bench,
    table: &Arc<TableSchema>,
) -> Result<(polyrepl_cassandra::CassandraSink, scylla::statement::prepared::PreparedStatement)> {
    let mut sink = polyrepl_cassandra::CassandraSink::connect(
        bench.sink_url(SinkKind::Cassandra),
        "polyrepl_bench",
        Default::default(),
    )
    .await?;
    sink.prepare(std::slice::from_ref(table)).await?;
    let cql = polyrepl_cassandra::write::insert_cql(table, false);
    let insert = sink.session().prepare(cql).await.context("preparing the raw INSERT")?;
    Ok((sink, insert))
}

/// Sends `values` as unlogged batches of [`CASSANDRA_ROWS_PER_BATCH`] rows (`full`; the last one from
/// `batch_of`), [`CASSANDRA_BATCHES_IN_FLIGHT`] at once.
async fn send_batches(
    session: &scylla::client::session::Session,
    full: &scylla::statement::batch::Batch,
    batch_of: &dyn Fn(usize) -> scylla::statement::batch::Batch,
    values: &[Vec<Option<scylla::value::CqlValue>>],
) -> Result<()> {
    stream::iter(values.chunks(CASSANDRA_ROWS_PER_BATCH))
        .map(|chunk| async move {
            let partial;
            let batch = if chunk.len() == CASSANDRA_ROWS_PER_BATCH {
                full
            } else {
                partial = batch_of(chunk.len());
                &partial
            };
            session.batch(batch, chunk).await.map(|_| ()).context("raw unlogged batch")
        })
        .buffer_unordered(CASSANDRA_BATCHES_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}
