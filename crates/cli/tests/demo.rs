//! `polyrepl demo --interval 1 --loops 5` on the suite's stack prints five loops, each verified in
//! MongoDB, Redis and Cassandra.

use std::process::Command;

#[test]
fn five_loops_each_verified() {
    let out = Command::new(env!("CARGO_BIN_EXE_polyrepl"))
        .args(["demo", "--interval", "1", "--loops", "5", "--log", "warn"])
        .output()
        .expect("run polyrepl demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("--- LOOP: ").count(), 5, "{stdout}");
    assert_eq!(stdout.matches("Data in mysql:").count(), 5);
    for sink in ["mongo", "redis", "cassandra"] {
        assert_eq!(stdout.matches(&format!("verified: {sink} ✔")).count(), 5, "{stdout}");
        assert_eq!(stdout.matches(&format!("Data in {sink}:")).count(), 5);
    }
    // Each loop lists the same rows on every side: the blocks between the headers are equal.
    for block in stdout.split("--- LOOP: ").skip(1) {
        let mysql = block.split("Data in mysql:\n").nth(1).unwrap().split("Data in mongo:\n").next().unwrap();
        let mongo = block.split("Data in mongo:\n").nth(1).unwrap().split("Data in redis:\n").next().unwrap();
        let redis = block.split("Data in redis:\n").nth(1).unwrap().split("Data in cassandra:\n").next().unwrap();
        let cassandra = block.split("Data in cassandra:\n").nth(1).unwrap().split("verified:").next().unwrap();
        assert_eq!(mysql, mongo, "{block}");
        assert_eq!(mysql, redis, "{block}");
        assert_eq!(mysql, cassandra, "{block}");
        assert!(mysql.lines().count() >= 1);
        for line in mysql.lines() {
            let (ts, uuid) = line.split_once("  ").unwrap();
            assert_eq!(ts.len(), "2025-11-29 12:00:00.123456".len(), "{line}");
            assert_eq!(uuid.len(), 36, "{line}");
        }
    }
}
