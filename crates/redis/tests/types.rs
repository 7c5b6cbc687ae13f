//! The type suite against the real Redis: the exact field bytes of every kind (read with a plain
//! client), and the round trip through `read_rows`.

mod common;

use common::*;
use polyrepl_core::{ColumnKind as K, Date, Sink, Time, Value};
use polyrepl_redis::RedisOptions;
use serde_json::json;

#[tokio::test]
async fn every_kind_is_stored_as_exact_text_and_reads_back_equal() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let decimal = format!("-{}.{}", "9".repeat(35), "9".repeat(30));
        // (column, edge value, exact field bytes)
        let cases: Vec<(polyrepl_core::Column, Value, Vec<u8>)> = vec![
            (column("i8", K::TinyInt), Value::Int(-128), b"-128".to_vec()),
            (unsigned("u8", K::TinyInt), Value::UInt(255), b"255".to_vec()),
            (column("i24", K::MediumInt), Value::Int(-8_388_608), b"-8388608".to_vec()),
            (unsigned("u32", K::Int), Value::UInt(4_294_967_295), b"4294967295".to_vec()),
            (column("i64", K::BigInt), Value::Int(i64::MIN), b"-9223372036854775808".to_vec()),
            (unsigned("u64", K::BigInt), Value::UInt(u64::MAX), b"18446744073709551615".to_vec()),
            (column("f", K::Float), Value::Float(-0.1), b"-0.1".to_vec()),
            (column("d", K::Double), Value::Double(0.1 + 0.2), b"0.30000000000000004".to_vec()),
            (
                column("dec", K::Decimal { precision: 65, scale: 30 }),
                Value::Decimal(decimal.clone()),
                decimal.clone().into_bytes(),
            ),
            (
                column("dec2", K::Decimal { precision: 10, scale: 3 }),
                Value::Decimal("-12.500".into()),
                b"-12.500".to_vec(),
            ),
            (column("s", K::VarChar), Value::String("héllo 😀 Ω".into()), "héllo 😀 Ω".as_bytes().to_vec()),
            (column("empty", K::Char), Value::String(String::new()), b"".to_vec()),
            (
                column("txt", K::Text),
                Value::String("line\nbreak,comma:colon\0nul".into()),
                b"line\nbreak,comma:colon\0nul".to_vec(),
            ),
            (column("blob", K::Blob), Value::Bytes(vec![0, 1, 0, 0xff, 0xfe, 0]), vec![0, 1, 0, 0xff, 0xfe, 0]),
            (column("bin", K::Binary), Value::Bytes(vec![0; 16]), vec![0; 16]),
            (column("date", K::Date), Value::Date(Date { year: 2024, month: 2, day: 29 }), b"2024-02-29".to_vec()),
            (column("zdate", K::Date), Value::Date(Date { year: 0, month: 0, day: 0 }), b"0000-00-00".to_vec()),
            (
                column("tneg", K::Time { fsp: 6 }),
                Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 }),
                b"-838:59:59.000000".to_vec(),
            ),
            (
                column("t3", K::Time { fsp: 3 }),
                Value::Time(Time { negative: false, hours: 1, minutes: 2, seconds: 3, micros: 450_000, fsp: 3 }),
                b"01:02:03.450".to_vec(),
            ),
            (
                column("dt6", K::DateTime { fsp: 6 }),
                Value::DateTime(datetime(9999, 12, 31, 23, 59, 59, 999_999, 6)),
                b"9999-12-31 23:59:59.999999".to_vec(),
            ),
            (
                column("dt0", K::DateTime { fsp: 0 }),
                Value::DateTime(datetime(0, 0, 0, 0, 0, 0, 0, 0)),
                b"0000-00-00 00:00:00".to_vec(),
            ),
            (
                column("ts3", K::Timestamp { fsp: 3 }),
                Value::Timestamp(datetime(1970, 1, 1, 0, 0, 1, 5_000, 3)),
                b"1970-01-01 00:00:01.005".to_vec(),
            ),
            (column("y", K::Year), Value::Year(2155), b"2155".to_vec()),
            (
                column("j", K::Json),
                Value::Json(json!({"a": [1, -2.5, null, true], "e": "😀", "big": u64::MAX})),
                r#"{"a":[1,-2.5,null,true],"big":18446744073709551615,"e":"😀"}"#.as_bytes().to_vec(),
            ),
            (column("bit", K::Bit { bits: 64 }), Value::Bit(u64::MAX), b"18446744073709551615".to_vec()),
            (
                column("en", K::Enum { labels: vec!["x".into(), "y z".into()] }),
                Value::Enum("y z".into()),
                b"y z".to_vec(),
            ),
            (
                column("set", K::Set { labels: vec!["a".into(), "b".into(), "c".into()] }),
                Value::Set(vec!["a".into(), "c".into()]),
                b"a,c".to_vec(),
            ),
            (column("eset", K::Set { labels: vec!["a".into()] }), Value::Set(vec![]), b"".to_vec()),
            (column("nul", K::VarChar), Value::Null, vec![]),
        ];
        let mut columns = vec![column("id", K::BigInt)];
        columns.extend(cases.iter().map(|c| c.0.clone()));
        let t = table(&db, "types", columns, vec![0]);
        let mut full = vec![Value::Int(1)];
        full.extend(cases.iter().map(|c| c.1.clone()));
        // A second row: every column NULL but the key.
        let mut nulls = vec![Value::Int(2)];
        nulls.extend(cases.iter().map(|_| Value::Null));
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        sink.apply(&batch(vec![insert(&t, full.clone()), insert(&t, nulls.clone())], 200)).await.unwrap();

        let mut conn = raw().await;
        let stored = hash(&mut conn, format!("{db}:types:1").as_bytes()).await;
        let mut expected: Vec<(String, Vec<u8>)> =
            cases.iter().filter(|c| !c.1.is_null()).map(|c| (c.0.name.clone(), c.2.clone())).collect();
        expected.push(("id".into(), b"1".to_vec()));
        expected.sort();
        // JSON text: compare parsed (key order of a JSON object is the serializer's business).
        let (json_stored, json_expected) = (
            stored.iter().find(|f| f.0 == "j").unwrap().1.clone(),
            expected.iter().find(|f| f.0 == "j").unwrap().1.clone(),
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&json_stored).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&json_expected).unwrap()
        );
        let without_json = |v: &[(String, Vec<u8>)]| v.iter().filter(|f| f.0 != "j").cloned().collect::<Vec<_>>();
        assert_eq!(without_json(&stored), without_json(&expected));
        let hexists: i64 =
            redis::cmd("HEXISTS").arg(format!("{db}:types:1")).arg("nul").query_async(&mut conn).await.unwrap();
        assert_eq!(hexists, 0, "a NULL column is an absent field");
        let hexists: i64 =
            redis::cmd("HEXISTS").arg(format!("{db}:types:1")).arg("empty").query_async(&mut conn).await.unwrap();
        assert_eq!(hexists, 1, "an empty string is a present, empty field");
        assert_eq!(hash(&mut conn, format!("{db}:types:2").as_bytes()).await, vec![("id".to_string(), b"2".to_vec())]);

        let back = sink.read_rows(&t, &[vec![Value::Int(1)], vec![Value::Int(2)], vec![Value::Int(3)]]).await.unwrap();
        assert_eq!(back, vec![Some(full), Some(nulls), None]);
    })
    .await;
}

#[tokio::test]
async fn composite_and_binary_keys_round_trip() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let t = table(
            &db,
            "ck",
            vec![
                column("a", K::VarChar),
                column("b", K::VarBinary),
                column("c", K::DateTime { fsp: 0 }),
                column("v", K::Int),
            ],
            vec![0, 1, 2],
        );
        let stamp = Value::DateTime(datetime(2025, 1, 2, 3, 4, 5, 0, 0));
        let r1 = vec![Value::String("x:y".into()), Value::Bytes(vec![0, b':', 0xff]), stamp.clone(), Value::Int(1)];
        let r2 = vec![Value::String("x".into()), Value::Bytes(b"y:\0\xff".to_vec()), stamp.clone(), Value::Int(2)];
        sink.apply(&batch(vec![insert(&t, r1.clone()), insert(&t, r2.clone())], 300)).await.unwrap();
        let mut conn = raw().await;
        let mut expected_key = format!("{db}:ck:x\\:y:").into_bytes();
        expected_key.extend_from_slice(b"\0\\:\xff:2025-01-02 03\\:04\\:05");
        assert!(exists(&mut conn, &expected_key).await, "{:?}", keys(&mut conn, &format!("{db}:*")).await);
        assert_eq!(keys(&mut conn, &format!("{db}:ck:*")).await.len(), 2, "different keys never collide");
        let back = sink.read_rows(&t, &[Change::key_of(&t, &r2), Change::key_of(&t, &r1)]).await.unwrap();
        assert_eq!(back, vec![Some(r2), Some(r1)]);
    })
    .await;
}

use polyrepl_core::Change;

/// JSON numbers an f64 would round or refuse, and odd keys: the field holds every digit as written (read
/// with a plain client), and `read_rows` gives the same values back.
#[tokio::test]
async fn json_numbers_are_stored_with_every_digit_and_read_back_equal() {
    with_sink(RedisOptions::default(), |mut sink, db| async move {
        let t = table(&db, "jsonnum", vec![column("id", K::Int), column("js", K::Json)], vec![0]);
        let cases = polyrepl_core::testkit::json_cases::json_kept_as_text();
        let rows: Vec<Vec<Value>> = cases
            .iter()
            .enumerate()
            .map(|(i, (source, _))| {
                vec![Value::Int(i as i64 + 1), Value::Json(polyrepl_core::json::parse(source.as_bytes()).unwrap())]
            })
            .collect();
        sink.apply(&batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 300)).await.unwrap();

        let mut conn = raw().await;
        for (i, (source, field)) in cases.iter().enumerate() {
            let stored = hash(&mut conn, format!("{db}:jsonnum:{}", i + 1).as_bytes()).await;
            let js = stored.iter().find(|f| f.0 == "js").unwrap_or_else(|| panic!("{source}: no field"));
            assert_eq!(String::from_utf8_lossy(&js.1), field.as_str(), "{source}: stored text");
        }
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| vec![r[0].clone()]).collect();
        let back = sink.read_rows(&t, &keys).await.unwrap();
        for ((source, _), (row, got)) in cases.iter().zip(rows.iter().zip(back)) {
            assert_eq!(got.as_ref(), Some(row), "{source}: read back");
        }
    })
    .await;
}
