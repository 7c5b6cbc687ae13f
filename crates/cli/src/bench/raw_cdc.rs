//! The raw phase for cdc: the sink's own limit on the very changes the cdc phase streams — the same
//! inserts, updates and deletes of the same keys, in the same order, decoded from the same binlog range
//! and converted with the sink crate's own mapping before the clock starts — written with the sink's best
//! bulk path and `--writers` concurrent writers, no polyrepl pipeline in between. Against it, cdc/raw
//! measures polyrepl's own overhead, not the difference between inserting into an empty table and
//! updating a full one.
//!
//! Every change is written (nothing is collapsed: collapsing is the pipeline's work), and a key's
//! changes stay in order: keys are split over the writers by a hash of the key, each writer sends its
//! changes in order. Per sink:
//! - Redis: insert → `HSET` of the non-NULL columns, update → `HSET` + `HDEL` of the NULL columns,
//!   delete → `DEL`; pipelines of [`PER_COMMAND`] changes, one writer per connection;
//! - Cassandra: prepared `INSERT … USING TIMESTAMP` / `DELETE … USING TIMESTAMP` (timestamps in change
//!   order, so the order holds across concurrent batches), unlogged batches of 10, 32 in flight;
//! - MongoDB: `update` (replacement, `upsert: true`) and `delete` (`limit: 1`) commands of up to
//!   [`PER_COMMAND`] consecutive operations of one kind, ordered — the path MongoDB 4.4–7.x servers get
//!   from the sink. Not on FerretDB: its `update` scans the collection per `_id` (7 changes/s here), and
//!   so does every `$in` delete, so even the sink's own FerretDB path (delete + insert) written change
//!   by change took minutes; there cdc is compared with the raw insert rate, as before.

use super::data::Generated;
use super::raw::{Rounds, CASSANDRA_BATCHES_IN_FLIGHT, CASSANDRA_ROWS_PER_BATCH};
use super::{phases, Bench, SinkKind};
use anyhow::{anyhow, bail, Context, Result};
use futures::stream::{self, StreamExt, TryStreamExt};
use mongodb::bson::{doc, Bson, RawArrayBuf, RawDocumentBuf};
use polyrepl_core::{Change, Op, TableFilter, TableSchema};
use polyrepl_mysql::binlog::{BinlogOptions, BinlogReader, SourceEvent};
use std::sync::Arc;
use std::time::Instant;

/// Changes per Redis pipeline and per MongoDB command.
const PER_COMMAND: usize = 1_000;

/// Measures `kind`'s raw rate on the cdc range's changes over `--rounds` rounds (changes/s); `None` on
/// FerretDB (see the module notes).
/// `after_round(round)` runs after each timed round (the cdc phase's round of the same number; see
/// [`super::raw::measure`]); not at all on FerretDB.
pub async fn measure<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    kind: SinkKind,
    generated: &Generated,
    mut after_round: A,
) -> Result<Option<Rounds>> {
    if matches!(kind, SinkKind::Mongodb | SinkKind::MongoJava) {
        let sink = polyrepl_mongo::MongoSink::connect(bench.sink_url(kind), "polyrepl_bench").await?;
        if sink.server().ferretdb_version.is_some() {
            bench.note(format!("raw cdc {}: not measured on FerretDB (see `polyrepl bench --help`)", kind.label()));
            return Ok(None);
        }
    }
    let (table, changes) = load_changes(bench, generated).await?;
    bench.note(format!("raw cdc {}: {} changes decoded, converting", kind.label(), changes.len()));
    let after_round = &mut after_round;
    let rounds = match kind {
        SinkKind::Mongodb | SinkKind::MongoJava => mongo(bench, kind, &table, &changes, after_round).await?,
        SinkKind::Redis => redis(bench, &table, &changes, after_round).await?,
        SinkKind::Cassandra => cassandra(bench, &table, &changes, after_round).await?,
    };
    Ok(Some(rounds))
}

/// The cdc range's row changes, in binlog order.
async fn load_changes(bench: &Bench, generated: &Generated) -> Result<(Arc<TableSchema>, Vec<Change>)> {
    let table = phases::table_schema(bench, "cdc").await?;
    let filter = TableFilter::new(&[format!("{}.cdc", bench.db)], &[]).map_err(|e| anyhow!("{e}"))?;
    let server_id = 3_500_000 + std::process::id() % 100_000;
    let mut reader =
        BinlogReader::start(&bench.url, &generated.cdc_from, filter, BinlogOptions::new(server_id).stop_at_end())
            .await?;
    let mut changes = Vec::new();
    while let Some(event) = reader.next_event().await? {
        let past_end = event.position() >= &generated.cdc_to;
        if let SourceEvent::Transaction { changes: c, .. } | SourceEvent::Part { changes: c, .. } = event {
            changes.extend(c);
        }
        if past_end {
            break;
        }
    }
    let _ = reader.close().await;
    if changes.len() as u64 != generated.cdc_changes {
        bail!("the raw cdc phase read {} changes, expected {}", changes.len(), generated.cdc_changes);
    }
    Ok((table, changes))
}

fn rate(changes: usize, started: Instant) -> f64 {
    changes as f64 / started.elapsed().as_secs_f64().max(1e-9)
}

/// `items` split over `writers` by `key`, each part in the original order.
fn split_by_key<T>(items: Vec<T>, writers: usize, key: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut parts: Vec<Vec<T>> = (0..writers.max(1)).map(|_| Vec::new()).collect();
    for item in items {
        let n = parts.len();
        parts[fnv(key(&item)) as usize % n].push(item);
    }
    parts
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

async fn redis<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    table: &Arc<TableSchema>,
    changes: &[Change],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_redis::mapping::to_field;
    use polyrepl_redis::naming::row_key;
    let client = redis::Client::open(bench.sink_url(SinkKind::Redis)).context("the Redis URL")?;
    let writers = bench.args.writers.max(1);
    let mut connections = Vec::new();
    for _ in 0..writers {
        connections.push(client.get_multiplexed_async_connection().await.context("connecting to Redis")?);
    }
    let keyed = changes
        .iter()
        .map(|c| Ok((row_key(None, table, &c.key).map_err(|m| anyhow!(m))?, c)))
        .collect::<Result<Vec<_>>>()?;
    let parts = split_by_key(keyed, writers, |(key, _)| key);
    // Per writer, its pipelines in order.
    let lanes: Vec<Vec<redis::Pipeline>> = parts
        .iter()
        .map(|part| {
            part.chunks(PER_COMMAND)
                .map(|chunk| {
                    let mut p = redis::pipe();
                    for (key, change) in chunk {
                        match (&change.op, &change.after) {
                            (Op::Delete, _) | (_, None) => {
                                p.cmd("DEL").arg(key).ignore();
                            }
                            (op, Some(row)) => {
                                p.cmd("HSET").arg(key);
                                let mut nulls = Vec::new();
                                for (column, value) in table.columns.iter().zip(row) {
                                    match to_field(value) {
                                        Some(bytes) => {
                                            p.arg(&column.name).arg(bytes);
                                        }
                                        None => nulls.push(&column.name),
                                    }
                                }
                                p.ignore();
                                if *op == Op::Update && !nulls.is_empty() {
                                    p.cmd("HDEL").arg(key).arg(nulls).ignore();
                                }
                            }
                        }
                    }
                    p
                })
                .collect()
        })
        .collect();
    let send = |lanes: Vec<Vec<redis::Pipeline>>| {
        let connections = connections.clone();
        async move {
            futures::future::try_join_all(lanes.into_iter().enumerate().map(|(i, pipelines)| {
                let mut conn = connections[i].clone();
                async move {
                    for p in pipelines {
                        p.query_async::<()>(&mut conn).await.context("raw cdc pipeline")?;
                    }
                    Ok::<(), anyhow::Error>(())
                }
            }))
            .await
        }
    };
    let mut rounds = Vec::new();
    for round in 0..=bench.args.rounds {
        phases::reset_sink(bench, SinkKind::Redis, "cdc").await?;
        let owned = lanes.clone();
        let started = Instant::now();
        send(owned).await?;
        if round == 0 {
            continue; // warm-up
        }
        rounds.push(rate(changes.len(), started));
        bench.note(format!("raw cdc redis round {round}: {:.0} changes/s", rounds.last().unwrap()));
        after_round(round).await?;
    }
    phases::reset_sink(bench, SinkKind::Redis, "cdc").await?;
    Ok(rounds)
}

async fn cassandra<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    table: &Arc<TableSchema>,
    changes: &[Change],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_cassandra::mapping::MappingStats;
    use polyrepl_cassandra::write::{delete_cql, key_values, row_values};
    use scylla::statement::batch::{Batch, BatchStatement, BatchType};
    use scylla::value::CqlValue;
    let (sink, insert) = super::raw::cassandra_table(bench, table).await?;
    let session = sink.session();
    let delete = session.prepare(delete_cql(table)).await.context("preparing the raw DELETE")?;
    let stats = MappingStats::default();
    // Timestamps 1, 2, …: in change order, and older than anything the pipeline writes later.
    let statements = changes
        .iter()
        .enumerate()
        .map(|(i, change)| {
            let ts = Some(CqlValue::BigInt(1 + i as i64));
            Ok(match &change.after {
                Some(row) if change.op != Op::Delete => {
                    let mut v = row_values(table, row, &stats).map_err(|m| anyhow!(m))?;
                    v.push(ts);
                    (true, v)
                }
                _ => {
                    let key = key_values(table, &change.key, &stats).map_err(|m| anyhow!(m))?;
                    (false, std::iter::once(ts).chain(key.into_iter().map(Some)).collect())
                }
            })
        })
        .collect::<Result<Vec<(bool, Vec<Option<CqlValue>>)>>>()?;
    let batches: Vec<(Batch, Vec<Vec<Option<CqlValue>>>)> = statements
        .chunks(CASSANDRA_ROWS_PER_BATCH)
        .map(|chunk| {
            let mut batch = Batch::new(BatchType::Unlogged);
            for (is_insert, _) in chunk {
                let statement = if *is_insert { insert.clone() } else { delete.clone() };
                batch.append_statement(BatchStatement::PreparedStatement(statement));
            }
            (batch, chunk.iter().map(|(_, v)| v.clone()).collect())
        })
        .collect();
    let send = || {
        stream::iter(batches.iter())
            .map(|(batch, values)| async move {
                session.batch(batch, values).await.map(|_| ()).context("raw cdc unlogged batch")
            })
            .buffer_unordered(CASSANDRA_BATCHES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
    };
    let mut rounds = Vec::new();
    for round in 0..=bench.args.rounds {
        let started = Instant::now();
        send().await?;
        if round == 0 {
            continue; // warm-up
        }
        rounds.push(rate(changes.len(), started));
        bench.note(format!("raw cdc cassandra round {round}: {:.0} changes/s", rounds.last().unwrap()));
        after_round(round).await?;
    }
    Ok(rounds)
}

async fn mongo<A: AsyncFnMut(usize) -> Result<()>>(
    bench: &Bench,
    kind: SinkKind,
    table: &Arc<TableSchema>,
    changes: &[Change],
    after_round: &mut A,
) -> Result<Rounds> {
    use polyrepl_mongo::naming::{document_id, id_bytes, row_document};
    let sink = polyrepl_mongo::MongoSink::connect(bench.sink_url(kind), "polyrepl_bench").await?;
    let mapping = polyrepl_mongo::Mapping::new(sink.server().features, Default::default());
    // (id bytes for the split, id, the document of an upsert or None for a delete).
    let operations = changes
        .iter()
        .map(|change| {
            let id = document_id(&mapping, table, &change.key).map_err(|m| anyhow!(m))?;
            let document = match &change.after {
                Some(row) if change.op != Op::Delete => Some(RawDocumentBuf::from_document(
                    &row_document(&mapping, table, id.clone(), row).map_err(|m| anyhow!(m))?,
                )?),
                _ => None,
            };
            Ok((id_bytes(&id), id, document))
        })
        .collect::<Result<Vec<(Vec<u8>, Bson, Option<RawDocumentBuf>)>>>()?;
    let writers = bench.args.writers.max(1);
    let parts = split_by_key(operations, writers, |(bytes, _, _)| bytes);
    let commands: Vec<Vec<RawDocumentBuf>> =
        parts.iter().map(|part| update_delete_commands(part)).collect::<Result<_>>()?;
    let database = sink.client().database(&bench.db);
    let send = |commands: Vec<Vec<RawDocumentBuf>>| {
        let database = database.clone();
        async move {
            futures::future::try_join_all(commands.into_iter().map(|lane| {
                let database = database.clone();
                async move {
                    for body in lane {
                        let reply = database.run_raw_command(body).await.context("raw cdc command")?;
                        if reply.get("writeErrors").is_some() {
                            bail!("a raw cdc command failed: {reply:?}");
                        }
                    }
                    Ok(())
                }
            }))
            .await
        }
    };
    let mut rounds = Vec::new();
    for round in 0..=bench.args.rounds {
        phases::reset_sink(bench, kind, "cdc").await?;
        database.create_collection("cdc").await.context("creating the raw cdc collection")?;
        let owned = commands.clone();
        let started = Instant::now();
        send(owned).await?;
        if round == 0 {
            continue; // warm-up
        }
        rounds.push(rate(changes.len(), started));
        bench.note(format!("raw cdc {} round {round}: {:.0} changes/s", kind.label(), rounds.last().unwrap()));
        after_round(round).await?;
    }
    phases::reset_sink(bench, kind, "cdc").await?;
    Ok(rounds)
}

/// MongoDB: `update` (replacement, upsert) and `delete` commands of up to [`PER_COMMAND`]
/// consecutive operations of one kind, ordered.
fn update_delete_commands(part: &[(Vec<u8>, Bson, Option<RawDocumentBuf>)]) -> Result<Vec<RawDocumentBuf>> {
    let mut commands = Vec::new();
    for run in part.chunk_by(|a, b| a.2.is_some() == b.2.is_some()) {
        for chunk in run.chunks(PER_COMMAND) {
            let mut array = RawArrayBuf::new();
            for (_, id, document) in chunk {
                let mut statement = RawDocumentBuf::new();
                statement.append("q", RawDocumentBuf::from_document(&doc! { "_id": id.clone() })?);
                match document {
                    Some(document) => {
                        statement.append("u", document.clone());
                        statement.append("upsert", true);
                    }
                    None => statement.append("limit", 1),
                }
                array.push(statement);
            }
            let mut body = RawDocumentBuf::new();
            if chunk[0].2.is_some() {
                body.append("update", "cdc");
                body.append("updates", array);
            } else {
                body.append("delete", "cdc");
                body.append("deletes", array);
            }
            body.append("ordered", true);
            commands.push(body);
        }
    }
    Ok(commands)
}
