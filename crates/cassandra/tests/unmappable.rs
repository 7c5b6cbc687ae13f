//! A row larger than one Cassandra write can carry: the server really refuses it (a 17 MiB value over
//! the default 16 MiB `native_transport_max_frame_size` / `max_mutation_size`), and the sink finds it
//! before writing, leaving it out under `--on-unmappable skip` while the rest of the batch is written.
//! (The partition-key limit is the conformance kit's unmappable row, `tests/conformance.rs`.)

mod common;

use common::*;
use polyrepl_core::testkit::builders::{batch, column, insert, table};
use polyrepl_core::{ColumnKind, OnUnmappable, RowPolicy, Sink, Value};

#[tokio::test]
async fn a_row_over_the_write_size_is_refused_by_the_server_and_left_out_by_the_sink() {
    with_sink(|sink, keyspace| async move {
        assert!(sink.limits().write_bytes < 17 << 20, "limits read: {:?}", sink.limits());
        let policy = RowPolicy::new(OnUnmappable::Skip);
        let mut sink = sink.with_row_policy(policy.clone());
        let t = table(&keyspace, "wide", vec![column("id", ColumnKind::Int), column("v", ColumnKind::Text)], vec![0]);
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let huge = "x".repeat(17 << 20);
        // The server itself refuses the write.
        let raw = sink
            .session()
            .query_unpaged(format!("INSERT INTO \"{keyspace}\".\"wide\" (\"id\", \"v\") VALUES (?, ?)"), (99i32, &huge))
            .await;
        let refusal = raw.expect_err("Cassandra took a 17 MiB row");
        eprintln!("Cassandra refuses a 17 MiB row: {refusal}");
        let row = |id: i64, v: &str| vec![Value::Int(id), Value::String(v.into())];
        let b = batch(vec![insert(&t, row(1, "one")), insert(&t, row(2, &huge)), insert(&t, row(3, "three"))], 100);
        sink.apply(&b).await.unwrap();
        let got = sink.read_rows(&t, &[vec![Value::Int(1)], vec![Value::Int(2)], vec![Value::Int(3)]]).await.unwrap();
        assert_eq!(got, vec![Some(row(1, "one")), None, Some(row(3, "three"))]);
        assert_eq!(policy.counts.skipped().get(&t.id.to_string()), Some(&1));
    })
    .await;
}
