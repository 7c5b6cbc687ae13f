//! Shared helpers of the end-to-end tests of `polyrepl run`: a randomly named source database (and the
//! same-named MongoDB database) dropped at the end, the real binary as a child process, reading both
//! sides back in full, and waiting on conditions with a timeout.
//!
//! Servers: MariaDB at 127.0.0.1:5600 (root, no password) and a MongoDB-wire server (FerretDB) at
//! 127.0.0.1:1800, as `polyrepl stack up` starts them. The MongoDB URL is read when the tests are
//! built: `POLYREPL_MONGO_URL=mongodb://127.0.0.1:1801 cargo test -p polyrepl --test …` runs them on the
//! second MongoDB-wire server (`polyrepl stack up --service mongo-java`).
#![allow(dead_code)]

use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mysql_async::consts::ColumnType;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod three_sinks;

pub const MYSQL: &str = "mysql://root@127.0.0.1:5600";
/// `POLYREPL_MONGO_URL` at build time (cargo rebuilds the tests when it changes), else FerretDB's port.
pub const MONGO: &str = match option_env!("POLYREPL_MONGO_URL") {
    Some(url) => url,
    None => "mongodb://127.0.0.1:1800",
};
pub const REDIS: &str = "redis://127.0.0.1:6379";
pub const CASSANDRA: &str = "cassandra://127.0.0.1:9042";
/// The three sinks every full end-to-end test writes to.
pub const SINKS: [&str; 3] = [MONGO, REDIS, CASSANDRA];

/// The arguments of `polyrepl COMMAND --source SOURCE --tables TABLES --sink S… [--name PIPELINE] EXTRA…`.
pub fn polyrepl_args(
    command: &str,
    source: &str,
    tables: &str,
    sinks: &[&str],
    pipeline: Option<&str>,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> =
        [command, "--source", source, "--tables", tables].iter().map(|s| s.to_string()).collect();
    for sink in sinks {
        args.extend(["--sink".to_string(), sink.to_string()]);
    }
    if let Some(pipeline) = pipeline {
        args.extend(["--name".to_string(), pipeline.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `e2e_<tag>_<10 random hex digits>`: a name no other test (or run) uses.
pub fn unique(tag: &str) -> String {
    format!("e2e_{tag}_{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

/// A fresh source database and its MongoDB counterpart; both (and the checkpoints of the pipelines
/// registered with [`TestDb::pipeline`]) are dropped when this is dropped, even after a failure.
pub struct TestDb {
    pub name: String,
    pub mongo: mongodb::Client,
    pipelines: std::sync::Mutex<Vec<String>>,
}

impl TestDb {
    pub async fn create(tag: &str) -> TestDb {
        let name = unique(tag);
        let mut conn = mysql_async::Conn::from_url(MYSQL).await.expect("connect to MariaDB at 127.0.0.1:5600");
        conn.query_drop(format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4")).await.unwrap();
        conn.disconnect().await.unwrap();
        let mongo = mongodb::Client::with_uri_str(MONGO).await.expect("MongoDB client");
        TestDb { name, mongo, pipelines: Default::default() }
    }

    /// A connection with this database selected, the session time zone UTC and strict mode
    /// (zero dates allowed).
    pub async fn conn(&self) -> mysql_async::Conn {
        let mut conn = mysql_async::Conn::from_url(format!("{MYSQL}/{}", self.name)).await.unwrap();
        conn.query_drop("SET NAMES utf8mb4, time_zone = '+00:00', sql_mode = 'STRICT_ALL_TABLES'").await.unwrap();
        conn
    }

    /// Runs statements (`;`-separated) on a new connection.
    pub async fn exec(&self, sql: &str) {
        let mut conn = self.conn().await;
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.disconnect().await.unwrap();
    }

    /// A new pipeline name whose checkpoint is deleted at the end.
    pub fn pipeline(&self, tag: &str) -> String {
        let name = unique(tag);
        self.pipelines.lock().unwrap().push(name.clone());
        name
    }

    pub fn collection(&self, table: &str) -> mongodb::Collection<Document> {
        self.mongo.database(&self.name).collection(table)
    }

    /// `polyrepl run` arguments for every table of this database into the Mongo sink.
    pub fn run_args(&self, pipeline: &str, extra: &[&str]) -> Vec<String> {
        let tables = format!("{}.*", self.name);
        let mut args: Vec<String> =
            ["run", "--source", MYSQL, "--tables", &tables, "--sink", MONGO, "--name", pipeline]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// The stored checkpoint of `pipeline` (the JSON the sink holds), if any.
    pub async fn checkpoint(&self, pipeline: &str) -> Option<serde_json::Value> {
        checkpoint(&self.mongo, pipeline).await
    }

    /// Every row of `table` as the document the mapping documents for it (integer and character
    /// columns only), by `id`.
    pub async fn source_docs(&self, table: &str) -> Docs {
        let mut conn = self.conn().await;
        let docs = source_docs(&mut conn, table).await;
        conn.disconnect().await.unwrap();
        docs
    }

    /// Every document of the collection of `table`, by `_id`.
    pub async fn sink_docs(&self, table: &str) -> Docs {
        sink_docs(&self.collection(table)).await
    }

    /// Waits until the sink holds exactly the source's rows of `table`; panics with the differences
    /// after `timeout`.
    pub async fn wait_in_sync(&self, table: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let expected = self.source_docs(table).await;
            let actual = self.sink_docs(table).await;
            let Some(d) = diff(&expected, &actual) else { return };
            if Instant::now() > deadline {
                panic!("{}.{table}: the sink is not in step with the source after {timeout:?}:\n{d}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let pipelines = self.pipelines.lock().unwrap().clone();
        // Async clean-up on a runtime of its own (Drop may run inside or outside the test's runtime).
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = mysql_async::Conn::from_url(MYSQL).await {
                    let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`")).await;
                    let _ = conn.disconnect().await;
                }
                if let Ok(client) = mongodb::Client::with_uri_str(MONGO).await {
                    let _ = client.database(&name).drop().await;
                    let checkpoints = client.database("polyrepl").collection::<Document>("_polyrepl_checkpoints");
                    for p in pipelines {
                        let _ = checkpoints.delete_one(doc! { "_id": p }).await;
                    }
                }
            })
        })
        .join();
    }
}

/// The checkpoint JSON stored under `pipeline` in `polyrepl._polyrepl_checkpoints`.
pub async fn checkpoint(mongo: &mongodb::Client, pipeline: &str) -> Option<serde_json::Value> {
    let found = mongo
        .database("polyrepl")
        .collection::<Document>("_polyrepl_checkpoints")
        .find_one(doc! { "_id": pipeline })
        .await
        .ok()??;
    Some(serde_json::from_str(found.get_str("checkpoint").ok()?).expect("checkpoint is JSON"))
}

/// True when a checkpoint says every table is copied (pure streaming: no snapshot, no online copy).
pub fn snapshot_complete(cp: &serde_json::Value) -> bool {
    cp["snapshot"].is_null() && cp["copies"].is_null()
}

/// The sequence number of GTID domain `domain` in a checkpoint's position (`D-S-N[,D-S-N]`).
pub fn checkpoint_gtid_seq(cp: &serde_json::Value, domain: u64) -> Option<u64> {
    gtid_seq(cp["position"]["gtid"].as_str()?, domain)
}

/// The sequence number of `domain` in a MariaDB GTID list.
pub fn gtid_seq(list: &str, domain: u64) -> Option<u64> {
    list.split(',').find_map(|g| {
        let mut parts = g.trim().split('-');
        let d: u64 = parts.next()?.parse().ok()?;
        let _server = parts.next()?;
        let seq: u64 = parts.next()?.parse().ok()?;
        (d == domain).then_some(seq)
    })
}

/// (domain, sequence) of the last transaction this session committed.
pub async fn last_gtid(conn: &mut mysql_async::Conn) -> (u64, u64) {
    let g: String = conn.query_first("SELECT @@last_gtid").await.unwrap().unwrap();
    let mut parts = g.split('-');
    let d = parts.next().unwrap().parse().unwrap();
    let seq = parts.nth(1).unwrap().parse().unwrap();
    (d, seq)
}

/// Rows or documents by integer primary key, each as field → BSON.
pub type Docs = BTreeMap<i64, BTreeMap<String, Bson>>;

/// int32 when it fits, else int64 (the mapping of integer columns).
pub fn int_bson(v: i64) -> Bson {
    match i32::try_from(v) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Int64(v),
    }
}

/// `SELECT * FROM table` mapped as the documented mapping does for integer and character columns:
/// `_id` = `id`, then one field per column.
pub async fn source_docs(conn: &mut mysql_async::Conn, table: &str) -> Docs {
    let rows: Vec<mysql_async::Row> = conn.query(format!("SELECT * FROM `{table}`")).await.unwrap();
    let mut out = Docs::new();
    for row in rows {
        let mut fields = BTreeMap::new();
        for (i, column) in row.columns_ref().iter().enumerate() {
            let value = match row.as_ref(i).unwrap() {
                mysql_async::Value::NULL => Bson::Null,
                mysql_async::Value::Bytes(b) => {
                    let text = String::from_utf8(b.clone()).unwrap();
                    match column.column_type() {
                        ColumnType::MYSQL_TYPE_TINY
                        | ColumnType::MYSQL_TYPE_SHORT
                        | ColumnType::MYSQL_TYPE_INT24
                        | ColumnType::MYSQL_TYPE_LONG
                        | ColumnType::MYSQL_TYPE_LONGLONG => int_bson(text.parse().unwrap()),
                        ColumnType::MYSQL_TYPE_VAR_STRING
                        | ColumnType::MYSQL_TYPE_STRING
                        | ColumnType::MYSQL_TYPE_VARCHAR => Bson::String(text),
                        other => panic!("source_docs handles integer and character columns only, not {other:?}"),
                    }
                }
                other => panic!("unexpected text-protocol value {other:?}"),
            };
            fields.insert(column.name_str().to_string(), value);
        }
        let id = match &fields["id"] {
            Bson::Int32(v) => *v as i64,
            Bson::Int64(v) => *v,
            other => panic!("id {other:?}"),
        };
        fields.insert("_id".into(), int_bson(id));
        assert!(out.insert(id, fields).is_none());
    }
    out
}

/// Every document of a collection, read with one `find`, by integer `_id`.
pub async fn sink_docs(collection: &mongodb::Collection<Document>) -> Docs {
    let docs: Vec<Document> = collection.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let mut out = Docs::new();
    for d in docs {
        let id = match d.get("_id") {
            Some(Bson::Int32(v)) => *v as i64,
            Some(Bson::Int64(v)) => *v,
            other => panic!("unexpected _id {other:?} in {d:?}"),
        };
        let fields: BTreeMap<String, Bson> = d.into_iter().collect();
        assert!(out.insert(id, fields).is_none(), "two documents with _id {id}");
    }
    out
}

/// `None` when equal, else a description of (up to 10 of) the differences.
pub fn diff(expected: &Docs, actual: &Docs) -> Option<String> {
    let mut out = Vec::new();
    let mut n = 0;
    for (id, e) in expected {
        match actual.get(id) {
            None => {
                n += 1;
                if out.len() < 10 {
                    out.push(format!("missing in sink: {id} {e:?}"));
                }
            }
            Some(a) if a != e => {
                n += 1;
                if out.len() < 10 {
                    out.push(format!("differs: {id}\n  source {e:?}\n  sink   {a:?}"));
                }
            }
            _ => {}
        }
    }
    for (id, a) in actual {
        if !expected.contains_key(id) {
            n += 1;
            if out.len() < 10 {
                out.push(format!("extra in sink: {id} {a:?}"));
            }
        }
    }
    (n > 0).then(|| {
        format!("{n} difference(s) (source {} rows, sink {} docs):\n{}", expected.len(), actual.len(), out.join("\n"))
    })
}

/// Polls `check` every 100 ms until it yields a value; panics after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running `polyrepl` process; its stdout and stderr go to a log file read by [`Polyrepl::log`].
/// Killed (SIGKILL) when dropped.
pub struct Polyrepl {
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Polyrepl {
    pub fn spawn(args: &[String]) -> Polyrepl {
        let log = std::env::temp_dir().join(format!("{}.log", unique("polyrepl")));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_polyrepl"))
            .args(args)
            .env("POLYREPL_LOG", "info,scylla=off,mongodb=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("start polyrepl");
        Polyrepl { child, log, status: None }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().unwrap();
        }
        self.status
    }

    /// Panics (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(s) = self.exited() {
            panic!("polyrepl exited unexpectedly ({s}):\n{}", self.log());
        }
    }

    /// SIGKILL: no chance to flush or checkpoint anything.
    pub fn sigkill(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            self.status = Some(self.child.wait().unwrap());
        }
    }

    /// SIGTERM: the clean stop.
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -TERM {}", self.pid());
    }

    /// Waits for the exit; panics (and kills it) after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.exited() {
                return s;
            }
            if Instant::now() > deadline {
                self.sigkill();
                panic!("polyrepl did not exit within {timeout:?}:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Polyrepl {
    fn drop(&mut self) {
        self.sigkill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        } else {
            eprintln!("polyrepl log kept at {}", self.log.display());
        }
    }
}

/// Runs `polyrepl` with `args` to its end; returns (exit status, everything it printed).
pub async fn run_to_end(args: &[String], timeout: Duration) -> (ExitStatus, String) {
    let mut p = Polyrepl::spawn(args);
    let status = p.wait_exit(timeout).await;
    (status, p.log())
}

/// A free local TCP port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP/1.0 GET: (status code, body), or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// A small deterministic-per-seed pseudo-random generator (xorshift64*), so a failing run can be
/// repeated from the seed it prints.
pub struct Rng(u64);

impl Rng {
    pub fn from_entropy() -> (Rng, u64) {
        let seed = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        (Rng(seed), seed)
    }

    pub fn seeded(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

// ---- Comparing a source table with a sink through the sink's own read-back --------------------------

/// The table's schema as polyrepl discovers it.
pub async fn source_schema(db: &TestDb, table: &str) -> polyrepl_core::TableSchema {
    let mut conn = db.conn().await;
    let schema = polyrepl_mysql::schema::discover_table(
        &mut conn,
        &polyrepl_core::TableId::new(&db.name, table),
        "127.0.0.1:5600",
    )
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("table {table} not found"));
    conn.disconnect().await.unwrap();
    schema
}

/// Every source row of `schema`'s table, decoded like the snapshot decodes them, by integer key.
pub async fn source_rows_by_id(db: &TestDb, schema: &polyrepl_core::TableSchema) -> BTreeMap<i64, polyrepl_core::Row> {
    use polyrepl_core::{Row, Value};
    let mut conn = db.conn().await;
    let rows: Vec<mysql_async::Row> = conn.exec(format!("SELECT * FROM `{}`", schema.id.table), ()).await.unwrap();
    conn.disconnect().await.unwrap();
    let pk = schema.primary_key[0];
    rows.into_iter()
        .map(|row| {
            let values: Row = row
                .unwrap()
                .into_iter()
                .zip(&schema.columns)
                .map(|(v, c)| polyrepl_mysql::decode::from_protocol(c, v).unwrap_or_else(|e| panic!("{}: {e}", c.name)))
                .collect();
            let Value::Int(id) = values[pk] else { panic!("integer key expected, got {:?}", values[pk]) };
            (id, values)
        })
        .collect()
}

/// The differences between the source rows and one sink, read back with the sink's own
/// `Sink::read_rows` for every source key and every key the sink holds (`keys`); `None` when equal.
pub async fn sink_differences(
    reader: &mut dyn polyrepl_core::Sink,
    name: &str,
    keys: Option<std::collections::BTreeSet<i64>>,
    expected: &BTreeMap<i64, polyrepl_core::Row>,
    schema: &polyrepl_core::TableSchema,
) -> Option<String> {
    use polyrepl_core::Value;
    let Some(keys) = keys else { return Some(format!("{name}: cannot list its keys")) };
    let ids: Vec<i64> =
        expected.keys().copied().collect::<std::collections::BTreeSet<_>>().union(&keys).copied().collect();
    let key_values: Vec<Vec<Value>> = ids.iter().map(|&id| vec![Value::Int(id)]).collect();
    let rows = match reader.read_rows(schema, &key_values).await {
        Ok(rows) => rows,
        Err(e) => return Some(format!("{name}: read_rows failed: {e}")),
    };
    let mut diffs = Vec::new();
    for (id, got) in ids.iter().zip(rows) {
        let want = expected.get(id);
        if want != got.as_ref() {
            diffs.push(format!("  {id}: source {want:?}\n      sink   {got:?}"));
        }
    }
    if diffs.is_empty() {
        return None;
    }
    let n = diffs.len();
    diffs.truncate(5);
    Some(format!(
        "{name}: {n} row(s) differ (source {} rows, sink {} keys):\n{}",
        expected.len(),
        keys.len(),
        diffs.join("\n")
    ))
}

/// Reads every key of `expected` back from each of the three sinks ([`SINKS`]) with the sink's own
/// `read_rows`, and panics with the differences of the first sink that does not hold exactly those rows.
pub async fn assert_every_sink_holds(
    expected: &BTreeMap<i64, polyrepl_core::Row>,
    schema: &polyrepl_core::TableSchema,
) {
    let keys: std::collections::BTreeSet<i64> = expected.keys().copied().collect();
    for url in SINKS {
        let mut reader = polyrepl_engine::open_sink(url, "test-reader").await.unwrap_or_else(|e| panic!("{url}: {e}"));
        if let Some(d) = sink_differences(reader.as_mut(), url, Some(keys.clone()), expected, schema).await {
            panic!("{d}");
        }
    }
}

/// One step of a steady writer on a `flow (id, v, n)` table: an insert, an update or (sometimes) a delete.
pub fn flow_writer_step(rng: &mut Rng, next_id: &mut u64, op: u64) -> String {
    match rng.below(10) {
        0..=3 => {
            *next_id += 1;
            format!("INSERT INTO flow VALUES ({next_id}, 'ins-{op}', {op})")
        }
        4..=8 => format!("UPDATE flow SET v = 'upd-{op}', n = n + 1 WHERE id = {}", 1 + rng.below(*next_id)),
        _ => format!("DELETE FROM flow WHERE id = {}", 1 + rng.below(*next_id)),
    }
}

// ---- A MariaDB of a test's own (for outages and server settings the shared one must keep) ------------

/// A MariaDB of this test's own, on a free port with a temporary state directory; purged on drop.
pub struct OwnMariaDb {
    pub port: u16,
    state: tempfile::TempDir,
}

impl OwnMariaDb {
    fn stack(state: &std::path::Path, port: u16, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_polyrepl"))
            .args(["stack"])
            .args(args)
            .args(["--backend", "local", "--service", "mysql", "--mysql-port", &port.to_string(), "--state-dir"])
            .arg(state)
            .output()
            .expect("run polyrepl stack")
    }

    pub fn run(&self, args: &[&str]) {
        let out = Self::stack(self.state.path(), self.port, args);
        assert!(
            out.status.success(),
            "polyrepl stack {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up() -> OwnMariaDb {
        let db = OwnMariaDb { port: free_port(), state: tempfile::tempdir().unwrap() };
        db.run(&["up"]);
        db
    }

    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (a crash: nothing flushed) and waits until it is gone.
    pub fn kill_9(&self) {
        let pid_file = self.state.path().join("mysql").join("server.pid");
        let pid = std::fs::read_to_string(&pid_file).unwrap_or_else(|e| panic!("{}: {e}", pid_file.display()));
        let pid = pid.lines().next().unwrap_or_default().trim().to_string();
        assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success(), "kill -KILL {pid}");
        let gone = std::path::Path::new("/proc").join(&pid);
        let start = Instant::now();
        while gone.exists() && start.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnMariaDb {
    fn drop(&mut self) {
        let _ = Self::stack(self.state.path(), self.port, &["down", "--purge"]);
    }
}

/// Drops database `db` in the three sinks, and the checkpoints of the pipeline of the same name, also
/// after a failure (for tests whose source is a MariaDB of their own, so no [`TestDb`] cleans up).
pub struct SinkCleanup {
    pub db: String,
}

impl Drop for SinkCleanup {
    fn drop(&mut self) {
        drop_redis_and_cassandra_data(REDIS, &self.db, std::slice::from_ref(&self.db), true);
        drop_mongo_data(&self.db, &self.db);
    }
}

/// Drops the MongoDB database `db` and the checkpoint of `pipeline`; for `Drop`s, so it runs on its own
/// thread and runtime and ignores every error.
pub fn drop_mongo_data(db: &str, pipeline: &str) {
    let (db, pipeline) = (db.to_string(), pipeline.to_string());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            if let Ok(client) = mongodb::Client::with_uri_str(MONGO).await {
                let _ = client.database(&db).drop().await;
                let _ = client
                    .database("polyrepl")
                    .collection::<Document>("_polyrepl_checkpoints")
                    .delete_one(doc! { "_id": pipeline })
                    .await;
            }
        })
    })
    .join();
}

// ---- Cleaning up what a test left in Redis and Cassandra -------------------------------------------

/// Deletes the Redis keys `DB:*` (at `redis_url`), the Cassandra keyspace `DB` (at 127.0.0.1:9042, when
/// `cassandra`) and the checkpoints of `pipelines` in both; for `Drop`s, so it runs on its own thread
/// and runtime and ignores every error (a server may be gone).
pub fn drop_redis_and_cassandra_data(redis_url: &str, db: &str, pipelines: &[String], cassandra: bool) {
    let (redis_url, db, pipelines) = (redis_url.to_string(), db.to_string(), pipelines.to_vec());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let clean_redis = async {
                let client = redis::Client::open(redis_url.as_str()).ok()?;
                let mut conn = tokio::time::timeout(Duration::from_secs(2), client.get_multiplexed_async_connection())
                    .await
                    .ok()?
                    .ok()?;
                let mut cursor = 0u64;
                loop {
                    let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{db}:*"))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn)
                        .await
                        .ok()?;
                    if !keys.is_empty() {
                        let _: Result<(), _> = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await;
                    }
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                for p in &pipelines {
                    let _: Result<(), _> =
                        redis::cmd("DEL").arg(format!("polyrepl:checkpoint:{p}")).query_async(&mut conn).await;
                }
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(20), clean_redis).await;
            if !cassandra {
                return;
            }
            let clean_cassandra = async {
                let session = scylla::client::session_builder::SessionBuilder::new()
                    .known_node("127.0.0.1:9042")
                    .build()
                    .await
                    .ok()?;
                let _ = session.query_unpaged(format!("DROP KEYSPACE IF EXISTS \"{db}\""), &[]).await;
                for p in &pipelines {
                    let _ = session
                        .query_unpaged("DELETE FROM polyrepl.polyrepl_checkpoints WHERE pipeline = ?", (p.as_str(),))
                        .await;
                }
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(60), clean_cassandra).await;
        })
    })
    .join();
}

// ---- Looking into Redis and Cassandra directly ------------------------------------------------------

/// Keys matching `pattern` in the Redis at `redis_url` (KEYS: for small test databases only).
pub async fn redis_keys(redis_url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url).unwrap();
    let mut conn =
        client.get_multiplexed_async_connection().await.unwrap_or_else(|e| panic!("Redis at {redis_url}: {e}"));
    redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap()
}

/// The integer keys of the hashes `PREFIX<id>` (polyrepl's `DB:TABLE:` prefix), listed with SCAN;
/// `None` when Redis cannot be read. Panics on a key that is not `PREFIX<integer>`.
pub async fn redis_int_keys(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> Option<std::collections::BTreeSet<i64>> {
    let mut keys = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .ok()?;
        for k in batch {
            keys.insert(
                k.strip_prefix(prefix).unwrap().parse::<i64>().unwrap_or_else(|_| panic!("unexpected Redis key {k}")),
            );
        }
        if next == 0 {
            return Some(keys);
        }
        cursor = next;
    }
}

/// True when the Cassandra at 127.0.0.1:9042 has a keyspace of that name.
pub async fn cassandra_has_keyspace(name: &str) -> bool {
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node("127.0.0.1:9042")
        .build()
        .await
        .expect("Cassandra at 127.0.0.1:9042");
    let rows = session
        .query_unpaged(
            "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (name.to_lowercase(),),
        )
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    rows.rows_num() > 0
}

// ---- A redis-server of a test's own (for outages the shared one must not have) ------------------------

/// A `redis-server` of our own, with its append-only file (fsync'ed on every write) in a temporary
/// directory so that a restart keeps the data. Killed when dropped.
pub struct OwnRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
}

impl OwnRedis {
    pub async fn start() -> OwnRedis {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("redis.log");
        let mut r = OwnRedis { port: free_port(), dir, child: None, log };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered — a sink that hangs.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().expect("kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// Starts the server (again) on the same port and directory; waits until it answers PING.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&self.log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian's package redis-server)");
        self.child = Some(child);
        let url = self.url();
        wait_for(&format!("redis-server on port {} to answer PING", self.port), Duration::from_secs(20), || {
            let url = url.clone();
            async move {
                let client = redis::Client::open(url).ok()?;
                let mut conn = tokio::time::timeout(Duration::from_secs(1), client.get_multiplexed_async_connection())
                    .await
                    .ok()?
                    .ok()?;
                let pong: String = redis::cmd("PING").query_async(&mut conn).await.ok()?;
                (pong == "PONG").then_some(())
            }
        })
        .await;
    }

    /// SIGKILL: the outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `text` written as `polyrepl.toml` in a temporary directory: (the directory, kept alive by the caller;
/// the file's path).
pub fn config_file(text: impl AsRef<str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("polyrepl.toml");
    std::fs::write(&file, text.as_ref()).unwrap();
    (dir, file)
}
