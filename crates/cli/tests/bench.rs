//! `polyrepl bench` on the running stack, at a tiny size: it runs, reports sane numbers, and leaves no
//! bench database behind. Never a timed test: no assertion on speed.

mod common;

use common::{cassandra_has_keyspace, redis_keys, MYSQL, REDIS};
use mysql_async::prelude::*;
use std::process::Command;

const MONGO: &str = "mongodb://127.0.0.1:1800";

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
    assert_eq!(names, ["mongodb", "redis", "cassandra"]);
    for i in 0..sinks.len() {
        let at = |field: &str| format!("/sinks/{i}/{field}");
        positive(&report, &at("raw_rows_per_s/median"));
        positive(&report, &at("snapshot_rows_per_s/median"));
        positive(&report, &at("cdc_changes_per_s/median"));
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
    let mongo = mongodb::Client::with_uri_str(MONGO).await.unwrap();
    assert!(!mongo.list_database_names().await.unwrap().contains(&db), "MongoDB database {db} still exists");
    let keys = redis_keys(REDIS, &format!("{db}*")).await;
    assert!(keys.is_empty(), "Redis keys left: {:?}", &keys[..keys.len().min(5)]);
    let checkpoints = redis_keys(REDIS, &format!("polyrepl:checkpoint:{db}*")).await;
    assert!(checkpoints.is_empty(), "Redis checkpoints left: {checkpoints:?}");
    assert!(!cassandra_has_keyspace(&db).await, "Cassandra keyspace {db} still exists");
}
