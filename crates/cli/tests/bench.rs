//! `polyrepl bench` on the running stack, at a tiny size: it runs, reports sane numbers, and leaves no
//! bench database behind. Never a timed test: no assertion on speed.

mod common;

use common::{cassandra_has_keyspace, redis_keys, MYSQL, REDIS};
use mysql_async::prelude::*;
use std::process::Command;

const MONGO: &str = "mongodb://127.0.0.1:1800";
const MONGO_JAVA: &str = "mongodb://127.0.0.1:1801";

/// A rate or duration figure: finite and above zero.
fn positive(report: &serde_json::Value, pointer: &str) -> f64 {
    let v =
        report.pointer(pointer).and_then(|v| v.as_f64()).unwrap_or_else(|| panic!("{pointer} missing in {report:#}"));
    assert!(v.is_finite() && v > 0.0, "{pointer} = {v} is not a finite positive number");
    v
}

#[tokio::test]
async fn bench_runs_reports_sane_numbers_and_cleans_up() {
    let started = std::time::Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_polyrepl"))
        .args(["bench", "--rows", "1000", "--cdc-changes", "1000", "--rounds", "1", "--lag-seconds", "2", "--json"])
        .args(["--sinks", "mongodb,mongo-java,redis,cassandra", "--slow-sink", "mongo-java"])
        .env_remove("POLYREPL_SINKS")
        .output()
        .expect("run polyrepl bench");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "polyrepl bench failed: {}\n{stderr}", output.status);
    eprintln!("polyrepl bench --rows 1000 took {:.1} s", started.elapsed().as_secs_f64());
    assert!(stderr.contains("[bench"), "progress lines go to stderr:\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{}", String::from_utf8_lossy(&output.stdout))
    });

    let sinks = report["sinks"].as_array().expect("sinks");
    let names: Vec<&str> = sinks.iter().map(|s| s["sink"].as_str().unwrap()).collect();
    assert_eq!(names, ["mongodb", "mongo-java", "redis", "cassandra"]);
    for (i, name) in names.iter().enumerate() {
        let at = |field: &str| format!("/sinks/{i}/{field}");
        positive(&report, &at("raw_rows_per_s/median"));
        positive(&report, &at("snapshot_rows_per_s/median"));
        positive(&report, &at("cdc_changes_per_s/median"));
        // Not measured on FerretDB (the stack's mongodb).
        if *name != "mongodb" {
            positive(&report, &at("raw_cdc_changes_per_s/median"));
        }
        for ratio in ["snapshot_over_raw", "cdc_over_raw"] {
            let r = positive(&report, &at(ratio));
            assert!(r <= 10.0, "{} = {r}: a ratio above 10 means a broken measurement", at(ratio));
        }
        let p50 = positive(&report, &at("lag/p50_s"));
        let p99 = positive(&report, &at("lag/p99_s"));
        assert!(p50 <= p99, "lag p50 {p50} > p99 {p99}");
        assert!(report.pointer(&at("lag/samples")).and_then(|v| v.as_u64()).unwrap() > 0);
    }
    positive(&report, "/cdc_all_changes_per_s/median");
    positive(&report, "/decode_changes_per_s/median");
    positive(&report, "/decode_cpu_changes_per_s/median");
    positive(&report, "/snapshot_child/peak_rss_bytes");
    positive(&report, "/streaming_child/max_rss_bytes");
    positive(&report, "/streaming_child/peak_rss_bytes");
    assert!(positive(&report, "/streaming_child/changes") >= 1000.0, "the writer ran");
    // --slow-sink: every other sink's lag was measured beside the slowed one, which fell behind.
    assert_eq!(report.pointer("/beside_slow/slow"), Some(&serde_json::json!("mongo-java")));
    let others = report.pointer("/beside_slow/others").and_then(|v| v.as_array()).expect("beside_slow/others");
    let labels: Vec<&str> = others.iter().map(|o| o[0].as_str().unwrap()).collect();
    assert_eq!(labels, ["mongodb", "redis", "cassandra"]);
    assert!(others.iter().all(|o| o[1]["samples"].as_u64().unwrap() > 0), "{others:?}");
    assert!(positive(&report, "/beside_slow/slow_max_lag_s") > 0.1, "the slowed sink waited 100 ms per batch");
    positive(&report, "/bench_peak_rss_bytes");
    assert_eq!(report["rows"], 1000);
    assert_eq!(report["cdc_changes"], 1000);
    let targets = report["targets"].as_array().unwrap();
    assert!(targets.iter().all(|t| t["met"].is_boolean()), "every target says met or not");

    // Nothing is left behind.
    let db = report["database"].as_str().expect("database").to_string();
    assert!(db.starts_with("polyrepl_bench_"), "{db}");
    let mut conn = mysql_async::Conn::from_url(MYSQL).await.unwrap();
    let left: Vec<String> = conn
        .exec("SELECT schema_name FROM information_schema.schemata WHERE schema_name = ?", (db.clone(),))
        .await
        .unwrap();
    assert!(left.is_empty(), "source database {db} still exists");
    conn.disconnect().await.unwrap();
    for url in [MONGO, MONGO_JAVA] {
        let mongo = mongodb::Client::with_uri_str(url).await.unwrap();
        assert!(!mongo.list_database_names().await.unwrap().contains(&db), "{url}: database {db} still exists");
    }
    let keys = redis_keys(REDIS, &format!("{db}*")).await;
    assert!(keys.is_empty(), "Redis keys left: {:?}", &keys[..keys.len().min(5)]);
    let checkpoints = redis_keys(REDIS, &format!("polyrepl:checkpoint:{db}*")).await;
    assert!(checkpoints.is_empty(), "Redis checkpoints left: {checkpoints:?}");
    assert!(!cassandra_has_keyspace(&db).await, "Cassandra keyspace {db} still exists");
}

#[tokio::test]
async fn bench_kafka_reports_every_path_and_deletes_its_topics() {
    let output = Command::new(env!("CARGO_BIN_EXE_polyrepl"))
        .args([
            "bench",
            "--kafka",
            "--sinks",
            "redis",
            "--rows",
            "100",
            "--cdc-changes",
            "3000",
            "--rounds",
            "1",
            "--json",
        ])
        .env_remove("POLYREPL_SINKS")
        .output()
        .expect("run polyrepl bench --kafka");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "polyrepl bench --kafka failed: {}\n{stderr}", output.status);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is not one JSON document ({e}):\n{}", String::from_utf8_lossy(&output.stdout))
    });
    assert_eq!(report["changes"], 3000);
    assert!(report["messages"].as_u64().unwrap() >= 3000, "a message per change at least: {report:#}");
    for figure in [
        "/capture_changes_per_s/median",
        "/raw_produce_messages_per_s/median",
        "/raw_consume_messages_per_s/median",
        "/capture_over_raw_produce",
        "/apply/0/changes_per_s/median",
        "/apply/1/changes_per_s/median",
        "/run_changes_per_s/median",
        "/message_bytes",
    ] {
        positive(&report, figure);
    }
    assert_eq!(report.pointer("/apply/1/workers"), Some(&serde_json::json!(2)));
    // Every topic it made is deleted (the deletion may take the broker a moment).
    let prefix = stderr.split("database ").nth(1).and_then(|s| s.split_whitespace().next()).expect("database name");
    let prefix = prefix.to_string();
    let left = tokio::task::spawn_blocking(move || {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer =
            rdkafka::config::ClientConfig::new().set("bootstrap.servers", "127.0.0.1:9092").create().unwrap();
        for _ in 0..50 {
            let metadata = c.fetch_metadata(None, std::time::Duration::from_secs(10)).unwrap();
            let left: Vec<String> =
                metadata.topics().iter().map(|t| t.name().to_string()).filter(|t| t.contains(&prefix)).collect();
            if left.is_empty() {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let metadata = c.fetch_metadata(None, std::time::Duration::from_secs(10)).unwrap();
        metadata.topics().iter().map(|t| t.name().to_string()).filter(|t| t.contains(&prefix)).collect()
    })
    .await
    .unwrap();
    assert!(left.is_empty(), "bench topics left: {left:?}");
}
