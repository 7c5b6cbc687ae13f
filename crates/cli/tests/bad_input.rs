//! Bad input, end to end: every wrong URL, password, privilege, server setting, table, type, config
//! file or sink gets a one-paragraph error that says what is wrong and how to fix it, a non-zero exit,
//! no password in any output, and nothing written to any sink.
//!
//! Servers: the shared stack (MariaDB :5600, FerretDB :1800, Redis :6379, Cassandra :9042), plus a
//! dedicated MariaDB for the server-setting cases (its GLOBAL settings are changed).

mod common;

use common::*;
use mysql_async::prelude::*;
use std::time::Duration;

/// A password no output may ever contain.
fn secret() -> String {
    format!("Pw-{}-x", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// One bad invocation and the phrases its error must contain.
struct Case {
    what: &'static str,
    args: Vec<String>,
    expect: Vec<String>,
}

fn case(what: &'static str, args: &[&str], expect: &[&str]) -> Case {
    Case {
        what,
        args: args.iter().map(|s| s.to_string()).collect(),
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// Runs every case; returns the failures (empty when all behaved).
async fn check_cases(cases: &[Case], secret: &str) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let (status, log) = run_to_end(&c.args, Duration::from_secs(60)).await;
        let error_lines: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
        eprintln!("[{}] exit {:?}: {}", c.what, status.code(), error_lines.last().unwrap_or(&"(no error line)"));
        if status.success() || status.code().is_none() {
            failures.push(format!("[{}] expected a failing exit, got {status}:\n{log}", c.what));
        }
        for phrase in &c.expect {
            if !log.contains(phrase.as_str()) {
                failures.push(format!("[{}] the error should contain {phrase:?}:\n{log}", c.what));
            }
        }
        if log.contains(secret) {
            failures.push(format!("[{}] the password was printed:\n{log}", c.what));
        }
        if log.contains("panicked") || log.contains("RUST_BACKTRACE") {
            failures.push(format!("[{}] a panic instead of an error:\n{log}", c.what));
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_a_clear_error_and_nothing_is_written() {
    let db = TestDb::create("bad").await;
    db.exec("CREATE TABLE ok (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO ok VALUES (1, 'one'), (2, 'two')").await;
    db.exec("CREATE TABLE nopk (v INT)").await;
    db.exec("CREATE TABLE geo (id INT PRIMARY KEY, g POINT)").await;
    db.exec("CREATE TABLE dot (id INT PRIMARY KEY, `a.b` INT)").await;
    let pw = secret();
    let limited = format!("lim_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    db.exec(&format!(
        "CREATE USER '{limited}'@'%' IDENTIFIED BY '{pw}'; GRANT SELECT ON `{}`.* TO '{limited}'@'%'",
        db.name
    ))
    .await;

    let d = db.name.as_str();
    let ok = format!("{d}.ok");
    let pipeline = format!("{d}_pipe"); // every case runs under this name: no sink may get a checkpoint for it
    let run = |source: &str, tables: &str, sinks: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["run", "--source", source, "--tables", tables, "--name", &pipeline]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for s in sinks {
            a.extend(["--sink".to_string(), s.to_string()]);
        }
        a
    };
    let src_pw = format!("mysql://root:{pw}@127.0.0.1:5600");
    let src_port = format!("mysql://root:{pw}@127.0.0.1:notaport");
    let src_pg = format!("postgres://root:{pw}@127.0.0.1:5432");
    let src_down = format!("mysql://root@127.0.0.1:{}", free_port());
    let src_limited = format!("mysql://{limited}:{pw}@127.0.0.1:5600");
    let redis_pw = format!("redis://:{pw}@127.0.0.1:6379");
    let mongo_pw = format!("mongodb://someone:{pw}@127.0.0.1:1800");
    let dir = tempfile::tempdir().unwrap();
    let bad_toml = dir.path().join("syntax.toml");
    std::fs::write(&bad_toml, "source = \"mysql://root@127.0.0.1:5600\ntables = [").unwrap();
    let bad_type = dir.path().join("type.toml");
    std::fs::write(
        &bad_type,
        format!("source = \"{src_pw}\"\ntables = [\"{ok}\"]\nsinks = [\"{MONGO}\"]\nbatch_changes = \"many\"\n"),
    )
    .unwrap();
    let missing = dir.path().join("missing.toml");
    let cfg = |path: &std::path::Path| vec!["run".to_string(), "--config".to_string(), path.display().to_string()];

    let cases = vec![
        Case {
            what: "source without scheme",
            args: run("127.0.0.1:5600", &ok, &[MONGO]),
            expect: vec!["invalid source URL".into(), "mysql://".into()],
        },
        Case {
            what: "source port not a number",
            args: run(&src_port, &ok, &[MONGO]),
            expect: vec!["invalid port".into()],
        },
        Case {
            what: "source of another database kind",
            args: run(&src_pg, &ok, &[MONGO]),
            expect: vec!["mysql:// or mariadb://".into()],
        },
        Case {
            what: "source not running",
            args: run(&src_down, &ok, &[MONGO]),
            expect: vec!["cannot reach".into(), "stack up".into()],
        },
        Case {
            what: "wrong source password",
            args: run(&src_pw, &ok, &[MONGO]),
            expect: vec!["refused user 'root'".into(), "password".into()],
        },
        Case {
            what: "missing REPLICATION SLAVE",
            args: run(&src_limited, &ok, &[MONGO]),
            expect: vec!["REPLICATION SLAVE".into(), "GRANT".into(), limited.clone()],
        },
        Case {
            what: "unknown table",
            args: run(MYSQL, &format!("{d}.nosuch"), &[MONGO]),
            expect: vec!["matches no table".into(), format!("{d}.nosuch")],
        },
        Case {
            what: "table without primary key",
            args: run(MYSQL, &format!("{d}.nopk"), &[MONGO]),
            expect: vec!["no primary key".into(), format!("{d}.nopk")],
        },
        Case {
            what: "unsupported column type",
            args: run(MYSQL, &format!("{d}.geo"), &[MONGO]),
            expect: vec![format!("{d}.geo.g"), "POINT".into()],
        },
        Case {
            what: "column a sink cannot name",
            args: run(MYSQL, &format!("{d}.dot"), &[MONGO]),
            expect: vec!["'a.b'".into(), "cannot be a MongoDB field name".into()],
        },
        Case {
            what: "unknown sink scheme",
            args: run(MYSQL, &ok, &["ftp://127.0.0.1:21"]),
            expect: vec!["not a sink URL".into()],
        },
        Case {
            what: "MongoDB URL with a bad port",
            args: run(MYSQL, &ok, &["mongodb://127.0.0.1:notaport"]),
            expect: vec!["port".into()],
        },
        Case {
            what: "Redis URL with a bad port",
            args: run(MYSQL, &ok, &["redis://127.0.0.1:99999"]),
            expect: vec!["Redis URL".into()],
        },
        Case {
            what: "Cassandra URL without host",
            args: run(MYSQL, &ok, &["cassandra://"]),
            expect: vec!["names no host".into()],
        },
        Case {
            what: "mongodb:// pointing at Redis",
            args: run(MYSQL, &ok, &["mongodb://127.0.0.1:6379"]),
            expect: vec!["not a MongoDB server".into()],
        },
        Case {
            what: "redis:// pointing at MongoDB",
            args: run(MYSQL, &ok, &["redis://127.0.0.1:1800"]),
            expect: vec!["not a Redis server".into()],
        },
        Case {
            what: "cassandra:// pointing at Redis, after a good sink",
            args: run(MYSQL, &ok, &[MONGO, "cassandra://127.0.0.1:6379"]),
            expect: vec!["not a Cassandra server".into()],
        },
        Case {
            what: "wrong Redis password",
            args: run(MYSQL, &ok, &[REDIS, &redis_pw]),
            expect: vec!["password".into()],
        },
        Case {
            what: "wrong MongoDB credentials",
            args: run(MYSQL, &ok, &[&mongo_pw]),
            expect: vec!["uthenticat".into()],
        },
        Case {
            what: "config file that is not TOML",
            args: cfg(&bad_toml),
            expect: vec!["is not valid".into(), bad_toml.display().to_string()],
        },
        Case { what: "config value of the wrong type", args: cfg(&bad_type), expect: vec!["batch_changes".into()] },
        Case { what: "config file missing", args: cfg(&missing), expect: vec!["cannot read the config file".into()] },
    ];
    let mut failures = check_cases(&cases, &pw).await;

    // With REPLICATION SLAVE granted, the next missing privilege is named.
    db.exec(&format!("GRANT REPLICATION SLAVE ON *.* TO '{limited}'@'%'")).await;
    let next = [case(
        "missing BINLOG MONITOR",
        &run(&src_limited, &ok, &[MONGO]).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        &["BINLOG MONITOR", "GRANT"],
    )];
    failures.extend(check_cases(&next, &pw).await);
    db.exec(&format!("DROP USER '{limited}'@'%'")).await;

    // Nothing half-written: no MongoDB collection, no Redis key, no Cassandra keyspace, no checkpoint.
    let collections = db.mongo.database(d).list_collection_names().await.unwrap();
    if !collections.is_empty() {
        failures.push(format!("MongoDB got collections {collections:?} from failed runs"));
    }
    if db.checkpoint(&pipeline).await.is_some() {
        failures.push("MongoDB got a checkpoint from a failed run".into());
    }
    let keys = redis_keys(REDIS, &format!("{d}:*"))
        .await
        .into_iter()
        .chain(redis_keys(REDIS, &format!("polyrepl:checkpoint:{pipeline}")).await)
        .collect::<Vec<_>>();
    if !keys.is_empty() {
        failures.push(format!("Redis got keys {keys:?} from failed runs"));
    }
    if cassandra_has_keyspace(d).await {
        failures.push(format!("Cassandra got the keyspace {d} from a failed run"));
    }
    eprintln!("{} bad inputs tried, {} failure(s)", cases.len() + next.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binlog_settings_that_would_lose_changes_are_refused_with_the_fix() {
    let maria = OwnMariaDb::up();
    let mut conn = mysql_async::Conn::from_url(maria.url()).await.expect("connect to the dedicated MariaDB");
    conn.query_drop("CREATE DATABASE s; CREATE TABLE s.t (id INT PRIMARY KEY, v INT)").await.unwrap();
    let source = maria.url();
    let pipeline = unique("settings");
    let mut failures = Vec::new();
    for (variable, bad, needed) in [
        ("binlog_format", "STATEMENT", "ROW"),
        ("binlog_row_image", "MINIMAL", "FULL"),
        ("binlog_row_metadata", "MINIMAL", "FULL"),
    ] {
        conn.query_drop(format!("SET GLOBAL {variable} = '{bad}'")).await.unwrap();
        let args: Vec<String> = ["run", "--source", &source, "--tables", "s.t", "--sink", MONGO, "--name", &pipeline]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let c = Case {
            what: variable,
            args,
            expect: vec![
                format!("{variable} is '{bad}'"),
                format!("SET GLOBAL {variable}='{needed}'"),
                "my.cnf".into(),
            ],
        };
        failures.extend(check_cases(&[c], "never-used-password").await);
        conn.query_drop(format!("SET GLOBAL {variable} = '{needed}'")).await.unwrap();
    }
    conn.disconnect().await.unwrap();
    let mongo = mongodb::Client::with_uri_str(MONGO).await.unwrap();
    assert!(
        mongo.database("s").list_collection_names().await.unwrap().is_empty()
            || failures.iter().any(|f| f.contains("expected")),
        "a refused run created collections"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_never_reach_logs_status_metrics_or_help() {
    let db = TestDb::create("secret").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'a'), (2, 'b')").await;
    let pw = secret();
    let user = format!("rep_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'; GRANT SELECT ON `{}`.* TO '{user}'@'%'; \
         GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'",
        db.name
    ))
    .await;
    let source = format!("mysql://{user}:{pw}@127.0.0.1:5600");
    let pipeline = db.pipeline("secret");
    let port = free_port();
    let tables = format!("{}.*", db.name);
    let args: Vec<String> = [
        "run",
        "--source",
        &source,
        "--tables",
        &tables,
        "--sink",
        MONGO,
        "--name",
        &pipeline,
        "--metrics-addr",
        &format!("127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut p = Polyrepl::spawn(&args);
    db.wait_in_sync("t", Duration::from_secs(60)).await;
    let status = wait_for("/status", Duration::from_secs(10), || {
        p.assert_running();
        async move { http_get(port, "/status").filter(|(code, _)| *code == 200).map(|(_, body)| body) }
    })
    .await;
    let (_, metrics) = http_get(port, "/metrics").expect("/metrics");
    p.sigterm();
    p.wait_exit(Duration::from_secs(30)).await;
    let log = p.log();
    db.exec(&format!("DROP USER '{user}'@'%'")).await;
    assert!(!status.contains(&pw), "/status shows the password:\n{status}");
    assert!(!metrics.contains(&pw), "/metrics shows the password");
    assert!(!log.contains(&pw), "the log shows the password:\n{log}");

    // --help with every secret-bearing setting in the environment.
    for command in ["run", "demo", "verify", "bench"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_polyrepl"))
            .args([command, "--help"])
            .env("POLYREPL_SOURCE", &source)
            .env("POLYREPL_SINKS", format!("redis://:{pw}@127.0.0.1:6379"))
            .env("POLYREPL_MONGODB", format!("mongodb://u:{pw}@127.0.0.1:1800"))
            .env("POLYREPL_REDIS", format!("redis://:{pw}@127.0.0.1:6379"))
            .env("POLYREPL_CASSANDRA", format!("cassandra://u:{pw}@127.0.0.1:9042"))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "polyrepl {command} --help failed:\n{text}");
        assert!(!text.contains(&pw), "polyrepl {command} --help shows a password from the environment:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_a_sink_cannot_hold_stops_the_run_before_its_batch_is_written() {
    let db = TestDb::create("zerokey").await;
    db.exec("SET SESSION sql_mode = ''; CREATE TABLE t (d DATE PRIMARY KEY, v INT); INSERT INTO t VALUES ('2024-01-01', 1), ('0000-00-00', 2)").await;
    let tables = format!("{}.*", db.name);
    for (sink, phrase) in
        [(MONGO, "cannot be part of an _id"), ("cassandra://127.0.0.1:9042", "cannot be part of a key")]
    {
        let pipeline = db.pipeline("zerokey");
        let args: Vec<String> =
            ["run", "--source", MYSQL, "--tables", &tables, "--sink", sink, "--name", &pipeline, "--stop-at-end"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let (status, log) = run_to_end(&args, Duration::from_secs(60)).await;
        assert!(!status.success(), "{sink}: a zero date in a key must stop the run, got {status}:\n{log}");
        assert!(
            log.contains("0000-00-00") && log.contains(phrase) && log.contains("Fix:"),
            "{sink}: the error should name the value and the fix:\n{log}"
        );
        eprintln!("{}", log.lines().find(|l| l.contains(phrase)).unwrap_or_default());
    }
    // Nothing of the refused batch was written: the good row travelled with the bad one.
    assert_eq!(
        db.collection("t").count_documents(mongodb::bson::doc! {}).await.unwrap(),
        0,
        "MongoDB got part of the refused batch"
    );
    let session =
        scylla::client::session_builder::SessionBuilder::new().known_node("127.0.0.1:9042").build().await.unwrap();
    let rows = session
        .query_unpaged(format!("SELECT d FROM \"{}\".t", db.name), &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    assert_eq!(rows.rows_num(), 0, "Cassandra got part of the refused batch");
    let _ = session.query_unpaged(format!("DROP KEYSPACE IF EXISTS \"{}\"", db.name), &[]).await;
}
