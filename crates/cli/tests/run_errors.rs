//! Bad input to `polyrepl run` fails fast with an exit code other than 0 and an error that says what was
//! wrong and where, without ever printing a password.

mod common;

use common::*;
use std::time::Duration;

/// Runs `polyrepl` with `args`; asserts a failure and returns everything it printed.
async fn fails(args: Vec<String>) -> String {
    let (status, log) = run_to_end(&args, Duration::from_secs(60)).await;
    assert!(!status.success(), "expected a failure from {args:?}, got {status}:\n{log}");
    assert_ne!(status.code(), Some(0));
    log
}

fn args(source: &str, tables: &str, sink: &str, name: &str) -> Vec<String> {
    ["run", "--source", source, "--tables", tables, "--sink", sink, "--name", name, "--stop-at-end"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A database with one keyed table, for the tests whose source is fine.
async fn keyed_db() -> TestDb {
    let db = TestDb::create("err").await;
    db.exec("CREATE TABLE keyed (id INT PRIMARY KEY, v INT)").await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_names_host_and_user_but_never_the_password() {
    let db = keyed_db().await;
    let secret = "Wr0ngPassw0rd-d0-not-print";
    let log = fails(args(
        &format!("mysql://root:{secret}@127.0.0.1:5600"),
        &format!("{}.*", db.name),
        MONGO,
        &db.pipeline("pw"),
    ))
    .await;
    assert!(log.contains("127.0.0.1:5600"), "the error should name the server:\n{log}");
    assert!(log.contains("'root'") || log.contains("user root"), "the error should name the user:\n{log}");
    assert!(!log.contains(secret), "the password was printed:\n{log}");
    assert!(!log.contains("Wr0ng"), "part of the password was printed:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_without_primary_key_is_refused_by_name() {
    let db = keyed_db().await;
    db.exec("CREATE TABLE loose (a INT, b VARCHAR(10))").await;
    let pipeline = db.pipeline("nopk");
    let log = fails(args(MYSQL, &format!("{}.*", db.name), MONGO, &pipeline)).await;
    let table = format!("{}.loose", db.name);
    assert!(log.contains(&table), "the error should name {table}:\n{log}");
    assert!(log.to_lowercase().contains("primary key"), "{log}");
    // Excluding it is the way out the error offers.
    let mut ok = args(MYSQL, &format!("{}.*", db.name), MONGO, &pipeline);
    ok.extend(["--exclude".to_string(), table]);
    let (status, log) = run_to_end(&ok, Duration::from_secs(60)).await;
    assert!(status.success(), "with the table excluded the run should succeed:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tables_pattern_matching_nothing_is_an_error() {
    let db = keyed_db().await;
    let pattern = format!("{}_missing.*", db.name);
    let log = fails(args(MYSQL, &pattern, MONGO, &db.pipeline("nothing"))).await;
    assert!(log.contains(&pattern) && log.contains("matches no table"), "the error should name the pattern:\n{log}");
    let pattern = format!("{}.no_such_table", db.name);
    let log = fails(args(MYSQL, &pattern, MONGO, &db.pipeline("nothing"))).await;
    assert!(log.contains(&pattern), "the error should name the pattern:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_is_not_mongodb_is_refused_clearly() {
    let db = keyed_db().await;
    let tables = format!("{}.*", db.name);

    // A scheme polyrepl has no sink for: said so, with the schemes it knows; no password printed.
    let log = fails(args(MYSQL, &tables, "postgres://u:Secr3tSink@127.0.0.1:5432/x", &db.pipeline("pg"))).await;
    assert!(log.contains("not a sink URL") && log.contains("mongodb://"), "{log}");
    assert!(!log.contains("Secr3tSink"), "the sink password was printed:\n{log}");
    let log = fails(args(MYSQL, &tables, "127.0.0.1:1800", &db.pipeline("noscheme"))).await;
    assert!(log.contains("not a sink URL"), "{log}");

    // A mongodb:// URL pointing at Redis: said to be Redis, not MongoDB.
    assert!(
        std::net::TcpStream::connect("127.0.0.1:6379").is_ok(),
        "this test needs Redis on 127.0.0.1:6379 (polyrepl stack up)"
    );
    let log = fails(args(MYSQL, &tables, "mongodb://127.0.0.1:6379", &db.pipeline("redisport"))).await;
    assert!(log.contains("not a MongoDB server") && log.contains("127.0.0.1:6379"), "{log}");
    assert!(log.contains("Redis"), "the error should say what answered instead:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_config_file_key_is_refused() {
    let (_dir, file) = config_file(format!(
        "source = \"{MYSQL}\"\ntabels = [\"x.*\"]\nsinks = [\"{MONGO}\"]\nname = \"{}\"\n",
        unique("cfg")
    ));
    let log = fails(vec!["run".into(), "--config".into(), file.display().to_string(), "--stop-at-end".into()]).await;
    assert!(log.contains("tabels"), "the error should name the unknown key:\n{log}");
    assert!(log.contains(&file.display().to_string()), "the error should name the file:\n{log}");
}
