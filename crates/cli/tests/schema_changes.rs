//! End-to-end: schema changes and online copies, followed by a running `polyrepl run` (the real binary)
//! into MongoDB, Redis and Cassandra while a writer keeps changing rows. Each test ends with a
//! `--stop-at-end` run and `polyrepl verify` over all three sinks finding 0 differences.
//!
//! 1. TRUNCATE, DROP + CREATE with re-used keys, and the gh-ost / pt-online-schema-change cut-over
//!    (`RENAME TABLE t TO _t_del, _t_gho TO t`, then `DROP TABLE _t_del`).
//! 2. ALTERs that change stored values or keys (ADD COLUMN NOT NULL DEFAULT, DROP COLUMN, a DECIMAL
//!    scale that rounds, a primary-key change) are re-copied online; ADD INDEX is not.
//! 3. A table added to the selection and a sink added to an existing pipeline are copied online while
//!    the other tables and sinks keep streaming (no initial snapshot).
//! 4. `kill -9` at random moments of an online copy under a writer: nothing lost.
//! 5. A statement-logged DML on a replicated table stops the run with the statement and the fix.
//!
//! Each test creates its own random source database; the same-named MongoDB database, Redis keys `DB:*`,
//! Cassandra keyspace `DB` and the pipelines' checkpoints are dropped at the end, also after a failure.
//!
//! Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379, Cassandra 127.0.0.1:9042.

mod common;

use common::three_sinks::*;
use common::*;
use mongodb::bson::doc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_drop_create_and_the_online_schema_change_swap_are_followed_under_a_writer() {
    let h = Harness::create("ddl").await;
    let db = &h.db;
    for t in ["flow", "t_trunc", "t_drop", "t"] {
        db.exec(&format!("CREATE TABLE `{t}` (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)")).await;
    }
    rows(db, "flow", 200, "({i}, 'f{i}', {i})").await;
    rows(db, "t_trunc", 300, "({i}, 'old{i}', {i})").await;
    rows(db, "t_drop", 300, "({i}, 'old{i}', {i})").await;
    rows(db, "t", 300, "({i}, 't{i}', {i})").await;
    let pipeline = h.pipeline("ddl");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &[]));
    h.wait_copied(&pipeline, &mut p).await;
    let writer = Writer::start(db, flow_writer_step, 200).await;

    db.exec("TRUNCATE TABLE t_trunc; INSERT INTO t_trunc VALUES (1000, 'after', 1)").await;
    // DROP + CREATE with another shape; keys 1..100 are used again with other values.
    db.exec("DROP TABLE t_drop; CREATE TABLE t_drop (id BIGINT PRIMARY KEY, v VARCHAR(40), extra INT NOT NULL)").await;
    rows(db, "t_drop", 100, "({i}, 'new{i}', 7)").await;
    // The gh-ost cut-over: a ghost table with the new shape, filled, swapped in, the old one dropped.
    db.exec(
        "CREATE TABLE _t_gho LIKE t; ALTER TABLE _t_gho ADD COLUMN note VARCHAR(20) NOT NULL DEFAULT 'ghost';
         INSERT INTO _t_gho (id, v, n) SELECT id, CONCAT('gho', v), n FROM t;
         RENAME TABLE t TO _t_del, _t_gho TO t; DROP TABLE _t_del;
         UPDATE t SET v = 'after swap' WHERE id <= 10; DELETE FROM t WHERE id > 290",
    )
    .await;
    h.wait_log(&mut p, "DROP TABLE `_t_del`").await;
    let ops = writer.finish().await;
    h.wait_copied(&pipeline, &mut p).await;
    let log = p.log();
    for followed in ["TRUNCATE TABLE t_trunc", "DROP TABLE", "CREATE TABLE t_drop", "RENAME TABLE t TO _t_del"] {
        assert!(log.contains(followed), "not followed: {followed}\n{log}");
    }
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    // Nothing is left of the tables that are gone.
    assert!(redis_keys(REDIS, &format!("{}:_t_*", db.name)).await.is_empty(), "Redis keeps _t_del/_t_gho rows");
    for gone in ["_t_del", "_t_gho"] {
        assert_eq!(db.collection(gone).count_documents(doc! {}).await.unwrap(), 0, "MongoDB keeps {gone}");
    }
    eprintln!("schema changes followed under a writer of {ops} statements; verify: every sink equal");
}

/// A writer on `p (id, v, code, price, …)` that keeps to the columns every ALTER below leaves in place.
fn p_writer_step(rng: &mut Rng, next_id: &mut u64, op: u64) -> String {
    match rng.below(10) {
        0..=3 => {
            *next_id += 1;
            format!("INSERT INTO p (id, v, code, price) VALUES ({next_id}, 'ins-{op}', {}, 1.25)", 100_000 + *next_id)
        }
        4..=8 => format!("UPDATE p SET v = 'upd-{op}', price = price + 0.05 WHERE id = {}", 1 + rng.below(*next_id)),
        _ => format!("DELETE FROM p WHERE id = {}", 1 + rng.below(*next_id)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alters_that_change_stored_values_or_keys_are_copied_again_online() {
    let h = Harness::create("alter").await;
    let db = &h.db;
    db.exec(
        "CREATE TABLE p (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT, code BIGINT NOT NULL UNIQUE, price DECIMAL(10,2))",
    )
    .await;
    rows(db, "p", 400, "({i}, 'p{i}', {i}, {i} + 100000, 1.25)").await;
    let pipeline = h.pipeline("alter");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &[]));
    h.wait_copied(&pipeline, &mut p).await;
    let writer = Writer::start(db, p_writer_step, 400).await;
    for alter in [
        "ALTER TABLE p ADD COLUMN c INT NOT NULL DEFAULT 5",
        "ALTER TABLE p DROP COLUMN n",
        "ALTER TABLE p MODIFY price DECIMAL(10,1)",
        "ALTER TABLE p DROP PRIMARY KEY, ADD PRIMARY KEY (code)",
        "ALTER TABLE p ADD INDEX by_v (v)",
    ] {
        db.exec(alter).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    h.wait_log(&mut p, "ALTER TABLE changes no stored value").await;
    let ops = writer.finish().await;
    h.wait_copied(&pipeline, &mut p).await;
    let log = p.log();
    assert!(log.contains("ALTER TABLE changes no stored value"), "ADD INDEX must not copy again:\n{log}");
    // One new layout and copy per value-changing ALTER (a copy still running when the next ALTER comes
    // starts over, so fewer may complete).
    assert_eq!(log.matches("created anew in the sinks").count(), 4, "one per value-changing ALTER:\n{log}");
    assert!(log.contains("online copy complete"), "{log}");
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    eprintln!("4 value-changing ALTERs copied online under a writer of {ops} statements; verify: every sink equal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_added_to_the_selection_and_a_sink_added_are_copied_online() {
    let h = Harness::create("added").await;
    let db = &h.db;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    db.exec("CREATE TABLE later (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    rows(db, "flow", 500, "({i}, 'f{i}', {i})").await;
    rows(db, "later", 500, "({i}, 'l{i}', {i})").await;
    let pipeline = h.pipeline("added");
    let only_flow = format!("{}.flow", db.name);
    let first = h.args("run", &pipeline, Some(&only_flow), &[MONGO, REDIS], &["--stop-at-end"]);
    let (status, log) = run_to_end(&first, Duration::from_secs(120)).await;
    assert!(status.success(), "{log}");
    assert_eq!(redis_keys(REDIS, &format!("{}:later:*", db.name)).await.len(), 0, "not selected yet");

    // Now every table, and a third sink: `later` and Cassandra are copied online while flow streams.
    let writer = Writer::start(db, flow_writer_step, 500).await;
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &SINKS, &[]));
    tokio::time::sleep(Duration::from_secs(2)).await;
    db.exec("UPDATE later SET v = 'changed while copying' WHERE id % 7 = 0").await;
    // Copied once the checkpoint records the new selection with no copy left.
    let selection = format!("{}.*;", db.name);
    wait_for("every table copied under the new selection", Duration::from_secs(120), || {
        p.assert_running();
        let (db, pipeline, selection) = (&h.db, &pipeline, &selection);
        async move {
            db.checkpoint(pipeline).await.filter(|cp| snapshot_complete(cp) && cp["selection"] == selection.as_str())
        }
    })
    .await;
    let ops = writer.finish().await;
    let log = p.log();
    assert!(!log.contains("snapshot begins"), "no initial snapshot: the sinks that stream keep streaming\n{log}");
    assert!(log.contains(&format!("table={}.later", db.name)), "{log}");
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    eprintln!("a newly selected table and a new sink copied online under a writer of {ops} statements; verify: equal");
}

/// A writer on `big (id, v, n)`: mostly updates of existing rows, some inserts and deletes.
fn big_writer_step(rng: &mut Rng, next_id: &mut u64, op: u64) -> String {
    flow_writer_step(rng, next_id, op)
        .replace("INSERT INTO flow VALUES", "INSERT INTO big (id, v, n) VALUES")
        .replace(" flow ", " big ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_online_copies_loses_nothing() {
    let h = Harness::create("killcopy").await;
    let db = &h.db;
    db.exec("CREATE TABLE big (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    for start in (0..20_000u64).step_by(5_000) {
        let values: Vec<String> = (start + 1..=start + 5_000).map(|i| format!("({i}, 'b{i}', {i})")).collect();
        db.exec(&format!("INSERT INTO big VALUES {}", values.join(","))).await;
    }
    let pipeline = h.pipeline("killcopy");
    let args = h.args("run", &pipeline, None, &SINKS, &[]);
    let mut p = Polyrepl::spawn(&args);
    h.wait_copied(&pipeline, &mut p).await;
    let writer = Writer::start(db, big_writer_step, 20_000).await;
    // A value-changing ALTER starts an online copy of 20,000 rows in chunks of 50.
    db.exec("ALTER TABLE big ADD COLUMN c INT NOT NULL DEFAULT 3").await;
    let (mut rng, seed) = Rng::from_entropy();
    let mut kills = 0;
    for _ in 0..4 {
        // Kill only while the checkpoint says a copy is in progress.
        let in_copy = wait_for("an online copy in progress", Duration::from_secs(60), || {
            let db = &h.db;
            let pipeline = &pipeline;
            async move { db.checkpoint(pipeline).await.filter(|cp| !cp["copies"].is_null()) }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(200 + rng.below(1500))).await;
        p.sigkill();
        kills += 1;
        eprintln!("kill -9 #{kills} with the copy at {}", in_copy["copies"]);
        p = Polyrepl::spawn(&args);
    }
    h.wait_copied(&pipeline, &mut p).await;
    let ops = writer.finish().await;
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    eprintln!("FIGURE online copy: {kills} kill -9 during a 20,000-row online copy under {ops} writer statements; verify: every sink equal (seed {seed})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_logged_change_to_a_replicated_table_stops_the_run_with_the_fix() {
    let h = Harness::create("stmt").await;
    let db = &h.db;
    db.exec("CREATE TABLE s (id BIGINT PRIMARY KEY, v VARCHAR(40))").await;
    let pipeline = h.pipeline("stmt");
    let mut p = Polyrepl::spawn(&h.args("run", &pipeline, None, &[MONGO, REDIS], &[]));
    h.wait_copied(&pipeline, &mut p).await;
    db.exec("SET SESSION binlog_format = 'STATEMENT'; INSERT INTO s VALUES (1, 'statement')").await;
    let status = p.wait_exit(Duration::from_secs(60)).await;
    assert!(!status.success());
    let log = p.log();
    assert!(log.contains(&format!("statement-logged change to {}.s", db.name)), "{log}");
    assert!(log.contains("SET GLOBAL binlog_format=ROW"), "the fix is in the error:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polyrepl_snapshot_copies_a_table_again_while_the_run_streams() {
    let h = Harness::create("resnap").await;
    let db = &h.db;
    let (pipeline, addr, p) = h.flow_run_with_http(600).await;
    let writer = Writer::start(db, flow_writer_step, 600).await;
    // Damage MongoDB behind the pipeline's back: a row gone, a row changed.
    let flow = db.collection("flow");
    flow.delete_one(doc! { "_id": 7 }).await.unwrap();
    flow.update_one(doc! { "_id": 8 }, doc! { "$set": { "v": "tampered" } }).await.unwrap();

    let snapshot = |table: &str| {
        let args = ["snapshot", "--metrics-addr", &addr, "--table", &format!("{}.{table}", db.name)].map(String::from);
        async move { run_to_end(&args, Duration::from_secs(60)).await }
    };
    let (status, out) = snapshot("flow").await;
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("copying {}.flow again", db.name)), "{out}");
    let (status, out) = snapshot("nope").await;
    assert_eq!(status.code(), Some(1), "a table the pipeline does not replicate is refused:\n{out}");
    assert!(out.contains("not replicated by this pipeline"), "{out}");
    let metrics = wait_for("the copy to complete", Duration::from_secs(120), || {
        let addr = addr.clone();
        async move {
            let port: u16 = addr.rsplit(':').next()?.parse().ok()?;
            let (_, text) = http_get(port, "/metrics")?;
            text.contains("polyrepl_online_copies_completed_total 1").then_some(text)
        }
    })
    .await;
    assert!(metrics.contains("polyrepl_online_copies_completed_total 1"));
    let ops = writer.finish().await;
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    eprintln!("polyrepl snapshot repaired a damaged table online under a writer of {ops} statements");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_repair_through_the_running_pipeline_never_overwrites_newer_changes() {
    let h = Harness::create("repair").await;
    let db = &h.db;
    let (pipeline, addr, p) = h.flow_run_with_http(300).await;
    // Damage two sinks behind the pipeline's back while a writer keeps changing the same rows.
    let writer = Writer::start(db, flow_writer_step, 300).await;
    let flow = db.collection("flow");
    for id in [3, 5, 7] {
        flow.delete_one(doc! { "_id": id }).await.unwrap();
    }
    flow.update_one(doc! { "_id": 8 }, doc! { "$set": { "v": "tampered" } }).await.unwrap();
    let client = redis::Client::open(REDIS).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{}:flow:9", db.name))
        .arg("v")
        .arg("tampered")
        .query_async(&mut redis)
        .await
        .unwrap();

    let mut verify = h.args("verify", &pipeline, None, &SINKS, &["--repair", "--through", &addr]);
    verify.extend(["--name".to_string(), pipeline.clone()]);
    let (status, out) = run_to_end(&verify, Duration::from_secs(180)).await;
    assert_eq!(
        status.code(),
        Some(0),
        "verify --repair --through did not end consistent:\n{out}\n--- run:\n{}",
        p.log()
    );
    assert!(p.log().contains("repair read"), "the repairs went through the pipeline:\n{}", p.log());
    let ops = writer.finish().await;
    h.stop_catch_up_and_verify(p, &pipeline, &SINKS).await;
    eprintln!("verify --repair --through repaired MongoDB and Redis under a writer of {ops} statements; verify: equal");
}
