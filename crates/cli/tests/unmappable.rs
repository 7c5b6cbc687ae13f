//! End-to-end: `--on-unmappable dead-letter` with the real binary and MongoDB, Redis and Cassandra. A
//! row whose MongoDB document is over 17 MiB (a 3 MB JSON array of integers: BSON spends about 12
//! bytes on each element) lands in Redis and Cassandra, is dead-lettered in MongoDB (the record and
//! the metric), and the rows after it keep flowing into all three; `verify` reports exactly that one
//! row, missing in MongoDB.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::*;
use mongodb::bson::{doc, Document};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Elements of the JSON array of the big row: 3 MB of text, about 18.4 MB of BSON.
const ELEMENTS: usize = 1_500_000;

/// Removes what the test left in Redis, Cassandra and the dead-letter collection.
struct Cleanup {
    db: String,
    pipeline: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.db, std::slice::from_ref(&self.pipeline), true);
        let pipeline = self.pipeline.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(client) = mongodb::Client::with_uri_str(MONGO).await {
                    let letters = client.database("polyrepl").collection::<Document>("_polyrepl_dead_letters");
                    let _ = letters.delete_many(doc! { "pipeline": &pipeline }).await;
                }
            })
        })
        .join();
    }
}

/// Source rows and every sink's rows of `docs`, read back through each sink's own `read_rows`.
async fn rows_in(
    sink_url: &str,
    schema: &polyrepl_core::TableSchema,
    ids: &[i64],
) -> BTreeMap<i64, Option<polyrepl_core::Row>> {
    let mut reader = polyrepl_engine::open_sink(sink_url, "unmappable-reader").await.unwrap();
    let keys: Vec<Vec<polyrepl_core::Value>> = ids.iter().map(|&i| vec![polyrepl_core::Value::Int(i)]).collect();
    let rows = reader.read_rows(schema, &keys).await.unwrap();
    ids.iter().copied().zip(rows).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_mongodb_cannot_hold_is_dead_lettered_there_and_flows_everywhere_else() {
    let db = TestDb::create("unmap").await;
    let pipeline = db.pipeline("unmap");
    let _cleanup = Cleanup { db: db.name.clone(), pipeline: pipeline.clone() };
    db.exec("CREATE TABLE docs (id BIGINT PRIMARY KEY, v VARCHAR(40), j JSON); INSERT INTO docs VALUES (1, 'a', '[1]'), (2, 'b', NULL)").await;
    let port = free_port();
    let tables = format!("{}.*", db.name);
    let metrics_addr = format!("127.0.0.1:{port}");
    let extra = ["--on-unmappable", "dead-letter", "--metrics-addr", &metrics_addr];
    let args = polyrepl_args("run", MYSQL, &tables, &SINKS, Some(&pipeline), &extra);
    let mut p = Polyrepl::spawn(&args);
    wait_for("the snapshot", Duration::from_secs(120), || {
        p.assert_running();
        let db = &db;
        let pipeline = &pipeline;
        async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
    })
    .await;

    db.exec(&format!("INSERT INTO docs VALUES (10, 'big', CONCAT('[', REPEAT('0,', {}), '0]'))", ELEMENTS - 1)).await;
    db.exec("INSERT INTO docs VALUES (11, 'after', '{\"k\": 1}'); UPDATE docs SET v = 'a2' WHERE id = 1; INSERT INTO docs VALUES (12, 'later', NULL)").await;

    // Every row but the big one reaches MongoDB; the big one is not there.
    let schema = source_schema(&db, "docs").await;
    let source = source_rows_by_id(&db, &schema).await;
    let ids: Vec<i64> = source.keys().copied().collect();
    assert_eq!(ids, vec![1, 2, 10, 11, 12]);
    let expected = |except: Option<i64>| -> BTreeMap<i64, Option<polyrepl_core::Row>> {
        source.iter().map(|(&id, row)| (id, (Some(id) != except).then(|| row.clone()))).collect()
    };
    for (sink, except) in [(MONGO, Some(10)), (REDIS, None), (CASSANDRA, None)] {
        let want = expected(except);
        let (schema, ids) = (&schema, &ids);
        let p = &mut p;
        wait_for(
            &format!("every row in {sink} (the big one {})", if except.is_some() { "left out" } else { "too" }),
            Duration::from_secs(120),
            || {
                p.assert_running();
                let want = &want;
                async move { (rows_in(sink, schema, ids).await == *want).then_some(()) }
            },
        )
        .await;
    }
    p.assert_running();

    // The dead letter: MongoDB's record, the log line, the metric.
    let letters: Vec<Document> = {
        use futures::TryStreamExt;
        db.mongo
            .database("polyrepl")
            .collection::<Document>("_polyrepl_dead_letters")
            .find(doc! { "pipeline": &pipeline })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.get_str("table").unwrap(), format!("{}.docs", db.name));
    assert_eq!(letter.get_str("key").unwrap(), "{\"id\":10}");
    assert_eq!(letter.get_str("sink").unwrap(), "mongodb://127.0.0.1:1800");
    assert!(letter.get_str("reason").unwrap().contains("document"), "{letter:?}");
    assert!(letter.get_str("position").unwrap().contains(':'), "{letter:?}");
    let log = p.log();
    assert!(log.contains("dead-lettered") && log.contains("WARN"), "{log}");
    let (code, metrics) = http_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    let series =
        format!("polyrepl_dead_letters_total{{sink=\"mongodb://127.0.0.1:1800\",table=\"{}.docs\"}} 1\n", db.name);
    assert!(metrics.contains(&series), "{series} in\n{metrics}");
    assert!(!metrics.contains("polyrepl_dead_letters_total{sink=\"redis"), "{metrics}");

    // verify reports the one known difference: row 10 missing in MongoDB, nothing else.
    p.sigterm();
    assert!(p.wait_exit(Duration::from_secs(60)).await.success(), "{}", p.log());
    let verify = polyrepl_args("verify", MYSQL, &tables, &SINKS, None, &["--json"]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(180)).await;
    assert_eq!(status.code(), Some(1), "verify must report the dead-lettered row:\n{out}");
    // The pretty-printed report: from a line `{` to the next line `}` (log lines go around it).
    let lines: Vec<&str> = out.lines().collect();
    let start = lines.iter().position(|l| *l == "{").unwrap_or_else(|| panic!("no JSON in:\n{out}"));
    let end = start + lines[start..].iter().position(|l| *l == "}").unwrap_or_else(|| panic!("no JSON end in:\n{out}"));
    let report: serde_json::Value =
        serde_json::from_str(&lines[start..=end].join("\n")).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["differences"], 1, "{report}");
    let mut found = BTreeSet::new();
    for pair in report["pairs"].as_array().unwrap() {
        for kind in ["missing", "extra", "different"] {
            if pair[kind].as_u64().unwrap_or(0) > 0 {
                found.insert((
                    pair["sink"].as_str().unwrap().to_string(),
                    kind.to_string(),
                    pair[format!("{kind}_keys")].to_string(),
                ));
            }
        }
    }
    assert_eq!(
        found,
        BTreeSet::from([("mongodb://127.0.0.1:1800".to_string(), "missing".to_string(), "[[10]]".to_string())]),
        "{report}"
    );
}
