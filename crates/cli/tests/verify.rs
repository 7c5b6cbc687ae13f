//! End-to-end `polyrepl verify [--repair]` (the real binary) against MariaDB and all three sinks.
//!
//! 1. After `polyrepl run --stop-at-end`, `verify --json` exits 0 with exact counts (several types, a
//!    composite key with `:` in it). Each sink is then tampered with its own client (a row deleted, a
//!    column changed, an extra row added): `verify` exits 1 naming exactly those keys and columns;
//!    `--repair` exits 0, and a plain `verify` after it exits 0.
//! 2. Live: `polyrepl run` follows the binlog while a writer keeps inserting, updating and deleting;
//!    `verify` during the writes exits 0 (no false differences).
//! 3. An unreachable sink: exit 2 with a clear message.
//!
//! Each test creates its own random source database; the same-named MongoDB database, Redis keys `DB:*`,
//! Cassandra keyspace `DB` and the pipelines' checkpoints (also `<name>-repair`) are dropped at the end.

mod common;

use common::*;
use mongodb::bson::{doc, Document};
use scylla::client::session::Session;
use serde_json::{json, Value as Json};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A test database replicated into all three sinks; drops what it created in Redis and Cassandra (the
/// TestDb drops the source and Mongo databases).
struct Setup {
    db: TestDb,
    cql: Session,
    pipeline: String,
}

impl Setup {
    async fn create(tag: &str) -> Setup {
        let db = TestDb::create(tag).await;
        let pipeline = db.pipeline(tag);
        let cql = scylla::client::session_builder::SessionBuilder::new()
            .known_node("127.0.0.1:9042")
            .build()
            .await
            .expect("connect to Cassandra at 127.0.0.1:9042");
        Setup { db, cql, pipeline }
    }

    fn name(&self) -> &str {
        &self.db.name
    }

    /// `--source … --tables DB.* --sink (all three) --name PIPELINE`, after `command`.
    fn args(&self, command: &str, extra: &[&str]) -> Vec<String> {
        let tables = format!("{}.*", self.name());
        polyrepl_args(command, MYSQL, &tables, &SINKS, Some(&self.pipeline), extra)
    }

    /// Runs `polyrepl verify` with `extra` flags; returns (exit code, stdout, stderr).
    async fn verify(&self, extra: &[&str]) -> (i32, String, String) {
        run_polyrepl(&self.args("verify", extra)).await
    }

    /// `verify --json …` parsed; panics with its output unless the exit code is `code`.
    async fn verify_json(&self, extra: &[&str], code: i32) -> Json {
        let mut args = vec!["--json"];
        args.extend_from_slice(extra);
        let (rc, out, err) = self.verify(&args).await;
        assert_eq!(rc, code, "verify {extra:?} exit code\nstdout:\n{out}\nstderr:\n{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}):\n{out}\n{err}"))
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let (name, pipeline) = (self.name().to_string(), self.pipeline.clone());
        drop_redis_and_cassandra_data(REDIS, &name, &[pipeline.clone(), format!("{pipeline}-repair")], true);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(client) = mongodb::Client::with_uri_str(MONGO).await {
                    let checkpoints = client.database("polyrepl").collection::<Document>("_polyrepl_checkpoints");
                    let _ = checkpoints.delete_one(doc! { "_id": format!("{pipeline}-repair") }).await;
                }
            })
        })
        .join();
    }
}

/// Runs the binary to its end (at most 90 s); returns (exit code, stdout, stderr).
async fn run_polyrepl(args: &[String]) -> (i32, String, String) {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_polyrepl"))
        .args(args)
        .env("POLYREPL_LOG", "warn,polyrepl=info,scylla=off,mongodb=warn")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), child)
        .await
        .expect("polyrepl finished within 90 s")
        .expect("run polyrepl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report of `table` in the sink whose name starts with `sink`.
fn pair<'a>(report: &'a Json, table: &str, sink: &str) -> &'a Json {
    report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            p["table"].as_str().unwrap().ends_with(&format!(".{table}"))
                && p["sink"].as_str().unwrap().starts_with(sink)
        })
        .unwrap_or_else(|| panic!("no pair {table} × {sink} in {report:#}"))
}

/// (compared, missing keys, extra keys, different rows) of one pair.
fn summary(report: &Json, table: &str, sink: &str) -> (u64, Json, Json, Json) {
    let p = pair(report, table, sink);
    (p["compared"].as_u64().unwrap(), p["missing_keys"].clone(), p["extra_keys"].clone(), p["different_rows"].clone())
}

#[tokio::test]
async fn verify_finds_tampering_in_every_sink_and_repairs_it() {
    let s = Setup::create("vfy").await;
    s.db.exec(
        "CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(40), price DECIMAL(10,2), at DATETIME(6), doc JSON, \
         tags SET('a','b','c'), raw VARBINARY(16), big BIGINT UNSIGNED, f DOUBLE); \
         CREATE TABLE c (region VARCHAR(10), id INT, note TEXT, PRIMARY KEY (region, id))",
    )
    .await;
    let rows: Vec<String> = (1..=40)
        .map(|i| {
            if i % 7 == 0 {
                format!("({i}, NULL, NULL, NULL, NULL, '', NULL, NULL, NULL)")
            } else {
                format!(
                    "({i}, 'name {i} 🙂', {i}.25, '2025-01-{:02} 10:11:12.{:06}', '{{\"k\": [{i}, \"x\"]}}', 'a,c', 0x00ff{i:02x}, {}, {i}.5)",
                    1 + i % 28,
                    i * 1001,
                    u64::MAX - i
                )
            }
        })
        .collect();
    s.db.exec(&format!("INSERT INTO t VALUES {}", rows.join(", "))).await;
    let crows: Vec<String> = ["eu", "us", "e:u"]
        .iter()
        .flat_map(|r| (1..=4).map(move |i| format!("('{r}', {i}, 'note {r} {i}')")))
        .collect();
    s.db.exec(&format!("INSERT INTO c VALUES {}", crows.join(", "))).await;
    let (code, out, err) = run_polyrepl(&s.args("run", &["--stop-at-end"])).await;
    assert_eq!(code, 0, "run --stop-at-end:\n{out}\n{err}");

    // 1. Consistent, with exact counts.
    let started = Instant::now();
    let report = s.verify_json(&["--recheck-timeout", "2"], 0).await;
    eprintln!("verify of 52 rows × 3 sinks: {:?}", started.elapsed());
    assert_eq!((report["consistent"].clone(), report["differences"].clone()), (json!(true), json!(0)));
    assert_eq!(report["pairs"].as_array().unwrap().len(), 6);
    for sink in ["mongodb", "redis", "cassandra"] {
        assert_eq!(summary(&report, "t", sink), (40, json!([]), json!([]), json!([])), "{sink}");
        assert_eq!(summary(&report, "c", sink), (12, json!([]), json!([]), json!([])), "{sink}");
    }

    // 2. Tamper with each sink through its own client.
    let name = s.name().to_string();
    let mongo_t = s.db.collection("t");
    mongo_t.delete_one(doc! { "_id": 3 }).await.unwrap();
    mongo_t.update_one(doc! { "_id": 4 }, doc! { "$set": { "name": "tampered" } }).await.unwrap();
    mongo_t.insert_one(doc! { "_id": 1000, "id": 1000, "name": "ghost" }).await.unwrap();

    let redis = redis::Client::open(REDIS).unwrap();
    let mut r = redis.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("DEL").arg(format!("{name}:c:e\\:u:1")).query_async(&mut r).await.unwrap();
    let _: () =
        redis::cmd("HSET").arg(format!("{name}:t:5")).arg("price").arg("9.99").query_async(&mut r).await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{name}:c:zz:9"))
        .arg("region")
        .arg("zz")
        .arg("id")
        .arg("9")
        .query_async(&mut r)
        .await
        .unwrap();

    // Cassandra keeps the write with the highest timestamp: tamper just above the replicated write's
    // timestamp (as a stray write between the pipeline's writes would be), below any later position.
    let ks = format!("\"{name}\"");
    let (wt,): (i64,) = s
        .cql
        .query_unpaged(format!("SELECT WRITETIME(\"name\") FROM {ks}.\"t\" WHERE \"id\" = 6"), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap()
        .single_row::<(i64,)>()
        .unwrap();
    let tamper = wt + 1;
    for cql in [
        format!("DELETE FROM {ks}.\"t\" USING TIMESTAMP {tamper} WHERE \"id\" = 6"),
        format!("UPDATE {ks}.\"c\" USING TIMESTAMP {tamper} SET \"note\" = 'tampered' WHERE \"region\" = 'us' AND \"id\" = 2"),
        format!("INSERT INTO {ks}.\"t\" (\"id\", \"name\") VALUES (1001, 'ghost') USING TIMESTAMP {tamper}"),
    ] {
        s.cql.query_unpaged(cql.clone(), &[]).await.unwrap_or_else(|e| panic!("{cql}: {e}"));
    }
    // Move the source's binlog on (in another database), so the repair's position is past the tampering.
    let side = TestDb::create("vfyside").await;
    side.exec("CREATE TABLE x (id INT PRIMARY KEY); INSERT INTO x VALUES (1)").await;

    // 3. Exactly those keys and columns, and nothing else.
    let report = s.verify_json(&["--recheck-timeout", "2"], 1).await;
    assert_eq!(report["differences"], json!(9), "{report:#}");
    assert_eq!(
        summary(&report, "t", "mongodb"),
        (40, json!([[3]]), json!([[1000]]), json!([{ "key": [4], "columns": ["name"] }]))
    );
    assert_eq!(summary(&report, "c", "mongodb"), (12, json!([]), json!([]), json!([])));
    assert_eq!(
        summary(&report, "t", "redis"),
        (40, json!([]), json!([]), json!([{ "key": [5], "columns": ["price"] }]))
    );
    assert_eq!(summary(&report, "c", "redis"), (12, json!([["e:u", 1]]), json!([["zz", 9]]), json!([])));
    assert_eq!(summary(&report, "t", "cassandra"), (40, json!([[6]]), json!([[1001]]), json!([])));
    assert_eq!(
        summary(&report, "c", "cassandra"),
        (12, json!([]), json!([]), json!([{ "key": ["us", 2], "columns": ["note"] }]))
    );
    let (code, human, _) = s.verify(&["--recheck-timeout", "2", "--show-keys", "1"]).await;
    assert_eq!(code, 1);
    assert!(human.contains("verify: 9 differences in 5 table/sink pairs"), "{human}");
    assert!(human.contains("  different: (us, 2) [note]"), "{human}");

    // 4. Repair, then a plain verify.
    let report = s.verify_json(&["--recheck-timeout", "2", "--repair"], 0).await;
    assert_eq!(report["consistent"], json!(true), "{report:#}");
    let repaired = &pair(&report, "t", "mongodb")["repaired"];
    assert_eq!(
        (repaired["upserted"].clone(), repaired["deleted"].clone(), repaired["remaining"].clone()),
        (json!(2), json!(1), json!(0))
    );
    let repaired = &pair(&report, "c", "redis")["repaired"];
    assert_eq!((repaired["upserted"].clone(), repaired["deleted"].clone()), (json!(1), json!(1)));
    let report = s.verify_json(&["--recheck-timeout", "2"], 0).await;
    assert_eq!(report["differences"], json!(0));
    // The repair stored its checkpoint under its own name; the pipeline's own is untouched.
    let own = s.db.checkpoint(&s.pipeline).await.expect("the pipeline's checkpoint");
    let repair = s.db.checkpoint(&format!("{}-repair", s.pipeline)).await.expect("the repair's checkpoint");
    assert_ne!(own, repair);
    drop(side);
}

#[tokio::test]
async fn verify_during_live_writes_reports_no_false_differences() {
    let s = Setup::create("vfylive").await;
    s.db.exec("CREATE TABLE flow (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL)").await;
    let rows: Vec<String> = (1..=150).map(|i| format!("({i}, 'init', 0)")).collect();
    s.db.exec(&format!("INSERT INTO flow VALUES {}", rows.join(", "))).await;
    let mut run = Polyrepl::spawn(&s.args("run", &[]));
    let pipeline = s.pipeline.clone();
    wait_for("the snapshot to complete", Duration::from_secs(60), || {
        let db = &s.db;
        let pipeline = pipeline.clone();
        async move { db.checkpoint(&pipeline).await.filter(snapshot_complete) }
    })
    .await;

    // A writer: ~150 changes/s on 150+ rows until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, ops) = (stop.clone(), ops.clone());
        let mut conn = s.db.conn().await;
        tokio::spawn(async move {
            use mysql_async::prelude::*;
            let (mut rng, seed) = Rng::from_entropy();
            eprintln!("writer seed {seed}");
            let mut next_id = 150u64;
            while !stop.load(Ordering::Relaxed) {
                let op = ops.fetch_add(1, Ordering::Relaxed);
                conn.query_drop(flow_writer_step(&mut rng, &mut next_id, op)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            conn.disconnect().await.unwrap();
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = ops.load(Ordering::Relaxed);
    let (code, out, err) = s.verify(&["--recheck-timeout", "20", "--chunk-rows", "40"]).await;
    let during = ops.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    run.assert_running();
    assert_eq!(code, 0, "verify during {during} writes:\nstdout:\n{out}\nstderr:\n{err}\nrun log:\n{}", run.log());
    assert!(during > 20, "the writer kept writing during verify ({during} changes)");
    assert!(out.contains("verify: consistent"), "{out}");
    eprintln!("verify during {during} writes:\n{out}{err}");
    run.sigterm();
    run.wait_exit(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn an_unreachable_sink_is_an_error_with_exit_code_2() {
    let db = TestDb::create("vfydown").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY)").await;
    let port = free_port();
    let tables = format!("{}.*", db.name);
    let sink = format!("redis://user:s3cret@127.0.0.1:{port}");
    let args: Vec<String> =
        ["verify", "--source", MYSQL, "--tables", &tables, "--sink", &sink].iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    let (code, out, err) = run_polyrepl(&args).await;
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "fails fast, took {:?}", started.elapsed());
    assert!(err.contains("error: cannot reach the sink") && err.contains(&port.to_string()), "{err}");
    assert!(!err.contains("s3cret") && !out.contains("s3cret"), "the password must never be printed:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// MySQL's whole TIME range (negative, beyond a day) reaches every sink, from the snapshot and from the
/// binlog, and verify finds every sink equal. Cassandra's CQL `time` holds one day only: a TIME of
/// -440:39:45 used to stop all three sinks at the snapshot.
#[tokio::test]
async fn times_beyond_a_day_reach_every_sink() {
    let s = Setup::create("vtime").await;
    s.db.exec(
        "CREATE TABLE tm (id INT PRIMARY KEY, t TIME, t6 TIME(6)); \
         INSERT INTO tm VALUES (1, '-440:39:45', '838:59:59.999999'), (2, '838:59:59', '-838:59:59.999999'), \
         (3, '12:00:00', '-00:00:00.5')",
    )
    .await;
    let (code, _, err) = run_polyrepl(&s.args("run", &["--stop-at-end"])).await;
    assert_eq!(code, 0, "the snapshot of out-of-day TIMEs:\n{err}");
    s.db.exec("INSERT INTO tm VALUES (4, '-1:00:00', '100:00:00.25'); UPDATE tm SET t = '-838:59:59' WHERE id = 3")
        .await;
    let (code, _, err) = run_polyrepl(&s.args("run", &["--stop-at-end"])).await;
    assert_eq!(code, 0, "streaming out-of-day TIMEs:\n{err}");
    let (code, out, err) = s.verify(&[]).await;
    assert_eq!(code, 0, "every sink equals the source:\n{out}\n{err}");
    let compared = out.lines().filter(|l| l.contains(".tm → ") && l.contains(": 4 compared, 0 missing")).count();
    assert_eq!(compared, 3, "4 rows of tm compared in each of the 3 sinks:\n{out}");
}
