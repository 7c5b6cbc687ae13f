//! A source outage while `polyrepl run` streams: a dedicated MariaDB (started with `polyrepl stack`,
//! so the shared server other tests use is never touched) is stopped and started again under a
//! running pipeline and a writer that keeps changing rows. Without being restarted, polyrepl must
//! notice the dead connection, reconnect from the last position it handed to the pipeline, and bring
//! the MongoDB collection to exactly the source table: nothing lost, nothing extra, no stale value.

mod common;

use common::*;
use mongodb::bson::{doc, Document};
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Drops the MongoDB database and the pipeline's checkpoint at the end, even after a failure.
struct MongoCleanup {
    db: String,
    pipeline: String,
}

impl Drop for MongoCleanup {
    fn drop(&mut self) {
        drop_mongo_data(&self.db, &self.pipeline);
    }
}

/// What the writer did, shared with the test.
#[derive(Default)]
struct WriterStats {
    ok: AtomicU64,
    failed: AtomicU64,
    last_inserted: AtomicI64,
}

/// Changes rows until `stop`: idempotent statements (absolute updates, upserts, deletes, and small
/// transactions of them), each retried on a new connection until it succeeds, so a statement cut
/// by the outage is either committed or redone; the source table is the truth the test compares with.
async fn writer(url: String, first_new_id: i64, stop: Arc<AtomicBool>, stats: Arc<WriterStats>, seed: u64) {
    let mut rng = Rng::seeded(seed);
    let mut next_id = first_new_id;
    let mut conn: Option<mysql_async::Conn> = None;
    let mut i = 0u64;
    while !stop.load(SeqCst) {
        i += 1;
        let pick = |rng: &mut Rng, next_id: i64| 1 + rng.below(next_id as u64 - 1) as i64;
        let (sql, inserted) = match rng.below(10) {
            0..=4 => (format!("UPDATE t SET v = 'u{i}', n = {i} WHERE id = {}", pick(&mut rng, next_id)), None),
            5..=7 => (format!("INSERT INTO t VALUES ({next_id}, 'i{i}', {i}) ON DUPLICATE KEY UPDATE v = VALUES(v), n = VALUES(n)"), Some(next_id)),
            8 => (format!("DELETE FROM t WHERE id = {}", pick(&mut rng, next_id)), None),
            _ => (
                format!(
                    "BEGIN; UPDATE t SET v = 'tx{i}', n = NULL WHERE id = {}; DELETE FROM t WHERE id = {}; \
                     INSERT INTO t VALUES ({next_id}, 'tx{i}', {i}) ON DUPLICATE KEY UPDATE v = VALUES(v), n = VALUES(n); COMMIT",
                    pick(&mut rng, next_id),
                    pick(&mut rng, next_id)
                ),
                Some(next_id),
            ),
        };
        // Retry this statement until it succeeds (or the test stops the writer).
        loop {
            if stop.load(SeqCst) {
                return;
            }
            if conn.is_none() {
                match tokio::time::timeout(Duration::from_secs(3), mysql_async::Conn::from_url(url.clone())).await {
                    Ok(Ok(c)) => conn = Some(c),
                    _ => {
                        stats.failed.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().unwrap();
            match tokio::time::timeout(Duration::from_secs(5), c.query_drop(&sql)).await {
                Ok(Ok(())) => break,
                _ => {
                    stats.failed.fetch_add(1, SeqCst);
                    conn = None; // the connection may be dead or mid-transaction: start afresh
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        stats.ok.fetch_add(1, SeqCst);
        if let Some(id) = inserted {
            stats.last_inserted.store(id, SeqCst);
            next_id += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if let Some(c) = conn {
        let _ = c.disconnect().await;
    }
}

/// The source table `t` of the database `url` names (read on a fresh connection).
async fn source_table(url: &str) -> Option<Docs> {
    let mut conn = mysql_async::Conn::from_url(url).await.ok()?;
    let docs = source_docs(&mut conn, "t").await;
    let _ = conn.disconnect().await;
    Some(docs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_source_is_reconnected_without_losing_or_inventing_changes() {
    let t0 = Instant::now();
    let maria = OwnMariaDb::up();
    let url = maria.url();
    eprintln!("dedicated MariaDB on port {} up after {:.1} s", maria.port, t0.elapsed().as_secs_f64());

    // The sink writes into a MongoDB database named like the source database, on the shared
    // server: a unique name (also the pipeline's) keeps runs apart.
    let pipeline = unique("outage");
    let mongo = mongodb::Client::with_uri_str(MONGO).await.unwrap();
    let dbname = pipeline.clone();
    let _cleanup = MongoCleanup { db: dbname.clone(), pipeline: pipeline.clone() };
    {
        let mut c = mysql_async::Conn::from_url(url.clone()).await.expect("connect to the dedicated MariaDB");
        c.query_drop(format!(
            "CREATE DATABASE `{dbname}`; USE `{dbname}`; \
             CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT NULL); \
             INSERT INTO t SELECT seq, CONCAT('row-', seq), seq FROM seq_1_to_300"
        ))
        .await
        .unwrap();
        c.disconnect().await.unwrap();
    }
    let url_db = format!("{url}/{dbname}");

    let tables = format!("{dbname}.*");
    let source = format!("{url}/");
    let args: Vec<String> = ["run", "--source", &source, "--tables", &tables, "--sink", MONGO, "--name", &pipeline]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut p = Polyrepl::spawn(&args);
    let coll = mongo.database(&dbname).collection::<Document>("t");

    let (_, seed) = Rng::from_entropy();
    eprintln!("writer seed {seed}");
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(WriterStats::default());
    let w = tokio::spawn(writer(url_db.clone(), 301, stop.clone(), stats.clone(), seed));

    // Streaming is live: the writer's latest insert (after a moment of writing) reaches the sink.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probe = stats.last_inserted.load(SeqCst);
    assert!(
        probe > 300,
        "the writer inserted nothing: {} ok, {} failed",
        stats.ok.load(SeqCst),
        stats.failed.load(SeqCst)
    );
    wait_for(&format!("the writer's insert of id {probe} in the sink"), Duration::from_secs(30), || {
        p.assert_running();
        let coll = coll.clone();
        async move { coll.find_one(doc! { "_id": probe }).await.ok().flatten().map(|_| ()) }
    })
    .await;
    let ok_before = stats.ok.load(SeqCst);
    eprintln!("caught up after {:.1} s; writer {} ok so far", t0.elapsed().as_secs_f64(), ok_before);

    // The outage: stop the server (data kept), wait, start it again.
    let down_at = Instant::now();
    maria.run(&["down"]);
    eprintln!("MariaDB down ({:.1} s to stop)", down_at.elapsed().as_secs_f64());
    tokio::time::sleep(Duration::from_secs(5)).await;
    let up_at = Instant::now();
    maria.run(&["up"]);
    eprintln!(
        "MariaDB up again ({:.1} s to start; outage {:.1} s)",
        up_at.elapsed().as_secs_f64(),
        down_at.elapsed().as_secs_f64()
    );
    p.assert_running();

    // Keep writing after it is back, then stop the writer and wait for an exact match.
    let ok_at_up = stats.ok.load(SeqCst);
    wait_for("100 more writes after the restart", Duration::from_secs(30), || {
        let n = stats.ok.load(SeqCst);
        async move { (n >= ok_at_up + 100).then_some(()) }
    })
    .await;
    stop.store(true, SeqCst);
    w.await.unwrap();
    eprintln!(
        "writer stopped: {} statements committed ({} before the outage), {} failed attempts retried",
        stats.ok.load(SeqCst),
        ok_before,
        stats.failed.load(SeqCst)
    );
    assert!(stats.failed.load(SeqCst) > 0, "the writer never saw the outage");

    let sync_from = Instant::now();
    let deadline = sync_from + Duration::from_secs(40);
    let expected = source_table(&url_db).await.expect("read the source after the restart");
    loop {
        p.assert_running();
        let actual = sink_docs(&coll).await;
        match diff(&expected, &actual) {
            None => break,
            Some(d) if Instant::now() > deadline => {
                panic!("the sink never matched the source after the outage:\n{d}\n{}", p.log())
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    eprintln!(
        "sink equals the source ({} rows) {:.1} s after the writer stopped, {:.1} s after the restart; total {:.1} s",
        expected.len(),
        sync_from.elapsed().as_secs_f64(),
        up_at.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    // Still the same process, and it said it reconnected.
    p.assert_running();
    let log = p.log();
    assert!(
        log.contains("lost the source; reconnecting") || log.contains("source unavailable; retrying"),
        "no reconnect logged:\n{log}"
    );
    for line in log
        .lines()
        .filter(|l| l.contains("reconnecting") || l.contains("retrying") || l.contains("streaming from the binlog"))
    {
        eprintln!("polyrepl: {line}");
    }
    let reconnects = log.matches("streaming from the binlog").count();
    assert!(reconnects >= 2, "expected a second 'streaming from the binlog' after the restart:\n{log}");
    p.sigterm();
    let status = p.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM should stop cleanly, got {status}:\n{}", p.log());
}

/// The binlog a pipeline needs is purged while it is stopped: the next run must stop with a clear
/// error (never skip the lost changes silently) and write nothing; `--resnapshot` then copies the
/// tables again — removing the rows deleted meanwhile — and later runs stream as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_binlog_is_a_clear_error_and_resnapshot_recovers() {
    let maria = OwnMariaDb::up();
    let url = maria.url();
    let pipeline = unique("purged");
    let dbname = pipeline.clone();
    let _cleanup = MongoCleanup { db: dbname.clone(), pipeline: pipeline.clone() };
    let mut c = mysql_async::Conn::from_url(url.clone()).await.expect("connect to the dedicated MariaDB");
    c.query_drop(format!(
        "CREATE DATABASE `{dbname}`; USE `{dbname}`; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT NULL); \
         INSERT INTO t SELECT seq, CONCAT('row-', seq), seq FROM seq_1_to_200"
    ))
    .await
    .unwrap();
    let url_db = format!("{url}/{dbname}");
    let tables = format!("{dbname}.*");
    let source = format!("{url}/");
    let args = |extra: &[&str]| -> Vec<String> {
        ["run", "--source", &source, "--tables", &tables, "--sink", MONGO, "--name", &pipeline, "--stop-at-end"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let mongo = mongodb::Client::with_uri_str(MONGO).await.unwrap();
    let coll = mongo.database(&dbname).collection::<Document>("t");

    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(60)).await;
    assert!(status.success(), "first run failed:\n{log}");
    let before = source_table(&url_db).await.unwrap();
    assert_eq!(diff(&before, &sink_docs(&coll).await), None);

    // While polyrepl is stopped: changes, then the binlog holding them is purged.
    c.query_drop("DELETE FROM t WHERE id <= 20; UPDATE t SET v = 'changed' WHERE id BETWEEN 21 AND 40; INSERT INTO t SELECT seq, 'new', NULL FROM seq_201_to_220")
        .await
        .unwrap();
    c.query_drop("FLUSH BINARY LOGS").await.unwrap();
    let (current,): (String,) = c
        .query_first("SHOW MASTER STATUS")
        .await
        .unwrap()
        .map(|r: mysql_async::Row| (r.get::<String, _>(0).unwrap(),))
        .unwrap();
    // MariaDB keeps the previous file until InnoDB's binlog checkpoint moves past it: retry the purge.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        c.query_drop(format!("PURGE BINARY LOGS TO '{current}'")).await.unwrap();
        let logs: Vec<String> = c
            .query("SHOW BINARY LOGS")
            .await
            .unwrap()
            .into_iter()
            .map(|r: mysql_async::Row| r.get::<String, _>(0).unwrap())
            .collect();
        if logs == [current.clone()] {
            break;
        }
        assert!(Instant::now() < deadline, "the server kept {logs:?} after PURGE BINARY LOGS TO '{current}'");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("purged every binlog before {current}");

    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(60)).await;
    assert!(!status.success(), "a run whose binlog was purged must fail, got {status}:\n{log}");
    assert!(
        log.contains("is no longer on") && log.contains("--resnapshot") && log.contains("purged"),
        "the error should say what happened and how to fix it:\n{log}"
    );
    eprintln!("{}", log.lines().find(|l| l.contains("no longer on")).unwrap_or_default());
    assert_eq!(diff(&before, &sink_docs(&coll).await), None, "the failed run changed the sink");

    let (status, log) = run_to_end(&args(&["--resnapshot"]), Duration::from_secs(60)).await;
    assert!(status.success(), "--resnapshot failed:\n{log}");
    let after = source_table(&url_db).await.unwrap();
    assert_eq!(after.len(), 200, "180 old rows + 20 new ones");
    assert_eq!(
        diff(&after, &sink_docs(&coll).await),
        None,
        "after --resnapshot the sink must equal the source (deleted rows removed)"
    );

    // Back to normal streaming from the new snapshot.
    c.query_drop("UPDATE t SET n = -1 WHERE id = 100").await.unwrap();
    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(60)).await;
    assert!(status.success(), "the run after --resnapshot failed:\n{log}");
    assert!(!log.contains("no checkpoint: starting with a snapshot"), "it should stream, not snapshot again:\n{log}");
    assert_eq!(diff(&source_table(&url_db).await.unwrap(), &sink_docs(&coll).await), None);
    c.disconnect().await.unwrap();
}
