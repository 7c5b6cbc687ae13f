//! The operator's surface of the binary, on real servers:
//! 1. `completions bash|zsh|fish` and `man` describe every subcommand.
//! 2. `--log-format json` writes one JSON object per line on stderr; `--log-level` beats RUST_LOG, which
//!    beats the default.
//! 3. `status` against a running pipeline: exit 0 with every sink and table shown; once a sink is down
//!    (our own `redis-server`, killed) and retrying, exit 1; with nothing listening, exit 2.
//! 4. `demo` prints its loops alone on stdout, its logs going to a file in the state directory unless
//!    --verbose.
//!
//! Each test creates its own random source database; its MongoDB counterpart and the checkpoints are
//! dropped at the end. Servers: MariaDB 127.0.0.1:5600, FerretDB 127.0.0.1:1800, Redis 127.0.0.1:6379
//! (the demo), Cassandra 127.0.0.1:9042 (the demo), plus the `redis-server` binary for test 3.

mod common;

use common::*;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_polyrepl");

/// `polyrepl ARGS` to its end, with no log setting inherited from the caller's environment.
fn polyrepl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args).env_remove("POLYREPL_LOG").env_remove("RUST_LOG").env_remove("POLYREPL_LOG_FORMAT");
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run polyrepl")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const SUBCOMMANDS: [&str; 10] =
    ["stack", "run", "demo", "bench", "verify", "snapshot", "apply", "status", "completions", "man"];

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish"] {
        let out = polyrepl(&["completions", shell], &[]);
        assert!(out.status.success(), "completions {shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        assert!(script.len() > 1000, "completions {shell} is nearly empty:\n{script}");
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "completions {shell} never mentions {sub}");
        }
        assert!(script.contains("http-addr") && script.contains("log-format"), "{shell}: flags missing");
    }
    let out = polyrepl(&["man"], &[]);
    assert!(out.status.success(), "man: {}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH polyrepl 1"), "{page}");
    for sub in SUBCOMMANDS {
        assert!(page.contains(&format!(".SH \"POLYREPL {}\"", sub.to_uppercase())), "man: no section for {sub}");
    }
    assert!(page.contains(".SH \"POLYREPL STACK UP\""), "man: no section for stack up");
    assert!(page.contains("\\-\\-http\\-addr") && page.contains("\\-\\-log\\-level"), "man: flags missing");
    let out = polyrepl(&["completions", "tcsh"], &[]);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is refused");
}

#[tokio::test]
async fn json_logs_and_which_log_level_wins() {
    let db = TestDb::create("oplog").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))").await;
    db.exec("INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let pipeline = db.pipeline("oplog");
    let run = db.run_args(&pipeline, &["--stop-at-end"]);
    let run: Vec<&str> = run.iter().map(String::as_str).collect();
    let with = |extra: &[&'static str]| -> Vec<&str> { extra.iter().copied().chain(run.iter().copied()).collect() };

    let out = polyrepl(&with(&["--log-format", "json"]), &[]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "run failed:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines at the default level");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{stderr}"));
        assert!(v.is_object() && v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"level\":\"INFO\"")), "the default level is info:\n{stderr}");

    // The flag beats RUST_LOG; RUST_LOG beats the default; the older --log still works.
    let info_lines = |o: &Output| text(&o.stderr).lines().filter(|l| l.contains(" INFO ")).count();
    let out = polyrepl(&with(&["--log-level", "warn"]), &[("RUST_LOG", "debug")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(info_lines(&out), 0, "--log-level warn lost to RUST_LOG:\n{}", text(&out.stderr));
    let out = polyrepl(&run, &[("RUST_LOG", "warn")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(info_lines(&out), 0, "RUST_LOG=warn was ignored:\n{}", text(&out.stderr));
    let out = polyrepl(&with(&["--log", "warn"]), &[]);
    assert_eq!(info_lines(&out), 0, "--log warn was ignored:\n{}", text(&out.stderr));
    let out = polyrepl(&run, &[]);
    assert!(info_lines(&out) > 0, "no INFO line by default:\n{}", text(&out.stderr));
    let out = polyrepl(&with(&["--log-level", "polyrepl=lots"]), &[]);
    assert_eq!(out.status.code(), Some(2), "a bad --log-level must be refused:\n{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--log-level"), "{}", text(&out.stderr));
}

/// The state of the sink whose name contains `needle` in a `/status` reading on `port`.
fn sink_state(port: u16, needle: &str) -> Option<String> {
    let (code, body) = http_get(port, "/status")?;
    let status: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
    let sinks = status["sinks"].as_array()?;
    let sink = sinks.iter().find(|s| s["name"].as_str().is_some_and(|n| n.contains(needle)))?;
    sink["state"].as_str().map(String::from)
}

#[tokio::test]
async fn status_shows_every_sink_and_says_when_one_is_not_healthy() {
    let db = TestDb::create("opstatus").await;
    db.exec("CREATE TABLE flow (id BIGINT PRIMARY KEY, v VARCHAR(40))").await;
    db.exec("INSERT INTO flow VALUES (1, 'a'), (2, 'b'), (3, 'c')").await;
    let mut redis = OwnRedis::start().await;
    let pipeline = db.pipeline("opstatus");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let sinks = [MONGO.to_string(), redis.url()];
    let sinks: Vec<&str> = sinks.iter().map(String::as_str).collect();
    // The older flag name on `run`, the new one on `status`: both must keep working.
    let args = polyrepl_args(
        "run",
        MYSQL,
        &format!("{}.*", db.name),
        &sinks,
        Some(&pipeline),
        &["--metrics-addr", &addr, "--batch-delay-ms", "10"],
    );
    let mut p = Polyrepl::spawn(&args);
    wait_for("the run to copy the table", Duration::from_secs(120), || {
        p.assert_running();
        let db = &db;
        let pipeline = &pipeline;
        async move { db.checkpoint(pipeline).await.filter(snapshot_complete) }
    })
    .await;
    let redis_name = format!("127.0.0.1:{}", redis.port);
    wait_for("both sinks ok", Duration::from_secs(60), || {
        let ok = sink_state(port, "mongodb://").as_deref() == Some("ok")
            && sink_state(port, &redis_name).as_deref() == Some("ok");
        async move { ok.then_some(()) }
    })
    .await;

    let out = polyrepl(&["status", "--http-addr", &addr, "--interval", "0.2"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "status of a healthy run:\n{stdout}\n{}", text(&out.stderr));
    for needle in ["SINK", "STATE", "LAG", "CHANGES/S", "POSITION", "mongodb://127.0.0.1:1800", &redis_name] {
        assert!(stdout.contains(needle), "status does not show {needle}:\n{stdout}");
    }
    let table_line = stdout.lines().find(|l| l.starts_with(&format!("{}.flow", db.name)));
    assert!(table_line.is_some(), "status does not show the table:\n{stdout}");
    assert!(stdout.contains("healthy: every sink is ok"), "{stdout}");
    let out = polyrepl(&["status", "--metrics-addr", &addr, "--json"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_eq!(json["sinks"].as_array().map(Vec::len), Some(2), "{json}");
    assert!(json["sinks"].as_array().unwrap().iter().all(|s| s["state"] == "ok"), "{json}");

    // The Redis sink goes away; the next change makes it retry.
    redis.kill();
    db.exec("INSERT INTO flow VALUES (4, 'd')").await;
    wait_for("the Redis sink to be retrying", Duration::from_secs(60), || {
        p.assert_running();
        let retrying = sink_state(port, &redis_name).as_deref() == Some("retrying");
        async move { retrying.then_some(()) }
    })
    .await;
    let out = polyrepl(&["status", "--http-addr", &addr, "--interval", "0"], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "status with a retrying sink:\n{stdout}\n{}", text(&out.stderr));
    let redis_line = stdout.lines().find(|l| l.contains(&redis_name) && l.starts_with("redis://"));
    assert!(redis_line.is_some_and(|l| l.contains("retrying")), "{stdout}");
    assert!(stdout.contains("not healthy:") && stdout.contains("is retrying"), "{stdout}");
    let out = polyrepl(&["status", "--http-addr", &addr, "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "status --json with a retrying sink");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    let redis_status = json["sinks"].as_array().unwrap().iter().find(|s| s["state"] == "retrying").unwrap();
    // It applied the snapshot only (no commit time): its lag is not "since 1970".
    assert!(redis_status["lag_seconds"].as_f64().unwrap() < 3600.0, "{json}");
    p.sigkill();
}

#[test]
fn status_with_nothing_listening_exits_2_and_names_the_address() {
    let addr = format!("127.0.0.1:{}", free_port());
    let out = polyrepl(&["status", "--http-addr", &addr], &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&addr) && stderr.contains("--http-addr"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let out = polyrepl(&["status"], &[]);
    assert_eq!(out.status.code(), Some(2), "no address given");
    assert!(text(&out.stderr).contains("--http-addr"), "{}", text(&out.stderr));
}

/// A line `demo` prints for a loop: a header, a side's title, a row, or a verdict.
fn is_loop_line(line: &str) -> bool {
    let row = line.split_once("  ").is_some_and(|(ts, uuid)| {
        ts.len() == "2025-11-29 12:00:00.123456".len() && uuid.len() == 36 && ts.starts_with("20")
    });
    row || line.starts_with("--- LOOP: ")
        || line.starts_with("Data in ")
        || line.starts_with("verified: ")
        || line == "(missing)"
}

#[test]
fn demo_prints_its_loops_alone_and_logs_to_the_state_directory() {
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let demo = [
        "demo",
        "--interval",
        "0.5",
        "--loops",
        "2",
        "--verify-timeout",
        "60",
        "--sinks",
        "mongo,redis",
        "--state-dir",
        state_dir,
    ];
    let out = polyrepl(&demo, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(stdout.matches("--- LOOP: ").count(), 2, "{stdout}");
    for line in stdout.lines() {
        assert!(is_loop_line(line), "demo printed something else than its loops on stdout: {line:?}\n{stdout}");
    }
    let log_path = state.path().join("demo.log");
    assert!(stderr.lines().next().is_some_and(|l| l.contains(&log_path.display().to_string())), "{stderr}");
    assert!(!stderr.contains(" INFO "), "log lines reached the terminal:\n{stderr}");
    let log = std::fs::read_to_string(&log_path).expect("demo.log");
    assert!(log.contains(" INFO "), "the log file has no INFO line:\n{log}");

    // --verbose: the logs on stderr as before, no log file.
    let verbose_state = tempfile::tempdir().unwrap();
    let mut demo = demo.to_vec();
    let last = demo.len() - 1;
    demo[last] = verbose_state.path().to_str().unwrap();
    demo.push("--verbose");
    let out = polyrepl(&demo, &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "demo --verbose failed:\n{stdout}\n{stderr}");
    assert!(stdout.lines().all(is_loop_line), "{stdout}");
    assert!(stderr.contains(" INFO "), "--verbose shows the logs:\n{stderr}");
    assert!(!verbose_state.path().join("demo.log").exists());
}
