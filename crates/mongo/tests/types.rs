//! Every source type with edge values, written through `apply`, checked as raw BSON with the plain
//! driver and read back through `read_rows`.

mod common;

use common::*;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime, Decimal128, Document};
use polyrepl_core::{ColumnKind as K, Date, DateTime, Sink, Time, Value};
use serde_json::json;

fn millis(v: &DateTime) -> Bson {
    Bson::DateTime(BsonDateTime::from_millis(v.epoch_millis().unwrap()))
}

const DEC65_MAX: &str = "99999999999999999999999999999999999.999999999999999999999999999999";
const DEC65_TINY: &str = "-0.000000000000000000000000000001";

#[tokio::test]
async fn every_type_is_stored_exactly_and_reads_back() {
    with_sink(|mut sink, db| async move {
        let t = table(
            &db,
            "types",
            vec![
                column("id", K::Int),
                column("ti", K::TinyInt),
                unsigned("tiu", K::TinyInt),
                column("i", K::Int),
                column("bi", K::BigInt),
                unsigned("biu", K::BigInt),
                column("f", K::Float),
                column("d", K::Double),
                column("dec", K::Decimal { precision: 10, scale: 3 }),
                column("dec65", K::Decimal { precision: 65, scale: 30 }),
                column("vc", K::VarChar),
                column("txt", K::Text),
                column("bin", K::Blob),
                column("day", K::Date),
                column("tm", K::Time { fsp: 6 }),
                column("dt3", K::DateTime { fsp: 3 }),
                column("dt6", K::DateTime { fsp: 6 }),
                column("ts0", K::Timestamp { fsp: 0 }),
                column("ts6", K::Timestamp { fsp: 6 }),
                column("yr", K::Year),
                column("js", K::Json),
                column("bt", K::Bit { bits: 64 }),
                column("en", K::Enum { labels: vec!["small".into(), "large".into()] }),
                column("st", K::Set { labels: vec!["a".into(), "b".into(), "c".into()] }),
            ],
            vec![0],
        );
        let dt3 = datetime(2025, 11, 29, 12, 0, 1, 123_000, 3);
        let dt6 = datetime(2025, 11, 29, 12, 0, 1, 123_456, 6);
        let ts0 = datetime(2038, 1, 19, 3, 14, 7, 0, 0);
        let ts6 = datetime(2038, 1, 19, 3, 14, 7, 999_999, 6);
        let max_json = json!({"a": 1, "b": [true, null, 2.5, "x"], "c": {"d": "😀"}, "big": 9007199254740993i64});
        let max_row = vec![
            Value::Int(1),
            Value::Int(127),
            Value::UInt(255),
            Value::Int(i32::MAX as i64),
            Value::Int(i64::MAX),
            Value::UInt(u64::MAX),
            Value::Float(f32::MAX),
            Value::Double(f64::MAX),
            Value::Decimal("9999999.999".into()),
            Value::Decimal(DEC65_MAX.into()),
            Value::String("emoji 😀🎉 ü 中文".into()),
            Value::String("".into()),
            Value::Bytes(vec![0, 0, 1, 0, 255]),
            Value::Date(Date { year: 9999, month: 12, day: 31 }),
            Value::Time(Time { negative: false, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 }),
            Value::DateTime(dt3),
            Value::DateTime(dt6),
            Value::Timestamp(ts0),
            Value::Timestamp(ts6),
            Value::Year(2155),
            Value::Json(max_json.clone()),
            Value::Bit(u64::MAX),
            Value::Enum("large".into()),
            Value::Set(vec!["a".into(), "c".into()]),
        ];
        let min_dt3 = datetime(1000, 1, 1, 0, 0, 0, 0, 3);
        let min_dt6 = datetime(1000, 1, 1, 0, 0, 0, 1, 6);
        let min_ts0 = datetime(1970, 1, 1, 0, 0, 1, 0, 0);
        let min_ts6 = datetime(1970, 1, 1, 0, 0, 1, 1, 6);
        let nested_json = json!([1, [2, [3]], {"$weird": {"a.b": []}}]);
        let min_row = vec![
            Value::Int(2),
            Value::Int(-128),
            Value::UInt(0),
            Value::Int(i32::MIN as i64),
            Value::Int(i64::MIN),
            Value::UInt(i64::MAX as u64 + 1),
            Value::Float(-1.5),
            Value::Double(f64::MIN_POSITIVE),
            Value::Decimal("-0.001".into()),
            Value::Decimal(DEC65_TINY.into()),
            Value::String("".into()),
            Value::String("line\nbreak \"quoted\" 'single' \\ back".into()),
            Value::Bytes(vec![]),
            Value::Date(Date { year: 1000, month: 1, day: 1 }),
            Value::Time(Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 }),
            Value::DateTime(min_dt3),
            Value::DateTime(min_dt6),
            Value::Timestamp(min_ts0),
            Value::Timestamp(min_ts6),
            Value::Year(1901),
            Value::Json(nested_json.clone()),
            Value::Bit(0),
            Value::Enum("".into()),
            Value::Set(vec![]),
        ];
        let mut null_row = vec![Value::Null; t.columns.len()];
        null_row[0] = Value::Int(3);
        let zero = datetime(0, 0, 0, 0, 0, 0, 0, 0);
        let mut zero_row = null_row.clone();
        zero_row[0] = Value::Int(4);
        zero_row[13] = Value::Date(Date { year: 0, month: 0, day: 0 });
        zero_row[15] = Value::DateTime(DateTime { fsp: 3, ..zero });
        zero_row[16] = Value::DateTime(DateTime { fsp: 6, ..zero });
        zero_row[17] = Value::Timestamp(zero);
        // A string column holding JSON-looking text stays a string; a JSON string scalar stays a string.
        zero_row[10] = Value::String("[1]".into());
        zero_row[20] = Value::Json(json!("[1]"));

        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        let before = sink.mapping_counts();
        let rows = [max_row.clone(), min_row.clone(), null_row.clone(), zero_row.clone()];
        sink.apply(&batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 200)).await.unwrap();
        let after = sink.mapping_counts();
        assert_eq!(after.zero_dates - before.zero_dates, 4, "the four zero dates are counted");

        // Raw BSON, exactly.
        let decimal128 = sink.server().features.decimal128;
        let nested_arrays = sink.server().features.nested_arrays;
        let dec = |text: &str| -> Bson {
            if decimal128 {
                Bson::Decimal128(text.parse::<Decimal128>().unwrap())
            } else {
                Bson::String(text.into())
            }
        };
        let got = document(&sink, &db, "types", 1).await.expect("row 1 stored");
        let expected_max = doc! {
            "_id": 1, "id": 1, "ti": 127, "tiu": 255, "i": i32::MAX, "bi": i64::MAX,
            "biu": dec("18446744073709551615"),
            "f": f32::MAX as f64, "d": f64::MAX,
            "dec": dec("9999999.999"),
            "dec65": DEC65_MAX, // 65 digits never fit decimal128: exact text
            "vc": "emoji 😀🎉 ü 中文", "txt": "",
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![0, 0, 1, 0, 255] },
            "day": "9999-12-31", "tm": "838:59:59.000000",
            "dt3": millis(&dt3), "dt6": "2025-11-29T12:00:01.123456",
            "ts0": millis(&ts0), "ts6": "2038-01-19T03:14:07.999999Z",
            "yr": 2155,
            "js": { "a": 1, "b": [true, Bson::Null, 2.5, "x"], "c": { "d": "😀" }, "big": 9007199254740993i64 },
            "bt": -1i64, "en": "large", "st": ["a", "c"],
        };
        assert_documents_equal(&got, &expected_max);

        let got = document(&sink, &db, "types", 2).await.expect("row 2 stored");
        let nested = if nested_arrays {
            Bson::Array(vec![
                Bson::Int32(1),
                Bson::Array(vec![Bson::Int32(2), Bson::Array(vec![Bson::Int32(3)])]),
                Bson::Document(doc! { "$weird": { "a.b": [] } }),
            ])
        } else {
            Bson::Binary(Binary {
                subtype: BinarySubtype::UserDefined(0x80),
                bytes: nested_json.to_string().into_bytes(),
            })
        };
        let expected_min = doc! {
            "_id": 2, "id": 2, "ti": -128, "tiu": 0, "i": i32::MIN, "bi": i64::MIN,
            "biu": dec("9223372036854775808"),
            "f": -1.5, "d": f64::MIN_POSITIVE,
            "dec": dec("-0.001"), "dec65": dec(DEC65_TINY),
            "vc": "", "txt": "line\nbreak \"quoted\" 'single' \\ back",
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![] },
            "day": "1000-01-01", "tm": "-838:59:59.000000",
            "dt3": millis(&min_dt3), "dt6": "1000-01-01T00:00:00.000001",
            "ts0": millis(&min_ts0), "ts6": "1970-01-01T00:00:01.000001Z",
            "yr": 1901, "js": nested, "bt": 0i64, "en": "", "st": [],
        };
        assert_documents_equal(&got, &expected_min);

        let got = document(&sink, &db, "types", 3).await.expect("row 3 stored");
        assert_eq!(got.len(), t.columns.len() + 1, "NULL is a field holding null, not a missing field");
        assert!(got.iter().skip(2).all(|(_, v)| *v == Bson::Null), "{got:?}");

        let got = document(&sink, &db, "types", 4).await.expect("row 4 stored");
        for field in ["day", "dt3", "dt6", "ts0"] {
            assert_eq!(got.get(field), Some(&Bson::Null), "zero date {field} is null");
        }
        assert_eq!(got.get("vc"), Some(&Bson::String("[1]".into())));
        assert_eq!(got.get("js"), Some(&Bson::String("[1]".into())));

        // read_rows: round trip (zero dates come back NULL, as documented), absent keys are None.
        let keys: Vec<Vec<Value>> = (1..=5).map(|i| vec![Value::Int(i)]).collect();
        let back = sink.read_rows(&t, &keys).await.unwrap();
        let mut expected_zero = zero_row.clone();
        for i in [13, 15, 16, 17] {
            expected_zero[i] = Value::Null;
        }
        assert_eq!(back[0].as_ref(), Some(&max_row));
        assert_eq!(back[1].as_ref(), Some(&min_row));
        assert_eq!(back[2].as_ref(), Some(&null_row));
        assert_eq!(back[3].as_ref(), Some(&expected_zero));
        assert_eq!(back[4], None);
    })
    .await;
}

/// Field-by-field comparison with the BSON type included, with a readable failure.
fn assert_documents_equal(got: &Document, expected: &Document) {
    for (key, want) in expected {
        let have = got.get(key).unwrap_or_else(|| panic!("field {key} missing in {got:?}"));
        assert_eq!(have.element_type(), want.element_type(), "BSON type of {key}: got {have:?}, want {want:?}");
        assert_eq!(have, want, "value of {key}");
    }
    assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "fields and their order");
}

/// JSON numbers an f64 would round or refuse, and keys BSON dislikes: stored in the documented BSON
/// for this server's features, and read back through `read_rows` as the same JSON values.
#[tokio::test]
async fn json_numbers_are_stored_exactly_and_read_back_equal() {
    with_sink(|mut sink, db| async move {
        let features = sink.server().features;
        let t = table(&db, "jsonnum", vec![column("id", K::Int), column("js", K::Json)], vec![0]);
        let dec = |text: &str| Bson::Decimal128(text.parse::<Decimal128>().unwrap());
        let text =
            |t: &str| Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: t.as_bytes().to_vec() });
        // (source JSON text, BSON with decimal128, BSON without decimal128 — keys aside).
        let deep_source = format!("{}1.5{}", r#"{"a":"#.repeat(31), "}".repeat(31));
        let mut deep_bson = Bson::Double(1.5);
        for _ in 0..31 {
            deep_bson = Bson::Document(doc! { "a": deep_bson });
        }
        let cases: Vec<(String, Bson, Bson)> = vec![
            ("12345678901234567890123".into(), dec("12345678901234567890123"), text("12345678901234567890123")),
            ("[1e400]".into(), Bson::Array(vec![dec("1E+400")]), text("[1e+400]")),
            ("-0".into(), Bson::Int32(0), Bson::Int32(0)),
            (
                "[-0.0, 1.5, 0.1, 1E2, 1.50]".into(),
                bson_array(&[-0.0, 1.5, 0.1, 100.0, 1.5]),
                bson_array(&[-0.0, 1.5, 0.1, 100.0, 1.5]),
            ),
            ("0.1000000000000000000001".into(), dec("0.1000000000000000000001"), text("0.1000000000000000000001")),
            (
                "[9007199254740993, -9223372036854775808, 2147483648]".into(),
                Bson::Array(vec![
                    Bson::Int64(9_007_199_254_740_993),
                    Bson::Int64(i64::MIN),
                    Bson::Int64(2_147_483_648),
                ]),
                Bson::Array(vec![
                    Bson::Int64(9_007_199_254_740_993),
                    Bson::Int64(i64::MIN),
                    Bson::Int64(2_147_483_648),
                ]),
            ),
            ("18446744073709551615".into(), dec("18446744073709551615"), text("18446744073709551615")),
            (
                "123456789012345678901234567890123456789".into(),
                text("123456789012345678901234567890123456789"),
                text("123456789012345678901234567890123456789"),
            ),
            (
                r#"{"a": [1, {"b": [12345678901234567890123, 2.5]}], "c": {"d": -7}}"#.into(),
                Bson::Document(doc! {"a": [1, {"b": [dec("12345678901234567890123"), 2.5]}], "c": {"d": -7}}),
                text(r#"{"a":[1,{"b":[12345678901234567890123,2.5]}],"c":{"d":-7}}"#),
            ),
            (
                r#"{"": 1, "x": {"": "empty keys"}}"#.into(),
                Bson::Document(doc! {"": 1, "x": {"": "empty keys"}}),
                Bson::Document(doc! {"": 1, "x": {"": "empty keys"}}),
            ),
            (r#"{"a\u0000b": 1}"#.into(), text(r#"{"a\u0000b":1}"#), text(r#"{"a\u0000b":1}"#)),
            (deep_source.clone(), deep_bson.clone(), deep_bson),
        ];
        let rows: Vec<Vec<Value>> = cases
            .iter()
            .enumerate()
            .map(|(i, (source, _, _))| {
                vec![Value::Int(i as i64 + 1), Value::Json(polyrepl_core::json::parse(source.as_bytes()).unwrap())]
            })
            .collect();
        sink.prepare(std::slice::from_ref(&t)).await.unwrap();
        sink.apply(&batch(rows.iter().cloned().map(|r| insert(&t, r)).collect(), 300)).await.unwrap();

        // mongo-java-server 1.46.0 keeps binary subtype 0x80 (the mapping's JSON-as-text fallback) as
        // subtype 0, so such values cannot read back there; real MongoDB and FerretDB keep it.
        let subtype_lost = |want: &Bson| {
            server().label == "mongo-java"
                && matches!(want, Bson::Binary(b) if b.subtype == BinarySubtype::UserDefined(0x80))
        };
        for (i, (source, with_decimal128, without)) in cases.iter().enumerate() {
            let got = document(&sink, &db, "jsonnum", i as i32 + 1).await.expect("row stored");
            let want = if features.decimal128 { with_decimal128 } else { without };
            let have = got.get("js").unwrap();
            if subtype_lost(want) {
                let Bson::Binary(b) = want else { unreachable!() };
                let generic = Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: b.bytes.clone() });
                assert_eq!(have, &generic, "{source}: mongo-java-server stores subtype 0x80 as 0 (if not: fixed)");
                eprintln!("!!! NOT CHECKED on mongo-java-server: {source} (JSON text in binary subtype 0x80, which it keeps as subtype 0)");
                continue;
            }
            assert_eq!(have, want, "{source}: stored BSON");
            assert_eq!(have.element_type(), want.element_type(), "{source}: BSON type");
        }
        let keys: Vec<Vec<Value>> = rows.iter().map(|r| vec![r[0].clone()]).collect();
        let back = sink.read_rows(&t, &keys).await.unwrap();
        for ((source, with_decimal128, without), (row, got)) in cases.iter().zip(rows.iter().zip(back)) {
            if subtype_lost(if features.decimal128 { with_decimal128 } else { without }) {
                continue;
            }
            let got = got.unwrap_or_else(|| panic!("{source}: row missing"));
            assert_eq!(&got, row, "{source}: read back");
            assert_eq!(
                polyrepl_core::rowhash::row_bytes(&got),
                polyrepl_core::rowhash::row_bytes(row),
                "{source}: same row hash"
            );
        }
    })
    .await;
}

fn bson_array(values: &[f64]) -> Bson {
    Bson::Array(values.iter().map(|v| Bson::Double(*v)).collect())
}
