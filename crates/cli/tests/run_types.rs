//! Every column type, with edge values, end to end through `polyrepl run`: rows that exist before the
//! start (read by the snapshot) and the same rows inserted while streaming (decoded from the binlog)
//! must become exactly the BSON documented in `crates/mongo/src/mapping.rs` for the server in use
//! (FerretDB 1.x here: no decimal128, so DECIMAL and BIGINT UNSIGNED above i64::MAX are exact strings,
//! and JSON with nested arrays or `$`/`.` keys is JSON text in binary subtype 0x80).

mod common;

use common::*;
use mongodb::bson::{doc, spec::BinarySubtype, Binary, Bson, DateTime as BsonDateTime};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const COLUMNS: &[(&str, &str)] = &[
    ("ti", "TINYINT"),
    ("tiu", "TINYINT UNSIGNED"),
    ("si", "SMALLINT"),
    ("siu", "SMALLINT UNSIGNED"),
    ("mi", "MEDIUMINT"),
    ("miu", "MEDIUMINT UNSIGNED"),
    ("i", "INT"),
    ("iu", "INT UNSIGNED"),
    ("bi", "BIGINT"),
    ("biu", "BIGINT UNSIGNED"),
    ("d", "DECIMAL(65,30)"),
    ("d2", "DECIMAL(10,2)"),
    ("f", "FLOAT"),
    ("db", "DOUBLE"),
    ("t", "TIME"),
    ("t6", "TIME(6)"),
    ("dt", "DATETIME"),
    ("dt3", "DATETIME(3)"),
    ("dt6", "DATETIME(6)"),
    ("ts", "TIMESTAMP NULL DEFAULT NULL"),
    ("ts6", "TIMESTAMP(6) NULL DEFAULT NULL"),
    ("dte", "DATE"),
    ("y", "YEAR"),
    ("vc", "VARCHAR(100)"),
    ("tx", "TEXT"),
    ("ch", "CHAR(5)"),
    ("bn", "BINARY(4)"),
    ("vb", "VARBINARY(20)"),
    ("bl", "BLOB"),
    ("j", "JSON"),
    ("b1", "BIT(1)"),
    ("b64", "BIT(64)"),
    ("e", "ENUM('small','medium','large')"),
    ("s", "SET('a','b','c')"),
];

fn s(v: &str) -> Bson {
    Bson::String(v.to_string())
}

fn bin(bytes: &[u8]) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: bytes.to_vec() })
}

fn json_text(text: &str) -> Bson {
    Bson::Binary(Binary { subtype: BinarySubtype::UserDefined(0x80), bytes: text.as_bytes().to_vec() })
}

/// A DATETIME/TIMESTAMP wall clock read as UTC → BSON date.
fn date(text: &str) -> Bson {
    let t = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap();
    Bson::DateTime(BsonDateTime::from_millis(t.and_utc().timestamp_millis()))
}

/// One test row: (column, SQL literal, the BSON the mapping documents). Columns not listed are NULL.
type RowSpec = Vec<(&'static str, String, Bson)>;

fn rows() -> Vec<(i64, RowSpec)> {
    let nines = format!("{}.{}", "9".repeat(35), "9".repeat(30));
    let long_text = "long text 😀 ".repeat(500);
    let v = |c: &'static str, sql: &str, b: Bson| (c, sql.to_string(), b);
    vec![
        // Maxima, non-ASCII text, binary with zero bytes, nested JSON.
        (
            1,
            vec![
                v("ti", "127", Bson::Int32(127)),
                v("tiu", "255", Bson::Int32(255)),
                v("si", "32767", Bson::Int32(32767)),
                v("siu", "65535", Bson::Int32(65535)),
                v("mi", "8388607", Bson::Int32(8388607)),
                v("miu", "16777215", Bson::Int32(16777215)),
                v("i", "2147483647", Bson::Int32(i32::MAX)),
                v("iu", "4294967295", Bson::Int64(4294967295)),
                v("bi", "9223372036854775807", Bson::Int64(i64::MAX)),
                v("biu", "18446744073709551615", s("18446744073709551615")),
                v("d", &nines, s(&nines)),
                v("d2", "99999999.99", s("99999999.99")),
                v("f", "1.5", Bson::Double(1.5)),
                v("db", "1.7976931348623157e308", Bson::Double(f64::MAX)),
                v("t", "'838:59:59'", s("838:59:59")),
                v("t6", "'12:34:56.789012'", s("12:34:56.789012")),
                v("dt", "'9999-12-31 23:59:59'", date("9999-12-31 23:59:59")),
                v("dt3", "'2025-11-29 12:00:01.123'", date("2025-11-29 12:00:01.123")),
                v("dt6", "'2025-11-29 12:00:01.123456'", s("2025-11-29T12:00:01.123456")),
                v("ts", "'2038-01-19 03:14:07'", Bson::DateTime(BsonDateTime::from_millis(2_147_483_647_000))),
                v("ts6", "'2038-01-19 03:14:07.999999'", s("2038-01-19T03:14:07.999999Z")),
                v("dte", "'9999-12-31'", s("9999-12-31")),
                v("y", "2155", Bson::Int32(2155)),
                v("vc", "'emoji 😀 ü 中'", s("emoji 😀 ü 中")),
                v("tx", &format!("'{long_text}'"), s(&long_text)),
                v("ch", "'abc'", s("abc")),
                v("bn", "X'00010000'", bin(&[0, 1, 0, 0])),
                v("vb", "X'00FF00'", bin(&[0, 255, 0])),
                v("bl", "X'0001000000FF00'", bin(&[0, 1, 0, 0, 0, 255, 0])),
                v(
                    "j",
                    r#"'{"a": 1, "b": [1, 2.5, "x", null, true], "big": 9223372036854775807, "c": {"d": {"e": []}}, "emoji": "😀", "neg": -7}'"#,
                    Bson::Document(doc! {
                        "a": 1, "b": [1, 2.5, "x", Bson::Null, true], "big": i64::MAX, "c": {"d": {"e": []}}, "emoji": "😀", "neg": -7
                    }),
                ),
                v("b1", "b'1'", Bson::Int64(1)),
                v("b64", "0xFFFFFFFFFFFFFFFF", Bson::Int64(-1)),
                v("e", "'large'", s("large")),
                v("s", "'a,c'", Bson::Array(vec![s("a"), s("c")])),
            ],
        ),
        // Minima, empty strings and binaries (not NULL).
        (
            2,
            vec![
                v("ti", "-128", Bson::Int32(-128)),
                v("tiu", "0", Bson::Int32(0)),
                v("si", "-32768", Bson::Int32(-32768)),
                v("siu", "0", Bson::Int32(0)),
                v("mi", "-8388608", Bson::Int32(-8388608)),
                v("miu", "0", Bson::Int32(0)),
                v("i", "-2147483648", Bson::Int32(i32::MIN)),
                v("iu", "0", Bson::Int32(0)),
                v("bi", "-9223372036854775808", Bson::Int64(i64::MIN)),
                v("biu", "0", Bson::Int32(0)),
                v("d", &format!("-{nines}"), s(&format!("-{nines}"))),
                v("d2", "-0.01", s("-0.01")),
                v("f", "-1.5", Bson::Double(-1.5)),
                v("db", "-2.2250738585072014e-308", Bson::Double(-f64::MIN_POSITIVE)),
                v("t", "'-838:59:59'", s("-838:59:59")),
                v("t6", "'-00:00:00.500000'", s("-00:00:00.500000")),
                v("dt", "'1000-01-01 00:00:00'", date("1000-01-01 00:00:00")),
                v("dt3", "'1969-12-31 23:59:59.999'", Bson::DateTime(BsonDateTime::from_millis(-1))),
                v("dt6", "'1000-01-01 00:00:00.000001'", s("1000-01-01T00:00:00.000001")),
                v("ts", "'1970-01-01 00:00:01'", Bson::DateTime(BsonDateTime::from_millis(1000))),
                v("ts6", "'1970-01-01 00:00:01.000001'", s("1970-01-01T00:00:01.000001Z")),
                v("dte", "'1000-01-01'", s("1000-01-01")),
                v("y", "1901", Bson::Int32(1901)),
                v("vc", "''", s("")),
                v("tx", "''", s("")),
                v("ch", "''", s("")),
                v("bn", "X'00000000'", bin(&[0, 0, 0, 0])),
                v("vb", "X''", bin(&[])),
                v("bl", "X'00'", bin(&[0])),
                v(
                    "j",
                    r#"'[1, "a", {"k": null}, 2.5]'"#,
                    Bson::Array(vec![
                        Bson::Int32(1),
                        s("a"),
                        Bson::Document(doc! {"k": Bson::Null}),
                        Bson::Double(2.5),
                    ]),
                ),
                v("b1", "b'0'", Bson::Int64(0)),
                v("b64", "0x8000000000000000", Bson::Int64(i64::MIN)),
                v("e", "'small'", s("small")),
                v("s", "''", Bson::Array(vec![])),
            ],
        ),
        // NULL everywhere, and zero dates (→ null).
        (
            3,
            vec![
                v("dt", "'0000-00-00 00:00:00'", Bson::Null),
                v("dt3", "'0000-00-00 00:00:00.000'", Bson::Null),
                v("dt6", "'0000-00-00 00:00:00.000000'", Bson::Null),
                v("ts", "'0000-00-00 00:00:00'", Bson::Null),
                v("ts6", "'0000-00-00 00:00:00.000000'", Bson::Null),
                v("dte", "'0000-00-00'", Bson::Null),
            ],
        ),
        // Just past the int boundaries, tiny decimals, padded BINARY, JSON the server cannot store natively.
        (
            4,
            vec![
                v("iu", "2147483648", Bson::Int64(2147483648)),
                v("biu", "9223372036854775808", s("9223372036854775808")),
                v("bi", "-2147483649", Bson::Int64(-2147483649)),
                v("d", "0.000000000000000000000000000001", s("0.000000000000000000000000000001")),
                v("d2", "1.5", s("1.50")),
                v("f", "0.1", Bson::Double(f64::from(0.1f32))),
                v("db", "0.1", Bson::Double(0.1)),
                v("t", "'00:00:00'", s("00:00:00")),
                v("t6", "'-838:59:59.000000'", s("-838:59:59.000000")),
                v("dt3", "'2025-01-01 00:00:00.5'", date("2025-01-01 00:00:00.500")),
                v("y", "'0000'", Bson::Int32(0)),
                v("vc", "'😀'", s("😀")),
                v("ch", "'ab  '", s("ab")),
                v("bn", "X'01'", bin(&[1, 0, 0, 0])),
                v("j", "'[[1, 2], [3]]'", json_text("[[1,2],[3]]")),
                v("b64", "1", Bson::Int64(1)),
                v("e", "'medium'", s("medium")),
                v("s", "'c,a,b'", Bson::Array(vec![s("a"), s("b"), s("c")])),
            ],
        ),
        (
            5,
            vec![
                v("j", r#"'{"$set": 1, "a.b": {"c": 2}}'"#, json_text(r#"{"$set":1,"a.b":{"c":2}}"#)),
                v("vc", "'x'", s("x")),
            ],
        ),
    ]
}

fn insert_sql(id: i64, spec: &RowSpec) -> String {
    let columns: Vec<&str> = spec.iter().map(|(c, _, _)| *c).collect();
    let values: Vec<&str> = spec.iter().map(|(_, sql, _)| sql.as_str()).collect();
    format!("INSERT INTO types (id, {}) VALUES ({id}, {})", columns.join(", "), values.join(", "))
}

fn expected_doc(id: i64, spec: &RowSpec) -> BTreeMap<String, Bson> {
    let mut d: BTreeMap<String, Bson> = COLUMNS.iter().map(|(c, _)| (c.to_string(), Bson::Null)).collect();
    d.insert("_id".into(), Bson::Int32(id as i32));
    d.insert("id".into(), Bson::Int32(id as i32));
    for (c, _, b) in spec {
        d.insert(c.to_string(), b.clone());
    }
    d
}

/// Field-by-field differences between the expected documents and the collection.
fn mismatches(expected: &BTreeMap<i64, BTreeMap<String, Bson>>, actual: &Docs) -> Vec<String> {
    let mut out = Vec::new();
    for (id, e) in expected {
        let Some(a) = actual.get(id) else {
            out.push(format!("row {id}: no document"));
            continue;
        };
        for (field, want) in e {
            match a.get(field) {
                None => out.push(format!("row {id} {field}: missing, expected {want:?}")),
                Some(got) if got != want => out.push(format!("row {id} {field}: got {got:?}, expected {want:?}")),
                _ => {}
            }
        }
        for field in a.keys().filter(|f| !e.contains_key(*f)) {
            out.push(format!("row {id}: unexpected field {field}"));
        }
    }
    for id in actual.keys().filter(|id| !expected.contains_key(id)) {
        out.push(format!("unexpected document {id}"));
    }
    out
}

async fn wait_documents(db: &TestDb, p: &mut Polyrepl, expected: &BTreeMap<i64, BTreeMap<String, Bson>>, when: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        p.assert_running();
        let found = mismatches(expected, &db.sink_docs("types").await);
        if found.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("{when}: the documents are not what the mapping documents:\n{}", found.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 2. Snapshot and streaming both write exactly the documented BSON for every type and edge value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_with_edge_values_becomes_the_documented_bson() {
    let db = TestDb::create("types").await;
    let columns: Vec<String> = COLUMNS.iter().map(|(c, t)| format!("{c} {t}")).collect();
    db.exec(&format!("CREATE TABLE types (id INT PRIMARY KEY, {}) CHARACTER SET utf8mb4", columns.join(", "))).await;
    let rows = rows();
    let mut conn = db.conn().await;
    for (id, spec) in &rows {
        conn.query_drop_checked(&insert_sql(*id, spec)).await;
    }

    let pipeline = db.pipeline("types");
    let mut p = Polyrepl::spawn(&db.run_args(&pipeline, &[]));
    let mut expected: BTreeMap<i64, BTreeMap<String, Bson>> =
        rows.iter().map(|(id, spec)| (*id, expected_doc(*id, spec))).collect();
    wait_for("the snapshot to complete", Duration::from_secs(60), || {
        p.assert_running();
        let (db, pipeline) = (&db, &pipeline);
        async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
    })
    .await;
    wait_documents(&db, &mut p, &expected, "after the snapshot").await;

    // The same values again, now decoded from the binlog; then updates that change every type.
    for (id, spec) in &rows {
        conn.query_drop_checked(&insert_sql(id + 10, spec)).await;
        expected.insert(id + 10, expected_doc(id + 10, spec));
    }
    // An update whose before image is all NULL/zero dates, and one from edge values to other edge values.
    let (_, maxima) = &rows[0];
    let (_, minima) = &rows[1];
    let set = |spec: &RowSpec| spec.iter().map(|(c, sql, _)| format!("{c} = {sql}")).collect::<Vec<_>>().join(", ");
    conn.query_drop_checked(&format!("UPDATE types SET {} WHERE id = 13", set(maxima))).await;
    expected.insert(13, expected_doc(13, maxima));
    conn.query_drop_checked(&format!("UPDATE types SET {} WHERE id = 11", set(minima))).await;
    expected.insert(11, expected_doc(11, minima));
    wait_documents(&db, &mut p, &expected, "after streaming").await;
    conn.disconnect().await.unwrap();

    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", p.log());
}

trait QueryChecked {
    async fn query_drop_checked(&mut self, sql: &str);
}

impl QueryChecked for mysql_async::Conn {
    async fn query_drop_checked(&mut self, sql: &str) {
        use mysql_async::prelude::*;
        let short: String = sql.chars().take(300).collect();
        self.query_drop(sql).await.unwrap_or_else(|e| panic!("{short}: {e}"));
        let warnings = self.get_warnings();
        assert_eq!(warnings, 0, "{short} gave {warnings} warning(s)");
    }
}
