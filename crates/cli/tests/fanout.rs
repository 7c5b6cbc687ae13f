//! End-to-end fan-out: one `polyrepl run` (the real binary, one binlog reader) feeding MongoDB, Redis and
//! Cassandra at once.
//!
//! 1. Every sink ends equal to the source (snapshot + streamed inserts, updates, deletes, primary-key
//!    changes, a transaction) over DECIMAL, DATETIME(6), JSON, SET, emoji and NULLs — compared through
//!    each sink's own `Sink::read_rows` against the source rows decoded like the snapshot decodes them,
//!    and spot-checked with raw clients (HGETALL, CQL SELECT, a Mongo find) in the documented forms.
//! 2. A Redis outage of 30 s (our own `redis-server`, killed and restarted on the same port with its
//!    append-only file kept) under a steady writer: MongoDB and Cassandra keep applying while Redis is
//!    down, Redis catches up after, nothing is lost, and the outage is logged once each way.
//! 3. A sink that hangs (our own `redis-server`, SIGSTOPped) while 10 times its queue is written: MongoDB
//!    and Cassandra apply everything meanwhile (the hung sink's batches go to its spill file), and
//!    Redis catches up from there once it answers again.
//! 4. The crash suite: `kill -9` at 20 random moments (the first during the snapshot) under a mixed
//!    writer with an ALTER halfway, then a `--stop-at-end` run: `polyrepl verify` finds every sink equal.
//!
//! Each test creates its own random source database; the same-named MongoDB database, Redis keys
//! `DB:*`, Cassandra keyspace `DB` and every pipeline's checkpoints (Mongo, Redis, Cassandra) are dropped
//! at the end, also after a failure. Waits are on conditions with timeouts.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042,
//! plus the `redis-server` binary for test 2.

mod common;

use common::*;
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mysql_async::prelude::*;
use polyrepl_core::{Row, Sink, TableSchema};
use scylla::client::session::Session;
use scylla::value::{CqlValue, Row as CqlRow};
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CASSANDRA_NODE: &str = "127.0.0.1:9042";
const SINK_NAMES: [&str; 3] = ["mongodb", "redis", "cassandra"];

/// A test database replicated into all three sinks; drops everything it created in every sink.
struct Fanout {
    db: TestDb,
    redis_url: String,
    cql: Session,
    pipelines: Mutex<Vec<String>>,
}

impl Fanout {
    async fn create(tag: &str, redis_url: &str) -> Fanout {
        let db = TestDb::create(tag).await;
        let cql = scylla::client::session_builder::SessionBuilder::new()
            .known_node(CASSANDRA_NODE)
            .build()
            .await
            .expect("connect to Cassandra at 127.0.0.1:9042");
        Fanout { db, redis_url: redis_url.to_string(), cql, pipelines: Default::default() }
    }

    fn name(&self) -> &str {
        &self.db.name
    }

    /// A new pipeline name whose checkpoints (in all three sinks) are deleted at the end.
    fn pipeline(&self, tag: &str) -> String {
        let name = self.db.pipeline(tag);
        self.pipelines.lock().unwrap().push(name.clone());
        name
    }

    /// `polyrepl run` arguments: every table of the database into MongoDB, Redis and Cassandra.
    fn run_args(&self, pipeline: &str, extra: &[&str]) -> Vec<String> {
        let tables = format!("{}.*", self.name());
        polyrepl_args("run", MYSQL, &tables, &[MONGO, &self.redis_url, CASSANDRA], Some(pipeline), extra)
    }

    async fn schema(&self, table: &str) -> TableSchema {
        source_schema(&self.db, table).await
    }

    /// Every source row of `schema`'s table, decoded like the snapshot decodes them, by integer `id`.
    async fn source_rows(&self, schema: &TableSchema) -> BTreeMap<i64, Row> {
        source_rows_by_id(&self.db, schema).await
    }

    /// Raw connection to the Redis sink (a new one each time: our own Redis may have restarted).
    async fn redis(&self) -> Option<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.redis_url.as_str()).ok()?;
        tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection()).await.ok()?.ok()
    }

    /// The integer keys present in each sink (Mongo `_id`s, Redis `DB:TABLE:*` keys, Cassandra `id`s);
    /// `None` when that sink cannot be read.
    async fn sink_keys(&self, table: &str) -> [Option<BTreeSet<i64>>; 3] {
        let mongo = async {
            let docs: Vec<Document> = self
                .db
                .collection(table)
                .find(doc! {})
                .projection(doc! { "_id": 1 })
                .await
                .ok()?
                .try_collect()
                .await
                .ok()?;
            Some(
                docs.iter()
                    .map(|d| match d.get("_id") {
                        Some(Bson::Int32(v)) => *v as i64,
                        Some(Bson::Int64(v)) => *v,
                        other => panic!("unexpected _id {other:?}"),
                    })
                    .collect(),
            )
        };
        let redis = async {
            let mut conn = self.redis().await?;
            redis_int_keys(&mut conn, &format!("{}:{table}:", self.name())).await
        };
        let cassandra = async {
            let cql = format!("SELECT \"id\" FROM \"{}\".\"{table}\"", self.name());
            let result = self.cql.query_unpaged(cql, &[]).await.ok()?.into_rows_result().ok()?;
            let ids = result
                .rows::<(i32,)>()
                .ok()?
                .map(|r| r.map(|(id,)| id as i64))
                .collect::<Result<BTreeSet<_>, _>>()
                .ok()?;
            Some(ids)
        };
        let (m, r, c) = tokio::join!(mongo, redis, cassandra);
        [m, r, c]
    }

    /// The checkpoint JSON each sink holds for `pipeline` (Mongo, Redis, Cassandra), read with raw clients.
    async fn checkpoints(&self, pipeline: &str) -> [Option<serde_json::Value>; 3] {
        let mongo = checkpoint(&self.db.mongo, pipeline);
        let redis = async {
            let mut conn = self.redis().await?;
            let text: Option<String> =
                redis::cmd("GET").arg(format!("polyrepl:checkpoint:{pipeline}")).query_async(&mut conn).await.ok()?;
            Some(serde_json::from_str(&text?).expect("the Redis checkpoint is JSON"))
        };
        // A paused server accepts connections and never answers.
        let redis = async { tokio::time::timeout(Duration::from_secs(2), redis).await.ok().flatten() };
        let cassandra = async {
            let result = self
                .cql
                .query_unpaged("SELECT checkpoint FROM polyrepl.polyrepl_checkpoints WHERE pipeline = ?", (pipeline,))
                .await
                .ok()?
                .into_rows_result()
                .ok()?;
            let (text,) = result.maybe_first_row::<(Option<String>,)>().ok()??;
            Some(serde_json::from_str(&text?).expect("the Cassandra checkpoint is JSON"))
        };
        let (m, r, c) = tokio::join!(mongo, redis, cassandra);
        [m, r, c]
    }

    /// The streamed GTID sequence (of `domain`) each sink's checkpoint holds; `None` while a sink has no
    /// checkpoint, is still snapshotting, or cannot be read.
    async fn applied_seqs(&self, pipeline: &str, domain: u64) -> [Option<u64>; 3] {
        self.checkpoints(pipeline)
            .await
            .map(|cp| cp.filter(snapshot_complete).and_then(|cp| checkpoint_gtid_seq(&cp, domain)))
    }

    /// Waits until every sink's checkpoint includes GTID sequence `seq` of `domain`.
    async fn wait_all_applied(&self, p: &mut Polyrepl, pipeline: &str, (domain, seq): (u64, u64), timeout: Duration) {
        wait_for(&format!("every sink's checkpoint to reach GTID {domain}-*-{seq}"), timeout, || {
            p.assert_running();
            async move {
                self.applied_seqs(pipeline, domain).await.iter().all(|s| s.is_some_and(|s| s >= seq)).then_some(())
            }
        })
        .await
    }

    /// Waits until every sink's checkpoint says the snapshot is complete.
    async fn wait_snapshots_complete(&self, p: &mut Polyrepl, pipeline: &str, timeout: Duration) {
        wait_for("every sink to complete the snapshot", timeout, || {
            p.assert_running();
            async move {
                self.checkpoints(pipeline).await.iter().all(|c| c.as_ref().is_some_and(snapshot_complete)).then_some(())
            }
        })
        .await
    }

    /// The differences between the source and each sink (read back with its own `Sink::read_rows`, for
    /// every source key and every key the sink holds); `None` when all three equal the source.
    async fn differences(&self, readers: &mut Readers, schema: &TableSchema) -> Option<String> {
        let expected = self.source_rows(schema).await;
        let present = self.sink_keys(&schema.id.table).await;
        let mut report = Vec::new();
        for (i, (sink, keys)) in readers.sinks.iter_mut().zip(present).enumerate() {
            if let Some(d) = sink_differences(sink.as_mut(), SINK_NAMES[i], keys, &expected, schema).await {
                report.push(d);
            }
        }
        (!report.is_empty()).then(|| report.join("\n"))
    }

    /// Waits until every sink equals the source; panics with the differences after `timeout`.
    async fn wait_all_equal(&self, table: &str, mut p: Option<&mut Polyrepl>, timeout: Duration) -> usize {
        let schema = self.schema(table).await;
        let mut readers = Readers::connect(&self.redis_url).await;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(p) = p.as_deref_mut() {
                p.assert_running();
            }
            let Some(d) = self.differences(&mut readers, &schema).await else {
                return self.source_rows(&schema).await.len();
            };
            if Instant::now() > deadline {
                panic!("{}.{table}: the sinks are not equal to the source after {timeout:?}:\n{d}", self.name());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Fanout {
    /// Drops the Redis keys `DB:*` and the Cassandra keyspace `DB`, and every pipeline's Redis and
    /// Cassandra checkpoint (the TestDb drops the source and Mongo databases and Mongo checkpoints).
    fn drop(&mut self) {
        let pipelines = self.pipelines.lock().unwrap().clone();
        drop_redis_and_cassandra_data(&self.redis_url, self.name(), &pipelines, true);
    }
}

/// The three sinks constructed in-process, used only to read rows back with each sink's own mapping.
struct Readers {
    sinks: Vec<Box<dyn Sink>>,
}

impl Readers {
    async fn connect(redis_url: &str) -> Readers {
        let sinks: Vec<Box<dyn Sink>> = vec![
            Box::new(polyrepl_mongo::MongoSink::connect(MONGO, "fanout-reader").await.expect("MongoSink")),
            Box::new(
                polyrepl_redis::RedisSink::connect(redis_url, "fanout-reader", Default::default())
                    .await
                    .expect("RedisSink"),
            ),
            Box::new(
                polyrepl_cassandra::CassandraSink::connect(CASSANDRA, "fanout-reader", Default::default())
                    .await
                    .expect("CassandraSink"),
            ),
        ];
        Readers { sinks }
    }
}

/// `(domain, seq)` of the last transaction committed on `conn`.
async fn gtid_now(conn: &mut mysql_async::Conn) -> (u64, u64) {
    last_gtid(conn).await
}

fn text(v: &str) -> CqlValue {
    CqlValue::Text(v.to_string())
}

/// A CQL decimal as (unscaled integer, scale).
fn cql_decimal(v: &Option<CqlValue>) -> Option<(i128, i32)> {
    let Some(CqlValue::Decimal(d)) = v else { return None };
    let (bytes, scale) = d.as_signed_be_bytes_slice_and_exponent();
    let mut n: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
    for b in bytes {
        n = (n << 8) | *b as i128;
    }
    Some((n, scale))
}

/// 1. One reader, three sinks: a snapshot of rows over several types, then streamed inserts, updates,
///    deletes, a primary-key change and a transaction; every sink ends equal to the source (read back
///    with its own mapping), and raw reads show the documented forms in Redis, Cassandra and MongoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sinks_from_one_reader_equal_the_source() {
    let f = Fanout::create("fanout", REDIS).await;
    f.db.exec(
        "CREATE TABLE fan (id INT PRIMARY KEY, name VARCHAR(60) CHARACTER SET utf8mb4, price DECIMAL(10,2), at DATETIME(6), \
         doc JSON, tags SET('red','green','blue'), qty INT NULL)",
    )
    .await;
    f.db.exec(
        "INSERT INTO fan VALUES \
           (1, 'plain', 12.50, '2024-01-02 03:04:05.123456', '{\"a\": 1, \"b\": \"x\"}', 'red,blue', 7), \
           (2, 'emoji 😀🎉 ünïcödé', -0.01, '1999-12-31 23:59:59.999999', '[1, 2, 3]', '', NULL), \
           (3, NULL, NULL, NULL, NULL, NULL, NULL); \
         INSERT INTO fan SELECT seq, CONCAT('row-', seq, ' ✓'), seq * 1.25, '2020-01-01 00:00:00.000001' + INTERVAL seq SECOND, \
           JSON_OBJECT('n', seq, 's', CONCAT('v', seq)), 'green', seq FROM seq_4_to_40",
    )
    .await;
    let pipeline = f.pipeline("fanout");
    let mut p = Polyrepl::spawn(&f.run_args(&pipeline, &[]));
    f.wait_snapshots_complete(&mut p, &pipeline, Duration::from_secs(60)).await;
    let rows = f.wait_all_equal("fan", Some(&mut p), Duration::from_secs(30)).await;
    eprintln!("after the snapshot: {rows} rows in each of the three sinks");

    let mut conn = f.db.conn().await;
    for sql in [
        "INSERT INTO fan VALUES (50, 'new 🚀', 99999999.99, '2025-06-30 12:00:00.000500', '{\"nested\": {\"k\": [1, \"two\", null]}}', 'red,green,blue', 0)",
        "UPDATE fan SET price = price + 1, tags = 'blue,red' WHERE id BETWEEN 4 AND 10",
        "UPDATE fan SET name = NULL, price = NULL, at = NULL, doc = NULL, tags = NULL, qty = NULL WHERE id = 11",
        "UPDATE fan SET qty = 42, name = CONCAT(name, ' 🌍') WHERE id = 2",
        "DELETE FROM fan WHERE id IN (12, 13)",
        "UPDATE fan SET id = 100 WHERE id = 14",
        "BEGIN; INSERT INTO fan VALUES (60, 'tx', 1.00, '2001-02-03 04:05:06.000007', '{}', 'green', 1); \
         UPDATE fan SET qty = 2, doc = '{\"in\": \"tx\"}' WHERE id = 60; UPDATE fan SET name = 'tx ✓✓' WHERE id = 15; \
         DELETE FROM fan WHERE id = 16; UPDATE fan SET id = 117 WHERE id = 17; COMMIT",
        "BEGIN; INSERT INTO fan VALUES (70, 'rolled back', 1, NULL, NULL, NULL, NULL); DELETE FROM fan WHERE id = 18; ROLLBACK",
    ] {
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    let last = gtid_now(&mut conn).await;
    conn.disconnect().await.unwrap();
    f.wait_all_applied(&mut p, &pipeline, last, Duration::from_secs(30)).await;
    let rows = f.wait_all_equal("fan", Some(&mut p), Duration::from_secs(30)).await;
    eprintln!(
        "after streaming: {rows} rows equal in MongoDB, Redis and Cassandra (checkpoints at GTID seq {})",
        last.1
    );

    // Raw Redis: one HASH per row, MySQL's text, a NULL column is an absent field.
    let mut r = f.redis().await.expect("Redis");
    let key = |id: i64| format!("{}:fan:{id}", f.name());
    let h: HashMap<String, String> = redis::cmd("HGETALL").arg(key(50)).query_async(&mut r).await.unwrap();
    let want: HashMap<String, String> = [
        ("id", "50"),
        ("name", "new 🚀"),
        ("price", "99999999.99"),
        ("at", "2025-06-30 12:00:00.000500"),
        ("doc", r#"{"nested":{"k":[1,"two",null]}}"#),
        ("tags", "red,green,blue"),
        ("qty", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(h, want, "HGETALL {}", key(50));
    for id in [3, 11] {
        let h: HashMap<String, String> = redis::cmd("HGETALL").arg(key(id)).query_async(&mut r).await.unwrap();
        assert_eq!(
            h,
            HashMap::from([("id".to_string(), id.to_string())]),
            "HGETALL {}: NULL columns are absent fields",
            key(id)
        );
    }
    let h: HashMap<String, String> = redis::cmd("HGETALL").arg(key(2)).query_async(&mut r).await.unwrap();
    assert_eq!(h.get("name").map(String::as_str), Some("emoji 😀🎉 ünïcödé 🌍"));
    assert_eq!(h.get("price").map(String::as_str), Some("-0.01"));
    assert_eq!(h.get("tags").map(String::as_str), Some(""), "the empty SET is an empty field, not an absent one");
    for (id, exists) in [(12, 0), (14, 0), (16, 0), (17, 0), (70, 0), (100, 1), (117, 1), (18, 1)] {
        let n: i64 = redis::cmd("EXISTS").arg(key(id)).query_async(&mut r).await.unwrap();
        assert_eq!(n, exists, "EXISTS {}", key(id));
    }

    // Raw Cassandra: keyspace = database, typed columns, DATETIME(6) as text with microseconds, SET as a set.
    let select = format!(
        "SELECT \"name\", \"price\", \"at\", \"doc\", \"tags\", \"qty\" FROM \"{}\".\"fan\" WHERE \"id\" = ?",
        f.name()
    );
    let row = |id: i32| {
        let (cql, select) = (&f.cql, select.clone());
        async move {
            cql.query_unpaged(select, (id,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .maybe_first_row::<CqlRow>()
                .unwrap()
        }
    };
    let r50 = row(50).await.expect("row 50 in Cassandra").columns;
    assert_eq!(r50[0], Some(text("new 🚀")));
    assert_eq!(cql_decimal(&r50[1]), Some((9_999_999_999, 2)), "DECIMAL(10,2) 99999999.99 as CQL decimal");
    assert_eq!(r50[2], Some(text("2025-06-30T12:00:00.000500")));
    assert_eq!(r50[3], Some(text(r#"{"nested":{"k":[1,"two",null]}}"#)));
    assert_eq!(r50[4], Some(CqlValue::Set(vec![text("blue"), text("green"), text("red")])));
    assert_eq!(r50[5], Some(CqlValue::Int(0)));
    for id in [3, 11] {
        let cols = row(id).await.unwrap_or_else(|| panic!("row {id} in Cassandra")).columns;
        assert!(cols.iter().all(Option::is_none), "row {id}: every non-key column null, got {cols:?}");
    }
    let r2 = row(2).await.expect("row 2").columns;
    assert_eq!(cql_decimal(&r2[1]), Some((-1, 2)), "-0.01");
    assert_eq!(r2[4], Some(CqlValue::Set(vec![])), "the empty SET is an empty set");
    for id in [12, 14, 16, 17, 70] {
        assert!(row(id).await.is_none(), "row {id} should not be in Cassandra");
    }
    // Write timestamps come from binlog positions: the streamed row 50 is newer than the snapshot row 1.
    let wt = |id: i32| {
        let cql = &f.cql;
        let q = format!("SELECT WRITETIME(\"name\") FROM \"{}\".\"fan\" WHERE \"id\" = ?", f.name());
        async move {
            cql.query_unpaged(q, (id,))
                .await
                .unwrap()
                .into_rows_result()
                .unwrap()
                .first_row::<(Option<i64>,)>()
                .unwrap()
                .0
                .unwrap()
        }
    };
    let (w1, w50) = (wt(1).await, wt(50).await);
    assert!(w50 > w1, "write timestamp of streamed row 50 ({w50}) should exceed the snapshot row 1's ({w1})");

    // Raw MongoDB: NULL stays a null field, SET an array, JSON a document, DATETIME(6) text with microseconds.
    let d50 = f.db.collection("fan").find_one(doc! { "_id": 50 }).await.unwrap().expect("document 50");
    assert_eq!(d50.get_str("name").unwrap(), "new 🚀");
    match d50.get("price") {
        Some(Bson::String(s)) => assert_eq!(s, "99999999.99"),
        Some(Bson::Decimal128(d)) => assert_eq!(d.to_string(), "99999999.99"),
        other => panic!("price of document 50: {other:?}"),
    }
    assert_eq!(d50.get_str("at").unwrap(), "2025-06-30T12:00:00.000500");
    assert_eq!(d50.get_array("tags").unwrap(), &vec![Bson::from("red"), Bson::from("green"), Bson::from("blue")]);
    assert!(d50.get_document("doc").unwrap().get_document("nested").is_ok(), "{d50}");
    let d3 = f.db.collection("fan").find_one(doc! { "_id": 3 }).await.unwrap().expect("document 3");
    for field in ["name", "price", "at", "doc", "tags", "qty"] {
        assert_eq!(d3.get(field), Some(&Bson::Null), "document 3 field {field}: {d3}");
    }

    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", p.log());
    assert_eq!(p.log().matches("streaming from the binlog").count(), 1, "one binlog reader:\n{}", p.log());
}

/// 2. Redis goes away for 30 s while a writer makes ~20 changes/s: MongoDB and Cassandra keep applying
///    (their checkpoints reach what was written well into the outage), Redis catches up once back, all
///    three end equal to the source, and polyrepl logs one line when Redis goes and one when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_does_not_stall_the_other_sinks_and_loses_nothing() {
    let mut own = OwnRedis::start().await;
    let f = Arc::new(Fanout::create("outage", &own.url()).await);
    f.db.exec("CREATE TABLE flow (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL)").await;
    f.db.exec("INSERT INTO flow SELECT seq, CONCAT('start-', seq), 0 FROM seq_1_to_200").await;
    let pipeline = f.pipeline("outage");
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let mut p = Polyrepl::spawn(&f.run_args(&pipeline, &["--metrics-addr", &metrics_addr]));
    f.wait_snapshots_complete(&mut p, &pipeline, Duration::from_secs(60)).await;

    // The writer: one change every 50 ms; publishes the GTID sequence of its last commit.
    let stop = Arc::new(AtomicBool::new(false));
    let last_seq = Arc::new(AtomicU64::new(0));
    let domain = Arc::new(AtomicU64::new(0));
    let (_, seed) = Rng::from_entropy();
    eprintln!("random seed {seed}");
    let writer = {
        let (f, stop, last_seq, domain) = (f.clone(), stop.clone(), last_seq.clone(), domain.clone());
        tokio::spawn(async move {
            let mut rng = Rng::seeded(seed);
            let mut conn = f.db.conn().await;
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            let (mut next_id, mut op) = (200u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let sql = flow_writer_step(&mut rng, &mut next_id, op);
                conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                if conn.affected_rows() > 0 {
                    let (d, s) = last_gtid(&mut conn).await;
                    domain.store(d, Ordering::Relaxed);
                    last_seq.store(s, Ordering::Relaxed);
                }
                op += 1;
            }
            conn.disconnect().await.unwrap();
            op
        })
    };
    let written = || (domain.load(Ordering::Relaxed), last_seq.load(Ordering::Relaxed));

    // All three flowing before the outage.
    wait_for("the writer's first commit", Duration::from_secs(10), || async {
        (last_seq.load(Ordering::Relaxed) > 0).then_some(())
    })
    .await;
    f.wait_all_applied(&mut p, &pipeline, written(), Duration::from_secs(30)).await;

    own.kill();
    let outage = Instant::now();
    let at_kill = written();
    eprintln!("Redis killed; the writer had committed GTID seq {}", at_kill.1);
    let mut at_20s = None;
    let mut redis_state_seen = None;
    let mut timeline = Vec::new();
    // The outage lasts 30 s by design; meanwhile, observe the other sinks (not a synchronisation sleep).
    while outage.elapsed() < Duration::from_secs(30) {
        p.assert_running();
        let [m, _, c] = f.applied_seqs(&pipeline, at_kill.0).await;
        timeline.push(format!(
            "{:>4.1}s written {} mongo {m:?} cassandra {c:?}",
            outage.elapsed().as_secs_f64(),
            written().1
        ));
        if at_20s.is_none() && outage.elapsed() >= Duration::from_secs(20) {
            at_20s = Some(written());
        }
        if let Some((200, body)) = http_get(metrics_port, "/status") {
            let status: serde_json::Value = serde_json::from_str(&body).unwrap();
            let sinks = status["sinks"].as_array().unwrap();
            if let Some(s) = sinks.iter().find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("redis://"))) {
                if s["state"] == "retrying" {
                    redis_state_seen = Some(status.clone());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let at_20s = at_20s.unwrap();
    let [m, r, c] = f.applied_seqs(&pipeline, at_kill.0).await;
    eprintln!("during the outage:\n{}", timeline.join("\n"));
    assert!(r.is_none(), "Redis is down, its checkpoint cannot be read");
    for (name, seq) in [("MongoDB", m), ("Cassandra", c)] {
        let seq = seq.unwrap_or_else(|| panic!("{name} has no checkpoint"));
        assert!(
            seq >= at_20s.1 && seq > at_kill.1,
            "{name} stalled during the Redis outage: its checkpoint is at GTID seq {seq}, the writer had reached {} 20 s into the outage (and {} at the kill)",
            at_20s.1,
            at_kill.1
        );
    }
    let status = redis_state_seen.expect("/status never showed the Redis sink as 'retrying' during the outage");
    for s in status["sinks"].as_array().unwrap() {
        let redis = s["name"].as_str().unwrap().starts_with("redis://");
        assert_eq!(s["state"], if redis { "retrying" } else { "ok" }, "{status}");
    }
    eprintln!("FIGURE outage: 30 s; MongoDB at seq {m:?}, Cassandra at seq {c:?}; writer at {} when Redis died, {} 20 s in, {} now", at_kill.1, at_20s.1, written().1);

    own.restart().await;
    let back = Instant::now();
    // The restarted server kept its data (append-only file): the checkpoint and the rows are there.
    let [_, r_after, _] = f.checkpoints(&pipeline).await;
    let r_after = r_after.expect("the Redis checkpoint survived the restart");
    eprintln!("Redis back; its checkpoint after the restart: {r_after}");
    // Redis catches up while the writer still writes.
    let target = written();
    f.wait_all_applied(&mut p, &pipeline, target, Duration::from_secs(45)).await;
    eprintln!(
        "FIGURE Redis caught up with GTID seq {} {:.1} s after its restart",
        target.1,
        back.elapsed().as_secs_f64()
    );
    stop.store(true, Ordering::Relaxed);
    let ops = writer.await.unwrap();
    let last = written();
    f.wait_all_applied(&mut p, &pipeline, last, Duration::from_secs(30)).await;
    let rows = f.wait_all_equal("flow", Some(&mut p), Duration::from_secs(30)).await;
    eprintln!("writer made {ops} changes; {rows} rows equal in all three sinks");
    assert!(ops >= 600, "the writer made too few changes ({ops})");

    let log = p.log();
    let went: Vec<&str> = log.lines().filter(|l| l.contains("sink unavailable; retrying with backoff")).collect();
    let came: Vec<&str> = log.lines().filter(|l| l.contains("sink is back; applying again")).collect();
    assert_eq!(went.len(), 1, "one warning when Redis went away, got:\n{}\n--- log:\n{log}", went.join("\n"));
    assert_eq!(came.len(), 1, "one line when Redis came back, got:\n{}\n--- log:\n{log}", came.join("\n"));
    let port = format!(":{}", own.port);
    assert!(
        went[0].contains(&port) && came[0].contains(&port),
        "the lines name the Redis sink:\n{}\n{}",
        went[0],
        came[0]
    );
    eprintln!("logged:\n{}\n{}", went[0], came[0]);

    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", p.log());
}

/// Number of SIGKILLs of the crash test: 20 (the issue's figure) unless POLYREPL_CRASH_KILLS says
/// otherwise (`scripts/crash-long` runs many more).
fn crash_kills() -> usize {
    std::env::var("POLYREPL_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20)
}

/// One statement (or transaction) of the crash test's writer on `churn (id, v, n, d[, extra])` and
/// `pair (a, b, v)`: inserts, updates (also multi-row and primary-key-changing), deletes, transactions
/// across both tables.
fn crash_writer_step(rng: &mut Rng, next_id: &mut u64, ops: u64, altered: bool) -> String {
    let id = 1 + rng.below(*next_id);
    let extra = if altered { format!(", extra = 'x{ops}'") } else { String::new() };
    match rng.below(12) {
        0..=2 => {
            *next_id += 1;
            let cols = if altered { "(id, v, n, d, extra)" } else { "(id, v, n, d)" };
            let extra_value = if altered { format!(", 'new-{ops}'") } else { String::new() };
            format!("INSERT INTO churn {cols} VALUES ({next_id}, 'ins-{ops} 😀', 1, {ops}.25{extra_value})")
        }
        3..=4 => format!("UPDATE churn SET v = 'upd-{ops}', n = n + 1, d = NULL{extra} WHERE id = {id}"),
        5 => format!("DELETE FROM churn WHERE id = {id}"),
        6 => format!("UPDATE churn SET n = n + 1, v = 'multi-{ops}' WHERE id BETWEEN {id} AND {}", id + 10),
        7 => {
            *next_id += 1;
            format!("UPDATE IGNORE churn SET id = {next_id}, v = 'moved-{ops}' WHERE id = {id}")
        }
        8 => format!("INSERT INTO pair VALUES ({}, 'k{}', {ops}) ON DUPLICATE KEY UPDATE v = v + 1", id % 50, id % 7),
        9 => format!("DELETE FROM pair WHERE a = {} AND b = 'k{}'", id % 50, id % 7),
        _ => {
            *next_id += 1;
            format!(
                "BEGIN; INSERT INTO churn (id, v, n, d) VALUES ({next_id}, 'tx-{ops}', 7, -1.50); UPDATE churn SET n = n + 100 WHERE id = {id}; \
                 DELETE FROM churn WHERE id = {}; UPDATE churn SET v = 'tx-upd-{ops}' WHERE id = {next_id}; \
                 INSERT INTO pair VALUES ({}, 'tx', {ops}) ON DUPLICATE KEY UPDATE v = {ops}; COMMIT",
                1 + (id * 7919) % *next_id,
                id % 50
            )
        }
    }
}

/// 3. A sink that hangs never holds the others back: our own `redis-server` is frozen (SIGSTOP: its
///    connections stay open, nothing is answered) while 10 transactions of 1000 rows are written with
///    `--queue-changes 1000`. MongoDB and Cassandra apply all of them while Redis is frozen — before the
///    spill file, the reader waited as soon as Redis's queue was full, so they stopped at about 1000 —
///    and /status shows Redis's batches spilled. Once thawed, Redis catches up from its spill file and
///    all three equal the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_sink_spills_to_disk_and_the_others_stream_on() {
    let own = OwnRedis::start().await;
    let f = Fanout::create("spill", &own.url()).await;
    f.db.exec("CREATE TABLE flow (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL)").await;
    f.db.exec("INSERT INTO flow SELECT seq, CONCAT('start-', seq), 0 FROM seq_1_to_200").await;
    let pipeline = f.pipeline("spill");
    let http_port = free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let mut p = Polyrepl::spawn(&f.run_args(&pipeline, &["--queue-changes", "1000", "--http-addr", &http_addr]));
    f.wait_snapshots_complete(&mut p, &pipeline, Duration::from_secs(60)).await;

    own.pause();
    let frozen = Instant::now();
    let mut conn = f.db.conn().await;
    for i in 0..10 {
        conn.query_drop(format!(
            "INSERT INTO flow SELECT seq + {}, CONCAT('w-', seq), {i} FROM seq_1_to_1000",
            1000 + i * 1000
        ))
        .await
        .unwrap();
    }
    let (domain, seq) = last_gtid(&mut conn).await;
    conn.disconnect().await.unwrap();
    wait_for(
        "MongoDB and Cassandra to apply all 10 transactions while Redis is frozen",
        Duration::from_secs(120),
        || {
            p.assert_running();
            let f = &f;
            let pipeline = &pipeline;
            async move {
                let [m, _, c] = f.applied_seqs(pipeline, domain).await;
                (m.is_some_and(|m| m >= seq) && c.is_some_and(|c| c >= seq)).then_some(())
            }
        },
    )
    .await;
    eprintln!(
        "FIGURE MongoDB and Cassandra applied 10,000 changes {:.1} s after Redis froze",
        frozen.elapsed().as_secs_f64()
    );
    let (_, body) = http_get(http_port, "/status").expect("/status answers");
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let redis = status["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("redis://")))
        .expect("the Redis sink in /status")
        .clone();
    assert!(redis["batches_spilled"].as_u64().unwrap() > 0, "Redis's batches went to its spill file: {redis}");
    assert!(redis["spilled_bytes"].as_u64().unwrap() > 0, "{redis}");

    own.resume();
    let thawed = Instant::now();
    f.wait_all_applied(&mut p, &pipeline, (domain, seq), Duration::from_secs(120)).await;
    eprintln!("FIGURE Redis caught up {:.1} s after it was thawed", thawed.elapsed().as_secs_f64());
    let rows = f.wait_all_equal("flow", Some(&mut p), Duration::from_secs(60)).await;
    eprintln!("FIGURE all three equal the source {:.1} s after Redis was thawed", thawed.elapsed().as_secs_f64());
    assert_eq!(rows, 10_200);
    let log = p.log();
    assert!(log.contains("its batches go to its spill file"), "the spill is logged:\n{log}");
    assert!(log.contains("caught up with its spill file"), "the catch-up is logged:\n{log}");
    p.sigterm();
}

/// 4. The crash suite: a writer makes mixed changes on two tables (inserts, updates also multi-row and
///    primary-key-changing, deletes, transactions, and an ALTER TABLE … ADD COLUMN halfway) while
///    polyrepl with three sinks is SIGKILLed at 20 random moments — the first ones while the initial
///    snapshot is being copied — and restarted each time. After a final `--stop-at-end` run, `polyrepl verify` finds
///    every table equal in every sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_with_three_sinks_loses_nothing() {
    let kills = crash_kills();
    let f = Arc::new(Fanout::create("crash", REDIS).await);
    f.db.exec("CREATE TABLE churn (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL, d DECIMAL(8,2))").await;
    f.db.exec("INSERT INTO churn SELECT seq, CONCAT('start-', seq), 0, seq / 4 FROM seq_1_to_5000").await;
    f.db.exec("CREATE TABLE pair (a INT, b VARCHAR(10), v INT, PRIMARY KEY (a, b))").await;
    f.db.exec("INSERT INTO pair SELECT seq % 50, CONCAT('k', seq % 7), seq FROM seq_1_to_300 ON DUPLICATE KEY UPDATE v = VALUES(v)").await;
    let pipeline = f.pipeline("crash");
    // Small batches and chunks: more checkpoints, so kills land between (and inside) many of them.
    // (FerretDB scans the whole collection per update batch: the table stays small enough for it.)
    let args = f.run_args(&pipeline, &["--batch-changes", "200", "--chunk-rows", "100"]);
    let (mut rng, seed) = Rng::from_entropy();
    eprintln!("random seed {seed}; {kills} kills");

    let stop = Arc::new(AtomicBool::new(false));
    let altered = Arc::new(AtomicBool::new(false));
    let writer = {
        let (f, stop, altered) = (f.clone(), stop.clone(), altered.clone());
        let mut rng = Rng::seeded(seed.rotate_left(17));
        tokio::spawn(async move {
            let mut conn = f.db.conn().await;
            let (mut next_id, mut ops) = (5_000u64, 0u64);
            let mut tick = tokio::time::interval(Duration::from_millis(8));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await; // pacing (~120 statements/s), not synchronisation
                let sql = crash_writer_step(&mut rng, &mut next_id, ops, altered.load(Ordering::Relaxed));
                conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                ops += 1;
            }
            conn.disconnect().await.unwrap();
            ops
        })
    };

    let started = Instant::now();
    let mut p = Polyrepl::spawn(&args);
    let mut last_min = 0u64;
    let (mut snapshot_kills, mut stream_kills) = (0usize, 0usize);
    for round in 0..kills {
        let in_snapshot = round < kills.div_ceil(5);
        if in_snapshot {
            // While the snapshot is being copied: once some sink holds a snapshot checkpoint newer than
            // at the last kill (the copy is moving), at a random moment a little after that.
            let before = f.checkpoints(&pipeline).await;
            let _ = tokio::time::timeout(Duration::from_secs(20), async {
                loop {
                    p.assert_running();
                    let now = f.checkpoints(&pipeline).await;
                    if now
                        .iter()
                        .zip(&before)
                        .any(|(n, b)| n.as_ref().is_some_and(|n| !snapshot_complete(n) && Some(n) != b.as_ref()))
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(rng.below(300))).await;
        } else {
            // Once every sink has applied something new in this run, at a random moment after that.
            let seqs = wait_for(&format!("progress of every sink in run {round}"), Duration::from_secs(90), || {
                p.assert_running();
                let f = &f;
                let pipeline = &pipeline;
                async move {
                    let seqs = f.applied_seqs(pipeline, 0).await;
                    let min = seqs.iter().map(|s| s.unwrap_or(0)).min().unwrap();
                    (min > last_min).then_some(seqs)
                }
            })
            .await;
            last_min = seqs.iter().map(|s| s.unwrap()).min().unwrap();
            tokio::time::sleep(Duration::from_millis(rng.below(1000))).await; // not a sync point
        }
        p.sigkill();
        let cps = f.checkpoints(&pipeline).await;
        let snapshotting = cps.iter().any(|c| c.as_ref().is_none_or(|c| !snapshot_complete(c)));
        if snapshotting {
            snapshot_kills += 1;
        } else {
            stream_kills += 1;
        }
        eprintln!(
            "kill {}: {} (checkpoint GTID seqs {:?})",
            round + 1,
            if snapshotting { "during the snapshot" } else { "while streaming" },
            cps.iter().map(|c| c.as_ref().and_then(|c| checkpoint_gtid_seq(c, 0))).collect::<Vec<_>>()
        );
        if round == kills / 2 {
            // Halfway: a schema change under the pipeline (new rows and updates then fill the column).
            f.db.exec("ALTER TABLE churn ADD COLUMN extra VARCHAR(20) NULL").await;
            altered.store(true, Ordering::Relaxed);
        }
        p = Polyrepl::spawn(&args);
    }
    wait_for("progress of the last run", Duration::from_secs(90), || {
        p.assert_running();
        let f = &f;
        let pipeline = &pipeline;
        async move { (f.applied_seqs(pipeline, 0).await.iter().all(|s| s.is_some_and(|s| s > last_min))).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let ops = writer.await.unwrap();
    p.sigkill();
    eprintln!("writer made {ops} statements/transactions in {:.0} s", started.elapsed().as_secs_f64());
    assert!(ops > 300, "the writer made too few changes to prove anything");
    assert!(snapshot_kills >= 1, "no kill landed during the snapshot");

    let mut args_end = args.clone();
    args_end.push("--stop-at-end".into());
    let (status, log) = run_to_end(&args_end, Duration::from_secs(240)).await;
    assert!(status.success(), "final run failed ({status}):\n{log}");
    assert!(!log.contains("no checkpoint: starting with a snapshot"), "the final run should resume every sink:\n{log}");

    let tables = format!("{}.*", f.name());
    let verify = polyrepl_args("verify", MYSQL, &tables, &SINKS, Some(&pipeline), &["--json"]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(0), "verify found differences after {kills} kills (seed {seed}):\n{out}");
    let rows = f.source_rows(&f.schema("churn").await).await.len();
    eprintln!("FIGURE crash: {kills} SIGKILLs ({snapshot_kills} during the snapshot, {stream_kills} while streaming), {ops} writer statements; verify: {rows} churn rows + pair rows equal in MongoDB, Redis and Cassandra, 0 lost (seed {seed})");
}

/// Peak resident memory (VmHWM) of a running process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: f64 = status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// 4. Load: 200,000 row changes written as fast as MariaDB takes them (150k inserts in 1,000-row
///    statements, then 50k updates in 1,000-row ranges) while polyrepl streams them into Redis and
///    Cassandra. The bounded queues must keep memory bounded while the slower sink catches up;
///    `polyrepl verify` then finds every row equal. The peak RSS is printed as a FIGURE line (debug build).
///    MongoDB is left out: FerretDB 1.24 scans the whole collection for every update batch (about 10 s
///    per 1,000-row batch at 150k documents, measured), so 50k updates would take many minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200k_changes_keeps_memory_bounded_and_arrives_whole() {
    let f = Fanout::create("load", REDIS).await;
    f.db.exec("CREATE TABLE burst (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL, n INT NOT NULL)").await;
    let pipeline = f.pipeline("load");
    let tables = format!("{}.*", f.name());
    let run: Vec<String> =
        ["run", "--source", MYSQL, "--tables", &tables, "--sink", REDIS, "--sink", CASSANDRA, "--name", &pipeline]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let mut p = Polyrepl::spawn(&run);
    wait_for("Redis and Cassandra to complete the (empty) snapshot", Duration::from_secs(60), || {
        p.assert_running();
        let (f, pipeline) = (&f, &pipeline);
        async move {
            let [_, r, c] = f.checkpoints(pipeline).await;
            (r.is_some_and(|c| snapshot_complete(&c)) && c.is_some_and(|c| snapshot_complete(&c))).then_some(())
        }
    })
    .await;

    let started = Instant::now();
    let mut conn = f.db.conn().await;
    for chunk in 0..150 {
        let first = chunk * 1000 + 1;
        conn.query_drop(format!(
            "INSERT INTO burst SELECT seq, CONCAT('burst-row-', seq, '-', REPEAT('x', seq % 32)), 0 FROM seq_{first}_to_{}",
            first + 999
        ))
        .await
        .unwrap();
    }
    for chunk in 0..50 {
        let first = chunk * 3000 + 1; // spread over the table
        conn.query_drop(format!(
            "UPDATE burst SET n = n + 1, v = CONCAT('upd-', id) WHERE id BETWEEN {first} AND {}",
            first + 999
        ))
        .await
        .unwrap();
    }
    let written = started.elapsed();
    let last = gtid_now(&mut conn).await;
    conn.disconnect().await.unwrap();
    eprintln!(
        "source took 200,000 changes in {:.1} s ({:.0} changes/s)",
        written.as_secs_f64(),
        200_000.0 / written.as_secs_f64()
    );

    wait_for("Redis and Cassandra to apply the burst", Duration::from_secs(300), || {
        p.assert_running();
        let (f, pipeline) = (&f, &pipeline);
        async move {
            let [_, r, c] = f.applied_seqs(pipeline, last.0).await;
            (r.is_some_and(|s| s >= last.1) && c.is_some_and(|s| s >= last.1)).then_some(())
        }
    })
    .await;
    let caught_up = started.elapsed();
    let rss = peak_rss_mib(p.pid()).expect("VmHWM of polyrepl");
    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", p.log());
    eprintln!(
        "FIGURE load: 200,000 changes applied in Redis and Cassandra {:.1} s after the burst began ({:.0} changes/s end to end); peak RSS of polyrepl {rss:.0} MiB (debug build)",
        caught_up.as_secs_f64(),
        200_000.0 / caught_up.as_secs_f64()
    );
    assert!(rss < 512.0, "polyrepl's peak RSS was {rss:.0} MiB under a 200k-change burst: memory is not bounded");

    let verify =
        polyrepl_args("verify", MYSQL, &tables, &[REDIS, CASSANDRA], Some(&pipeline), &["--chunk-rows", "5000"]);
    let verify_started = Instant::now();
    let (status, out) = run_to_end(&verify, Duration::from_secs(240)).await;
    assert_eq!(status.code(), Some(0), "verify found differences after the burst:\n{out}");
    eprintln!("verify: 150,000 rows equal in Redis and Cassandra ({:.1} s)", verify_started.elapsed().as_secs_f64());
}
