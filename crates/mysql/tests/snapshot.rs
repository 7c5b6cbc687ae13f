//! Chunked snapshot in key order, consistent with its position, resumable after any key.
mod common;

use common::*;
use polyrepl_core::{Op, Value};
use polyrepl_mysql::{discover_tables, Snapshot};
use std::sync::Arc;

#[tokio::test]
async fn chunks_cover_the_table_once_in_key_order_and_resume_after_a_key() {
    let mut db = TestDb::create("snap").await;
    db.exec("CREATE TABLE t (a INT NOT NULL, b VARCHAR(10) NOT NULL, v INT, PRIMARY KEY (a, b))").await;
    // 3000 rows: 1000 values of a × 3 values of b, inserted out of key order.
    let mut values = Vec::new();
    for a in (0..1000).rev() {
        for b in ["z", "m", "a"] {
            values.push(format!("({a}, '{b}', {})", a * 10));
        }
    }
    db.exec(&format!("INSERT INTO t VALUES {}", values.join(","))).await;

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let schema = Arc::new(discover_tables(&mut conn, &db.filter("t"), "test").await.unwrap().remove(0));
    assert_eq!(schema.primary_key, vec![0, 1]);

    let mut snap = Snapshot::begin(&url(), 700).await.unwrap();
    let position = snap.position().clone();
    // A write after the snapshot started must not be seen by it.
    db.exec("INSERT INTO t VALUES (5000, 'late', 0)").await;

    let mut keys = Vec::new();
    let mut chunk_sizes = Vec::new();
    let mut chunks = snap.table_chunks(schema.clone(), None);
    while let Some(chunk) = chunks.next_chunk().await.unwrap() {
        chunk_sizes.push(chunk.len());
        for c in &chunk {
            assert_eq!(c.op, Op::Insert);
            assert_eq!(c.position, position);
            keys.push(c.key.clone());
        }
    }
    assert_eq!(chunk_sizes, vec![700, 700, 700, 700, 200]);
    let mut sorted = keys.clone();
    sorted.sort_by(|x, y| match (x.as_slice(), y.as_slice()) {
        ([Value::Int(a1), Value::String(b1)], [Value::Int(a2), Value::String(b2)]) => (a1, b1).cmp(&(a2, b2)),
        _ => panic!("unexpected key shape"),
    });
    assert_eq!(keys, sorted, "key order");
    assert_eq!(keys.len(), 3000, "every row once, the late row not at all");

    // Resume after a key in the middle of a chunk (and of a composite-key group).
    let mid = keys[1234].clone();
    let mut resumed = Vec::new();
    let mut chunks = snap.table_chunks(schema.clone(), Some(mid));
    while let Some(chunk) = chunks.next_chunk().await.unwrap() {
        resumed.extend(chunk.into_iter().map(|c| c.key));
    }
    assert_eq!(resumed, keys[1235..].to_vec());
    snap.finish().await.unwrap();
    db.drop_db().await;
}
