//! The `time_bucket` URL option against the real Cassandra (default 127.0.0.1:9042): the bucket column
//! and its SAI index, bucket queries, rows moving between buckets, tables without the column untouched,
//! and read_rows ignoring the extra column.

mod common;

use common::*;
use polyrepl_cassandra::connection::{BucketGranularity, TimeBucket};
use polyrepl_cassandra::CassandraSink;
use polyrepl_core::{ColumnKind, Date, DateTime, Sink, Value};

fn ts(day: u8, hour: u8) -> Value {
    Value::DateTime(DateTime {
        date: Date { year: 2025, month: 11, day },
        hour,
        minute: 30,
        second: 15,
        micros: 123_456,
        fsp: 6,
    })
}

fn row(id: i64, ts: Value, v: &str) -> Vec<Value> {
    vec![Value::Int(id), ts, Value::String(v.into())]
}

/// The ids in `bucket`, sorted (retrying briefly while the index becomes queryable).
async fn ids_in(sink: &CassandraSink, keyspace: &str, table: &str, bucket: &str) -> Vec<i64> {
    let cql = format!("SELECT id FROM \"{keyspace}\".\"{table}\" WHERE polyrepl_bucket = ?");
    let mut attempt = 0;
    loop {
        match sink.session().query_unpaged(cql.as_str(), (bucket,)).await {
            Ok(result) => {
                let mut ids: Vec<i64> =
                    result.into_rows_result().unwrap().rows::<(i64,)>().unwrap().map(|r| r.unwrap().0).collect();
                ids.sort();
                return ids;
            }
            Err(e) if attempt < 20 => {
                attempt += 1;
                eprintln!("bucket query not ready yet: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Err(e) => panic!("{cql}: {e}"),
        }
    }
}

async fn columns_of(sink: &CassandraSink, keyspace: &str, table: &str) -> Vec<(String, String)> {
    let result = sink
        .session()
        .query_unpaged(
            "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let mut columns: Vec<(String, String)> = result.rows::<(String, String)>().unwrap().map(|r| r.unwrap()).collect();
    columns.sort();
    columns
}

async fn indexes_of(sink: &CassandraSink, keyspace: &str, table: &str) -> Vec<String> {
    let result = sink
        .session()
        .query_unpaged(
            "SELECT index_name FROM system_schema.indexes WHERE keyspace_name = ? AND table_name = ?",
            (keyspace, table),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    result.rows::<(String,)>().unwrap().map(|r| r.unwrap().0).collect()
}

#[tokio::test]
async fn rows_are_bucketed_by_day_and_move_between_buckets() {
    with_sink_query("time_bucket=ts:day", |mut sink, keyspace| async move {
        assert_eq!(
            sink.options().time_bucket,
            Some(TimeBucket { column: "ts".into(), granularity: BucketGranularity::Day })
        );
        let t = table(
            &keyspace,
            "t",
            vec![
                column("id", ColumnKind::BigInt),
                column("ts", ColumnKind::DateTime { fsp: 6 }),
                column("v", ColumnKind::Text),
            ],
            vec![0],
        );
        // A table without a `ts` column, and one whose `ts` is not a date: both untouched.
        let plain =
            table(&keyspace, "plain", vec![column("id", ColumnKind::BigInt), column("v", ColumnKind::Text)], vec![0]);
        let textual = table(
            &keyspace,
            "textual",
            vec![column("id", ColumnKind::BigInt), column("ts", ColumnKind::VarChar)],
            vec![0],
        );
        sink.prepare(&[t.clone(), plain.clone(), textual.clone()]).await.unwrap();

        assert!(columns_of(&sink, &keyspace, "t").await.contains(&("polyrepl_bucket".to_string(), "text".to_string())));
        assert_eq!(indexes_of(&sink, &keyspace, "t").await, vec!["t_polyrepl_bucket".to_string()]);
        for other in ["plain", "textual"] {
            assert!(columns_of(&sink, &keyspace, other).await.iter().all(|(c, _)| c != "polyrepl_bucket"), "{other}");
            assert!(indexes_of(&sink, &keyspace, other).await.is_empty(), "{other}");
        }

        let rows = [row(1, ts(29, 0), "a"), row(2, ts(29, 23), "b"), row(3, ts(30, 8), "c"), row(4, Value::Null, "d")];
        let mut changes: Vec<_> = rows.iter().map(|r| insert(&t, r.clone())).collect();
        changes.push(insert(&plain, vec![Value::Int(1), Value::String("p".into())]));
        sink.apply(&batch(changes, 100)).await.unwrap();

        assert_eq!(ids_in(&sink, &keyspace, "t", "2025-11-29").await, vec![1, 2]);
        assert_eq!(ids_in(&sink, &keyspace, "t", "2025-11-30").await, vec![3]);
        let null_bucket = sink
            .session()
            .query_unpaged(format!("SELECT polyrepl_bucket FROM \"{keyspace}\".t WHERE id = 4"), &[])
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .single_row::<(Option<String>,)>()
            .unwrap();
        assert_eq!(null_bucket, (None,));

        let keys: Vec<Vec<Value>> = (1..=4).map(|i| vec![Value::Int(i)]).collect();
        let back = sink.read_rows(&t, &keys).await.unwrap();
        assert_eq!(back, rows.iter().cloned().map(Some).collect::<Vec<_>>());

        // Row 2 moves to the next day, row 4 gets a date, row 1 loses its date.
        let moved = [row(2, ts(30, 1), "b2"), row(4, ts(29, 12), "d2"), row(1, Value::Null, "a2")];
        sink.apply(&batch(moved.iter().map(|r| upsert(&t, r.clone())).collect(), 200)).await.unwrap();
        assert_eq!(ids_in(&sink, &keyspace, "t", "2025-11-29").await, vec![4]);
        assert_eq!(ids_in(&sink, &keyspace, "t", "2025-11-30").await, vec![2, 3]);
        let back = sink.read_rows(&t, &keys).await.unwrap();
        assert_eq!(
            back,
            vec![Some(moved[2].clone()), Some(moved[0].clone()), Some(rows[2].clone()), Some(moved[1].clone())]
        );
        assert_eq!(
            sink.read_rows(&plain, &[vec![Value::Int(1)]]).await.unwrap()[0],
            Some(vec![Value::Int(1), Value::String("p".into())])
        );
    })
    .await;
}

#[tokio::test]
async fn a_bucket_column_added_later_is_added_lazily_by_month() {
    with_sink_query("time_bucket=ts:month", |mut sink, keyspace| async move {
        let v1 =
            table(&keyspace, "late", vec![column("id", ColumnKind::BigInt), column("v", ColumnKind::Text)], vec![0]);
        sink.apply(&batch(vec![insert(&v1, vec![Value::Int(1), Value::String("x".into())])], 100)).await.unwrap();
        assert!(columns_of(&sink, &keyspace, "late").await.iter().all(|(c, _)| c != "polyrepl_bucket"));

        let v2 = table(
            &keyspace,
            "late",
            vec![column("id", ColumnKind::BigInt), column("v", ColumnKind::Text), column("ts", ColumnKind::Date)],
            vec![0],
        );
        let day = |d| Value::Date(Date { year: 2025, month: 11, day: d });
        let zero = Value::Date(Date { year: 0, month: 0, day: 0 });
        let rows = [
            vec![Value::Int(2), Value::String("y".into()), day(29)],
            vec![Value::Int(3), Value::String("z".into()), day(1)],
            vec![Value::Int(4), Value::String("w".into()), zero],
        ];
        sink.apply(&batch(rows.iter().map(|r| insert(&v2, r.clone())).collect(), 200)).await.unwrap();
        assert!(columns_of(&sink, &keyspace, "late")
            .await
            .contains(&("polyrepl_bucket".to_string(), "text".to_string())));
        assert_eq!(indexes_of(&sink, &keyspace, "late").await, vec!["late_polyrepl_bucket".to_string()]);
        assert_eq!(ids_in(&sink, &keyspace, "late", "2025-11").await, vec![2, 3]);
        let back = sink.read_rows(&v2, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await.unwrap();
        assert_eq!(
            back,
            vec![Some(vec![Value::Int(1), Value::String("x".into()), Value::Null]), Some(rows[0].clone())]
        );

        // A source column named polyrepl_bucket collides with the option: refused, definitely.
        let clash = table(
            &keyspace,
            "clash",
            vec![
                column("id", ColumnKind::BigInt),
                column("ts", ColumnKind::Date),
                column("polyrepl_bucket", ColumnKind::Text),
            ],
            vec![0],
        );
        let err = sink.prepare(&[clash]).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("polyrepl_bucket"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn the_longest_table_name_gets_its_index() {
    with_sink_query("time_bucket=ts:hour", |mut sink, keyspace| async move {
        let name = "x".repeat(48);
        let t = table(
            &keyspace,
            &name,
            vec![column("id", ColumnKind::BigInt), column("ts", ColumnKind::Timestamp { fsp: 0 })],
            vec![0],
        );
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let at = Value::Timestamp(DateTime {
            date: Date { year: 2025, month: 11, day: 29 },
            hour: 13,
            minute: 0,
            second: 0,
            micros: 0,
            fsp: 0,
        });
        sink.apply(&batch(vec![insert(&t, vec![Value::Int(7), at])], 100)).await.unwrap();
        assert_eq!(ids_in(&sink, &keyspace, &name, "2025-11-29T13").await, vec![7]);
    })
    .await;
}
