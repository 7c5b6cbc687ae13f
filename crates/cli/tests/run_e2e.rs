//! End-to-end tests of `polyrepl run` (the real binary) from MariaDB into the MongoDB-wire sink:
//! snapshot then streaming of a 100 000-row table, every kind of row change, restarts after `kill -9`
//! mid-snapshot and mid-stream, and the metrics/status endpoints with a clean SIGTERM stop.
//!
//! Each test creates its own randomly named database (dropped at the end) and pipeline name, and waits
//! on conditions (checkpoint contents, both sides read back in full) with timeouts, never on sleeps.

mod common;

use common::*;
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until `pipeline`'s checkpoint says its snapshot is complete; returns that checkpoint.
async fn wait_snapshot_complete(db: &TestDb, p: &mut Polyrepl, pipeline: &str, timeout: Duration) -> serde_json::Value {
    wait_for("the snapshot to complete (checkpoint without snapshot progress)", timeout, || {
        p.assert_running();
        async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
    })
    .await
}

/// Waits until the checkpoint includes the GTID `(domain, seq)`: everything up to it is applied.
async fn wait_applied(db: &TestDb, p: &mut Polyrepl, pipeline: &str, (domain, seq): (u64, u64), timeout: Duration) {
    wait_for(&format!("the sink checkpoint to reach GTID {domain}-*-{seq}"), timeout, || {
        p.assert_running();
        async move {
            let cp = db.checkpoint(pipeline).await?;
            (snapshot_complete(&cp) && checkpoint_gtid_seq(&cp, domain)? >= seq).then_some(())
        }
    })
    .await
}

/// 1. A 100 000-row table existing before the start is snapshotted, then updates, deletes and inserts
///    made after the snapshot are streamed; both times the sink equals the source exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_100k_rows_then_streaming_matches_the_source() {
    const ROWS: u64 = 100_000;
    let db = TestDb::create("big").await;
    db.exec("CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(64) NOT NULL, n BIGINT NULL)").await;
    db.exec(&format!("INSERT INTO big SELECT seq, CONCAT('row-', seq), seq * 3 FROM seq_1_to_{ROWS}")).await;
    let pipeline = db.pipeline("big");

    let started = Instant::now();
    let mut p = Polyrepl::spawn(&db.run_args(&pipeline, &[]));
    wait_snapshot_complete(&db, &mut p, &pipeline, Duration::from_secs(120)).await;
    let snapshot_secs = started.elapsed().as_secs_f64();
    let own_rate = p.log().lines().rev().find(|l| l.contains("snapshot ") && l.contains(" rows/s")).map(str::to_string);
    eprintln!(
        "FIGURE snapshot: {ROWS} rows applied in {snapshot_secs:.2} s from process start = {:.0} rows/s end to end (polyrepl's own line: {})",
        ROWS as f64 / snapshot_secs,
        own_rate.as_deref().map(str::trim).unwrap_or("-")
    );
    let expected = db.source_docs("big").await;
    assert_eq!(expected.len() as u64, ROWS);
    let actual = db.sink_docs("big").await;
    assert_eq!(actual.len() as u64, ROWS, "document count after the snapshot");
    if let Some(d) = diff(&expected, &actual) {
        panic!("after the snapshot: {d}");
    }

    // Streaming, in three measured phases (each waits until the checkpoint holds its last transaction):
    // inserts, multi-row updates and deletes, many single-row transactions.
    let mut conn = db.conn().await;
    let phases: [(&str, Vec<String>); 3] = [
        (
            "multi-row INSERT of 5000 new rows",
            vec![format!(
                "INSERT INTO big SELECT seq, CONCAT('new-', seq), NULL FROM seq_{}_to_{}",
                ROWS + 1,
                ROWS + 5000
            )],
        ),
        (
            "multi-row UPDATE of 2000 rows + DELETE of 1000 rows",
            vec![
                "UPDATE big SET v = CONCAT('upd-', id), n = n + 1 WHERE id % 50 = 0".into(),
                "DELETE FROM big WHERE id % 50 = 1 AND id <= 50000".into(),
            ],
        ),
        (
            "150 single-row UPDATE/DELETE/INSERT transactions",
            (0..150u64)
                .map(|i| match i % 3 {
                    0 => format!("UPDATE big SET v = 'single-{i}', n = NULL WHERE id = {}", 2 + i * 7),
                    1 => format!("DELETE FROM big WHERE id = {}", 3 + i * 7),
                    _ => format!("INSERT INTO big VALUES ({}, 'single-{i}', {i})", 200_000 + i),
                })
                .collect(),
        ),
    ];
    for (what, statements) in phases {
        let t0 = Instant::now();
        let mut changes = 0u64;
        for sql in &statements {
            conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            changes += conn.affected_rows();
        }
        let last = last_gtid(&mut conn).await;
        let written = t0.elapsed().as_secs_f64();
        wait_applied(&db, &mut p, &pipeline, last, Duration::from_secs(90)).await;
        let applied = t0.elapsed().as_secs_f64();
        eprintln!(
            "FIGURE streaming, {what}: {changes} row changes written in {written:.2} s, applied {applied:.2} s after the first = {:.0} changes/s",
            changes as f64 / applied
        );
    }
    conn.disconnect().await.unwrap();

    let expected = db.source_docs("big").await;
    let actual = db.sink_docs("big").await;
    assert_eq!(actual.len(), expected.len(), "document count after streaming");
    if let Some(d) = diff(&expected, &actual) {
        panic!("after streaming: {d}");
    }
    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM should stop cleanly, got {status}:\n{}", p.log());
}

/// 3. Updates, deletes, multi-row statements, a multi-statement transaction, a ROLLBACK that leaves no
///    trace, primary-key-changing updates (also overlapping ones in one statement), and ALTER TABLE ADD
///    COLUMN mid-stream, whose new column appears in the documents written after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_is_streamed() {
    let db = TestDb::create("ops").await;
    db.exec("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40), qty INT NOT NULL DEFAULT 0)").await;
    db.exec("INSERT INTO items SELECT seq, CONCAT('item-', seq), seq FROM seq_1_to_20").await;
    let pipeline = db.pipeline("ops");
    let mut p = Polyrepl::spawn(&db.run_args(&pipeline, &[]));
    wait_snapshot_complete(&db, &mut p, &pipeline, Duration::from_secs(60)).await;
    db.wait_in_sync("items", Duration::from_secs(20)).await;

    let mut conn = db.conn().await;
    for sql in [
        // multi-row insert, update and delete statements
        "INSERT INTO items VALUES (21, 'a', 1), (22, 'b', 2), (23, NULL, 3), (24, '', 4)",
        "UPDATE items SET qty = qty * 10, name = CONCAT(name, '!') WHERE id BETWEEN 3 AND 8",
        "DELETE FROM items WHERE id IN (9, 10, 11)",
        "UPDATE items SET name = NULL WHERE id = 12",
        "UPDATE items SET name = 'same' WHERE id = 13",
        "UPDATE items SET name = 'same' WHERE id = 13", // no-op update: no row event
        // a transaction of several statements, touching one key several times
        "BEGIN; INSERT INTO items VALUES (30, 'tx', 1); UPDATE items SET qty = 2 WHERE id = 30; \
         UPDATE items SET qty = 99 WHERE id = 14; DELETE FROM items WHERE id = 15; \
         INSERT INTO items VALUES (31, 'tx2', 5); DELETE FROM items WHERE id = 31; COMMIT",
        // a rollback leaves no trace
        "BEGIN; INSERT INTO items VALUES (100, 'rolled back', 1); UPDATE items SET name = 'rolled back' WHERE id = 1; \
         DELETE FROM items WHERE id = 2; ROLLBACK",
        // primary-key changes: one row, then overlapping keys in one statement
        "UPDATE items SET id = 50 WHERE id = 16",
        "DELETE FROM items WHERE id = 20",
        "UPDATE items SET id = id + 1 WHERE id BETWEEN 17 AND 19 ORDER BY id DESC",
        // delete then re-insert the same key in one transaction
        "BEGIN; DELETE FROM items WHERE id = 4; INSERT INTO items VALUES (4, 'reborn', 44); COMMIT",
    ] {
        conn.query_drop(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    db.wait_in_sync("items", Duration::from_secs(30)).await;
    let docs = db.sink_docs("items").await;
    assert!(!docs.contains_key(&100), "the rolled-back insert reached the sink");
    assert_eq!(
        docs[&1]["name"],
        mongodb::bson::Bson::String("item-1".into()),
        "the rolled-back update reached the sink"
    );
    assert!(docs.contains_key(&2), "the rolled-back delete reached the sink");
    assert!(!docs.contains_key(&16) && docs.contains_key(&50), "primary-key change 16 → 50");
    assert!(!docs.contains_key(&17) && docs.contains_key(&20), "overlapping primary-key changes");
    assert_eq!(docs[&20]["name"], mongodb::bson::Bson::String("item-19".into()));

    // ALTER TABLE mid-stream: later documents carry the new column.
    conn.query_drop("ALTER TABLE items ADD COLUMN note VARCHAR(20) DEFAULT 'dflt'").await.unwrap();
    conn.query_drop("UPDATE items SET note = 'touched', qty = qty + 1 WHERE id = 1").await.unwrap();
    conn.query_drop("INSERT INTO items (id, name, qty) VALUES (300, 'after alter', 3)").await.unwrap();
    conn.query_drop("DELETE FROM items WHERE id = 3").await.unwrap();
    let touched = [1i64, 300];
    wait_for("the documents written after ALTER TABLE", Duration::from_secs(30), || {
        p.assert_running();
        let db = &db;
        async move {
            let expected = db.source_docs("items").await;
            let actual = db.sink_docs("items").await;
            // Documents not written since the ALTER keep their old shape (no `note` field).
            let mut adjusted = expected.clone();
            for (id, fields) in adjusted.iter_mut() {
                if !touched.contains(id) && actual.get(id).is_some_and(|a| !a.contains_key("note")) {
                    fields.remove("note");
                }
            }
            diff(&adjusted, &actual).is_none().then_some(())
        }
    })
    .await;
    let docs = db.sink_docs("items").await;
    assert_eq!(docs[&1]["note"], mongodb::bson::Bson::String("touched".into()));
    assert_eq!(docs[&300]["note"], mongodb::bson::Bson::String("dflt".into()));
    // Once every row is written again, every document has the new column.
    conn.query_drop("UPDATE items SET qty = qty + 1").await.unwrap();
    db.wait_in_sync("items", Duration::from_secs(30)).await;
    assert!(db.sink_docs("items").await.values().all(|d| d.contains_key("note")));
    conn.disconnect().await.unwrap();

    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", p.log());
}

/// 4a. `kill -9` in the middle of the snapshot, changes made while polyrepl is down (to rows already
///     copied and to rows not yet copied), then a restart: the snapshot resumes after the last applied
///     chunk and the sink ends exactly equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_mid_snapshot_converges() {
    const ROWS: u64 = 60_000;
    let db = TestDb::create("snapkill").await;
    db.exec("CREATE TABLE snap (id INT PRIMARY KEY, v VARCHAR(200) NOT NULL, n INT)").await;
    db.exec(&format!("INSERT INTO snap SELECT seq, CONCAT(REPEAT('x', 150), seq), seq FROM seq_1_to_{ROWS}")).await;
    let pipeline = db.pipeline("snapkill");
    let args = db.run_args(&pipeline, &["--chunk-rows", "500", "--batch-changes", "500"]);

    let mut p = Polyrepl::spawn(&args);
    // Kill once a few chunks are applied (polled every 10 ms: the whole snapshot takes about a second).
    let deadline = Instant::now() + Duration::from_secs(60);
    let seen = loop {
        p.assert_running();
        let cp = db.checkpoint(&pipeline).await;
        let last_key = cp.as_ref().and_then(|cp| cp["snapshot"]["current"][1][0]["Int"].as_i64());
        if last_key.is_some_and(|k| k >= 3000) {
            break cp.unwrap();
        }
        assert!(Instant::now() < deadline, "no snapshot progress within 60 s; last checkpoint {cp:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    p.sigkill();
    let at_kill = db.checkpoint(&pipeline).await.expect("a checkpoint");
    assert!(
        !snapshot_complete(&at_kill),
        "the snapshot completed before the kill (make the table bigger); progress seen before the kill: {seen}"
    );
    let copied = db.collection("snap").estimated_document_count().await.unwrap();
    eprintln!("killed mid-snapshot with {copied} of {ROWS} rows in the sink; checkpoint {at_kill}");
    assert!(copied < ROWS, "everything was copied already");

    // While polyrepl is down: changes everywhere in the key range.
    db.exec(
        "UPDATE snap SET v = CONCAT('changed-', id), n = NULL WHERE id % 997 = 0; \
         DELETE FROM snap WHERE id % 1009 = 1; \
         INSERT INTO snap SELECT seq, 'added', seq FROM seq_60001_to_60100; \
         UPDATE snap SET id = 70000 WHERE id = 2; \
         UPDATE snap SET id = 0 WHERE id = 59999",
    )
    .await;

    let (status, log) = run_to_end(
        &args.iter().cloned().chain(["--stop-at-end".to_string()]).collect::<Vec<_>>(),
        Duration::from_secs(120),
    )
    .await;
    assert!(status.success(), "restart failed ({status}):\n{log}");
    assert!(log.contains("resuming the snapshot"), "the restart did not resume the snapshot:\n{log}");
    // The resumed snapshot copied only what was left after the last applied key.
    let resumed_rows: u64 = log
        .lines()
        .rev()
        .find_map(|l| l.split_once(".snap: ")?.1.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot progress line:\n{log}"));
    let key_at_kill = at_kill["snapshot"]["current"][1][0]["Int"].as_i64().expect("the last applied key");
    let expected = db.source_docs("snap").await;
    let left = expected.keys().filter(|&&id| id > key_at_kill).count() as u64;
    eprintln!("the resumed snapshot copied {resumed_rows} rows: those after key {key_at_kill}");
    assert_eq!(
        resumed_rows, left,
        "the resumed snapshot should copy exactly the rows after the last applied key:\n{log}"
    );
    let actual = db.sink_docs("snap").await;
    if let Some(d) = diff(&expected, &actual) {
        panic!("after the restart: {d}");
    }
    assert!(snapshot_complete(&db.checkpoint(&pipeline).await.unwrap()));
}

/// 4b. A writer inserts, updates (also multi-row and primary-key-changing) and deletes, in single
///     statements and transactions, while polyrepl is SIGKILLed at random moments and restarted several
///     times; afterwards a `--stop-at-end` run leaves the sink exactly equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_mid_stream_loses_nothing_and_duplicates_nothing() {
    let db = Arc::new(TestDb::create("streamkill").await);
    db.exec("CREATE TABLE churn (id INT PRIMARY KEY, v VARCHAR(40), n INT NOT NULL)").await;
    db.exec("INSERT INTO churn SELECT seq, CONCAT('start-', seq), 0 FROM seq_1_to_2000").await;
    let pipeline = db.pipeline("streamkill");
    let args = db.run_args(&pipeline, &["--batch-changes", "200"]);
    let (mut rng, seed) = Rng::from_entropy();
    eprintln!("random seed {seed}");

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        let mut rng = Rng::seeded(seed.rotate_left(17));
        tokio::spawn(async move {
            let mut conn = db.conn().await;
            let (mut next_id, mut ops) = (2001u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let id = 1 + rng.below(next_id);
                let sql = match rng.below(10) {
                    0..=2 => {
                        next_id += 1;
                        format!("INSERT INTO churn VALUES ({next_id}, 'ins-{ops}', 1)")
                    }
                    3..=5 => format!("UPDATE churn SET v = 'upd-{ops}', n = n + 1 WHERE id = {id}"),
                    6 => format!("DELETE FROM churn WHERE id = {id}"),
                    7 => format!("UPDATE churn SET n = n + 1, v = 'multi-{ops}' WHERE id BETWEEN {id} AND {}", id + 25),
                    8 => {
                        next_id += 1;
                        format!("UPDATE IGNORE churn SET id = {next_id}, v = 'moved-{ops}' WHERE id = {id}")
                    }
                    _ => {
                        next_id += 1;
                        format!(
                            "BEGIN; INSERT INTO churn VALUES ({next_id}, 'tx-{ops}', 7); UPDATE churn SET n = n + 100 WHERE id = {id}; \
                             DELETE FROM churn WHERE id = {}; UPDATE churn SET v = 'tx-upd-{ops}' WHERE id = {next_id}; COMMIT",
                            1 + (id * 7919) % next_id
                        )
                    }
                };
                conn.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
                ops += 1;
            }
            conn.disconnect().await.unwrap();
            ops
        })
    };

    let mut p = Polyrepl::spawn(&args);
    let mut last_seq = 0u64;
    for round in 0..4 {
        // Kill once this run has applied something new, at a random moment after that.
        let seq = wait_for(&format!("progress of run {round}"), Duration::from_secs(60), || {
            p.assert_running();
            let db = &db;
            let pipeline = &pipeline;
            async move {
                let cp = db.checkpoint(pipeline).await?;
                let seq = checkpoint_gtid_seq(&cp, 0)?;
                (snapshot_complete(&cp) && seq > last_seq).then_some(seq)
            }
        })
        .await;
        last_seq = seq;
        tokio::time::sleep(Duration::from_millis(rng.below(400))).await; // a random kill moment, not a sync point
        p.sigkill();
        eprintln!("round {round}: SIGKILLed after the checkpoint reached GTID seq {seq}");
        p = Polyrepl::spawn(&args);
    }
    // Let the last run stream a while, then stop the writer and kill once more.
    wait_for("progress of the last run", Duration::from_secs(60), || {
        p.assert_running();
        let db = &db;
        let pipeline = &pipeline;
        async move { (checkpoint_gtid_seq(&db.checkpoint(pipeline).await?, 0)? > last_seq).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let ops = writer.await.unwrap();
    p.sigkill();
    eprintln!("writer made {ops} statements/transactions");
    assert!(ops > 100, "the writer made too few changes to prove anything");

    let (status, log) = run_to_end(
        &args.iter().cloned().chain(["--stop-at-end".to_string()]).collect::<Vec<_>>(),
        Duration::from_secs(120),
    )
    .await;
    assert!(status.success(), "final run failed ({status}):\n{log}");
    let expected = db.source_docs("churn").await;
    let actual = db.sink_docs("churn").await;
    if let Some(d) = diff(&expected, &actual) {
        panic!("after kills and restarts (seed {seed}): {d}");
    }
    eprintln!("sink equals source: {} rows", expected.len());
}

/// 6. `--metrics-addr`: `/metrics` (Prometheus text) and `/status` (JSON) while running; SIGTERM stops
///    with exit code 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_then_sigterm_exits_0() {
    let db = TestDb::create("metrics").await;
    db.exec("CREATE TABLE m (id INT PRIMARY KEY, v VARCHAR(20))").await;
    db.exec("INSERT INTO m VALUES (1, 'one'), (2, 'two')").await;
    let pipeline = db.pipeline("metrics");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut p = Polyrepl::spawn(&db.run_args(&pipeline, &["--metrics-addr", &addr]));
    wait_snapshot_complete(&db, &mut p, &pipeline, Duration::from_secs(60)).await;
    db.exec("INSERT INTO m VALUES (3, 'three'); UPDATE m SET v = 'uno' WHERE id = 1; DELETE FROM m WHERE id = 2").await;
    db.wait_in_sync("m", Duration::from_secs(30)).await;

    // 2 snapshot rows + 3 streamed changes.
    let metrics = wait_for("/metrics to count every applied change", Duration::from_secs(20), || {
        p.assert_running();
        async move {
            let (code, body) = http_get(port, "/metrics")?;
            assert_eq!(code, 200, "{body}");
            let applied: f64 = body
                .lines()
                .find(|l| l.starts_with("polyrepl_sink_changes_applied_total{"))?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            (applied >= 5.0).then_some(body)
        }
    })
    .await;
    assert!(metrics.contains("# TYPE polyrepl_sink_changes_applied_total counter"), "{metrics}");
    assert!(metrics.contains("polyrepl_snapshot_rows_total 2"), "{metrics}");

    let (code, body) = http_get(port, "/status").expect("/status answers");
    assert_eq!(code, 200, "{body}");
    let status: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"));
    let position = status["sinks"][0]["position"].as_str().unwrap_or_else(|| panic!("no sinks[0].position: {status}"));
    assert!(position.starts_with("binlog.") || position.contains(':'), "{position}");
    assert!(status["sinks"][0]["changes_applied"].as_u64().unwrap() >= 5, "{status}");
    eprintln!("/status: {status}");

    p.sigterm();
    let exit = p.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(exit.code(), Some(0), "SIGTERM should exit 0:\n{}", p.log());
    assert!(http_get(port, "/metrics").is_none(), "the metrics server outlived the process");
}
