//! Shared helpers of the integration tests: the real Cassandra, a randomly named keyspace per test.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use polyrepl_cassandra::{CassandraOptions, CassandraSink};
use polyrepl_core::{Batch, Change, Checkpoint, Column, ColumnKind, Op, Position, Row, TableId, TableSchema, Value};

/// The server under test: `POLYREPL_CASSANDRA_URL`, default the local Cassandra on port 9042.
pub fn url() -> String {
    std::env::var("POLYREPL_CASSANDRA_URL").unwrap_or_else(|_| "cassandra://127.0.0.1:9042".to_string())
}

/// A fresh name for one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Connects a sink for a fresh pipeline name.
pub async fn sink(pipeline: &str) -> CassandraSink {
    CassandraSink::connect(&url(), pipeline, CassandraOptions::default()).await.unwrap_or_else(|e| {
        panic!("Cassandra not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_CASSANDRA_URL", url())
    })
}

/// Runs `body` with a connected sink and a fresh keyspace name; drops the keyspace and the pipeline's
/// checkpoint afterwards, even when the body panics.
pub async fn with_sink<F, Fut>(body: F)
where
    F: FnOnce(CassandraSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    with_sink_query("", body).await
}

/// [`with_sink`] for a sink whose URL also carries `query` (e.g. `time_bucket=ts:day`; empty for none).
pub async fn with_sink_query<F, Fut>(query: &str, body: F)
where
    F: FnOnce(CassandraSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let keyspace = unique("prt");
    let pipeline = unique("pipe");
    let sink = if query.is_empty() {
        sink(&pipeline).await
    } else {
        let base = url();
        let url = format!("{base}{}{query}", if base.contains('?') { '&' } else { '?' });
        CassandraSink::connect(&url, &pipeline, CassandraOptions::default())
            .await
            .unwrap_or_else(|e| panic!("connecting to {url}: {e}"))
    };
    let cleanup = self::sink(&pipeline).await;
    let outcome = AssertUnwindSafe(body(sink, keyspace.clone())).catch_unwind().await;
    let session = cleanup.session();
    let _ = session.query_unpaged(format!("DROP KEYSPACE IF EXISTS \"{keyspace}\""), &[]).await;
    let _ = session.query_unpaged("DELETE FROM polyrepl.polyrepl_checkpoints WHERE pipeline = ?", (&pipeline,)).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

pub fn column(name: &str, kind: ColumnKind) -> Column {
    Column { name: name.to_string(), kind, unsigned: false, nullable: true }
}

pub fn unsigned(name: &str, kind: ColumnKind) -> Column {
    Column { name: name.to_string(), kind, unsigned: true, nullable: true }
}

pub fn table(keyspace: &str, name: &str, columns: Vec<Column>, primary_key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema { id: TableId::new(keyspace, name), columns, primary_key })
}

pub fn position(offset: u64) -> Position {
    Position::new("binlog.000001", offset)
}

/// An update of `row` committed at `offset` as change `seq` of its transaction.
pub fn upsert(table: &Arc<TableSchema>, row: Row, offset: u64, seq: u32) -> Change {
    Change {
        position: position(offset),
        seq,
        key: Change::key_of(table, &row),
        table: table.clone(),
        op: Op::Update,
        after: Some(row),
        source_ts: 0,
    }
}

pub fn insert(table: &Arc<TableSchema>, row: Row, offset: u64, seq: u32) -> Change {
    Change { op: Op::Insert, ..upsert(table, row, offset, seq) }
}

pub fn delete(table: &Arc<TableSchema>, key: Vec<Value>, offset: u64, seq: u32) -> Change {
    Change { position: position(offset), seq, table: table.clone(), op: Op::Delete, key, after: None, source_ts: 0 }
}

/// A streaming batch whose checkpoint is `offset`.
pub fn batch(changes: Vec<Change>, offset: u64) -> Batch {
    Batch { changes, checkpoint: Checkpoint::streaming(position(offset)) }
}
