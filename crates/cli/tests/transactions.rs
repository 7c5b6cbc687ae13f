//! End-to-end: transactions as the server means them, through `polyrepl run` (the real binary) into
//! MongoDB, Redis and Cassandra, each test ending in `polyrepl verify` finding 0 differences.
//!
//! 1. A large transaction is applied in parts (`--transaction-part-changes`); `kill -9` while the sinks
//!    hold only part of it, and the next run reads it again from its start: nothing lost or doubled.
//! 2. An XA transaction prepared across a `kill -9` is applied at its `XA COMMIT`; one rolled back after
//!    its prepare leaves nothing; savepoints rolled back in a transaction that also changed a
//!    non-transactional table leave nothing.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::three_sinks::*;
use common::*;
use mysql_async::prelude::*;
use std::time::Duration;

/// Held by each test of this file: a run whose snapshot falls between the other test's XA PREPARE and
/// its XA COMMIT stops at that commit (the transaction's rows are unknown to it), by design.
static XA_WINDOW: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until the MongoDB checkpoint of `pipeline` holds a resume point before its position (part of
/// a transaction applied, or an XA transaction prepared), then kills the run with SIGKILL.
async fn kill_9_while_held(h: &Harness, pipeline: &str, p: &mut Polyrepl) -> serde_json::Value {
    let db = &h.db;
    let held = wait_for("a checkpoint with a resume point", Duration::from_secs(120), || {
        p.assert_running();
        async move { db.checkpoint(pipeline).await.filter(|cp| cp.get("resume").is_some()) }
    })
    .await;
    p.sigkill();
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_transaction_applied_in_parts_survives_kill_9() {
    let _alone = XA_WINDOW.lock().await;
    let h = Harness::create("bigtx").await;
    let db = &h.db;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    rows(db, "flow", 50, "({i}, 'f{i}', {i})").await;
    let pipeline = h.pipeline("bigtx");
    let parts = ["--transaction-part-changes", "500"];
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &parts));
    h.wait_copied(&pipeline, &mut p).await;

    // One statement, one transaction of 20,000 inserts; then one of updates and deletes of those rows.
    db.exec("INSERT INTO flow SELECT seq, CONCAT('big', seq), seq FROM seq_100_to_20099").await;
    db.exec(
        "BEGIN; UPDATE flow SET n = n + 1, v = 'upd' WHERE id BETWEEN 100 AND 6099;
         DELETE FROM flow WHERE id BETWEEN 6100 AND 7099; INSERT INTO flow VALUES (1, 'replaced', 0)
         ON DUPLICATE KEY UPDATE v = 'replaced'; COMMIT",
    )
    .await;
    let held = kill_9_while_held(&h, &pipeline, &mut p).await;
    let resume = held["resume"]["offset"].as_u64().unwrap();
    let at = held["position"]["offset"].as_u64().unwrap();
    assert!(resume < at || held["resume"]["file"] != held["position"]["file"], "resume before position: {held}");

    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &parts));
    // The restart reads the transaction again from its start: because MongoDB holds part of it ("re-reading
    // from the start of a transaction"), or because another sink holds none of it yet (a sink that merges
    // waiting batches may have been applying a large merged one when killed) and streaming starts there.
    h.wait_log(&mut p, "streaming from the binlog").await;
    let log = p.log();
    let line = log.lines().find(|l| l.contains("streaming from the binlog")).expect("logged");
    let from = line.split("position=").nth(1).and_then(|rest| rest.split_whitespace().next()).expect("position");
    let (file, offset) = from.rsplit_once(':').expect("file:offset");
    let resume_file = held["resume"]["file"].as_str().unwrap();
    assert!(
        (file, offset.parse::<u64>().unwrap()) <= (resume_file, resume),
        "the restart must read the held transaction from its start ({resume_file}:{resume}): {line}"
    );
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    let mut conn = db.conn().await;
    let n: u64 = conn.query_first("SELECT COUNT(*) FROM flow").await.unwrap().unwrap();
    assert_eq!(n, 50 + 20_000 - 1_000);
    assert_eq!(db.sink_docs("flow").await.len() as u64, n, "MongoDB holds every row once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xa_transactions_and_savepoints_converge_across_kill_9() {
    let _alone = XA_WINDOW.lock().await;
    let h = Harness::create("xa").await;
    let db = &h.db;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT) ENGINE=InnoDB").await;
    db.exec("CREATE TABLE side (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT) ENGINE=MyISAM").await;
    rows(db, "flow", 20, "({i}, 'f{i}', {i})").await;
    let pipeline = h.pipeline("xa");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &[]));
    h.wait_copied(&pipeline, &mut p).await;

    let xid = format!("'{}'", db.name);
    let mut xa = db.conn().await;
    for sql in [
        format!("XA START {xid}"),
        "INSERT INTO flow VALUES (1000, 'xa', 1), (1001, 'xa', 2)".into(),
        "UPDATE flow SET v = 'xa-upd' WHERE id = 1".into(),
        format!("XA END {xid}"),
        format!("XA PREPARE {xid}"),
    ] {
        xa.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    // Committed while the XA transaction is prepared: the checkpoint moves past its prepare.
    db.exec(
        "BEGIN; INSERT INTO flow VALUES (2000, 'kept', 1); SAVEPOINT a; INSERT INTO flow VALUES (2001, 'gone', 1);
         INSERT INTO side VALUES (1, 'non-transactional', 1); UPDATE flow SET v = 'gone' WHERE id = 2;
         ROLLBACK TO SAVEPOINT a; INSERT INTO flow VALUES (2002, 'kept', 2); COMMIT",
    )
    .await;
    kill_9_while_held(&h, &pipeline, &mut p).await;

    xa.query_drop(format!("XA COMMIT {xid}")).await.unwrap();
    let rolled = format!("'{}r'", db.name);
    for sql in [
        format!("XA START {rolled}"),
        "INSERT INTO flow VALUES (3000, 'rolled back', 1)".into(),
        format!("XA END {rolled}"),
        format!("XA PREPARE {rolled}"),
        format!("XA ROLLBACK {rolled}"),
    ] {
        xa.query_drop(&sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    xa.disconnect().await.unwrap();

    // The prepared transaction's start was held: the next run reads from there.
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &[]));
    h.wait_log(&mut p, "re-reading from the start of a transaction").await;
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    let docs = db.sink_docs("flow").await;
    let has = |id: i64| docs.contains_key(&id);
    assert!(has(1000) && has(1001) && has(2000) && has(2002), "committed rows are in MongoDB");
    assert!(!has(2001) && !has(3000), "rolled-back rows are not in MongoDB");
}
