//! A test database replicated into all three sinks by the real binary, a writer, and the closing
//! check every such test ends with: catch up with a `--stop-at-end` run, then `polyrepl verify` finds
//! every sink equal to the source.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A test database replicated into all three sinks; drops what it created in every sink.
pub struct Harness {
    pub db: TestDb,
    pipelines: Mutex<Vec<String>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.db.name, &self.pipelines.lock().unwrap(), true);
    }
}

impl Harness {
    pub async fn create(tag: &str) -> Harness {
        Harness { db: TestDb::create(tag).await, pipelines: Default::default() }
    }

    pub fn pipeline(&self, tag: &str) -> String {
        let name = self.db.pipeline(tag);
        self.pipelines.lock().unwrap().push(name.clone());
        name
    }

    /// `polyrepl <command>` over `tables` (default: every table of the database) into `sinks`.
    pub fn args(
        &self,
        command: &str,
        pipeline: &str,
        tables: Option<&str>,
        sinks: &[&str],
        extra: &[&str],
    ) -> Vec<String> {
        let all = format!("{}.*", self.db.name);
        let tables = tables.unwrap_or(&all);
        if command != "run" {
            return polyrepl_args(command, MYSQL, tables, sinks, None, extra);
        }
        let run_extra: Vec<&str> = ["--chunk-rows", "50"].into_iter().chain(extra.iter().copied()).collect();
        polyrepl_args(command, MYSQL, tables, sinks, Some(pipeline), &run_extra)
    }

    /// Waits until the MongoDB checkpoint says every table is copied (no snapshot, no online copy).
    pub async fn wait_copied(&self, pipeline: &str, p: &mut Polyrepl) {
        let db = &self.db;
        wait_for("every table copied", Duration::from_secs(120), || {
            p.assert_running();
            async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
        })
        .await;
    }

    /// A `flow (id, v, n)` table of `rows` rows, and a run into every sink serving HTTP on a free port,
    /// once it has copied the table: (pipeline, HTTP address, run).
    pub async fn flow_run_with_http(&self, rows_: u64) -> (String, String, Polyrepl) {
        self.db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
        rows(&self.db, "flow", rows_, "({i}, 'f{i}', {i})").await;
        let pipeline = self.pipeline("http");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut p = Polyrepl::spawn(&self.args("run", &pipeline, None, &SINKS, &["--metrics-addr", &addr]));
        self.wait_copied(&pipeline, &mut p).await;
        (pipeline, addr, p)
    }

    /// Waits until the run's log says `needle` (e.g. that a statement was followed).
    pub async fn wait_log(&self, p: &mut Polyrepl, needle: &str) {
        wait_for(&format!("the log to say {needle:?}"), Duration::from_secs(120), || {
            p.assert_running();
            let found = p.log().contains(needle);
            async move { found.then_some(()) }
        })
        .await;
    }

    /// Stops the following run, catches up with a `--stop-at-end` run, and asserts that `verify` finds
    /// every sink equal to the source.
    pub async fn stop_catch_up_and_verify(&self, mut p: Polyrepl, pipeline: &str, sinks: &[&str]) {
        p.assert_running();
        p.sigterm();
        let status = p.wait_exit(Duration::from_secs(60)).await;
        assert!(status.success(), "the run did not stop cleanly ({status}):\n{}", p.log());
        let (status, log) =
            run_to_end(&self.args("run", pipeline, None, sinks, &["--stop-at-end"]), Duration::from_secs(180)).await;
        assert!(status.success(), "the catching-up run failed ({status}):\n{log}");
        let (status, out) =
            run_to_end(&self.args("verify", pipeline, None, sinks, &[]), Duration::from_secs(180)).await;
        assert_eq!(status.code(), Some(0), "verify found differences:\n{out}\n--- run log:\n{}", p.log());
        assert!(out.contains("verify: consistent"), "{out}");
    }
}

/// A writer on `flow (id, v, n)` until stopped; panics on a failed statement.
pub struct Writer {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    pub async fn start(db: &TestDb, statement: fn(&mut Rng, &mut u64, u64) -> String, first_id: u64) -> Writer {
        let (stop, ops) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let mut conn = db.conn().await;
        let (stop2, ops2) = (stop.clone(), ops.clone());
        let task = tokio::spawn(async move {
            let (mut rng, seed) = Rng::from_entropy();
            eprintln!("writer seed {seed}");
            let mut next_id = first_id;
            while !stop2.load(Ordering::Relaxed) {
                let op = ops2.fetch_add(1, Ordering::Relaxed);
                let sql = statement(&mut rng, &mut next_id, op);
                conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("writer: {sql}: {e}"));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            conn.disconnect().await.unwrap();
        });
        Writer { stop, ops, task }
    }

    pub async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer failed");
        self.ops.load(Ordering::Relaxed)
    }
}

pub async fn rows(db: &TestDb, table: &str, n: u64, values: &str) {
    let rows: Vec<String> = (1..=n).map(|i| values.replace("{i}", &i.to_string())).collect();
    db.exec(&format!("INSERT INTO `{table}` VALUES {}", rows.join(","))).await;
}
