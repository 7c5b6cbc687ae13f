//! End-to-end: a source whose binlog history changed under a pipeline (`RESET MASTER`). The next run
//! refuses the sinks' checkpoints with the fix; `--resnapshot` empties the sink tables and copies again,
//! and every sink — Cassandra too, whose write timestamps come from positions — ends equal to the source.
//!
//! Servers: a MariaDB of the test's own (RESET MASTER must not touch the shared one), FerretDB
//! 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::*;
use mysql_async::prelude::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_reset_master_the_run_refuses_and_resnapshot_converges_in_every_sink() {
    let maria = OwnMariaDb::up();
    let name = unique("history");
    let _cleanup = SinkCleanup { db: name.clone() };
    let mut conn = mysql_async::Conn::from_url(maria.url()).await.expect("connect to the test's MariaDB");
    conn.query_drop(format!(
        "CREATE DATABASE `{name}`; USE `{name}`; CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40), n INT);
         INSERT INTO t SELECT seq, CONCAT('row-', seq), seq FROM seq_1_to_200"
    ))
    .await
    .unwrap();
    let source = format!("{}/", maria.url());
    let tables = format!("{name}.*");
    let args = |extra: &[&str]| {
        let extra: Vec<&str> = ["--stop-at-end"].into_iter().chain(extra.iter().copied()).collect();
        polyrepl_args("run", &source, &tables, &SINKS, Some(&name), &extra)
    };
    // Many transactions, so that the checkpoint's GTID sequence is well ahead of a new history's.
    for i in 0..60 {
        conn.query_drop(format!("UPDATE t SET n = n + 1, v = 'first history {i}' WHERE id = {}", 1 + i % 50))
            .await
            .unwrap();
    }
    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(180)).await;
    assert!(status.success(), "the first run failed:\n{log}");

    // A new history: positions and GTIDs start again; rows change in it.
    conn.query_drop(
        "RESET MASTER; UPDATE t SET v = 'new history', n = -1 WHERE id <= 20; DELETE FROM t WHERE id > 190;
         INSERT INTO t VALUES (500, 'born in the new history', 5)",
    )
    .await
    .unwrap();
    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(180)).await;
    assert!(!status.success(), "a run from a checkpoint of another history must stop:\n{log}");
    assert!(log.contains("not from the source's binlog history") && log.contains("--resnapshot"), "{log}");

    let (status, log) = run_to_end(&args(&["--resnapshot"]), Duration::from_secs(180)).await;
    assert!(status.success(), "the --resnapshot run failed:\n{log}");
    assert!(log.contains("emptied"), "{log}");
    // Changes after the re-snapshot, in the new history, land too.
    conn.query_drop("UPDATE t SET v = 'after the re-snapshot' WHERE id = 1").await.unwrap();
    let (status, log) = run_to_end(&args(&[]), Duration::from_secs(180)).await;
    assert!(status.success(), "the run after the re-snapshot failed:\n{log}");

    let verify = polyrepl_args("verify", &source, &tables, &SINKS, None, &[]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(180)).await;
    assert_eq!(status.code(), Some(0), "verify found differences after the re-snapshot:\n{out}");
    assert!(out.contains("verify: consistent"), "{out}");
    conn.disconnect().await.unwrap();
}
