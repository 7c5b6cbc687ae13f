//! `polyrepl stack` end to end: a whole second stack on other ports, in a state directory of its own,
//! brought up, asked real questions with real clients, initialised twice, and brought down again,
//! after which nothing listens on its ports. Plus the errors a user meets.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_polyrepl");

/// Ports of this test's own stack (the suite's main stack uses the demo ports).
struct Ports {
    mysql: u16,
    mongo: u16,
    redis: u16,
    cassandra: u16,
    storage: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn polyrepl(state: &std::path::Path, p: &Ports, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .args(["--backend", "local"])
        .args(["--mysql-port", &p.mysql.to_string(), "--mongo-port", &p.mongo.to_string()])
        .args(["--redis-port", &p.redis.to_string(), "--cassandra-port", &p.cassandra.to_string()])
        .args(["--cassandra-storage-port", &p.storage.to_string(), "--cassandra-heap", "384m"])
        .output()
        .expect("run polyrepl")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(300)).is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn up_answers_init_is_idempotent_down_leaves_nothing() {
    let state = tempfile::tempdir().unwrap();
    let p = Ports {
        mysql: free_port(),
        mongo: free_port(),
        redis: free_port(),
        cassandra: free_port(),
        storage: free_port(),
    };

    let up = polyrepl(state.path(), &p, &["stack", "up"]);
    let out = text(&up);
    if !up.status.success() {
        polyrepl(state.path(), &p, &["stack", "down"]);
        panic!("stack up failed:\n{out}");
    }
    // Checked in a task of its own so that a failed assertion still lets us bring the stack down.
    let result =
        tokio::spawn(check_servers((p.mysql, p.mongo, p.redis, p.cassandra), state.path().to_path_buf())).await;

    let down = polyrepl(state.path(), &p, &["stack", "down"]);
    assert!(down.status.success(), "stack down failed:\n{}", text(&down));
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
    for port in [p.mysql, p.mongo, p.redis, p.cassandra, p.storage] {
        assert!(!listening(port), "port {port} still listens after stack down");
    }
    let status = polyrepl(state.path(), &p, &["stack", "status"]);
    assert_eq!(status.status.code(), Some(1), "status after down must say down:\n{}", text(&status));
    assert_eq!(text(&status).matches(" down ").count(), 4, "{}", text(&status));
    // Data is kept without --purge, and deleted with it.
    assert!(state.path().join("mysql/data").exists());
    let purge = polyrepl(state.path(), &p, &["stack", "down", "--purge"]);
    assert!(purge.status.success());
    assert!(!state.path().join("mysql").exists());
}

async fn check_servers((mysql, mongo, redis_port, cassandra): (u16, u16, u16, u16), state: std::path::PathBuf) {
    let status = Command::new(BIN)
        .args(["stack", "status", "--json", "--backend", "local", "--state-dir"])
        .arg(&state)
        .args([
            "--mysql-port",
            &mysql.to_string(),
            "--mongo-port",
            &mongo.to_string(),
            "--redis-port",
            &redis_port.to_string(),
            "--cassandra-port",
            &cassandra.to_string(),
        ])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 4);
    for s in json.as_array().unwrap() {
        assert_eq!(s["up"], true, "{s}");
        assert!(s["handle"].as_str().unwrap().parse::<u32>().is_ok(), "pid expected: {s}");
    }

    // MariaDB: a query, and the binlog settings CDC needs.
    use mysql_async::prelude::Queryable;
    let mut conn =
        mysql_async::Conn::from_url(format!("mysql://root@127.0.0.1:{mysql}?prefer_socket=false")).await.unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    let vars: Vec<(String, String)> = conn
        .query("SHOW GLOBAL VARIABLES WHERE Variable_name IN ('binlog_format','binlog_row_image','binlog_row_metadata','log_bin','bind_address')")
        .await
        .unwrap();
    let get = |n: &str| vars.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    assert_eq!(get("binlog_format"), "ROW");
    assert_eq!(get("binlog_row_image"), "FULL");
    assert_eq!(get("binlog_row_metadata"), "FULL");
    assert_eq!(get("log_bin"), "ON");
    assert_eq!(get("bind_address"), "127.0.0.1");

    // Redis: PING.
    let client = redis::Client::open(format!("redis://127.0.0.1:{redis_port}/")).unwrap();
    let mut rc = client.get_multiplexed_async_connection().await.unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut rc).await.unwrap();
    assert_eq!(pong, "PONG");

    // MongoDB wire: hello, ping, insert + find.
    use mongodb::bson::doc;
    let mc =
        mongodb::Client::with_uri_str(format!("mongodb://127.0.0.1:{mongo}/?directConnection=true")).await.unwrap();
    let hello = mc.database("admin").run_command(doc! {"hello": 1}).await.unwrap();
    assert_eq!(hello.get_bool("isWritablePrimary").ok(), Some(true), "{hello}");
    let ping = mc.database("admin").run_command(doc! {"ping": 1}).await.unwrap();
    assert_eq!(ping.get_f64("ok").or_else(|_| ping.get_i32("ok").map(f64::from)).unwrap(), 1.0);
    let coll = mc.database("lifecycle").collection::<mongodb::bson::Document>("t");
    coll.insert_one(doc! {"_id": 7, "name": "seven"}).await.unwrap();
    let found = coll.find_one(doc! {"_id": 7}).await.unwrap().unwrap();
    assert_eq!(found.get_str("name").unwrap(), "seven");

    // Cassandra: release_version, then insert + select.
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_node(format!("127.0.0.1:{cassandra}"))
        .build()
        .await
        .unwrap();
    let rows = session
        .query_unpaged("SELECT release_version FROM system.local", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (version,): (String,) = rows.first_row().unwrap();
    assert!(version.starts_with("5.0"), "{version}");
    session.query_unpaged("CREATE KEYSPACE IF NOT EXISTS lifecycle WITH replication = {'class':'SimpleStrategy','replication_factor':1}", &[]).await.unwrap();
    session.query_unpaged("CREATE TABLE IF NOT EXISTS lifecycle.t (id int PRIMARY KEY, name text)", &[]).await.unwrap();
    session.query_unpaged("INSERT INTO lifecycle.t (id, name) VALUES (?, ?)", (7i32, "seven")).await.unwrap();
    let rows = session
        .query_unpaged("SELECT name FROM lifecycle.t WHERE id = 7", &[])
        .await
        .unwrap()
        .into_rows_result()
        .unwrap();
    let (name,): (String,) = rows.first_row().unwrap();
    assert_eq!(name, "seven");

    // init twice: the second run changes nothing and succeeds.
    let ports = [
        "--mysql-port",
        &mysql.to_string(),
        "--mongo-port",
        &mongo.to_string(),
        "--redis-port",
        &redis_port.to_string(),
        "--cassandra-port",
        &cassandra.to_string(),
    ]
    .map(String::from);
    for _ in 0..2 {
        let init = Command::new(BIN)
            .args(["stack", "init", "--backend", "local", "--state-dir"])
            .arg(&state)
            .args(&ports)
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", text(&init));
    }
    let cols: Vec<(String, String)> = conn
        .query("SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='polyrepl_demo' AND TABLE_NAME='events' ORDER BY ORDINAL_POSITION")
        .await
        .unwrap();
    assert_eq!(
        cols,
        [("id", "bigint(20)"), ("ts", "datetime(6)"), ("uuid", "char(36)")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    let idx =
        mc.database("polyrepl_demo").collection::<mongodb::bson::Document>("events").list_index_names().await.unwrap();
    assert!(idx.contains(&"ts_1".to_string()), "{idx:?}");
    session.query_unpaged("SELECT id, ts, uuid FROM polyrepl_demo.events LIMIT 1", &[]).await.unwrap();
}

#[test]
fn a_port_taken_by_someone_else_is_refused_by_name() {
    let state = tempfile::tempdir().unwrap();
    let squatter = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    let o = Command::new(BIN)
        .args([
            "stack",
            "up",
            "--backend",
            "local",
            "--service",
            "redis",
            "--redis-port",
            &port.to_string(),
            "--state-dir",
        ])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains(&format!("port {port}")) && t.contains("--redis-port") && t.contains("POLYREPL_REDIS_PORT"),
        "{t}"
    );
}

#[test]
fn a_missing_program_names_its_package() {
    let state = tempfile::tempdir().unwrap();
    let o = Command::new(BIN)
        .args([
            "stack",
            "up",
            "--backend",
            "local",
            "--service",
            "redis",
            "--redis-port",
            &free_port().to_string(),
            "--state-dir",
        ])
        .arg(state.path())
        .env("PATH", "/nonexistent")
        .env("POLYREPL_REDIS_BIN", "/nonexistent/redis-server")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(t.contains("redis-server") && t.contains("Debian's package redis-server"), "{t}");
}

#[test]
fn an_unwritable_state_dir_is_refused() {
    let o = Command::new(BIN)
        .args(["stack", "up", "--backend", "local", "--state-dir", "/proc/polyrepl-cannot-write-here"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let t = text(&o);
    assert!(
        t.contains("state directory /proc/polyrepl-cannot-write-here is not writable") && t.contains("--state-dir"),
        "{t}"
    );
}
