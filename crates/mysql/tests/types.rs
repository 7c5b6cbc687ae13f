//! Every supported type with edge values: the snapshot values and the binlog values are identical and
//! equal the expected ones.
mod common;

use common::*;
use polyrepl_core::{Date, DateTime, Op, Value};
use polyrepl_mysql::{current_position, discover_tables};
use serde_json::json;
use std::sync::Arc;

const TABLE: &str = "CREATE TABLE types (
  id INT PRIMARY KEY,
  ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
  mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, yr YEAR, bi BIGINT, biu BIGINT UNSIGNED,
  f FLOAT, d DOUBLE, dec1 DECIMAL(65,30), dec2 DECIMAL(10,2) UNSIGNED, dec3 DECIMAL(10,2),
  c CHAR(10), vc VARCHAR(100), tx TEXT, bn BINARY(4), vb VARBINARY(10), bl BLOB,
  dt DATE, tm TIME(6), tm0 TIME, dtm DATETIME(6), dtm3 DATETIME(3), ts TIMESTAMP(6) NULL DEFAULT NULL,
  js JSON, bt BIT(64), bt5 BIT(5), en ENUM('small','medium','large'), st SET('a','b','c','d')
)";

const ROWS: &str = "INSERT INTO types VALUES
 (1, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295, 2155, 9223372036854775807, 18446744073709551615,
  3.5, 1.5e300, '99999999999999999999999999999999999.999999999999999999999999999999', 99999999.99, -12.5,
  'abc', '😀 emoji', 'long text', X'00FF0000', X'0000FF00', X'00',
  '2024-02-29', '-838:59:59.000000', '838:59:59', '2024-12-31 23:59:59.999999', '2000-01-01 00:00:00.123',
  '2038-01-19 03:14:07.999999', '{\"a\":[1,2,{\"b\":null}],\"c\":\"x\"}',
  b'1111111111111111111111111111111111111111111111111111111111111111', b'10101', 'large', 'd,a'),
 (2, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, 0, -9223372036854775808, 0,
  -1.25, -2.5e-300, '0.000000000000000000000000000001', 0, 0,
  '', '', '', X'00000000', X'', X'',
  '0000-00-00', '00:00:00.000001', '-00:00:01', '0000-00-00 00:00:00', '1000-01-01 00:00:00.000',
  '1970-01-01 00:00:01.000000', '[]', b'0', b'0', 'small', ''),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, '-99999999999999999999999999999999999.999999999999999999999999999999', NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)";

fn date(year: u16, month: u8, day: u8) -> Date {
    Date { year, month, day }
}

fn dt(d: Date, hour: u8, minute: u8, second: u8, micros: u32, fsp: u8) -> DateTime {
    DateTime { date: d, hour, minute, second, micros, fsp }
}

fn expected() -> Vec<Vec<Value>> {
    use Value::*;
    let max_dec = "99999999999999999999999999999999999.999999999999999999999999999999";
    let row1 = vec![
        Int(1),
        Int(127),
        UInt(255),
        Int(32767),
        UInt(65535),
        Int(8388607),
        UInt(16777215),
        Int(2147483647),
        UInt(4294967295),
        Year(2155),
        Int(i64::MAX),
        UInt(u64::MAX),
        Float(3.5),
        Double(1.5e300),
        Decimal(max_dec.into()),
        Decimal("99999999.99".into()),
        Decimal("-12.50".into()),
        String("abc".into()),
        String("😀 emoji".into()),
        String("long text".into()),
        Bytes(vec![0, 0xff, 0, 0]),
        Bytes(vec![0, 0, 0xff, 0]),
        Bytes(vec![0]),
        Date(date(2024, 2, 29)),
        Time(polyrepl_core::Time { negative: true, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 6 }),
        Time(polyrepl_core::Time { negative: false, hours: 838, minutes: 59, seconds: 59, micros: 0, fsp: 0 }),
        DateTime(dt(date(2024, 12, 31), 23, 59, 59, 999_999, 6)),
        DateTime(dt(date(2000, 1, 1), 0, 0, 0, 123_000, 3)),
        Timestamp(dt(date(2038, 1, 19), 3, 14, 7, 999_999, 6)),
        Json(json!({"a": [1, 2, {"b": null}], "c": "x"})),
        Bit(u64::MAX),
        Bit(21),
        Enum("large".into()),
        Set(vec!["a".into(), "d".into()]),
    ];
    let row2 = vec![
        Int(2),
        Int(-128),
        UInt(0),
        Int(-32768),
        UInt(0),
        Int(-8388608),
        UInt(0),
        Int(-2147483648),
        UInt(0),
        Year(0),
        Int(i64::MIN),
        UInt(0),
        Float(-1.25),
        Double(-2.5e-300),
        Decimal("0.000000000000000000000000000001".into()),
        Decimal("0.00".into()),
        Decimal("0.00".into()),
        String("".into()),
        String("".into()),
        String("".into()),
        Bytes(vec![0, 0, 0, 0]),
        Bytes(vec![]),
        Bytes(vec![]),
        Date(date(0, 0, 0)),
        Time(polyrepl_core::Time { negative: false, hours: 0, minutes: 0, seconds: 0, micros: 1, fsp: 6 }),
        Time(polyrepl_core::Time { negative: true, hours: 0, minutes: 0, seconds: 1, micros: 0, fsp: 0 }),
        DateTime(dt(date(0, 0, 0), 0, 0, 0, 0, 6)),
        DateTime(dt(date(1000, 1, 1), 0, 0, 0, 0, 3)),
        Timestamp(dt(date(1970, 1, 1), 0, 0, 1, 0, 6)),
        Json(json!([])),
        Bit(0),
        Bit(0),
        Enum("small".into()),
        Set(vec![]),
    ];
    let mut row3 = vec![Null; row1.len()];
    row3[0] = Int(3);
    row3[14] = Decimal(format!("-{max_dec}"));
    vec![row1, row2, row3]
}

#[tokio::test]
async fn snapshot_and_binlog_decode_every_type_identically() {
    let mut db = TestDb::create("types").await;
    db.exec(TABLE).await;
    let from = current_position(&url()).await.unwrap();
    db.exec(ROWS).await;

    // Schema from information_schema.
    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let tables = discover_tables(&mut conn, &db.filter("types"), "test").await.unwrap();
    let schema = Arc::new(tables.into_iter().next().expect("table found"));
    assert_eq!(schema.columns.iter().find(|c| c.name == "js").unwrap().kind, polyrepl_core::ColumnKind::Json);

    // Snapshot values.
    let snap_rows: Vec<Vec<Value>> = snapshot_changes(&schema, 2).await.into_iter().map(|c| c.after.unwrap()).collect();

    // Binlog values.
    let events = read_to_end(&from, db.filter("types")).await;
    let txs = transactions(&events);
    assert_eq!(txs.len(), 1, "one multi-row insert");
    let changes = &txs[0].1;
    assert!(changes.iter().all(|c| c.op == Op::Insert));
    let binlog_schema = &changes[0].table;
    assert_eq!(binlog_schema.columns, schema.columns, "table map and information_schema agree");
    assert_eq!(binlog_schema.primary_key, schema.primary_key);
    let binlog_rows: Vec<Vec<Value>> = changes.iter().map(|c| c.after.clone().unwrap()).collect();

    let expected = expected();
    for (i, exp) in expected.iter().enumerate() {
        for (j, col) in schema.columns.iter().enumerate() {
            assert_eq!(snap_rows[i][j], exp[j], "snapshot row {} column {}", i + 1, col.name);
            assert_eq!(binlog_rows[i][j], exp[j], "binlog row {} column {}", i + 1, col.name);
        }
    }
    assert_eq!(snap_rows, binlog_rows);
    db.drop_db().await;
}

/// JSON documents whose numbers an f64 would round or refuse, and keys no document store likes:
/// (SQL literal, the text serde_json prints for the decoded value — every digit as the source wrote it).
fn json_cases() -> Vec<(String, String)> {
    let deep = format!("{}1e400{}", "[".repeat(30), "]".repeat(30));
    let mut out: Vec<(String, String)> = [
        ("12345678901234567890123", "12345678901234567890123"),
        ("[1e400]", "[1e+400]"),
        ("[-1E-400, 1e+400, 1E400]", "[-1e-400,1e+400,1e+400]"),
        ("-0", "-0"),
        ("[-0, -0.0, 0.0, 0e5]", "[-0,-0.0,0.0,0e+5]"),
        ("0.1000000000000000000001", "0.1000000000000000000001"),
        ("[1.5, 1.50, 1.0, 1E2]", "[1.5,1.50,1.0,1e+2]"),
        (
            "[9007199254740993, 18446744073709551615, -9223372036854775808, 18446744073709551616]",
            "[9007199254740993,18446744073709551615,-9223372036854775808,18446744073709551616]",
        ),
        ("123456789012345678901234567890123456789", "123456789012345678901234567890123456789"),
        (
            r#"{"a": [1, {"b": [12345678901234567890123, 0.1000000000000000000001]}]}"#,
            r#"{"a":[1,{"b":[12345678901234567890123,0.1000000000000000000001]}]}"#,
        ),
        (r#"{"": {"$a": {"b.c": 1e400}}}"#, r#"{"":{"$a":{"b.c":1e+400}}}"#),
        (r#"{"a\\u0000b": "\\u0000"}"#, r#"{"a\u0000b":"\u0000"}"#),
    ]
    .iter()
    .map(|(sql, printed)| (sql.to_string(), printed.to_string()))
    .collect();
    out.push((deep.clone(), deep.replace("e400", "e+400")));
    out
}

/// A JSON value in MariaDB's `JSON_NORMALIZE` form: keys sorted, no spaces, numbers as `d.dddE±n`.
fn mariadb_normal_form(j: &serde_json::Value) -> String {
    use serde_json::Value as J;
    match j {
        J::Number(n) => polyrepl_core::json::normal_number(n.as_str()),
        J::Array(items) => format!("[{}]", items.iter().map(mariadb_normal_form).collect::<Vec<_>>().join(",")),
        J::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", J::String(k.to_string()), mariadb_normal_form(&map[*k])))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        other => other.to_string(),
    }
}

#[tokio::test]
async fn json_numbers_are_exact_on_both_paths_and_equal_as_mariadb_compares_them() {
    use mysql_async::prelude::Queryable;
    let mut db = TestDb::create("jsonnum").await;
    db.exec("CREATE TABLE jn (id INT PRIMARY KEY, j JSON)").await;
    let cases = json_cases();
    let from = current_position(&url()).await.unwrap();
    for (i, (sql, _)) in cases.iter().enumerate() {
        db.exec(&format!("INSERT INTO jn VALUES ({}, '{sql}')", i + 1)).await;
    }
    db.exec(&format!("INSERT INTO jn VALUES ({}, NULL)", cases.len() + 1)).await;

    let mut conn = polyrepl_mysql::checks::connect(&url()).await.unwrap();
    let tables = discover_tables(&mut conn, &db.filter("jn"), "test").await.unwrap();
    let schema = Arc::new(tables.into_iter().next().expect("table found"));
    assert_eq!(schema.columns[1].kind, polyrepl_core::ColumnKind::Json);

    let snap_rows: Vec<Vec<Value>> = snapshot_changes(&schema, 2).await.into_iter().map(|c| c.after.unwrap()).collect();
    let events = read_to_end(&from, db.filter("jn")).await;
    let binlog_rows: Vec<Vec<Value>> =
        transactions(&events).into_iter().flat_map(|(_, changes)| changes).map(|c| c.after.unwrap()).collect();
    assert_eq!(snap_rows.len(), cases.len() + 1);
    assert_eq!(binlog_rows.len(), cases.len() + 1, "one insert per row in the binlog");

    // MariaDB's own normal form of each stored document.
    let normal: Vec<Option<String>> = db.conn.query("SELECT JSON_NORMALIZE(j) FROM jn ORDER BY id").await.unwrap();
    for (i, (sql, printed)) in cases.iter().enumerate() {
        for (path, row) in [("snapshot", &snap_rows[i]), ("binlog", &binlog_rows[i])] {
            let Value::Json(j) = &row[1] else { panic!("{path} row {}: not JSON: {:?}", i + 1, row[1]) };
            assert_eq!(&j.to_string(), printed, "{path}: {sql} keeps every digit");
            assert_eq!(
                Some(mariadb_normal_form(j)),
                normal[i],
                "{path}: {sql} has the value MariaDB's JSON_NORMALIZE gives"
            );
            let expected = Value::Json(polyrepl_core::json::parse(printed.as_bytes()).unwrap());
            assert_eq!(row[1], expected);
            assert_eq!(
                polyrepl_core::rowhash::row_bytes(&row[1..]),
                polyrepl_core::rowhash::row_bytes(&[expected]),
                "{path}: {sql} hashes like its value"
            );
        }
    }
    assert_eq!(snap_rows[cases.len()][1], Value::Null);
    assert_eq!(snap_rows, binlog_rows);
    // Equal as MariaDB compares JSON, different where it does not.
    let pairs: Vec<(String, String, bool)> = db
        .conn
        .query_map(
            "SELECT a, b, JSON_EQUALS(a, b) FROM (SELECT '[1.50, -0, 1e400]' a, '[1.5, 0, 10E399]' b \
             UNION ALL SELECT '[0.1000000000000000000001]', '[0.1]' \
             UNION ALL SELECT '12345678901234567890123', '12345678901234567890124') t",
            |(a, b, eq): (String, String, i64)| (a, b, eq == 1),
        )
        .await
        .unwrap();
    for (a, b, mariadb_equal) in pairs {
        let parse = |t: &str| Value::Json(polyrepl_core::json::parse(t.as_bytes()).unwrap());
        assert_eq!(parse(&a) == parse(&b), mariadb_equal, "{a} vs {b}");
    }
    db.drop_db().await;
}
