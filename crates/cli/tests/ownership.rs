//! End-to-end: two pipelines (two `--name`s) on the same sink tables, with the real binary and MongoDB,
//! Redis and Cassandra. The second is refused at start-up while the first holds the tables' leases,
//! also right after the first was killed with `kill -9`; the first, restarted under its name, gets its
//! leases back at once; `--take-over` takes them, and the first then stops at its next renewal; a clean
//! stop gives them back.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::*;
use mongodb::bson::{doc, Document};
use std::time::{Duration, Instant};

/// A test database and its pipelines; removes what they left in every sink (leases included).
struct Harness {
    db: TestDb,
    pipelines: Vec<String>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.db.name, &self.pipelines, true);
        let name = self.db.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let Ok(client) = mongodb::Client::with_uri_str(MONGO).await else { return };
                let leases = client.database("polyrepl").collection::<Document>("_polyrepl_leases");
                let _ = leases.delete_many(doc! { "_id": { "$regex": format!("^{name}\\.") } }).await;
                let Ok(redis) = redis::Client::open(REDIS) else { return };
                let Ok(mut conn) = redis.get_multiplexed_async_connection().await else { return };
                let _: Result<(), _> =
                    redis::cmd("DEL").arg(format!("polyrepl:lease:{name}:t")).query_async(&mut conn).await;
            })
        })
        .join();
    }
}

impl Harness {
    fn args(&self, pipeline: &str, extra: &[&str]) -> Vec<String> {
        let tables = format!("{}.*", self.db.name);
        polyrepl_args("run", MYSQL, &tables, &SINKS, Some(pipeline), extra)
    }

    /// Waits until `p`'s MongoDB checkpoint says every table is copied.
    async fn wait_copied(&self, pipeline: &str, p: &mut Polyrepl) {
        let db = &self.db;
        wait_for("every table copied", Duration::from_secs(120), || {
            p.assert_running();
            async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
        })
        .await;
    }
}

/// Asserts that a run of `args` is refused at start-up because `owner` holds `table`, with the fix.
async fn assert_refused(args: &[String], table: &str, owner: &str) -> String {
    let started = Instant::now();
    let (status, log) = run_to_end(args, Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(2), "the second pipeline was not refused:\n{log}");
    for needle in [
        "cannot start".to_string(),
        format!("{table} is leased by pipeline '{owner}'"),
        "--take-over".to_string(),
        format!("stop pipeline '{owner}'"),
    ] {
        assert!(log.contains(&needle), "the refusal does not say {needle:?}:\n{log}");
    }
    for sink in ["mongodb://127.0.0.1:1800", "redis://127.0.0.1:6379", "cassandra://127.0.0.1:9042"] {
        assert!(log.contains(&format!("{sink}: {table} is leased")), "the refusal does not name {sink}:\n{log}");
    }
    eprintln!("refused in {:?}", started.elapsed());
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pipeline_on_the_same_tables_is_refused_until_taken_over() {
    let mut h = Harness { db: TestDb::create("owner").await, pipelines: Vec::new() };
    h.db.exec("CREATE TABLE t (id BIGINT PRIMARY KEY, v VARCHAR(40)); INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let (a, b) = (h.db.pipeline("a"), h.db.pipeline("b"));
    h.pipelines.extend([a.clone(), b.clone()]);
    let table = format!("{}.t", h.db.name);
    // Leases of 9 s, renewed every 3 s.
    let lease = ["--lease-seconds", "9"];

    let mut first = Polyrepl::spawn(&h.args(&a, &lease));
    h.wait_copied(&a, &mut first).await;
    assert_refused(&h.args(&b, &["--stop-at-end"]), &table, &a).await;
    assert!(h.db.checkpoint(&b).await.is_none(), "the refused pipeline wrote a checkpoint");
    // Renewals keep the lease past its 9 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    first.assert_running();
    assert_refused(&h.args(&b, &["--stop-at-end"]), &table, &a).await;

    // kill -9: the lease stays until it expires, but the same name gets it back at once.
    first.sigkill();
    let killed = Instant::now();
    assert_refused(&h.args(&b, &["--stop-at-end"]), &table, &a).await;
    assert!(
        killed.elapsed() < Duration::from_secs(9),
        "too slow to see the dead pipeline's lease: {:?}",
        killed.elapsed()
    );
    let mut first = Polyrepl::spawn(&h.args(&a, &lease));
    h.db.exec("INSERT INTO t VALUES (3, 'after restart')").await;
    h.db.wait_in_sync("t", Duration::from_secs(60)).await;
    first.assert_running();
    assert!(killed.elapsed() < Duration::from_secs(9), "the restart waited for its own lease: {:?}", killed.elapsed());

    // --take-over: the second pipeline runs; the first stops at its next renewal, saying why.
    let mut second = Polyrepl::spawn(&h.args(&b, &["--take-over", "--lease-seconds", "9"]));
    let status = first.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(2), "the first pipeline kept running after the take-over:\n{}", first.log());
    let log = first.log();
    assert!(
        log.contains(&format!("pipeline '{a}' stops: it lost the lease"))
            && log.contains(&format!("leased by pipeline '{b}'")),
        "{log}"
    );
    second.assert_running();
    h.wait_copied(&b, &mut second).await;
    h.db.exec("INSERT INTO t VALUES (4, 'second pipeline')").await;
    h.db.wait_in_sync("t", Duration::from_secs(60)).await;
    assert!(second.log().contains("--take-over"), "the take-over is logged:\n{}", second.log());

    // A clean stop gives the tables back at once: the first name starts again without waiting.
    second.sigterm();
    let status = second.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "{}", second.log());
    let (status, log) = run_to_end(&h.args(&a, &["--stop-at-end"]), Duration::from_secs(120)).await;
    assert!(status.success(), "after a clean stop the tables are free:\n{log}");
}
