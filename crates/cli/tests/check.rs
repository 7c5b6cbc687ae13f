//! `polyrepl check`: a good configuration passes (exit 0) with its effective settings printed and the
//! password hidden; a configuration with several problems gets every one of them, each with its fix
//! (exit 1); an unreadable config file is exit 2. And check writes nothing to any sink.
//!
//! Servers: the shared stack (MariaDB :5600, FerretDB :1800, Redis :6379, Cassandra :9042, Kafka :9092).

mod common;

use common::*;
use std::time::Duration;

/// A password no output may contain.
fn secret() -> String {
    format!("Pw-{}-x", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn check_args(file: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["check".to_string(), "--config".to_string(), file.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Panics when any sink holds something of database `db` or a checkpoint of `pipeline`.
async fn assert_nothing_written(db: &TestDb, pipeline: &str, log: &str) {
    let databases = db.mongo.list_database_names().await.unwrap();
    assert!(!databases.contains(&db.name), "check created the MongoDB database {}:\n{log}", db.name);
    assert_eq!(db.checkpoint(pipeline).await, None, "check wrote a MongoDB checkpoint:\n{log}");
    let keys = redis_keys(REDIS, &format!("{}:*", db.name)).await;
    assert!(keys.is_empty(), "check wrote Redis keys {keys:?}:\n{log}");
    let checkpoint = redis_keys(REDIS, &format!("polyrepl:checkpoint:{pipeline}")).await;
    assert!(checkpoint.is_empty(), "check wrote a Redis checkpoint:\n{log}");
    assert!(!cassandra_has_keyspace(&db.name).await, "check created the Cassandra keyspace {}:\n{log}", db.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_configuration_passes_with_its_settings_printed_and_nothing_written() {
    let db = TestDb::create("chkok").await;
    db.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO t VALUES (1, 'a')").await;
    let pipeline = db.pipeline("chkok");
    let pw = secret();
    let user = format!("chk_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    db.exec(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY '{pw}'; \
         GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'%'"
    ))
    .await;
    let (_dir, file) = config_file(format!(
        r#"
source = "mysql://{user}:{pw}@127.0.0.1:5600"
tables = ["{db}.*"]
name = "{pipeline}"
chunk_rows = 10
sinks = ["{MONGO}", "{REDIS}", "kafka://127.0.0.1:9092"]

[[sink]]
url = "{CASSANDRA}"
"#,
        db = db.name
    ));

    let (status, log) = run_to_end(&check_args(&file, &["--chunk-rows", "77"]), Duration::from_secs(120)).await;
    db.exec(&format!("DROP USER '{user}'@'%'")).await;

    assert_eq!(status.code(), Some(0), "a good configuration passes:\n{log}");
    assert!(!log.contains(&pw), "the password was printed:\n{log}");
    assert!(log.contains(&format!("mysql://{user}:***@127.0.0.1:5600")), "the source, password hidden:\n{log}");
    for line in [format!("name                      {pipeline}"), "chunk_rows                77".to_string()] {
        assert!(log.contains(&line), "the effective settings (the flag beating the file) hold {line:?}:\n{log}");
    }
    for ok in ["ok  sink mongodb://127.0.0.1:1800", "ok  sink redis://127.0.0.1:6379", "ok  sink cassandra://"] {
        assert!(log.contains(ok), "{ok:?} should be reported:\n{log}");
    }
    assert!(log.contains("no checkpoint for pipeline"), "{log}");
    assert!(log.contains("ok  sink kafka://127.0.0.1:9092: reachable"), "{log}");
    assert!(log.contains(&format!("1 selected: {}.t", db.name)), "{log}");
    assert!(log.contains("no problems found"), "{log}");
    assert_nothing_written(&db, &pipeline, &log).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_problem_is_reported_with_its_fix_and_nothing_written() {
    let db = TestDb::create("chkbad").await;
    db.exec("CREATE TABLE ok (id INT PRIMARY KEY); CREATE TABLE nopk (v INT); CREATE TABLE geo (id INT PRIMARY KEY, g POINT)")
        .await;
    let pipeline = db.pipeline("chkbad");
    let (redis_port, cassandra_port) = (free_port(), free_port());
    let (_dir, file) = config_file(format!(
        r#"
source = "{MYSQL}"
tables = ["{db}.*", "{db}_missing.*"]
name = "{pipeline}"
sinkz = ["{REDIS}"]

[[sink]]
url = "{MONGO}"

[[sink]]
url = "redis://127.0.0.1:{redis_port}"

[[sink]]
url = "cassandra://127.0.0.1:{cassandra_port}"
optoins = {{ replication_factor = 1 }}
"#,
        db = db.name
    ));

    let (status, log) = run_to_end(&check_args(&file, &[]), Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(1), "problems found → exit 1:\n{log}");
    let expected = [
        "unknown key `sinkz` (did you mean `sinks`?)".to_string(),
        "fix: rename it to `sinks`, or remove it".to_string(),
        "unknown key `optoins` in [[sink]] #3 (did you mean `options`?)".to_string(),
        format!("table pattern '{}_missing.*' matches no table", db.name),
        format!("table {}.nopk has no primary key", db.name),
        format!("fix: ALTER TABLE {}.nopk ADD PRIMARY KEY", db.name),
        format!("column {}.geo.g has type POINT", db.name),
        format!("sink redis://127.0.0.1:{redis_port}: "),
        format!("sink cassandra://127.0.0.1:{cassandra_port}: "),
        "ok  sink mongodb://127.0.0.1:1800".to_string(),
    ];
    for phrase in &expected {
        assert!(log.contains(phrase.as_str()), "the report should contain {phrase:?}:\n{log}");
    }
    let problems = log.lines().filter(|l| l.split_once(". ").is_some_and(|(n, _)| n.parse::<u32>().is_ok())).count();
    let fixes = log.lines().filter(|l| l.trim_start().starts_with("fix: ")).count();
    assert_eq!(problems, 7, "seven problems, each numbered:\n{log}");
    assert_eq!(fixes, problems, "every problem comes with its fix:\n{log}");
    assert!(log.contains("7 problem(s) found"), "{log}");

    // A wrong password (a flag beats the file) is one more problem; the sinks are still checked.
    let pw = secret();
    let wrong = format!("mysql://root:{pw}@127.0.0.1:5600");
    let (status, log2) = run_to_end(&check_args(&file, &["--source", &wrong]), Duration::from_secs(120)).await;
    assert_eq!(status.code(), Some(1), "{log2}");
    assert!(!log2.contains(&pw), "the password was printed:\n{log2}");
    assert!(log2.contains("refused user 'root'") && log2.contains("mysql://root:***@127.0.0.1:5600"), "{log2}");
    assert!(log2.contains("fix: correct the user and password in the source URL"), "{log2}");
    assert!(log2.contains(&format!("sink redis://127.0.0.1:{redis_port}: ")), "{log2}");

    // `run` refuses the same file, with the key meant.
    let (status, log3) =
        run_to_end(&["run".to_string(), "--config".to_string(), file.display().to_string()], Duration::from_secs(60))
            .await;
    assert!(!status.success(), "{log3}");
    assert!(log3.contains("unknown key `sinkz` (did you mean `sinks`?)"), "{log3}");
    assert!(log3.contains("unknown key `optoins` in [[sink]] #3 (did you mean `options`?)"), "{log3}");

    assert_nothing_written(&db, &pipeline, &format!("{log}\n{log2}\n{log3}")).await;
}

#[tokio::test]
async fn an_unreadable_config_file_means_check_could_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let (status, log) = run_to_end(&check_args(&dir.path().join("missing.toml"), &[]), Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("cannot read the config file"), "{log}");
}
