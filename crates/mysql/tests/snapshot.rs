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

/// The keys of `schema`'s table in the key ranges `next_boundary` cuts (`chunk_rows` rows each), each
/// range read on a reader of its own bounded above by the next boundary: every key once, in key order,
/// and the ranges' sizes.
async fn keys_by_ranges(schema: &Arc<polyrepl_core::TableSchema>, chunk_rows: usize) -> (Vec<Vec<Value>>, Vec<usize>) {
    let mut planner = Snapshot::begin(&url(), chunk_rows).await.unwrap();
    let position = planner.position().clone();
    let mut reader = Snapshot::alongside(&url(), chunk_rows).await.unwrap();
    let (mut keys, mut sizes, mut after) = (Vec::new(), Vec::new(), None::<Vec<Value>>);
    loop {
        let upto = planner.next_boundary(schema, after.as_deref()).await.unwrap();
        let rows = reader.read_range(schema, after.as_deref(), upto.as_deref(), &position).await.unwrap();
        assert!(rows.iter().all(|c| c.position == position), "rows carry the first snapshot's position");
        if let Some(upto) = &upto {
            assert_eq!(rows.last().map(|c| &c.key), Some(upto), "a range ends at its boundary");
        }
        sizes.push(rows.len());
        keys.extend(rows.into_iter().map(|c| c.key));
        match upto {
            Some(upto) => after = Some(upto),
            None => break,
        }
    }
    planner.finish().await.unwrap();
    reader.finish().await.unwrap();
    (keys, sizes)
}

#[tokio::test]
async fn key_ranges_cover_a_table_once_whatever_its_key() {
    let mut db = TestDb::create("ranges").await;
    // A composite key with a case-insensitive VARCHAR part, an integer key with gaps, a tiny table.
    db.exec("CREATE TABLE c (g VARCHAR(20) NOT NULL, n INT NOT NULL, v INT, PRIMARY KEY (g, n))").await;
    db.exec("CREATE TABLE i (id BIGINT NOT NULL PRIMARY KEY, v INT)").await;
    db.exec("CREATE TABLE s (id INT NOT NULL PRIMARY KEY)").await;
    let mut values = Vec::new();
    for (k, g) in ["Zeta", "alpha", "Beta", "émile", "beta2", "ALPHA2", "😀"].iter().enumerate() {
        for n in 0..150 {
            values.push(format!("('{g}', {}, {k})", 1000 - n * 7));
        }
    }
    db.exec(&format!("INSERT INTO c VALUES {}", values.join(","))).await;
    let values: Vec<String> = (0..2345).map(|i| format!("({}, {i})", i * i - 50_000)).collect();
    db.exec(&format!("INSERT INTO i VALUES {}", values.join(","))).await;
    db.exec("INSERT INTO s VALUES (1), (2), (3)").await;

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    for (table, chunk_rows, rows) in
        [("c", 100, 1050), ("c", 1, 1050), ("i", 500, 2345), ("i", 2345, 2345), ("s", 10, 3)]
    {
        let schema = Arc::new(discover_tables(&mut conn, &db.filter(table), "test").await.unwrap().remove(0));
        let sequential: Vec<Vec<Value>> = snapshot_changes(&schema, 333).await.into_iter().map(|c| c.key).collect();
        assert_eq!(sequential.len(), rows);
        let (keys, sizes) = keys_by_ranges(&schema, chunk_rows).await;
        assert_eq!(keys, sequential, "{table} in ranges of {chunk_rows}: every key once, in key order");
        let full = rows / chunk_rows;
        let mut expected = vec![chunk_rows; full];
        // The last range is open-ended: what is left, possibly nothing.
        expected.push(rows - full * chunk_rows);
        assert_eq!(sizes, expected, "{table} in ranges of {chunk_rows}");
    }
    db.drop_db().await;
}
