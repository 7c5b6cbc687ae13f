//! JSON against the real Cassandra (default 127.0.0.1:9042): numbers an f64 would round or refuse and odd
//! keys are stored as `text` with every digit as written (read with a plain query), and `read_rows` gives
//! the same values back.

mod common;

use common::*;
use polyrepl_core::{ColumnKind, Sink, Value};
use scylla::value::{CqlValue, Row as CqlRow};

#[tokio::test]
async fn json_numbers_are_stored_with_every_digit_and_read_back_equal() {
    with_sink(|mut sink, keyspace| async move {
        let t = table(
            &keyspace,
            "jsonnum",
            vec![column("id", ColumnKind::BigInt), column("js", ColumnKind::Json)],
            vec![0],
        );
        let cases = polyrepl_core::testkit::json_cases::json_kept_as_text();
        let rows: Vec<Vec<Value>> = cases
            .iter()
            .enumerate()
            .map(|(i, (source, _))| {
                vec![Value::Int(i as i64 + 1), Value::Json(polyrepl_core::json::parse(source.as_bytes()).unwrap())]
            })
            .collect();
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        sink.apply(&batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 300)).await.unwrap();

        let select = format!("SELECT js FROM \"{keyspace}\".jsonnum WHERE id = ?");
        for (i, (source, stored)) in cases.iter().enumerate() {
            let result = sink
                .session()
                .query_unpaged(select.clone(), (i as i64 + 1,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap();
            let cells = result.single_row::<CqlRow>().unwrap().columns;
            assert_eq!(cells[0], Some(CqlValue::Text(stored.clone())), "{source}: stored text");
        }
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| vec![r[0].clone()]).collect();
        let back = sink.read_rows(&t, &keys).await.unwrap();
        for ((source, _), (row, got)) in cases.iter().zip(rows.iter().zip(back)) {
            assert_eq!(got.as_ref(), Some(row), "{source}: read back");
        }
    })
    .await;
}
