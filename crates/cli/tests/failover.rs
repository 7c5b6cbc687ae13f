//! End-to-end: a failover. A primary and a replica (MariaDB GTID replication, `log_slave_updates`),
//! both of the test's own; `polyrepl run` follows the primary into MongoDB, Redis and Cassandra while a
//! writer runs (small transactions, and now and then one large enough to be applied in parts); the
//! primary is switched over to the replica (the writer paused, the replica caught up, the primary
//! killed with SIGKILL, the replica promoted) and the writer goes on there; the run is restarted
//! against the new primary, whose binlog files number lower than the old one's. It must carry on from
//! its checkpoint by GTID — no re-copy, nothing skipped, nothing applied out of order (Cassandra's
//! position-derived write timestamps must keep increasing) — and `verify` against the new primary
//! finds 0 differences in the three sinks.
//!
//! A second test: the replica had not received the last transactions the sinks hold (lost in the
//! failover) and wrote as many of its own; the run stops with the fix, `--resnapshot` empties the sink
//! tables and converges them to the new primary.
//!
//! Servers: two MariaDBs of the test's own, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra
//! 127.0.0.1:9042.

mod common;

use common::*;
use mysql_async::prelude::*;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A writer on `flow (id, v, n)` of database `db`, at the server the gate names: the test holds the
/// gate to pause it (no statement in flight) and changes the server under it.
struct SwitchableWriter {
    gate: Arc<tokio::sync::Mutex<String>>,
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SwitchableWriter {
    fn start(url: String, db: String, first_id: u64) -> SwitchableWriter {
        let gate = Arc::new(tokio::sync::Mutex::new(url));
        let (stop, ops) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (gate2, stop2, ops2) = (gate.clone(), stop.clone(), ops.clone());
        let task = tokio::spawn(async move {
            let (mut rng, seed) = Rng::from_entropy();
            eprintln!("writer seed {seed}");
            let mut next_id = first_id;
            let mut conn: Option<(String, mysql_async::Conn)> = None;
            while !stop2.load(Ordering::Relaxed) {
                let url = gate2.lock().await;
                if conn.as_ref().map(|(u, _)| u != &*url).unwrap_or(true) {
                    let c = mysql_async::Conn::from_url(format!("{url}/{db}")).await.expect("writer connects");
                    conn = Some((url.clone(), c));
                }
                let c = &mut conn.as_mut().unwrap().1;
                let op = ops2.fetch_add(1, Ordering::Relaxed);
                // Now and then a transaction of ~1,000 changes, applied in parts of 300.
                let sql = if rng.below(60) == 0 {
                    format!("UPDATE flow SET n = n + 1, v = 'bulk-{op}'")
                } else {
                    let steps: Vec<String> =
                        (0..1 + rng.below(3)).map(|i| flow_writer_step(&mut rng, &mut next_id, op * 4 + i)).collect();
                    format!("BEGIN; {}; COMMIT", steps.join("; "))
                };
                c.query_drop(&sql).await.unwrap_or_else(|e| panic!("writer: {sql}: {e}"));
                drop(url);
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        });
        SwitchableWriter { gate, stop, ops, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the writer failed");
        self.ops.load(Ordering::Relaxed)
    }
}

/// The Mongo checkpoint of `pipeline`, once `ready` says it is the one waited for.
async fn wait_checkpoint(
    pipeline: &str,
    p: &mut Polyrepl,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mongo = mongodb::Client::with_uri_str(MONGO).await.unwrap();
    let (mongo, ready) = (&mongo, &ready);
    wait_for(what, Duration::from_secs(180), || {
        p.assert_running();
        async move { checkpoint(mongo, pipeline).await.filter(|cp| ready(cp)) }
    })
    .await
}

async fn gtid_binlog_pos(conn: &mut mysql_async::Conn) -> String {
    conn.query_first::<String, _>("SELECT @@gtid_binlog_pos").await.unwrap().unwrap_or_default()
}

/// A primary and a replica of it (GTID replication): the binlogs start empty on both, the primary's
/// files number higher; database `name` with `flow (id, v, n)` of 300 rows created on the primary.
async fn replicated_pair(name: &str) -> (OwnMariaDb, OwnMariaDb, mysql_async::Conn, mysql_async::Conn) {
    let (primary, replica) = (OwnMariaDb::up(), OwnMariaDb::up());
    let mut old = mysql_async::Conn::from_url(primary.url()).await.expect("connect to the primary");
    let mut new = mysql_async::Conn::from_url(replica.url()).await.expect("connect to the replica");
    old.query_drop("RESET MASTER; FLUSH BINARY LOGS; FLUSH BINARY LOGS; FLUSH BINARY LOGS; FLUSH BINARY LOGS")
        .await
        .unwrap();
    new.query_drop(format!(
        "RESET MASTER; SET GLOBAL server_id = 2; SET GLOBAL gtid_slave_pos = '';
         CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, MASTER_USER = 'root',
           MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1;
         START SLAVE",
        primary.port
    ))
    .await
    .unwrap();
    old.query_drop(format!(
        "CREATE DATABASE `{name}`; USE `{name}`; CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT);
         INSERT INTO flow SELECT seq, CONCAT('row-', seq), seq FROM seq_1_to_300"
    ))
    .await
    .unwrap();
    (primary, replica, old, new)
}

/// Waits until the replica has applied everything the primary logged.
async fn caught_up(old: &mut mysql_async::Conn, new: &mut mysql_async::Conn) {
    let end = gtid_binlog_pos(old).await;
    let waited: Option<i64> = new.exec_first("SELECT MASTER_GTID_WAIT(?, 60)", (end.clone(),)).await.unwrap().flatten();
    assert_eq!(waited, Some(0), "the replica did not reach {end}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_to_a_replica_carries_on_by_gtid_in_every_sink() {
    let name = unique("failover");
    let _cleanup = SinkCleanup { db: name.clone() };
    let (primary, replica, mut old, mut new) = replicated_pair(&name).await;

    let tables = format!("{name}.*");
    let args = |source: &str, extra: &[&str]| {
        let extra: Vec<&str> = ["--transaction-part-changes", "300"].into_iter().chain(extra.iter().copied()).collect();
        polyrepl_args("run", &format!("{source}/"), &tables, &SINKS, Some(&name), &extra)
    };
    let mut run = Polyrepl::spawn(&args(&primary.url(), &[]));
    wait_checkpoint(&name, &mut run, "the first copy", snapshot_complete).await;
    let writer = SwitchableWriter::start(primary.url(), name.clone(), 300);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let before = wait_checkpoint(&name, &mut run, "streaming from the primary", |cp| {
        snapshot_complete(cp) && checkpoint_gtid_seq(cp, 0).is_some_and(|s| s > 20)
    })
    .await;
    assert_eq!(before["position"]["file"], "binlog.000005", "the primary's binlog: {before}");

    // The switch-over: no write in flight, the replica has everything, the primary dies.
    {
        let mut gate = writer.gate.lock().await;
        caught_up(&mut old, &mut new).await;
        drop(old);
        primary.kill_9();
        new.query_drop("STOP SLAVE; RESET SLAVE ALL").await.unwrap();
        *gate = replica.url();
    }
    // The run loses its source; the operator points it at the new primary.
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.sigkill();
    let mut run = Polyrepl::spawn(&args(&replica.url(), &[]));
    let after = wait_checkpoint(&name, &mut run, "streaming from the new primary", |cp| {
        cp["position"]["file"].as_str().is_some_and(|f| f != "binlog.000005")
    })
    .await;
    assert!(
        after["position"]["file"].as_str().unwrap() < "binlog.000005",
        "the new primary's binlog files number lower: {after}"
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    // A crash on the new primary too, while it streams.
    run.sigkill();
    let mut logs = run.log();
    let mut run = Polyrepl::spawn(&args(&replica.url(), &[]));
    tokio::time::sleep(Duration::from_secs(4)).await;
    run.assert_running();
    let ops = writer.finish().await;
    eprintln!("writer: {ops} statements");
    run.sigterm();
    run.wait_exit(Duration::from_secs(60)).await;
    logs.push_str(&run.log());
    assert!(
        !logs.contains("snapshot begins"),
        "a run after the failover copied again instead of streaming on:\n{logs}"
    );

    let (status, log) = run_to_end(&args(&replica.url(), &["--stop-at-end"]), Duration::from_secs(300)).await;
    assert!(status.success(), "the catch-up run failed:\n{log}");
    let verify = polyrepl_args("verify", &format!("{}/", replica.url()), &tables, &SINKS, None, &[]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(300)).await;
    assert_eq!(status.code(), Some(0), "verify found differences after the failover:\n{out}");
    assert!(out.contains("verify: consistent"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_lost_transactions_the_sinks_hold_stops_with_the_fix() {
    let name = unique("lostfail");
    let _cleanup = SinkCleanup { db: name.clone() };
    let (primary, replica, mut old, mut new) = replicated_pair(&name).await;
    caught_up(&mut old, &mut new).await;
    let tables = format!("{name}.*");
    let args = |source: &str, extra: &[&str]| {
        let extra: Vec<&str> = ["--stop-at-end"].into_iter().chain(extra.iter().copied()).collect();
        polyrepl_args("run", &format!("{source}/"), &tables, &SINKS, Some(&name), &extra)
    };
    // The replica falls behind; the sinks take transactions it never gets.
    new.query_drop("STOP SLAVE").await.unwrap();
    for i in 0..10 {
        old.query_drop(format!("UPDATE `{name}`.flow SET v = 'lost {i}' WHERE id = {}", i + 1)).await.unwrap();
    }
    let (status, log) = run_to_end(&args(&primary.url(), &[]), Duration::from_secs(180)).await;
    assert!(status.success(), "the run on the primary failed:\n{log}");
    // The primary dies; the replica is promoted and writes as many transactions as were lost: the same
    // GTID sequence numbers name other transactions (and Cassandra timestamps would tie).
    drop(old);
    primary.kill_9();
    new.query_drop("RESET SLAVE ALL").await.unwrap();
    for i in 0..10 {
        new.query_drop(format!("UPDATE `{name}`.flow SET v = 'new primary {i}' WHERE id = {}", 100 + i)).await.unwrap();
    }
    let (status, log) = run_to_end(&args(&replica.url(), &[]), Duration::from_secs(180)).await;
    assert!(!status.success(), "the sinks hold transactions the new primary never had: the run must stop:\n{log}");
    assert!(
        log.contains("lacks transactions the checkpoint holds") && log.contains("--resnapshot"),
        "the error says what happened and names the fix:\n{log}"
    );
    // The fix converges every sink to the new primary.
    let (status, log) = run_to_end(&args(&replica.url(), &["--resnapshot"]), Duration::from_secs(180)).await;
    assert!(status.success(), "the --resnapshot run failed:\n{log}");
    assert!(log.contains("emptied"), "the sink tables are emptied before the copy:\n{log}");
    let verify = polyrepl_args("verify", &format!("{}/", replica.url()), &tables, &SINKS, None, &[]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(300)).await;
    assert_eq!(status.code(), Some(0), "verify found differences after the re-snapshot:\n{out}");
}
