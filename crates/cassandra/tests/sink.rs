//! The Cassandra sink against the real Cassandra (default 127.0.0.1:9042): tables from schemas, the type
//! suite, upsert/update/delete, replay safety through USING TIMESTAMP, checkpoints, added columns,
//! and connection failures.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use polyrepl_cassandra::{CassandraOptions, CassandraSink};
use polyrepl_core::{Batch, Checkpoint, ColumnKind, Date, Position, Sink, SnapshotProgress, TableId, Time, Value};
use scylla::value::{CqlDate, CqlDecimal, CqlTimestamp, CqlValue, CqlVarint, Row as CqlRow};

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Every column kind, with the CQL type it must get.
fn type_suite(keyspace: &str) -> (std::sync::Arc<polyrepl_core::TableSchema>, Vec<&'static str>) {
    let columns = vec![
        (column("id", ColumnKind::BigInt), "bigint"),
        (column("c_tiny", ColumnKind::TinyInt), "int"),
        (column("c_small", ColumnKind::SmallInt), "int"),
        (unsigned("c_medium_u", ColumnKind::MediumInt), "int"),
        (column("c_int", ColumnKind::Int), "int"),
        (unsigned("c_int_u", ColumnKind::Int), "bigint"),
        (column("c_big", ColumnKind::BigInt), "bigint"),
        (unsigned("c_big_u", ColumnKind::BigInt), "varint"),
        (column("c_float", ColumnKind::Float), "float"),
        (column("c_double", ColumnKind::Double), "double"),
        (column("c_dec", ColumnKind::Decimal { precision: 65, scale: 30 }), "decimal"),
        (column("c_char", ColumnKind::Char), "text"),
        (column("c_varchar", ColumnKind::VarChar), "text"),
        (column("c_text", ColumnKind::Text), "text"),
        (column("c_binary", ColumnKind::Binary), "blob"),
        (column("c_blob", ColumnKind::Blob), "blob"),
        (column("c_date", ColumnKind::Date), "date"),
        (column("c_time", ColumnKind::Time { fsp: 6 }), "bigint"),
        (column("c_dt3", ColumnKind::DateTime { fsp: 3 }), "timestamp"),
        (column("c_dt6", ColumnKind::DateTime { fsp: 6 }), "text"),
        (column("c_ts0", ColumnKind::Timestamp { fsp: 0 }), "timestamp"),
        (column("c_ts6", ColumnKind::Timestamp { fsp: 6 }), "text"),
        (column("c_year", ColumnKind::Year), "int"),
        (column("c_json", ColumnKind::Json), "text"),
        (column("c_bit", ColumnKind::Bit { bits: 64 }), "bigint"),
        (column("c_enum", ColumnKind::Enum { labels: labels(&["small", "big"]) }), "text"),
        (column("c_set", ColumnKind::Set { labels: labels(&["z", "a", "m"]) }), "frozen<set<text>>"),
        (column("Mixed \"Case\" ☃", ColumnKind::VarChar), "text"),
    ];
    let types = columns.iter().map(|(_, t)| *t).collect();
    (table(keyspace, "types", columns.into_iter().map(|(c, _)| c).collect(), vec![0]), types)
}

#[tokio::test]
async fn type_suite_round_trips_with_exact_cql_types() {
    with_sink(|mut sink, keyspace| async move {
        let (schema, types) = type_suite(&keyspace);
        sink.prepare(std::slice::from_ref(&schema)).await.unwrap();

        // The table exactly as Cassandra describes it.
        let described = sink
            .session()
            .query_unpaged(
                "SELECT column_name, kind, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'types'",
                (&keyspace,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap();
        let described: HashMap<String, (String, String)> = described
            .rows::<(String, String, String)>()
            .unwrap()
            .map(|r| r.unwrap())
            .map(|(n, k, t)| (n, (k, t)))
            .collect();
        assert_eq!(described.len(), schema.columns.len());
        for (column, want) in schema.columns.iter().zip(&types) {
            assert_eq!(described[&column.name].1, *want, "CQL type of {}", column.name);
        }
        assert_eq!(described["id"].0, "partition_key");

        let max_row = vec![
            Value::Int(1),
            Value::Int(127),
            Value::Int(-32768),
            Value::UInt(16_777_215),
            Value::Int(i64::from(i32::MIN)),
            Value::UInt(4_294_967_295),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Float(3.4028235e38),
            Value::Double(-1.7976931348623157e308),
            Value::Decimal("-99999999999999999999999999999999999.999999999999999999999999999999".into()),
            Value::String("ab".into()),
            Value::String("emoji 😀 and ünïcödé".into()),
            Value::String("x".repeat(10_000)),
            Value::Bytes(vec![0, 0, 0, 0]),
            Value::Bytes(vec![0, 255, 0, 1, 2]),
            Value::Date(Date { year: 9999, month: 12, day: 31 }),
            Value::Time(Time { negative: false, hours: 23, minutes: 59, seconds: 59, micros: 999_999, fsp: 6 }),
            Value::DateTime(datetime(1969, 12, 31, 23, 59, 59, 999_000, 3)),
            Value::DateTime(datetime(2025, 11, 29, 12, 0, 1, 123_456, 6)),
            Value::Timestamp(datetime(2038, 1, 19, 3, 14, 7, 0, 0)),
            Value::Timestamp(datetime(1970, 1, 1, 0, 0, 1, 1, 6)),
            Value::Year(2155),
            Value::Json(serde_json::json!({"a": [1, -2.5, "😀", null, {"b": true}], "n": 18446744073709551615u64})),
            Value::Bit(u64::MAX),
            Value::Enum("big".into()),
            Value::Set(labels(&["z", "m"])),
            Value::String("quoted".into()),
        ];
        let min_row = vec![
            Value::Int(2),
            Value::Int(-128),
            Value::Int(32767),
            Value::UInt(0),
            Value::Int(i64::from(i32::MAX)),
            Value::UInt(0),
            Value::Int(i64::MAX),
            Value::UInt(i64::MAX as u64 + 1),
            Value::Float(-0.0),
            Value::Double(5e-324),
            Value::Decimal("0.000000000000000000000000000001".into()),
            Value::String(String::new()),
            Value::String(String::new()),
            Value::String(String::new()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![]),
            Value::Date(Date { year: 1000, month: 1, day: 1 }),
            Value::Time(Time { negative: false, hours: 0, minutes: 0, seconds: 0, micros: 0, fsp: 6 }),
            Value::DateTime(datetime(1000, 1, 1, 0, 0, 0, 0, 3)),
            Value::DateTime(datetime(9999, 12, 31, 23, 59, 59, 999_999, 6)),
            Value::Timestamp(datetime(1970, 1, 1, 0, 0, 1, 0, 0)),
            Value::Timestamp(datetime(2038, 1, 19, 3, 14, 7, 999_999, 6)),
            Value::Year(1901),
            Value::Json(serde_json::json!("")),
            Value::Bit(0),
            Value::Enum(String::new()),
            Value::Set(vec![]),
            Value::String(String::new()),
        ];
        let mut null_row = vec![Value::Null; schema.columns.len()];
        null_row[0] = Value::Int(3);
        let mut zero_row = null_row.clone();
        zero_row[0] = Value::Int(4);
        zero_row[16] = Value::Date(Date { year: 0, month: 0, day: 0 });
        zero_row[19] = Value::DateTime(datetime(0, 0, 0, 0, 0, 0, 0, 6));
        zero_row[20] = Value::Timestamp(datetime(0, 0, 0, 0, 0, 0, 0, 0));
        let rows = [max_row.clone(), min_row.clone(), null_row.clone(), zero_row];
        let changes = rows.iter().map(|r| insert(&schema, r.clone())).collect();
        sink.apply(&batch(changes, 500)).await.unwrap();
        assert_eq!(sink.mapping_counts().zero_dates, 3);

        // Exact CQL values, read with a plain query.
        let names: Vec<String> = schema.columns.iter().map(|c| format!("\"{}\"", c.name.replace('"', "\"\""))).collect();
        let select = format!("SELECT {} FROM \"{keyspace}\".types WHERE id = ?", names.join(", "));
        let read = |id: i64| {
            let session = sink.session();
            let select = select.clone();
            async move {
                let result = session.query_unpaged(select, (id,)).await.unwrap().into_rows_result().unwrap();
                result.single_row::<CqlRow>().unwrap().columns
            }
        };
        let cells = read(1).await;
        let by_name: HashMap<&str, Option<CqlValue>> = schema.columns.iter().map(|c| c.name.as_str()).zip(cells).collect();
        let cell = |n: &str| by_name[n].clone().unwrap_or_else(|| panic!("{n} is null"));
        assert_eq!(cell("c_tiny"), CqlValue::Int(127));
        assert_eq!(cell("c_int_u"), CqlValue::BigInt(4_294_967_295));
        assert_eq!(cell("c_big"), CqlValue::BigInt(i64::MIN));
        assert_eq!(cell("c_big_u"), CqlValue::Varint(CqlVarint::from_signed_bytes_be(vec![0, 255, 255, 255, 255, 255, 255, 255, 255])));
        let CqlValue::Decimal(dec) = cell("c_dec") else { panic!("c_dec is not a decimal") };
        assert_eq!(dec.as_signed_be_bytes_slice_and_exponent().1, 30);
        assert_eq!(cell("c_varchar"), CqlValue::Text("emoji 😀 and ünïcödé".into()));
        assert_eq!(cell("c_binary"), CqlValue::Blob(vec![0, 0, 0, 0]));
        assert_eq!(cell("c_date"), CqlValue::Date(CqlDate((1u32 << 31) + 2_932_896)));
        assert_eq!(cell("c_time"), CqlValue::BigInt(86_399_999_999));
        assert_eq!(cell("c_dt3"), CqlValue::Timestamp(CqlTimestamp(-1)));
        assert_eq!(cell("c_dt6"), CqlValue::Text("2025-11-29T12:00:01.123456".into()));
        assert_eq!(cell("c_ts0"), CqlValue::Timestamp(CqlTimestamp(2_147_483_647_000)));
        assert_eq!(cell("c_ts6"), CqlValue::Text("1970-01-01T00:00:01.000001Z".into()));
        assert_eq!(cell("c_year"), CqlValue::Int(2155));
        assert_eq!(cell("c_bit"), CqlValue::BigInt(-1));
        assert_eq!(cell("c_enum"), CqlValue::Text("big".into()));
        assert_eq!(cell("c_set"), CqlValue::Set(vec![CqlValue::Text("m".into()), CqlValue::Text("z".into())]));
        let CqlValue::Text(json) = cell("c_json") else { panic!("c_json is not text") };
        assert_eq!(Value::Json(serde_json::from_str(&json).unwrap()), max_row[23]);
        // '' is not NULL; an empty SET is an empty set, not NULL.
        let cells = read(2).await;
        assert_eq!(cells[12], Some(CqlValue::Text(String::new())));
        assert_eq!(cells[15], Some(CqlValue::Blob(vec![])));
        assert_eq!(cells[26], Some(CqlValue::Set(vec![])));
        assert_eq!(cells[10], Some(CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_and_exponent(vec![1], 30))));
        assert_eq!(cells[7], Some(CqlValue::Varint(CqlVarint::from_signed_bytes_be(vec![0, 0x80, 0, 0, 0, 0, 0, 0, 0]))));
        assert!(read(3).await[1..].iter().all(Option::is_none));

        // Through the sink's own reader: every row as it was, zero dates as NULL, a missing key as None.
        let mut expected_zero = null_row.clone();
        expected_zero[0] = Value::Int(4);
        let keys = vec![vec![Value::Int(1)], vec![Value::Int(2)], vec![Value::Int(3)], vec![Value::Int(4)], vec![Value::Int(99)]];
        let back = sink.read_rows(&schema, &keys).await.unwrap();
        assert_eq!(back, vec![Some(max_row), Some(min_row), Some(null_row), Some(expected_zero), None]);

        // TIME's whole range, beyond what a CQL time holds, is stored as signed microseconds.
        let mut long = rows[2].clone();
        long[17] = Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 });
        sink.apply(&batch(vec![upsert(&schema, long.clone())], 600)).await.unwrap();
        assert_eq!(sink.read_rows(&schema, &[vec![long[0].clone()]]).await.unwrap(), vec![Some(long)]);
    })
    .await;
}

#[tokio::test]
async fn upsert_update_delete_replay_and_checkpoint() {
    with_sink(|mut sink, keyspace| async move {
        let pipeline = sink.pipeline().to_string();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), None, "a fresh pipeline has no checkpoint");
        let t = table(
            &keyspace,
            "items",
            vec![column("id", ColumnKind::Int), column("name", ColumnKind::VarChar), column("qty", ColumnKind::BigInt)],
            vec![0],
        );
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let row = |id: i64, name: Option<&str>, qty: Option<i64>| {
            vec![
                Value::Int(id),
                name.map_or(Value::Null, |n| Value::String(n.into())),
                qty.map_or(Value::Null, Value::Int),
            ]
        };
        let key = |id: i64| vec![Value::Int(id)];
        async fn read_ids(
            sink: &mut CassandraSink,
            t: &polyrepl_core::TableSchema,
            ids: &[i64],
        ) -> Vec<Option<polyrepl_core::Row>> {
            let keys: Vec<_> = ids.iter().map(|&i| vec![Value::Int(i)]).collect();
            sink.read_rows(t, &keys).await.unwrap()
        }

        // Snapshot rows at the hand-over position 1000, all with one timestamp.
        let snapshot = Batch::new(
            (1..=3).map(|i| at(insert(&t, row(i, Some("snap"), Some(i))), 1000, i as u32)).collect(),
            Checkpoint::snapshotting(
                position(1000),
                SnapshotProgress { done: vec![], current: Some((TableId::new(&keyspace, "items"), key(3))) },
            ),
        );
        sink.apply(&snapshot).await.unwrap();
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(snapshot.checkpoint.clone()));

        // Streaming: update with a NULL clears the old value; several changes to one key keep the last.
        let b1 = batch(
            vec![
                upsert(&t, row(1, Some("one"), Some(10))),
                upsert(&t, row(1, Some("uno"), None)),
                delete(&t, key(2)),
                insert(&t, row(4, Some("four"), Some(4))),
            ],
            1100,
        );
        sink.apply(&b1).await.unwrap();
        let after_b1 = vec![
            Some(row(1, Some("uno"), None)),
            None,
            Some(row(3, Some("snap"), Some(3))),
            Some(row(4, Some("four"), Some(4))),
        ];
        assert_eq!(read_ids(&mut sink, &t, &[1, 2, 3, 4]).await, after_b1);
        assert_eq!(sink.load_checkpoint(&pipeline).await.unwrap(), Some(Checkpoint::streaming(position(1100))));

        // Delete, then re-insert the same key in a later transaction: the row lives again.
        sink.apply(&batch(vec![delete(&t, key(3))], 1200)).await.unwrap();
        sink.apply(&batch(vec![insert(&t, row(3, Some("again"), None))], 1300)).await.unwrap();
        let newest = vec![
            Some(row(1, Some("uno"), None)),
            None,
            Some(row(3, Some("again"), None)),
            Some(row(4, Some("four"), Some(4))),
        ];
        assert_eq!(read_ids(&mut sink, &t, &[1, 2, 3, 4]).await, newest);

        // Replaying older batches (a crash before the checkpoint, a resumed snapshot) changes nothing.
        sink.apply(&snapshot).await.unwrap();
        sink.apply(&b1).await.unwrap();
        sink.apply(&batch(vec![delete(&t, key(3))], 1200)).await.unwrap();
        assert_eq!(
            read_ids(&mut sink, &t, &[1, 2, 3, 4]).await,
            newest,
            "an old batch replayed after a newer one must not overwrite it"
        );

        // The newest write of a key in the batch wins even when applied again.
        sink.apply(&batch(vec![delete(&t, key(4))], 1400)).await.unwrap();
        assert_eq!(read_ids(&mut sink, &t, &[4]).await, vec![None]);
        sink.apply(&batch(vec![insert(&t, row(4, Some("four"), Some(4)))], 1100)).await.unwrap();
        assert_eq!(
            read_ids(&mut sink, &t, &[4]).await,
            vec![None],
            "a replayed insert must not resurrect a newer delete"
        );

        // The checkpoint is the last batch's, and another connection sees it.
        let other = common::sink(&pipeline).await;
        let mut other = other;
        assert_eq!(other.load_checkpoint(&pipeline).await.unwrap(), Some(Checkpoint::streaming(position(1100))));
    })
    .await;
}

#[tokio::test]
async fn added_columns_are_added_in_prepare_and_lazily_in_apply() {
    with_sink(|mut sink, keyspace| async move {
        let v1 = table(&keyspace, "evolving", vec![column("id", ColumnKind::Int), column("a", ColumnKind::VarChar)], vec![0]);
        sink.prepare(std::slice::from_ref(&v1)).await.unwrap();
        sink.apply(&batch(vec![insert(&v1, vec![Value::Int(1), Value::String("x".into())])], 100)).await.unwrap();

        // The source gained a column (ALTER TABLE … ADD): the first change with the new schema adds it.
        let v2 = table(
            &keyspace,
            "evolving",
            vec![column("id", ColumnKind::Int), column("a", ColumnKind::VarChar), column("b", ColumnKind::Decimal { precision: 10, scale: 2 })],
            vec![0],
        );
        sink.apply(&batch(vec![insert(&v2, vec![Value::Int(2), Value::String("y".into()), Value::Decimal("12.50".into())])], 200))
            .await
            .unwrap();
        let back = sink.read_rows(&v2, &[vec![Value::Int(1)], vec![Value::Int(2)]]).await.unwrap();
        assert_eq!(
            back,
            vec![
                Some(vec![Value::Int(1), Value::String("x".into()), Value::Null]),
                Some(vec![Value::Int(2), Value::String("y".into()), Value::Decimal("12.50".into())])
            ]
        );

        // A restart with a wider schema adds columns in prepare; a reader of the wider schema before that sees NULLs.
        let v3 = table(
            &keyspace,
            "evolving",
            vec![
                column("id", ColumnKind::Int),
                column("a", ColumnKind::VarChar),
                column("b", ColumnKind::Decimal { precision: 10, scale: 2 }),
                column("c", ColumnKind::Set { labels: labels(&["p", "q"]) }),
            ],
            vec![0],
        );
        let mut fresh = common::sink(sink.pipeline()).await;
        assert_eq!(fresh.read_rows(&v3, &[vec![Value::Int(2)]]).await.unwrap()[0].as_ref().unwrap()[3], Value::Null);
        fresh.prepare(std::slice::from_ref(&v3)).await.unwrap();
        let types = sink
            .session()
            .query_unpaged(
                "SELECT column_name, type FROM system_schema.columns WHERE keyspace_name = ? AND table_name = 'evolving'",
                (&keyspace,),
            )
            .await
            .unwrap()
            .into_rows_result()
            .unwrap()
            .rows::<(String, String)>()
            .unwrap()
            .map(|r| r.unwrap())
            .collect::<HashMap<_, _>>();
        assert_eq!(types.get("b").map(String::as_str), Some("decimal"));
        assert_eq!(types.get("c").map(String::as_str), Some("frozen<set<text>>"));

        // A source column whose type changed cannot be written into the old CQL column: a definite error.
        let retyped = table(&keyspace, "evolving", vec![column("id", ColumnKind::Int), column("a", ColumnKind::BigInt)], vec![0]);
        let err = fresh.apply(&batch(vec![insert(&retyped, vec![Value::Int(3), Value::Int(5)])], 300)).await.unwrap_err();
        assert!(!err.is_transient() && err.to_string().contains("column 'a' is text"), "{err}");

        // A table Cassandra cannot name, or without a key, is refused up front.
        let unnamed = table(&keyspace, "bad-name", vec![column("id", ColumnKind::Int)], vec![0]);
        assert!(!fresh.prepare(&[unnamed]).await.unwrap_err().is_transient());
    })
    .await;
}

#[tokio::test]
async fn unreachable_port_is_transient_and_fast() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let url = format!("cassandra://127.0.0.1:{port}");
    let err =
        CassandraSink::connect(&url, "p", CassandraOptions::default()).await.err().expect("nothing listens there");
    assert!(err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(err.to_string().contains(&format!("cassandra://127.0.0.1:{port}")), "{err}");
}

#[tokio::test]
async fn a_port_that_is_not_cassandra_is_definite() {
    // Real servers of the local stack: MariaDB speaks first, Redis answers only once a line ends.
    let candidates = [
        ("MariaDB", std::env::var("POLYREPL_MYSQL_PORT").unwrap_or_else(|_| "5600".into())),
        ("Redis", std::env::var("POLYREPL_REDIS_PORT").unwrap_or_else(|_| "6379".into())),
    ];
    let mut tried = 0;
    for (what, port) in candidates {
        if std::net::TcpStream::connect_timeout(
            &format!("127.0.0.1:{port}").parse().unwrap(),
            Duration::from_millis(300),
        )
        .is_err()
        {
            eprintln!("!!! {what} is not listening on 127.0.0.1:{port}: the not-Cassandra check against it is NOT run");
            continue;
        }
        tried += 1;
        let started = Instant::now();
        let options = CassandraOptions { connect_timeout: Duration::from_secs(1), ..CassandraOptions::default() };
        let err = CassandraSink::connect(&format!("cassandra://127.0.0.1:{port}"), "p", options)
            .await
            .err()
            .expect("not Cassandra");
        assert!(!err.is_transient(), "{what}: {err}");
        assert!(err.to_string().contains("not a Cassandra server"), "{what}: {err}");
        assert!(started.elapsed() < Duration::from_secs(3), "{what} took {:?}", started.elapsed());
    }
    if tried == 0 {
        eprintln!("!!! neither MariaDB nor Redis is running: start them with `polyrepl stack up` to run this check");
    }
}

#[tokio::test]
async fn name_has_no_credentials() {
    let sink = common::sink(&unique("pipe")).await;
    assert!(sink.name().starts_with("cassandra://") && !sink.name().contains('@'), "{}", sink.name());
    assert_eq!(sink.name(), polyrepl_cassandra::connection::sink_name(&common::url()));
    let named = polyrepl_cassandra::connection::sink_name("cassandra://user:secret@127.0.0.1:9042/ks");
    assert_eq!(named, "cassandra://127.0.0.1:9042");
    let _ = Position::new("binlog.000001", 4);
}

#[tokio::test]
async fn replication_options_in_the_url() {
    let base = common::url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let sink = CassandraSink::connect(&format!("{base}{sep}replication_factor=1"), &unique("pipe"), Default::default())
        .await
        .unwrap();
    assert_eq!(sink.options().replication, polyrepl_cassandra::Replication::Simple { factor: 1 });
    assert!(!sink.name().contains('?'), "{}", sink.name());
    let err = CassandraSink::connect(&format!("{base}{sep}consistency=one"), "p", Default::default())
        .await
        .err()
        .expect("refused");
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("unknown option 'consistency'"), "{err}");
}
