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

/// JSON documents whose numbers an f64 would round or refuse, and keys document stores dislike:
/// (SQL literal, the JSON text with every digit as serde_json prints it).
fn json_number_docs() -> Vec<(String, String)> {
    let deep = format!("{}1e400{}", "[".repeat(30), "]".repeat(30));
    [
        ("12345678901234567890123", "12345678901234567890123"),
        ("[1e400]", "[1e+400]"),
        ("[-1E-400, 1e+400]", "[-1e-400,1e+400]"),
        ("-0", "-0"),
        ("[-0, -0.0, 0.0]", "[-0,-0.0,0.0]"),
        ("0.1000000000000000000001", "0.1000000000000000000001"),
        ("[1.5, 1.50, 1.0, 1E2]", "[1.5,1.50,1.0,1e+2]"),
        (
            "[9007199254740993, 18446744073709551615, -9223372036854775808]",
            "[9007199254740993,18446744073709551615,-9223372036854775808]",
        ),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456789"),
        (
            r#"{"a": [1, {"b": [12345678901234567890123, 0.1000000000000000000001]}], "c": {"d": 1e400}}"#,
            r#"{"a":[1,{"b":[12345678901234567890123,0.1000000000000000000001]}],"c":{"d":1e+400}}"#,
        ),
        (r#"{"": 1, "$a": {"b.c": 2}}"#, r#"{"":1,"$a":{"b.c":2}}"#),
        (r#"{"a\\u0000b": 2.5}"#, r#"{"a\u0000b":2.5}"#),
    ]
    .iter()
    .map(|(sql, text)| (sql.to_string(), text.to_string()))
    .chain([(deep.clone(), deep.replace("e400", "e+400"))])
    .collect()
}

/// Deletes the Redis keys and the Cassandra keyspace of a test database, and its pipelines' checkpoints
/// there, when dropped (the TestDb drops the source, MongoDB and the Mongo checkpoints).
struct OtherSinksCleanup<'a>(&'a TestDb, Vec<String>);

impl Drop for OtherSinksCleanup<'_> {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.0.name, &self.1, true);
    }
}

/// 3. JSON numbers keep every digit end to end: rows copied by the snapshot and the same rows streamed
///    from the binlog reach MongoDB (FerretDB: native BSON where it holds the value exactly, else the JSON
///    text), Redis and Cassandra (the JSON text), read back equal through each sink's own reader, and
///    `polyrepl verify` finds 0 differences. `[1e400]` used to stop the run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_numbers_replicate_exactly_into_every_sink_and_verify() {
    let db = TestDb::create("jsonnum").await;
    let pipeline = db.pipeline("jsonnum");
    let _cleanup = OtherSinksCleanup(&db, vec![pipeline.clone()]);
    db.exec("CREATE TABLE jn (id INT PRIMARY KEY, j JSON)").await;
    let docs = json_number_docs();
    let mut conn = db.conn().await;
    for (i, (sql, _)) in docs.iter().enumerate() {
        conn.query_drop_checked(&format!("INSERT INTO jn VALUES ({}, '{sql}')", i + 1)).await;
    }

    let tables = format!("{}.*", db.name);
    let run = polyrepl_args("run", MYSQL, &tables, &SINKS, Some(&pipeline), &["--stop-at-end"]);
    let (status, log) = run_to_end(&run, Duration::from_secs(180)).await;
    assert!(status.success(), "the snapshot run failed ({status}):\n{log}");

    // The same documents again, now decoded from the binlog, and updates from one document to another.
    for (i, (sql, _)) in docs.iter().enumerate() {
        conn.query_drop_checked(&format!("INSERT INTO jn VALUES ({}, '{sql}')", i + 101)).await;
    }
    conn.query_drop_checked(&format!("UPDATE jn SET j = '{}' WHERE id = 1", docs[1].0)).await;
    conn.query_drop_checked(&format!("UPDATE jn SET j = '{}' WHERE id = 102", docs[0].0)).await;
    conn.disconnect().await.unwrap();
    let (status, log) = run_to_end(&run, Duration::from_secs(180)).await;
    assert!(status.success(), "the streaming run failed ({status}):\n{log}");
    assert!(!log.contains("no checkpoint: starting with a snapshot"), "the second run resumes:\n{log}");

    // Each sink's own reader gives the source's values back.
    let schema = source_schema(&db, "jn").await;
    let expected = source_rows_by_id(&db, &schema).await;
    assert_eq!(expected.len(), 2 * docs.len());
    let doc = |i: usize| polyrepl_core::Value::Json(polyrepl_core::json::parse(docs[i].1.as_bytes()).unwrap());
    for i in 0..docs.len() {
        let (copied, streamed) = match i {
            0 => (1, 0), // updated while streaming
            1 => (1, 0), // inserted while streaming, then updated
            _ => (i, i),
        };
        assert_eq!(expected[&(i as i64 + 1)][1], doc(copied), "source row {}", i + 1);
        assert_eq!(expected[&(i as i64 + 101)][1], doc(streamed), "source row {}", i + 101);
    }
    assert_every_sink_holds(&expected, &schema).await;

    // The stored forms: Redis and Cassandra hold the JSON text with every digit; MongoDB (FerretDB 1.x, no
    // decimal128) a native document where int64/double hold the value exactly, else the JSON text.
    let big = &docs[9].1;
    let mut redis = redis::Client::open(REDIS).unwrap().get_multiplexed_async_connection().await.unwrap();
    let field: String =
        redis::cmd("HGET").arg(format!("{}:jn:110", db.name)).arg("j").query_async(&mut redis).await.unwrap();
    assert_eq!(&field, big, "Redis field");
    let cql =
        scylla::client::session_builder::SessionBuilder::new().known_node("127.0.0.1:9042").build().await.unwrap();
    let (stored,): (String,) = cql
        .query_unpaged(format!("SELECT j FROM \"{}\".jn WHERE id = 10", db.name.to_lowercase()), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row()
        .unwrap();
    assert_eq!(&stored, big, "Cassandra text");
    let mongo = db.sink_docs("jn").await;
    for id in [10, 110] {
        assert_eq!(mongo[&id]["j"], json_text(big), "MongoDB row {id}: a number beyond int64/double");
    }
    for id in [5, 105] {
        assert_eq!(
            mongo[&id]["j"],
            Bson::Array(vec![Bson::Int32(0), Bson::Double(-0.0), Bson::Double(0.0)]),
            "MongoDB row {id}"
        );
    }
    assert_eq!(
        mongo[&7]["j"],
        Bson::Array(vec![Bson::Double(1.5), Bson::Double(1.5), Bson::Double(1.0), Bson::Double(100.0)])
    );
    assert_eq!(mongo[&108]["j"], json_text(&docs[7].1), "u64::MAX has no exact int64/double");

    let verify = polyrepl_args("verify", MYSQL, &tables, &SINKS, Some(&pipeline), &["--json"]);
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_polyrepl")).args(&verify).output();
    let output = tokio::time::timeout(Duration::from_secs(120), verify).await.expect("verify ends").unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "verify found differences:\n{out}\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}):\n{out}\n{err}"));
    assert_eq!(report["differences"], 0, "{out}");
    assert_eq!(report["consistent"], true, "{out}");
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3, "{out}");
    for pair in pairs {
        assert_eq!(pair["compared"], 2 * docs.len(), "{out}");
    }
}
