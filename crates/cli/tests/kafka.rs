//! End-to-end: `polyrepl run` into Kafka (Debezium-format topics) and Redis, with a writer running and
//! the run killed with SIGKILL three times; then `polyrepl verify` finds both sinks equal to the source
//! (for Kafka: what the topic says each key holds, read with read_committed), and the topic holds every
//! change exactly once — no event repeated by a restart.
//!
//! Servers: MariaDB 127.0.0.1:5600, Redis 127.0.0.1:6379, Kafka 127.0.0.1:9092 (`polyrepl stack up
//! --service kafka`; the test suite starts it).

mod common;

use common::three_sinks::*;
use common::*;
use std::collections::BTreeMap;
use std::time::Duration;

const KAFKA: &str = "kafka://127.0.0.1:9092";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_holds_every_change_once_across_kill_9() {
    let h = Harness::create("kafka").await;
    let db = &h.db;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    rows(db, "flow", 300, "({i}, 'f{i}', {i})").await;
    let pipeline = h.pipeline("kafka");
    let sinks = [KAFKA, REDIS];
    let args = h.args("run", &pipeline, None, &sinks, &["--batch-changes", "50"]);
    let mut p = Polyrepl::spawn(&args);
    let writer = Writer::start(db, flow_writer_step, 300).await;
    for kill in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500 + 700 * kill)).await;
        p.assert_running();
        p.sigkill();
        p = Polyrepl::spawn(&args);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ops = writer.finish().await;
    eprintln!("writer: {ops} statements");
    h.stop_catch_up_and_verify(p, &pipeline, &sinks).await;

    // Every event in the topic once: (source position, index in its transaction, key, op) never repeats.
    let topic = format!("polyrepl.{}.flow", db.name);
    let records = tokio::task::spawn_blocking(move || polyrepl_kafka::topics::read_all("127.0.0.1:9092", &topic))
        .await
        .unwrap()
        .expect("read the table's topic");
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut events = 0;
    for r in &records {
        let Some(value) = &r.value else { continue }; // a tombstone after a delete
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let s = &v["source"];
        let id = format!("{}:{}:{}:{} {key} {}", s["file"], s["pos"], s["gtid"], s["row"], v["op"]);
        *seen.entry(id).or_default() += 1;
        events += 1;
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &n)| n > 1).take(5).collect();
    assert!(repeated.is_empty(), "events repeated in the topic: {repeated:?}");
    // Not vacuous: every row the table holds now came through the topic. (How many events a sink got
    // depends on where it joined: one whose first commit came after a kill gets the table copied
    // online, not its history.)
    let live = db.source_docs("flow").await.len();
    assert!(events >= live && live >= 300, "{events} events for {live} rows ({ops} statements)");
    eprintln!("kafka: {events} events, none repeated, after 3 SIGKILLs");
}

/// `polyrepl apply` as worker `group` for the database's topics into `sinks`.
fn apply_args(db: &str, group: &str, sinks: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "apply",
        "--source",
        KAFKA,
        "--topics",
        &format!("polyrepl.{db}.*"),
        "--group",
        group,
        "--schema-source",
        MYSQL,
        "--tables",
        &format!("{db}.*"),
    ]
    .map(String::from)
    .to_vec();
    for s in sinks {
        args.extend(["--sink".to_string(), s.to_string()]);
    }
    args
}

/// Runs `verify` until it finds every sink equal to the source (the apply `worker` catching up), for at
/// most `timeout`; panics with the last report and the worker's log.
async fn verify_until_consistent(verify: &[String], worker: &mut Polyrepl, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        worker.assert_running();
        let (status, out) = run_to_end(verify, Duration::from_secs(180)).await;
        if status.code() == Some(0) {
            eprintln!("{}", out.lines().filter(|l| l.contains('→')).collect::<Vec<_>>().join("\n"));
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sinks did not converge:\n{out}\n--- worker log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_into_kafka_and_two_apply_workers_converge_across_kill_9() {
    let h = Harness::create("kapply").await;
    let db = &h.db;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40), n INT)").await;
    rows(db, "flow", 300, "({i}, 'f{i}', {i})").await;
    let pipeline = h.pipeline("kcap");
    // Two partitions per table topic, so two workers share them.
    let capture_sink = format!("{KAFKA}?partitions=2");
    let capture = h.args("run", &pipeline, None, &[&capture_sink], &["--batch-changes", "50"]);
    let group = unique("group");
    let workers_sinks = [REDIS, CASSANDRA, MONGO];
    let apply = apply_args(&db.name, &group, &workers_sinks);
    let mut run = Polyrepl::spawn(&capture);
    let mut first = Polyrepl::spawn(&apply);
    let mut second = Polyrepl::spawn(&apply);
    let writer = Writer::start(db, flow_writer_step, 300).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // A worker dies; another takes its place. The capture dies twice.
    first.assert_running();
    first.sigkill();
    // The worker that stays serves /metrics and /status, as `run` does.
    let http_port = free_port();
    let http_addr = format!("127.0.0.1:{http_port}");
    let mut third = Polyrepl::spawn(&[apply.clone(), vec!["--http-addr".into(), http_addr.clone()]].concat());
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        run.assert_running();
        run.sigkill();
        run = Polyrepl::spawn(&capture);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    second.assert_running();
    second.sigkill();
    let ops = writer.finish().await;
    eprintln!("writer: {ops} statements");
    run.sigterm();
    run.wait_exit(Duration::from_secs(60)).await;
    let (status, log) =
        run_to_end(&h.args("run", &pipeline, None, &[&capture_sink], &["--stop-at-end"]), Duration::from_secs(120))
            .await;
    assert!(status.success(), "the capture's catch-up run failed:\n{log}");

    // The remaining worker takes every partition and catches up: verify against the source.
    let verify = h.args("verify", &pipeline, None, &[REDIS, CASSANDRA, MONGO, &capture_sink], &[]);
    verify_until_consistent(&verify, &mut third, Duration::from_secs(180)).await;
    let (status, report) = run_to_end(
        &["status", "--http-addr", &http_addr, "--interval", "0"].map(String::from),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(status.code(), Some(0), "status of the apply worker:\n{report}");
    for sink in ["redis://", "cassandra://", "mongodb://"] {
        assert!(report.contains(sink), "{sink} missing in the worker's status:\n{report}");
    }
    let (code, metrics) = http_get(http_port, "/metrics").expect("the worker's /metrics");
    assert_eq!(code, 200);
    let applied: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("polyrepl_sink_changes_applied_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(applied > 0.0, "the worker counted no applied change:\n{metrics}");
    third.sigterm();
    let status = third.wait_exit(Duration::from_secs(60)).await;
    assert!(status.success(), "the worker did not stop cleanly:\n{}", third.log());
}

/// A change event as Debezium's MySQL connector writes it with the JSON converter (`schemas.enable` off),
/// for `inventory.customers (id INT, first_name, last_name, email VARCHAR)` of database `db`.
fn debezium_event(db: &str, op: &str, pos: u64, before: serde_json::Value, after: serde_json::Value) -> String {
    serde_json::json!({
        "before": before,
        "after": after,
        "source": {
            "version": "2.7.3.Final", "connector": "mysql", "name": "dbserver1", "ts_ms": 1_700_000_000_000i64,
            "snapshot": if op == "r" { "true" } else { "false" }, "db": db, "sequence": null, "table": "customers",
            "server_id": 223344, "gtid": null, "file": "mysql-bin.000003", "pos": pos, "row": 0, "thread": 7,
            "query": null
        },
        "op": op,
        "ts_ms": 1_700_000_000_123i64,
        "transaction": null
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_reads_debeziums_own_change_events() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let h = Harness::create("dbz").await;
    let db = &h.db;
    // The source as it ends: apply takes the schema from it, and verify compares with it.
    db.exec(
        "CREATE TABLE customers (id INT PRIMARY KEY, first_name VARCHAR(255), last_name VARCHAR(255), email VARCHAR(255));
         INSERT INTO customers VALUES (1001, 'Sally', 'Thomas', 'sally.thomas@example.com'),
                                      (1003, 'Edward', 'Walker', 'ed@walker.com')",
    )
    .await;
    let row = |id: i64, first: &str, last: &str, email: &str| serde_json::json!({"id": id, "first_name": first, "last_name": last, "email": email});
    let null = serde_json::Value::Null;
    let topic = format!("dbserver1.{}.customers", db.name);
    // A snapshot read, an insert, an update, a delete and its tombstone, another insert.
    let events: Vec<(i64, Option<String>)> = vec![
        (1001, Some(debezium_event(&db.name, "r", 154, null.clone(), row(1001, "Sally", "Thomas", "sally@old.com")))),
        (
            1002,
            Some(debezium_event(&db.name, "c", 400, null.clone(), row(1002, "George", "Bailey", "gbailey@foobar.com"))),
        ),
        (
            1001,
            Some(debezium_event(
                &db.name,
                "u",
                700,
                row(1001, "Sally", "Thomas", "sally@old.com"),
                row(1001, "Sally", "Thomas", "sally.thomas@example.com"),
            )),
        ),
        (
            1002,
            Some(debezium_event(&db.name, "d", 900, row(1002, "George", "Bailey", "gbailey@foobar.com"), null.clone())),
        ),
        (1002, None),
        (1003, Some(debezium_event(&db.name, "c", 1100, null.clone(), row(1003, "Edward", "Walker", "ed@walker.com")))),
    ];
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("allow.auto.create.topics", "true")
        .create()
        .unwrap();
    for (id, value) in &events {
        let key = serde_json::json!({"id": id}).to_string();
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).key(&key);
        if let Some(v) = value {
            record = record.payload(v);
        }
        producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("produce a Debezium event");
    }
    let sinks = [REDIS, CASSANDRA, MONGO];
    let mut args: Vec<String> = apply_args(&db.name, &unique("dbz"), &sinks);
    let at = args.iter().position(|a| a == "--topics").unwrap() + 1;
    args[at] = format!("dbserver1.{}.*", db.name);
    let mut worker = Polyrepl::spawn(&args);
    let verify = h.args("verify", "unused", None, &sinks, &[]);
    verify_until_consistent(&verify, &mut worker, Duration::from_secs(120)).await;
    worker.sigterm();
    assert!(worker.wait_exit(Duration::from_secs(60)).await.success(), "{}", worker.log());
}
