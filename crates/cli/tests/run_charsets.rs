//! Text in legacy and wide character sets end to end through `polyrepl run`: latin1 (MySQL's is
//! windows-1252), utf16, utf32 and sjis columns, copied by the snapshot and streamed from the binlog,
//! reach MongoDB, Redis and Cassandra as the text the server itself shows through utf8mb4, and
//! `polyrepl verify` finds 0 differences.

mod common;

use common::*;
use mongodb::bson::Bson;
use std::time::Duration;

/// Deletes the Redis keys and the Cassandra keyspace of the test database when dropped.
struct OtherSinksCleanup<'a>(&'a TestDb, Vec<String>);

impl Drop for OtherSinksCleanup<'_> {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.0.name, &self.1, true);
    }
}

/// (latin1, utf16, utf32, sjis, latin1 ENUM label) of each row.
fn texts() -> Vec<[&'static str; 5]> {
    vec![
        ["’ € ‚ „ … ‰ Š Œ Ž ‘ “ ” • – — ˜ ™ š œ ž Ÿ", "😀 𝄞 中文 ж", "𠀋 😀 ä", "日本語テキスト、ｶﾀｶﾅ", "€uro"],
        ["café naïve ÿ", "", "plain", "", "café"],
        ["", "ÆØÅ 𐍈", "", "表示", "’quote"],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latin1_and_wide_charsets_replicate_exactly_into_every_sink_and_verify() {
    use mysql_async::prelude::*;
    let db = TestDb::create("charsets").await;
    let pipeline = db.pipeline("charsets");
    let _cleanup = OtherSinksCleanup(&db, vec![pipeline.clone()]);
    db.exec(
        "CREATE TABLE cs (id INT PRIMARY KEY,
           l1 VARCHAR(100) CHARACTER SET latin1,
           u16 VARCHAR(100) CHARACTER SET utf16,
           u32 TEXT CHARACTER SET utf32,
           sj VARCHAR(50) CHARACTER SET sjis,
           en ENUM('café','€uro','’quote') CHARACTER SET latin1)",
    )
    .await;
    let mut conn = db.conn().await;
    let insert = |id: usize, t: &[&str; 5]| {
        (format!("INSERT INTO cs VALUES ({id}, ?, ?, ?, ?, ?)"), t.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    for (i, t) in texts().iter().enumerate() {
        let (sql, params) = insert(i + 1, t);
        conn.exec_drop(sql, params).await.unwrap();
    }

    let tables = format!("{}.*", db.name);
    let run = polyrepl_args("run", MYSQL, &tables, &SINKS, Some(&pipeline), &["--stop-at-end"]);
    let (status, log) = run_to_end(&run, Duration::from_secs(180)).await;
    assert!(status.success(), "the snapshot run failed ({status}):\n{log}");

    // The same texts again, now from the binlog, and an update from one row's texts to another's.
    for (i, t) in texts().iter().enumerate() {
        let (sql, params) = insert(i + 101, t);
        conn.exec_drop(sql, params).await.unwrap();
    }
    let t = texts()[2];
    conn.exec_drop("UPDATE cs SET l1 = ?, u16 = ?, u32 = ?, sj = ?, en = ? WHERE id = 1", t.to_vec()).await.unwrap();
    conn.disconnect().await.unwrap();
    let (status, log) = run_to_end(&run, Duration::from_secs(180)).await;
    assert!(status.success(), "the streaming run failed ({status}):\n{log}");

    // The source as the server shows it through utf8mb4 (its own conversion), against each sink.
    let schema = source_schema(&db, "cs").await;
    let expected = source_rows_by_id(&db, &schema).await;
    assert_eq!(expected.len(), 6);
    let text = |v: &str| polyrepl_core::Value::String(v.into());
    assert_eq!(expected[&101][1], text(texts()[0][0]), "the server's own view of the latin1 text");
    assert_eq!(expected[&1][2], text(texts()[2][1]));
    assert_every_sink_holds(&expected, &schema).await;
    // The stored MongoDB strings themselves, for the snapshot row and the streamed one.
    let mongo = db.sink_docs("cs").await;
    for id in [101, 2] {
        let t = texts()[if id == 2 { 1 } else { 0 }];
        for (field, want) in ["l1", "u16", "u32", "sj", "en"].iter().zip(t) {
            assert_eq!(mongo[&id][*field], Bson::String(want.into()), "MongoDB row {id} field {field}");
        }
    }

    let verify = polyrepl_args("verify", MYSQL, &tables, &SINKS, Some(&pipeline), &["--json"]);
    let verify = tokio::process::Command::new(env!("CARGO_BIN_EXE_polyrepl")).args(&verify).output();
    let output = tokio::time::timeout(Duration::from_secs(120), verify).await.expect("verify ends").unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "verify found differences:\n{out}\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}):\n{out}\n{err}"));
    assert_eq!(report["differences"], 0, "{out}");
    let pairs = report["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 3, "{out}");
    for pair in pairs {
        assert_eq!(pair["compared"], 6, "{out}");
    }
}
