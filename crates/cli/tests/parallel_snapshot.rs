//! The initial snapshot read on several connections at once (`--snapshot-parallelism`), by the real
//! binary into MongoDB, Redis and Cassandra, while a writer changes the tables: every sink ends equal
//! to the source (`polyrepl verify`), also after a `kill -9` in the middle of the copy.
mod common;

use common::three_sinks::{rows, Harness, Writer};
use common::*;
use std::time::{Duration, Instant};

/// `a_num`: an integer key with gaps, `rows` rows; `b_kv`: a composite key whose first column is a
/// case-insensitive VARCHAR (accents, emoji), 3000 rows.
async fn tables(h: &Harness, num_rows: u64) {
    h.db.exec("CREATE TABLE a_num (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    rows(&h.db, "a_num", num_rows, "({i} * 3, 'num-{i}', {i})").await;
    h.db.exec(
        "CREATE TABLE b_kv (g VARCHAR(40) NOT NULL, n INT NOT NULL, v VARCHAR(100), \
         PRIMARY KEY (g, n)) COLLATE utf8mb4_unicode_ci",
    )
    .await;
    let mut values = Vec::new();
    for (k, g) in ["Zeta", "alpha", "Beta", "émile", "😀 smile", "ALPHA-2"].iter().enumerate() {
        for n in 0..500 {
            values.push(format!("('{g}', {n}, 'kv-{k}-{n}')"));
        }
    }
    h.db.exec(&format!("INSERT INTO b_kv VALUES {}", values.join(","))).await;
}

/// One writer step on both tables: inserts, updates, deletes, key changes, and transactions over both.
fn step(rng: &mut Rng, next_id: &mut u64, op: u64) -> String {
    let groups = ["Zeta", "alpha", "Beta", "émile", "😀 smile", "ALPHA-2", "new"];
    let g = groups[rng.below(groups.len() as u64) as usize];
    let n = rng.below(600);
    let id = 3 * (1 + rng.below(*next_id));
    match rng.below(8) {
        0 => {
            *next_id += 1;
            format!("INSERT INTO a_num VALUES ({}, 'ins-{op}', {op})", *next_id * 3)
        }
        1 => format!("UPDATE a_num SET v = 'upd-{op}', n = n + 1 WHERE id = {id}"),
        2 => format!("DELETE FROM a_num WHERE id = {id}"),
        // A key change: the row may move to a range already copied, or not yet.
        3 => format!("UPDATE IGNORE a_num SET id = {} WHERE id = {id}", id + 1),
        4 => format!("INSERT INTO b_kv VALUES ('{g}', {n}, 'ins-{op}') ON DUPLICATE KEY UPDATE v = 'dup-{op}'"),
        5 => format!("DELETE FROM b_kv WHERE g = '{g}' AND n = {n}"),
        6 => format!("UPDATE IGNORE b_kv SET g = 'moved', n = {op} WHERE g = '{g}' AND n = {n}"),
        _ => format!(
            "BEGIN; UPDATE a_num SET v = 'tx-{op}' WHERE id BETWEEN {id} AND {}; \
             UPDATE b_kv SET v = 'tx-{op}' WHERE g = '{g}' AND n BETWEEN {n} AND {}; COMMIT",
            id + 30,
            n + 5
        ),
    }
}

/// 4 readers, chunks of 50 rows (160 key ranges), a writer busy on both tables before, during and
/// after the copy: every sink ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_snapshot_under_writes_converges_in_every_sink() {
    let h = Harness::create("parsnap").await;
    tables(&h, 5000).await;
    let writer = Writer::start(&h.db, step, 5000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pipeline = h.pipeline("par");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &["--snapshot-parallelism", "4"]));
    h.wait_copied(&pipeline, &mut p).await;
    let log = p.log();
    assert!(log.contains("several connections at once"), "the copy was not parallel:\n{log}");
    let ops = writer.finish().await;
    eprintln!("writer: {ops} statements");
    assert!(ops > 50, "too few writes to mean anything: {ops}");
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
}

/// `kill -9` once part of a parallel copy is applied (writes going on until then), rows changed
/// while it is down, then a restart with another parallelism: the copy resumes after what every sink holds and every
/// sink ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_kill_9_mid_parallel_snapshot_converges() {
    let h = Harness::create("parkill").await;
    tables(&h, 20_000).await;
    let writer = Writer::start(&h.db, step, 20_000).await;
    let pipeline = h.pipeline("parkill");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &["--snapshot-parallelism", "4"]));
    let deadline = Instant::now() + Duration::from_secs(120);
    let seen = loop {
        p.assert_running();
        let cp = h.db.checkpoint(&pipeline).await;
        let last_key = cp.as_ref().and_then(|cp| cp["snapshot"]["current"][1][0]["Int"].as_i64());
        // Early, so that no sink has finished the copy yet (each applies at its own pace).
        if last_key.is_some_and(|k| k >= 3 * 300) {
            break cp.unwrap();
        }
        assert!(Instant::now() < deadline, "no snapshot progress within 120 s; last checkpoint {cp:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    p.sigkill();
    let _ = p.wait_exit(Duration::from_secs(10)).await;
    assert!(!snapshot_complete(&seen), "killed after the copy ended: {seen}");
    eprintln!("killed at {}", seen["snapshot"]);
    // The writer stops here: on this shared machine FerretDB drains a long backlog slowly.
    let ops = writer.finish().await;
    eprintln!("writer: {ops} statements");
    // While it is down: a row the copy holds and one it does not hold yet change.
    for sql in [
        "UPDATE a_num SET v = 'while-down' WHERE id = 3",
        "UPDATE a_num SET v = 'while-down' WHERE id = 59997",
        "DELETE FROM b_kv WHERE g = 'Zeta' AND n = 1",
    ] {
        h.db.exec(sql).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &["--snapshot-parallelism", "3"]));
    let (db, name) = (&h.db, pipeline.as_str());
    wait_for("every table copied", Duration::from_secs(300), || {
        p.assert_running();
        async move { db.checkpoint(name).await.filter(snapshot_complete) }
    })
    .await;
    // The copy resumes after what every sink holds; a sink that had finished it before the kill while
    // another had not makes the run copy the tables online for the one behind instead.
    let log = p.log();
    assert!(
        log.contains("resuming the snapshot after its last applied chunk") || log.contains("online copy planned"),
        "{log}"
    );
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
}
