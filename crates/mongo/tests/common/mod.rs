//! Shared helpers of the integration tests: a real server, a randomly named database per test.
#![allow(dead_code)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use mongodb::bson::{doc, Document};
use polyrepl_core::{Batch, Change, Checkpoint, Column, ColumnKind, Op, Position, Row, TableId, TableSchema, Value};
use polyrepl_mongo::MongoSink;

/// The server under test: `POLYREPL_MONGO_URL`, default the local FerretDB/MongoDB on port 1800.
pub fn url() -> String {
    std::env::var("POLYREPL_MONGO_URL").unwrap_or_else(|_| "mongodb://127.0.0.1:1800".to_string())
}

/// A fresh database name and pipeline name for one test.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// Runs `body` with a connected sink, a fresh database name and pipeline name; drops the database
/// and the pipeline's checkpoint afterwards, even when the body panics.
pub async fn with_sink<F, Fut>(body: F)
where
    F: FnOnce(MongoSink, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = unique("prt");
    let pipeline = unique("pipe");
    let sink = MongoSink::connect(&url(), &pipeline).await.unwrap_or_else(|e| {
        panic!(
            "MongoDB-protocol server not reachable at {}: {e} — start it (polyrepl stack up) or set POLYREPL_MONGO_URL",
            url()
        )
    });
    let client = sink.client().clone();
    let outcome = AssertUnwindSafe(body(sink, database.clone())).catch_unwind().await;
    let _ = client.database(&database).drop().await;
    let _ = client
        .database("polyrepl")
        .collection::<Document>("_polyrepl_checkpoints")
        .delete_one(doc! { "_id": &pipeline })
        .await;
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

pub fn table(database: &str, name: &str, columns: Vec<Column>, primary_key: Vec<usize>) -> Arc<TableSchema> {
    Arc::new(TableSchema { id: TableId::new(database, name), columns, primary_key })
}

pub fn position(offset: u64) -> Position {
    Position::new("binlog.000001", offset)
}

pub fn upsert(table: &Arc<TableSchema>, row: Row) -> Change {
    Change {
        position: position(100),
        seq: 0,
        key: Change::key_of(table, &row),
        table: table.clone(),
        op: Op::Update,
        after: Some(row),
        source_ts: 0,
    }
}

pub fn insert(table: &Arc<TableSchema>, row: Row) -> Change {
    Change { op: Op::Insert, ..upsert(table, row) }
}

pub fn delete(table: &Arc<TableSchema>, key: Vec<Value>) -> Change {
    Change { position: position(100), seq: 0, table: table.clone(), op: Op::Delete, key, after: None, source_ts: 0 }
}

pub fn batch(changes: Vec<Change>, offset: u64) -> Batch {
    Batch { changes, checkpoint: Checkpoint::streaming(position(offset)) }
}

/// All documents of a collection, by `_id` order.
pub async fn documents(sink: &MongoSink, database: &str, collection: &str) -> Vec<Document> {
    use futures::TryStreamExt;
    sink.client()
        .database(database)
        .collection::<Document>(collection)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// The document with `_id` = `id`.
pub async fn document(
    sink: &MongoSink,
    database: &str,
    collection: &str,
    id: impl Into<mongodb::bson::Bson>,
) -> Option<Document> {
    sink.client()
        .database(database)
        .collection::<Document>(collection)
        .find_one(doc! { "_id": id.into() })
        .await
        .unwrap()
}
